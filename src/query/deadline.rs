//! Polling a query's deadline from its long loops: [`check_deadline`] at
//! coarse steps (between series), a [`Ticker`] inside loops whose length
//! the data or the request decides. Kept apart from the limits, which
//! need the request's plan, so that every stage of the engine can poll
//! without depending on the request.

use std::ops::ControlFlow;
use std::time::Instant;

use crate::query::error::QueryError;

/// Fails once `deadline` has passed.
pub(crate) fn check_deadline(deadline: Option<Instant>) -> Result<(), QueryError> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(QueryError::DeadlineExceeded),
        _ => Ok(()),
    }
}

/// Polls a deadline from a long loop, reading the clock only once per
/// [`Ticker::EVERY`] units of work, so the loop pays a counter per step.
pub(crate) struct Ticker {
    deadline: Option<Instant>,
    work: usize,
    /// [`Ticker::keep_going`] found the deadline passed.
    expired: bool,
}

impl Ticker {
    /// Work between two readings of the clock: well under a millisecond of
    /// any loop's steps.
    const EVERY: usize = 1 << 14;

    pub(crate) fn new(deadline: Option<Instant>) -> Ticker {
        Ticker {
            deadline,
            work: 0,
            expired: false,
        }
    }

    /// Counts one step.
    #[inline]
    pub(crate) fn tick(&mut self) -> Result<(), QueryError> {
        self.tick_by(1)
    }

    /// Counts `work` steps at once (a sweep step visits every series).
    #[inline]
    pub(crate) fn tick_by(&mut self, work: usize) -> Result<(), QueryError> {
        self.work = self.work.saturating_add(work);
        if self.work < Self::EVERY {
            return Ok(());
        }
        self.work = 0;
        check_deadline(self.deadline)
    }

    /// [`Ticker::tick_by`] for a visitor that can only stop (a store's
    /// scan): breaks once the deadline has passed, which
    /// [`Ticker::stopped`] then reports.
    pub(crate) fn keep_going(&mut self, work: usize) -> ControlFlow<()> {
        if self.tick_by(work).is_err() {
            self.expired = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// Fails if [`Ticker::keep_going`] stopped a visitor.
    pub(crate) fn stopped(&self) -> Result<(), QueryError> {
        match self.expired {
            true => Err(QueryError::DeadlineExceeded),
            false => Ok(()),
        }
    }
}
