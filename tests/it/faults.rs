//! Faults (issue 9): `/health`, and what rtsd does when the store cannot
//! take writes.

use crate::support::*;

#[tokio::test]
async fn health_is_ok_while_the_store_takes_writes() {
    let d = TestDaemon::start().await;
    let (status, body) = http(d.http(), "GET", "/health", b"").await;
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (status, _) = http(d.http(), "POST", "/health", b"").await;
    assert_eq!(status, 405);
    let (status, metrics) = http(d.http(), "GET", "/metrics", b"").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("\nrtsd_store_writable 1\n"), "{metrics}");
    d.stop().await;
}

/// A tmpfs of a given size mounted on a temp dir for the test's life (CI
/// runs as root), so the disk really fills up.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("runs mount");
        assert!(status.success(), "mounting a tmpfs (needs root)");
        Tmpfs { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a file at `name` until the file system is full.
    fn fill(&self, name: &str) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.path().join(name)).unwrap();
        let page = [0u8; 4096];
        loop {
            if let Err(e) = f.write_all(&page) {
                // ENOSPC.
                assert_eq!(e.raw_os_error(), Some(28), "{e}");
                return;
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily, so a daemon still holding files cannot keep it mounted.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.path())
            .status();
    }
}

/// The series the tests below write.
fn acked_series() -> rtsd::model::SeriesKey {
    rtsd::model::SeriesKey::new("acked", [("host", "a")])
}

/// Why [`put_sync`] got no confirmation.
#[derive(Debug, PartialEq)]
enum NotAcked {
    /// 503: the daemon refuses writes.
    Refused,
    /// The connection failed or closed early (the daemon died).
    Gone,
}

/// `/api/put?sync` of `n` points of [`acked_series`] from `first` (ms,
/// also the value); the points the daemon confirmed.
async fn put_sync(addr: std::net::SocketAddr, first: i64, n: i64) -> Result<Vec<i64>, NotAcked> {
    let points: Vec<String> = (first..first + n)
        .map(|ts| {
            format!(r#"{{"metric":"acked","timestamp":{ts},"value":{ts},"tags":{{"host":"a"}}}}"#)
        })
        .collect();
    let body = format!("[{}]", points.join(","));
    let path = "/api/put?sync&sync_timeout=1000&summary";
    let (status, reply) = try_http(addr, "POST", path, &[], body.as_bytes())
        .await
        .map_err(|_| NotAcked::Gone)?;
    if status == 503 {
        return Err(NotAcked::Refused);
    }
    // 400 when some points were not confirmed in time.
    assert!(status == 200 || status == 400, "{status} {reply}");
    let summary: serde_json::Value = serde_json::from_str(&reply).unwrap();
    // Points not confirmed within the timeout are not acknowledged.
    Ok(if summary["success"] == n {
        (first..first + n).collect()
    } else {
        Vec::new()
    })
}

/// The acknowledged timestamps missing from `stored`.
fn lost(acked: &[i64], stored: &[rtsd::model::DataPoint]) -> usize {
    let stored: std::collections::HashSet<i64> = stored.iter().map(|p| p.timestamp_ms).collect();
    acked.iter().filter(|ts| !stored.contains(ts)).count()
}

#[tokio::test]
async fn a_full_disk_stops_acknowledging_loses_nothing_and_recovers() {
    // RocksDB resumes once the free space exceeds a write buffer (64 MiB).
    let fs = Tmpfs::mount("96m");
    let settings = loopback_settings(&fs.path().join("data"));
    let d = rtsd::daemon::Daemon::start(settings).await.unwrap();
    const BATCH: i64 = 2000;
    let mut next = 1_700_000_000_000_i64;
    let mut acked = put_sync(d.http_addr, next, BATCH).await.unwrap();
    assert_eq!(acked.len(), BATCH as usize);
    next += BATCH;
    fs.fill("filler");
    let start = std::time::Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE, "the disk never filled up");
        match put_sync(d.http_addr, next, BATCH).await {
            Ok(confirmed) => acked.extend(confirmed),
            Err(why) => {
                assert_eq!(why, NotAcked::Refused);
                break;
            }
        }
        next += BATCH;
    }
    let (status, body) = http(d.http_addr, "GET", "/health", b"").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("No space left on device"), "{body}");
    let (_, metrics) = http(d.http_addr, "GET", "/metrics", b"").await;
    assert!(metrics.contains("\nrtsd_store_writable 0\n"), "{metrics}");

    std::fs::remove_file(fs.path().join("filler")).unwrap();
    let recovered = std::time::Instant::now();
    loop {
        let (status, body) = http(d.http_addr, "GET", "/health", b"").await;
        if status == 200 {
            break;
        }
        assert!(
            recovered.elapsed() < DEADLINE,
            "the store never recovered: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let after = put_sync(d.http_addr, next + BATCH, 10)
        .await
        .expect("ingest resumed");
    assert_eq!(after.len(), 10);
    acked.extend(after);
    let stored = read_points(&*d.store, &acked_series());
    assert_eq!(lost(&acked, &stored), 0, "of {}", acked.len());
    d.stop().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_a_loop_during_a_sync_stream_loses_no_acknowledged_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    let mut next = 1_700_000_000_000_i64;
    const BATCH: i64 = 500;
    for _ in 0..4 {
        let daemon = Spawned::start(dir.path()).await;
        let addr = daemon.http;
        // Stream until the connection dies, batch after batch.
        let stream = tokio::spawn(async move {
            let mut acked = Vec::new();
            while let Ok(confirmed) = put_sync(addr, next, BATCH).await {
                acked.extend(confirmed);
                next += BATCH;
            }
            (acked, next + BATCH)
        });
        // Kill while requests are in flight, once some were confirmed.
        let start = std::time::Instant::now();
        while daemon.stat("tsd.rtsd.points.stored", "").await < 5 * BATCH as u64 {
            assert!(start.elapsed() < DEADLINE, "nothing stored");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        daemon.signal("-KILL");
        daemon.wait().await;
        let (confirmed, resume) = tokio::time::timeout(DEADLINE, stream)
            .await
            .expect("the stream ends with the daemon")
            .unwrap();
        assert!(!confirmed.is_empty());
        acked.extend(confirmed);
        next = resume;
    }
    let d = TestDaemon::start_with(|s| s.data_dir = dir.path().to_path_buf()).await;
    let stored = d.points(&acked_series());
    assert_eq!(lost(&acked, &stored), 0, "of {}", acked.len());
    d.daemon.stop().await.unwrap();
}
