//! The queue's overflow policies and the `--mps` limit, end to end.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use rtsd::model::{SeriesKey, Value};
use rtsd::queue::OverflowPolicy;
use rtsd::stats::DropReason;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

fn stream(metric: &str, n: u64) -> String {
    (0..n)
        .map(|i| format!("put {metric} {} {i} host=a\n", 1_700_000_000_000u64 + i))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_under_mps_sheds_old_points_and_counts_them() {
    let d = TestDaemon::start_with(|s| {
        s.queue_capacity = 64;
        s.mps = 200;
    })
    .await;
    let n = 20_000;
    exchange(d.telnet(), stream("shed.m", n).as_bytes()).await;
    let stats = d.daemon.stats.clone();
    let accounted = || {
        stats.points_stored.load(Relaxed)
            + stats.dropped_count(DropReason::RateLimited)
            + stats.dropped_count(DropReason::QueueFull)
    };
    poll(|| accounted() == n).await;
    assert!(stats.dropped_count(DropReason::RateLimited) > 0);
    assert_eq!(stats.points_queued.load(Relaxed), n);
    // The newest point always survives drop-oldest.
    let pts = d.points(&SeriesKey::new("shed.m", [("host", "a")]));
    assert_eq!(pts.last().map(|p| p.value), Some(Value::Int(n as i64 - 1)));
    assert_eq!(pts.len() as u64, stats.points_stored.load(Relaxed));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_policy_pushes_back_and_loses_nothing() {
    let d = TestDaemon::start_with(|s| {
        s.queue_capacity = 16;
        s.overflow = OverflowPolicy::Block;
        s.mps = 20_000;
    })
    .await;
    let n = 30_000;
    exchange(d.telnet(), stream("block.m", n).as_bytes()).await;
    d.wait_stored(n).await;
    let stats = &d.daemon.stats;
    assert_eq!(stats.dropped_count(DropReason::QueueFull), 0);
    assert_eq!(stats.dropped_count(DropReason::RateLimited), 0);
    let pts = d.points(&SeriesKey::new("block.m", [("host", "a")]));
    assert_eq!(pts.len() as u64, n);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mps_caps_the_store_rate() {
    let mps = 2_000;
    let d = TestDaemon::start_with(|s| {
        s.overflow = OverflowPolicy::Block;
        s.mps = mps;
    })
    .await;
    let n = 7_000u64;
    let start = Instant::now();
    exchange(d.telnet(), stream("mps.m", n).as_bytes()).await;
    d.wait_stored(n).await;
    // A lower bound only: one second of burst, then `mps` per second.
    let floor = (n - mps as u64) as f64 / mps as f64;
    let took = start.elapsed().as_secs_f64();
    assert!(
        took >= floor * 0.95,
        "stored {n} points in {took:.2}s, limit allows {floor:.2}s at best"
    );
    d.stop().await;
}

/// Regression (issue 12): collectors writing one line per `send()` made
/// one-point batches, and a queue bounded in batches shed points while it
/// held a few hundred. With the default settings, 16 such collectors
/// sending 80,000 points in all, far below `--queue-capacity`, lose none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_send_from_many_collectors_loses_nothing() {
    let d = TestDaemon::start().await;
    let (clients, lines) = (16u64, 5_000u64);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let addr = d.telnet();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            for i in 0..lines {
                let line = format!("put send.m {} {i} host=c{c}\n", 1_700_000_000_000 + i);
                s.write_all(line.as_bytes()).await.unwrap();
            }
            s.shutdown().await.unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = clients * lines;
    d.wait_stored(n).await;
    let stats = &d.daemon.stats;
    assert_eq!(stats.dropped_count(DropReason::QueueFull), 0);
    assert_eq!(stats.points_stored.load(Relaxed), n);
    for c in 0..clients {
        let key = SeriesKey::new("send.m", [("host", format!("c{c}").as_str())]);
        assert_eq!(d.points(&key).len() as u64, lines, "client {c}");
    }
    d.stop().await;
}

/// The same for many concurrent one-point `/api/put` requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_one_point_http_puts_lose_nothing() {
    let d = TestDaemon::start().await;
    let (clients, puts) = (32u64, 100u64);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let addr = d.http();
        tasks.push(tokio::spawn(async move {
            for i in 0..puts {
                let body = format!(
                    r#"{{"metric":"hput.m","timestamp":{},"value":{i},"tags":{{"host":"c{c}"}}}}"#,
                    1_700_000_000_000u64 + i
                );
                let (status, reply) = http(addr, "POST", "/api/put", body.as_bytes()).await;
                assert_eq!(status, 204, "{reply}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let n = clients * puts;
    d.wait_stored(n).await;
    assert_eq!(d.daemon.stats.dropped_count(DropReason::QueueFull), 0);
    for c in 0..clients {
        let key = SeriesKey::new("hput.m", [("host", format!("c{c}").as_str())]);
        assert_eq!(d.points(&key).len() as u64, puts, "client {c}");
    }
    d.stop().await;
}

/// Drop-oldest still sheds once the queue truly holds more points than its
/// capacity: a writer held back by `--mps` leaves the queue full, and every
/// point is then exactly accounted for — taken by the writer, shed and
/// counted, or still queued — with the queue never above its capacity and
/// holding the newest points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_sheds_exactly_what_exceeds_the_capacity_in_points() {
    let capacity = 100u64;
    let d = TestDaemon::start_with(|s| {
        s.queue_capacity = capacity as usize;
        s.mps = 50;
    })
    .await;
    let n = 3_000u64;
    let mut s = TcpStream::connect(d.telnet()).await.unwrap();
    s.set_nodelay(true).unwrap();
    for i in 0..n {
        let line = format!("put exact.m {} {i} host=a\n", 1_700_000_000_000 + i);
        s.write_all(line.as_bytes()).await.unwrap();
    }
    s.shutdown().await.unwrap();
    let stats = d.daemon.stats.clone();
    let dropped = || {
        stats.dropped_count(DropReason::RateLimited) + stats.dropped_count(DropReason::QueueFull)
    };
    // Once every point is pushed, a quiet moment shows the accounts.
    let mut queued = 0;
    poll(|| {
        queued = stats.queue_points.load(Relaxed);
        stats.points_queued.load(Relaxed) == n
            && stats.points_dequeued.load(Relaxed) + dropped() + queued == n
    })
    .await;
    assert!(queued <= capacity, "{queued}");
    assert!(dropped() > 0);
    // Shutdown drains the queue: what it held, the newest points, is
    // stored, and nothing else is missing but the shed points.
    let shed = dropped();
    let dir = d.stop().await;
    let (_w, store) = rtsd::storage::Store::open(dir.path(), Default::default()).unwrap();
    let pts = read_points(&store, &SeriesKey::new("exact.m", [("host", "a")]));
    let stored: Vec<Value> = pts.iter().map(|p| p.value).collect();
    let newest: Vec<Value> = (n - queued..n).map(|i| Value::Int(i as i64)).collect();
    assert!(stored.ends_with(&newest), "{stored:?}");
    assert_eq!(stored.len() as u64, n - shed);
}
