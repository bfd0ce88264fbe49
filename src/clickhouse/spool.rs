//! The durable spool of a ClickHouse-backed node: the ingest thread's
//! [`Sink`] when points go to ClickHouse. [`Spool::append`] commits each
//! batch as one record to a local RocksDB, WAL on (the embedded store's
//! durability: a point acknowledged survives a crash), and returns; the
//! `shipper` thread sends the records to ClickHouse in large batches and
//! deletes them only once ClickHouse has accepted them. An outage or a
//! restart of either side leaves the records on disk; they are shipped
//! when ClickHouse answers again, at least once each.
//!
//! # Why a RocksDB of its own
//!
//! The spool lives in its own RocksDB (`<data-dir>/spool` for the daemon),
//! not in a column family of the embedded store: a ClickHouse-backed node
//! opens no embedded store (no series index to load, no head to replay),
//! the spool's format evolves apart from the store's, and its WAL carries
//! only spool writes, so it stays small however the store is tuned.
//!
//! # Format, version 1
//!
//! `meta["format_version"]` is a u32 big-endian; open refuses any other.
//!
//! | column family | key                | value |
//! |---------------|--------------------|-------|
//! | `records`     | sequence, u64 BE   | spool record |
//! | `meta`        | `format_version`   | u32 BE |
//! |               | `shipped_below`    | u64 BE: every sequence below it has been shipped |
//!
//! A **spool record** is `0x01 ‖ u32 points ‖ u32 series ‖ (u32 len ‖
//! series key)* ‖ points`, integers big-endian, `points` a log record of
//! the embedded store (`storage::log`: compact varints, one point each)
//! whose ids index this record's series list. Carrying the keys makes a
//! record whole on its own: shipping needs no series index.
//!
//! # Versions, and why a replay changes nothing
//!
//! Point `i` of record `seq` ships with version `seq << 24 | i`. A re-ship
//! (ClickHouse accepted a batch but the answer was lost, or rtsd stopped
//! before deleting it) writes the very same rows, which
//! `ReplacingMergeTree(version)` and `FINAL` reduce to one (see
//! [`super`]). Sequences only grow, across restarts too (`shipped_below`
//! survives an emptied spool), so a later write of a point wins, as in
//! the embedded store.
//!
//! # Bound and overflow
//!
//! The spool holds at most [`SpoolOptions::max_bytes`] of records (the
//! records' encoded size, not RocksDB's files). A record that would pass
//! it applies [`SpoolOptions::overflow`]: drop-oldest deletes the oldest
//! records not being shipped and counts their points; block makes
//! `append` (so the ingest thread, so the queue) wait for the shipper.
//! Once shutdown begins, block stops waiting and keeps the record: a
//! point accepted is not lost for a bound.
//!
//! # `?sync`
//!
//! [`Sink::acknowledge`] keeps the acks of an appended batch until the
//! shipper has its record in ClickHouse, so `/api/put?sync` answers only
//! then; a record shed by drop-oldest answers its acks with an error.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use rocksdb::{ColumnFamilyDescriptor, Options, WriteOptions, DB};
use tokio_util::sync::CancellationToken;

use crate::ingest::Sink;
use crate::model::{DataPoint, Sample, SeriesKey};
use crate::queue::{Ack, OverflowPolicy};
use crate::storage::log::{self, Record, RecordEncoder};
use crate::storage::{AppendStats, StoreError};

use super::client::{Client, Compression};
use super::schema::Identifier;
use super::shipper;

/// The spool's format version, in `meta`.
pub const SPOOL_FORMAT_VERSION: u32 = 1;

pub(super) const RECORDS: &str = "records";
pub(super) const META: &str = "meta";
const META_FORMAT_VERSION: &[u8] = b"format_version";
pub(super) const META_SHIPPED_BELOW: &[u8] = b"shipped_below";

/// First byte of a spool record; also its format version.
const RECORD_KIND: u8 = 1;

/// Points in one record at most: the low 24 bits of a version number the
/// point within it. A larger append becomes several records.
const RECORD_POINTS: usize = 1 << 24;

/// How often a blocked `append` looks whether shutdown has begun.
const BLOCK_RECHECK: Duration = Duration::from_millis(100);

/// How the spool behaves; the defaults suit a node taking ~1 M points/s.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// Most bytes of records the spool holds before `overflow` applies.
    pub max_bytes: u64,
    /// What a full spool does. Drop-oldest, like the ingest queue: a node
    /// keeps taking fresh points through a long outage.
    pub overflow: OverflowPolicy,
    /// Points per insert at most: big inserts are what ClickHouse wants
    /// (each makes a part to merge).
    pub batch_points: usize,
    /// How long the shipper lets points gather before it ships fewer than
    /// `batch_points`; the delay `?sync` and readers see under light load.
    pub flush_interval: Duration,
    /// fsync every record, as `StoreOptions::sync_writes` does.
    pub sync_writes: bool,
}

impl Default for SpoolOptions {
    fn default() -> SpoolOptions {
        SpoolOptions {
            max_bytes: 1 << 30,
            overflow: OverflowPolicy::DropOldest,
            batch_points: 256 * 1024,
            flush_interval: Duration::from_secs(1),
            sync_writes: false,
        }
    }
}

/// Where the shipper sends points.
#[derive(Clone)]
pub struct Target {
    pub client: Client,
    pub database: Identifier,
    pub compression: Compression,
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
}

/// A record's place in the spool, kept in memory to account and shed
/// without reading it.
#[derive(Debug, Clone, Copy)]
pub(super) struct RecordInfo {
    pub seq: u64,
    pub bytes: u64,
    pub points: u64,
}

/// What the appender and the shipper share, under [`Shared::state`].
#[derive(Default)]
pub(super) struct State {
    /// Records on disk, oldest first.
    pub records: VecDeque<RecordInfo>,
    /// Records below this sequence are being shipped; drop-oldest spares
    /// them.
    pub shipping_below: u64,
    /// Acks waiting for their record, by the record's sequence.
    pub acks: BTreeMap<u64, Vec<Ack>>,
    pub stats: SpoolStats,
    /// Set when the spool is dropped: the shipper stops.
    pub closing: bool,
}

impl State {
    /// Forgets the records below `below`, which the shipper has shipped,
    /// and answers their acks.
    pub fn shipped(&mut self, below: u64) {
        while self.records.front().is_some_and(|r| r.seq < below) {
            if let Some(r) = self.records.pop_front() {
                self.forget(r);
                self.stats.points_shipped += r.points;
            }
        }
        self.answer(below, Ok(()));
    }

    /// Forgets a record that will not be shipped and counts its points
    /// as dropped.
    pub fn dropped(&mut self, r: RecordInfo) {
        self.forget(r);
        self.stats.points_dropped += r.points;
        if let Some(acks) = self.acks.remove(&r.seq) {
            for ack in acks {
                // A requester that went away no longer needs the answer.
                let _ = ack.send(Err("spool full: points dropped before shipping".to_owned()));
            }
        }
    }

    fn forget(&mut self, r: RecordInfo) {
        self.stats.records -= 1;
        self.stats.bytes -= r.bytes;
        self.stats.points -= r.points;
    }

    fn remember(&mut self, r: RecordInfo) {
        self.records.push_back(r);
        self.stats.records += 1;
        self.stats.bytes += r.bytes;
        self.stats.points += r.points;
    }

    /// Answers the acks of records below `below`.
    fn answer(&mut self, below: u64, outcome: Result<(), String>) {
        let later = self.acks.split_off(&below);
        for ack in std::mem::replace(&mut self.acks, later)
            .into_values()
            .flatten()
        {
            // A requester that went away no longer needs the answer.
            let _ = ack.send(outcome.clone());
        }
    }
}

/// The spool's database and state, shared with the shipper thread.
pub(super) struct Shared {
    pub db: DB,
    pub state: Mutex<State>,
    /// Signalled on every append, shipment and close.
    pub changed: Condvar,
    pub options: SpoolOptions,
    pub target: Target,
    pub write_opts: WriteOptions,
}

impl Shared {
    pub fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::MissingColumnFamily(name.to_owned()))
    }
}

/// Reads a spool's stats from any thread.
#[derive(Clone)]
pub struct SpoolMonitor(Arc<Shared>);

impl SpoolMonitor {
    /// A snapshot of the spool's depth and counters.
    pub fn stats(&self) -> SpoolStats {
        self.0.state.lock().stats
    }
}

/// The spool: the ingest thread's handle. Dropping it stops the shipper;
/// what is not shipped yet stays on disk for the next open.
pub struct Spool {
    shared: Arc<Shared>,
    shipper: Option<JoinHandle<()>>,
    shutdown: CancellationToken,
    next_seq: u64,
    encoder: RecordEncoder,
}

impl Spool {
    /// Opens (or creates) the spool in `dir` and starts shipping what it
    /// holds to `target`. Once `shutdown` is cancelled, a full spool with
    /// the block policy takes records anyway.
    pub fn open(
        dir: &Path,
        target: Target,
        options: SpoolOptions,
        shutdown: CancellationToken,
    ) -> Result<Spool, StoreError> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        let families = [RECORDS, META].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&db_opts, dir, families)?;
        let meta = db
            .cf_handle(META)
            .ok_or_else(|| StoreError::MissingColumnFamily(META.to_owned()))?;
        match db.get_cf(meta, META_FORMAT_VERSION)? {
            None => db.put_cf(
                meta,
                META_FORMAT_VERSION,
                SPOOL_FORMAT_VERSION.to_be_bytes(),
            )?,
            Some(v) if v[..] == SPOOL_FORMAT_VERSION.to_be_bytes() => {}
            Some(v) => {
                return Err(corrupt(
                    META,
                    META_FORMAT_VERSION,
                    format!(
                        "spool format {v:02x?}; this build reads version {SPOOL_FORMAT_VERSION}"
                    ),
                ))
            }
        }
        let mut next_seq = match db.get_cf(meta, META_SHIPPED_BELOW)? {
            Some(v) => {
                u64_value(&v).ok_or_else(|| corrupt(META, META_SHIPPED_BELOW, "not a u64"))?
            }
            // Sequence 0 would make version 0, below any real write.
            None => 1,
        };
        let mut state = State::default();
        let records = db
            .cf_handle(RECORDS)
            .ok_or_else(|| StoreError::MissingColumnFamily(RECORDS.to_owned()))?;
        for item in db.iterator_cf(records, rocksdb::IteratorMode::Start) {
            let (key, value) = item?;
            let seq = u64_value(&key).ok_or_else(|| corrupt(RECORDS, &key, "key is not a u64"))?;
            // A record whose header is unreadable is shipped, found
            // corrupt and counted then, like any other.
            let points = value.get(1..5).map_or(0, |b| u32_value(b) as u64);
            state.remember(RecordInfo {
                seq,
                bytes: value.len() as u64,
                points,
            });
            next_seq = next_seq.max(seq + 1);
        }
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(options.sync_writes);
        let shared = Arc::new(Shared {
            db,
            state: Mutex::new(state),
            changed: Condvar::new(),
            options,
            target,
            write_opts,
        });
        let shipper = shipper::start(Arc::clone(&shared)).map_err(|source| StoreError::Start {
            what: "the spool's shipper",
            source,
        })?;
        Ok(Spool {
            shared,
            shipper: Some(shipper),
            shutdown,
            next_seq,
            encoder: RecordEncoder::default(),
        })
    }

    /// A handle on the spool's stats for other threads (the ingest thread
    /// owns the spool).
    pub fn monitor(&self) -> SpoolMonitor {
        SpoolMonitor(Arc::clone(&self.shared))
    }

    /// Commits one record of `samples`, after making room for it.
    fn append_record(&mut self, samples: &[Sample]) -> Result<(), StoreError> {
        let record = encode(&mut self.encoder, samples);
        let bytes = record.len() as u64;
        self.make_room(bytes)?;
        let seq = self.next_seq;
        let shared = &*self.shared;
        shared.db.put_cf_opt(
            shared.cf(RECORDS)?,
            seq.to_be_bytes(),
            &record,
            &shared.write_opts,
        )?;
        self.next_seq += 1;
        shared.state.lock().remember(RecordInfo {
            seq,
            bytes,
            points: samples.len() as u64,
        });
        shared.changed.notify_all();
        Ok(())
    }

    /// Applies the overflow policy until `bytes` more fit, or nothing more
    /// can be done about it.
    fn make_room(&self, bytes: u64) -> Result<(), StoreError> {
        let shared = &*self.shared;
        let mut state = shared.state.lock();
        let mut waited = false;
        while state.stats.bytes + bytes > shared.options.max_bytes && !state.records.is_empty() {
            match shared.options.overflow {
                OverflowPolicy::Block => {
                    if self.shutdown.is_cancelled() {
                        break;
                    }
                    if !waited {
                        waited = true;
                        state.stats.appends_blocked += 1;
                    }
                    shared.changed.wait_for(&mut state, BLOCK_RECHECK);
                }
                OverflowPolicy::DropOldest => {
                    let below = state.shipping_below;
                    // Records being shipped are at the front; the batch in
                    // flight alone may exceed the bound for a moment.
                    let Some(at) = state.records.iter().position(|r| r.seq >= below) else {
                        break;
                    };
                    let victim = state.records[at];
                    shared.db.delete_cf_opt(
                        shared.cf(RECORDS)?,
                        victim.seq.to_be_bytes(),
                        &shared.write_opts,
                    )?;
                    state.records.remove(at);
                    state.dropped(victim);
                }
            }
        }
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.shared.state.lock().closing = true;
        self.shared.changed.notify_all();
        if let Some(shipper) = self.shipper.take() {
            // A panicked shipper has logged its panic; nothing more to do.
            let _ = shipper.join();
        }
    }
}

impl Sink for Spool {
    fn append(&mut self, samples: &[Sample]) -> Result<AppendStats, StoreError> {
        for chunk in samples.chunks(RECORD_POINTS) {
            self.append_record(chunk)?;
        }
        // Whether a series is new is ClickHouse's to know, at shipping.
        Ok(AppendStats {
            points: samples.len(),
            new_series: 0,
        })
    }

    fn acknowledge(&mut self, acks: &mut Vec<Ack>, outcome: Result<(), String>) {
        let mut state = self.shared.state.lock();
        let last = self.next_seq - 1;
        // Nothing appended (an error), or already shipped: answer now.
        if outcome.is_err() || state.records.back().map_or(true, |r| r.seq != last) {
            for ack in acks.drain(..) {
                // A requester that went away no longer needs the answer.
                let _ = ack.send(outcome.clone());
            }
            return;
        }
        state.acks.entry(last).or_default().append(acks);
    }

    fn delete(&mut self, _ids: &[u64], _from: i64, _to: i64) -> Result<u64, StoreError> {
        Err(StoreError::Unsupported(
            "deleting points from the clickhouse store",
        ))
    }

    // A ClickHouse store has no head to seal, no partitions to move and
    // (so far) no retention of rtsd's to apply.
    fn seal_due(&mut self, _now_ms: i64) -> Result<usize, StoreError> {
        Ok(0)
    }

    fn migrate(&mut self, _now_ms: i64) -> Result<usize, StoreError> {
        Ok(0)
    }

    fn expire(&mut self, _now_ms: i64) -> Result<(), StoreError> {
        Ok(())
    }

    fn seal_all(&mut self, _now_ms: i64) -> Result<usize, StoreError> {
        Ok(0)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(self.shared.db.flush_wal(true)?)
    }
}

/// `samples` as one spool record.
fn encode(encoder: &mut RecordEncoder, samples: &[Sample]) -> Vec<u8> {
    let mut index: HashMap<&SeriesKey, u64> = HashMap::new();
    let mut keys: Vec<&SeriesKey> = Vec::new();
    encoder.start();
    for s in samples {
        let id = *index.entry(&s.series).or_insert_with(|| {
            keys.push(&s.series);
            keys.len() as u64 - 1
        });
        encoder.push(id, s.point);
    }
    let key_bytes: usize = keys.iter().map(|k| 4 + k.as_bytes().len()).sum();
    let mut out = Vec::with_capacity(9 + key_bytes + encoder.bytes().len());
    out.push(RECORD_KIND);
    // `append` splits at RECORD_POINTS, so both counts fit in a u32.
    out.extend_from_slice(&(samples.len() as u32).to_be_bytes());
    out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
    for key in keys {
        out.extend_from_slice(&(key.as_bytes().len() as u32).to_be_bytes());
        out.extend_from_slice(key.as_bytes());
    }
    out.extend_from_slice(encoder.bytes());
    out
}

/// A spool record read back.
pub(super) struct Decoded {
    pub keys: Vec<SeriesKey>,
    /// Index into `keys`, and the point, in append order.
    pub points: Vec<(usize, DataPoint)>,
}

/// Reads a spool record; `None` if it is not one this build wrote.
pub(super) fn decode(record: &[u8]) -> Option<Decoded> {
    if record.first() != Some(&RECORD_KIND) {
        return None;
    }
    let points = u32_value(record.get(1..5)?) as usize;
    let series = u32_value(record.get(5..9)?) as usize;
    let mut at = 9;
    // Capped by the record's size, whatever its header claims.
    let mut keys = Vec::with_capacity(series.min(record.len() / 5));
    for _ in 0..series {
        let len = u32_value(record.get(at..at + 4)?) as usize;
        at += 4;
        keys.push(SeriesKey::from_bytes(
            record.get(at..at.checked_add(len)?)?,
        )?);
        at += len;
    }
    let Ok(Record::Points(iter)) = log::decode(&record[at..]) else {
        return None;
    };
    let mut out = Vec::with_capacity(points.min(record.len()));
    for item in iter {
        let (id, point) = item.ok()?;
        let id = usize::try_from(id).ok().filter(|&i| i < keys.len())?;
        out.push((id, point));
    }
    (out.len() == points).then_some(Decoded { keys, points: out })
}

/// The version of point `index` of record `seq` (see the module doc).
pub(super) fn version(seq: u64, index: usize) -> u64 {
    seq << 24 | index as u64
}

fn u32_value(bytes: &[u8]) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(bytes);
    u32::from_be_bytes(raw)
}

fn u64_value(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn corrupt(family: &str, key: &[u8], detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        family: family.to_owned(),
        key: key.iter().map(|b| format!("{b:02x}")).collect(),
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn sample(metric: &str, host: &str, ts: i64, value: Value) -> Sample {
        Sample {
            series: SeriesKey::new(metric, [("host", host)]),
            point: DataPoint {
                timestamp_ms: ts,
                value,
            },
        }
    }

    /// A point comparable bit for bit, NaN included.
    fn flat(key: &SeriesKey, p: &DataPoint) -> (SeriesKey, i64, u64) {
        let bits = match p.value {
            Value::Int(v) => v as u64,
            Value::Float(f) => f.to_bits(),
        };
        (key.clone(), p.timestamp_ms, bits)
    }

    #[test]
    fn records_read_back_as_written() {
        let samples = vec![
            sample("m", "a", 1_000, Value::Int(-7)),
            sample("m", "b", 1_000, Value::Float(12.5)),
            sample("m", "a", 2_000, Value::Float(f64::NAN)),
            sample("n", "a", 500, Value::Int(i64::MAX)),
        ];
        let record = encode(&mut RecordEncoder::default(), &samples);
        let d = decode(&record).expect("decodes");
        assert_eq!(d.keys.len(), 3);
        let back: Vec<_> = d.points.iter().map(|(i, p)| flat(&d.keys[*i], p)).collect();
        let want: Vec<_> = samples.iter().map(|s| flat(&s.series, &s.point)).collect();
        assert!(back == want);
    }

    #[test]
    fn damaged_records_are_refused() {
        let samples = vec![sample("m", "a", 1_000, Value::Int(1))];
        let record = encode(&mut RecordEncoder::default(), &samples);
        for cut in 0..record.len() {
            assert!(decode(&record[..cut]).is_none(), "cut at {cut}");
        }
        let mut other = record.clone();
        other[0] = 2;
        assert!(decode(&other).is_none());
    }

    #[test]
    fn versions_order_records_then_points() {
        assert!(version(1, RECORD_POINTS - 1) < version(2, 0));
        assert_eq!(version(3, 5), 3 << 24 | 5);
    }
}
