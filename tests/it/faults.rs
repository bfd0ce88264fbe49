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

/// `/api/put?sync` of `n` points from `first` (ms); the points the daemon
/// confirmed, or `None` once it answers 503.
async fn put_sync(addr: std::net::SocketAddr, first: i64, n: i64) -> Option<Vec<i64>> {
    let points: Vec<String> = (first..first + n)
        .map(|ts| {
            format!(
                r#"{{"metric":"disk.full","timestamp":{ts},"value":{ts},"tags":{{"host":"a"}}}}"#
            )
        })
        .collect();
    let body = format!("[{}]", points.join(","));
    let (status, reply) = http(
        addr,
        "POST",
        "/api/put?sync&sync_timeout=1000&summary",
        body.as_bytes(),
    )
    .await;
    if status == 503 {
        return None;
    }
    // 400 when some points were not confirmed in time.
    assert!(status == 200 || status == 400, "{status} {reply}");
    let summary: serde_json::Value = serde_json::from_str(&reply).unwrap();
    // Points not confirmed within the timeout are not acknowledged.
    Some(if summary["success"] == n {
        (first..first + n).collect()
    } else {
        Vec::new()
    })
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
            Some(confirmed) => acked.extend(confirmed),
            None => break,
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
    let key = rtsd::model::SeriesKey::new("disk.full", [("host", "a")]);
    let stored: std::collections::HashSet<i64> = read_points(&d.store, &key)
        .iter()
        .map(|p| p.timestamp_ms)
        .collect();
    let lost = acked.iter().filter(|ts| !stored.contains(ts)).count();
    assert_eq!(lost, 0, "acknowledged points lost of {}", acked.len());
    d.stop().await.expect("clean shutdown");
}
