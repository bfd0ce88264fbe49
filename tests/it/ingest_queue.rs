//! The queue's overflow policies and the `--mps` limit, end to end.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use rtsd::model::{SeriesKey, Value};
use rtsd::queue::OverflowPolicy;
use rtsd::stats::DropReason;

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
