//! Counters for everything the daemon does to a point or a connection.
//!
//! Every accepted, stored, rejected or dropped point is counted here, by
//! reason, so an operator can account for each line a collector sent. One
//! table, [`FAMILIES`], names every number for all three places it shows:
//! the telnet `stats` command and `/api/stats` ([`Stats::lines`], in
//! OpenTSDB's `tsd.*` naming) and `/metrics` (as Prometheus families).
//! Counters only go up; the gauges are what is open, queued or stored now.
//! The store's disk usage comes from the latest [`crate::survey`], so
//! showing it costs the same however many series and partitions there
//! are. `/api/query` latency is a fixed-bucket [`Histogram`], exported only
//! by `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A snapshot of the store's size and state, for `/api/stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageStats {
    pub series: usize,
    /// Open head windows (one chunk each).
    pub head_chunks: usize,
    pub head_points: usize,
    pub head_bytes: usize,
    /// Blocks written since the store was opened.
    pub sealed_blocks: u64,
    /// Log records not yet deleted.
    pub log_records: u64,
    /// Families holding blocks (day and year ones).
    pub partitions: usize,
    /// Shared, since it is read once and shown many times (see
    /// [`crate::storage::StoreReader::disk_usage`]).
    pub disk: Arc<DiskUsage>,
    /// The ClickHouse store's spool; `None` for the embedded store.
    pub spool: Option<SpoolStats>,
}

/// What the store occupies on disk. Reading it costs a property read per
/// column family, so per day partition, and a directory listing: callers
/// that show it often keep one (`crate::survey`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiskUsage {
    /// Live SST files of every family plus the WAL.
    pub bytes_on_disk: u64,
    pub wal_bytes: u64,
    pub column_families: Vec<ColumnFamilySize>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnFamilySize {
    pub name: String,
    pub sst_bytes: u64,
    pub memtable_bytes: u64,
}

/// What the spool has done since it opened, and holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records in the spool, waiting or being shipped.
    pub records: u64,
    /// Their encoded size.
    pub bytes: u64,
    /// Their points.
    pub points: u64,
    /// Points ClickHouse accepted (a re-shipped point counts again).
    pub points_shipped: u64,
    /// Inserts ClickHouse accepted.
    pub ship_batches: u64,
    /// Attempts that failed: ClickHouse down, slow or refusing, or a
    /// spool read or delete failing.
    pub ship_errors: u64,
    /// Attempts repeated after a failure.
    pub ship_retries: u64,
    /// Points shed by drop-oldest, or in records that no longer decode.
    pub points_dropped: u64,
    /// Appends that waited for room under the block policy.
    pub appends_blocked: u64,
    /// ClickHouse partitions dropped for retention.
    pub partitions_dropped: u64,
    /// Retention statements that failed (listing or dropping partitions);
    /// the next expiry tries again.
    pub expire_errors: u64,
    /// Hour and day rollup rows computed and stored.
    pub rollup_hours: u64,
    pub rollup_days: u64,
    /// Rollup computations that failed; their hours stay pending.
    pub rollup_errors: u64,
}

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
    pub const ALL: [DropReason; 3] = [
        DropReason::QueueFull,
        DropReason::RateLimited,
        DropReason::StoreError,
    ];

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
    /// Replies not sent because the client does not read its socket.
    pub replies_dropped: AtomicU64,
    /// Surveys of the store's disk usage and stale series taken.
    pub surveys: AtomicU64,
    /// HTTP requests refused for a missing, wrong or too weak token (401, 403).
    pub auth_refused_http: AtomicU64,
    /// Telnet `auth` lines answered `AUTH_FAIL`.
    pub auth_refused_telnet: AtomicU64,
    /// `/api/put` requests refused because `max-concurrent-puts` ran.
    pub puts_refused: AtomicU64,
    /// HTTP connections closed because the peer took nothing of what was
    /// written to it for `request-timeout`.
    pub http_write_timeouts: AtomicU64,
    /// Queries refused by a limit, by limit (`QueryError::limit`).
    refused_downsample_buckets: AtomicU64,
    refused_query_buckets: AtomicU64,
    refused_series: AtomicU64,
    refused_points: AtomicU64,
    refused_deadline: AtomicU64,
    /// Query answers being written now, each holding a blocking thread.
    pub answers_streaming: AtomicU64,
    /// Query answers given up before their end: the client went away or
    /// stopped reading, or writing outlasted `request-timeout`.
    pub answers_abandoned: AtomicU64,
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

    /// Counts a query refused by the limit `limit` names
    /// ([`crate::query::QueryError::limit`]).
    pub fn query_refused(&self, limit: &str) {
        if let Some((_, counter)) = QUERY_REFUSALS.iter().find(|(l, _)| *l == limit) {
            counter(self).fetch_add(1, Relaxed);
        }
    }

    pub fn query_refused_count(&self, limit: &str) -> u64 {
        QUERY_REFUSALS
            .iter()
            .find(|(l, _)| *l == limit)
            .map_or(0, |(_, counter)| counter(self).load(Relaxed))
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

    /// Every number of [`FAMILIES`] as an OpenTSDB-style line, the store's
    /// read from `store`: what `stats` and `/api/stats` show.
    pub fn lines(&self, store: &StorageStats) -> Vec<StatLine> {
        FAMILIES
            .iter()
            .flat_map(|f| f.stat_lines(f.readings(self, store)))
            .collect()
    }
}

/// Whether a number only goes up (Prometheus' metric types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// How the lines of a family tell themselves apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// One line, no tag.
    None,
    /// One line with this OpenTSDB tag, which tells it from the other
    /// families of the same stat; `/metrics` names it by the family alone.
    Fixed(&'static str, &'static str),
    /// A line per value of this tag, a label in `/metrics`.
    Label(&'static str),
}

/// Picks one counter out of [`Stats`].
type CounterOf = fn(&Stats) -> &AtomicU64;

/// Where a family's numbers come from.
#[derive(Clone, Copy)]
enum Read {
    /// One counter.
    Counter(CounterOf),
    /// A counter per label value.
    Counters(&'static [(&'static str, CounterOf)]),
    /// Dropped points, per [`DropReason`].
    Dropped,
    /// Rejected lines and points, per parser error kind seen so far.
    Rejected,
    /// 1 while commits succeed, 0 while the store refuses them.
    Writable,
    /// One of the store's numbers.
    Store(fn(&StorageStats) -> u64),
    /// Bytes per column family: live SST files plus memtables.
    ColumnFamilies,
    /// One of the spool's numbers; no line for the embedded store.
    Spool(fn(&SpoolStats) -> u64),
}

/// One reading: its label value (for [`Tag::Label`] families) and number.
pub type Reading = (Option<String>, u64);

/// A number the daemon reports, or a set of them told apart by a tag, with
/// its names in every place it shows: OpenTSDB's `stat` (telnet `stats`,
/// `/api/stats`) and a Prometheus family (`/metrics`).
pub struct Family {
    pub stat: &'static str,
    pub tag: Tag,
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    read: Read,
}

impl Family {
    /// The family's numbers now: counters from `stats`, the store's from
    /// `store`.
    pub fn readings(&self, stats: &Stats, store: &StorageStats) -> Vec<Reading> {
        let labelled = |label: &str, value| (Some(label.to_string()), value);
        match self.read {
            Read::Counter(counter) => vec![(None, counter(stats).load(Relaxed))],
            Read::Counters(counters) => counters
                .iter()
                .map(|(label, counter)| labelled(label, counter(stats).load(Relaxed)))
                .collect(),
            Read::Dropped => DropReason::ALL
                .iter()
                .map(|&r| labelled(r.label(), stats.dropped_count(r)))
                .collect(),
            Read::Rejected => {
                let map = stats.rejected.read().unwrap_or_else(|e| e.into_inner());
                map.iter().map(|(kind, n)| labelled(kind, *n)).collect()
            }
            Read::Writable => vec![(None, stats.health.store_writable().into())],
            Read::Store(gauge) => vec![(None, gauge(store))],
            Read::ColumnFamilies => store
                .disk
                .column_families
                .iter()
                .map(|cf| labelled(&cf.name, cf.sst_bytes + cf.memtable_bytes))
                .collect(),
            Read::Spool(number) => store.spool.iter().map(|s| (None, number(s))).collect(),
        }
    }

    fn stat_lines(&self, readings: Vec<Reading>) -> impl Iterator<Item = StatLine> + '_ {
        readings.into_iter().map(|(label, value)| StatLine {
            metric: self.stat.to_string(),
            value,
            tags: match (self.tag, label) {
                (Tag::Fixed(k, v), _) => vec![(k, v.to_string())],
                (Tag::Label(k), Some(v)) => vec![(k, v)],
                _ => Vec::new(),
            },
        })
    }
}

const fn family(
    stat: &'static str,
    tag: Tag,
    name: &'static str,
    kind: Kind,
    help: &'static str,
    read: Read,
) -> Family {
    Family {
        stat,
        tag,
        name,
        kind,
        help,
        read,
    }
}

/// Refused queries by the limit they ran into.
const QUERY_REFUSALS: &[(&str, CounterOf)] = &[
    ("downsample_buckets", |s| &s.refused_downsample_buckets),
    ("query_buckets", |s| &s.refused_query_buckets),
    ("series", |s| &s.refused_series),
    ("points", |s| &s.refused_points),
    ("deadline", |s| &s.refused_deadline),
];

/// Every number `stats`, `/api/stats` and `/metrics` report, in their
/// order. OpenTSDB's own names where it has one (`tsd.rpc.received
/// type=put`), `tsd.rtsd.*` otherwise; Prometheus names with an `rtsd_`
/// prefix and `_total` on counters.
#[rustfmt::skip]
pub const FAMILIES: &[Family] = {
    use Kind::{Counter, Gauge};
    use Tag::{Fixed, Label};
    &[
        family("tsd.connectionmgr.connections", Fixed("type", "open"), "rtsd_connections_open", Gauge,
            "Connections open now, both ports.", Read::Counter(|s| &s.connections_open)),
        family("tsd.connectionmgr.connections", Fixed("type", "total"), "rtsd_connections_accepted_total", Counter,
            "Connections accepted, both ports.", Read::Counter(|s| &s.connections_accepted)),
        family("tsd.connectionmgr.exceptions", Fixed("type", "refused"), "rtsd_connections_refused_total", Counter,
            "Connections closed at once because max-connections were open (both ports count).",
            Read::Counter(|s| &s.connections_refused)),
        family("tsd.rpc.received", Fixed("type", "put"), "rtsd_telnet_puts_total", Counter,
            "Points parsed from telnet put lines.", Read::Counter(|s| &s.telnet_points)),
        family("tsd.rpc.received", Fixed("type", "telnet_lines"), "rtsd_telnet_lines_total", Counter,
            "Lines read on the telnet port, of any kind.", Read::Counter(|s| &s.lines_received)),
        family("tsd.http.query.received", Tag::None, "rtsd_queries_total", Counter,
            "Requests to /api/query.", Read::Counter(|s| &s.queries)),
        family("tsd.rtsd.query.refused", Label("limit"), "rtsd_queries_refused_total", Counter,
            "Queries refused by a limit: downsample or query buckets, series, points (413 or 400), deadline (503).",
            Read::Counters(QUERY_REFUSALS)),
        family("tsd.rtsd.query.answers", Fixed("state", "streaming"), "rtsd_query_answers_streaming", Gauge,
            "Query answers being written now, each on a blocking thread.",
            Read::Counter(|s| &s.answers_streaming)),
        family("tsd.rtsd.query.answers", Fixed("state", "abandoned"), "rtsd_query_answers_abandoned_total", Counter,
            "Query answers given up before their end: the client left or stopped reading, or writing outlasted request-timeout.",
            Read::Counter(|s| &s.answers_abandoned)),
        family("tsd.http.requests", Tag::None, "rtsd_http_requests_total", Counter,
            "HTTP requests on either port.", Read::Counter(|s| &s.http_requests)),
        family("tsd.rtsd.points.received", Label("source"), "rtsd_points_received_total", Counter,
            "Points accepted, by protocol.",
            Read::Counters(&[("http", |s| &s.http_points), ("telnet", |s| &s.telnet_points)])),
        family("tsd.rtsd.queue.pushed", Tag::None, "rtsd_queue_pushed_points_total", Counter,
            "Points put on the ingest queue.", Read::Counter(|s| &s.points_queued)),
        family("tsd.rtsd.queue.popped", Tag::None, "rtsd_queue_popped_points_total", Counter,
            "Points taken off the ingest queue by the writer.", Read::Counter(|s| &s.points_dequeued)),
        family("tsd.rtsd.queue.depth", Label("unit"), "rtsd_queue_depth", Gauge,
            "What the ingest queue holds now, in points (its bound) and in batches.",
            Read::Counters(&[("points", |s| &s.queue_points), ("batches", |s| &s.queue_batches)])),
        family("tsd.rtsd.points.stored", Tag::None, "rtsd_points_stored_total", Counter,
            "Points committed to the store.", Read::Counter(|s| &s.points_stored)),
        family("tsd.rtsd.batches.committed", Tag::None, "rtsd_batches_committed_total", Counter,
            "Write batches committed to RocksDB.", Read::Counter(|s| &s.batches_committed)),
        family("tsd.rtsd.series.created", Tag::None, "rtsd_series_created_total", Counter,
            "Series created.", Read::Counter(|s| &s.new_series)),
        family("tsd.rtsd.chunks.sealed", Tag::None, "rtsd_chunks_sealed_total", Counter,
            "Head chunks sealed into blocks.", Read::Counter(|s| &s.chunks_sealed)),
        family("tsd.rtsd.deletes", Tag::None, "rtsd_delete_requests_total", Counter,
            "Delete requests (/api/query with delete) carried out.", Read::Counter(|s| &s.delete_requests)),
        family("tsd.rtsd.points.deleted", Tag::None, "rtsd_points_deleted_total", Counter,
            "Points removed by delete requests.", Read::Counter(|s| &s.points_deleted)),
        family("tsd.rpc.errors", Fixed("type", "storage_errors"), "rtsd_store_errors_total", Counter,
            "Commits RocksDB refused, each retry counted.", Read::Counter(|s| &s.store_errors)),
        family("tsd.rtsd.http.put.refused", Tag::None, "rtsd_http_puts_refused_total", Counter,
            "/api/put requests refused with 503 because max-concurrent-puts were running.",
            Read::Counter(|s| &s.puts_refused)),
        family("tsd.rtsd.store.writable", Tag::None, "rtsd_store_writable", Gauge,
            "1 while commits succeed, 0 from a failed commit (disk full, I/O error) until one succeeds.",
            Read::Writable),
        family("tsd.connectionmgr.exceptions", Fixed("type", "write_timeout"), "rtsd_http_write_timeouts_total", Counter,
            "HTTP connections closed because the client took nothing written to it for request-timeout.",
            Read::Counter(|s| &s.http_write_timeouts)),
        family("tsd.rpc.errors", Fixed("type", "socket_writes_blocked"), "rtsd_replies_dropped_total", Counter,
            "Replies not sent because the client does not read its socket: error replies over \
             reply-buffer-bytes, and asked-for ones still unhandled when the connection closed.",
            Read::Counter(|s| &s.replies_dropped)),
        family("tsd.rtsd.auth.refused", Label("protocol"), "rtsd_auth_refused_total", Counter,
            "HTTP requests refused with 401 or 403, and telnet auth lines answered AUTH_FAIL.",
            Read::Counters(&[("http", |s| &s.auth_refused_http), ("telnet", |s| &s.auth_refused_telnet)])),
        family("tsd.rtsd.points.dropped", Label("reason"), "rtsd_points_dropped_total", Counter,
            "Accepted points that never reached the store, by reason.", Read::Dropped),
        family("tsd.rtsd.points.rejected", Label("reason"), "rtsd_points_rejected_total", Counter,
            "Lines and points refused, by parser error.", Read::Rejected),
        family("tsd.rtsd.storage.series", Tag::None, "rtsd_storage_series", Gauge,
            "Series in the store.", Read::Store(|s| s.series as u64)),
        family("tsd.rtsd.storage.head.chunks", Tag::None, "rtsd_storage_head_chunks", Gauge,
            "Unsealed in-memory chunks.", Read::Store(|s| s.head_chunks as u64)),
        family("tsd.rtsd.storage.head.points", Tag::None, "rtsd_storage_head_points", Gauge,
            "Points in unsealed in-memory chunks.", Read::Store(|s| s.head_points as u64)),
        family("tsd.rtsd.storage.head.bytes", Tag::None, "rtsd_storage_head_bytes", Gauge,
            "Bytes of unsealed in-memory chunks.", Read::Store(|s| s.head_bytes as u64)),
        family("tsd.rtsd.storage.blocks.sealed", Tag::None, "rtsd_storage_blocks_sealed_total", Counter,
            "Blocks written since the store was opened.", Read::Store(|s| s.sealed_blocks)),
        family("tsd.rtsd.storage.log.records", Tag::None, "rtsd_storage_log_records", Gauge,
            "Head log records not yet deleted.", Read::Store(|s| s.log_records)),
        family("tsd.rtsd.storage.partitions", Tag::None, "rtsd_storage_partitions", Gauge,
            "Block families (per day, and per year for old data).", Read::Store(|s| s.partitions as u64)),
        family("tsd.rtsd.storage.disk.bytes", Tag::None, "rtsd_storage_disk_bytes", Gauge,
            "Bytes on disk: live SST files of every column family plus the WAL.",
            Read::Store(|s| s.disk.bytes_on_disk)),
        family("tsd.rtsd.storage.wal.bytes", Tag::None, "rtsd_storage_wal_bytes", Gauge,
            "Bytes of RocksDB's write-ahead log.", Read::Store(|s| s.disk.wal_bytes)),
        family("tsd.rtsd.storage.cf.bytes", Label("cf"), "rtsd_storage_column_family_bytes", Gauge,
            "Bytes per RocksDB column family: live SST files plus memtables.", Read::ColumnFamilies),
        family("tsd.rtsd.storage.surveys", Tag::None, "rtsd_storage_surveys_total", Counter,
            "Surveys of the store's disk usage and stale series, at most one per stats-refresh-secs.",
            Read::Counter(|s| &s.surveys)),
        family("tsd.rtsd.spool.records", Tag::None, "rtsd_spool_records", Gauge,
            "Records in the ClickHouse spool, waiting or being shipped.", Read::Spool(|s| s.records)),
        family("tsd.rtsd.spool.bytes", Tag::None, "rtsd_spool_bytes", Gauge,
            "Encoded bytes of the spool's records.", Read::Spool(|s| s.bytes)),
        family("tsd.rtsd.spool.points", Tag::None, "rtsd_spool_points", Gauge,
            "Points in the spool, not yet in ClickHouse.", Read::Spool(|s| s.points)),
        family("tsd.rtsd.spool.shipped", Tag::None, "rtsd_spool_shipped_points_total", Counter,
            "Points ClickHouse accepted from the spool (a re-shipped point counts again).",
            Read::Spool(|s| s.points_shipped)),
        family("tsd.rtsd.spool.batches", Tag::None, "rtsd_spool_batches_total", Counter,
            "Inserts ClickHouse accepted from the spool.", Read::Spool(|s| s.ship_batches)),
        family("tsd.rtsd.spool.errors", Tag::None, "rtsd_spool_errors_total", Counter,
            "Shipping attempts that failed: ClickHouse down, slow or refusing, or the spool failing.",
            Read::Spool(|s| s.ship_errors)),
        family("tsd.rtsd.spool.retries", Tag::None, "rtsd_spool_retries_total", Counter,
            "Shipping attempts repeated after a failure.", Read::Spool(|s| s.ship_retries)),
        family("tsd.rtsd.spool.dropped", Tag::None, "rtsd_spool_dropped_points_total", Counter,
            "Points the spool shed (spool-overflow drop-oldest beyond spool-max-bytes), found corrupt, or refused for a series-id collision.",
            Read::Spool(|s| s.points_dropped)),
        family("tsd.rtsd.spool.blocked", Tag::None, "rtsd_spool_blocked_appends_total", Counter,
            "Appends that waited for room in a full spool (spool-overflow block).",
            Read::Spool(|s| s.appends_blocked)),
        family("tsd.rtsd.spool.partitions.dropped", Tag::None, "rtsd_spool_partitions_dropped_total", Counter,
            "ClickHouse partitions dropped for retention.", Read::Spool(|s| s.partitions_dropped)),
        family("tsd.rtsd.spool.expire.errors", Tag::None, "rtsd_spool_expire_errors_total", Counter,
            "Retention statements ClickHouse refused or missed (listing or dropping partitions); retried a minute later.",
            Read::Spool(|s| s.expire_errors)),
        family("tsd.rtsd.spool.rollups.hours", Tag::None, "rtsd_spool_rollup_hours_total", Counter,
            "Hour rollup rows the shipper computed and stored in ClickHouse.",
            Read::Spool(|s| s.rollup_hours)),
        family("tsd.rtsd.spool.rollups.days", Tag::None, "rtsd_spool_rollup_days_total", Counter,
            "Day rollup rows the shipper computed and stored in ClickHouse.",
            Read::Spool(|s| s.rollup_days)),
        family("tsd.rtsd.spool.rollups.errors", Tag::None, "rtsd_spool_rollup_errors_total", Counter,
            "Rollup computations that failed; their hours stay marked for the next round.",
            Read::Spool(|s| s.rollup_errors)),
    ]
};

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

/// The `stats` reply, one counter per line as OpenTSDB prints them:
/// `tsd.<name> <unix-seconds> <value>[ tags] host=<hostname>`.
pub fn stats_reply(stats: &Stats, store: &StorageStats) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let host = hostname();
    let mut out = String::new();
    for line in stats.lines(store) {
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
        let snap = s.lines(&StorageStats::default());
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
