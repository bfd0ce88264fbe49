//! What the spool's appender and its shipper share: the options, the
//! state under one lock, the database, and the record format (see the
//! parent module's doc for the layout and the versions).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rocksdb::{WriteOptions, DB};

use crate::clickhouse::client::{Client, Compression};
use crate::clickhouse::schema::{Identifier, Layout};
use crate::model::{DataPoint, Sample, SeriesKey};
use crate::queue::{Ack, OverflowPolicy};
use crate::stats::SpoolStats;
use crate::storage::log::{self, Record, RecordEncoder};
use crate::storage::{Retention, StoreError};

/// The spool's format version, in `meta`.
pub const SPOOL_FORMAT_VERSION: u32 = 1;

pub(super) const RECORDS: &str = "records";
pub(super) const META: &str = "meta";
pub(super) const META_FORMAT_VERSION: &[u8] = b"format_version";
pub(super) const META_SHIPPED_BELOW: &[u8] = b"shipped_below";
pub(super) const PENDING: &str = "rollup_pending";

/// The key in [`PENDING`] of an hour of a series whose rollups are to be
/// computed: series ‖ hour start, u64 BE each.
pub(super) fn pending_key(series: u64, hour: i64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&series.to_be_bytes());
    key[8..].copy_from_slice(&(hour.max(0) as u64).to_be_bytes());
    key
}

/// [`pending_key`] read back.
pub(super) fn pending_pair(key: &[u8]) -> Option<(u64, i64)> {
    let series = u64_value(key.get(..8)?)?;
    let hour = u64_value(key.get(8..)?)?;
    Some((series, hour as i64))
}

/// First byte of a spool record; also its format version.
const RECORD_KIND: u8 = 1;

/// Points in one record at most: the low 24 bits of a version number the
/// point within it. A larger append becomes several records.
pub(super) const RECORD_POINTS: usize = 1 << 24;

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
    /// How long partitions of each kind are kept, as the embedded
    /// store's `retention` settings say; [`super::Spool`]'s `expire`
    /// drops the ClickHouse partitions wholly past it.
    pub retention: Retention,
    /// Longest a range delete may take, shipping what was appended before
    /// it included; past it the delete answers an error (ClickHouse may
    /// still finish a mutation it started).
    pub delete_timeout: Duration,
    /// How long past its end an hour is left to fill before the shipper
    /// computes its rollups (the embedded store's `seal-grace-secs`): an
    /// hour computed early is only computed again, but each computation
    /// reads the whole day back.
    pub seal_grace_ms: i64,
    /// How often the shipper looks for sealed hours to compute.
    pub rollup_interval: Duration,
}

impl Default for SpoolOptions {
    fn default() -> SpoolOptions {
        SpoolOptions {
            max_bytes: 1 << 30,
            overflow: OverflowPolicy::DropOldest,
            batch_points: 256 * 1024,
            flush_interval: Duration::from_secs(1),
            sync_writes: false,
            retention: Retention::default(),
            delete_timeout: Duration::from_secs(120),
            seal_grace_ms: 10 * crate::model::MINUTE_MS,
            rollup_interval: Duration::from_secs(30),
        }
    }
}

/// Where the shipper sends points.
#[derive(Clone)]
pub struct Target {
    pub client: Client,
    pub database: Identifier,
    pub compression: Compression,
    /// How the tables are laid out: retention and deletes work on the
    /// tables that hold the rows, which in a cluster are the `_local`
    /// tables of each server of [`Target::shards`] (see [`super`]).
    pub layout: Layout,
    /// A cluster's servers, one per shard (`[clickhouse] shard-urls`),
    /// for retention and deletes; empty: `client`'s server alone.
    pub shards: Vec<Client>,
}

impl Target {
    /// This target once per server retention and deletes work on.
    pub(super) fn servers(&self) -> Vec<Target> {
        if self.shards.is_empty() {
            return vec![self.clone()];
        }
        self.shards
            .iter()
            .map(|client| Target {
                client: client.clone(),
                ..self.clone()
            })
            .collect()
    }
}

/// Work for the shipper besides shipping.
pub(crate) enum Job {
    /// Drop the partitions past retention at this time (ms).
    Expire {
        now_ms: i64,
    },
    Delete(DeleteJob),
}

impl Job {
    /// Records below this sequence ship before the job runs.
    pub fn after(&self) -> u64 {
        match self {
            // Retention is about old data; no order to keep.
            Job::Expire { .. } => 0,
            Job::Delete(d) => d.after,
        }
    }
}

/// A range delete (`Sink::delete`), or with no ids a barrier: everything
/// appended before it shipped.
pub(crate) struct DeleteJob {
    pub ids: Vec<u64>,
    pub from: i64,
    pub to: i64,
    /// The spool's next sequence when the delete came.
    pub after: u64,
    /// When the ingest thread stops waiting: a job not started by then
    /// is skipped, one running is abandoned.
    pub deadline: Instant,
    /// Points deleted, or why not.
    pub reply: SyncSender<Result<u64, String>>,
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
    /// Upkeep for the shipper to run between shipments, in order.
    pub jobs: VecDeque<Job>,
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

    pub(super) fn forget(&mut self, r: RecordInfo) {
        self.stats.records -= 1;
        self.stats.bytes -= r.bytes;
        self.stats.points -= r.points;
    }

    pub(super) fn remember(&mut self, r: RecordInfo) {
        self.records.push_back(r);
        self.stats.records += 1;
        self.stats.bytes += r.bytes;
        self.stats.points += r.points;
    }

    /// Answers the acks of records below `below`.
    pub(super) fn answer(&mut self, below: u64, outcome: Result<(), String>) {
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

/// `samples` as one spool record.
pub(super) fn encode(encoder: &mut RecordEncoder, samples: &[Sample]) -> Vec<u8> {
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

pub(super) fn u32_value(bytes: &[u8]) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(bytes);
    u32::from_be_bytes(raw)
}

pub(super) fn u64_value(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

pub(super) fn corrupt(family: &str, key: &[u8], detail: impl ToString) -> StoreError {
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
