//! The HTTP API end to end: every endpoint and its error bodies, HTTP
//! ingest exactly as scollector, telegraf and tcollector send it (read back
//! through `/api/query`), `?sync` durability and 503 under a full blocking
//! queue.
//!
//! Most tests talk to a [`TestDaemon`] over real sockets. The overload and
//! `?sync` tests drive [`rtsd::http::router`] with `oneshot` over a real
//! store, holding the queue's consuming end themselves, so "the queue is
//! full" and "the writer committed" happen exactly when the test says.

use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use rtsd::http::{router, AppState, HttpLimits};
use rtsd::model::{SeriesKey, Value};
use rtsd::protocol::ParseOptions;
use rtsd::queue::{queue, Batch, OverflowPolicy, QueueReceiver, Received};
use rtsd::stats::Stats;
use rtsd::storage::{Store, StoreOptions, StoreWriter};
use serde_json::{json, Value as Json};
use tower::ServiceExt;

use crate::support::*;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(data), &mut out).unwrap();
    out
}

fn parse(body: &str) -> Json {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

const GZIP_JSON: &[(&str, &str)] = &[
    ("Content-Type", "application/json"),
    ("Content-Encoding", "gzip"),
];

/// `dps` of the single result of a GET `/api/query`, as `(seconds, value)`.
async fn query_dps(addr: std::net::SocketAddr, m: &str, start: i64, end: i64) -> Vec<(i64, Json)> {
    let path = format!("/api/query?start={start}&end={end}&m={m}");
    let (status, body) = http(addr, "GET", &path, b"").await;
    assert_eq!(status, 200, "{body}");
    let results = parse(&body);
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 1, "{body}");
    let dps = results[0]["dps"].as_object().unwrap();
    let mut out: Vec<(i64, Json)> = dps
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), v.clone()))
        .collect();
    out.sort_by_key(|(t, _)| *t);
    out
}

// ---------------------------------------------------------------- ingest

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scollector_gzip_batch_of_500_gets_204_and_reads_back() {
    let d = TestDaemon::start().await;
    let base = 1_700_000_000i64;
    // scollector: one POST of BatchSize=500 points, seconds, host tag,
    // gzip always; it re-sends anything but 204 forever.
    let points: Vec<Json> = (0..500i64)
        .map(|i| {
            let value = if i % 2 == 0 {
                json!(i)
            } else {
                json!(i as f64 + 0.5)
            };
            json!({"metric": format!("os.cpu.{}", i % 5), "timestamp": base + i / 5,
                   "value": value, "tags": {"host": "web01"}})
        })
        .collect();
    let body = gzip(serde_json::to_string(&points).unwrap().as_bytes());
    let (status, reply) = http_with(d.http(), "POST", "/api/put", GZIP_JSON, &body).await;
    assert_eq!((status, reply.as_str()), (204, ""));
    d.wait_stored(500).await;
    assert_eq!(d.daemon.stats.http_points.load(Relaxed), 500);
    for k in 0..5i64 {
        let dps = query_dps(
            d.http(),
            &format!("sum:os.cpu.{k}%7Bhost=web01%7D"),
            base,
            base + 100,
        )
        .await;
        let want: Vec<(i64, f64)> = (0..100)
            .map(|t| {
                let i = 5 * t + k;
                (base + t, if i % 2 == 0 { i as f64 } else { i as f64 + 0.5 })
            })
            .collect();
        let got: Vec<(i64, f64)> = dps.iter().map(|(t, v)| (*t, v.as_f64().unwrap())).collect();
        assert_eq!(got, want, "os.cpu.{k}");
        // Integers stay integers, as over telnet.
        let stored = d.points(&SeriesKey::new(&format!("os.cpu.{k}"), [("host", "web01")]));
        assert_eq!(stored.len(), 100);
        for (t, p) in stored.iter().enumerate() {
            let i = 5 * t as i64 + k;
            let want = if i % 2 == 0 {
                Value::Int(i)
            } else {
                Value::Float(i as f64 + 0.5)
            };
            assert_eq!(p.value, want);
        }
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telegraf_gzip_body_with_newlines_gets_204_and_reads_back() {
    let d = TestDaemon::start().await;
    let base = 1_700_000_000i64;
    // telegraf's json.Encoder ends every object with a newline:
    // `[{...}\n,{...}\n]`, gzip-compressed, 50 points per batch.
    let mut text = String::from("[");
    for i in 0..50i64 {
        if i > 0 {
            text.push(',');
        }
        let value = if i % 3 == 0 {
            format!("{}", i * 10)
        } else {
            format!("{}.25", i)
        };
        text.push_str(&format!(
            "{{\"metric\":\"telegraf.cpu_usage_idle\",\"timestamp\":{},\"value\":{value},\"tags\":{{\"cpu\":\"cpu-total\",\"host\":\"tg1\"}}}}\n",
            base + i
        ));
    }
    text.push(']');
    let (status, reply) = http_with(
        d.http(),
        "POST",
        "/api/put",
        GZIP_JSON,
        &gzip(text.as_bytes()),
    )
    .await;
    assert_eq!((status, reply.as_str()), (204, ""));
    d.wait_stored(50).await;
    // Read back the way Grafana asks: POST /api/query.
    let q = json!({"start": base, "end": base + 60, "queries": [
        {"metric": "telegraf.cpu_usage_idle", "aggregator": "sum", "tags": {"host": "tg1"}}]});
    let (status, body) = http(d.http(), "POST", "/api/query", q.to_string().as_bytes()).await;
    assert_eq!(status, 200, "{body}");
    let results = parse(&body);
    assert_eq!(results[0]["metric"], "telegraf.cpu_usage_idle");
    assert_eq!(
        results[0]["tags"],
        json!({"cpu": "cpu-total", "host": "tg1"})
    );
    let dps = results[0]["dps"].as_object().unwrap();
    assert_eq!(dps.len(), 50);
    for i in 0..50i64 {
        let want = if i % 3 == 0 {
            (i * 10) as f64
        } else {
            i as f64 + 0.25
        };
        assert_eq!(
            dps[&(base + i).to_string()].as_f64(),
            Some(want),
            "point {i}"
        );
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcollector_http_mode_plain_json_with_details() {
    let d = TestDaemon::start().await;
    // tcollector --http: no gzip, float values, `?details` at DEBUG level.
    let body = json!([
        {"metric": "proc.loadavg.1min", "timestamp": 1_700_000_000, "value": 0.5, "tags": {"host": "tc"}},
        {"metric": "proc.loadavg.5min", "timestamp": 1_700_000_000, "value": 42.0, "tags": {"host": "tc"}},
    ]);
    let (status, reply) = http(
        d.http(),
        "POST",
        "/api/put?details",
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(
        (status, reply.as_str()),
        (200, r#"{"success":2,"failed":0,"errors":[]}"#)
    );
    d.wait_stored(2).await;
    let key = SeriesKey::new("proc.loadavg.5min", [("host", "tc")]);
    assert_eq!(d.points(&key)[0].value, Value::Float(42.0));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_answers_follow_opentsdb_table() {
    let d = TestDaemon::start().await;
    let a = d.http();
    let good = r#"{"metric":"put.m","timestamp":1700000000,"value":1,"tags":{"host":"a"}}"#;
    let bad = r#"{"metric":"put.m","timestamp":1700000001,"value":"x1","tags":{"host":"a"}}"#;
    let mixed = format!("[{good},{bad}]");

    let (s, b) = http(a, "GET", "/api/put", b"").await;
    assert_eq!(
        (s, b.as_str()),
        (
            405,
            r#"{"error":{"code":405,"message":"Method not allowed","details":"The HTTP method [GET] is not permitted for this endpoint"}}"#
        )
    );
    assert_eq!(
        http(a, "POST", "/api/put", good.as_bytes()).await,
        (204, String::new())
    );
    let (s, b) = http(a, "POST", "/api/put", mixed.as_bytes()).await;
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            r#"{"error":{"code":400,"message":"One or more data points had errors","details":"Please see the TSD logs or append \"details\" to the put request"}}"#
        )
    );
    assert_eq!(
        http(a, "POST", "/api/put?summary", good.as_bytes()).await,
        (200, r#"{"success":1,"failed":0}"#.to_string())
    );
    assert_eq!(
        http(a, "POST", "/api/put?summary=false", mixed.as_bytes()).await,
        (400, r#"{"success":1,"failed":1}"#.to_string())
    );
    // `details=false` still switches details on (a presence flag).
    assert_eq!(
        http(a, "POST", "/api/put?details=false", mixed.as_bytes()).await,
        (
            400,
            r#"{"success":1,"failed":1,"errors":[{"datapoint":{"metric":"put.m","timestamp":1700000001,"value":"x1","tags":{"host":"a"}},"error":"Unable to parse value to a number"}]}"#
                .to_string()
        )
    );
    for (body, message) in [
        ("", "Missing request content"),
        ("[]", "No datapoints found in content"),
        (
            "put put.m 1 1",
            "The JSON must start as an object or an array",
        ),
        ("[{\"metric\":", "Unable to parse the given JSON"),
    ] {
        let (s, b) = http(a, "POST", "/api/put", body.as_bytes()).await;
        assert_eq!(s, 400, "{body}");
        assert_eq!(parse(&b)["error"]["message"], message, "{body}");
    }
    assert_eq!(d.daemon.stats.rejected_count("invalid_value"), 3);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_point_errors_carry_opentsdb_texts() {
    let d = TestDaemon::start_with(|s| s.max_tags = 2).await;
    let cases = [
        (json!({"timestamp": 1, "value": 1}), "Metric name was empty"),
        (
            json!({"metric": "m", "timestamp": 0, "value": 1}),
            "Invalid timestamp",
        ),
        (
            json!({"metric": "m", "timestamp": 1, "value": ""}),
            "Empty value",
        ),
        (
            json!({"metric": "m", "timestamp": 1, "value": "abc"}),
            "Unable to parse value to a number",
        ),
        (
            json!({"metric": "m", "timestamp": 1, "value": 18446744073709551615u64}),
            "Unable to parse value to a number",
        ),
        (
            json!({"metric": "m", "timestamp": 1, "value": 1, "tags": {"a": "1", "b": "2", "c": "3"}}),
            "Too many tags: 3 maximum allowed: 2, tags: {a=1, b=2, c=3}",
        ),
        (
            json!({"metric": "a:b", "timestamp": 1, "value": 1}),
            "Invalid metric name (\"a:b\"): illegal character: :",
        ),
        (
            json!({"metric": "m", "timestamp": 1, "value": 1, "tags": {"host": "we b"}}),
            "Invalid tag value with key [host] (\"we b\"): illegal character:  ",
        ),
        (
            json!({"metric": "m", "timestamp": 1, "value": "1e309"}),
            "value is NaN or Infinite: Infinity for metric=m timestamp=1",
        ),
        (
            json!({"metric": "m", "timestamp": 99_999_999_999_999i64, "value": 1}),
            "bad timestamp=99999999999999 when trying to add value=[1]/0 to metric=m, tags={}",
        ),
    ];
    for (point, error) in cases {
        let (s, b) = http(
            d.http(),
            "POST",
            "/api/put?details",
            point.to_string().as_bytes(),
        )
        .await;
        assert_eq!(s, 400, "{point}");
        let reply = parse(&b);
        assert_eq!(reply["failed"], 1, "{b}");
        assert_eq!(reply["errors"][0]["error"], error, "{point}");
    }
    assert_eq!(d.daemon.stats.http_points.load(Relaxed), 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untagged_points_are_accepted_unless_tags_are_required() {
    let d = TestDaemon::start().await;
    let point = r#"{"metric":"notags.m","timestamp":1700000000,"value":7}"#;
    assert_eq!(
        http(d.http(), "POST", "/api/put?sync", point.as_bytes())
            .await
            .0,
        204
    );
    assert_eq!(
        d.points(&SeriesKey::new("notags.m", []))[0].value,
        Value::Int(7)
    );
    d.stop().await;

    let strict = TestDaemon::start_with(|s| s.require_tags = true).await;
    let (s, b) = http(strict.http(), "POST", "/api/put?details", point.as_bytes()).await;
    assert_eq!(s, 400);
    assert_eq!(parse(&b)["errors"][0]["error"], "Missing tags");
    strict.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_put_is_readable_as_soon_as_it_is_answered() {
    let d = TestDaemon::start().await;
    let points: Vec<Json> = (0..3000i64)
        .map(|i| json!({"metric": "sync.m", "timestamp": 1_700_000_000 + i, "value": i, "tags": {"host": "a"}}))
        .collect();
    let body = serde_json::to_vec(&points).unwrap();
    let (s, b) = http(d.http(), "POST", "/api/put?sync&summary", &body).await;
    assert_eq!((s, b.as_str()), (200, r#"{"success":3000,"failed":0}"#));
    // No waiting: the answer came after the writer's commit.
    let stored = d.points(&SeriesKey::new("sync.m", [("host", "a")]));
    assert_eq!(stored.len(), 3000);
    assert_eq!(stored[2999].value, Value::Int(2999));
    let (s, b) = http(
        d.http(),
        "POST",
        "/api/put?sync&sync_timeout=60000&summary",
        &body,
    )
    .await;
    assert_eq!(
        (s, b.as_str()),
        (200, r#"{"success":3000,"failed":0,"timeouts":0}"#)
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_on_the_telnet_port_ingests() {
    let d = TestDaemon::start().await;
    let point = r#"{"metric":"tport.m","timestamp":1700000000,"value":3,"tags":{"host":"a"}}"#;
    let (s, _) = http_with(
        d.telnet(),
        "POST",
        "/api/put?sync",
        GZIP_JSON,
        &gzip(point.as_bytes()),
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(
        d.points(&SeriesKey::new("tport.m", [("host", "a")]))[0].value,
        Value::Int(3)
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_put_answers_204_and_keeps_the_entries() {
    let d = TestDaemon::start().await;
    let meta =
        json!([{"Metric": "os.cpu", "Tagset": "", "Name": "desc", "Value": "CPU time", "Time": 1}]);
    assert_eq!(
        http(
            d.http(),
            "POST",
            "/api/metadata/put",
            meta.to_string().as_bytes()
        )
        .await,
        (204, String::new())
    );
    let saved = std::fs::read_to_string(d.dir.path().join("metadata.json")).unwrap();
    assert!(saved.contains("\"CPU time\""), "{saved}");
    assert_eq!(http(d.http(), "GET", "/api/metadata/put", b"").await.0, 405);
    assert_eq!(
        http(d.http(), "POST", "/api/metadata/put", b"{").await.0,
        400
    );
    d.stop().await;
}

// ------------------------------------------------ router with a held queue

/// The router over a real store, with the queue's consuming end held by the
/// test instead of a writer.
struct Bench {
    app: Router,
    rx: QueueReceiver,
    stats: Arc<Stats>,
    _writer: StoreWriter,
    _dir: tempfile::TempDir,
}

fn bench(capacity: usize, http: HttpLimits) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let (writer, store) = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let stats = Arc::new(Stats::default());
    let (tx, rx) = queue(
        capacity,
        OverflowPolicy::Block,
        Duration::ZERO,
        stats.clone(),
    );
    let settings = loopback_settings(dir.path());
    let state = AppState::new(
        Arc::new(store),
        tx,
        stats.clone(),
        settings,
        ParseOptions::default(),
        http,
    );
    Bench {
        app: router(Arc::new(state)),
        rx,
        stats,
        _writer: writer,
        _dir: dir,
    }
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_vec())).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (parts.status, parts.headers, bytes.to_vec())
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

/// Takes the next batch off the queue (blocking up to the deadline).
async fn next_batch(rx: &QueueReceiver) -> Batch {
    tokio::task::block_in_place(|| match rx.recv_timeout(DEADLINE) {
        Received::Batch(b) => b,
        _ => panic!("no batch queued"),
    })
}

const ONE: &[u8] = br#"{"metric":"q.m","timestamp":1700000000,"value":1,"tags":{"host":"a"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_blocking_queue_answers_503_not_429() {
    let b = bench(1, HttpLimits::default());
    let (s, _, _) = call(&b.app, "POST", "/api/put", &[], ONE).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, body) = call(&b.app, "POST", "/api/put", &[], ONE).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        text(&body),
        r#"{"error":{"code":503,"message":"Please throttle writes","details":"The ingest queue is full; retry later"}}"#
    );
    // Room again once the writer takes the queued batch.
    assert_eq!(next_batch(&b.rx).await.samples.len(), 1);
    assert_eq!(
        call(&b.app, "POST", "/api/put", &[], ONE).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(b.stats.http_points.load(Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_waits_for_the_writer_and_reports_its_failure() {
    let b = bench(1000, HttpLimits::default());
    let app = b.app.clone();
    let put = tokio::spawn(async move { call(&app, "POST", "/api/put?sync", &[], ONE).await });
    let batch = next_batch(&b.rx).await;
    assert!(!put.is_finished(), "answered before the commit");
    batch
        .ack
        .expect("sync batches carry an ack")
        .send(Ok(()))
        .unwrap();
    assert_eq!(put.await.unwrap().0, StatusCode::NO_CONTENT);

    let app = b.app.clone();
    let put = tokio::spawn(async move { call(&app, "POST", "/api/put?sync", &[], ONE).await });
    let batch = next_batch(&b.rx).await;
    batch
        .ack
        .unwrap()
        .send(Err("storage error: disk full".into()))
        .unwrap();
    let (s, _, body) = put.await.unwrap();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        text(&body),
        r#"{"error":{"code":503,"message":"Storage exception","details":"storage error: disk full"}}"#
    );

    // An unanswered batch past sync_timeout: 400 with the timeout counted.
    let (s, _, body) = call(
        &b.app,
        "POST",
        "/api/put?sync&sync_timeout=1&summary",
        &[],
        ONE,
    )
    .await;
    assert_eq!(
        (s, text(&body)),
        (
            StatusCode::BAD_REQUEST,
            r#"{"success":0,"failed":0,"timeouts":1}"#
        )
    );
    // The timed-out batch is still queued: the writer may yet store it.
    assert_eq!(next_batch(&b.rx).await.samples.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_even_gzipped() {
    let b = bench(
        1000,
        HttpLimits {
            max_body_bytes: 1024,
            ..HttpLimits::default()
        },
    );
    let big = format!(
        "[{}]",
        vec![std::str::from_utf8(ONE).unwrap(); 20].join(",")
    );
    let (s, _, body) = call(&b.app, "POST", "/api/put", &[], big.as_bytes()).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        text(&body),
        r#"{"error":{"code":413,"message":"Request Entity Too Large","details":"The request body exceeds the limit of 1024 bytes"}}"#
    );
    let (s, _, _) = call(
        &b.app,
        "POST",
        "/api/put",
        &[("content-encoding", "gzip")],
        &gzip(big.as_bytes()),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _, _) = call(
        &b.app,
        "POST",
        "/api/put",
        &[("content-encoding", "br")],
        ONE,
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_beyond_the_concurrency_limit_are_shed_with_503() {
    let b = bench(
        1000,
        HttpLimits {
            max_concurrent_reads: 0,
            max_queued_reads: 0,
            ..HttpLimits::default()
        },
    );
    for uri in [
        "/api/query?start=1h-ago&m=sum:q.m",
        "/api/query/last?timeseries=q.m",
        "/api/search/lookup?m=q.m",
    ] {
        let (s, _, body) = call(&b.app, "GET", uri, &[], b"").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(
            text(&body),
            r#"{"error":{"code":503,"message":"Too many concurrent queries","details":"0 queries are running and 0 waiting; please retry later"}}"#
        );
    }
    // Cheap endpoints are not limited: Grafana's health check still works.
    assert_eq!(
        call(&b.app, "GET", "/api/suggest?q=cpu&type=metrics", &[], b"")
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_gzipped_when_the_client_accepts_it() {
    let b = bench(1000, HttpLimits::default());
    let (s, headers, body) = call(
        &b.app,
        "GET",
        "/api/aggregators",
        &[("accept-encoding", "gzip")],
        b"",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["content-type"], "application/json; charset=UTF-8");
    let names: Vec<String> = serde_json::from_slice(&gunzip(&body)).unwrap();
    assert!(names.iter().any(|n| n == "sum") && names.iter().any(|n| n == "zimsum"));
    let (_, headers, _) = call(&b.app, "GET", "/api/aggregators", &[], b"").await;
    assert!(!headers.contains_key("content-encoding"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalised_and_unknown_ones_are_404() {
    let b = bench(1000, HttpLimits::default());
    let app = &b.app;
    assert_eq!(
        call(app, "GET", "/API/V1/Version/", &[], b"").await.0,
        StatusCode::OK
    );
    let (s, _, body) = call(app, "GET", "/api/v2/version", &[], b"").await;
    assert_eq!(
        (s, text(&body)),
        (
            StatusCode::NOT_IMPLEMENTED,
            r#"{"error":{"code":501,"message":"Requested API version is greater than the max implemented","details":"API version [2] is greater than the max [1]"}}"#
        )
    );
    // OpenTSDB 2.4.1 registers no serializers endpoint.
    for uri in ["/api/serializers", "/api/nothing", "/nothing"] {
        let (s, _, body) = call(app, "GET", uri, &[], b"").await;
        assert_eq!(
            (s, text(&body)),
            (
                StatusCode::NOT_FOUND,
                r#"{"error":{"code":404,"message":"Endpoint not found"}}"#
            ),
            "{uri}"
        );
    }
}

// ---------------------------------------------------------------- reads

/// A daemon holding `sys.cpu.user` for hosts web01 and web02 (dc=lga) and
/// `sys.mem` for web01, committed before it returns.
async fn seeded() -> TestDaemon {
    let d = TestDaemon::start().await;
    let points = json!([
        {"metric": "sys.cpu.user", "timestamp": 1_700_000_000, "value": 10, "tags": {"host": "web01", "dc": "lga"}},
        {"metric": "sys.cpu.user", "timestamp": 1_700_000_060, "value": 12.5, "tags": {"host": "web01", "dc": "lga"}},
        {"metric": "sys.cpu.user", "timestamp": 1_700_000_030, "value": 20, "tags": {"host": "web02", "dc": "lga"}},
        {"metric": "sys.mem", "timestamp": 1_700_000_000, "value": 1024, "tags": {"host": "web01"}},
    ]);
    let (s, b) = http(
        d.http(),
        "POST",
        "/api/put?sync",
        points.to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 204, "{b}");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suggest_lists_names_by_prefix_with_opentsdb_errors() {
    let d = seeded().await;
    let a = d.http();
    let get =
        |q: &'static str| async move { http(a, "GET", &format!("/api/suggest?{q}"), b"").await };
    assert_eq!(
        get("type=metrics&q=sys").await,
        (200, r#"["sys.cpu.user","sys.mem"]"#.into())
    );
    assert_eq!(
        get("type=metrics&q=sys&max=1").await,
        (200, r#"["sys.cpu.user"]"#.into())
    );
    assert_eq!(get("type=metrics&q=Sys").await, (200, "[]".into()));
    assert_eq!(get("type=tagk&q=").await, (200, r#"["dc","host"]"#.into()));
    assert_eq!(
        get("type=tagv&q=web").await,
        (200, r#"["web01","web02"]"#.into())
    );
    let post = br#"{"type":"tagv","q":"l","max":"5"}"#;
    assert_eq!(
        http(a, "POST", "/api/suggest", post).await,
        (200, r#"["lga"]"#.into())
    );
    for (q, message) in [
        ("q=sys", "Missing parameter <code>type</code>"),
        ("type=foo", "Invalid 'type' parameter:foo"),
        ("type=metrics&max=many", "Unable to parse 'max' as a number"),
    ] {
        let (s, b) = get(q).await;
        assert_eq!(
            (s, parse(&b)["error"]["message"].clone()),
            (400, json!(message)),
            "{q}"
        );
    }
    let (s, b) = http(a, "POST", "/api/suggest", br#"{"q":"x"}"#).await;
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            r#"{"error":{"code":400,"message":"Missing 'type' parameter"}}"#
        )
    );
    assert_eq!(
        http(a, "DELETE", "/api/suggest?type=metrics", b"").await.0,
        405
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_finds_series_by_metric_and_tag_patterns() {
    let d = seeded().await;
    let a = d.http();
    let (s, b) = http(
        a,
        "GET",
        "/api/search/lookup?m=sys.cpu.user%7Bhost=*%7D&limit=1000",
        b"",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let r = parse(&b);
    assert_eq!(r["type"], "LOOKUP");
    assert_eq!(r["metric"], "sys.cpu.user");
    assert_eq!(r["tags"], json!([{"key": "host", "value": "*"}]));
    assert_eq!(
        (
            r["limit"].clone(),
            r["startIndex"].clone(),
            r["totalResults"].clone()
        ),
        (json!(1000), json!(0), json!(2))
    );
    let tags: Vec<Json> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["tags"].clone())
        .collect();
    assert_eq!(
        tags,
        vec![
            json!({"dc": "lga", "host": "web01"}),
            json!({"dc": "lga", "host": "web02"})
        ]
    );
    for x in r["results"].as_array().unwrap() {
        assert_eq!(x["metric"], "sys.cpu.user");
        assert_eq!(x["tsuid"].as_str().unwrap().len(), 16);
    }
    // Tag value across metrics, POST form, limit.
    let post = br#"{"tags":[{"key":"host","value":"web01"}],"limit":5}"#;
    let (s, b) = http(a, "POST", "/api/search/lookup", post).await;
    assert_eq!(s, 200);
    let r = parse(&b);
    assert!(r.get("metric").is_none());
    assert_eq!(r["totalResults"], 2);
    let (s, b) = http(a, "GET", "/api/search/lookup?m=sys.cpu.user&limit=1", b"").await;
    assert_eq!((s, parse(&b)["totalResults"].clone()), (200, json!(1)));
    // Errors.
    let (s, b) = http(a, "GET", "/api/search/lookup?m=nope", b"").await;
    assert_eq!(
        (s, b.as_str()),
        (
            404,
            r#"{"error":{"code":404,"message":"Unable to resolve one or more UIDs","details":"No such name for 'metrics': 'nope'"}}"#
        )
    );
    let (s, b) = http(
        a,
        "GET",
        "/api/search/lookup?m=sys.mem%7Bhost=web09%7D",
        b"",
    )
    .await;
    assert_eq!(
        (s, parse(&b)["error"]["details"].clone()),
        (404, json!("No such name for 'tagv': 'web09'"))
    );
    let (s, b) = http(a, "GET", "/api/search/lookup", b"").await;
    assert_eq!(
        (s, parse(&b)["error"]["message"].clone()),
        (400, json!("Missing parameter <code>m</code>"))
    );
    let (s, b) = http(a, "POST", "/api/search/lookup", br#"{"limit":3}"#).await;
    assert_eq!(
        (s, parse(&b)["error"]["message"].clone()),
        (
            400,
            json!("Missing metric and tags. Please supply at least one value.")
        )
    );
    let (s, b) = http(a, "GET", "/api/search/lookup?m=sys.mem&limit=ten", b"").await;
    assert_eq!(
        (s, parse(&b)["error"]["message"].clone()),
        (400, json!("Unable to convert 'limit' to a valid number"))
    );
    let (s, b) = http(a, "GET", "/api/search/tsmeta?query=x", b"").await;
    assert_eq!(
        (s, parse(&b)["error"]["message"].clone()),
        (400, json!("Searching is not enabled"))
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_last_returns_the_newest_point_per_series() {
    let d = seeded().await;
    let a = d.http();
    let (s, b) = http(
        a,
        "GET",
        "/api/query/last?timeseries=sys.cpu.user%7Bhost=*%7D&resolve",
        b"",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let r = parse(&b);
    let r = r.as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["metric"], "sys.cpu.user");
    assert_eq!(r[0]["tags"], json!({"dc": "lga", "host": "web01"}));
    assert_eq!(
        (r[0]["timestamp"].clone(), r[0]["value"].clone()),
        (json!(1_700_000_060_000i64), json!("12.5"))
    );
    assert_eq!(
        (r[1]["timestamp"].clone(), r[1]["value"].clone()),
        (json!(1_700_000_030_000i64), json!("20"))
    );
    // Without resolve: no names; the tsuid leads back to the same point.
    let (_, b) = http(
        a,
        "GET",
        "/api/query/last?timeseries=sys.mem%7Bhost=web01%7D",
        b"",
    )
    .await;
    let r = parse(&b);
    assert!(
        r[0].get("metric").is_none() && r[0].get("tags").is_none(),
        "{b}"
    );
    let tsuid = r[0]["tsuid"].as_str().unwrap().to_string();
    let (_, b) = http(a, "GET", &format!("/api/query/last?tsuids={tsuid}"), b"").await;
    assert_eq!(
        parse(&b),
        json!([{"timestamp": 1_700_000_000_000i64, "value": "1024", "tsuid": tsuid}])
    );
    // With resolve, a tsuid query names its series from the index.
    let (_, b) = http(
        a,
        "GET",
        &format!("/api/query/last?tsuids={tsuid}&resolve"),
        b"",
    )
    .await;
    assert_eq!(
        parse(&b),
        json!([{"metric": "sys.mem", "timestamp": 1_700_000_000_000i64, "value": "1024",
                "tags": {"host": "web01"}, "tsuid": tsuid}])
    );
    // POST, with back_scan: these points are years old, so nothing is recent.
    let post = json!({"queries": [{"metric": "sys.mem", "tags": {"host": "web01"}}], "resolveNames": true});
    let (_, b) = http(a, "POST", "/api/query/last", post.to_string().as_bytes()).await;
    assert_eq!(parse(&b)[0]["metric"], "sys.mem");
    let (_, b) = http(
        a,
        "GET",
        "/api/query/last?timeseries=sys.mem&back_scan=24",
        b"",
    )
    .await;
    assert_eq!(b, "[]");
    // Errors.
    let (s, b) = http(a, "GET", "/api/query/last", b"").await;
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            r#"{"error":{"code":400,"message":"Missing sub queries"}}"#
        )
    );
    let (s, b) = http(a, "GET", "/api/query/last?timeseries=nope", b"").await;
    assert_eq!(
        (s, parse(&b)["error"]["message"].clone()),
        (400, json!("No such name for 'metrics': 'nope'"))
    );
    let (s, b) = http(
        a,
        "GET",
        "/api/query/last?timeseries=sys.mem&back_scan=x",
        b"",
    )
    .await;
    assert_eq!(
        (s, parse(&b)["error"]["message"].clone()),
        (400, json!("Unable to parse back_scan parameter"))
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_endpoint_errors_and_delete() {
    let d = seeded().await;
    let a = d.http();
    let (s, b) = http(a, "DELETE", "/api/query?start=1h-ago&m=sum:sys.mem", b"").await;
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            r#"{"error":{"code":400,"message":"Bad request","details":"Deleting data is not enabled (tsd.http.query.allow_delete=false)"}}"#
        )
    );
    let body = br#"{"start":1699999999,"delete":true,"queries":[{"metric":"sys.mem","aggregator":"sum"}]}"#;
    let (s, b) = http(a, "POST", "/api/query", body).await;
    assert_eq!(
        (s, parse(&b)["error"]["message"].clone()),
        (400, json!("Bad request"))
    );
    let (s, b) = http(a, "POST", "/api/query", b"{\"start\":").await;
    assert_eq!(
        (s, parse(&b)["error"]["message"].clone()),
        (400, json!("Unable to parse the given JSON"))
    );
    let (s, b) = http(a, "POST", "/api/query", b"").await;
    assert_eq!(
        (s, parse(&b)["error"]["message"].clone()),
        (400, json!("Missing message content"))
    );
    let (s, b) = http(a, "GET", "/api/query?m=sum:sys.mem", b"").await;
    assert_eq!(
        (s, parse(&b)["error"]["message"].clone()),
        (400, json!("Missing parameter <code>start</code>"))
    );
    assert_eq!(http(a, "PUT", "/api/query", b"").await.0, 405);
    // GET and POST agree.
    let get = query_dps(a, "sum:sys.mem", 1_699_999_999, 1_700_000_001).await;
    assert_eq!(get, vec![(1_700_000_000, json!(1024))]);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_endpoints_answer_in_opentsdb_shapes() {
    let d = seeded().await;
    let a = d.http();
    let dropped = r#"{"status":"200","message":"Caches dropped"}"#.to_string();
    assert_eq!(
        http(a, "GET", "/api/dropcaches", b"").await,
        (200, dropped.clone())
    );
    assert_eq!(
        http(a, "DELETE", "/api/dropcaches", b"").await,
        (200, dropped)
    );
    assert_eq!(http(a, "POST", "/api/dropcaches", b"").await.0, 405);

    let (s, b) = http(a, "GET", "/api/config", b"").await;
    assert_eq!(s, 200);
    let config = parse(&b);
    assert_eq!(config["tsd.storage.max_tags"], "8");
    assert_eq!(config["rtsd.overflow"], "drop-oldest");
    assert!(config.as_object().unwrap().values().all(Json::is_string));

    let (s, b) = http(a, "GET", "/api/version", b"").await;
    assert_eq!((s, parse(&b)["version"].clone()), (200, json!("2.4.1")));

    let (s, b) = http(a, "GET", "/api/stats", b"").await;
    assert_eq!(s, 200);
    let stats = parse(&b);
    let http_points = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["metric"] == "tsd.rtsd.points.received" && l["tags"]["source"] == "http")
        .unwrap();
    assert_eq!(http_points["value"], "4");

    // uid/assign: rtsd has no per-name UIDs (see http::uid).
    let (s, b) = http(
        a,
        "GET",
        "/api/uid/assign?metric=sys.mem,new.metric,bad%20name",
        b"",
    )
    .await;
    assert_eq!(s, 400);
    let r = parse(&b);
    assert_eq!(r["metric"], json!({}));
    let errors = &r["metric_errors"];
    assert_eq!(
        errors["bad name"],
        "Invalid metric (\"bad name\"): illegal character:  "
    );
    assert!(errors["sys.mem"]
        .as_str()
        .unwrap()
        .starts_with("Name already exists with UID: "));
    assert!(errors["new.metric"]
        .as_str()
        .unwrap()
        .starts_with("Name not assigned"));
    let (s, b) = http(
        a,
        "POST",
        "/api/uid/assign",
        br#"{"tagk":["host"],"tagz":["x"]}"#,
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(parse(&b)["tagz_errors"]["x"], "Unknown type name");
    let (s, b) = http(a, "GET", "/api/uid/assign", b"").await;
    assert_eq!(
        (s, b.as_str()),
        (
            400,
            r#"{"error":{"code":400,"message":"Missing values to assign UIDs"}}"#
        )
    );
    assert_eq!(http(a, "GET", "/api/uid/tsmeta?tsuid=01", b"").await.0, 501);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_time_out_with_503() {
    let b = bench(
        1000,
        HttpLimits {
            request_timeout: Duration::from_millis(50),
            ..HttpLimits::default()
        },
    );
    // A sync put whose batch nobody commits outlives the request timeout.
    let (s, _, body) = call(&b.app, "POST", "/api/put?sync", &[], ONE).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        text(&body),
        r#"{"error":{"code":503,"message":"Request timed out","details":"The request did not complete within 50 ms"}}"#
    );
}
