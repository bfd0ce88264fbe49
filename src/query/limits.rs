//! Bounds on one query's work ([`QueryLimits`]) and the [`Budget`] that
//! counts a running query against them: matched series, points read or
//! produced, and a deadline polled between series and every few thousand
//! output timestamps. Exceeding one fails the query with OpenTSDB-shaped
//! errors (`TooManySeries`, `TooManyPoints`, `DeadlineExceeded`).

use std::time::Instant;

use crate::query::error::QueryError;

/// Bounds on one query's work.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryLimits {
    /// Series matched by the filters, over all sub-queries.
    pub max_series: usize,
    /// Points read (raw points and rollup intervals) plus filled buckets.
    pub max_points: usize,
    /// Give up (503) once this instant has passed.
    pub deadline: Option<Instant>,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_series: 100_000,
            max_points: 50_000_000,
            deadline: None,
        }
    }
}

/// What one query has used of its [`QueryLimits`] so far.
pub(super) struct Budget<'a> {
    pub(super) limits: &'a QueryLimits,
    /// Series matched, over every sub-query.
    pub(super) series: usize,
    /// Points read and buckets filled.
    pub(super) points: usize,
}

impl<'a> Budget<'a> {
    pub(super) fn new(limits: &'a QueryLimits) -> Budget<'a> {
        Budget {
            limits,
            series: 0,
            points: 0,
        }
    }

    pub(super) fn add_series(&mut self, n: usize) -> Result<(), QueryError> {
        self.series = self.series.saturating_add(n);
        if self.series > self.limits.max_series {
            return Err(QueryError::TooManySeries {
                limit: self.limits.max_series,
            });
        }
        Ok(())
    }

    pub(super) fn add_points(&mut self, n: u64) -> Result<(), QueryError> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.points = self.points.saturating_add(n);
        if self.points > self.limits.max_points {
            return Err(QueryError::TooManyPoints {
                limit: self.limits.max_points,
            });
        }
        Ok(())
    }
}

/// Fails once `deadline` has passed.
pub(super) fn check_deadline(deadline: Option<Instant>) -> Result<(), QueryError> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(QueryError::DeadlineExceeded),
        _ => Ok(()),
    }
}
