//! Column family names, what each one holds, and how RocksDB is tuned for it.
//!
//! Key bytes are built only by [`super::keys`]; value formats are described
//! in the module doc of [`super`]. Tuning follows what each family does on
//! the hot path: `log` takes every ingest batch and is read only at startup,
//! the block and rollup families are written once per sealed hour and read
//! by queries, the index families are small and read by point lookups.

use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options};

use super::StoreOptions;

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

/// Series id → series key.
///
/// Key: series id, u64 big-endian. Value: canonical series key bytes.
pub const SERIES_BY_ID: &str = "series_by_id";

/// Inverted index from names to series ids.
///
/// Keys: `'M' ‖ metric ‖ 0x00 ‖ id` (value: the series key, so listing a
/// metric's series needs no second lookup) and
/// `'T' ‖ tagk ‖ 0x00 ‖ tagv ‖ 0x00 ‖ id` (value: empty). Ids are u64
/// big-endian, so every posting list is sorted by id.
pub const INDEX: &str = "index";

/// Every name ever written, for `/api/suggest` and "No such name".
///
/// Key: kind byte (`'m'` metric, `'k'` tag key, `'v'` tag value) ‖ name.
/// Value: empty.
pub const NAMES: &str = "names";

/// The durability log of head chunks: one record per ingest batch.
///
/// Key: sequence number, u64 big-endian. Value: a log record (see `log`).
pub const LOG: &str = "log";

/// Hourly pre-aggregates.
///
/// Key: `series id ‖ hour start` (u64 BE ‖ sign-flipped i64 BE ms). Value:
/// a rollup record (see `rollup`).
pub const ROLLUP_1H: &str = "rollup_1h";

/// Daily (UTC) pre-aggregates, folded from the hourly ones.
///
/// Key: `series id ‖ day start`. Value: a rollup record.
pub const ROLLUP_1D: &str = "rollup_1d";

/// Prefix of the per-UTC-day block families, `blocks_YYYYMMDD`.
///
/// Key: `series id ‖ window start`. Value: the chunk (see `chunk`; it
/// starts with its own version byte). A block lives in the family of the day its window starts in;
/// windows are hours, so a block never straddles two days.
pub const BLOCKS_PREFIX: &str = "blocks_";

/// The families every store has, besides RocksDB's `default` (unused) and
/// the per-day block families.
pub const FIXED: [&str; 8] = [
    META,
    SERIES,
    SERIES_BY_ID,
    INDEX,
    NAMES,
    LOG,
    ROLLUP_1H,
    ROLLUP_1D,
];

/// Length of a UTC day, in ms.
pub const DAY_MS: i64 = 86_400_000;

/// The block family of the UTC day starting at `day_start_ms`.
pub fn blocks_name(day_start_ms: i64) -> String {
    let date = chrono::DateTime::from_timestamp_millis(day_start_ms)
        .unwrap_or_default()
        .date_naive();
    format!("{BLOCKS_PREFIX}{}", date.format("%Y%m%d"))
}

/// The day start of a block family name, `None` for other names.
pub fn parse_blocks_name(name: &str) -> Option<i64> {
    let digits = name.strip_prefix(BLOCKS_PREFIX)?;
    if digits.len() != 8 {
        return None;
    }
    let date = chrono::NaiveDate::parse_from_str(digits, "%Y%m%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// Start of the UTC day holding `ts`.
pub fn day_start(ts: i64) -> i64 {
    ts.div_euclid(DAY_MS) * DAY_MS
}

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
    // The log family's memtable pins the WAL until it flushes; bound that.
    o.set_max_total_wal_size(512 << 20);
    // All memtables together; beyond this the largest one flushes early.
    o.set_db_write_buffer_size(opts.write_buffer_bytes);
    o.set_keep_log_file_num(4);
    o.set_bytes_per_sync(1 << 20);
    o.set_wal_bytes_per_sync(1 << 20);
    // Keep `open` fast with many SST files.
    o.set_skip_stats_update_on_db_open(true);
    o
}

fn table(cache: &Cache, bloom: bool) -> BlockBasedOptions {
    let mut t = BlockBasedOptions::default();
    t.set_block_cache(cache);
    if bloom {
        t.set_bloom_filter(10.0, false);
        t.set_cache_index_and_filter_blocks(true);
    }
    t
}

/// Options for the family `name` (a fixed one or a block family).
pub fn cf_options(name: &str, cache: &Cache) -> Options {
    let mut o = Options::default();
    o.set_level_compaction_dynamic_level_bytes(true);
    match name {
        LOG => {
            // Records are written in key order and range-deleted from the
            // front; big memtables mean most of them die before a flush.
            // Only startup reads them, so spend no cache or filters on them,
            // but compress what is flushed: the log holds over an hour of
            // points until they seal.
            o.set_write_buffer_size(64 << 20);
            o.set_max_write_buffer_number(4);
            o.set_compression_type(DBCompressionType::Zstd);
            o.set_block_based_table_factory(&table(cache, false));
        }
        META | SERIES | SERIES_BY_ID | INDEX | NAMES => {
            o.set_write_buffer_size(16 << 20);
            o.set_compression_type(DBCompressionType::Lz4);
            o.set_block_based_table_factory(&table(cache, true));
        }
        _ => {
            // Blocks and rollups: chunks are already compact, so lz4 is
            // cheap where data is rewritten often and zstd pays off at the
            // bottom where it stays. The bloom filter answers "is there a
            // block for this hour already" at seal time without a disk read.
            o.set_write_buffer_size(32 << 20);
            o.set_compression_type(DBCompressionType::Lz4);
            o.set_bottommost_compression_type(DBCompressionType::Zstd);
            o.set_block_based_table_factory(&table(cache, true));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_family_names_round_trip() {
        // 2026-11-23T00:00:00Z
        let day = 1_795_392_000_000;
        assert_eq!(blocks_name(day), "blocks_20261123");
        assert_eq!(parse_blocks_name("blocks_20261123"), Some(day));
        assert_eq!(day_start(day + DAY_MS - 1), day);
        assert_eq!(parse_blocks_name("blocks_2026112"), None);
        assert_eq!(parse_blocks_name("blocks_20261341"), None);
        assert_eq!(parse_blocks_name(LOG), None);
    }
}
