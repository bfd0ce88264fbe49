//! Whether the daemon can take data, for `GET /health`, `/api/put` and
//! `/metrics`: the writer thread alive and the store accepting commits.
//!
//! The writer thread is the only code that learns either fact, so it
//! reports here and everything else reads. A writer that ends before
//! shutdown was asked for (a panic, a bug) cannot be recovered in-process:
//! [`WriterGuard`] marks it dead and starts shutdown, and
//! [`crate::daemon::Daemon::wait`] then fails, so the process exits non-zero
//! and systemd (`Restart=on-failure`) starts it again with the log replayed.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
pub struct Health {
    writer_stopped: AtomicBool,
    /// Why the last commit failed, until one succeeds again.
    store_fault: Mutex<Option<String>>,
}

impl Health {
    /// What is wrong, or `None` when the store is writable and the writer
    /// alive.
    pub fn problem(&self) -> Option<String> {
        if self.writer_died() {
            return Some("the writer thread stopped".into());
        }
        self.store_fault
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|why| format!("the store refuses writes: {why}"))
    }

    /// Whether the writer thread ended before shutdown began.
    pub fn writer_died(&self) -> bool {
        self.writer_stopped.load(Relaxed)
    }

    /// Whether the last commit succeeded.
    pub fn store_writable(&self) -> bool {
        self.store_fault
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }

    /// Records the outcome of a commit: `Some(why)` after a failure, `None`
    /// after a success.
    pub fn set_store_fault(&self, fault: Option<String>) {
        *self.store_fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }
}

/// Lives on the writer thread's stack; dropping it (the thread returning or
/// unwinding) before `shutdown` was cancelled marks the writer dead and
/// cancels `shutdown`, so the daemon stops and reports the failure.
pub struct WriterGuard<'a> {
    pub health: &'a Health,
    pub shutdown: CancellationToken,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        if !self.shutdown.is_cancelled() {
            tracing::error!("the writer thread stopped; shutting down so the service restarts");
            self.health.writer_stopped.store(true, Relaxed);
            self.shutdown.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_writer_that_panics_marks_itself_dead_and_starts_shutdown() {
        let health = Arc::new(Health::default());
        let shutdown = CancellationToken::new();
        let thread = {
            let (health, shutdown) = (health.clone(), shutdown.clone());
            std::thread::spawn(move || {
                let _guard = WriterGuard {
                    health: &health,
                    shutdown,
                };
                panic!("a bug in the writer");
            })
        };
        assert!(thread.join().is_err());
        assert!(shutdown.is_cancelled());
        assert!(health.writer_died());
        assert_eq!(
            health.problem().as_deref(),
            Some("the writer thread stopped")
        );
    }

    #[test]
    fn a_writer_that_ends_after_shutdown_is_not_a_failure() {
        let health = Health::default();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        drop(WriterGuard {
            health: &health,
            shutdown,
        });
        assert!(!health.writer_died());
        assert_eq!(health.problem(), None);
    }

    #[test]
    fn a_store_fault_lasts_until_a_commit_succeeds() {
        let health = Health::default();
        health.set_store_fault(Some("IO error: No space left on device".into()));
        assert!(!health.store_writable());
        assert_eq!(
            health.problem().as_deref(),
            Some("the store refuses writes: IO error: No space left on device")
        );
        health.set_store_fault(None);
        assert!(health.store_writable());
        assert_eq!(health.problem(), None);
    }
}
