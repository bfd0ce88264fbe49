//! Deleting through `/api/query` against the real binary: refused with
//! OpenTSDB's 400 by default; with `--allow-delete`, a range of one series
//! goes (raw and rollup answers agree), other series stay, writes and
//! deletes apply in request order, a GET never deletes, and kill -9 after
//! the answer keeps it.

use serde_json::{json, Value};

use crate::support::{exchange, http, Spawned};

/// 2026-01-02T00:00:00Z in seconds: old enough to seal at once.
const T: i64 = 1_767_312_000;
const HOUR: i64 = 3600;

const REFUSED: &str = r#"{"error":{"code":400,"message":"Bad request","details":"Deleting data is not enabled (tsd.http.query.allow_delete=false)"}}"#;

/// `sys.cpu` for hosts a and b, a point every 10 minutes for six hours.
async fn seed(d: &Spawned) -> u64 {
    let mut lines = String::new();
    for i in 0..36 {
        for host in ["a", "b"] {
            lines.push_str(&format!("put sys.cpu {} {i} host={host}\n", T + i * 600));
        }
    }
    exchange(d.telnet, lines.as_bytes()).await;
    wait_stored(d, 72).await;
    72
}

async fn wait_stored(d: &Spawned, n: u64) {
    d.wait_stat("tsd.rtsd.points.stored", "", |v| v >= n).await;
}

async fn query(d: &Spawned, body: Value) -> Value {
    let (status, text) = http(d.http, "POST", "/api/query", body.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// The `dps` of `host`'s series of `sys.cpu` in `[start, end]`, raw.
async fn raw(d: &Spawned, host: &str, start: i64, end: i64) -> Value {
    let q = json!({"start": start, "end": end, "queries": [
        {"aggregator": "sum", "metric": "sys.cpu", "tags": {"host": host}}]});
    let answer = query(d, q).await;
    answer[0]["dps"].clone()
}

/// Hourly averages of `host`, from rollups unless `raw_only`.
async fn hourly(d: &Spawned, host: &str, raw_only: bool) -> Value {
    let mut sub = json!({"aggregator": "sum", "metric": "sys.cpu", "downsample": "1h-avg",
        "tags": {"host": host}});
    if raw_only {
        sub["rollupUsage"] = json!("ROLLUP_RAW");
    }
    let answer = query(
        d,
        json!({"start": T, "end": T + 6 * HOUR, "queries": [sub]}),
    )
    .await;
    answer[0]["dps"].clone()
}

fn keys(dps: &Value) -> Vec<i64> {
    let mut out: Vec<i64> = dps
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse().unwrap())
        .collect();
    out.sort_unstable();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_is_refused_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let d = Spawned::start(dir.path()).await;
    seed(&d).await;
    let path = format!("/api/query?start={T}&m=sum:sys.cpu");
    let (s, b) = http(d.http, "DELETE", &path, b"").await;
    assert_eq!((s, b.as_str()), (400, REFUSED));
    let (s, b) = http(d.http, "GET", &format!("{path}&delete"), b"").await;
    assert_eq!((s, b.as_str()), (400, REFUSED));
    let body = json!({"start": T, "delete": true, "queries": [
        {"aggregator": "sum", "metric": "sys.cpu"}]});
    let (s, b) = http(d.http, "POST", "/api/query", body.to_string().as_bytes()).await;
    assert_eq!((s, b.as_str()), (400, REFUSED));
    assert_eq!(keys(&raw(&d, "a", T, T + 6 * HOUR).await).len(), 36);
    assert_eq!(d.stat("tsd.rtsd.deletes", "").await, 0);
    d.signal("-TERM");
    assert!(d.wait().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_delete_removes_one_series_range_and_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let d = Spawned::start_with(dir.path(), &["--allow-delete"], &[]).await;
    let mut stored = seed(&d).await;
    // Six hours of two series, sealed: the delete rewrites blocks.
    d.wait_stat("tsd.rtsd.chunks.sealed", "", |v| v >= 12).await;
    let b_before = raw(&d, "b", T, T + 6 * HOUR).await;

    // 01:00 to 02:59:59 of host a; the answer is the query's, as OpenTSDB's.
    let (from, to) = (T + HOUR, T + 3 * HOUR - 1);
    let body = json!({"start": from, "end": to, "delete": true, "queries": [
        {"aggregator": "sum", "metric": "sys.cpu", "tags": {"host": "a"}}]});
    let answer = query(&d, body).await;
    assert_eq!(answer.as_array().unwrap().len(), 1);
    assert_eq!(answer[0]["tags"], json!({"host": "a"}));
    assert_eq!(
        keys(&answer[0]["dps"]),
        (6..18).map(|i| T + i * 600).collect::<Vec<_>>()
    );

    let a_after = raw(&d, "a", T, T + 6 * HOUR).await;
    let kept: Vec<i64> = (0..36)
        .map(|i| T + i * 600)
        .filter(|t| !(from..=to).contains(t))
        .collect();
    assert_eq!(keys(&a_after), kept);
    assert_eq!(raw(&d, "b", T, T + 6 * HOUR).await, b_before);
    let rolled = hourly(&d, "a", false).await;
    assert_eq!(
        keys(&rolled),
        vec![T, T + 3 * HOUR, T + 4 * HOUR, T + 5 * HOUR]
    );
    assert_eq!(rolled, hourly(&d, "a", true).await, "rollups equal raw");

    // A point acknowledged before a delete goes; one written after stays.
    let put = |ts: i64, v: i64| {
        json!({"metric": "sys.cpu", "timestamp": ts, "value": v, "tags": {"host": "a"}}).to_string()
    };
    let (s, _) = http(
        d.http,
        "POST",
        "/api/put",
        put(T + HOUR + 100, 99).as_bytes(),
    )
    .await;
    assert_eq!(s, 204);
    let path = format!(
        "/api/query?start={}&end={}&m=sum:sys.cpu{{host=a}}",
        T + HOUR,
        T + HOUR + 200
    );
    let (s, text) = http(d.http, "DELETE", &path, b"").await;
    assert_eq!(s, 200, "{text}");
    let (s, _) = http(
        d.http,
        "POST",
        "/api/put",
        put(T + HOUR + 150, 7).as_bytes(),
    )
    .await;
    assert_eq!(s, 204);
    stored += 2;
    wait_stored(&d, stored).await;
    assert_eq!(
        raw(&d, "a", T + HOUR, T + HOUR + 200).await,
        json!({(T + HOUR + 150).to_string(): 7})
    );

    // A GET with a `delete` parameter deletes nothing; DELETE with the
    // same query string deletes host b's last hour.
    let path = format!(
        "/api/query?start={}&end={}&m=sum:sys.cpu{{host=b}}&delete",
        T + 5 * HOUR,
        T + 6 * HOUR
    );
    let (s, text) = http(d.http, "GET", &path, b"").await;
    assert_eq!(s, 400, "{text}");
    assert_eq!(keys(&raw(&d, "b", T, T + 6 * HOUR).await).len(), 36);
    let (s, text) = http(d.http, "DELETE", &path, b"").await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(keys(&raw(&d, "b", T, T + 6 * HOUR).await).len(), 30);

    assert_eq!(d.stat("tsd.rtsd.deletes", "").await, 3);
    assert_eq!(d.stat("tsd.rtsd.points.deleted", "").await, 12 + 1 + 6);
    let (s, metrics) = http(d.http, "GET", "/metrics", b"").await;
    assert_eq!(s, 200);
    assert!(
        metrics.contains("\nrtsd_points_deleted_total 19\n"),
        "{metrics}"
    );
    let (_, config) = http(d.http, "GET", "/api/config", b"").await;
    assert!(
        config.contains(r#""tsd.http.query.allow_delete":"true""#),
        "{config}"
    );

    let answers = (
        raw(&d, "a", T, T + 6 * HOUR).await,
        raw(&d, "b", T, T + 6 * HOUR).await,
        hourly(&d, "a", false).await,
        hourly(&d, "b", false).await,
    );
    d.signal("-KILL");
    d.wait().await;
    let d = Spawned::start_with(dir.path(), &["--allow-delete"], &[]).await;
    let again = (
        raw(&d, "a", T, T + 6 * HOUR).await,
        raw(&d, "b", T, T + 6 * HOUR).await,
        hourly(&d, "a", false).await,
        hourly(&d, "b", false).await,
    );
    assert_eq!(again, answers);
    assert_eq!(again.2, hourly(&d, "a", true).await, "rollups equal raw");
    assert_eq!(again.3, hourly(&d, "b", true).await, "rollups equal raw");
    d.signal("-TERM");
    assert!(d.wait().await.success());
}
