//! Replays the hand-computed cases of `protocol/queries/*.json` through the
//! real path: telnet `put` into a real store, then `/api/query` over HTTP.
//! The query engine's unit tests replay the same files against memory, so
//! the two must agree.

use serde_json::Value as Json;
use tokio::io::AsyncWriteExt;

use crate::support::*;

/// Every case, with the name of its file, files in name order.
pub(crate) fn cases() -> Vec<(String, Json)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/queries");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let list: Vec<Json> = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        out.extend(list.into_iter().map(|c| (file.clone(), c)));
    }
    out
}

/// The case's series as put lines, values written with their own text so
/// integers stay integers and floats stay floats.
fn put_lines(case: &Json) -> (String, u64) {
    let mut text = String::new();
    let mut n = 0;
    for s in case["series"].as_array().unwrap() {
        let tags: String = s["tags"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!(" {k}={}", v.as_str().unwrap()))
            .collect();
        for p in s["points"].as_array().unwrap() {
            text.push_str(&format!(
                "put {} {} {}{tags}\n",
                s["metric"].as_str().unwrap(),
                p[0],
                p[1]
            ));
            n += 1;
        }
    }
    (text, n)
}

fn request(case: &Json) -> (&'static str, String, Vec<u8>) {
    let req = &case["request"];
    if let Some(get) = req.get("get") {
        let pairs: Vec<(String, String)> = serde_json::from_value(get.clone()).unwrap();
        (
            "GET",
            format!("/api/query?{}", serde_urlencoded::to_string(pairs).unwrap()),
            Vec::new(),
        )
    } else {
        let body = &req["post"];
        let params: Vec<(String, String)> = req
            .get("params")
            .map(|p| serde_json::from_value(p.clone()).unwrap())
            .unwrap_or_default();
        let path = if params.is_empty() {
            "/api/query".to_string()
        } else {
            format!(
                "/api/query?{}",
                serde_urlencoded::to_string(params).unwrap()
            )
        };
        ("POST", path, body.to_string().into_bytes())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_computed_query_cases_through_store_and_http() {
    let all = cases();
    assert!(all.len() >= 50, "only {} cases", all.len());
    let mut failures = Vec::new();
    for (file, case) in &all {
        let name = format!("{file}: {}", case["name"].as_str().unwrap_or("?"));
        let d = TestDaemon::start().await;
        let (lines, n) = put_lines(case);
        let mut s = tokio::net::TcpStream::connect(d.telnet()).await.unwrap();
        s.write_all(lines.as_bytes()).await.unwrap();
        d.wait_stored(n).await;
        let (method, path, body) = request(case);
        let (status, got) = http(d.http(), method, &path, &body).await;
        let expect = &case["expect"];
        let want_status = expect["status"].as_u64().unwrap() as u16;
        if status != want_status {
            failures.push(format!(
                "{name}: status {status}, want {want_status}: {got}"
            ));
        } else if let Some(want) = expect.get("body").and_then(Json::as_str) {
            if got != want {
                failures.push(format!("{name}:\n  got  {got}\n  want {want}"));
            }
        } else {
            let err: Json = serde_json::from_str(&got).unwrap();
            if err["error"]["message"] != expect["message"]
                || expect
                    .get("details")
                    .is_some_and(|d| err["error"]["details"] != *d)
            {
                failures.push(format!("{name}: got {got}, want {expect}"));
            }
        }
        drop(s);
        d.stop().await;
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}
