//! The ingest thread: the only code that writes points to the store. It
//! drives a [`Sink`], the write side of a store: [`StoreWriter`], which
//! turns points into RocksDB writes, or the ClickHouse spool
//! ([`crate::clickhouse::spool::Spool`]), which logs them locally and
//! ships them; this module decides what goes into each commit and when
//! the store seals.
//!
//! It takes batches off the ingest queue, gathers whatever else is already
//! waiting into one commit (up to [`MAX_COMMIT_POINTS`]), honours the `--mps`
//! limit, appends to the store and acknowledges `?sync` requesters. A delete
//! request ends the gathering: the points taken before it are committed,
//! then the delete runs and its requester hears how many points went, so
//! deletes and writes apply in queue order. Between batches, and at least
//! every [`TICK`], it seals head chunks that are due, and every
//! [`EXPIRY_INTERVAL`] it drops partitions past their retention.
//!
//! A commit RocksDB refuses (disk full, an I/O error) is retried with
//! backoff, the batch and its requesters kept, until it goes through:
//! meanwhile [`crate::health`] reports the fault, `/api/put` answers 503
//! and the queue fills under its overflow policy. RocksDB clears a
//! disk-full error by itself once enough space is free (its SstFileManager
//! checks every 5 s and wants a write buffer's worth), so ingest resumes
//! without a restart.
//!
//! It runs on a plain OS thread, not a Tokio worker: RocksDB commits block,
//! and one owner for the write path means no locking of the series index or
//! head chunks against other writers. When every queue sender is gone
//! (shutdown), it drains the queue, seals everything and flushes, so nothing
//! accepted is lost.

use std::num::NonZeroU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio_util::sync::CancellationToken;

use crate::model::{now_ms, Sample};
use crate::queue::{Ack, Batch, DeleteRequest, QueueReceiver, Received, MAX_BATCH_POINTS};
use crate::stats::{DropReason, Stats};
use crate::storage::{AppendStats, StoreError, StoreWriter};

/// Points after which the writer stops gathering batches into one commit
/// (which may go one batch past it). A commit is one journal write and a
/// head update, cheap enough at this size; larger commits only cost the
/// writer's buffers memory (at 64 Ki points they were 8 MiB).
pub const MAX_COMMIT_POINTS: usize = 16 * 1024;

/// How often sealing runs when no data arrives.
const TICK: Duration = Duration::from_millis(500);

/// How often expired partitions are dropped: retention is measured in
/// hours or days, so a minute late costs nothing.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(60);

/// Points-per-second limit, shared with nobody: only the writer takes cells.
struct Limiter {
    limiter: DefaultDirectRateLimiter,
    burst: NonZeroU32,
}

impl Limiter {
    fn new(mps: u32) -> Option<Limiter> {
        let rate = NonZeroU32::new(mps)?;
        Some(Limiter {
            // One second of burst: short spikes pass at full speed, the
            // sustained rate is what `--mps` says.
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(rate)),
            burst: rate,
        })
    }

    /// Blocks until `n` points may be written.
    fn wait(&self, n: usize, queue: &QueueReceiver) {
        let mut left = n;
        while left > 0 {
            let take = left.min(self.burst.get() as usize);
            let cells = NonZeroU32::new(take as u32).unwrap_or(NonZeroU32::MIN);
            loop {
                match self.limiter.check_n(cells) {
                    Ok(Ok(())) => break,
                    Ok(Err(not_until)) => {
                        queue.set_throttled(true);
                        std::thread::sleep(not_until.wait_time_from(DefaultClock::default().now()));
                    }
                    // `take` never exceeds the burst, so capacity suffices.
                    Err(_) => break,
                }
            }
            left -= take;
        }
        queue.set_throttled(false);
    }
}

/// First wait before retrying a refused commit; doubled per attempt up to
/// [`RETRY_MAX`], so space coming back is noticed within a second.
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// The write side of a store, as the ingest thread drives it: the one
/// boundary both stores implement, so ingest never knows which it feeds.
/// Every call comes from the ingest thread, one at a time.
pub trait Sink {
    /// Makes `samples` durable as one commit. An error of the disk
    /// ([`StoreError::is_disk`]) is retried with backoff by the caller; any
    /// other error drops them.
    fn append(&mut self, samples: &[Sample]) -> Result<AppendStats, StoreError>;

    /// Answers the `?sync` requesters of the last `append` with `outcome`,
    /// draining `acks`. A store may keep successful acks until the points
    /// are where `?sync` promises them (the spool: in ClickHouse).
    fn acknowledge(&mut self, acks: &mut Vec<Ack>, outcome: Result<(), String>);

    /// Deletes the points of series `ids` with `from <= ts <= to`, those
    /// appended before the call included; returns how many went. No ids:
    /// returns 0 once everything appended before is where readers see it.
    fn delete(&mut self, ids: &[u64], from: i64, to: i64) -> Result<u64, StoreError>;

    /// Periodic work every `TICK` (500 ms): seals what is due; returns how many
    /// chunks were sealed.
    fn seal_due(&mut self, now_ms: i64) -> Result<usize, StoreError>;

    /// Periodic work every `TICK` after sealing: moves aged partitions.
    fn migrate(&mut self, now_ms: i64) -> Result<usize, StoreError>;

    /// Periodic work every `EXPIRY_INTERVAL` (a minute): drops data past
    /// retention, or hands that to a thread of the store's and returns (the
    /// spool: ingest never waits on ClickHouse for it).
    fn expire(&mut self, now_ms: i64) -> Result<(), StoreError>;

    /// At shutdown, once the queue is drained: seals everything still open.
    fn seal_all(&mut self, now_ms: i64) -> Result<usize, StoreError>;

    /// At shutdown, last: makes everything appended durable on disk.
    fn flush(&mut self) -> Result<(), StoreError>;
}

impl Sink for StoreWriter {
    fn append(&mut self, samples: &[Sample]) -> Result<AppendStats, StoreError> {
        StoreWriter::append(self, samples)
    }

    fn acknowledge(&mut self, acks: &mut Vec<Ack>, outcome: Result<(), String>) {
        // The commit is the promise: a committed point survives a crash.
        for ack in acks.drain(..) {
            // A requester that went away no longer needs the answer.
            let _ = ack.send(outcome.clone());
        }
    }

    fn delete(&mut self, ids: &[u64], from: i64, to: i64) -> Result<u64, StoreError> {
        StoreWriter::delete(self, ids, from, to)
    }

    fn seal_due(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        StoreWriter::seal_due(self, now_ms)
    }

    fn migrate(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        StoreWriter::migrate(self, now_ms)
    }

    fn expire(&mut self, now_ms: i64) -> Result<(), StoreError> {
        StoreWriter::expire(self, now_ms).map(drop)
    }

    fn seal_all(&mut self, now_ms: i64) -> Result<usize, StoreError> {
        StoreWriter::seal_all(self, now_ms)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        StoreWriter::flush(self)
    }
}

/// What the ingest thread works with.
pub struct Writer<S: Sink> {
    pub store: S,
    pub queue: QueueReceiver,
    pub stats: Arc<Stats>,
    /// Cancelled when shutdown begins: a commit the store refuses is then
    /// given up instead of retried.
    pub shutdown: CancellationToken,
    /// The `--mps` limit; 0 is none.
    pub mps: u32,
}

/// Runs the writer until the queue closes; returns the store's last error
/// from the final seal and flush, if any.
pub fn run<S: Sink>(w: Writer<S>) -> Result<(), StoreError> {
    let Writer {
        mut store,
        queue,
        stats,
        shutdown,
        mps,
    } = w;
    let limiter = Limiter::new(mps);
    let mut samples: Vec<Sample> = Vec::with_capacity(MAX_COMMIT_POINTS + MAX_BATCH_POINTS);
    let mut acks: Vec<Ack> = Vec::new();
    let mut last_seal = Instant::now();
    // `Store::open` has just expired what was due.
    let mut last_expiry = Instant::now();
    loop {
        let mut delete = None;
        let mut closed = false;
        let mut next = queue.recv_timeout(TICK);
        loop {
            match next {
                Received::Batch(b) => take(b, &mut samples, &mut acks),
                Received::Delete(d) => {
                    delete = Some(d);
                    break;
                }
                Received::Idle => break,
                Received::Closed => {
                    closed = true;
                    break;
                }
            }
            if samples.len() >= MAX_COMMIT_POINTS {
                break;
            }
            next = queue.try_recv();
        }
        if !samples.is_empty() {
            if let Some(l) = &limiter {
                l.wait(samples.len(), &queue);
            }
            commit(&mut store, &stats, &shutdown, &mut samples, &mut acks);
        }
        if let Some(d) = delete {
            run_delete(&mut store, &stats, d);
        }
        if closed {
            break;
        }
        if last_seal.elapsed() >= TICK {
            let now = now_ms();
            seal(&stats, store.seal_due(now));
            // Aged partitions stay readable where they are meanwhile.
            retry_later(&stats, "moving aged partitions", store.migrate(now));
            last_seal = Instant::now();
        }
        if last_expiry.elapsed() >= EXPIRY_INTERVAL {
            // Expired data stays hidden from queries meanwhile.
            retry_later(
                &stats,
                "dropping expired partitions",
                store.expire(now_ms()),
            );
            last_expiry = Instant::now();
        }
    }
    tracing::info!("ingest queue closed; sealing head chunks");
    seal(&stats, store.seal_all(now_ms()));
    store.flush()
}

fn take(b: Batch, samples: &mut Vec<Sample>, acks: &mut Vec<Ack>) {
    samples.extend(b.samples);
    acks.extend(b.ack);
}

/// Commits `samples`, then answers their requesters. A commit the disk
/// refuses (full, I/O error) is retried with backoff until it goes
/// through, so nothing queued or acknowledged is lost: meanwhile the
/// health says so (`/api/put` answers 503) and the queue fills, its
/// overflow policy applying as usual. Only shutdown, or an error no retry
/// can fix, drops the batch.
fn commit(
    store: &mut impl Sink,
    stats: &Stats,
    shutdown: &CancellationToken,
    samples: &mut Vec<Sample>,
    acks: &mut Vec<Ack>,
) {
    let n = samples.len() as u64;
    let mut delay = RETRY_MIN;
    let result = loop {
        match store.append(samples) {
            Err(e) if e.is_disk() && !shutdown.is_cancelled() => {
                stats.store_errors.fetch_add(1, Relaxed);
                if stats.health.store_writable() {
                    tracing::error!(error = %e, points = n, "commit failed; retrying until the store takes writes");
                }
                stats.health.set_store_fault(Some(e.to_string()));
                std::thread::sleep(delay);
                delay = (delay * 2).min(RETRY_MAX);
            }
            result => break result,
        }
    };
    samples.clear();
    let outcome = match result {
        Ok(appended) => {
            if !stats.health.store_writable() {
                tracing::info!("the store takes writes again");
                stats.health.set_store_fault(None);
            }
            stats.points_stored.fetch_add(n, Relaxed);
            stats.batches_committed.fetch_add(1, Relaxed);
            stats
                .new_series
                .fetch_add(appended.new_series as u64, Relaxed);
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, points = n, "commit failed; points dropped");
            stats.store_errors.fetch_add(1, Relaxed);
            stats.dropped(DropReason::StoreError, n);
            Err(format!("storage error: {e}"))
        }
    };
    store.acknowledge(acks, outcome);
}

fn run_delete(store: &mut impl Sink, stats: &Stats, d: DeleteRequest) {
    let result = store.delete(&d.series, d.start_ms, d.end_ms);
    match &result {
        // No series: a barrier, answered once everything before it is in.
        Ok(_) if d.series.is_empty() => {}
        Ok(n) => {
            stats.delete_requests.fetch_add(1, Relaxed);
            stats.points_deleted.fetch_add(*n, Relaxed);
            tracing::info!(
                series = d.series.len(),
                start_ms = d.start_ms,
                end_ms = d.end_ms,
                points = n,
                "deleted points"
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "delete failed; nothing deleted");
            stats.store_errors.fetch_add(1, Relaxed);
        }
    }
    // A requester that went away no longer needs the answer.
    let _ = d
        .ack
        .send(result.map_err(|e| format!("storage error: {e}")));
}

/// Counts and logs a failed upkeep step, which the next run retries.
fn retry_later<T>(stats: &Stats, what: &str, result: Result<T, StoreError>) {
    if let Err(e) = result {
        stats.store_errors.fetch_add(1, Relaxed);
        tracing::error!(error = %e, "{what} failed; will retry");
    }
}

fn seal(stats: &Stats, result: Result<usize, StoreError>) {
    match result {
        Ok(n) => {
            stats.chunks_sealed.fetch_add(n as u64, Relaxed);
        }
        Err(e) => {
            // Unsealed chunks stay in memory and in the log; the next tick
            // retries, so nothing is lost.
            stats.store_errors.fetch_add(1, Relaxed);
            tracing::error!(error = %e, "sealing head chunks failed; will retry");
        }
    }
}
