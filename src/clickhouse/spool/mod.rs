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
//! | `rollup_pending`| series ‖ hour start, u64 BE each | empty: an hour whose rollups are to be computed |
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
//!
//! # Retention
//!
//! [`SpoolOptions::retention`] means what the embedded store's
//! `retention`, `rollup-1h-retention` and `rollup-1d-retention` settings
//! mean, and is applied the same way: whole partitions go once their
//! whole span lies before the cutoff (`now` less the retention of their
//! kind), a day of `points`, 30 days of `rollup_1h`, 365 of `rollup_1d`
//! (so a rollup partition outlives its retention by up to its span).
//! [`Sink::expire`] only hands the shipper a job and returns; the shipper
//! runs it between shipments: it lists the active parts' partitions of
//! each table in `system.parts` and drops the expired ones with `ALTER
//! TABLE .. DROP PARTITION ID`, counting them and its failures in
//! [`SpoolStats`]; a failure waits for the next expiry (a minute later).
//! ClickHouse 18.16 has no table TTL, hence rtsd's own. Points past
//! retention stay readable until their partition is dropped, and the
//! first expiry comes a minute after the ingest thread starts (the
//! embedded store also expires as it opens; the spool does not: only the
//! ingest thread's calls, with the time they give, expire).
//!
//! # Range deletes
//!
//! [`Sink::delete`] (`/api/query` with `delete`) must also delete the
//! points appended before it that are still in the spool, and none
//! appended after it. So it hands the shipper a job marked with the
//! spool's next sequence and waits for the answer: the shipper first
//! ships every record below that mark (at once, not at the flush
//! interval; nothing later rides along), then, per 4096 series, counts
//! the points of the range with `FINAL` (each point once, the number the
//! embedded store reports) and deletes them with `ALTER TABLE .. DELETE`,
//! and likewise the rows of `rollup_1h` and `rollup_1d` whose hour or day
//! the range touches (a bucket only partly in the range loses its whole
//! row: no rollup counts a deleted point). The days of those series that
//! held points from the first touched day to the last one are marked
//! for their rollups (see Rollups), read before the points go.
//! ALTER .. DELETE is a mutation, applied in the background
//! to the parts there when it was made, so later inserts are safe from
//! it; 18.16 cannot wait for one (`mutations_sync` came later), so the
//! shipper polls `system.mutations` until the mutations it made are
//! done. The whole delete, shipping included, is bounded by
//! [`SpoolOptions::delete_timeout`]: past it, or on any ClickHouse error,
//! the delete answers a `StoreError::Server` saying so. A mutation
//! already made may still complete after a timeout; one not started by
//! then never runs. The ingest thread waits meanwhile, as it waits for
//! the embedded store's delete: deletes are rare, and waiting is what
//! keeps them in queue order. A delete of no series is the barrier
//! `/api/query` sends first: it answers once everything before it is
//! shipped, so the query sees it.
//!
//! # Rollups
//!
//! The shipper fills `rollup_1h` and `rollup_1d` (how, and why reads stay
//! exact whatever it does or misses: [`crate::clickhouse::rollups`]).
//! Each shipment marks the `(series, hour)` pairs it touched in
//! `rollup_pending`, in the same RocksDB write that deletes its records,
//! so a crash or restart loses no mark (a re-shipped batch only marks
//! again). Every [`SpoolOptions::rollup_interval`], between shipments
//! and jobs, it takes up to 4096 marked hours that are sealed (ended
//! [`SpoolOptions::seal_grace_ms`] ago, the embedded store's
//! `seal-grace-secs`), computes every hour and the day row of their UTC
//! days from the `FINAL` points, inserts them and unmarks them; a
//! failure keeps them marked for the next round, counted in
//! [`SpoolStats::rollup_errors`]. A late point (for a sealed hour) marks
//! its hour again when it ships, and so a range delete marks the days it
//! touched. Only the shipper thread marks and unmarks, so a mark made
//! while computing is never lost. Several nodes may compute the same
//! hour: from the same points they insert the same row, which
//! `ReplacingMergeTree` collapses, and a row computed from other points
//! than those there now is never read. A day is read back whole for
//! each computation, so the grace keeps an hour from being computed
//! while it still fills.
//!
//! # A cluster
//!
//! Only `Distributed` tables span a cluster, and in 18.16 neither `DROP
//! PARTITION` nor `DELETE` works through them, while `ON CLUSTER` needs
//! ZooKeeper. With [`crate::clickhouse::Layout::Cluster`], retention and
//! deletes therefore work on the `_local` tables of each server in
//! [`Target::shards`] (`[clickhouse] shard-urls`, one server per shard),
//! one after the other; a delete's count adds up, since each point lives
//! on one shard. Without shard urls they reach only the server the
//! target names, and the other shards keep their partitions and points
//! unless a node points at each (or the operator expires and deletes
//! there). Points a delete must cover are on their shards when shipped
//! (inserts are `insert_distributed_sync`).

use std::path::Path;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use rocksdb::properties::PropName;
use rocksdb::{ColumnFamilyDescriptor, Options, WriteOptions, DB};
use tokio_util::sync::CancellationToken;

use crate::ingest::Sink;
use crate::model::Sample;
use crate::queue::{Ack, OverflowPolicy};
use crate::storage::log::RecordEncoder;
use crate::storage::{AppendStats, ColumnFamilySize, DiskUsage, StoreError};

mod shared;
mod shipper;
mod upkeep;

pub use crate::stats::SpoolStats;
pub use shared::{SpoolOptions, Target, SPOOL_FORMAT_VERSION};

use shared::{corrupt, encode, u32_value, u64_value, RecordInfo, Shared, State};
use shared::{DeleteJob, Job};
use shared::{META, META_FORMAT_VERSION, META_SHIPPED_BELOW, PENDING, RECORDS, RECORD_POINTS};

/// Most bytes of write-ahead log the spool keeps.
const SPOOL_WAL_BYTES: u64 = 64 << 20;

/// How often a blocked `append` looks whether shutdown has begun.
const BLOCK_RECHECK: Duration = Duration::from_millis(100);

/// How long past a delete's deadline the ingest thread waits for the
/// shipper's own answer (it stops at the deadline).
const DELETE_ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// Reads a spool's stats from any thread.
#[derive(Clone)]
pub struct SpoolMonitor(Arc<Shared>);

impl SpoolMonitor {
    /// A snapshot of the spool's depth and counters.
    pub fn stats(&self) -> SpoolStats {
        self.0.state.lock().stats
    }

    /// What the spool's RocksDB occupies, as `StoreReader::disk_usage`
    /// counts it: the live SST files of each column family plus the WAL
    /// files in the spool's directory. Costs a property read per family
    /// and a directory listing.
    pub fn disk_usage(&self) -> DiskUsage {
        let db = &self.0.db;
        let column_families: Vec<ColumnFamilySize> =
            [rocksdb::DEFAULT_COLUMN_FAMILY_NAME, RECORDS, META, PENDING]
                .into_iter()
                .filter_map(|name| {
                    let family = db.cf_handle(name)?;
                    let prop = |p: &PropName| {
                        db.property_int_value_cf(family, p)
                            .ok()
                            .flatten()
                            .unwrap_or(0)
                    };
                    Some(ColumnFamilySize {
                        name: name.to_owned(),
                        sst_bytes: prop(rocksdb::properties::LIVE_SST_FILES_SIZE),
                        memtable_bytes: prop(rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES),
                    })
                })
                .collect();
        let wal_bytes = std::fs::read_dir(db.path()).map_or(0, |dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        });
        DiskUsage {
            bytes_on_disk: wal_bytes + column_families.iter().map(|c| c.sst_bytes).sum::<u64>(),
            wal_bytes,
            column_families,
        }
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
        // A WAL file goes only once every family with writes in it has
        // flushed; `meta` takes a write per shipment and flushes rarely, so
        // RocksDB's default cap (four times every family's memtables, about
        // 1.5 GiB here) let 200 MiB of WAL build up over 6 M points. Past
        // this cap RocksDB flushes the families holding the oldest file.
        db_opts.set_max_total_wal_size(SPOOL_WAL_BYTES);
        let families =
            [RECORDS, META, PENDING].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
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

    /// Queues `job` for the shipper.
    fn post(&self, job: Job) {
        self.shared.state.lock().jobs.push_back(job);
        self.shared.changed.notify_all();
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

    fn delete(&mut self, ids: &[u64], from: i64, to: i64) -> Result<u64, StoreError> {
        let timeout = self.shared.options.delete_timeout;
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.post(Job::Delete(DeleteJob {
            ids: ids.to_vec(),
            from,
            to,
            after: self.next_seq,
            deadline: Instant::now() + timeout,
            reply,
        }));
        // The shipper gives up at the deadline itself; the margin lets its
        // answer arrive rather than a second-guess of it.
        match answer.recv_timeout(timeout + DELETE_ANSWER_MARGIN) {
            Ok(result) => result.map_err(StoreError::Server),
            Err(RecvTimeoutError::Timeout) => Err(StoreError::Server(format!(
                "clickhouse delete did not finish within {timeout:?} \
                 (points appended before it were still shipping); ClickHouse may still apply what it started"
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(StoreError::Server(
                "clickhouse delete: the spool's shipper stopped first".to_owned(),
            )),
        }
    }

    // A ClickHouse store has no head to seal and no partitions to move.
    fn seal_due(&mut self, _now_ms: i64) -> Result<usize, StoreError> {
        Ok(0)
    }

    fn migrate(&mut self, _now_ms: i64) -> Result<usize, StoreError> {
        Ok(0)
    }

    /// Hands the shipper an expiry at `now_ms` and returns at once; its
    /// outcome shows in [`SpoolStats::partitions_dropped`] and
    /// [`SpoolStats::expire_errors`].
    fn expire(&mut self, now_ms: i64) -> Result<(), StoreError> {
        let r = &self.shared.options.retention;
        if r.raw_ms.is_none() && r.rollup_1h_ms.is_none() && r.rollup_1d_ms.is_none() {
            return Ok(());
        }
        let mut state = self.shared.state.lock();
        // One expiry waiting is enough; the later time drops more.
        for job in state.jobs.iter_mut() {
            if let Job::Expire { now_ms: at } = job {
                *at = (*at).max(now_ms);
                return Ok(());
            }
        }
        state.jobs.push_back(Job::Expire { now_ms });
        drop(state);
        self.shared.changed.notify_all();
        Ok(())
    }

    fn seal_all(&mut self, _now_ms: i64) -> Result<usize, StoreError> {
        Ok(0)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(self.shared.db.flush_wal(true)?)
    }
}
