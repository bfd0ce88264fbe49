//! One series through a sub-query's pipeline: read from the [`Source`],
//! downsampled (from raw points, or from rollups where they can stand in),
//! filled, and turned into rates, ready for the cross-series sweep.
//!
//! **Reading.** Each sub-query reads whole hours around the buckets it
//! needs (`downsample::read_range`), as OpenTSDB's hour-row scans do, so
//! points just outside `[start, end]` feed interpolation and rates; the
//! output keeps only timestamps in `[start, end]`. When the downsampler can
//! be computed from pre-aggregates and every bucket boundary is a whole
//! hour (or a whole UTC day), the pipeline reads `Source::rollups` instead
//! of raw points, falling back to points when the store has none; both
//! paths give the same buckets. Where rollups cannot stand in, a store
//! may aggregate fixed, epoch-aligned buckets itself
//! (`Source::scan_buckets`, exactly or not at all); a bucket counts as the
//! points it holds, as reading them does, while a rollup counts as one,
//! so the two never mix in one query's limits and statistics. Raw points
//! come through `Source::scan_points`, a series at a time in slices; a
//! downsampled series goes from those slices straight into its buckets
//! without being collected.

use std::time::Instant;

use crate::model::RollupResolution;
use crate::model::{DataPoint, Doubles, Value};
use crate::query::aggregator::{Aggregator, Fold, RollupFunction};
use crate::query::deadline::Ticker;
use crate::query::downsample::{self, downsample_rollups, Downsampler, Grid};
use crate::query::error::QueryError;
use crate::query::limits::{Budget, QueryLimits};
use crate::query::rate::{rates, RatePoint};
use crate::query::request::{Plan, SubPlan};
use crate::query::source::{BucketField, Buckets, PointScan, RollupScan, Source};

/// What a sub-query does to each series before aggregation.
pub(super) struct Pipeline<'a> {
    pub(super) sub: &'a SubPlan,
    /// The range of stored data read, `[start, end)`.
    pub(super) read: (i64, i64),
    /// The downsampling buckets, when the sub-query downsamples.
    pub(super) grid: Option<Grid>,
    /// The pre-aggregates that can stand in for raw points, if any.
    pub(super) rollups: Option<RollupResolution>,
    /// The buckets a store may aggregate itself, if any.
    buckets: Option<Buckets>,
}

/// Buffers reused from one series (or group) to the next.
#[derive(Default)]
pub(super) struct Scratch {
    /// A downsampler's bucket values (median and percentiles).
    pub(super) buf: Vec<f64>,
    /// The series being loaded, when computed.
    pub(super) series: Doubles,
    /// A grid sweep's folds and output buckets.
    pub(super) acc: Vec<Fold>,
    pub(super) present: Vec<bool>,
}

/// One loaded series.
pub(super) enum Loaded {
    Raw(Vec<DataPoint>),
    /// In `Scratch::series`.
    Computed,
}

impl<'a> Pipeline<'a> {
    /// The pipeline of `sub` within `plan`: the range it reads, its grid,
    /// and whether rollups can answer it. Fails when a calendar grid
    /// would need more than `max_points` buckets, or its walk outlasts the
    /// deadline.
    pub(super) fn new(
        plan: &Plan,
        sub: &'a SubPlan,
        limits: &QueryLimits,
    ) -> Result<Pipeline<'a>, QueryError> {
        let query = (plan.start_ms, plan.end_ms);
        let read =
            downsample::read_range(sub.downsample.as_ref(), plan.start_ms, plan.end_ms, plan.tz);
        let grid = sub
            .downsample
            .as_ref()
            .map(|spec| Grid::new(spec, plan.tz, query, read, limits))
            .transpose()?;
        let rollups = match (&grid, &sub.downsample) {
            (Some(grid), Some(spec))
                if sub.allow_rollups && spec.function.rollup_function().is_some() =>
            {
                if grid.aligned_to(crate::model::DAY_MS) {
                    Some(RollupResolution::Day)
                } else if grid.aligned_to(crate::model::HOUR_MS) {
                    Some(RollupResolution::Hour)
                } else {
                    None
                }
            }
            _ => None,
        };
        let buckets = match (&grid, &sub.downsample) {
            (Some(Grid::Regular { step, offset }), Some(spec))
                if rollups.is_none() && offset % step == 0 =>
            {
                spec.function
                    .rollup_function()
                    .and_then(bucket_field)
                    .map(|field| Buckets {
                        step_ms: *step,
                        field,
                    })
            }
            _ => None,
        };
        Ok(Pipeline {
            sub,
            read,
            grid,
            rollups,
            buckets,
        })
    }
}

impl Pipeline<'_> {
    /// The read of `ids` as aggregates: rollups when this pipeline reads
    /// them, else the store's own buckets when it offers them.
    pub(super) fn open_rollups<'a>(
        &self,
        source: &'a dyn Source,
        ids: &[u64],
    ) -> Option<Box<dyn RollupScan + 'a>> {
        let (read_start, read_end) = self.read;
        match (self.rollups, self.buckets) {
            (Some(res), _) => Some(source.scan_rollups(ids, res, read_start, read_end)),
            (None, Some(b)) => source.scan_buckets(ids, b, read_start, read_end),
            (None, None) => None,
        }
    }

    pub(super) fn is_raw(&self) -> bool {
        self.grid.is_none() && self.sub.rate.is_none()
    }

    /// Reads and transforms one series; `None` when it has no data in the
    /// read range (such series are not part of any group, as in OpenTSDB).
    /// Also returns the number of points (or rollups) read. `rollup_scan`
    /// is [`Pipeline::open_rollups`]'s.
    pub(super) fn load(
        &self,
        rollup_scan: Option<&mut (dyn RollupScan + '_)>,
        scan: &mut dyn PointScan,
        id: u64,
        budget: &mut Budget,
        scratch: &mut Scratch,
    ) -> Result<Option<(Loaded, usize)>, QueryError> {
        if let (Some(rollup_scan), Some(grid), Some(spec)) =
            (rollup_scan, &self.grid, &self.sub.downsample)
        {
            if let Some(aggs) = rollup_scan.rollups(id)? {
                let read = rollup_scan.points_read(&aggs);
                budget.add_points(read as u64)?;
                if aggs.is_empty() {
                    return Ok(None);
                }
                let ticker = &mut Ticker::new(budget.limits.deadline);
                scratch.series = match spec.function.rollup_function() {
                    Some(f) => downsample_rollups(&aggs, grid, f, ticker)?,
                    None => Doubles::default(),
                };
                self.finish(&mut scratch.series, budget)?;
                return Ok(Some((Loaded::Computed, read)));
            }
        }
        if let (Some(grid), Some(spec)) = (&self.grid, &self.sub.downsample) {
            let out = &mut scratch.series;
            let read = downsample_scan(
                scan,
                id,
                (grid, spec.function),
                budget.limits.deadline,
                &mut scratch.buf,
                out,
            )?;
            budget.add_points(read as u64)?;
            if read == 0 {
                return Ok(None);
            }
            self.finish(out, budget)?;
            return Ok(Some((Loaded::Computed, read)));
        }
        let mut points = Vec::new();
        let ticker = &mut Ticker::new(budget.limits.deadline);
        scan.scan(id, &mut |p| {
            points.extend_from_slice(p);
            ticker.keep_going(p.len())
        })?;
        ticker.stopped()?;
        budget.add_points(points.len() as u64)?;
        if points.is_empty() {
            return Ok(None);
        }
        let read = points.len();
        if let Some(opts) = &self.sub.rate {
            let input = points.iter().map(|p| RatePoint {
                ts: p.timestamp_ms,
                value: p.value.as_f64(),
                int: match p.value {
                    Value::Int(v) => Some(v),
                    Value::Float(_) => None,
                },
            });
            let ticker = &mut Ticker::new(budget.limits.deadline);
            scratch.series = rates(input, opts, ticker)?;
            return Ok(Some((Loaded::Computed, read)));
        }
        Ok(Some((Loaded::Raw(points), read)))
    }

    /// Fill and rate after downsampling, in place.
    fn finish(&self, buckets: &mut Doubles, budget: &mut Budget) -> Result<(), QueryError> {
        let (Some(grid), Some(spec)) = (&self.grid, &self.sub.downsample) else {
            return Ok(());
        };
        let ticker = &mut Ticker::new(budget.limits.deadline);
        if spec.fill != downsample::FillPolicy::None {
            budget.add_points(grid.fill_len(self.read.0, self.read.1))?;
            let sparse = std::mem::take(buckets);
            *buckets = downsample::fill(sparse, grid, spec.fill, self.read, ticker)?;
        }
        if let Some(opts) = &self.sub.rate {
            let input = buckets
                .ts
                .iter()
                .zip(&buckets.vals)
                .map(|(&ts, &value)| RatePoint {
                    ts,
                    value,
                    int: None,
                });
            *buckets = rates(input, opts, ticker)?;
        }
        Ok(())
    }
}

/// Reads series `id` from `scan` through a downsampler on `grid` into `out`
/// (cleared first), polling `deadline`; returns the points read. Points go
/// straight from the store into the buckets, never collected. `buf` is the
/// downsampler's scratch space, reused across series.
pub(super) fn downsample_scan(
    scan: &mut dyn PointScan,
    id: u64,
    (grid, function): (&Grid, Aggregator),
    deadline: Option<Instant>,
    buf: &mut Vec<f64>,
    out: &mut Doubles,
) -> Result<usize, QueryError> {
    out.clear();
    let mut d = Downsampler::new(grid, function, std::mem::take(buf));
    let ticker = &mut Ticker::new(deadline);
    let read = scan.scan_doubles(id, &mut |ts, vals| {
        d.push(ts, vals, out);
        ticker.keep_going(ts.len())
    });
    d.finish(out);
    *buf = d.into_buf();
    let read = read?;
    ticker.stopped()?;
    Ok(read)
}

/// The field of a store's buckets `f` reads. `dev` is left out: the raw
/// path folds it as Welford does, which no sum of squares reproduces.
fn bucket_field(f: RollupFunction) -> Option<BucketField> {
    Some(match f {
        RollupFunction::Sum | RollupFunction::Avg => BucketField::Sum,
        RollupFunction::Count => BucketField::Count,
        RollupFunction::Min => BucketField::Min,
        RollupFunction::Max => BucketField::Max,
        RollupFunction::First => BucketField::First,
        RollupFunction::Last => BucketField::Last,
        RollupFunction::Dev => return None,
    })
}
