//! Counters for everything the daemon does to a point or a connection.
//!
//! Every accepted, stored, rejected or dropped point is counted here, by
//! reason, so an operator can account for each line a collector sent. The
//! same snapshot feeds the telnet `stats` command and `/api/stats`, in
//! OpenTSDB's `tsd.*` naming. Counters only go up; the one gauge is open
//! connections. Queue depth is deliberately not a gauge: pushed minus popped
//! tells it without sampling artefacts. `/api/query` latency is a
//! fixed-bucket [`Histogram`], exported only by `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why a point that was parsed never reached the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// The queue was full and the oldest queued points made room.
    QueueFull,
    /// Like `QueueFull`, but while the writer was held back by `--mps`.
    RateLimited,
    /// RocksDB refused the batch at shutdown, or for good (see `ingest`).
    StoreError,
}

impl DropReason {
    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::RateLimited => "rate_limited",
            DropReason::StoreError => "store_error",
        }
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    pub connections_accepted: AtomicU64,
    pub connections_refused: AtomicU64,
    pub connections_open: AtomicU64,
    /// Telnet lines read, of any kind.
    pub lines_received: AtomicU64,
    /// Points parsed from telnet lines.
    pub telnet_points: AtomicU64,
    /// Points accepted through HTTP `/api/put`.
    pub http_points: AtomicU64,
    pub points_queued: AtomicU64,
    pub points_dequeued: AtomicU64,
    /// Points in the ingest queue now: its bound, so this gauge says how
    /// close drop-oldest (or blocking) is.
    pub queue_points: AtomicU64,
    /// Batches and deletes in the ingest queue now.
    pub queue_batches: AtomicU64,
    pub points_stored: AtomicU64,
    pub batches_committed: AtomicU64,
    pub new_series: AtomicU64,
    pub chunks_sealed: AtomicU64,
    /// Delete requests (`/api/query` with `delete`) the store carried out.
    pub delete_requests: AtomicU64,
    /// Points those requests removed.
    pub points_deleted: AtomicU64,
    pub store_errors: AtomicU64,
    /// Error replies not sent because the client does not read its socket.
    pub replies_dropped: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_rate_limited: AtomicU64,
    dropped_store_error: AtomicU64,
    /// Rejected lines and points by the parser's error kind.
    rejected: RwLock<BTreeMap<&'static str, u64>>,
    pub http_requests: AtomicU64,
    pub queries: AtomicU64,
    /// How long `/api/query` requests take, answered or failed.
    pub query_latency: Arc<Histogram>,
    /// Writer alive and store writable; the `tsd.rtsd.store.writable` gauge.
    pub health: crate::health::Health,
}

/// One counter as OpenTSDB reports it: `tsd.<name> <value> [tag=value...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatLine {
    pub metric: String,
    pub value: u64,
    pub tags: Vec<(&'static str, String)>,
}

impl Stats {
    pub fn dropped(&self, reason: DropReason, points: u64) {
        self.drop_counter(reason).fetch_add(points, Relaxed);
    }

    pub fn dropped_count(&self, reason: DropReason) -> u64 {
        self.drop_counter(reason).load(Relaxed)
    }

    fn drop_counter(&self, reason: DropReason) -> &AtomicU64 {
        match reason {
            DropReason::QueueFull => &self.dropped_queue_full,
            DropReason::RateLimited => &self.dropped_rate_limited,
            DropReason::StoreError => &self.dropped_store_error,
        }
    }

    /// Counts a rejected line or point under the parser's error kind.
    pub fn rejected(&self, kind: &'static str) {
        let mut map = self.rejected.write().unwrap_or_else(|e| e.into_inner());
        *map.entry(kind).or_default() += 1;
    }

    pub fn rejected_count(&self, kind: &str) -> u64 {
        let map = self.rejected.read().unwrap_or_else(|e| e.into_inner());
        map.get(kind).copied().unwrap_or(0)
    }

    pub fn rejected_total(&self) -> u64 {
        let map = self.rejected.read().unwrap_or_else(|e| e.into_inner());
        map.values().sum()
    }

    /// Every counter, named the way OpenTSDB's `stats` names its own where
    /// one exists (`tsd.rpc.received type=put`), `tsd.rtsd.*` otherwise.
    pub fn snapshot(&self) -> Vec<StatLine> {
        let line = |metric: &str, value: &AtomicU64, tags: &[(&'static str, &str)]| StatLine {
            metric: metric.to_string(),
            value: value.load(Relaxed),
            tags: tags.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        };
        let mut out = vec![
            line(
                "tsd.connectionmgr.connections",
                &self.connections_open,
                &[("type", "open")],
            ),
            line(
                "tsd.connectionmgr.connections",
                &self.connections_accepted,
                &[("type", "total")],
            ),
            line(
                "tsd.connectionmgr.exceptions",
                &self.connections_refused,
                &[("type", "refused")],
            ),
            line("tsd.rpc.received", &self.telnet_points, &[("type", "put")]),
            line(
                "tsd.rpc.received",
                &self.lines_received,
                &[("type", "telnet_lines")],
            ),
            line("tsd.http.query.received", &self.queries, &[]),
            line("tsd.http.requests", &self.http_requests, &[]),
            line(
                "tsd.rtsd.points.received",
                &self.http_points,
                &[("source", "http")],
            ),
            line(
                "tsd.rtsd.points.received",
                &self.telnet_points,
                &[("source", "telnet")],
            ),
            line("tsd.rtsd.queue.pushed", &self.points_queued, &[]),
            line("tsd.rtsd.queue.popped", &self.points_dequeued, &[]),
            line(
                "tsd.rtsd.queue.depth",
                &self.queue_points,
                &[("unit", "points")],
            ),
            line(
                "tsd.rtsd.queue.depth",
                &self.queue_batches,
                &[("unit", "batches")],
            ),
            line("tsd.rtsd.points.stored", &self.points_stored, &[]),
            line("tsd.rtsd.batches.committed", &self.batches_committed, &[]),
            line("tsd.rtsd.series.created", &self.new_series, &[]),
            line("tsd.rtsd.chunks.sealed", &self.chunks_sealed, &[]),
            line("tsd.rtsd.deletes", &self.delete_requests, &[]),
            line("tsd.rtsd.points.deleted", &self.points_deleted, &[]),
            line(
                "tsd.rpc.errors",
                &self.store_errors,
                &[("type", "storage_errors")],
            ),
            line(
                "tsd.rpc.errors",
                &self.replies_dropped,
                &[("type", "socket_writes_blocked")],
            ),
            StatLine {
                metric: "tsd.rtsd.store.writable".into(),
                value: self.health.store_writable().into(),
                tags: Vec::new(),
            },
        ];
        for reason in [
            DropReason::QueueFull,
            DropReason::RateLimited,
            DropReason::StoreError,
        ] {
            out.push(line(
                "tsd.rtsd.points.dropped",
                self.drop_counter(reason),
                &[("reason", reason.label())],
            ));
        }
        let map = self.rejected.read().unwrap_or_else(|e| e.into_inner());
        for (kind, n) in map.iter() {
            out.push(StatLine {
                metric: "tsd.rtsd.points.rejected".to_string(),
                value: *n,
                tags: vec![("reason", kind.to_string())],
            });
        }
        out
    }
}

/// Upper bounds of the latency buckets in seconds: Prometheus' client
/// defaults, stretched to the 30 s request timeout.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// A latency histogram with fixed buckets, lock-free to observe. Buckets
/// are counted individually and made cumulative when read.
#[derive(Debug, Default)]
pub struct Histogram {
    /// `buckets[i]` counts observations in `(LATENCY_BUCKETS[i-1], LATENCY_BUCKETS[i]]`;
    /// the last slot counts those above every bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

/// A histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations at or below it)`, ascending,
    /// ending with `+Inf` (the total count).
    pub cumulative: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Relaxed);
    }

    /// Observes the time until the returned guard is dropped, so every exit
    /// of a handler, early errors included, is measured.
    pub fn timer(self: &Arc<Self>) -> HistogramTimer {
        HistogramTimer {
            histogram: self.clone(),
            started: Instant::now(),
        }
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        for (i, bucket) in self.buckets.iter().enumerate() {
            total += bucket.load(Relaxed);
            let bound = LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            cumulative.push((bound, total));
        }
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_micros.load(Relaxed) as f64 / 1e6,
            count: total,
        }
    }
}

/// Observes its lifetime into a [`Histogram`] when dropped.
pub struct HistogramTimer {
    histogram: Arc<Histogram>,
    started: Instant,
}

impl Drop for HistogramTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.started.elapsed());
    }
}

/// The store's gauges in the same shape as the counters, so `stats` and
/// `/api/stats` show series, head memory and disk use next to ingest.
pub fn storage_lines(store: &crate::storage::StoreReader) -> Vec<StatLine> {
    let s = store.stats();
    let gauge = |metric: &str, value: u64| StatLine {
        metric: metric.to_string(),
        value,
        tags: Vec::new(),
    };
    let mut out = vec![
        gauge("tsd.rtsd.storage.series", s.series as u64),
        gauge("tsd.rtsd.storage.head.chunks", s.head_chunks as u64),
        gauge("tsd.rtsd.storage.head.points", s.head_points as u64),
        gauge("tsd.rtsd.storage.head.bytes", s.head_bytes as u64),
        gauge("tsd.rtsd.storage.blocks.sealed", s.sealed_blocks),
        gauge("tsd.rtsd.storage.log.records", s.log_records),
        gauge("tsd.rtsd.storage.partitions", s.partitions as u64),
        gauge("tsd.rtsd.storage.disk.bytes", s.bytes_on_disk),
        gauge("tsd.rtsd.storage.wal.bytes", s.wal_bytes),
    ];
    for cf in s.column_families {
        out.push(StatLine {
            metric: "tsd.rtsd.storage.cf.bytes".to_string(),
            value: cf.sst_bytes + cf.memtable_bytes,
            tags: vec![("cf", cf.name)],
        });
    }
    out
}

/// The `stats` reply, one counter per line as OpenTSDB prints them:
/// `tsd.<name> <unix-seconds> <value>[ tags] host=<hostname>`.
pub fn stats_reply(stats: &Stats, store: &crate::storage::StoreReader) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let host = hostname();
    let mut out = String::new();
    for line in stats.snapshot().into_iter().chain(storage_lines(store)) {
        out.push_str(&format!("{} {} {}", line.metric, now, line.value));
        for (k, v) in &line.tags {
            out.push_str(&format!(" {k}={v}"));
        }
        out.push_str(&format!(" host={host}\n"));
    }
    out
}

/// This machine's name for the `host` tag OpenTSDB puts on its own stats.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reports_drops_and_rejections_by_reason() {
        let s = Stats::default();
        s.dropped(DropReason::QueueFull, 5);
        s.dropped(DropReason::RateLimited, 2);
        s.rejected("invalid_value");
        s.rejected("invalid_value");
        let snap = s.snapshot();
        let find = |metric: &str, tag: &str| {
            snap.iter()
                .find(|l| l.metric == metric && l.tags.iter().any(|(_, v)| v == tag))
                .map(|l| l.value)
        };
        assert_eq!(find("tsd.rtsd.points.dropped", "queue_full"), Some(5));
        assert_eq!(find("tsd.rtsd.points.dropped", "rate_limited"), Some(2));
        assert_eq!(find("tsd.rtsd.points.dropped", "store_error"), Some(0));
        assert_eq!(find("tsd.rtsd.points.rejected", "invalid_value"), Some(2));
        assert_eq!(s.rejected_total(), 2);
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(60));
        let snap = h.snapshot();
        assert_eq!(snap.count, 3);
        assert_eq!(snap.cumulative.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(snap.cumulative[0], (0.001, 1));
        assert_eq!(snap.cumulative[1], (0.005, 1));
        assert_eq!(snap.cumulative[2], (0.01, 2));
        assert_eq!(snap.cumulative[11], (30.0, 2));
        assert_eq!(snap.cumulative[12], (f64::INFINITY, 3));
        assert!(
            (snap.sum_seconds - 60.008).abs() < 1e-9,
            "{}",
            snap.sum_seconds
        );
    }
}
