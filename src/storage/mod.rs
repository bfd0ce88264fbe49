//! The storage engine: series index, head chunks, durability log, sealed
//! blocks and rollups on RocksDB.
//!
//! [`Store::open`] returns the two halves: a [`StoreWriter`], owned by the
//! writer thread (the only code that writes), and a cloneable
//! [`StoreReader`] for HTTP requests and the query engine. Both share one
//! `DBWithThreadMode<MultiThreaded>` and the in-memory head through an `Arc`.
//!
//! # Write path
//!
//! `append` resolves series ids from an in-memory map (new series get the
//! next id and their index entries, committed in one RocksDB write batch
//! with the WAL on), encodes the batch as one compact log record and
//! appends it to the journal, segment files beside RocksDB (see
//! `journal`). Only then do the points enter the head chunks, so readers
//! never see a point that a crash could lose.
//!
//! `seal_due` turns head windows into blocks once their hour is over plus a
//! grace period, at once when they lie beyond the grace in the future (a
//! bad client clock must not pin the log), and early, oldest first, when
//! the head outgrows its memory limit. A block that already exists for the
//! window (late data) is merged with the head, the newest write winning per
//! timestamp; that read-modify-write is the only one, so a block is written
//! once unless data arrives for a sealed hour. Blocks, the hour's rollup and
//! the refolded day rollup are committed together, a few thousand windows
//! per commit and a bounded number per call so ingest keeps going while a
//! big hour seals; afterwards the log records no open window needs are
//! deleted (whole journal segments, a range of the `log` family). A crash
//! between commits leaves some windows both sealed and in the log; replay
//! puts them back in the head and the next seal merges them into the same
//! block again, which changes nothing.
//!
//! `delete` removes a time range of some series: blocks of the range are
//! rewritten without the points (or deleted), their hour rollups
//! recomputed and their days refolded, and a delete record is put in the
//! `log` family, all in ONE write batch; then the head drops the points.
//! Log records of both kinds share one sequence; replay merges the journal
//! and the family in that order, so a point written before a delete stays
//! deleted and one written after it stays. See `delete`.
//!
//! The log therefore holds about an hour plus the grace of points, and the
//! head the same points compressed. At sustained rates where that exceeds
//! `head_memory_limit`, windows of the current hour seal early and are
//! merged again when they finally close, trading rewrites for memory.
//!
//! # Read path
//!
//! Readers copy what they need out of the head under a short read lock,
//! *then* read RocksDB. In that order a window sealed in between is seen
//! twice (identical data, merged) rather than not at all. Which series a
//! query or lookup touches comes from the posting lists in memory
//! (`series_index`), built at open from the `series` family and extended
//! by the writer after each commit that creates series.
//!
//! # Retention
//!
//! Raw blocks, hour rollups and day rollups each have an optional
//! [`Retention`]. `expire` (at open, then from the writer thread) drops
//! every time-partitioned family whose whole period is older than now minus
//! the retention, so disk space comes back without tombstones. Until then
//! readers filter by the same cutoff, so expired data is never returned.
//! A seal writes nothing of a day already wholly past a kind's retention.
//!
//! # Bounded families
//!
//! Recent blocks live in day families and recent hour rollups in month
//! families; data older than a horizon (the kind's retention, at least 32
//! and at most 400 days) goes to, and `migrate` later moves aged fine
//! families into, one family per year (see `blocks`). Whatever timestamps
//! clients send, a store has the 7 fixed families, at most about 400 day
//! and 14 month families (34 and 3 without retention), and three per year
//! holding data. RocksDB keeps at most [`cf::MAX_OPEN_FILES`] files open.
//!
//! # On-disk format, version 6
//!
//! `meta["format_version"]` holds the version as a u32 big-endian; open
//! refuses any other. Values that hold encoded data (log, block, rollup)
//! also begin with their own version byte, so a later format can convert
//! them one at a time.
//!
//! | column family      | key                                        | value |
//! |--------------------|--------------------------------------------|-------|
//! | `meta`             | `format_version`                           | u32 BE |
//! |                    | `next_series_id`                           | u64 BE: the next id to hand out (ids start at 1) |
//! |                    | `seal_watermark`                           | u64 BE log seq ‖ i64 window bound (see `log`) |
//! | `series`           | series key                                 | series id, u64 BE |
//! | `names`            | `'m'`/`'k'`/`'v'` ‖ name                   | empty |
//! | `log`              | sequence number, u64 BE                    | delete log record |
//! | `blocks_YYYYMMDD`  | id u64 BE ‖ window start i64               | block record |
//! | `blocks_YYYY`      | id u64 BE ‖ window start i64               | block record |
//! | `rollup_1h_YYYYMM` | id u64 BE ‖ hour start i64                 | rollup record |
//! | `rollup_1h_YYYY`   | id u64 BE ‖ hour start i64                 | rollup record |
//! | `rollup_1d_YYYY`   | id u64 BE ‖ UTC day start i64              | rollup record |
//! | `annotations`      | id u64 BE (0: global) ‖ start i64 ms       | annotation record |
//!
//! Blocks, hour rollups and day rollups are partitioned by the UTC day,
//! month and year their key's start falls in, so retention drops whole
//! families; blocks and hour rollups older than the horizon by the UTC
//! year instead. A key is in one family of its kind; readers look in both
//! lengths, and should a move leave a key in two, the finer copy counts.
//! Version 3 added the year families of blocks and hour rollups, and
//! retired the `series_by_id` (id → key) and `index` (posting lists from
//! metrics and tags to ids) families of version 2, which are now built in
//! memory from `series` (see `series_index`). Version 2 stores open, lose
//! those two families and are marked version 3 at once, so a version 2
//! build, which would miss both changes, refuses the store. Version 4
//! writes the compact rollup records (`0x02`); it still reads the
//! fixed-width ones (`0x01`) of versions 2 and 3, which it opens and marks
//! version 4 at once, so that a version 3 build, which would take the new
//! records for corrupt ones, refuses the store. Version 5 seals blocks
//! in the packed chunk format (chunk version 2) when it is smaller and
//! writes rollup records `0x03`; it reads the version 1 chunks and `0x02`
//! records of version 4 stores, which it opens and marks version 5 at
//! once, so that a version 4 build, which would take packed chunks and
//! the new records for corrupt ones, refuses the store. Version 1 kept
//! the rollups in single `rollup_1h`/`rollup_1d` families; it never
//! shipped and is not read. Version 6 moved the points records from the
//! `log` family to the journal (`journal/`, see `journal`); it replays
//! the ones a version 5 store left in the family, and marks the store
//! version 6 at once, so that a version 5 build, which would not see the
//! journal, refuses the store.
//!
//! A series key is `metric (0x00 tagk 0x00 tagv)*`, tags sorted by key
//! ([`crate::model::SeriesKey`]). Every `i64` in a key is big-endian with
//! the sign bit flipped, so byte order is numeric order.
//!
//! * **Log record** = `0x01 ‖ point*`; point = varint(`id << 2 | kind`) ‖
//!   varint(zigzag(ts − previous ts in the record, starting from 0)) ‖
//!   value; kind 0: an integer, varint(zigzag(i)); kind 1: a float, 8 bytes
//!   little-endian IEEE-754; kind 2: a float equal to `m / 10^s` (s < 8),
//!   varint(zigzag(m) << 3 | s). Varints are LEB128. Held in the journal,
//!   framed as `len u32 LE ‖ seq u64 LE ‖ crc32 u32 LE ‖ record`, in
//!   segment files `journal/<first seq, 16 hex digits>.journal`.
//! * **Delete log record** = `0x02 ‖ from ‖ to ‖ varint(id)*`: the points
//!   of those series with `from <= ts <= to` were deleted; `from` and `to`
//!   are `i64`s, big-endian with the sign bit flipped like keys. Added
//!   without a version bump, since it is a new record kind and nothing
//!   existing changed; a build that predates it refuses to open a store
//!   whose log still holds one (after a clean shutdown the log is empty).
//! * **Block record** = a chunk ([`chunk`] format), whose first byte is its
//!   own format version: 1 (bit-level, as the head writes it) or 2
//!   (packed integers, when smaller). Windows are one hour aligned to epoch hours and
//!   live in the family of the UTC day or year they start in.
//! * **Rollup record** = `0x03 ‖ flags u16 LE ‖ varint(count) ‖ first ‖
//!   last ‖ sum ‖ min ‖ max ‖ sum_sq`, 6 to 85 bytes, about 25 for an hour
//!   of 10 s points: timestamps are
//!   varint deltas (in seconds when whole), and each value or statistic
//!   takes the shortest exact code its two flag bits name (an integer
//!   varint, relative to the first value when that is an integer, a
//!   decimal as in the log, 8 raw bytes, or nothing when it follows from
//!   the points, as for a single point); see `rollup` for the layout.
//!   Version 4 stores hold `0x02` records, the same with absolute integers
//!   and millisecond deltas, which read the same. Version 3 stores may
//!   still hold `0x01 ‖ count u64 ‖ sum f64 ‖ min f64 ‖ max f64 ‖ sum_sq
//!   f64 ‖ first ‖ last` records, point = `ts i64 ‖ kind (0 int, 1 float)
//!   ‖ 8 value bytes`, all big-endian (75 bytes), which read the same. Day
//!   rollups are folded from the day's hour rollups in hour order.
//! * **Annotation record** = `0x01 ‖ JSON` object with `startTime` and
//!   `endTime` as the client gave them (seconds or ms, OpenTSDB's rule
//!   tells which), `description`, `notes` and an optional `custom` string
//!   map. The key's start is `startTime` in ms. The family was added
//!   without a version bump: older stores gain it, empty, at open.
//!
//! Module map: `cf` names and tunes the families, `keys` builds every
//! key, `index` the series index on disk and `series_index` its posting
//! lists in memory, `head` the in-memory windows, `log` the
//! log records, `journal` the files holding those of points, `blocks` the time-partitioned families (and the blocks in
//! them), `rollup` the aggregates, `writer` and `reader` the two halves,
//! `delete` what a delete rewrites, `annotation` the annotations (written
//! outside the writer thread).

pub mod annotation;
pub mod chunk;

mod blocks;
mod cf;
mod delete;
mod head;
mod index;
mod journal;
mod keys;
pub(crate) mod log;
mod reader;
pub(crate) mod rollup;
mod series_index;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;

use parking_lot::RwLock;
use rocksdb::{BoundColumnFamily, Cache, ColumnFamilyDescriptor, MultiThreaded, Options};

use crate::model::MAX_TIMESTAMP_MS;

pub use crate::stats::{ColumnFamilySize, DiskUsage, StorageStats};
pub use annotation::{Annotation, Annotations};
pub use reader::{StaleSeries, StoreReader};
pub use writer::{AppendStats, StoreWriter, SEAL_WINDOWS_PER_CALL};

use blocks::Partitions;
use cf::Partitioned;
use head::Head;
use series_index::SeriesIndex;

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 6;

/// The older formats this build opens and marks as [`FORMAT_VERSION`]: a
/// version 5 store is a version 6 store with its points records in the
/// `log` family instead of the journal, which replay reads from both; a
/// version 4 store is a version 5 store with only version 1 chunks; a
/// version 3 store is a version 4 store with only fixed-width rollup
/// records, which this build reads; a version 2 store is a version 3 store
/// without year families, plus the two retired families.
const UPGRADABLE_VERSIONS: [u32; 4] = [2, 3, 4, 5];

type Db = rocksdb::DBWithThreadMode<MultiThreaded>;

/// How the store trades durability, memory and latency.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// fsync the WAL on every commit. Off, a committed batch survives the
    /// process dying (kill -9, crash) but not power loss.
    pub sync_writes: bool,
    /// A head window seals once the wall clock passes its end plus this
    /// much, so points arriving a little late still land in the head.
    pub seal_grace_ms: i64,
    /// Bytes of head chunks beyond which the oldest windows seal early.
    pub head_memory_limit: usize,
    /// RocksDB block cache shared by every column family.
    pub block_cache_bytes: usize,
    /// All RocksDB memtables together; beyond it the largest flushes.
    pub write_buffer_bytes: usize,
    pub retention: Retention,
}

/// How long each kind of data is kept, in ms; `None` keeps it forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub raw_ms: Option<i64>,
    pub rollup_1h_ms: Option<i64>,
    pub rollup_1d_ms: Option<i64>,
}

impl Retention {
    fn of(&self, kind: Partitioned) -> Option<i64> {
        match kind {
            Partitioned::Blocks => self.raw_ms,
            Partitioned::Hours => self.rollup_1h_ms,
            Partitioned::Days => self.rollup_1d_ms,
        }
    }

    /// The oldest timestamp of `kind` still kept at `now_ms`
    /// (`i64::MIN` when kept forever).
    fn cutoff(&self, kind: Partitioned, now_ms: i64) -> i64 {
        self.of(kind).map_or(i64::MIN, |r| now_ms.saturating_sub(r))
    }
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sync_writes: false,
            seal_grace_ms: 10 * crate::model::MINUTE_MS,
            head_memory_limit: 512 << 20,
            block_cache_bytes: 64 << 20,
            write_buffer_bytes: 256 << 20,
            retention: Retention::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("store has format version {found}, this build supports version {FORMAT_VERSION}")]
    FormatVersion { found: u32 },
    #[error("corrupt data in {family} at key {key}: {detail}")]
    Corrupt {
        family: String,
        key: String,
        detail: String,
    },
    #[error("column family {0:?} is missing")]
    MissingColumnFamily(String),
    #[error("timestamp {0} out of range 0..={MAX_TIMESTAMP_MS} ms")]
    TimestampOutOfRange(i64),
    #[error("series id space exhausted at id {0}")]
    SeriesIdsExhausted(u64),
    /// What a store cannot do.
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
    /// A failure of the server behind the store (ClickHouse), said in
    /// full: what was being done, and what the server or the wait said.
    #[error("{0}")]
    Server(String),
    /// Writing, reading or truncating the journal's segment files.
    #[error("journal: {0}")]
    Journal(#[source] std::io::Error),
    #[error("starting {what}: {source}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether this is the disk failing (full, an I/O error): worth trying
    /// again once it may have recovered.
    pub fn is_disk(&self) -> bool {
        matches!(self, StoreError::Rocks(_) | StoreError::Journal(_))
    }

    fn corrupt(family: &str, key: &[u8], detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            family: family.to_owned(),
            key: key.iter().map(|b| format!("{b:02x}")).collect(),
            detail: detail.to_string(),
        }
    }
}

/// What the writer and every reader share.
struct Shared {
    db: Db,
    head: RwLock<Head>,
    /// Filled by the writer at open and with every new series.
    series_index: RwLock<SeriesIndex>,
    blocks: Partitions,
    hours: Partitions,
    days: Partitions,
    retention: Retention,
    cache: Cache,
    cache_bytes: usize,
    dir: PathBuf,
    series: AtomicUsize,
    sealed_blocks: AtomicU64,
    log_records: AtomicU64,
    /// Serialises annotation read-modify-writes (see `annotation`).
    annotation_writes: parking_lot::Mutex<()>,
}

impl Shared {
    fn cf(&self, name: &str) -> Result<Arc<BoundColumnFamily<'_>>, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::MissingColumnFamily(name.to_owned()))
    }

    /// Every family the store uses (not RocksDB's unused `default`).
    fn family_names(&self) -> Vec<String> {
        let mut names: Vec<String> = cf::FIXED.iter().map(|n| n.to_string()).collect();
        for kind in Partitioned::ALL {
            names.extend(self.partitions(kind).names());
        }
        names
    }

    fn partitions(&self, kind: Partitioned) -> &Partitions {
        match kind {
            Partitioned::Blocks => &self.blocks,
            Partitioned::Hours => &self.hours,
            Partitioned::Days => &self.days,
        }
    }

    fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(&self.cf(cf::META)?, key)?)
    }
}

/// Opens stores.
pub struct Store;

impl Store {
    /// Opens the store in `dir`, creating it if needed, and replays the log
    /// into the head so every committed point is readable again.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<(StoreWriter, StoreReader), StoreError> {
        let cache = Cache::new_lru_cache(opts.block_cache_bytes);
        // A missing store lists nothing; RocksDB creates it below.
        let existing = Db::list_cf(&Options::default(), dir).unwrap_or_default();
        let mut names: Vec<String> = cf::FIXED.iter().map(|s| s.to_string()).collect();
        names.extend(
            existing
                .into_iter()
                .filter(|n| !cf::FIXED.contains(&n.as_str())),
        );
        let descriptors = names
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(n, cf::cf_options(n, &cache)));
        let db = Db::open_cf_descriptors(&cf::db_options(&opts), dir, descriptors)?;
        let periods = |kind| {
            let found = names.iter().filter_map(|n| cf::Partitioned::parse(n));
            let periods = found.filter(move |&(k, _)| k == kind).map(|(_, p)| p);
            Partitions::new(kind, periods, opts.retention.of(kind), cache.clone())
        };
        let shared = Shared {
            blocks: periods(Partitioned::Blocks),
            hours: periods(Partitioned::Hours),
            days: periods(Partitioned::Days),
            retention: opts.retention,
            db,
            head: RwLock::new(Head::default()),
            series_index: RwLock::new(SeriesIndex::default()),
            cache,
            cache_bytes: opts.block_cache_bytes,
            dir: dir.to_owned(),
            series: AtomicUsize::new(0),
            sealed_blocks: AtomicU64::new(0),
            log_records: AtomicU64::new(0),
            annotation_writes: parking_lot::Mutex::new(()),
        };
        check_format(&shared)?;
        // Only once the format is known: a newer store's families are not
        // ours to drop.
        for retired in cf::RETIRED {
            if names.iter().any(|n| n == retired) {
                shared.db.drop_cf(retired)?;
            }
        }
        let shared = Arc::new(shared);
        let mut writer = StoreWriter::open(Arc::clone(&shared), &opts)?;
        writer.expire(crate::model::now_ms())?;
        Ok((writer, StoreReader::new(shared)))
    }
}

fn check_format(shared: &Shared) -> Result<(), StoreError> {
    let mark = || -> Result<(), StoreError> {
        let meta = shared.cf(cf::META)?;
        shared.db.put_cf(
            &meta,
            keys::META_FORMAT_VERSION,
            FORMAT_VERSION.to_be_bytes(),
        )?;
        Ok(())
    };
    match shared.meta(keys::META_FORMAT_VERSION)? {
        None => mark(),
        Some(v) => {
            let found = <[u8; 4]>::try_from(v.as_slice())
                .map(u32::from_be_bytes)
                .map_err(|_| {
                    StoreError::corrupt(
                        cf::META,
                        keys::META_FORMAT_VERSION,
                        "format version is not 4 bytes",
                    )
                })?;
            if found == FORMAT_VERSION {
                Ok(())
            } else if UPGRADABLE_VERSIONS.contains(&found) {
                // Before anything is written, so that an older build that
                // would not see year families, read compact rollups or
                // packed chunks, or replay the journal refuses the store
                // instead.
                mark()
            } else {
                Err(StoreError::FormatVersion { found })
            }
        }
    }
}

#[cfg(test)]
mod disk_tests;
#[cfg(test)]
mod history_tests;
#[cfg(test)]
mod tests;
