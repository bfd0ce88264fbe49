//! The cross-series aggregation of one group (OpenTSDB's
//! `AggregationIterator`). The output timestamps are the union of the
//! group's timestamps. At each one a series takes part with its own value,
//! or, between two of its points, with the aggregator's interpolation
//! (linear, zero, previous; `mimmin`/`mimmax` leave it out). Before its
//! first point and after its last it is left out, even for `zimsum` and
//! `count` (the "ghost lines" of #977). For rates a series between two
//! rates contributes its previous rate.
//!
//! Two sweeps implement this and give the same values, bit for bit. The
//! general one (`Sweep`) holds every series of the group and visits each
//! once per output timestamp, with no allocation per point:
//! O(timestamps × series), as in OpenTSDB. When the group is downsampled
//! (every series then lands on the same grid of buckets) and the aggregator
//! folds one value at a time (all but the median and percentiles), the grid
//! sweep (`GridSweep`) folds each series into one running value per bucket
//! as soon as it is read, in group order, so every bucket sees the values
//! the general sweep would collect, in the same order: the series' own, or
//! between two of its buckets its interpolation, computed at every bucket
//! and kept only where some series has a value. Series read from points
//! are read and downsampled on several threads (`parallel`) and folded as
//! they come, in group order; no more than a few series' buckets are held
//! at once: memory is O(buckets), time O(points read + buckets each series
//! spans), and reading, downsampling and aggregating 1,000 series of 1,440
//! one-minute buckets takes about 16 ms of CPU, 10 ms on two cores. Data
//! much sparser than its grid (more buckets to interpolate than the
//! general sweep would visit) sends the group back to the general sweep.
//! [`aggregate`] picks between them.
//!
//! **Integers.** OpenTSDB aggregates in truncating integer maths when every
//! value involved (each series' current and next point, a not-yet-started
//! series' first point) is an integer. rtsd computes in floating point and
//! reports an integer exactly in those cases where the result is a whole
//! number, so `sum` of integers stays `42` while `avg` of 1 and 2 is `1.5`.
//! Downsampled values and rates are always doubles (`30.0`).
//!
//! The file runs past 800 lines for its tests (about 320 lines), which
//! hold the two sweeps against each other, bit for bit, through the test
//! hooks that force the general sweep and count the grid sweep's answers,
//! and a group of one raw series against the general sweep.

use std::ops::ControlFlow;
use std::time::Instant;

use crate::model::{DataPoint, Doubles, Value};
use crate::query::aggregator::{Aggregator, Fold, FoldOp, Interpolation, WithFold};
use crate::query::deadline::{check_deadline, Ticker};
use crate::query::downsample::{self, Slots};
use crate::query::error::QueryError;
use crate::query::limits::Budget;
use crate::query::parallel;
use crate::query::pipeline::{Loaded, Pipeline, Scratch};
use crate::query::source::Source;

/// Read access to one series' points for the cross-series sweep.
trait Column {
    fn len(&self) -> usize;
    fn ts(&self, i: usize) -> i64;
    fn val(&self, i: usize) -> f64;
    /// The exact integer when the point is one (raw points only).
    fn int(&self, i: usize) -> Option<i64>;
}

impl Column for Vec<DataPoint> {
    fn len(&self) -> usize {
        <[DataPoint]>::len(self)
    }
    fn ts(&self, i: usize) -> i64 {
        self[i].timestamp_ms
    }
    fn val(&self, i: usize) -> f64 {
        self[i].value.as_f64()
    }
    fn int(&self, i: usize) -> Option<i64> {
        match self[i].value {
            Value::Int(v) => Some(v),
            Value::Float(_) => None,
        }
    }
}

impl Column for Doubles {
    fn len(&self) -> usize {
        self.ts.len()
    }
    fn ts(&self, i: usize) -> i64 {
        self.ts[i]
    }
    fn val(&self, i: usize) -> f64 {
        self.vals[i]
    }
    fn int(&self, _: usize) -> Option<i64> {
        None
    }
}

/// Aggregates one group of series (`ids`, in group order): the grid sweep
/// when it applies, else, or when the data proves too sparse for it, the
/// general sweep.
pub(super) fn aggregate(
    source: &dyn Source,
    pipeline: &Pipeline,
    ids: &[u64],
    budget: &mut Budget,
    scratch: &mut Scratch,
) -> Result<GroupOutput, QueryError> {
    let sweep = Sweep {
        aggregator: pipeline.sub.aggregator,
        rates: pipeline.sub.rate.is_some(),
        deadline: budget.limits.deadline,
    };
    let points_before = budget.points;
    let max_slots = budget.limits.grid_max_slots;
    if let Some(mut grid_sweep) = GridSweep::new(pipeline, &sweep, ids.len(), max_slots, scratch) {
        let answer = grid_sweep.run(source, pipeline, ids, budget, scratch);
        grid_sweep.recycle(scratch);
        if let Some(done) = answer? {
            budget.sweeps.grid += 1;
            return Ok(done);
        }
        // Too sparse for the grid: start over the general way.
        budget.points = points_before;
        budget.sweeps.grid_fallbacks += 1;
    }
    general(source, pipeline, &sweep, ids, budget, scratch)
}

/// A group's aggregated points, the indexes (into the group) of its series
/// with data, and the number of points read.
pub(super) type GroupOutput = (Vec<(i64, Value)>, Vec<usize>, usize);

/// Loads every series of a group, then sweeps across them.
fn general(
    source: &dyn Source,
    pipeline: &Pipeline,
    sweep: &Sweep,
    ids: &[u64],
    budget: &mut Budget,
    scratch: &mut Scratch,
) -> Result<GroupOutput, QueryError> {
    let (read_start, read_end) = pipeline.read;
    let mut scan = source.scan_points(ids, read_start, read_end - 1);
    let mut rollup_scan = pipeline.open_rollups(source, ids);
    let mut raw = Vec::new();
    let mut computed = Vec::new();
    let mut present = Vec::with_capacity(ids.len());
    let mut raw_points = 0;
    for (i, &id) in ids.iter().enumerate() {
        check_deadline(budget.limits.deadline)?;
        let Some((data, read_count)) =
            pipeline.load(rollup_scan.as_deref_mut(), &mut *scan, id, budget, scratch)?
        else {
            continue;
        };
        raw_points += read_count;
        present.push(i);
        match data {
            Loaded::Raw(p) => raw.push(p),
            Loaded::Computed => computed.push(scratch.series.clone()),
        }
    }
    let points = match (pipeline.is_raw(), raw.as_slice()) {
        (true, [one]) => sweep.single(one)?,
        (true, _) => sweep.run(&raw)?,
        (false, _) => sweep.run(&computed)?,
    };
    Ok((points, present, raw_points))
}

/// The cross-series aggregation of one group.
struct Sweep {
    aggregator: Aggregator,
    /// Inputs are rates: no interpolation, previous rate instead.
    rates: bool,
    deadline: Option<Instant>,
}

/// How a series takes part at a bucket between two of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    Lerp,
    Zero,
    Previous,
    LeftOut,
}

/// The cross-series aggregation of a group whose series are all on one
/// downsampling grid, bucket by bucket. Every series is folded into one
/// running [`Fold`] per bucket as soon as it is loaded, in group order, so
/// each bucket sees the values [`Sweep::run`] would hand the aggregator,
/// in the same order: the series' own value, or between two of its buckets
/// its interpolation (at every bucket, of which only those where some
/// series has a value are kept, as the sweep's union of timestamps). At
/// most a few series are held in memory (those read ahead on other
/// threads), and the work is linear in the buckets each series spans.
struct GridSweep<'g> {
    aggregator: Aggregator,
    gap: Gap,
    slots: Slots<'g>,
    acc: Vec<Fold>,
    /// Buckets where some series has its own value: the output timestamps.
    present: Vec<bool>,
    present_count: usize,
    series: usize,
    /// Interpolated values folded so far.
    gap_work: usize,
}

/// Groups whose grid has more buckets than this per series (and more
/// than [`GRID_MIN_SLOTS`]) take the general sweep, which only visits
/// timestamps that have data; so do those over
/// [`QueryLimits::grid_max_slots`](super::QueryLimits::grid_max_slots).
const GRID_SLOTS_PER_SERIES: usize = 64;
const GRID_MIN_SLOTS: usize = 4096;

impl<'g> GridSweep<'g> {
    /// `None` unless every series of the group comes out of a downsampler
    /// onto a grid small enough for the group, and the aggregator folds.
    /// The folds reuse `scratch`'s buffers; [`recycle`](Self::recycle)
    /// hands them back.
    fn new(
        pipeline: &'g Pipeline,
        sweep: &Sweep,
        series: usize,
        max_slots: usize,
        scratch: &mut Scratch,
    ) -> Option<GridSweep<'g>> {
        let grid = pipeline.grid.as_ref()?;
        if !sweep.aggregator.foldable() {
            return None;
        }
        let slots = grid.slots(pipeline.read);
        let len = slots.len();
        let limit = GRID_MIN_SLOTS
            .max(series.saturating_mul(GRID_SLOTS_PER_SERIES))
            .min(max_slots);
        if len == 0 || len > limit {
            return None;
        }
        let gap = if sweep.rates {
            Gap::Previous
        } else {
            match sweep.aggregator.interpolation() {
                Interpolation::Lerp => Gap::Lerp,
                Interpolation::Zim => Gap::Zero,
                Interpolation::Prev => Gap::Previous,
                Interpolation::Max | Interpolation::Min => Gap::LeftOut,
            }
        };
        let mut acc = std::mem::take(&mut scratch.acc);
        acc.clear();
        acc.resize(len, Fold::default());
        let mut present = std::mem::take(&mut scratch.present);
        present.clear();
        present.resize(len, false);
        Some(GridSweep {
            aggregator: sweep.aggregator,
            gap,
            slots,
            acc,
            present,
            present_count: 0,
            series: 0,
            gap_work: 0,
        })
    }

    fn recycle(self, scratch: &mut Scratch) {
        scratch.acc = self.acc;
        scratch.present = self.present;
    }

    /// Loads and folds every series of the group; `None` (having read
    /// everything or part) when the series turn out to be so much sparser
    /// than the grid that interpolating at every bucket would cost more
    /// than the general sweep.
    fn run(
        &mut self,
        source: &dyn Source,
        pipeline: &Pipeline,
        ids: &[u64],
        budget: &mut Budget,
        scratch: &mut Scratch,
    ) -> Result<Option<GroupOutput>, QueryError> {
        let mut rollup_scan = pipeline.open_rollups(source, ids);
        let mut present = Vec::with_capacity(ids.len());
        let mut raw_points = 0;
        // Without rollups, fill or rate, buckets go from the downsamplers,
        // on several threads, straight into the folds.
        if let (Some(grid), Some(spec)) = (&pipeline.grid, &pipeline.sub.downsample) {
            if rollup_scan.is_none()
                && pipeline.sub.rate.is_none()
                && spec.fill == downsample::FillPolicy::None
            {
                let deadline = budget.limits.deadline;
                let room = budget.limits.max_points.saturating_sub(budget.points);
                let flow = parallel::each_downsampled(
                    source,
                    pipeline,
                    (grid, spec.function),
                    (deadline, room),
                    ids,
                    &mut scratch.buf,
                    |i, read, series| {
                        budget.add_points(read as u64)?;
                        if read == 0 {
                            return Ok(ControlFlow::Continue(()));
                        }
                        raw_points += read;
                        present.push(i);
                        Ok(match self.add(series) && self.series_done() {
                            true => ControlFlow::Continue(()),
                            false => ControlFlow::Break(()),
                        })
                    },
                )?;
                return Ok(flow
                    .is_continue()
                    .then(|| (self.points(), present, raw_points)));
            }
        }
        let (read_start, read_end) = pipeline.read;
        let mut scan = source.scan_points(ids, read_start, read_end - 1);
        for (i, &id) in ids.iter().enumerate() {
            check_deadline(budget.limits.deadline)?;
            let Some((data, read)) =
                pipeline.load(rollup_scan.as_deref_mut(), &mut *scan, id, budget, scratch)?
            else {
                continue;
            };
            raw_points += read;
            present.push(i);
            let on_grid = matches!(data, Loaded::Computed) && self.add(&scratch.series);
            if !on_grid || !self.series_done() {
                return Ok(None);
            }
        }
        Ok(Some((self.points(), present, raw_points)))
    }

    /// Folds in one computed series; false if it is not on the grid.
    fn add(&mut self, series: &Doubles) -> bool {
        struct Add<'a, 'g> {
            sweep: &'a mut GridSweep<'g>,
            series: &'a Doubles,
        }
        impl WithFold for Add<'_, '_> {
            type Output = bool;
            fn run<F: FoldOp>(self, op: F) -> bool {
                let mut adding = self.sweep.adding(op);
                let (ts, vals) = (&self.series.ts[..], &self.series.vals[..]);
                let mut j = 0;
                while j < ts.len() {
                    adding.bucket(ts[j], vals[j]);
                    j += 1;
                    j += adding.next_slots(&ts[j..], &vals[j..]);
                }
                adding.on_grid
            }
        }
        let aggregator = self.aggregator;
        aggregator.with_fold(Add {
            sweep: self,
            series,
        })
    }

    fn adding<F: FoldOp>(&mut self, op: F) -> Adding<'_, 'g, F> {
        Adding {
            sweep: self,
            op,
            cursor: 0,
            prev: None,
            on_grid: true,
        }
    }

    /// Counts a series folded in; false once the grid proves too fine.
    fn series_done(&mut self) -> bool {
        self.series += 1;
        // The sweep visits at least `series × present` (series, timestamp)
        // pairs; interpolating costs a few times less per bucket.
        let sweep_work = self.series.saturating_mul(self.present_count);
        self.gap_work
            <= sweep_work
                .saturating_mul(4)
                .saturating_add(self.acc.len().saturating_mul(4))
                .saturating_add(1 << 16)
    }

    /// The aggregated value at every bucket where some series has one;
    /// always doubles, as downsampled values are.
    fn points(&self) -> Vec<(i64, Value)> {
        let mut out = Vec::with_capacity(self.present_count);
        for (k, (acc, _)) in self
            .acc
            .iter()
            .zip(&self.present)
            .enumerate()
            .filter(|(_, (_, &p))| p)
        {
            out.push((
                self.slots.start(k),
                Value::Float(self.aggregator.fold_result(acc)),
            ));
        }
        out
    }
}

/// One series being folded into a [`GridSweep`], bucket by bucket in time
/// order.
struct Adding<'s, 'g, F> {
    sweep: &'s mut GridSweep<'g>,
    op: F,
    cursor: usize,
    /// The series' last bucket: slot, start, value.
    prev: Option<(usize, i64, f64)>,
    /// False once a bucket was not on the grid (never expected); the
    /// series' later buckets are then ignored and the group starts over.
    on_grid: bool,
}

impl<F: FoldOp> Adding<'_, '_, F> {
    /// Folds the longest run at the front of `ts` that lands on the
    /// regular slots right after the series' last bucket, one each, as
    /// [`bucket`](Self::bucket) would but with no lookup and no gap
    /// to fill: most of a dense series. Returns the run's length.
    #[inline(always)]
    fn next_slots(&mut self, ts: &[i64], vals: &[f64]) -> usize {
        let GridSweep {
            slots,
            acc,
            present,
            present_count,
            ..
        } = &mut *self.sweep;
        let (Slots::Regular { step, .. }, Some((k0, x0, _)), true) =
            (*slots, self.prev, self.on_grid)
        else {
            return 0;
        };
        let mut run = 0;
        let mut expected = x0;
        let slots_after = acc[k0 + 1..].iter_mut().zip(&mut present[k0 + 1..]);
        for ((&x, &y), (acc, present)) in ts.iter().zip(vals).zip(slots_after) {
            expected += step;
            if x != expected {
                break;
            }
            self.op.push(acc, y);
            if !*present {
                *present = true;
                *present_count += 1;
            }
            run += 1;
        }
        if run > 0 {
            let k1 = k0 + run;
            self.prev = Some((k1, ts[run - 1], vals[run - 1]));
            self.cursor = k1 + 1;
        }
        run
    }

    /// Folds the series' bucket starting at `x1`, and its interpolation at
    /// the slots since its last bucket.
    #[inline(always)]
    fn bucket(&mut self, x1: i64, y1: f64) {
        let sweep = &mut *self.sweep;
        let Some(k1) = sweep
            .slots
            .index(x1, &mut self.cursor)
            .filter(|&k1| self.on_grid && !matches!(self.prev, Some((k0, _, _)) if k1 <= k0))
        else {
            self.on_grid = false;
            return;
        };
        if let Some((k0, x0, y0)) = self.prev {
            if k1 > k0 + 1 && sweep.gap != Gap::LeftOut {
                sweep.gap_work += k1 - k0 - 1;
                for k in k0 + 1..k1 {
                    let v = match sweep.gap {
                        Gap::Lerp => {
                            let t = sweep.slots.start(k);
                            y0 + ((t - x0) as f64 * (y1 - y0)) / ((x1 - x0) as f64)
                        }
                        Gap::Zero => 0.0,
                        Gap::Previous | Gap::LeftOut => y0,
                    };
                    self.op.push(&mut sweep.acc[k], v);
                }
            }
        }
        self.op.push(&mut sweep.acc[k1], y1);
        if !sweep.present[k1] {
            sweep.present[k1] = true;
            sweep.present_count += 1;
        }
        self.prev = Some((k1, x1, y1));
    }
}

/// Largest magnitude at which every integer is an exact double.
const EXACT_INT: f64 = crate::model::MAX_EXACT_F64_INT;

impl Sweep {
    /// What [`run`](Self::run) answers for one series of raw points (no
    /// rates): each point alone at its own timestamp. Without the sweep's
    /// per-step visits of every series, a group of one is answered in half
    /// the time (6.4 against 12.7 µs for 1,440 points); the most common
    /// raw query, one series over a range (query (a)), is such a group.
    fn single(&self, points: &[DataPoint]) -> Result<Vec<(i64, Value)>, QueryError> {
        let mut ticker = Ticker::new(self.deadline);
        let mut out = Vec::with_capacity(points.len());
        for (i, p) in points.iter().enumerate() {
            ticker.tick()?;
            let (y, exact) = match p.value {
                Value::Int(v) => (v as f64, Some(v)),
                Value::Float(f) => (f, None),
            };
            // OpenTSDB's integer path looks at the point and the next one.
            let next_int = points
                .get(i + 1)
                .map_or(true, |q| matches!(q.value, Value::Int(_)));
            let r = self.aggregator.run(&mut [y]);
            out.push((
                p.timestamp_ms,
                number(r, exact.is_some() && next_int, exact),
            ));
        }
        Ok(out)
    }

    fn run<C: Column>(&self, cols: &[C]) -> Result<Vec<(i64, Value)>, QueryError> {
        let mut pos = vec![0usize; cols.len()];
        let mut buf: Vec<f64> = Vec::with_capacity(cols.len());
        let mut out = Vec::new();
        let interpolation = self.aggregator.interpolation();
        // The output timestamps: each step's is the earliest unread point.
        let mut next = cols.iter().filter(|c| c.len() > 0).map(|c| c.ts(0)).min();
        let mut ticker = Ticker::new(self.deadline);
        while let Some(t) = next {
            // Each step visits every series.
            ticker.tick_by(cols.len())?;
            next = None;
            buf.clear();
            let mut ints = !self.rates;
            let mut exact: Option<i64> = None;
            for (col, p) in cols.iter().zip(pos.iter_mut()) {
                let n = col.len();
                if *p < n && col.ts(*p) == t {
                    *p += 1;
                }
                if *p < n {
                    let ts = col.ts(*p);
                    next = Some(next.map_or(ts, |m: i64| m.min(ts)));
                }
                if *p == 0 {
                    // Not started: left out, but its first point still
                    // decides OpenTSDB's integer path.
                    ints &= col.int(0).is_some();
                    continue;
                }
                let i = *p - 1;
                let x0 = col.ts(i);
                if x0 != t && i + 1 == n {
                    continue; // ended
                }
                ints &= col.int(i).is_some() && (i + 1 == n || col.int(i + 1).is_some());
                let y0 = col.val(i);
                if x0 == t {
                    exact = if buf.is_empty() { col.int(i) } else { None };
                    buf.push(y0);
                    continue;
                }
                exact = None;
                if self.rates {
                    buf.push(y0);
                    continue;
                }
                match interpolation {
                    Interpolation::Lerp => {
                        let (x1, y1) = (col.ts(i + 1), col.val(i + 1));
                        buf.push(y0 + ((t - x0) as f64 * (y1 - y0)) / ((x1 - x0) as f64));
                    }
                    Interpolation::Zim => buf.push(0.0),
                    Interpolation::Prev => buf.push(y0),
                    Interpolation::Max | Interpolation::Min => {}
                }
            }
            let single = buf.len() == 1;
            let r = self.aggregator.run(&mut buf);
            out.push((t, number(r, ints, exact.filter(|_| single))));
        }
        Ok(out)
    }
}

/// The reported value: an integer when OpenTSDB's integer path applies and
/// the result is whole, the untouched input when one exact integer passed
/// through unchanged.
fn number(r: f64, ints: bool, single: Option<i64>) -> Value {
    if ints {
        if let Some(v) = single.filter(|&v| v as f64 == r) {
            return Value::Int(v);
        }
        if r.fract() == 0.0 && r.abs() <= EXACT_INT {
            return Value::Int(r as i64);
        }
    }
    Value::Float(r)
}

#[cfg(test)]
mod tests {
    //! The grid sweep against the general sweep: the same answers, bit for
    //! bit, on random series and queries.

    use proptest::prelude::*;

    use super::*;
    use crate::query::tests::MemSource;
    use crate::query::{execute, QueryLimits, QueryRequest, Sweeps};

    /// Series in memory (no rollups, so every downsample reads points) of
    /// metric `m`; of points sharing a timestamp the first is kept.
    fn add(src: &mut MemSource, tags: &[(&str, &str)], mut points: Vec<DataPoint>) {
        points.sort_by_key(|p| p.timestamp_ms);
        points.dedup_by_key(|p| p.timestamp_ms);
        src.add_points("m", tags, points);
    }

    /// 2023-11-14T22:13:20Z: not on a whole hour.
    const T: i64 = 1_700_000_000_000;

    /// Answers to `body` by the general sweep alone and by the usual
    /// choice (the grid sweep where it applies), with values as bits so
    /// that NaN compares and errors as their messages; and how the usual
    /// choice aggregated.
    fn both(src: &MemSource, body: &str) -> ([Result<String, String>; 2], Sweeps) {
        let req = QueryRequest::from_json(body.as_bytes()).unwrap();
        let mut sweeps = Sweeps::default();
        let answers = [0, QueryLimits::default().grid_max_slots].map(|grid_max_slots| {
            let limits = QueryLimits {
                grid_max_slots,
                ..QueryLimits::default()
            };
            let out = execute(src, &req, T + 10 * 86_400_000, &limits);
            if let Ok(r) = &out {
                sweeps = r.sweeps;
            }
            out.map(|r| {
                let mut text = format!("{:?}", r.summary);
                for g in &r.results {
                    let bits: Vec<(i64, u64, bool)> = g
                        .dps
                        .iter()
                        .map(|&(t, v)| match v {
                            Value::Int(i) => (t, i as u64, true),
                            Value::Float(f) if f.is_nan() => (t, 0, false),
                            Value::Float(f) => (t, f.to_bits(), false),
                        })
                        .collect();
                    text += &format!(
                        "\n{:?} {:?} {:?} {:?} {bits:?}",
                        g.tags, g.aggregate_tags, g.tsuids, g.stats
                    );
                }
                text
            })
            .map_err(|e| e.message())
        });
        (answers, sweeps)
    }

    /// How the usual choice aggregated, once it is shown to answer as the
    /// general sweep does.
    fn assert_same(src: &MemSource, body: &str) -> Sweeps {
        let ([general, usual], sweeps) = both(src, body);
        assert_eq!(usual, general, "{body}");
        sweeps
    }

    /// Edge cases by hand: series starting late and ending early, gaps of
    /// every length, a series with one point, every fill, integer and float
    /// values, negative zero.
    #[test]
    fn grid_sweep_matches_the_general_sweep_on_edges() {
        let mut src = MemSource::default();
        let m = 60_000;
        let pt = |t: i64, v: Value| DataPoint {
            timestamp_ms: T + t,
            value: v,
        };
        add(
            &mut src,
            &[("host", "a"), ("dc", "x")],
            (0..100).map(|i| pt(i * m, Value::Int(i % 7))).collect(),
        );
        add(
            &mut src,
            &[("host", "b"), ("dc", "x")],
            (20..60)
                .filter(|i| i % 9 != 0)
                .map(|i| pt(i * m + 1500, Value::Float(i as f64 * 0.1)))
                .collect(),
        );
        add(
            &mut src,
            &[("host", "c"), ("dc", "y")],
            vec![pt(33 * m, Value::Float(-0.0))],
        );
        add(
            &mut src,
            &[("host", "d"), ("dc", "y")],
            (0..100)
                .step_by(13)
                .map(|i| pt(i * m - 7, Value::Int(-(i * i))))
                .collect(),
        );
        add(&mut src, &[("host", "e"), ("dc", "y")], Vec::new());
        let aggs = [
            "sum",
            "zimsum",
            "pfsum",
            "min",
            "max",
            "mimmin",
            "mimmax",
            "avg",
            "dev",
            "count",
            "first",
            "last",
            "mult",
            "diff",
            "squareSum",
            "none",
            "median",
            "p90",
        ];
        let downsamples = [
            "1m-avg",
            "1m-sum-zero",
            "1m-max-nan",
            "1m-count-null",
            "5m-dev",
            "7m-first",
            "1m-last-zero",
            "2m-median",
            "1h-sum",
            "0all-avg",
            "1m-p99-nan",
            "30s-diff",
            "1m-mult",
            "1mc-avg",
        ];
        let mut grid_answers = 0;
        for agg in aggs {
            for ds in downsamples {
                for rate in [
                    "",
                    r#","rate":true"#,
                    r#","rate":true,"rateOptions":{"counter":true,"dropResets":true}"#,
                ] {
                    for tags in ["", r#","tags":{"dc":"*"}"#] {
                        let body = format!(
                            r#"{{"start":{},"end":{},"queries":[{{"aggregator":"{agg}","metric":"m","downsample":"{ds}"{rate}{tags}}}]}}"#,
                            T + 5 * m + 10,
                            T + 90 * m,
                        );
                        grid_answers += assert_same(&src, &body).grid;
                    }
                }
            }
        }
        // Not every case could take the grid sweep, but most did.
        let cases = aggs.len() * downsamples.len() * 3 * 2;
        assert!(grid_answers > cases, "{grid_answers} of {cases}");
    }

    /// Series much sparser than a fine grid: the grid sweep gives up and
    /// the general sweep answers.
    #[test]
    fn a_grid_much_finer_than_the_data_falls_back() {
        let mut src = MemSource::default();
        for h in 0..200 {
            let host = format!("h{h:03}");
            let points = (0..12)
                .map(|i| DataPoint {
                    timestamp_ms: T / 600_000 * 600_000 + i * 600_000,
                    value: Value::Int(h + i),
                })
                .collect();
            add(&mut src, &[("host", &host)], points);
        }
        let body = format!(
            r#"{{"start":{},"end":{},"queries":[{{"aggregator":"sum","metric":"m","downsample":"1s-avg"}}]}}"#,
            T,
            T + 7_000_000
        );
        assert_eq!(assert_same(&src, &body).grid_fallbacks, 1);
        // A dense one does not.
        let body = body.replace("1s-avg", "10m-avg");
        let dense = assert_same(&src, &body);
        assert_eq!((dense.grid, dense.grid_fallbacks), (1, 0));
    }

    /// One random series: (offset, step, count, kind of values, seed).
    fn series_strategy() -> impl Strategy<Value = (i64, i64, usize, u8, u64)> {
        (
            0i64..7_200_000,
            prop::sample::select(vec![
                1_000i64, 10_000, 15_000, 60_000, 90_000, 300_000, 3_600_000,
            ]),
            0usize..150,
            0u8..4,
            any::<u64>(),
        )
    }

    fn make_series(
        (offset, step, count, kind, seed): (i64, i64, usize, u8, u64),
    ) -> Vec<DataPoint> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut t = T + offset;
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let r = next();
            // Jitter, and now and then a long gap.
            t += step + (r % 7) as i64 * 100 + if r % 11 == 0 { 20 * step } else { 0 };
            let v = (r >> 20) % 2000;
            let value = match kind {
                0 => Value::Int(v as i64 - 1000),
                1 => Value::Float((v as f64 - 1000.0) / 8.0),
                2 => Value::Float(if r % 13 == 0 {
                    f64::NAN
                } else {
                    v as f64 * 1.7e-3
                }),
                _ if r % 2 == 0 => Value::Int(v as i64),
                _ => Value::Float(v as f64 / 3.0),
            };
            out.push(DataPoint {
                timestamp_ms: t,
                value,
            });
        }
        out
    }

    proptest! {
        /// A group of one series of raw points answers as the sweep over
        /// it does, bit for bit, for every aggregator.
        #[test]
        fn one_raw_series_answers_as_the_sweep(
            s in series_strategy(),
            extremes in prop::collection::vec((0usize..150, 0usize..4), 0..6),
        ) {
            let mut points = make_series(s);
            for (at, which) in extremes {
                if let Some(p) = points.get_mut(at) {
                    p.value = [
                        Value::Int(i64::MAX - 1),
                        Value::Int(-(1 << 60) - 1),
                        Value::Float(-0.0),
                        Value::Float(f64::NAN),
                    ][which];
                }
            }
            let bits = |out: Vec<(i64, Value)>| -> Vec<(i64, u64, bool)> {
                out.into_iter()
                    .map(|(t, v)| match v {
                        Value::Int(i) => (t, i as u64, true),
                        Value::Float(f) => (t, f.to_bits(), false),
                    })
                    .collect()
            };
            for &name in crate::query::aggregator::aggregator_names() {
                let sweep = Sweep {
                    aggregator: Aggregator::from_name(name).unwrap(),
                    rates: false,
                    deadline: None,
                };
                let want = bits(sweep.run(&[points.clone()]).unwrap());
                prop_assert_eq!(bits(sweep.single(&points).unwrap()), want, "{}", name);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn grid_sweep_matches_the_general_sweep(
            series in prop::collection::vec(series_strategy(), 1..8),
            agg in prop::sample::select(vec![
                "sum", "zimsum", "pfsum", "min", "max", "mimmin", "mimmax", "avg", "dev",
                "count", "first", "last", "mult", "diff", "squareSum", "none", "p50",
            ]),
            interval in prop::sample::select(vec!["1s", "10s", "1m", "90s", "5m", "1h", "0all", "1hc", "15mc"]),
            function in prop::sample::select(vec![
                "avg", "sum", "min", "max", "count", "dev", "first", "last", "median", "p95", "diff", "mult",
            ]),
            fill in prop::sample::select(vec!["", "-none", "-zero", "-nan", "-null"]),
            rate in prop::sample::select(vec![
                "",
                r#","rate":true"#,
                r#","rate":true,"rateOptions":{"counter":true,"counterMax":3000,"resetValue":5}"#,
                r#","rate":true,"rateOptions":{"counter":true,"dropResets":true}"#,
            ]),
            group in any::<bool>(),
            start in 0i64..3_600_000,
            len in 60_000i64..30_000_000,
            ms in any::<bool>(),
        ) {
            let mut src = MemSource::default();
            for (i, s) in series.into_iter().enumerate() {
                let host = format!("h{i}");
                let dc = if i % 3 == 0 { "x" } else { "y" };
                add(&mut src, &[("host", &host), ("dc", dc)], make_series(s));
            }
            let tags = if group { r#","tags":{"dc":"*"}"# } else { "" };
            let body = format!(
                r#"{{"start":{},"end":{},"msResolution":{ms},"timezone":"America/New_York","queries":[{{"aggregator":"{agg}","metric":"m","downsample":"{interval}-{function}{fill}"{rate}{tags}}}]}}"#,
                T + start,
                T + start + len,
            );
            let ([general, usual], _) = both(&src, &body);
            prop_assert_eq!(usual, general, "{}", body);
        }
    }
}
