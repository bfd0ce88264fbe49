//! Connection limits and timeouts (issue 9): idle connections give their
//! slots back, so collectors are served again.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rtsd::model::SeriesKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// The soft limit on open files, from `/proc/self/limits`.
fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_a_fresh_collector_is_served() {
    // Both ends of every connection live in this process; leave room for
    // RocksDB's files.
    let n = 10_000.min(open_files_limit().saturating_sub(1_000) / 2);
    // Long enough to open them all before the first one times out.
    let idle_timeout = Duration::from_secs(5);
    let d = TestDaemon::start_with(|s| {
        s.max_connections = n;
        s.idle_timeout = rtsd::config::Span(idle_timeout.as_millis() as i64);
    })
    .await;
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(d.telnet()).await.unwrap();
        // One byte, so each is a telnet connection waiting for the rest.
        s.write_all(b"p").await.unwrap();
        idle.push(s);
    }
    let stats = &d.daemon.stats;
    poll(|| stats.connections_open.load(Relaxed) == n as u64).await;

    // Over the limit: closed at once and counted.
    let mut late = TcpStream::connect(d.telnet()).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(DEADLINE, late.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert_eq!(stats.connections_refused.load(Relaxed), 1);

    // After the timeout the idle ones are gone and a collector gets in.
    poll(|| stats.connections_open.load(Relaxed) == 0).await;
    let mut collector = TcpStream::connect(d.telnet()).await.unwrap();
    collector
        .write_all(b"put idle.fresh 1700000000 1 host=a\nversion\n")
        .await
        .unwrap();
    assert!(read_line(&mut collector).await.starts_with("rtsd "));
    d.wait_stored(1).await;
    assert_eq!(
        d.points(&SeriesKey::new("idle.fresh", [("host", "a")]))
            .len(),
        1
    );
    // The idle connections were closed by the server.
    let s = idle.last_mut().unwrap();
    assert!(matches!(s.read(&mut byte).await, Ok(0) | Err(_)));
    d.stop().await;
}

/// Everything the server sends on `s` until it closes the connection.
async fn until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .unwrap_or_default();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_and_idle_keep_alive_http_connections_are_closed() {
    let d = TestDaemon::start_with(|s| s.idle_timeout = rtsd::config::Span(500)).await;
    for addr in [d.http(), d.telnet()] {
        // A header that never ends.
        let mut loris = TcpStream::connect(addr).await.unwrap();
        loris
            .write_all(b"GET /api/version HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        let reply = until_closed(&mut loris).await;
        assert!(!reply.contains("200 OK"), "{reply}");
        // A kept-alive connection is answered, then closed when idle.
        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let reply = until_closed(&mut kept).await;
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    }
    let stats = &d.daemon.stats;
    poll(|| stats.connections_open.load(Relaxed) == 0).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_covers_both_ports() {
    let d = TestDaemon::start_with(|s| s.max_connections = 2).await;
    let stats = &d.daemon.stats;
    let _telnet = TcpStream::connect(d.telnet()).await.unwrap();
    let _http = TcpStream::connect(d.http()).await.unwrap();
    poll(|| stats.connections_open.load(Relaxed) == 2).await;
    for addr in [d.http(), d.telnet()] {
        let mut over = TcpStream::connect(addr).await.unwrap();
        assert_eq!(until_closed(&mut over).await, "");
    }
    assert_eq!(stats.connections_refused.load(Relaxed), 2);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_too_far_in_the_future_are_refused_and_create_no_partitions() {
    let d = TestDaemon::start().await;
    let families = || -> BTreeSet<String> {
        let disk = d.daemon.store.disk_usage();
        disk.column_families.into_iter().map(|c| c.name).collect()
    };
    let before = families();
    let now = rtsd::model::now_ms() / 1000;
    let day = 86_400;
    // 5,000 points one day apart, from two days ahead on.
    let mut text: String = (2..5002)
        .map(|i| format!("put future.m {} 1 host=a\n", now + i * day))
        .collect();
    // Then one within `max-future`, which seals into a partition at once.
    let allowed = now + day - 3600;
    text.push_str(&format!("put future.m {allowed} 1 host=a\n"));
    let replies = String::from_utf8(exchange(d.telnet(), text.as_bytes()).await).unwrap();
    assert_eq!(
        replies.lines().next().unwrap(),
        format!(
            "put: illegal argument: timestamp too far in the future: {}",
            now + 2 * day
        )
    );
    let body = format!(
        r#"{{"metric":"future.m","timestamp":{},"value":1,"tags":{{"host":"a"}}}}"#,
        now + 2 * day
    );
    let (status, reply) = http(d.http(), "POST", "/api/put?details", body.as_bytes()).await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply.contains("timestamp too far in the future"), "{reply}");
    let stats = &d.daemon.stats;
    assert_eq!(stats.rejected_count("future_timestamp"), 5001);
    poll(|| stats.chunks_sealed.load(Relaxed) == 1).await;
    assert_eq!(d.daemon.store.stats().partitions, 1);
    // The only new families are the allowed point's block day, rollup
    // month and rollup year.
    let date = chrono::DateTime::from_timestamp(allowed, 0).unwrap();
    let expected: BTreeSet<String> = [
        date.format("blocks_%Y%m%d"),
        date.format("rollup_1h_%Y%m"),
        date.format("rollup_1d_%Y"),
    ]
    .iter()
    .map(|n| n.to_string())
    .collect();
    let new: BTreeSet<String> = families().difference(&before).cloned().collect();
    assert!(new.is_subset(&expected), "{new:?}");
    d.stop().await;
}

/// Queries that would build billions of buckets or walk the calendar for
/// minutes are refused before anything is built, and counted by limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_bombs_are_refused_at_once() {
    let d = TestDaemon::start().await;
    let mut lines = String::new();
    for host in 0..40 {
        lines.push_str(&format!("put bomb.m 1700000000 1 host=h{host}\n"));
    }
    exchange(d.telnet(), lines.as_bytes()).await;
    d.wait_stored(40).await;
    let ten_years = 1_700_000_000 - 10 * 365 * 86_400;
    let bombs = [
        // 1 ms buckets over 25 years: 8e11 buckets.
        (
            "GET",
            "/api/query?start=1000000000&end=1800000000&m=sum:1ms-sum-zero:bomb.m".to_string(),
            String::new(),
            400,
            "downsample_buckets",
        ),
        // Calendar days from 1970 to i64::MAX ms.
        (
            "GET",
            "/api/query?start=1&end=9223372036854775807&m=sum:1dc-sum:bomb.m".to_string(),
            String::new(),
            400,
            "downsample_buckets",
        ),
        (
            "POST",
            "/api/query".to_string(),
            r#"{"start":1,"end":"9223372036854775807","useCalendar":true,
                "queries":[{"aggregator":"sum","metric":"bomb.m","downsample":"1d-sum-zero"}]}"#
                .to_string(),
            400,
            "downsample_buckets",
        ),
        // Ten years at 1m is a fine grid, but not for 40 series at once:
        // 5.3 M buckets × 40 > 200 M.
        (
            "GET",
            format!("/api/query?start={ten_years}&end=1700000060&m=sum:1m-avg:bomb.m"),
            String::new(),
            413,
            "query_buckets",
        ),
    ];
    let stats = &d.daemon.stats;
    for (method, path, body, status, limit) in bombs {
        let before = stats.query_refused_count(limit);
        let started = std::time::Instant::now();
        let (got, reply) = http(d.http(), method, &path, body.as_bytes()).await;
        let took = started.elapsed();
        eprintln!("{method} {path}: {got} in {took:?}");
        assert_eq!(got, status, "{path}: {reply}");
        let error: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(error["error"]["code"], status, "{reply}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("longer downsample interval"), "{reply}");
        assert!(took < Duration::from_secs(5), "{path} took {took:?}");
        assert_eq!(stats.query_refused_count(limit), before + 1, "{path}");
    }
    // The same series over one day at 1m is answered.
    let path = "/api/query?start=1699990000&end=1700000060&m=sum:1m-avg:bomb.m";
    let (status, reply) = http(d.http(), "GET", path, b"").await;
    assert_eq!(status, 200, "{reply}");
    d.stop().await;
}

/// A client that sends a query with a large answer and never reads it is
/// disconnected after `request-timeout`; the thread writing the answer is
/// freed, and other queries are answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answer_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let d = Spawned::start_with(dir.path(), &["--request-timeout", "1s"], &[]).await;
    let mut lines = String::new();
    for host in 0..100 {
        lines.push_str(&format!("put stuck.m 1700000000 1 host=h{host}\n"));
    }
    lines.push_str("version\n");
    let mut telnet = TcpStream::connect(d.telnet).await.unwrap();
    telnet.write_all(lines.as_bytes()).await.unwrap();
    read_line(&mut telnet).await;
    d.wait_stat("tsd.rtsd.points.stored", "", |n| n >= 100)
        .await;
    // 100 series of three hours of 1 s buckets filled with zeros: about
    // 18 MB of JSON, far more than the socket buffers hold.
    let request = "GET /api/query?start=1699995000&end=1700005800&m=none:1s-sum-zero:stuck.m \
                   HTTP/1.1\r\nHost: x\r\n\r\n";
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(d.http).await.unwrap();
    stuck.write_all(request.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    d.wait_stat("tsd.rtsd.query.answers", "streaming", |n| n == 1)
        .await;
    // Another query is answered while the stuck answer waits.
    let (status, reply) = http(
        d.http,
        "GET",
        "/api/query?start=1699995000&end=1700005800&m=sum:1h-sum:stuck.m",
        b"",
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    d.wait_stat("tsd.rtsd.query.answers", "streaming", |n| n == 0)
        .await;
    let freed = started.elapsed();
    eprintln!("the stuck answer's thread was freed after {freed:?}");
    assert_eq!(d.stat("tsd.rtsd.query.answers", "abandoned").await, 1);
    assert_eq!(
        d.stat("tsd.connectionmgr.exceptions", "write_timeout")
            .await,
        1
    );
    // The server closed the connection: reading now ends, cut short.
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stuck.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "{read:?}");
    assert!(!answer.ends_with(b"]"), "{} bytes", answer.len());
    d.signal("-TERM");
    assert!(d.wait().await.success());
}

/// A put beyond `max-concurrent-puts` gets 503 with Retry-After at once;
/// the running one completes, and puts are taken again after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_beyond_the_concurrency_limit_get_503_with_retry_after() {
    let d = TestDaemon::start_with(|s| s.max_concurrent_puts = 1).await;
    let point = br#"{"metric":"puts.m","timestamp":1700000000,"value":1,"tags":{"host":"a"}}"#;
    // A put whose body is still arriving holds the only slot.
    let head = format!(
        "POST /api/put HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        point.len()
    );
    let open_slow = || async {
        let mut slow = TcpStream::connect(d.http()).await.unwrap();
        slow.write_all(head.as_bytes()).await.unwrap();
        slow.write_all(&point[..10]).await.unwrap();
        slow
    };
    let mut slow = open_slow().await;
    let mut lost = 0;
    let stats = &d.daemon.stats;
    let start = std::time::Instant::now();
    let refused = loop {
        let mut s = TcpStream::connect(d.http()).await.unwrap();
        let req = format!("{head}{}", String::from_utf8_lossy(point));
        s.write_all(req.as_bytes()).await.unwrap();
        let reply = until_closed(&mut s).await;
        if reply.starts_with("HTTP/1.1 503") {
            break reply;
        }
        // Under load the slow put's handler can start while a fast one
        // holds the slot: it is refused at once and holds nothing. Then
        // it starts over.
        if matches!(slow.try_read(&mut [0u8; 1]), Ok(n) if n > 0) {
            lost += 1;
            slow = open_slow().await;
        }
        assert!(start.elapsed() < DEADLINE, "never refused: {reply}");
    };
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{refused}"
    );
    assert!(refused.contains("Too many concurrent writes"), "{refused}");
    assert_eq!(stats.puts_refused.load(Relaxed), 1 + lost);
    slow.write_all(&point[10..]).await.unwrap();
    assert!(until_closed(&mut slow).await.starts_with("HTTP/1.1 204"));
    let (status, body) = http(d.http(), "POST", "/api/put", point).await;
    assert_eq!(status, 204, "{body}");
    d.stop().await;
}

/// The resident memory of process `pid` in bytes, from `/proc/<pid>/status`.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Issue 9: `stats` repeated in one read by a client that never reads
/// queued a reply per line (30–300 MB per connection). Now a connection
/// handles no line while its unsent replies are past reply-buffer-bytes,
/// so a flood on several connections leaves the real binary's memory
/// where it was, a fresh collector is served meanwhile, and once the
/// flooders close everything is as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_flood_from_non_reading_clients_keeps_memory_bounded() {
    const FLOODERS: usize = 4;
    const LINES: usize = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let d = Spawned::start(dir.path()).await;
    let pid = d.child.id();
    // Memory as a served `stats` leaves it: survey taken, pools warm.
    let warm = exchange(d.telnet, b"stats\n").await;
    assert!(String::from_utf8(warm)
        .unwrap()
        .contains("tsd.rtsd.storage.surveys"));
    let before = rss_bytes(pid);

    let flood = "stats\n".repeat(LINES);
    let mut flooders = Vec::new();
    for _ in 0..FLOODERS {
        let mut s = TcpStream::connect(d.telnet).await.unwrap();
        let flood = flood.clone();
        // The write stalls once the server stops reading; it never reads.
        flooders.push(tokio::spawn(async move {
            let _ = s.write_all(flood.as_bytes()).await;
            s
        }));
    }
    // Until the server has stopped taking flood lines: the line count
    // unchanged over 50 polls, with every flooder past its first read.
    let (mut peak, mut last, mut same) = (before, 0, 0);
    let start = std::time::Instant::now();
    while same < 50 {
        assert!(start.elapsed() < DEADLINE, "the flood never stopped");
        peak = peak.max(rss_bytes(pid));
        let lines = d.stat("tsd.rpc.received", "telnet_lines").await;
        same = if lines == last && lines > 1 + FLOODERS as u64 {
            same + 1
        } else {
            0
        };
        last = lines;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let handled = last - 1;
    assert!(
        handled < (FLOODERS * LINES) as u64,
        "{handled} stats handled"
    );
    eprintln!(
        "stats flood: {handled} of {} lines handled, RSS {} KiB before, peak {} KiB",
        FLOODERS * LINES,
        before / 1024,
        peak / 1024
    );
    // Four unanswered floods used to hold 4 × 55 MB and more.
    assert!(
        peak < before + (64 << 20),
        "RSS grew from {before} to {peak} bytes"
    );

    // A collector on a fresh connection is served meanwhile.
    let mut collector = TcpStream::connect(d.telnet).await.unwrap();
    collector
        .write_all(b"put flood.fresh 1700000000 1 host=a\nversion\n")
        .await
        .unwrap();
    assert!(read_line(&mut collector).await.starts_with("rtsd "));
    d.wait_stat("tsd.rtsd.points.stored", "", |n| n == 1).await;

    // Closed, the flooders give everything back.
    for f in flooders {
        drop(f.await.unwrap());
    }
    drop(collector);
    // The only connection left is the one asking.
    d.wait_stat("tsd.connectionmgr.connections", "open", |n| n == 1)
        .await;
    let reply = String::from_utf8(exchange(d.telnet, b"stats\n").await).unwrap();
    assert!(reply.lines().all(|l| l.starts_with("tsd.")), "{reply}");
    assert!(reply.contains("tsd.rtsd.storage.surveys"), "{reply}");
    d.signal("-TERM");
    assert!(d.wait().await.success());
}

/// A small query runs on the async worker that received it, under bounds
/// of its own (`http::query`); one past them is answered whole by the
/// blocking pool, not refused or cut short, and counts as no refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_past_the_async_workers_bounds_are_answered_whole() {
    let d = TestDaemon::start().await;
    let t0 = 1_700_000_000;
    let mut lines = String::new();
    for host in 0..100 {
        lines.push_str(&format!("put wide.m {t0} 1 host=h{host}\n"));
    }
    let long = 40_000;
    for i in 0..long {
        lines.push_str(&format!("put long.m {} {i} host=a\n", t0 + i));
    }
    exchange(d.telnet(), lines.as_bytes()).await;
    d.wait_stored(100 + long as u64).await;
    let ask = |m: &str| {
        format!(
            "/api/query?start={t0}&end={}&m={m}",
            t0 + long,
            m = m.replace('{', "%7B").replace('}', "%7D")
        )
    };
    let stats = &d.daemon.stats;
    let answer = |path: String| dps_of(d.http(), path);
    // 100 series, past the 64 a worker takes on.
    let wide = answer(ask("sum:wide.m")).await;
    assert_eq!(wide.len(), 1);
    assert_eq!(wide[&t0.to_string()], 100);
    // 40,000 points, past the 16 Ki.
    let dps = answer(ask("sum:long.m{host=a}")).await;
    assert_eq!(dps.len(), long as usize);
    for (i, (ts, v)) in dps.iter().enumerate() {
        assert_eq!(
            (ts.as_str(), v.as_i64()),
            (&*(t0 + i as i64).to_string(), Some(i as i64))
        );
    }
    // Within the bounds, on the worker: the same answer as the pool's.
    let few = answer(ask("sum:wide.m{}{host=literal_or(h1|h2|h3)}")).await;
    assert_eq!(few[&t0.to_string()], 3);
    for limit in ["series", "points", "deadline", "query_buckets"] {
        assert_eq!(stats.query_refused_count(limit), 0, "{limit}");
    }
    d.stop().await;
}

/// The `dps` of the first result of the query at `path`.
async fn dps_of(
    addr: std::net::SocketAddr,
    path: String,
) -> serde_json::Map<String, serde_json::Value> {
    let (status, reply) = http(addr, "GET", &path, b"").await;
    assert_eq!(status, 200, "{path}: {reply}");
    let json: serde_json::Value = serde_json::from_str(&reply).expect("JSON");
    json[0]["dps"].as_object().expect("dps").clone()
}
