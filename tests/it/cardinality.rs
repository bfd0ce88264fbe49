//! Cardinality limits (issue 9) on the real binary: a point of a new
//! series beyond `max-series` or `max-new-series-per-minute` is refused
//! over telnet and `/api/put`, counted by reason, and the series the store
//! holds keep ingesting, also after a restart.

use serde_json::{json, Value};

use crate::support::{exchange, http, Spawned};

/// 2023-11-14T22:13:20Z in seconds.
const T: i64 = 1_700_000_000;

fn line(host: &str, i: i64) -> String {
    format!("put card.m {} {i} host={host}\n", T + i)
}

fn point(host: &str, i: i64) -> Value {
    json!({"metric": "card.m", "timestamp": T + i, "value": i, "tags": {"host": host}})
}

/// `point` as `?details` echoes it: the value as text, as OpenTSDB does.
fn echo(host: &str, i: i64) -> Value {
    json!({"metric": "card.m", "timestamp": T + i, "value": i.to_string(), "tags": {"host": host}})
}

async fn telnet(d: &Spawned, lines: &[String]) -> String {
    String::from_utf8(exchange(d.telnet, lines.concat().as_bytes()).await).unwrap()
}

/// `/api/put?details` of a point of series `known` and one of `new`:
/// the first is taken, the second refused with `refused`.
async fn put_known_and_new(d: &Spawned, known: &str, new: &str, refused: &str) {
    let body = json!([point(known, 1), point(new, 1)]).to_string();
    let (status, text) = http(d.http, "POST", "/api/put?details", body.as_bytes()).await;
    assert_eq!(status, 400, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        answer,
        json!({"success": 1, "failed": 1, "errors": [
            {"datapoint": echo(new, 1), "error": refused}]})
    );
}

/// How many points `host`'s series holds.
async fn stored(d: &Spawned, host: &str) -> usize {
    let path = format!("/api/query?start={T}&m=sum:card.m{{host=*}}");
    let (status, text) = http(d.http, "GET", &path, b"").await;
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    let series = answer.as_array().unwrap().iter();
    let mut of_host = series.filter(|s| s["tags"]["host"] == host);
    of_host
        .next()
        .map_or(0, |s| s["dps"].as_object().unwrap().len())
}

async fn stop(d: Spawned) {
    d.signal("-TERM");
    assert!(d.wait().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_series_refuses_new_series_and_existing_ones_keep_ingesting() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--max-series", "3"];
    let refused = "too many series: max-series 3 reached";
    let d = Spawned::start_with(dir.path(), &flags, &[]).await;
    let lines = [
        line("a", 0),
        line("b", 0),
        line("c", 0),
        line("d", 0),
        line("a", 1),
    ];
    assert_eq!(
        telnet(&d, &lines).await,
        format!("put: illegal argument: {refused}\n")
    );
    put_known_and_new(&d, "b", "e", refused).await;
    assert_eq!(
        d.stat("tsd.rtsd.points.rejected", "too_many_series").await,
        2
    );
    d.wait_stat("tsd.rtsd.points.stored", "", |v| v >= 5).await;
    for (host, n) in [("a", 2), ("b", 2), ("c", 1), ("d", 0), ("e", 0)] {
        assert_eq!(stored(&d, host).await, n, "{host}");
    }
    stop(d).await;

    // After a restart the limit counts the series the store holds.
    let d = Spawned::start_with(dir.path(), &flags, &[]).await;
    let lines = [line("f", 2), line("c", 2)];
    assert_eq!(
        telnet(&d, &lines).await,
        format!("put: illegal argument: {refused}\n")
    );
    d.wait_stat("tsd.rtsd.points.stored", "", |v| v >= 1).await;
    assert_eq!(stored(&d, "c").await, 2);
    assert_eq!(stored(&d, "f").await, 0);
    stop(d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_series_beyond_the_per_minute_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Two new series at once, then one every 30 s: far longer than this
    // test takes.
    let flags = ["--max-new-series-per-minute", "2"];
    let refused = "too many series: max-new-series-per-minute 2 reached";
    let d = Spawned::start_with(dir.path(), &flags, &[]).await;
    let lines: Vec<String> = (0..4).map(|i| line(&format!("h{i}"), 0)).collect();
    let reply = format!("put: illegal argument: {refused}\n");
    assert_eq!(telnet(&d, &lines).await, reply.repeat(2));
    // An admitted series keeps ingesting; a new one is refused.
    put_known_and_new(&d, "h1", "h4", refused).await;
    assert_eq!(telnet(&d, &[line("h0", 2)]).await, "");
    assert_eq!(
        d.stat("tsd.rtsd.points.rejected", "too_many_new_series")
            .await,
        3
    );
    d.wait_stat("tsd.rtsd.points.stored", "", |v| v >= 4).await;
    for (host, n) in [("h0", 2), ("h1", 2), ("h2", 0), ("h3", 0), ("h4", 0)] {
        assert_eq!(stored(&d, host).await, n, "{host}");
    }
    stop(d).await;
}
