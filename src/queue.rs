//! The bounded ingest queue between connections and the writer thread.
//!
//! A `crossbeam-channel` channel of [`Batch`]es. Producers are async
//! (connection tasks, HTTP handlers); the consumer is the writer thread, which
//! blocks on it. Batches rather than single points cross the channel because
//! one channel operation per point costs more than parsing the point.
//!
//! The bound is in points, whatever the batch sizes: a collector that
//! sends one line per `send()` makes one-point batches, and a bound in
//! batches would call the queue full while it held a few hundred points.
//! So the channel itself is unbounded and a points gauge
//! (`Stats::queue_points`) is the bound: a push that would take it past
//! `capacity` is the overflow. The gauge moves with every push, pop and
//! shed, so `/api/stats` and `/metrics` show how close shedding is.
//!
//! When the queue is full, [`OverflowPolicy`] decides:
//! - `DropOldest` pops the oldest batches off the channel to make room. Fresh
//!   data is worth more than stale data to a monitoring system, and the
//!   collectors that matter (collectd, telegraf telnet, potsdb) never read
//!   replies, so refusing new points would lose data silently at the source
//!   anyway. Every shed point is counted, under `rate_limited` while the
//!   writer is held back by `--mps`, else `queue_full`. A waiting producer
//!   ([`QueueSender::push`]) first waits up to `shed_after` for room, as
//!   under `Block`: on a machine whose cores the parser and the writer
//!   share, a burst fills the queue faster than the writer gets CPU to
//!   drain it, and shedding points the writer would store a few
//!   milliseconds later loses data for nothing. Room that does not come
//!   within `shed_after` means the store truly cannot keep up (a stalled
//!   disk, a full one): then it sheds. While `--mps` holds the writer back
//!   it sheds at once, since the limit is the point.
//! - `Block` makes the producer wait for space, so a connection stops reading
//!   and TCP pushes back on the client. Nothing is lost; a slow store slows
//!   every collector instead.
//!
//! Waiting producers wait on a [`Notify`] that the consumer fires after
//! every pop, so a waiting producer never polls.
//!
//! A [`DeleteRequest`] travels the same channel, so it is ordered with the
//! batches around it: points queued before it are committed first (and
//! deleted if in range), points queued after it are kept. It carries no
//! points, so `--mps` ignores it, and drop-oldest never sheds it: a
//! producer that pops one to make room moves it to a short `front` list
//! that the consumer empties before the channel. Pops by producers and by
//! the consumer both hold the `front` lock, so nothing the channel still
//! holds can overtake a delete moved there.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::sync::{oneshot, Notify};

use crate::model::Sample;
use crate::stats::{DropReason, Stats};

/// Most points one batch carries; larger inputs are split. It is also how
/// much drop-oldest sheds at a time, and a writer commit gathers many.
pub const MAX_BATCH_POINTS: usize = 1024;

/// What a producer does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowPolicy {
    /// Shed the oldest queued points to make room; count them.
    DropOldest,
    /// Wait for room; connections stop reading, TCP pushes back.
    Block,
}

impl FromStr for OverflowPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop-oldest" => Ok(OverflowPolicy::DropOldest),
            "block" => Ok(OverflowPolicy::Block),
            other => Err(format!(
                "unknown overflow policy {other:?}: use drop-oldest or block"
            )),
        }
    }
}

/// Told to an HTTP `?sync` caller once its points are committed (or not).
pub type Ack = oneshot::Sender<Result<(), String>>;

/// Points that travel together, with an optional durability callback.
#[derive(Debug, Default)]
pub struct Batch {
    pub samples: Vec<Sample>,
    pub ack: Option<Ack>,
}

/// Told to a delete requester: how many points went, or why none did.
pub type DeleteAck = oneshot::Sender<Result<u64, String>>;

/// Delete the points of `series` (ids) with timestamps in
/// `[start_ms, end_ms]`. With no series it deletes nothing and serves as a
/// barrier: its answer means everything queued before it is committed.
#[derive(Debug)]
pub struct DeleteRequest {
    pub series: Vec<u64>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub ack: DeleteAck,
}

/// What the channel carries.
enum Item {
    Batch(Batch),
    Delete(DeleteRequest),
}

impl Item {
    fn points(&self) -> u64 {
        match self {
            Item::Batch(b) => b.samples.len() as u64,
            Item::Delete(_) => 0,
        }
    }

    fn reject(self, why: &str) {
        // The requester may have gone away; nothing to tell then.
        match self {
            Item::Batch(b) => {
                if let Some(ack) = b.ack {
                    let _ = ack.send(Err(why.to_string()));
                }
            }
            Item::Delete(d) => {
                let _ = d.ack.send(Err(why.to_string()));
            }
        }
    }
}

/// Why a push did not enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// `try_push` under the `Block` policy found no room.
    #[error("the ingest queue is full")]
    Full,
    /// The writer has stopped (shutdown).
    #[error("the daemon is shutting down")]
    Closed,
}

struct Shared {
    policy: OverflowPolicy,
    /// Points the queue holds before the policy applies.
    capacity: u64,
    batch_limit: usize,
    /// How long a producer waits for room under `DropOldest` before it
    /// sheds.
    shed_after: Duration,
    /// Fired by the consumer after each pop so waiting producers retry.
    space: Notify,
    /// Set by the writer while it waits for the `--mps` limiter.
    throttled: AtomicBool,
    /// Set when the consumer is gone. Senders hold receiver handles (to pop
    /// the oldest), so the channel itself never reports disconnection.
    closed: AtomicBool,
    /// Deletes a shedding producer popped; older than anything queued.
    /// Every pop off the channel holds this lock.
    front: Mutex<VecDeque<DeleteRequest>>,
    stats: Arc<Stats>,
}

/// The producing end; cheap to clone, one per connection or handler.
#[derive(Clone)]
pub struct QueueSender {
    tx: Sender<Item>,
    /// A receiver handle used only to pop the oldest batches on overflow.
    oldest: Receiver<Item>,
    shared: Arc<Shared>,
}

/// The consuming end, owned by the writer thread.
pub struct QueueReceiver {
    rx: Receiver<Item>,
    shared: Arc<Shared>,
}

/// Builds a queue holding about `capacity` points; under `DropOldest` a
/// waiting producer sheds only after `shed_after` without room.
pub fn queue(
    capacity: usize,
    policy: OverflowPolicy,
    shed_after: Duration,
    stats: Arc<Stats>,
) -> (QueueSender, QueueReceiver) {
    let capacity = capacity.max(1);
    let batch_limit = capacity.min(MAX_BATCH_POINTS);
    // Unbounded: the points gauge is the bound (see the module doc).
    let (tx, rx) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared {
        policy,
        capacity: capacity as u64,
        batch_limit,
        shed_after,
        space: Notify::new(),
        throttled: AtomicBool::new(false),
        closed: AtomicBool::new(false),
        front: Mutex::new(VecDeque::new()),
        stats,
    });
    let sender = QueueSender {
        tx,
        oldest: rx.clone(),
        shared: shared.clone(),
    };
    (sender, QueueReceiver { rx, shared })
}

impl QueueSender {
    /// Most points a producer should put in one batch.
    pub fn batch_limit(&self) -> usize {
        self.shared.batch_limit
    }

    /// Splits `samples` into batches of at most
    /// [`batch_limit`](Self::batch_limit) points, the unit drop-oldest
    /// sheds; samples that fit one batch pass as they are, uncopied.
    pub fn batches(&self, samples: Vec<Sample>) -> impl Iterator<Item = Vec<Sample>> {
        let limit = self.shared.batch_limit;
        let (mut whole, mut parts) = if samples.len() <= limit {
            (Some(samples), None)
        } else {
            (None, Some(samples.into_iter()))
        };
        std::iter::from_fn(move || {
            let batch = match whole.take() {
                Some(all) => all,
                None => parts.as_mut()?.by_ref().take(limit).collect(),
            };
            (!batch.is_empty()).then_some(batch)
        })
    }

    pub fn policy(&self) -> OverflowPolicy {
        self.shared.policy
    }

    /// Enqueues `batch`, applying the overflow policy: waits for room
    /// under `Block`, and under `DropOldest` for at most `shed_after`
    /// before it sheds. A batch larger than the capacity is taken when the
    /// queue is empty, so it cannot wait forever.
    pub async fn push(&self, batch: Batch) -> Result<(), PushError> {
        self.push_item(Item::Batch(batch)).await
    }

    /// Enqueues a delete behind everything queued so far, under the same
    /// policy as a batch (under `DropOldest` it may shed a batch).
    pub async fn push_delete(&self, delete: DeleteRequest) -> Result<(), PushError> {
        self.push_item(Item::Delete(delete)).await
    }

    async fn push_item(&self, item: Item) -> Result<(), PushError> {
        let shared = &*self.shared;
        let mut item = item;
        // Under `DropOldest`, when shedding starts: set at the first
        // refusal, so a push that finds room reads no clock.
        let mut shed_at: Option<Instant> = None;
        loop {
            let may_shed = shared.policy == OverflowPolicy::DropOldest
                && shed_at.map_or(shared.shed_after.is_zero(), |t| Instant::now() >= t);
            match self.try_push_inner(item, may_shed) {
                Ok(()) => return Ok(()),
                Err(PushOutcome::Closed) => return Err(PushError::Closed),
                Err(PushOutcome::Full(i)) => item = i,
            }
            let notified = shared.space.notified();
            tokio::pin!(notified);
            // Register before retrying so a pop between the retry and the
            // await still wakes us.
            notified.as_mut().enable();
            match self.try_push_inner(item, may_shed) {
                Ok(()) => return Ok(()),
                Err(PushOutcome::Closed) => return Err(PushError::Closed),
                Err(PushOutcome::Full(i)) => item = i,
            }
            if shared.policy == OverflowPolicy::Block {
                notified.await;
                continue;
            }
            let deadline = *shed_at.get_or_insert_with(|| Instant::now() + shared.shed_after);
            // Either room or the deadline: the loop retries, shedding once
            // the deadline has passed.
            let _ = tokio::time::timeout_at(deadline.into(), notified).await;
        }
    }

    /// Enqueues without waiting: under `Block` a full queue gives
    /// `PushError::Full` (HTTP answers 503 so the client retries).
    pub fn try_push(&self, batch: Batch) -> Result<(), PushError> {
        match self.try_push_inner(Item::Batch(batch), true) {
            Ok(()) => Ok(()),
            Err(PushOutcome::Closed) => Err(PushError::Closed),
            Err(PushOutcome::Full(i)) => {
                i.reject("the ingest queue is full");
                Err(PushError::Full)
            }
        }
    }

    /// Enqueues `item` if it fits; else sheds to make room when `may_shed`
    /// (or while `--mps` holds the writer back) under `DropOldest`, and
    /// gives it back otherwise.
    fn try_push_inner(&self, item: Item, may_shed: bool) -> Result<(), PushOutcome> {
        let shared = &*self.shared;
        if shared.closed.load(Relaxed) {
            item.reject("the daemon is shutting down");
            return Err(PushOutcome::Closed);
        }
        let n = item.points();
        let depth = &shared.stats.queue_points;
        let shed = shared.policy == OverflowPolicy::DropOldest
            && (may_shed || shared.throttled.load(Relaxed));
        if shed {
            // Room is made before the item goes in, so it never sheds
            // itself. Producers racing here may shed a batch more than
            // needed; the count stays exact.
            let held = depth.fetch_add(n, Relaxed) + n;
            if held > shared.capacity {
                while depth.load(Relaxed) > shared.capacity && self.shed_oldest() {}
            }
        } else {
            let fits = |held: u64| held == 0 || held + n <= shared.capacity;
            if depth
                .fetch_update(Relaxed, Relaxed, |held| fits(held).then_some(held + n))
                .is_err()
            {
                return Err(PushOutcome::Full(item));
            }
        }
        shared.stats.queue_batches.fetch_add(1, Relaxed);
        // The channel is unbounded and `oldest` keeps it connected, so this
        // cannot fail.
        let _ = self.tx.send(item);
        shared.stats.points_queued.fetch_add(n, Relaxed);
        Ok(())
    }

    /// Makes room by dropping the oldest batch, or by moving the oldest
    /// item, a delete, to the front list; false when the channel is empty.
    fn shed_oldest(&self) -> bool {
        let mut front = self.shared.front.lock();
        // Another producer or the writer may have emptied the channel
        // meanwhile; then there is nothing to drop.
        match self.oldest.try_recv() {
            Ok(Item::Batch(old)) => {
                drop(front);
                self.shared.stats.queue_batches.fetch_sub(1, Relaxed);
                self.shed(old);
            }
            Ok(Item::Delete(d)) => {
                self.shared.stats.queue_batches.fetch_sub(1, Relaxed);
                front.push_back(d);
            }
            Err(_) => return false,
        }
        true
    }

    fn shed(&self, old: Batch) {
        let n = old.samples.len() as u64;
        self.shared.stats.queue_points.fetch_sub(n, Relaxed);
        let reason = if self.shared.throttled.load(Relaxed) {
            DropReason::RateLimited
        } else {
            DropReason::QueueFull
        };
        self.shared.stats.dropped(reason, n);
        Item::Batch(old).reject("dropped: the ingest queue overflowed");
    }
}

enum PushOutcome {
    Full(Item),
    Closed,
}

/// What [`QueueReceiver::recv_timeout`] or [`QueueReceiver::try_recv`] found.
pub enum Received {
    Batch(Batch),
    Delete(DeleteRequest),
    /// Nothing arrived in time (or, for `try_recv`, nothing is waiting);
    /// the writer does its periodic work.
    Idle,
    /// Every sender is gone and the queue is drained.
    Closed,
}

impl QueueReceiver {
    pub fn recv_timeout(&self, timeout: Duration) -> Received {
        let deadline = Instant::now() + timeout;
        loop {
            match self.try_recv() {
                Received::Idle => {}
                found => return found,
            }
            // Wait without popping: pops happen under the front lock.
            let mut select = Select::new();
            select.recv(&self.rx);
            if select.ready_deadline(deadline).is_err() {
                return self.try_recv();
            }
        }
    }

    /// The next item if one is waiting, without blocking.
    pub fn try_recv(&self) -> Received {
        let popped = {
            let mut front = self.shared.front.lock();
            if let Some(d) = front.pop_front() {
                return Received::Delete(d);
            }
            self.rx.try_recv()
        };
        let stats = &self.shared.stats;
        let received = match popped {
            Ok(Item::Batch(b)) => {
                let n = b.samples.len() as u64;
                stats.queue_points.fetch_sub(n, Relaxed);
                stats.points_dequeued.fetch_add(n, Relaxed);
                Received::Batch(b)
            }
            Ok(Item::Delete(d)) => Received::Delete(d),
            Err(TryRecvError::Empty) => return Received::Idle,
            Err(TryRecvError::Disconnected) => return Received::Closed,
        };
        stats.queue_batches.fetch_sub(1, Relaxed);
        self.shared.space.notify_waiters();
        received
    }

    /// Marks the writer as held back by the rate limiter, so overflow
    /// during the wait is attributed to `--mps`.
    pub fn set_throttled(&self, on: bool) {
        self.shared.throttled.store(on, Relaxed);
    }
}

impl Drop for QueueReceiver {
    fn drop(&mut self) {
        self.shared.closed.store(true, Relaxed);
        // Producers hold receiver handles, so what is still queued would
        // otherwise wait unanswered until the last of them goes.
        for d in self.shared.front.lock().drain(..) {
            Item::Delete(d).reject("the daemon is shutting down");
        }
        while let Ok(item) = self.rx.try_recv() {
            item.reject("the daemon is shutting down");
        }
        // Wake producers blocked on a full queue so they see the closure.
        self.shared.space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataPoint, SeriesKey, Value};

    fn batch(ts: &[i64]) -> Batch {
        Batch {
            samples: ts
                .iter()
                .map(|&t| Sample {
                    series: SeriesKey::new("m", []),
                    point: DataPoint {
                        timestamp_ms: t,
                        value: Value::Int(t),
                    },
                })
                .collect(),
            ack: None,
        }
    }

    fn timestamps(b: &Batch) -> Vec<i64> {
        b.samples.iter().map(|s| s.point.timestamp_ms).collect()
    }

    #[tokio::test]
    async fn drop_oldest_sheds_the_oldest_batch_and_counts_it() {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = queue(2, OverflowPolicy::DropOldest, Duration::ZERO, stats.clone());
        assert_eq!(tx.batch_limit(), 2);
        tx.push(batch(&[1, 2])).await.unwrap();
        tx.push(batch(&[3, 4])).await.unwrap();
        tx.push(batch(&[5])).await.unwrap();
        assert_eq!(stats.dropped_count(DropReason::QueueFull), 4);
        let Received::Batch(b) = rx.recv_timeout(Duration::ZERO) else {
            panic!("expected a batch")
        };
        assert_eq!(timestamps(&b), vec![5]);
        assert!(matches!(rx.try_recv(), Received::Idle));
    }

    fn delete(start_ms: i64) -> (DeleteRequest, oneshot::Receiver<Result<u64, String>>) {
        let (ack, answer) = oneshot::channel();
        let d = DeleteRequest {
            series: vec![1],
            start_ms,
            end_ms: start_ms,
            ack,
        };
        (d, answer)
    }

    #[tokio::test]
    async fn drop_oldest_never_sheds_a_delete_nor_reorders_it() {
        let stats = Arc::new(Stats::default());
        // Room for two points.
        let (tx, rx) = queue(2, OverflowPolicy::DropOldest, Duration::ZERO, stats.clone());
        tx.push(batch(&[1])).await.unwrap();
        let (d, mut answer) = delete(7);
        tx.push_delete(d).await.unwrap();
        tx.push(batch(&[2])).await.unwrap();
        // Sheds [1]; the delete, now oldest, stays in the channel.
        tx.push(batch(&[3])).await.unwrap();
        // Moves the delete aside, then sheds [2].
        tx.push(batch(&[4])).await.unwrap();
        assert_eq!(stats.dropped_count(DropReason::QueueFull), 2);
        assert_eq!(stats.points_queued.load(Relaxed), 4);
        match rx.recv_timeout(Duration::ZERO) {
            Received::Delete(d) => assert_eq!(d.start_ms, 7),
            _ => panic!("the delete comes first"),
        }
        let mut rest = Vec::new();
        while let Received::Batch(b) = rx.try_recv() {
            rest.extend(timestamps(&b));
        }
        assert_eq!(rest, vec![3, 4]);
        assert!(answer.try_recv().is_err(), "nobody answered the delete yet");
    }

    #[tokio::test]
    async fn a_delete_left_queued_at_shutdown_is_answered() {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = queue(
            MAX_BATCH_POINTS,
            OverflowPolicy::DropOldest,
            Duration::ZERO,
            stats,
        );
        let (d, answer) = delete(1);
        tx.push_delete(d).await.unwrap();
        tx.push(batch(&[2])).await.unwrap();
        drop(rx);
        assert_eq!(
            answer.await.unwrap(),
            Err("the daemon is shutting down".to_string())
        );
    }

    #[tokio::test]
    async fn overflow_while_throttled_counts_as_rate_limited() {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = queue(1, OverflowPolicy::DropOldest, Duration::ZERO, stats.clone());
        rx.set_throttled(true);
        tx.push(batch(&[1])).await.unwrap();
        tx.push(batch(&[2])).await.unwrap();
        assert_eq!(stats.dropped_count(DropReason::RateLimited), 1);
        assert_eq!(stats.dropped_count(DropReason::QueueFull), 0);
    }

    #[tokio::test]
    async fn block_waits_for_the_consumer_and_loses_nothing() {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = queue(1, OverflowPolicy::Block, Duration::ZERO, stats.clone());
        tx.push(batch(&[1])).await.unwrap();
        assert_eq!(tx.try_push(batch(&[9])), Err(PushError::Full));
        let producer = tokio::spawn({
            let tx = tx.clone();
            async move { tx.push(batch(&[2])).await }
        });
        let consumer = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while seen.len() < 2 {
                if let Received::Batch(b) = rx.recv_timeout(Duration::from_secs(10)) {
                    seen.extend(timestamps(&b));
                }
            }
            seen
        });
        producer.await.unwrap().unwrap();
        assert_eq!(consumer.join().unwrap(), vec![1, 2]);
        assert_eq!(stats.dropped_count(DropReason::QueueFull), 0);
    }

    /// A burst that the writer drains in time loses nothing; a writer that
    /// takes nothing for `shed_after` gets the oldest points shed.
    #[tokio::test(start_paused = true)]
    async fn drop_oldest_waits_for_room_then_sheds() {
        let stats = Arc::new(Stats::default());
        let shed_after = Duration::from_secs(1);
        let (tx, rx) = queue(1, OverflowPolicy::DropOldest, shed_after, stats.clone());
        tx.push(batch(&[1])).await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.push(batch(&[2])).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let Received::Batch(first) = rx.try_recv() else {
            panic!("expected a batch")
        };
        waiting.await.unwrap().unwrap();
        assert_eq!(timestamps(&first), vec![1]);
        assert_eq!(stats.dropped_count(DropReason::QueueFull), 0);

        // Nobody takes [2]: after `shed_after` (of paused time) it goes.
        let started = tokio::time::Instant::now();
        tx.push(batch(&[3])).await.unwrap();
        assert!(started.elapsed() >= shed_after);
        assert_eq!(stats.dropped_count(DropReason::QueueFull), 1);
        let Received::Batch(kept) = rx.try_recv() else {
            panic!("expected a batch")
        };
        assert_eq!(timestamps(&kept), vec![3]);

        // While `--mps` holds the writer back, shedding is at once.
        rx.set_throttled(true);
        let started = tokio::time::Instant::now();
        tx.push(batch(&[4])).await.unwrap();
        tx.push(batch(&[5])).await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(stats.dropped_count(DropReason::RateLimited), 1);
    }

    #[tokio::test]
    async fn closed_queue_rejects_and_acks_the_error() {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = queue(4, OverflowPolicy::Block, Duration::ZERO, stats);
        drop(rx);
        let (ack, result) = oneshot::channel();
        let b = Batch {
            ack: Some(ack),
            ..batch(&[1])
        };
        assert_eq!(tx.push(b).await, Err(PushError::Closed));
        assert!(result.await.unwrap().is_err());
    }

    /// Regression (issue 12): one-point batches, as a collector writing one
    /// line per `send()` makes them, fill the queue up to its capacity in
    /// points; the first point beyond it sheds exactly the oldest point.
    #[tokio::test]
    async fn capacity_counts_points_not_batches() {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = queue(
            1000,
            OverflowPolicy::DropOldest,
            Duration::ZERO,
            stats.clone(),
        );
        for t in 0..1000 {
            tx.push(batch(&[t])).await.unwrap();
        }
        assert_eq!(stats.dropped_count(DropReason::QueueFull), 0);
        assert_eq!(stats.queue_points.load(Relaxed), 1000);
        assert_eq!(stats.queue_batches.load(Relaxed), 1000);
        tx.push(batch(&[1000])).await.unwrap();
        assert_eq!(stats.dropped_count(DropReason::QueueFull), 1);
        assert_eq!(stats.queue_points.load(Relaxed), 1000);
        let mut seen = Vec::new();
        while let Received::Batch(b) = rx.try_recv() {
            seen.extend(timestamps(&b));
        }
        assert_eq!(seen, (1..=1000).collect::<Vec<_>>());
        assert_eq!(stats.queue_points.load(Relaxed), 0);
        assert_eq!(stats.queue_batches.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn block_is_full_at_capacity_in_points_and_takes_a_big_batch_when_empty() {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = queue(3, OverflowPolicy::Block, Duration::ZERO, stats.clone());
        for t in 0..3 {
            tx.try_push(batch(&[t])).unwrap();
        }
        assert_eq!(tx.try_push(batch(&[3])), Err(PushError::Full));
        while let Received::Batch(_) = rx.try_recv() {}
        // Larger than the whole queue: waiting for room would never end.
        tx.try_push(batch(&[4, 5, 6, 7])).unwrap();
        assert_eq!(stats.queue_points.load(Relaxed), 4);
        assert_eq!(tx.try_push(batch(&[8])), Err(PushError::Full));
    }

    #[test]
    fn batches_split_at_the_limit_and_pass_small_inputs_whole() {
        let stats = Arc::new(Stats::default());
        let (tx, _rx) = queue(3, OverflowPolicy::Block, Duration::ZERO, stats);
        let sizes = |n: i64| {
            let samples = batch(&(0..n).collect::<Vec<_>>()).samples;
            tx.batches(samples).map(|b| b.len()).collect::<Vec<_>>()
        };
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(3), vec![3]);
        assert_eq!(sizes(7), vec![3, 3, 1]);
    }
}
