//! rtsd as a service: the systemd notification protocol spoken by the real
//! binary, the Prometheus `/metrics` exposition and `/api/rtsd/stale`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value as Json};
use tokio::net::UnixDatagram;

use crate::support::*;

/// The service manager's end of `$NOTIFY_SOCKET`.
struct Manager {
    socket: UnixDatagram,
    path: String,
}

impl Manager {
    fn bind(dir: &Path) -> Manager {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        Manager {
            socket,
            path: path.to_str().unwrap().to_string(),
        }
    }

    async fn recv(&self) -> String {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(DEADLINE, self.socket.recv(&mut buf))
            .await
            .expect("notification arrives")
            .unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }
}

#[tokio::test]
async fn the_binary_reports_ready_then_stopping_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::bind(dir.path());
    let data = dir.path().join("data");
    let daemon = Spawned::start_with_env(&data, &[("NOTIFY_SOCKET", &manager.path)]).await;

    let ready = manager.recv().await;
    assert_eq!(
        ready,
        format!(
            "READY=1\nSTATUS=serving telnet on {}, http on {}\n",
            daemon.telnet, daemon.http
        )
    );
    // A manager may stop the service the moment it hears READY=1: the
    // signal handlers must be in place by then, or SIGTERM kills the
    // process before it drains.
    daemon.signal("-TERM");
    assert_eq!(
        manager.recv().await,
        "STOPPING=1\nSTATUS=draining the queue and flushing the store\n"
    );
    assert!(daemon.wait().await.success());
}

#[tokio::test]
async fn the_binary_answers_on_both_ports_once_ready_and_pings_the_watchdog() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::bind(dir.path());
    let data = dir.path().join("data");
    let daemon = Spawned::start_with_env(
        &data,
        &[
            ("NOTIFY_SOCKET", &manager.path),
            ("WATCHDOG_USEC", "200000"),
        ],
    )
    .await;
    assert!(manager.recv().await.starts_with("READY=1\n"));
    // READY=1 promises both ports answer.
    tokio::net::TcpStream::connect(daemon.telnet).await.unwrap();
    let (status, _) = http(daemon.http, "GET", "/api/version", b"").await;
    assert_eq!(status, 200);

    assert_eq!(manager.recv().await, "WATCHDOG=1\n");
    daemon.signal("-TERM");
    loop {
        let message = manager.recv().await;
        if message != "WATCHDOG=1\n" {
            assert!(message.starts_with("STOPPING=1\n"), "{message}");
            break;
        }
    }
    assert!(daemon.wait().await.success());
}

/// Samples of an exposition by `name{labels}`, checking that every sample
/// belongs to a family announced by `# TYPE` (with `# HELP`) before it.
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut typed: Vec<(String, String)> = Vec::new();
    let mut helped = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.push(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "histogram", "untyped"].contains(&kind),
                "{line}"
            );
            typed.push((name.to_string(), kind.to_string()));
        } else {
            let (series, value) = line.rsplit_once(' ').expect("sample has a value");
            let name = series.split('{').next().unwrap();
            let (family, kind) = typed.last().expect("sample after a TYPE line");
            let belongs = match kind.as_str() {
                "histogram" => ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(family.as_str())),
                _ => name == family,
            };
            assert!(belongs, "{name} is not in family {family}");
            assert!(helped.contains(family), "no HELP for {family}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            }
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            assert!(
                samples.insert(series.to_string(), value).is_none(),
                "{line}"
            );
        }
    }
    let mut names: Vec<&String> = typed.iter().map(|(n, _)| n).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), typed.len(), "a family is announced twice");
    samples
}

/// Writes `old.metric` two hours ago, `fresh.metric` a minute ago and
/// `new.metric` now; returns their timestamps in seconds.
async fn ingest_three_ages(d: &TestDaemon) -> [i64; 3] {
    let now = rtsd::model::now_ms() / 1000;
    let ages = [now - 7200, now - 60, now];
    let lines = format!(
        "put old.metric {} 1 host=a\nput fresh.metric {} 2 host=b\nput new.metric {} 3 host=c\n",
        ages[0], ages[1], ages[2]
    );
    exchange(d.telnet(), lines.as_bytes()).await;
    d.wait_stored(3).await;
    ages
}

#[tokio::test]
async fn metrics_export_counters_storage_latency_and_stale_series() {
    let d = TestDaemon::start_with(|s| s.stale_after_secs = 1800).await;
    ingest_three_ages(&d).await;
    let (status, body) = http(
        d.http(),
        "GET",
        "/api/query?start=3h-ago&m=sum:new.metric",
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let (status, text) = http(d.http(), "GET", "/metrics", b"").await;
    assert_eq!(status, 200, "{text}");
    let m = parse_exposition(&text);
    let get = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert_eq!(get("rtsd_points_stored_total"), 3.0);
    assert_eq!(get(r#"rtsd_points_received_total{source="telnet"}"#), 3.0);
    assert_eq!(get(r#"rtsd_points_received_total{source="http"}"#), 0.0);
    assert_eq!(
        get(r#"rtsd_points_dropped_total{reason="queue_full"}"#),
        0.0
    );
    assert_eq!(get("rtsd_queue_pushed_points_total"), 3.0);
    // Everything stored, so the queue is empty, in points and batches.
    assert_eq!(get(r#"rtsd_queue_depth{unit="points"}"#), 0.0);
    assert_eq!(get(r#"rtsd_queue_depth{unit="batches"}"#), 0.0);
    assert_eq!(get("rtsd_storage_series"), 3.0);
    assert_eq!(get("rtsd_queries_total"), 1.0);
    assert_eq!(get(r#"rtsd_query_duration_seconds_bucket{le="+Inf"}"#), 1.0);
    assert_eq!(get("rtsd_query_duration_seconds_count"), 1.0);
    assert_eq!(get(r#"rtsd_stale_series{older_than="30m"}"#), 1.0);
    let version = format!(
        r#"rtsd_build_info{{version="{}"}}"#,
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(get(&version), 1.0);
    assert!(
        m.keys()
            .any(|k| k.starts_with("rtsd_storage_column_family_bytes{cf=")),
        "{text}"
    );
    assert!(!text.contains("untyped"), "{text}");
}

/// Issue 9: `/metrics` loaded every series and opened an iterator per day
/// partition on every scrape. Now scrapes, `/api/stats` and telnet `stats`
/// show the latest survey of the store; with hundreds of series over a
/// month of day partitions, many reads within `stats-refresh-secs` walk
/// the store once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_of_a_big_store_share_one_survey() {
    const SERIES: i64 = 300;
    const DAYS: i64 = 30;
    let d = TestDaemon::start_with(|s| s.stats_refresh_secs = 3600).await;
    let first = rtsd::model::now_ms() / 1000 - (DAYS + 2) * 86_400;
    let mut lines = String::new();
    for day in 0..DAYS {
        for host in 0..SERIES {
            let ts = first + day * 86_400;
            lines.push_str(&format!("put big.m {ts} {day} host=h{host}\n"));
        }
    }
    exchange(d.telnet(), lines.as_bytes()).await;
    d.wait_stored((SERIES * DAYS) as u64).await;
    let stats = &d.daemon.stats;
    poll(|| d.daemon.store.stats().partitions == DAYS as usize).await;

    let scrape = || async {
        let (status, text) = http(d.http(), "GET", "/metrics", b"").await;
        assert_eq!(status, 200, "{text}");
        parse_exposition(&text)
    };
    let m = scrape().await;
    assert_eq!(m["rtsd_storage_series"], SERIES as f64);
    assert_eq!(m["rtsd_storage_partitions"], DAYS as f64);
    assert_eq!(m[r#"rtsd_stale_series{older_than="1h"}"#], SERIES as f64);
    assert_eq!(m["rtsd_storage_surveys_total"], 1.0);
    for _ in 0..20 {
        assert_eq!(scrape().await["rtsd_storage_surveys_total"], 1.0);
        let (status, _) = http(d.http(), "GET", "/api/stats", b"").await;
        assert_eq!(status, 200);
        let reply = String::from_utf8(exchange(d.telnet(), b"stats\n").await).unwrap();
        assert!(reply.contains("tsd.rtsd.storage.surveys "), "{reply}");
    }
    assert_eq!(stats.surveys.load(std::sync::atomic::Ordering::Relaxed), 1);
    d.stop().await;
}

#[tokio::test]
async fn stale_lists_series_older_than_the_period_oldest_first() {
    let d = TestDaemon::start().await;
    let [old, fresh, _] = ingest_three_ages(&d).await;
    let get = |path: String| {
        let addr = d.http();
        async move {
            let (status, body) = http(addr, "GET", &path, b"").await;
            let json: Json = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
            (status, json)
        }
    };
    let strip_tsuids = |mut v: Json| {
        for entry in v.as_array_mut().unwrap() {
            let tsuid = entry.as_object_mut().unwrap().remove("tsuid").unwrap();
            let tsuid = tsuid.as_str().unwrap();
            assert!(tsuid.len() == 16 && tsuid.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        v
    };

    // The default period is stale-after-secs, an hour.
    let (status, body) = get("/api/rtsd/stale".into()).await;
    assert_eq!(status, 200);
    let old_entry =
        json!({"metric": "old.metric", "tags": {"host": "a"}, "lastTimestamp": old * 1000});
    assert_eq!(strip_tsuids(body), json!([old_entry]));

    let (_, body) = get("/api/rtsd/stale?older_than=30s".into()).await;
    let fresh_entry =
        json!({"metric": "fresh.metric", "tags": {"host": "b"}, "lastTimestamp": fresh * 1000});
    assert_eq!(strip_tsuids(body), json!([old_entry, fresh_entry]));

    let (_, body) = get("/api/rtsd/stale?older_than=30s&limit=1".into()).await;
    assert_eq!(strip_tsuids(body), json!([old_entry]));
    let (_, body) = get("/api/rtsd/stale?older_than=30s&metric=fresh.metric".into()).await;
    assert_eq!(strip_tsuids(body), json!([fresh_entry]));
    let (_, body) = get("/api/rtsd/stale?older_than=3h".into()).await;
    assert_eq!(body, json!([]));

    let (status, body) = get("/api/rtsd/stale?older_than=1x".into()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["message"], "Invalid duration (suffix): 1x");
    let (status, body) = get("/api/rtsd/stale?limit=0".into()).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "limit: \"0\" is not a positive integer"
    );
}

#[tokio::test]
async fn the_binary_serves_on_sockets_passed_by_systemd() {
    // systemd's own tool for running a socket-activated service by hand.
    // `.ci/deps` installs it (Debian package `systemd`).
    let activate = Path::new("/usr/bin/systemd-socket-activate");
    assert!(
        activate.exists(),
        "{} is missing: run .ci/deps",
        activate.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::bind(dir.path());
    let telnet: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http_addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // The configured addresses are never bound: the passed sockets win.
    let unused: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let child = std::process::Command::new(activate)
        .args(["-l", &http_addr.to_string(), "-l", &telnet.to_string()])
        .arg("--fdname=http:telnet")
        .arg(format!("--setenv=NOTIFY_SOCKET={}", manager.path))
        .arg("--setenv=RUST_LOG=warn")
        .arg(binary())
        .args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen", &unused[0], "--http-listen", &unused[1]])
        .spawn()
        .expect("systemd-socket-activate starts");
    let daemon = Spawned {
        child,
        telnet,
        http: http_addr,
    };
    // The tool starts the service on the first connection.
    let now = rtsd::model::now_ms() / 1000;
    let put = format!("put activated.metric {now} 7 host=a\n");
    let start = std::time::Instant::now();
    let mut conn = loop {
        match tokio::net::TcpStream::connect(telnet).await {
            Ok(conn) => break conn,
            Err(_) => {
                assert!(start.elapsed() < DEADLINE, "sockets not listening");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    };
    tokio::io::AsyncWriteExt::write_all(&mut conn, put.as_bytes())
        .await
        .unwrap();
    drop(conn);

    assert_eq!(
        manager.recv().await,
        format!("READY=1\nSTATUS=serving telnet on {telnet}, http on {http_addr}\n")
    );
    for addr in &unused {
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "{addr}"
        );
    }
    poll_stat(&daemon).await;
    let (status, body) = http(
        http_addr,
        "GET",
        "/api/query?start=1h-ago&m=sum:activated.metric",
        b"",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let result: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(result[0]["dps"][now.to_string()], json!(7));

    daemon.signal("-TERM");
    assert!(manager.recv().await.starts_with("STOPPING=1\n"));
    assert!(daemon.wait().await.success());
}

/// Waits until the spawned daemon stored its first point.
async fn poll_stat(daemon: &Spawned) {
    let start = std::time::Instant::now();
    while daemon.stat("tsd.rtsd.points.stored", "").await < 1 {
        assert!(start.elapsed() < DEADLINE, "point not stored");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
