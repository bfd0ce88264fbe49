//! Column family names, what each one holds, and how RocksDB is tuned for it.
//!
//! Key bytes are built only by [`super::keys`]; value formats are described
//! in the module doc of [`super`]. Tuning follows what each family does on
//! the hot path: `log` takes every ingest batch and is read only at startup,
//! the block and rollup families are written once per sealed hour and read
//! by queries, the index families are small and read by point lookups.

use chrono::Datelike;
use rocksdb::{AsColumnFamilyRef, BlockBasedOptions, Cache, DBCompressionType, Options};

use super::StoreOptions;
use crate::model::DAY_MS;

/// Format version, next series id and the seal watermark.
///
/// Keys: the ASCII names in [`super::keys`] (`format_version`,
/// `next_series_id`, `seal_watermark`). Values: fixed-width big-endian.
pub const META: &str = "meta";

/// Series key → series id.
///
/// Key: canonical series key bytes (`metric (0x00 tagk 0x00 tagv)*`).
/// Value: series id, u64 big-endian.
pub const SERIES: &str = "series";

/// Families of older stores that this build neither reads nor writes,
/// dropped at open: `series_by_id` (id → key) and `index` (posting lists
/// from metrics and tags to ids) are rebuilt in memory from [`SERIES`]
/// instead (see `series_index`).
pub const RETIRED: [&str; 2] = ["series_by_id", "index"];

/// Every name ever written, for `/api/suggest` and "No such name".
///
/// Key: kind byte (`'m'` metric, `'k'` tag key, `'v'` tag value) ‖ name.
/// Value: empty.
pub const NAMES: &str = "names";

/// The durability log of head chunks: one record per ingest batch.
///
/// Key: sequence number, u64 big-endian. Value: a log record (see `log`).
pub const LOG: &str = "log";

/// OpenTSDB annotations: notes on one series or, with id 0, on all of
/// them (series ids start at 1). Written by the HTTP API, not the writer
/// thread (see `annotation`).
///
/// Key: series id, u64 big-endian (0: global) ‖ start time, sign-flipped
/// i64 big-endian ms. Value: `0x01 ‖ JSON` (see `annotation`).
pub const ANNOTATIONS: &str = "annotations";

/// The families every store has, besides RocksDB's `default` (unused) and
/// the time-partitioned ones ([`Partitioned`]). A store opened by an older
/// build gains the ones it lacks at open.
pub const FIXED: [&str; 5] = [META, SERIES, NAMES, LOG, ANNOTATIONS];

/// The families split by time, one per period, so that retention drops
/// whole families (no tombstones, no compaction churn) and a query only
/// opens the periods it asks for. Every one is keyed by
/// `series id ‖ interval start` (u64 BE ‖ sign-flipped i64 BE ms).
///
/// Blocks and hour rollups have two period lengths: a fine one for recent
/// data and a coarse one, a year, for data older than a horizon (see
/// `blocks`), so that the number of families stays bounded whatever
/// timestamps clients send and however long the store runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioned {
    /// `blocks_YYYYMMDD` per UTC day, `blocks_YYYY` per UTC year. Value:
    /// the chunk (see `chunk`; it starts with its own version byte). A
    /// block lives in a family of the period its window starts in; windows
    /// are hours, so a block never straddles two days.
    Blocks,
    /// `rollup_1h_YYYYMM` per UTC month, `rollup_1h_YYYY` per UTC year:
    /// hourly pre-aggregates. Value: a rollup record (see `rollup`).
    Hours,
    /// `rollup_1d_YYYY`, one per UTC year: daily pre-aggregates folded from
    /// the hourly ones. Value: a rollup record.
    Days,
}

/// How long a partition's period is. Ordered finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Span {
    Day,
    Month,
    Year,
}

impl Span {
    fn digits(self) -> usize {
        match self {
            Span::Day => 8,
            Span::Month => 6,
            Span::Year => 4,
        }
    }

    /// Start of the period holding `ts`.
    pub fn start(self, ts: i64) -> i64 {
        let date = date_of(ts);
        let first = match self {
            Span::Day => Some(date),
            Span::Month => date.with_day(1),
            Span::Year => date.with_day(1).and_then(|d| d.with_month(1)),
        };
        first.map_or(day_start(ts), midnight)
    }

    /// Start of the period after the one starting at `start`.
    pub fn end(self, start: i64) -> i64 {
        let date = date_of(start);
        let next = match self {
            Span::Day => date.checked_add_days(chrono::Days::new(1)),
            Span::Month => date.checked_add_months(chrono::Months::new(1)),
            Span::Year => date.checked_add_months(chrono::Months::new(12)),
        };
        next.map_or(i64::MAX, midnight)
    }
}

/// One period of one length: what a partitioned family covers. Ordered
/// by span, then start, so a sorted set lists the fine periods first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    pub span: Span,
    pub start: i64,
}

impl Period {
    /// The period of length `span` holding `ts`.
    pub fn of(span: Span, ts: i64) -> Period {
        Period {
            span,
            start: span.start(ts),
        }
    }

    pub fn end(self) -> i64 {
        self.span.end(self.start)
    }
}

impl Partitioned {
    pub const ALL: [Partitioned; 3] = [Partitioned::Blocks, Partitioned::Hours, Partitioned::Days];

    fn prefix(self) -> &'static str {
        match self {
            Partitioned::Blocks => "blocks_",
            Partitioned::Hours => "rollup_1h_",
            Partitioned::Days => "rollup_1d_",
        }
    }

    /// The period lengths of the kind's families, fine first; the last
    /// is the coarse one old data goes to.
    pub fn spans(self) -> &'static [Span] {
        match self {
            Partitioned::Blocks => &[Span::Day, Span::Year],
            Partitioned::Hours => &[Span::Month, Span::Year],
            Partitioned::Days => &[Span::Year],
        }
    }

    /// The family name of `period`.
    pub fn name(self, period: Period) -> String {
        // Digits written directly: every block lookup and seal names its
        // families, and chrono's format strings showed in seal profiles.
        let date = date_of(period.start);
        let (prefix, y) = (self.prefix(), date.year());
        match period.span {
            Span::Day => format!("{prefix}{y:04}{:02}{:02}", date.month(), date.day()),
            Span::Month => format!("{prefix}{y:04}{:02}", date.month()),
            Span::Year => format!("{prefix}{y:04}"),
        }
    }

    /// The kind and period of a partitioned family name, `None` for other
    /// names.
    pub fn parse(name: &str) -> Option<(Partitioned, Period)> {
        Partitioned::ALL.into_iter().find_map(|kind| {
            let digits = name.strip_prefix(kind.prefix())?;
            let &span = kind.spans().iter().find(|s| s.digits() == digits.len())?;
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let padded = format!("{digits}{}", &"0101"[..8 - digits.len()]);
            let date = chrono::NaiveDate::parse_from_str(&padded, "%Y%m%d").ok()?;
            Some((kind, Period::of(span, midnight(date))))
        })
    }
}

fn date_of(ts: i64) -> chrono::NaiveDate {
    chrono::DateTime::from_timestamp_millis(ts)
        .unwrap_or_default()
        .date_naive()
}

fn midnight(date: chrono::NaiveDate) -> i64 {
    date.and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_millis()
}

/// Start of the UTC day holding `ts`.
pub fn day_start(ts: i64) -> i64 {
    ts.div_euclid(DAY_MS) * DAY_MS
}

/// SST files RocksDB keeps open at most.
pub const MAX_OPEN_FILES: i32 = 1024;

/// Database-wide options.
pub fn db_options(opts: &StoreOptions) -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    // Two cores: one for the writer, background flush and compaction share
    // the other with the queries.
    o.increase_parallelism(2);
    o.set_max_background_jobs(2);
    // Every commit reaches the OS before `write` returns, so a committed
    // batch survives the process dying; `sync_writes` adds fsync.
    o.set_manual_wal_flush(false);
    // Memtables pin the WAL files holding their writes until they flush.
    o.set_max_total_wal_size(512 << 20);
    // All memtables together; beyond this the largest one flushes early.
    o.set_db_write_buffer_size(opts.write_buffer_bytes);
    o.set_keep_log_file_num(4);
    o.set_bytes_per_sync(1 << 20);
    o.set_wal_bytes_per_sync(1 << 20);
    // Keep `open` fast with many SST files.
    o.set_skip_stats_update_on_db_open(true);
    // Unbounded (-1), RocksDB opens every SST file at `open` and keeps it
    // open; bounded, it opens them on demand through its table cache. The
    // service allows 65536 descriptors and 10000 connections; this leaves
    // the connections plenty.
    o.set_max_open_files(MAX_OPEN_FILES);
    o
}

/// Table options with data blocks of about `block_bytes` before
/// compression.
fn table(cache: &Cache, bloom: bool, block_bytes: usize) -> BlockBasedOptions {
    let mut t = BlockBasedOptions::default();
    t.set_block_cache(cache);
    t.set_block_size(block_bytes);
    if bloom {
        t.set_bloom_filter(10.0, false);
        t.set_cache_index_and_filter_blocks(true);
    }
    t
}

/// What [`cf_options`] cannot say through the Rust bindings, set on a
/// block or rollup family once it is open, before the first write to it
/// since the store opened (options set this way are not kept across
/// opens; see `blocks::Partitions`).
///
/// RocksDB stores a data block uncompressed unless compression saves
/// 12.5% of it. Sealed chunks are already entropy-coded: zstd saves 10 to
/// 12% of a 16 KiB block of them, mostly just below that line, so at the
/// default nearly every block of the blocks families was stored raw. At
/// 1000 bytes per KiB (a 2.3% saving) they are kept compressed: on the
/// load bench's stream the blocks took 3.15 instead of 3.54 bytes per
/// point after flush, 3.12 instead of 3.23 once compacted.
pub fn tune_open(db: &super::Db, family: &impl AsColumnFamilyRef) -> Result<(), rocksdb::Error> {
    db.set_options_cf(
        family,
        &[("compression_opts", "{max_compressed_bytes_per_kb=1000}")],
    )
}

/// Memtable arena blocks of the families written a little at a time.
const SMALL_ARENA_BLOCK: usize = 128 << 10;

/// RocksDB's default data block size.
const DEFAULT_BLOCK_BYTES: usize = 4 << 10;

/// Options for the family `name` (a fixed one or a partitioned one).
pub fn cf_options(name: &str, cache: &Cache) -> Options {
    let mut o = Options::default();
    o.set_level_compaction_dynamic_level_bytes(true);
    match name {
        LOG => {
            // Only delete records (points records are in the journal), a
            // few per hour at most, read only at startup: a small memtable,
            // no cache or filters.
            o.set_write_buffer_size(1 << 20);
            o.set_arena_block_size(SMALL_ARENA_BLOCK);
            o.set_compression_type(DBCompressionType::Zstd);
            o.set_block_based_table_factory(&table(cache, false, DEFAULT_BLOCK_BYTES));
        }
        META | SERIES | NAMES | ANNOTATIONS => {
            o.set_write_buffer_size(16 << 20);
            // Arena blocks default to an eighth of the write buffer, and
            // each family's memtable takes one on its first write: 2 MiB
            // apiece for a few hundred bytes of new series per second.
            o.set_arena_block_size(SMALL_ARENA_BLOCK);
            o.set_compression_type(DBCompressionType::Lz4);
            o.set_block_based_table_factory(&table(cache, true, DEFAULT_BLOCK_BYTES));
        }
        _ => {
            // Blocks and rollups: written once per sealed hour, off the
            // ingest path (flushes and compactions run in the background),
            // and mostly never rewritten, so zstd from the first flush on.
            // With lz4 there, a lone flushed file keeps lz4 for good: when
            // nothing overlaps it, compaction moves it to the bottom level
            // without recompressing it. On the load bench's stream (40,000
            // series × 150 points, `disk_tests`) zstd at flush took the
            // blocks from 3.59 to 3.49 bytes per point and the rollups from
            // 0.88 to 0.75. The bloom filter answers "is there a block for
            // this hour already" at seal time without a disk read.
            //
            // 16 KiB data blocks instead of 4: zstd finds more to share in
            // a block of a few dozen chunks or a few hundred rollups, and
            // the index shrinks. Once compacted, the same stream took 3.23
            // instead of 3.46 bytes per point for blocks and 0.66 instead
            // of 0.71 for rollups. A point read decompresses 16 KiB instead
            // of 4, some microseconds with zstd.
            o.set_write_buffer_size(32 << 20);
            o.set_compression_type(DBCompressionType::Zstd);
            o.set_block_based_table_factory(&table(cache, true, 16 << 10));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        // 2026-11-23T00:00:00Z
        let day = 1_795_392_000_000;
        let blocks = Partitioned::Blocks;
        let fine = Period::of(Span::Day, day + DAY_MS - 1);
        assert_eq!(fine.start, day);
        assert_eq!(fine.end(), day + DAY_MS);
        assert_eq!(blocks.name(fine), "blocks_20261123");
        assert_eq!(Partitioned::parse("blocks_20261123"), Some((blocks, fine)));
        assert_eq!(day_start(day + DAY_MS - 1), day);

        // 2026-11-01 and 2026-12-01
        let (nov, dec) = (1_793_491_200_000, 1_796_083_200_000);
        let month = Period::of(Span::Month, day);
        assert_eq!((month.start, month.end()), (nov, dec));
        assert_eq!(Partitioned::Hours.name(month), "rollup_1h_202611");
        assert_eq!(
            Partitioned::parse("rollup_1h_202611"),
            Some((Partitioned::Hours, month))
        );

        // 2026-01-01 and 2027-01-01
        let (y26, y27) = (1_767_225_600_000, 1_798_761_600_000);
        let year = Period::of(Span::Year, day);
        assert_eq!((year.start, year.end()), (y26, y27));
        for (kind, name) in [
            (Partitioned::Days, "rollup_1d_2026"),
            (Partitioned::Hours, "rollup_1h_2026"),
            (Partitioned::Blocks, "blocks_2026"),
        ] {
            assert_eq!(kind.name(year), name);
            assert_eq!(Partitioned::parse(name), Some((kind, year)));
        }

        assert_eq!(Partitioned::parse("blocks_2026112"), None);
        assert_eq!(Partitioned::parse("blocks_202611"), None);
        assert_eq!(Partitioned::parse("blocks_20261341"), None);
        assert_eq!(Partitioned::parse("rollup_1d_202611"), None);
        assert_eq!(Partitioned::parse("rollup_1d_+026"), None);
        assert_eq!(Partitioned::parse(LOG), None);
    }
}
