//! Data survives a clean restart, SIGTERM in the middle of a stream, and
//! kill -9 after the writer committed.

use rtsd::model::{SeriesKey, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::*;

fn line(metric: &str, i: u64) -> String {
    format!("put {metric} {} {i} host=a\n", 1_600_000_000_000u64 + i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_survive_a_restart() {
    let d = TestDaemon::start().await;
    let text: String = (0..5000).map(|i| line("restart.m", i)).collect();
    exchange(d.telnet(), text.as_bytes()).await;
    d.wait_stored(5000).await;
    let dir = d.stop().await;

    let d = TestDaemon::start_with(|s| s.data_dir = dir.path().to_path_buf()).await;
    let pts = d.points(&SeriesKey::new("restart.m", [("host", "a")]));
    assert_eq!(pts.len(), 5000);
    assert!(pts
        .iter()
        .enumerate()
        .all(|(i, p)| p.value == Value::Int(i as i64)));
    d.daemon.stop().await.unwrap();
    drop(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_stream_loses_nothing_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Spawned::start(dir.path()).await;
    let mut s = TcpStream::connect(daemon.telnet).await.unwrap();
    // A first part the server has provably read: `version` answers after it.
    let first: String = (0..20_000).map(|i| line("sigterm.m", i)).collect();
    s.write_all(first.as_bytes()).await.unwrap();
    s.write_all(b"version\n").await.unwrap();
    assert!(read_line(&mut s).await.starts_with("rtsd "));
    let mut sent = 20_000u64;
    // Keep streaming while the signal lands; writes fail once it closes.
    let streamer = tokio::spawn(async move {
        loop {
            let chunk: String = (sent..sent + 1000).map(|i| line("sigterm.m", i)).collect();
            if s.write_all(chunk.as_bytes()).await.is_err() {
                return sent;
            }
            sent += 1000;
            if sent >= 2_000_000 {
                return sent;
            }
        }
    });
    daemon.signal("-TERM");
    let status = daemon.wait().await;
    assert!(status.success(), "exit status {status:?}");
    let sent = streamer.await.unwrap();

    let d = TestDaemon::start_with(|s| s.data_dir = dir.path().to_path_buf()).await;
    let pts = d.points(&SeriesKey::new("sigterm.m", [("host", "a")]));
    // Everything read before the signal, and no gap: the stored points are
    // exactly the first k lines sent.
    assert!(pts.len() >= 20_000, "only {} stored", pts.len());
    assert!(pts.len() as u64 <= sent);
    assert!(pts
        .iter()
        .enumerate()
        .all(|(i, p)| p.value == Value::Int(i as i64)));
    d.daemon.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_every_committed_point() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Spawned::start(dir.path()).await;
    let text: String = (0..30_000).map(|i| line("kill9.m", i)).collect();
    exchange(daemon.telnet, text.as_bytes()).await;
    let start = std::time::Instant::now();
    while daemon.stat("tsd.rtsd.points.stored", "").await < 30_000 {
        assert!(start.elapsed() < DEADLINE);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    daemon.signal("-KILL");
    daemon.wait().await;

    let d = TestDaemon::start_with(|s| s.data_dir = dir.path().to_path_buf()).await;
    let pts = d.points(&SeriesKey::new("kill9.m", [("host", "a")]));
    assert_eq!(pts.len(), 30_000);
    assert!(pts
        .iter()
        .enumerate()
        .all(|(i, p)| p.value == Value::Int(i as i64)));
    d.daemon.stop().await.unwrap();
}
