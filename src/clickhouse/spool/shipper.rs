//! The shipper: one OS thread per [`super::Spool`] that sends its
//! records to ClickHouse, oldest first, and deletes them once ClickHouse
//! has accepted them.
//!
//! It waits until [`SpoolOptions::batch_points`] points are waiting or
//! [`SpoolOptions::flush_interval`] has passed since the last shipment,
//! takes whole records up to that many points, turns them into series
//! rows and point rows (versions from the record's sequence, see
//! [`super`]) and inserts them ([`writer::insert_series`], then the
//! points), compressed as the target says; series it has already written
//! or found stored are not asked about again ([`Known`]). The points of a
//! key refused for a hash collision are dropped, logged and counted in
//! `points_dropped`; the rest of the batch ships. A failure (ClickHouse down, slow,
//! refusing) is counted and the same batch is tried again after a backoff
//! that grows to [`RETRY_MAX`], as long as the spool is open. After the
//! insert, one RocksDB write deletes the records and moves
//! `shipped_below` past them; were rtsd to stop in between, the batch
//! ships again after the restart and the duplicates vanish in `FINAL`.
//!
//! Between shipments it runs the upkeep jobs the spool hands it
//! (retention, range deletes; see [`upkeep`]), in the order they came. A
//! job runs once every record appended before it has shipped: those
//! records then ship at once, without waiting for the flush interval,
//! and a batch never reaches past a waiting job, so a delete sees
//! exactly what came before it.
//!
//! The HTTP client is async, so the thread drives it on a runtime of its
//! own: shipping never waits on, nor stalls, the Tokio workers serving
//! clients.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rocksdb::WriteBatch;

use crate::model::{now_ms, SeriesKey, HOUR_MS};
use crate::storage::StoreError;

use super::shared::Job;
#[cfg(doc)]
use super::shared::SpoolOptions;
use super::shared::{self, RecordInfo, Shared, META, META_SHIPPED_BELOW, PENDING, RECORDS};
use super::upkeep;
use crate::clickhouse::points::{self, PointRow};
use crate::clickhouse::{rollups, series_id, writer};

/// First wait before shipping a failed batch again, doubled per failure.
const RETRY_MIN: Duration = Duration::from_millis(50);
/// Longest wait between attempts: a server back is noticed within it.
pub const RETRY_MAX: Duration = Duration::from_secs(2);

/// Starts the shipper of `shared`; it runs until the spool closes.
pub(super) fn start(shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("rtsd-shipper".to_owned())
        .spawn(move || run(&shared, &runtime))
}

fn run(shared: &Shared, runtime: &tokio::runtime::Runtime) {
    let interval = shared.options.flush_interval;
    let mut known = Known::default();
    let mut garbage = Garbage::default();
    // The first records after an idle spell go at once.
    let mut last_ship = Instant::now().checked_sub(interval);
    let mut rollups_at = Instant::now() + shared.options.rollup_interval;
    while let Some(work) = next_work(shared, last_ship.map(|t| t + interval), rollups_at) {
        match work {
            Work::Rollups => {
                // A full run leaves more due: the next comes after one
                // flush interval, so shipping goes on between runs while a
                // backlog (a million series' hours) is worked off.
                let pause = match compute_rollups(shared, runtime) {
                    Computed::Full => interval,
                    Computed::Rest => shared.options.rollup_interval,
                };
                rollups_at = Instant::now() + pause;
            }
            Work::Ship(batch) => {
                if !ship(shared, runtime, &mut known, &batch) {
                    return;
                }
                last_ship = Some(Instant::now());
                garbage.shipped(shared, &batch);
            }
            Work::Job(job) => run_job(shared, runtime, job),
        }
    }
}

/// Bytes of shipped records deleted from the spool but perhaps still in
/// its files. Records are normally deleted while still in the memtable
/// and never reach a file; but records that waited through an outage or
/// a backlog were flushed first, and their range tombstone then leaves
/// the files in place until RocksDB happens to compact them: 2 M points
/// shipped after a slow start left 47 MiB behind. So the shipper compacts
/// the shipped range itself, which drops whole files.
#[derive(Default)]
struct Garbage(u64);

/// Shipped bytes that make the shipper compact during a backlog.
const COMPACT_AFTER_BYTES: u64 = 32 << 20;
/// Bytes of record files below which compacting is not worth a flush
/// (compacting flushes the memtable first, and in the usual case the
/// files hold only small tombstones).
const COMPACT_FILES_BYTES: u64 = 256 << 10;

impl Garbage {
    fn shipped(&mut self, shared: &Shared, batch: &[RecordInfo]) {
        self.0 += batch.iter().map(|r| r.bytes).sum::<u64>();
        let drained = shared.state.lock().records.is_empty();
        let (Some(last), Ok(records)) = (batch.last(), shared.cf(RECORDS)) else {
            return;
        };
        if !drained && self.0 < COMPACT_AFTER_BYTES {
            return;
        }
        let files = shared
            .db
            .property_int_value_cf(records, rocksdb::properties::LIVE_SST_FILES_SIZE)
            .ok()
            .flatten()
            .unwrap_or(0);
        if files < COMPACT_FILES_BYTES {
            return;
        }
        let below = (last.seq + 1).to_be_bytes();
        shared
            .db
            .compact_range_cf(records, None::<&[u8]>, Some(&below[..]));
        self.0 = 0;
    }
}

/// Runs an upkeep job (see [`upkeep`]) and accounts for it.
fn run_job(shared: &Shared, runtime: &tokio::runtime::Runtime, job: Job) {
    match job {
        Job::Expire { now_ms } => {
            let done = runtime.block_on(upkeep::expire(
                &shared.target,
                &shared.options.retention,
                now_ms,
            ));
            let mut state = shared.state.lock();
            state.stats.partitions_dropped += done.dropped;
            state.stats.expire_errors += done.errors;
        }
        Job::Delete(d) => {
            // The ingest thread gives up on it now: running it would
            // delete what it was told stays.
            if Instant::now() >= d.deadline {
                let late = "clickhouse delete did not start within the delete timeout \
                            (points appended before it were still shipping); nothing deleted";
                // A requester that went away no longer needs the answer.
                let _ = d.reply.try_send(Err(late.to_owned()));
                return;
            }
            let result = runtime.block_on(upkeep::delete(&shared.target, &d));
            let result = result.map(|deleted| {
                mark_pending(shared, deleted.days.iter().copied());
                deleted.points
            });
            // A requester that went away no longer needs the answer.
            let _ = d.reply.try_send(result);
        }
    }
}

/// Marks the `(series, hour)` pairs for [`compute_rollups`]; a failure
/// only leaves them computed on the fly by reads (see `rollups`).
fn mark_pending(shared: &Shared, pairs: impl Iterator<Item = (u64, i64)>) {
    let result = shared.cf(PENDING).map_err(ShipError::from).and_then(|cf| {
        let mut batch = WriteBatch::default();
        for (series, hour) in pairs {
            batch.put_cf(cf, shared::pending_key(series, hour), []);
        }
        Ok(shared.db.write_opt(batch, &shared.write_opts)?)
    });
    if let Err(e) = result {
        tracing::warn!(error = %e, "marking hours for their rollups failed");
    }
}

/// Whether a rollup run took all the marks it may.
enum Computed {
    Full,
    Rest,
}

/// Pending hours one [`compute_rollups`] takes at most.
const PENDING_PER_RUN: usize = 4096;

/// Computes the rollups of the pending hours that are sealed (ended
/// [`SpoolOptions::seal_grace_ms`] ago), with [`rollups::compute`], and
/// unmarks them once stored. Only this thread marks and unmarks, so a
/// late point shipped meanwhile marks its hour again after this.
fn compute_rollups(shared: &Shared, runtime: &tokio::runtime::Runtime) -> Computed {
    let sealed_below = now_ms()
        .saturating_sub(shared.options.seal_grace_ms)
        .saturating_sub(HOUR_MS);
    let Ok(cf) = shared.cf(PENDING) else {
        return Computed::Rest;
    };
    let (mut pairs, mut keys) = (Vec::new(), Vec::new());
    for item in shared.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
        let Ok((key, _)) = item else {
            break;
        };
        match shared::pending_pair(&key) {
            Some((series, hour)) if hour <= sealed_below => {
                pairs.push((series, hour));
                keys.push(key);
            }
            Some(_) => {}
            // Not a key this build writes: nothing to compute.
            None => keys.push(key),
        }
        if keys.len() >= PENDING_PER_RUN {
            break;
        }
    }
    if keys.is_empty() {
        return Computed::Rest;
    }
    let full = keys.len() >= PENDING_PER_RUN;
    let t = &shared.target;
    match runtime.block_on(rollups::compute(&t.client, &t.database, &pairs)) {
        Ok(done) => {
            let mut batch = WriteBatch::default();
            for key in &keys {
                batch.delete_cf(cf, key);
            }
            if let Err(e) = shared.db.write_opt(batch, &shared.write_opts) {
                tracing::warn!(error = %e, "unmarking computed rollup hours failed");
            }
            let mut state = shared.state.lock();
            state.stats.rollup_hours += done.hour_rows;
            state.stats.rollup_days += done.day_rows;
            if full {
                Computed::Full
            } else {
                Computed::Rest
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, hours = pairs.len(), "computing rollups failed; retrying later");
            shared.state.lock().stats.rollup_errors += 1;
            Computed::Rest
        }
    }
}

/// What the shipper does next.
enum Work {
    Ship(Vec<RecordInfo>),
    Job(Job),
    Rollups,
}

/// Series ids this shipper has written or found stored, each with a
/// fingerprint of its key. Without it every batch would ask ClickHouse
/// about all its series again (a statement per 4096), though after the
/// first minutes nearly all are stored. The fingerprint keeps a colliding
/// key (same id, other key) out of the shortcut, so `insert_series` still
/// finds the collision. A server that loses its tables while rtsd runs
/// gets no series rows for known series until rtsd restarts.
#[derive(Default)]
struct Known(HashMap<u64, u64>);

/// Entries [`Known`] holds before it starts over: about 64 MB at most,
/// and starting over costs only a few lookups per series once.
const KNOWN_MAX: usize = 4 << 20;

impl Known {
    fn fingerprint(key: &SeriesKey) -> u64 {
        // SipHash with fixed keys: stable for the life of the process,
        // which is all the cache lives.
        let mut h = DefaultHasher::new();
        key.as_bytes().hash(&mut h);
        h.finish()
    }

    /// The keys of `keys` not known to be stored.
    fn unknown<'a>(&self, keys: &'a [SeriesKey]) -> Vec<&'a SeriesKey> {
        keys.iter()
            .filter(|k| self.0.get(&series_id(k)) != Some(&Self::fingerprint(k)))
            .collect()
    }

    /// Remembers `keys` as stored.
    fn learn(&mut self, keys: &[&SeriesKey]) {
        if self.0.len() + keys.len() > KNOWN_MAX {
            self.0.clear();
        }
        for key in keys {
            self.0.insert(series_id(key), Self::fingerprint(key));
        }
    }
}

/// Waits until a job can run (everything appended before it shipped) or
/// a batch is due, and marks the batch as being shipped; `None` once the
/// spool closes. A job waiting for records makes them due at once, and
/// caps the batch at its sequence, so nothing appended after a delete
/// ships before it.
fn next_work(shared: &Shared, due: Option<Instant>, rollups_at: Instant) -> Option<Work> {
    let mut state = shared.state.lock();
    let mut until = u64::MAX;
    loop {
        if state.closing {
            return None;
        }
        if let Some(after) = state.jobs.front().map(Job::after) {
            if state.records.front().map_or(true, |r| r.seq >= after) {
                return state.jobs.pop_front().map(Work::Job);
            }
            until = after;
            break;
        }
        let now = Instant::now();
        if now >= rollups_at {
            return Some(Work::Rollups);
        }
        let waiting = state.stats.points;
        if waiting > 0 {
            match due {
                Some(due) if waiting < shared.options.batch_points as u64 && now < due => {
                    shared.changed.wait_until(&mut state, due.min(rollups_at));
                }
                _ => break,
            }
        } else if state.records.is_empty() {
            shared.changed.wait_until(&mut state, rollups_at);
        } else {
            // Only records without points (corrupt headers): ship them to
            // find out and count them.
            break;
        }
    }
    let mut batch = Vec::new();
    let mut points = 0;
    for r in state.records.iter().take_while(|r| r.seq < until) {
        if !batch.is_empty() && points + r.points > shared.options.batch_points as u64 {
            break;
        }
        points += r.points;
        batch.push(*r);
    }
    state.shipping_below = batch.last().map_or(0, |r| r.seq + 1);
    Some(Work::Ship(batch))
}

/// What one insert carries.
#[derive(Default)]
struct Rows {
    keys: Vec<SeriesKey>,
    points: Vec<PointRow>,
    /// The index in `keys` of each point's key.
    point_keys: Vec<usize>,
}

/// Ships `batch` until ClickHouse takes it, then deletes it from the
/// spool; false if the spool closed first.
fn ship(
    shared: &Shared,
    runtime: &tokio::runtime::Runtime,
    known: &mut Known,
    batch: &[RecordInfo],
) -> bool {
    let mut delay = RETRY_MIN;
    loop {
        match attempt(shared, runtime, known, batch) {
            Ok(()) => return true,
            Err(e) => {
                let mut state = shared.state.lock();
                if state.stats.ship_errors == 0 || delay == RETRY_MIN {
                    tracing::warn!(error = %e, records = batch.len(), "shipping to clickhouse failed; retrying");
                } else {
                    tracing::debug!(error = %e, "shipping to clickhouse failed again");
                }
                state.stats.ship_errors += 1;
                let until = Instant::now() + delay;
                while !state.closing && Instant::now() < until {
                    shared.changed.wait_until(&mut state, until);
                }
                if state.closing {
                    return false;
                }
                state.stats.ship_retries += 1;
                delay = (delay * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
enum ShipError {
    #[error(transparent)]
    Spool(#[from] StoreError),
    #[error("spool: rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error(transparent)]
    ClickHouse(#[from] crate::clickhouse::ClickHouseError),
}

/// One try: read, insert, delete.
fn attempt(
    shared: &Shared,
    runtime: &tokio::runtime::Runtime,
    known: &mut Known,
    batch: &[RecordInfo],
) -> Result<(), ShipError> {
    let records = shared.cf(RECORDS)?;
    let mut rows = Rows::default();
    let mut corrupt = Vec::new();
    for r in batch {
        let value = shared.db.get_pinned_cf(records, r.seq.to_be_bytes())?;
        match value.as_deref().and_then(shared::decode) {
            Some(d) => {
                let ids: Vec<u64> = d.keys.iter().map(series_id).collect();
                let offset = rows.keys.len();
                rows.points
                    .extend(d.points.iter().enumerate().map(|(i, (k, p))| PointRow {
                        series: ids[*k],
                        point: *p,
                        version: shared::version(r.seq, i),
                    }));
                rows.point_keys
                    .extend(d.points.iter().map(|(k, _)| offset + k));
                rows.keys.extend(d.keys);
            }
            None => corrupt.push(*r),
        }
    }
    let t = &shared.target;
    let keys = known.unknown(&rows.keys);
    let inserted = runtime.block_on(writer::insert_series(&t.client, &t.database, &keys))?;
    let refused: HashSet<&SeriesKey> = inserted.refused.iter().map(|r| &r.key).collect();
    let mut collided = 0;
    if !refused.is_empty() {
        for r in &inserted.refused {
            tracing::error!(
                id = %format_args!("{:016X}", r.id), key = %r.key, taken = %r.taken,
                "series id already taken by another key (a hash collision): this key's points are dropped"
            );
        }
        let before = rows.points.len();
        let point_keys = &rows.point_keys;
        let mut i = 0;
        rows.points.retain(|_| {
            i += 1;
            !refused.contains(&rows.keys[point_keys[i - 1]])
        });
        collided = (before - rows.points.len()) as u64;
    }
    let hours: HashSet<(u64, i64)> = rows
        .points
        .iter()
        .map(|r| {
            let ts = r.point.timestamp_ms;
            (r.series, ts - ts.rem_euclid(HOUR_MS))
        })
        .collect();
    if !rows.points.is_empty() {
        runtime.block_on(points::insert(
            &t.client,
            &t.database,
            &rows.points,
            t.compression,
        ))?;
    }
    let stored: Vec<&SeriesKey> = keys.into_iter().filter(|k| !refused.contains(k)).collect();
    known.learn(&stored);
    let below = batch.last().map_or(0, |r| r.seq + 1);
    let mut done = WriteBatch::default();
    if let Some(first) = batch.first() {
        done.delete_range_cf(records, first.seq.to_be_bytes(), below.to_be_bytes());
    }
    done.put_cf(shared.cf(META)?, META_SHIPPED_BELOW, below.to_be_bytes());
    // The hours the batch touched, for their rollups, in the same write:
    // a crash cannot lose the marks of what shipped.
    let pending = shared.cf(PENDING)?;
    for (series, hour) in hours {
        done.put_cf(pending, shared::pending_key(series, hour), []);
    }
    shared.db.write_opt(done, &shared.write_opts)?;
    let mut state = shared.state.lock();
    for r in corrupt {
        tracing::error!(
            seq = r.seq,
            points = r.points,
            "spool record does not decode; dropped"
        );
        if let Some(at) = state.records.iter().position(|x| x.seq == r.seq) {
            state.records.remove(at);
            state.dropped(r);
        }
    }
    state.stats.ship_batches += 1;
    state.shipped(below);
    // Counted as shipped with their records; they were not.
    state.stats.points_shipped -= collided;
    state.stats.points_dropped += collided;
    drop(state);
    shared.changed.notify_all();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_series_are_not_asked_about_again() {
        let keys: Vec<SeriesKey> = ["a", "b", "a"]
            .iter()
            .map(|h| SeriesKey::new("m", [("host", *h)]))
            .collect();
        let mut known = Known::default();
        assert_eq!(known.unknown(&keys).len(), 3);
        known.learn(&known.unknown(&keys[..1]));
        let left = known.unknown(&keys);
        assert_eq!(left, vec![&keys[1]]);
        known.learn(&left);
        assert!(known.unknown(&keys).is_empty());
    }
}
