//! The concurrency limit on expensive reads (queries, last points,
//! lookups), with load shedding.
//!
//! At most `running` reads work at once; up to `queued` more wait for a
//! turn (a Grafana dashboard fires all its panels together, and waiting a
//! moment beats an error on a panel); beyond that a request is refused at
//! once with 503 so an overloaded daemon sheds work instead of piling it
//! up (opentsdb#1635). Ingest never passes through the gate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ApiError;

pub struct ReadGate {
    permits: Arc<Semaphore>,
    running: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// Counts a waiter for as long as it waits, also when its request is
/// dropped (timed out, client gone) mid-wait.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ReadGate {
    pub fn new(running: usize, max_waiting: usize) -> ReadGate {
        ReadGate {
            permits: Arc::new(Semaphore::new(running)),
            running,
            waiting: AtomicUsize::new(0),
            max_waiting,
        }
    }

    /// A turn to run, or 503 when too many reads already wait. Callers move
    /// the permit into their blocking closure, so it is held until the work
    /// ends even if the request was answered (timed out) meanwhile.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let _waiting = Waiting(&self.waiting);
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= self.max_waiting {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Too many concurrent queries",
            )
            .with_details(format!(
                "{} queries are running and {} waiting; please retry later",
                self.running, self.max_waiting
            )));
        }
        self.permits
            .clone()
            .acquire_owned()
            .await
            // The semaphore is never closed.
            .map_err(|e| ApiError::internal(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_a_turn_then_sheds() {
        let gate = Arc::new(ReadGate::new(1, 1));
        let first = gate.enter().await.unwrap();
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter().await.map(drop) }
        });
        // Wait until the spawned request is queued, then a third is shed.
        while gate.waiting.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        let shed = gate.enter().await.unwrap_err();
        assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            shed.details.as_deref(),
            Some("1 queries are running and 1 waiting; please retry later")
        );
        drop(first);
        waiter.await.unwrap().unwrap();
        assert_eq!(gate.waiting.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_the_queue() {
        let gate = ReadGate::new(0, 1);
        let wait = gate.enter();
        // Dropped after one poll, like a request that timed out.
        let _ = tokio::time::timeout(std::time::Duration::ZERO, wait).await;
        assert_eq!(gate.waiting.load(Ordering::Relaxed), 0);
    }
}
