//! The bounded ingest queue between connections and the writer thread.
//!
//! A `crossbeam-channel` bounded channel of [`Batch`]es. Producers are async
//! (connection tasks, HTTP handlers); the consumer is the writer thread, which
//! blocks on it. Batches rather than single points cross the channel because
//! one channel operation per point costs more than parsing the point; the
//! capacity is still stated in points: the channel holds
//! `ceil(capacity / batch_limit)` batches of at most `batch_limit` points.
//!
//! When the channel is full, [`OverflowPolicy`] decides:
//! - `DropOldest` pops the oldest batch off the channel to make room. Fresh
//!   data is worth more than stale data to a monitoring system, and the
//!   collectors that matter (collectd, telegraf telnet, potsdb) never read
//!   replies, so refusing new points would lose data silently at the source
//!   anyway. Every shed point is counted, under `rate_limited` while the
//!   writer is held back by `--mps`, else `queue_full`.
//! - `Block` makes the producer wait for space, so a connection stops reading
//!   and TCP pushes back on the client. Nothing is lost; a slow store slows
//!   every collector instead.
//!
//! Producers wait on a [`Notify`] that the consumer fires after every pop, so
//! a blocked producer never polls.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::Deserialize;
use tokio::sync::{oneshot, Notify};

use crate::model::Sample;
use crate::stats::{DropReason, Stats};

/// Most points one batch carries; larger inputs are split.
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

impl Batch {
    fn reject(self, why: &str) {
        if let Some(ack) = self.ack {
            // The requester may have gone away; nothing to tell then.
            let _ = ack.send(Err(why.to_string()));
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
    batch_limit: usize,
    /// Fired by the consumer after each pop so blocked producers retry.
    space: Notify,
    /// Set by the writer while it waits for the `--mps` limiter.
    throttled: AtomicBool,
    /// Set when the consumer is gone. Senders hold receiver handles (to pop
    /// the oldest), so the channel itself never reports disconnection.
    closed: AtomicBool,
    stats: Arc<Stats>,
}

/// The producing end; cheap to clone, one per connection or handler.
#[derive(Clone)]
pub struct QueueSender {
    tx: Sender<Batch>,
    /// A receiver handle used only to pop the oldest batch on overflow.
    oldest: Receiver<Batch>,
    shared: Arc<Shared>,
}

/// The consuming end, owned by the writer thread.
pub struct QueueReceiver {
    rx: Receiver<Batch>,
    shared: Arc<Shared>,
}

/// Builds a queue holding about `capacity` points.
pub fn queue(
    capacity: usize,
    policy: OverflowPolicy,
    stats: Arc<Stats>,
) -> (QueueSender, QueueReceiver) {
    let capacity = capacity.max(1);
    let batch_limit = capacity.min(MAX_BATCH_POINTS);
    let (tx, rx) = crossbeam_channel::bounded(capacity.div_ceil(batch_limit));
    let shared = Arc::new(Shared {
        policy,
        batch_limit,
        space: Notify::new(),
        throttled: AtomicBool::new(false),
        closed: AtomicBool::new(false),
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

    pub fn policy(&self) -> OverflowPolicy {
        self.shared.policy
    }

    /// Enqueues `batch`, applying the overflow policy; waits only under
    /// `Block`. Batches larger than [`batch_limit`](Self::batch_limit) are
    /// accepted but count as one slot.
    pub async fn push(&self, batch: Batch) -> Result<(), PushError> {
        let mut batch = batch;
        loop {
            match self.try_push_inner(batch) {
                Ok(()) => return Ok(()),
                Err(PushOutcome::Closed) => return Err(PushError::Closed),
                Err(PushOutcome::Full(b)) => batch = b,
            }
            let notified = self.shared.space.notified();
            tokio::pin!(notified);
            // Register before retrying so a pop between the retry and the
            // await still wakes us.
            notified.as_mut().enable();
            match self.try_push_inner(batch) {
                Ok(()) => return Ok(()),
                Err(PushOutcome::Closed) => return Err(PushError::Closed),
                Err(PushOutcome::Full(b)) => batch = b,
            }
            notified.await;
        }
    }

    /// Enqueues without waiting: under `Block` a full queue gives
    /// `PushError::Full` (HTTP answers 503 so the client retries).
    pub fn try_push(&self, batch: Batch) -> Result<(), PushError> {
        match self.try_push_inner(batch) {
            Ok(()) => Ok(()),
            Err(PushOutcome::Closed) => Err(PushError::Closed),
            Err(PushOutcome::Full(b)) => {
                b.reject("the ingest queue is full");
                Err(PushError::Full)
            }
        }
    }

    fn try_push_inner(&self, batch: Batch) -> Result<(), PushOutcome> {
        if self.shared.closed.load(Relaxed) {
            batch.reject("the daemon is shutting down");
            return Err(PushOutcome::Closed);
        }
        let n = batch.samples.len() as u64;
        let mut batch = batch;
        loop {
            match self.tx.try_send(batch) {
                Ok(()) => {
                    self.shared.stats.points_queued.fetch_add(n, Relaxed);
                    return Ok(());
                }
                Err(TrySendError::Disconnected(b)) => {
                    b.reject("the daemon is shutting down");
                    return Err(PushOutcome::Closed);
                }
                Err(TrySendError::Full(b)) => match self.shared.policy {
                    OverflowPolicy::Block => return Err(PushOutcome::Full(b)),
                    OverflowPolicy::DropOldest => {
                        batch = b;
                        // Another producer or the writer may have emptied
                        // a slot meanwhile; then there is nothing to drop.
                        if let Ok(old) = self.oldest.try_recv() {
                            self.shed(old);
                        }
                    }
                },
            }
        }
    }

    fn shed(&self, old: Batch) {
        let reason = if self.shared.throttled.load(Relaxed) {
            DropReason::RateLimited
        } else {
            DropReason::QueueFull
        };
        self.shared.stats.dropped(reason, old.samples.len() as u64);
        old.reject("dropped: the ingest queue overflowed");
    }
}

enum PushOutcome {
    Full(Batch),
    Closed,
}

/// What [`QueueReceiver::recv_timeout`] found.
pub enum Received {
    Batch(Batch),
    /// Nothing arrived in time; the writer does its periodic work.
    Idle,
    /// Every sender is gone and the queue is drained.
    Closed,
}

impl QueueReceiver {
    pub fn recv_timeout(&self, timeout: Duration) -> Received {
        match self.rx.recv_timeout(timeout) {
            Ok(b) => Received::Batch(self.popped(b)),
            Err(RecvTimeoutError::Timeout) => Received::Idle,
            Err(RecvTimeoutError::Disconnected) => Received::Closed,
        }
    }

    /// A batch if one is waiting, without blocking.
    pub fn try_recv(&self) -> Option<Batch> {
        self.rx.try_recv().ok().map(|b| self.popped(b))
    }

    fn popped(&self, b: Batch) -> Batch {
        self.shared
            .stats
            .points_dequeued
            .fetch_add(b.samples.len() as u64, Relaxed);
        self.shared.space.notify_waiters();
        b
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
        let (tx, rx) = queue(2, OverflowPolicy::DropOldest, stats.clone());
        assert_eq!(tx.batch_limit(), 2);
        tx.push(batch(&[1, 2])).await.unwrap();
        tx.push(batch(&[3, 4])).await.unwrap();
        tx.push(batch(&[5])).await.unwrap();
        assert_eq!(stats.dropped_count(DropReason::QueueFull), 4);
        let Received::Batch(b) = rx.recv_timeout(Duration::ZERO) else {
            panic!("expected a batch")
        };
        assert_eq!(timestamps(&b), vec![5]);
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn overflow_while_throttled_counts_as_rate_limited() {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = queue(1, OverflowPolicy::DropOldest, stats.clone());
        rx.set_throttled(true);
        tx.push(batch(&[1])).await.unwrap();
        tx.push(batch(&[2])).await.unwrap();
        assert_eq!(stats.dropped_count(DropReason::RateLimited), 1);
        assert_eq!(stats.dropped_count(DropReason::QueueFull), 0);
    }

    #[tokio::test]
    async fn block_waits_for_the_consumer_and_loses_nothing() {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = queue(1, OverflowPolicy::Block, stats.clone());
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

    #[tokio::test]
    async fn closed_queue_rejects_and_acks_the_error() {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = queue(4, OverflowPolicy::Block, stats);
        drop(rx);
        let (ack, result) = oneshot::channel();
        let b = Batch {
            ack: Some(ack),
            ..batch(&[1])
        };
        assert_eq!(tx.push(b).await, Err(PushError::Closed));
        assert!(result.await.unwrap().is_err());
    }
}
