//! Bounds on one query's work ([`QueryLimits`]) and the [`Budget`] that
//! counts a running query against them. Exceeding one fails the query with
//! an OpenTSDB-shaped error.
//!
//! Two bounds are checked before anything is read or allocated, from
//! arithmetic on the request alone: the buckets one downsample lays over
//! the time range asked for (`DownsampleTooFine`, so `1ms-sum-zero` over
//! years or `1dc` up to `i64::MAX` never builds a grid or walks a
//! calendar), and, once the filters have matched their series, those
//! buckets times the series summed over the sub-queries
//! (`TooManyBuckets`). The others count as the query runs: matched series
//! (`TooManySeries`), points read or filled (`TooManyPoints`), and the
//! deadline (`DeadlineExceeded`), which every loop whose length the data
//! or the request decides polls through a
//! [`Ticker`](crate::query::deadline::Ticker).

use std::time::Instant;

use crate::model::SeriesMeta;
use crate::query::error::QueryError;
use crate::query::request::Plan;

/// Bounds on one query's work.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryLimits {
    /// Series matched by the filters, over all sub-queries.
    pub max_series: usize,
    /// Points read (raw points and rollup intervals) plus filled buckets.
    pub max_points: usize,
    /// Buckets one downsample spec may lay over the query's time range.
    pub max_downsample_buckets: u64,
    /// Buckets of every downsampled sub-query times the series it matched,
    /// summed over the sub-queries.
    pub max_query_buckets: u64,
    /// Give up (503) once this instant has passed.
    pub deadline: Option<Instant>,
    /// Most buckets one group's grid sweep lays out (its memory is one fold
    /// per bucket); a bigger group takes the general sweep, which visits
    /// only timestamps with data. 0: every group takes the general sweep.
    pub grid_max_slots: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_series: 100_000,
            max_points: 50_000_000,
            // A year at 1 s is refused; ten years at 1m is not.
            max_downsample_buckets: 10_000_000,
            // A year at 1m for 380 series; Grafana's automatic intervals
            // (about one bucket per pixel) reach `max_series` first.
            max_query_buckets: 200_000_000,
            deadline: None,
            grid_max_slots: 1 << 20,
        }
    }
}

impl QueryLimits {
    /// Refuses a downsample that lays more than `max_downsample_buckets`
    /// buckets over the time range asked for, before any grid is built.
    pub(super) fn check_downsamples(&self, plan: &Plan) -> Result<(), QueryError> {
        match plan
            .subs
            .iter()
            .find(|s| s.buckets > self.max_downsample_buckets)
        {
            Some(sub) => Err(QueryError::DownsampleTooFine {
                index: sub.index,
                buckets: sub.buckets,
                limit: self.max_downsample_buckets,
            }),
            None => Ok(()),
        }
    }

    /// Refuses a query whose downsample buckets times the series each
    /// sub-query matched add up to more than `max_query_buckets`, before
    /// any point is read.
    pub(super) fn check_query_buckets(
        &self,
        plan: &Plan,
        matched: &[Vec<SeriesMeta>],
    ) -> Result<(), QueryError> {
        let buckets = plan
            .subs
            .iter()
            .zip(matched)
            .fold(0u64, |sum, (sub, series)| {
                sum.saturating_add(sub.buckets.saturating_mul(series.len() as u64))
            });
        if buckets > self.max_query_buckets {
            return Err(QueryError::TooManyBuckets {
                buckets,
                limit: self.max_query_buckets,
            });
        }
        Ok(())
    }
}

/// What one query has used of its [`QueryLimits`] so far.
pub(super) struct Budget<'a> {
    pub(super) limits: &'a QueryLimits,
    /// Series matched, over every sub-query.
    pub(super) series: usize,
    /// Points read and buckets filled.
    pub(super) points: usize,
    pub(super) sweeps: Sweeps,
}

/// How the groups of one query were aggregated across their series: what
/// tunes [`QueryLimits::grid_max_slots`] and what tests pin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sweeps {
    /// Groups the grid sweep answered.
    pub grid: usize,
    /// Groups that started on the grid, proved too sparse for it and were
    /// answered by the general sweep.
    pub grid_fallbacks: usize,
}

impl<'a> Budget<'a> {
    pub(super) fn new(limits: &'a QueryLimits) -> Budget<'a> {
        Budget {
            limits,
            series: 0,
            points: 0,
            sweeps: Sweeps::default(),
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
