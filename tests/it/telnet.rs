//! The telnet protocol over TCP: every conformance vector from
//! `protocol/vectors/telnet.jsonl`, mixed streams, framing limits, replies
//! that never block ingest, and HTTP on the telnet port.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use rtsd::model::{SeriesKey, Value};
use rtsd::protocol::{DIEDIEDIE_REPLY, HELP_REPLY};
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

fn vectors() -> Vec<Json> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/vectors/telnet.jsonl");
    std::fs::read_to_string(path)
        .expect("vectors file")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("vector is JSON"))
        .collect()
}

fn expected_value(point: &Json) -> Value {
    let v = &point["value"];
    if point["int"].as_bool().expect("int flag") {
        Value::Int(v.as_i64().expect("integer value"))
    } else {
        Value::Float(v.as_f64().expect("float value"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_conformance_vector_over_tcp() {
    let all = vectors();
    assert!(all.len() >= 100, "only {} vectors", all.len());
    // One daemon per distinct option set the vectors ask for.
    let mut by_options: BTreeMap<String, Vec<&Json>> = BTreeMap::new();
    for v in &all {
        by_options
            .entry(v.get("options").map(|o| o.to_string()).unwrap_or_default())
            .or_default()
            .push(v);
    }
    let mut checked = 0;
    for (options, vectors) in by_options {
        let opts: Json = serde_json::from_str(&options).unwrap_or(Json::Null);
        let d = TestDaemon::start_with(|s| {
            // The vectors reach OpenTSDB's last timestamps (2286); the
            // `max-future` limit is rtsd's own.
            s.max_future = rtsd::config::Span(i64::MAX);
            if let Some(n) = opts.get("max_tags").and_then(Json::as_u64) {
                s.max_tags = n as usize;
            }
            if let Some(b) = opts.get("require_tags").and_then(Json::as_bool) {
                s.require_tags = b;
            }
            if let Some(c) = opts.get("allow_special_chars").and_then(Json::as_str) {
                s.allow_special_chars = c.to_string();
            }
        })
        .await;
        for v in vectors {
            check_vector(&d, v).await;
            checked += 1;
        }
        d.stop().await;
    }
    assert_eq!(checked, all.len());
}

async fn check_vector(d: &TestDaemon, v: &Json) {
    let name = v["name"].as_str().unwrap_or("?");
    let line = v["line"].as_str().expect("line");
    let stored_before = d.daemon.stats.points_stored.load(Relaxed);
    // An upper-case first byte makes the connection HTTP, as in OpenTSDB;
    // such vectors are about later lines, so a `version` goes first.
    let uppercase = line.as_bytes().first().is_some_and(u8::is_ascii_uppercase);
    let mut input = if uppercase {
        b"version\n".to_vec()
    } else {
        Vec::new()
    };
    input.extend_from_slice(line.as_bytes());
    input.push(b'\n');
    let mut reply = String::from_utf8_lossy(&exchange(d.telnet(), &input).await).into_owned();
    if uppercase {
        let version = rtsd::protocol::version_reply();
        reply = reply
            .strip_prefix(&version)
            .expect("version reply first")
            .to_string();
    }
    match v["expect"].as_str().expect("expect") {
        "reply" => {
            let want = format!("{}\n", v["reply"].as_str().expect("reply text"));
            assert_eq!(reply, want, "vector {name}: {line:?}");
        }
        "store" => {
            assert_eq!(reply, "", "vector {name}: {line:?} must be silent");
            d.wait_stored(stored_before + 1).await;
            let p = &v["point"];
            let key = series_key(p);
            let ts = p["timestamp_ms"].as_i64().expect("timestamp_ms");
            let stored = d.points(&key);
            let point = stored
                .iter()
                .find(|dp| dp.timestamp_ms == ts)
                .unwrap_or_else(|| panic!("vector {name}: {key} @ {ts} not stored: {stored:?}"));
            assert_eq!(point.value, expected_value(p), "vector {name}: {line:?}");
        }
        "command" => {
            let cmd = v["command"].as_str().expect("command");
            match cmd {
                "version" => assert!(reply.starts_with("rtsd "), "{reply:?}"),
                "help" => assert_eq!(reply, HELP_REPLY),
                "dropcaches" => assert_eq!(reply, "Caches dropped.\n"),
                "diediedie" => assert_eq!(reply, DIEDIEDIE_REPLY),
                "exit" => assert_eq!(reply, ""),
                // This daemon has no tokens: every `auth` succeeds (the
                // replies with tokens are tests/it/auth.rs's).
                "auth" | "auth-malformed" => assert_eq!(reply, "AUTH_SUCCESS.\n"),
                "stats" => assert!(
                    reply
                        .lines()
                        .all(|l| l.starts_with("tsd.") && l.contains(" host=")),
                    "{reply:?}"
                ),
                other => panic!("vector {name}: unknown command {other}"),
            }
        }
        other => panic!("vector {name}: unknown expectation {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_stream_stores_every_valid_point_and_answers_every_invalid_one() {
    let d = TestDaemon::start().await;
    let mut text = String::new();
    let (mut valid, mut invalid) = (0u64, 0u64);
    for i in 0..20_000u64 {
        match i % 10 {
            3 => {
                text.push_str(&format!(
                    "put mixed.bad {} NaN host=h{}\n",
                    1_700_000_000 + i,
                    i % 7
                ));
                invalid += 1;
            }
            7 => {
                text.push_str("put mixed.bad\n");
                invalid += 1;
            }
            _ => {
                text.push_str(&format!(
                    "put mixed.good {} {} host=h{}\r\n",
                    1_700_000_000 + i,
                    i,
                    i % 7
                ));
                valid += 1;
            }
        }
    }
    let reply = exchange(d.telnet(), text.as_bytes()).await;
    let reply = String::from_utf8(reply).unwrap();
    assert_eq!(
        reply.lines().count() as u64,
        invalid,
        "one reply per invalid line"
    );
    assert_eq!(
        reply
            .lines()
            .filter(|l| l.starts_with("put: invalid value: Invalid character 'N' in NaN"))
            .count(),
        2000
    );
    d.wait_stored(valid).await;
    let mut total = 0;
    for h in 0..7 {
        let pts = d.points(&SeriesKey::new(
            "mixed.good",
            [("host", format!("h{h}").as_str())],
        ));
        for p in &pts {
            let i = p.timestamp_ms / 1000 - 1_700_000_000;
            assert_eq!(p.value, Value::Int(i));
            assert_eq!(i % 7, h);
        }
        total += pts.len() as u64;
    }
    assert_eq!(total, valid);
    assert_eq!(d.daemon.stats.rejected_total(), invalid);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_line_is_answered_and_the_connection_goes_on() {
    let d = TestDaemon::start_with(|s| s.max_line_bytes = 256).await;
    let long = format!("put long.metric 1700000000 1 host={}\n", "x".repeat(10_000));
    let text = format!("{long}put after.long 1700000000 7 host=a\nversion\n");
    let reply = String::from_utf8(exchange(d.telnet(), text.as_bytes()).await).unwrap();
    let mut lines = reply.lines();
    let first = lines.next().expect("an error reply");
    assert!(first.starts_with("line too long: "), "{first}");
    assert!(first.ends_with("maximum allowed: 256"), "{first}");
    assert!(lines.next().expect("version reply").starts_with("rtsd "));
    d.wait_stored(1).await;
    assert_eq!(
        d.points(&SeriesKey::new("after.long", [("host", "a")]))
            .len(),
        1
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_error_replies_are_dropped_and_counted_not_blocking_ingest() {
    let d = TestDaemon::start_with(|s| s.reply_buffer_bytes = 1024).await;
    let mut s = TcpStream::connect(d.telnet()).await.unwrap();
    // Far more error text than any socket buffer holds, never read.
    let bad = "put x 1 NaN host=a\n".repeat(200_000);
    s.write_all(bad.as_bytes()).await.unwrap();
    s.write_all(b"put after.errors 1700000000 1 host=a\n")
        .await
        .unwrap();
    d.wait_stored(1).await;
    assert_eq!(
        d.points(&SeriesKey::new("after.errors", [("host", "a")]))
            .len(),
        1
    );
    assert!(d.daemon.stats.replies_dropped.load(Relaxed) > 0);
    assert_eq!(d.daemon.stats.rejected_total(), 200_000);
    drop(s);
    d.stop().await;
}

/// Asked-for replies are never dropped: far more of them than
/// reply-buffer-bytes, sent in one go and read only meanwhile, all arrive
/// in order, and the put behind them is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_asked_reply_arrives_past_the_reply_buffer() {
    const ASKED: usize = 20_000;
    let d = TestDaemon::start_with(|s| s.reply_buffer_bytes = 1024).await;
    let s = TcpStream::connect(d.telnet()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let mut text = "version\nhelp\n".repeat(ASKED);
    text.push_str("put after.asked 1700000000 1 host=a\nexit\n");
    let writer = tokio::spawn(async move { wr.write_all(text.as_bytes()).await });
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, rd.read_to_end(&mut out))
        .await
        .expect("the server answers everything and closes")
        .unwrap();
    writer.await.unwrap().unwrap();
    let reply = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = reply.lines().collect();
    assert_eq!(lines.len(), 3 * ASKED, "version is two lines, help one");
    for asked in lines.chunks(3) {
        assert!(asked[0].starts_with("rtsd "), "{asked:?}");
        assert!(asked[2].starts_with("available commands:"), "{asked:?}");
    }
    d.wait_stored(1).await;
    assert_eq!(d.daemon.stats.replies_dropped.load(Relaxed), 0);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_is_answered_at_once_after_puts() {
    let d = TestDaemon::start().await;
    let mut s = TcpStream::connect(d.telnet()).await.unwrap();
    s.write_all(b"put v.m 1700000000 1 host=a\nversion\n")
        .await
        .unwrap();
    assert!(read_line(&mut s).await.starts_with("rtsd "));
    assert!(!read_line(&mut s).await.is_empty());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uppercase_first_byte_speaks_http_on_the_telnet_port() {
    let d = TestDaemon::start().await;
    let (status, body) = http(d.telnet(), "GET", "/api/version", b"").await;
    assert_eq!(status, 200);
    let v: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], "2.4.1");
    d.stop().await;
}
