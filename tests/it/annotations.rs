//! Annotations end to end over real sockets: every `/api/annotation` verb
//! and error body, bulk writes and deletes, notes in `/api/query` answers
//! (in range, out of range, `noAnnotations`, `globalAnnotations`), and
//! notes surviving a restart of the real binary.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use crate::support::*;

/// Points every 10 s for a minute and a half from here.
const BASE: i64 = 1_700_000_000;

fn parse(body: &str) -> Json {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// A daemon with `allow-delete` and `ann.cpu` for web01 and web02; returns it and each
/// host's TSUID.
async fn seeded() -> (TestDaemon, BTreeMap<String, String>) {
    // Annotation deletes, like query deletes, need `allow-delete`.
    let d = TestDaemon::start_with(|s| s.allow_delete = true).await;
    let text: String = (0..10)
        .flat_map(|i| {
            ["web01", "web02"].map(|h| format!("put ann.cpu {} {i} host={h}\n", BASE + 10 * i))
        })
        .collect();
    exchange(d.telnet(), text.as_bytes()).await;
    d.wait_stored(20).await;
    let path = format!(
        "/api/query?start={BASE}&end={}&m=sum:ann.cpu%7Bhost=*%7D&show_tsuids",
        BASE + 100
    );
    let (s, b) = http(d.http(), "GET", &path, b"").await;
    assert_eq!(s, 200, "{b}");
    let ids = parse(&b)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["tags"]["host"].as_str().unwrap().to_string(),
                r["tsuids"][0].as_str().unwrap().to_string(),
            )
        })
        .collect();
    (d, ids)
}

async fn send(d: &TestDaemon, method: &str, path: &str, body: Json) -> (u16, String) {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    http(d.http(), method, path, &body).await
}

/// OpenTSDB's error body, fields in its order.
fn error(code: u16, message: &str, details: Option<&str>) -> String {
    let details = details.map_or(String::new(), |d| format!(",\"details\":{}", json!(d)));
    format!(
        "{{\"error\":{{\"code\":{code},\"message\":{}{details}}}}}",
        json!(message)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_notes_are_created_merged_replaced_and_deleted() {
    let (d, ids) = seeded().await;
    let web01 = &ids["web01"];
    let at = format!("/api/annotation?start_time={BASE}&tsuid={web01}");
    let not_found = error(404, "Unable to locate annotation in storage", None);
    assert_eq!(
        send(&d, "GET", &at, Json::Null).await,
        (404, not_found.clone())
    );
    assert_eq!(
        send(&d, "GET", "/api/annotation", Json::Null).await,
        (400, error(400, "Missing start time", None))
    );
    let no_start = "The start timestamp has not been set";
    assert_eq!(
        send(&d, "POST", "/api/annotation", json!({"tsuid": web01})).await,
        (400, error(400, no_start, Some(no_start)))
    );
    // Nothing to store: 304 and no body.
    assert_eq!(
        send(
            &d,
            "POST",
            "/api/annotation",
            json!({"tsuid": web01, "startTime": BASE})
        )
        .await,
        (304, String::new())
    );

    let created = format!(
        r#"{{"tsuid":"{web01}","description":"deploy","notes":"","custom":{{"owner":"jdoe"}},"endTime":0,"startTime":{BASE}}}"#
    );
    let post = json!({"tsuid": web01, "startTime": BASE.to_string(), "description": "deploy",
        "custom": {"owner": "jdoe"}});
    assert_eq!(
        send(&d, "POST", "/api/annotation", post).await,
        (200, created.clone())
    );
    assert_eq!(send(&d, "GET", &at, Json::Null).await, (200, created));
    // POST keeps what it does not set; ms name the same note.
    let (s, b) = send(
        &d,
        "POST",
        "/api/annotation",
        json!({"tsuid": web01, "startTime": BASE * 1000, "notes": "v2.1"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        format!(
            r#"{{"tsuid":"{web01}","description":"deploy","notes":"v2.1","custom":{{"owner":"jdoe"}},"endTime":0,"startTime":{BASE}}}"#
        )
    );
    // PUT replaces everything.
    let replaced = format!(
        r#"{{"tsuid":"{web01}","description":"","notes":"only","endTime":{},"startTime":{BASE}}}"#,
        BASE + 5
    );
    let put = json!({"tsuid": web01, "startTime": BASE, "endTime": BASE + 5, "notes": "only"});
    assert_eq!(
        send(&d, "PUT", "/api/annotation", put).await,
        (200, replaced.clone())
    );
    assert_eq!(send(&d, "GET", &at, Json::Null).await, (200, replaced));

    // Global notes, through the plural alias and with a body on GET.
    let global = json!({"startTime": BASE * 1000 + 500, "description": "g"});
    let (s, b) = send(&d, "POST", "/api/annotations", global).await;
    assert_eq!(s, 200, "{b}");
    let got = send(
        &d,
        "GET",
        "/api/annotation",
        json!({"startTime": BASE * 1000 + 500}),
    )
    .await;
    assert_eq!(got, (200, b));
    assert_eq!(parse(&got.1)["tsuid"], "");

    // Bad and unknown series.
    let invalid = "Invalid TSUID: zz";
    assert_eq!(
        send(
            &d,
            "POST",
            "/api/annotation",
            json!({"tsuid": "zz", "startTime": BASE, "description": "x"})
        )
        .await,
        (400, error(400, invalid, Some(invalid)))
    );
    let unknown = "No such TSUID: 00000000000FFFFF";
    assert_eq!(
        send(
            &d,
            "POST",
            "/api/annotation",
            json!({"tsuid": "fffff", "startTime": BASE, "description": "x"})
        )
        .await,
        (400, error(400, unknown, Some(unknown)))
    );
    assert_eq!(
        http(d.http(), "POST", "/api/annotation", b"{\"startTime\":").await,
        (
            400,
            error(
                400,
                "Unable to parse the given JSON",
                Some("EOF while parsing a value at line 1 column 13")
            )
        )
    );

    // An array of the fields is not a note.
    let positional = json!([web01, BASE, 0, "x"]);
    assert_eq!(send(&d, "POST", "/api/annotation", positional).await.0, 400);

    // DELETE: 204 whether or not the note existed, then it is gone.
    assert_eq!(
        send(&d, "DELETE", "/api/annotation", json!({"tsuid": web01})).await,
        (
            400,
            error(
                400,
                "Unable to delete Annotation information",
                Some(no_start)
            )
        )
    );
    assert_eq!(
        send(&d, "DELETE", &at, Json::Null).await,
        (204, String::new())
    );
    assert_eq!(
        send(&d, "DELETE", &at, Json::Null).await,
        (204, String::new())
    );
    assert_eq!(send(&d, "GET", &at, Json::Null).await, (404, not_found));
    assert_eq!(
        send(&d, "PATCH", "/api/annotation", Json::Null).await,
        (
            405,
            error(
                405,
                "Method not allowed",
                Some("The HTTP method [PATCH] is not permitted for this endpoint")
            )
        )
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_writes_all_or_nothing_and_deletes_ranges() {
    let (d, ids) = seeded().await;
    let (web01, web02) = (&ids["web01"], &ids["web02"]);
    // One bad note: nothing is stored.
    let bad = json!([
        {"tsuid": web01, "startTime": BASE + 10, "description": "a"},
        {"description": "x"}]);
    assert_eq!(
        send(&d, "POST", "/api/annotation/bulk", bad).await,
        (
            400,
            error(
                400,
                "The start timestamp has not been set",
                Some("Annotation error: TSUID:  Start: 0  Description: x")
            )
        )
    );
    let at = format!("/api/annotation?start_time={}&tsuid={web01}", BASE + 10);
    assert_eq!(send(&d, "GET", &at, Json::Null).await.0, 404);

    let notes = json!([
        {"tsuid": web01, "startTime": BASE + 10, "description": "a"},
        {"tsuid": web02, "startTime": BASE + 20, "description": "b"},
        {"startTime": BASE + 30, "description": "g"},
        {"tsuid": web01, "startTime": BASE + 40}]);
    let (s, b) = send(&d, "POST", "/api/annotation/bulk", notes).await;
    assert_eq!(s, 200, "{b}");
    let stored: Vec<String> = parse(&b)
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["description"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored, ["a", "b", "g"]);
    assert_eq!(send(&d, "GET", &at, Json::Null).await.0, 200);

    assert_eq!(
        send(&d, "DELETE", "/api/annotation/bulk", Json::Null).await,
        (
            400,
            error(400, "Missing parameter <code>start_time</code>", None)
        )
    );
    assert_eq!(
        send(
            &d,
            "DELETE",
            "/api/annotation/bulk",
            json!({"startTime": BASE})
        )
        .await,
        (
            400,
            error(400, "Missing the TSUIDs or global annotations flag", None)
        )
    );
    assert_eq!(
        send(
            &d,
            "DELETE",
            "/api/annotation/bulk",
            json!({"global": true})
        )
        .await,
        (400, error(400, "Missing the start time value", None))
    );
    assert_eq!(
        send(&d, "GET", "/api/annotation/bulk", Json::Null).await.0,
        405
    );

    let path = format!(
        "/api/annotations/bulk?start_time={BASE}&end_time={}&tsuids={web01},%20{web02}",
        BASE + 25
    );
    assert_eq!(
        send(&d, "DELETE", &path, Json::Null).await,
        (
            200,
            format!(
                r#"{{"tsuids":["{web01}","{web02}"],"global":false,"startTime":{},"endTime":{},"totalDeleted":2}}"#,
                BASE * 1000,
                (BASE + 25) * 1000
            )
        )
    );
    assert_eq!(send(&d, "GET", &at, Json::Null).await.0, 404);
    let (s, b) = send(
        &d,
        "DELETE",
        "/api/annotation/bulk",
        json!({"startTime": BASE, "global": true}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let answer = parse(&b);
    assert_eq!(
        (&answer["tsuids"], &answer["totalDeleted"]),
        (&Json::Null, &json!(1))
    );
    d.stop().await;
}

/// `description`s of a result's `field`, in order.
fn descriptions(result: &Json, field: &str) -> Vec<String> {
    result[field]
        .as_array()
        .map(|notes| {
            notes
                .iter()
                .map(|n| n["description"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_carry_the_notes_of_their_series_and_range() {
    let (d, ids) = seeded().await;
    let (web01, web02) = (&ids["web01"], &ids["web02"]);
    let notes = json!([
        {"tsuid": web01, "startTime": BASE + 50, "description": "in2"},
        {"tsuid": web01, "startTime": (BASE + 10) * 1000, "description": "in1"},
        {"tsuid": web01, "startTime": BASE + 500, "description": "late"},
        {"tsuid": web02, "startTime": BASE + 20, "description": "other"},
        {"startTime": BASE + 30, "description": "g"},
        {"startTime": BASE - 100, "description": "early"}]);
    let (s, b) = send(&d, "POST", "/api/annotation/bulk", notes).await;
    assert_eq!(s, 200, "{b}");

    let query = |extra: Json, tags: Json, start: i64| {
        let mut q = json!({"start": start, "end": BASE + 100,
            "queries": [{"metric": "ann.cpu", "aggregator": "sum", "tags": tags}]});
        q.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        q
    };
    let run = |q: Json| {
        let addr = d.http();
        async move {
            let (s, b) = http(addr, "POST", "/api/query", q.to_string().as_bytes()).await;
            assert_eq!(s, 200, "{b}");
            b
        }
    };

    let b = run(query(
        json!({"globalAnnotations": true}),
        json!({"host": "web01"}),
        BASE,
    ))
    .await;
    let r = &parse(&b)[0];
    assert_eq!(descriptions(r, "annotations"), ["in1", "in2"]);
    assert_eq!(descriptions(r, "globalAnnotations"), ["g"]);
    assert_eq!(r["annotations"][0]["startTime"], (BASE + 10) * 1000);
    assert!(b.find("\"annotations\"") < b.find("\"globalAnnotations\""));
    assert!(b.find("\"globalAnnotations\"") < b.find("\"dps\""));

    // One group over both series: their notes merged by time.
    let b = run(query(json!({}), json!({}), BASE)).await;
    let r = &parse(&b)[0];
    assert_eq!(descriptions(r, "annotations"), ["in1", "other", "in2"]);
    assert!(!b.contains("globalAnnotations"), "{b}");

    // noAnnotations drops the series' notes, not the global ones.
    let b = run(query(
        json!({"noAnnotations": true, "globalAnnotations": "true"}),
        json!({}),
        BASE,
    ))
    .await;
    assert!(!b.contains("\"annotations\""), "{b}");
    assert_eq!(descriptions(&parse(&b)[0], "globalAnnotations"), ["g"]);

    // Out of range: no fields at all.
    let b = run(query(
        json!({"globalAnnotations": true}),
        json!({"host": "web01"}),
        BASE + 60,
    ))
    .await;
    assert!(!b.contains("nnotations"), "{b}");

    // GET flags.
    let path = format!(
        "/api/query?start={BASE}&end={}&m=sum:ann.cpu%7Bhost=web01%7D",
        BASE + 100
    );
    let (_, b) = http(d.http(), "GET", &format!("{path}&global_annotations"), b"").await;
    let r = &parse(&b)[0];
    assert_eq!(descriptions(r, "annotations"), ["in1", "in2"]);
    assert_eq!(descriptions(r, "globalAnnotations"), ["g"]);
    let (_, b) = http(d.http(), "GET", &format!("{path}&no_annotations"), b"").await;
    assert!(!b.contains("nnotations"), "{b}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_survive_a_restart_of_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Spawned::start(dir.path()).await;
    let note = json!({"startTime": BASE, "description": "before restart",
        "custom": {"ticket": "OPS-1"}});
    let (s, created) = http(
        daemon.http,
        "POST",
        "/api/annotation",
        note.to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 200, "{created}");
    daemon.signal("-TERM");
    assert!(daemon.wait().await.success());

    let daemon = Spawned::start(dir.path()).await;
    let path = format!("/api/annotation?start_time={BASE}");
    assert_eq!(http(daemon.http, "GET", &path, b"").await, (200, created));
    daemon.signal("-TERM");
    assert!(daemon.wait().await.success());
}
