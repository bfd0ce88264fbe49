//! Folding one series into its buckets: raw points through a
//! [`Downsampler`] (as they stream from the store, in slices), or hourly and
//! daily rollups through [`downsample_rollups`]; then [`fill`] adds the
//! empty buckets a fill policy asks for. Buckets come out as [`Doubles`].

use super::grid::Grid;
use super::spec::FillPolicy;
use crate::model::{Doubles, RollupAgg};
use crate::query::aggregator::{Aggregator, Fold, FoldOp, RollupFunction, WithFold};
use crate::query::deadline::Ticker;
use crate::query::error::QueryError;

/// One value per non-empty bucket, from raw points in time order.
#[cfg(test)]
pub(crate) fn downsample_points(
    points: &[crate::model::DataPoint],
    grid: &Grid,
    function: Aggregator,
    buf: &mut Vec<f64>,
) -> Doubles {
    let mut out = Doubles::default();
    let mut d = Downsampler::new(grid, function, std::mem::take(buf));
    let mut raw = Doubles::default();
    raw.extend_points(points);
    d.push(&raw.ts, &raw.vals, &mut out);
    d.finish(&mut out);
    *buf = d.into_buf();
    out
}

/// How many of `ts`' neighbours, from the front, lie `step` apart. Eight
/// at a time, each eight checked whole (a check that vectorizes), then one
/// at a time: the scalar search alone was about a tenth of decoding and
/// downsampling query (b)'s chunks.
#[inline(always)]
fn steady_run(ts: &[i64], step: i64) -> usize {
    let Some(after) = ts.get(1..) else {
        return 0;
    };
    let apart = |(&x, &y): (&i64, &i64)| (y > x) & (y.wrapping_sub(x) == step);
    let mut run = 0;
    for (x, y) in ts.chunks_exact(8).zip(after.chunks_exact(8)) {
        if !x.iter().zip(y).fold(true, |all, pair| all & apart(pair)) {
            break;
        }
        run += 8;
    }
    run + ts[run..]
        .iter()
        .zip(&after[run..])
        .take_while(|&pair| apart(pair))
        .count()
}

/// Runs of points a step apart shorter than this go point by point: the
/// run's own bookkeeping costs about what it saves on a few points.
const MIN_RUN: usize = 4;

/// Folds raw points, given in time order in any number of slices, into one
/// value per non-empty bucket. A foldable function keeps a running
/// [`Fold`] per bucket; the median and percentiles collect the bucket's
/// values and `run` them. Either way the values are those `run` gives.
pub(crate) struct Downsampler<'g> {
    grid: &'g Grid,
    function: Aggregator,
    fold: bool,
    hint: usize,
    /// The bucket being filled, `[start, end)`.
    current: Option<(i64, i64)>,
    acc: Fold,
    /// Whether `acc` or `buf` holds a value of `current`.
    filled: bool,
    buf: Vec<f64>,
}

impl<'g> Downsampler<'g> {
    /// `buf` is scratch space, reused across series.
    pub(crate) fn new(grid: &'g Grid, function: Aggregator, buf: Vec<f64>) -> Downsampler<'g> {
        Downsampler {
            grid,
            function,
            fold: function.foldable(),
            hint: 0,
            current: None,
            acc: Fold::default(),
            filled: false,
            buf,
        }
    }

    /// The scratch space back.
    pub(crate) fn into_buf(self) -> Vec<f64> {
        self.buf
    }

    /// Emits the bucket being filled, if it holds anything.
    fn flush(&mut self, out: &mut Doubles) {
        if let (Some((start, _)), true) = (self.current, self.filled) {
            let v = if self.fold {
                self.function.fold_result(&self.acc)
            } else {
                self.function.run(&mut self.buf)
            };
            out.push(start, v);
        }
        self.acc = Fold::default();
        self.buf.clear();
        self.filled = false;
    }

    /// The bucket holding `ts`, which is past `current`.
    #[inline(always)]
    fn next_bucket(&mut self, ts: i64) -> Option<(i64, i64)> {
        match (self.grid, self.current) {
            // The next bucket of a regular grid, without a division.
            (Grid::Regular { step, .. }, Some((_, end)))
                if ts.checked_sub(end).is_some_and(|d| d < *step) && end <= i64::MAX - step =>
            {
                Some((end, end + step))
            }
            _ => self.grid.bucket(ts, &mut self.hint),
        }
    }

    /// Adds points later than any pushed before: timestamps `ts` and
    /// values `vals`, as many.
    pub(crate) fn push(&mut self, ts: &[i64], vals: &[f64], out: &mut Doubles) {
        debug_assert_eq!(ts.len(), vals.len());
        if !self.fold {
            for (&t, &v) in ts.iter().zip(vals) {
                if !matches!(self.current, Some((_, end)) if t < end) {
                    self.flush(out);
                    self.current = self.next_bucket(t);
                }
                if self.current.is_some() {
                    self.buf.push(v);
                    self.filled = true;
                }
            }
            return;
        }
        struct Push<'a, 'g> {
            d: &'a mut Downsampler<'g>,
            points: (&'a [i64], &'a [f64]),
            out: &'a mut Doubles,
        }
        impl WithFold for Push<'_, '_> {
            type Output = ();
            fn run<F: FoldOp>(self, op: F) {
                self.d.push_folded(op, self.points, self.out);
            }
        }
        let function = self.function;
        function.with_fold(Push {
            d: self,
            points: (ts, vals),
            out,
        });
    }

    #[inline(always)]
    fn push_folded<F: FoldOp>(&mut self, op: F, (ts, vals): (&[i64], &[f64]), out: &mut Doubles) {
        if let Grid::Regular { step, .. } = *self.grid {
            return self.push_regular(op, step, (ts, vals), out);
        }
        let (mut acc, mut filled) = (self.acc, self.filled);
        for (&t, &v) in ts.iter().zip(vals) {
            if !matches!(self.current, Some((_, end)) if t < end) {
                if let (Some((start, _)), true) = (self.current, filled) {
                    out.push(start, op.result(&acc));
                }
                acc = Fold::default();
                filled = false;
                self.current = self.next_bucket(t);
            }
            if self.current.is_some() {
                op.push(&mut acc, v);
                filled = true;
            }
        }
        (self.acc, self.filled) = (acc, filled);
    }

    /// `push_folded` on a regular grid. A point a step after another lands
    /// in the bucket after that one's, so in a run of points a step apart
    /// (data at the grid's own interval, the commonest downsample) each
    /// point but the first and last has a bucket of its own: those are
    /// written straight from their values, the rest go point by point.
    /// One bucket per point cost 2.9 ns a point point by point and costs
    /// 1.5 ns so (query (b): 1,440 one-minute points per series in slices
    /// of 60).
    #[inline(always)]
    fn push_regular<F: FoldOp>(
        &mut self,
        op: F,
        step: i64,
        (ts, vals): (&[i64], &[f64]),
        out: &mut Doubles,
    ) {
        let run = steady_run(ts, step);
        if run < MIN_RUN {
            return self.push_each(op, step, (ts, vals), out);
        }
        self.push_each(op, step, (&ts[..1], &vals[..1]), out);
        let rest = (&ts[1..], &vals[1..]);
        // The first point's bucket, and the end of the last point's.
        let (Some((start, _)), true) = (self.current, self.filled) else {
            return self.push_each(op, step, rest, out);
        };
        let Some(last_end) = (run as i64 + 1)
            .checked_mul(step)
            .and_then(|span| start.checked_add(span))
        else {
            return self.push_each(op, step, rest, out);
        };
        let one = |v: f64| {
            let mut acc = Fold::default();
            op.push(&mut acc, v);
            acc
        };
        out.push(start, op.result(&self.acc));
        // Every point of the run lies as far into its bucket as the first.
        let offset = ts[0] - start;
        out.ts.extend(ts[1..run].iter().map(|&t| t - offset));
        out.vals
            .extend(vals[1..run].iter().map(|&v| op.result(&one(v))));
        self.acc = one(vals[run]);
        self.current = Some((last_end - step, last_end));
        self.push_each(op, step, (&ts[run + 1..], &vals[run + 1..]), out);
    }

    /// `push_folded` on a regular grid point by point. Every point has a
    /// bucket, so a bucket is current (and filled) from the first point on.
    #[inline(always)]
    fn push_each<F: FoldOp>(
        &mut self,
        op: F,
        step: i64,
        (ts, vals): (&[i64], &[f64]),
        out: &mut Doubles,
    ) {
        let mut acc = self.acc;
        let mut current = self.current.is_some();
        // Before the first point, no bucket, and every point is past it.
        let (mut start, mut end) = self.current.unwrap_or((i64::MIN, i64::MIN));
        for (&t, &v) in ts.iter().zip(vals) {
            if t >= end {
                if current {
                    out.push(start, op.result(&acc));
                }
                acc = Fold::default();
                (start, end) = match t.checked_sub(end) {
                    Some(d) if current && d < step && end <= i64::MAX - step => (end, end + step),
                    // Every timestamp has a bucket on a regular grid.
                    _ => match self.grid.bucket(t, &mut self.hint) {
                        Some(bucket) => bucket,
                        None => {
                            current = false;
                            continue;
                        }
                    },
                };
                current = true;
            }
            op.push(&mut acc, v);
        }
        self.acc = acc;
        self.filled = current;
        if current {
            self.current = Some((start, end));
        }
    }

    /// Emits the last bucket and starts over for another series.
    pub(crate) fn finish(&mut self, out: &mut Doubles) {
        self.flush(out);
        self.current = None;
        self.hint = 0;
    }
}

/// One value per non-empty bucket, from hourly or daily rollups whose
/// intervals never straddle a bucket boundary, polling the deadline
/// through `ticker`.
pub(crate) fn downsample_rollups(
    aggs: &[RollupAgg],
    grid: &Grid,
    function: RollupFunction,
    ticker: &mut Ticker,
) -> Result<Doubles, QueryError> {
    let mut out = Doubles::default();
    let mut hint = 0;
    let mut current: Option<((i64, i64), RollupAgg)> = None;
    for a in aggs {
        ticker.tick()?;
        if let Some(((start, end), acc)) = current.as_mut() {
            if a.start_ms < *end {
                acc.count += a.count;
                acc.sum += a.sum;
                acc.min = acc.min.min(a.min);
                acc.max = acc.max.max(a.max);
                acc.sum_sq += a.sum_sq;
                acc.last = a.last;
                continue;
            }
            out.push(*start, rollup_value(acc, function));
        }
        current = grid
            .bucket(a.start_ms, &mut hint)
            .map(|bucket| (bucket, *a));
    }
    if let Some(((start, _), acc)) = current {
        out.push(start, rollup_value(&acc, function));
    }
    Ok(out)
}

fn rollup_value(a: &RollupAgg, function: RollupFunction) -> f64 {
    let n = a.count as f64;
    match function {
        RollupFunction::Sum => a.sum,
        RollupFunction::Count => n,
        RollupFunction::Min => a.min,
        RollupFunction::Max => a.max,
        RollupFunction::Avg => a.sum / n,
        RollupFunction::Dev if a.count < 2 => 0.0,
        RollupFunction::Dev => ((a.sum_sq - a.sum * a.sum / n) / (n - 1.0)).max(0.0).sqrt(),
        RollupFunction::First => a.first.value.as_f64(),
        RollupFunction::Last => a.last.value.as_f64(),
    }
}

/// The downsampled series with missing buckets filled per `fill`, polling
/// the deadline through `ticker`.
pub(crate) fn fill(
    buckets: Doubles,
    grid: &Grid,
    fill: FillPolicy,
    (read_start, read_end): (i64, i64),
    ticker: &mut Ticker,
) -> Result<Doubles, QueryError> {
    let Some(fill_value) = fill.value().filter(|_| !matches!(grid, Grid::All { .. })) else {
        return Ok(buckets);
    };
    let starts = grid.fill_starts(read_start, read_end);
    let mut vals = Vec::with_capacity(starts.len());
    let mut data = buckets.ts.iter().zip(&buckets.vals).peekable();
    for &b in &starts {
        ticker.tick()?;
        while data.next_if(|&(&t, _)| t < b).is_some() {}
        vals.push(
            data.next_if(|&(&t, _)| t == b)
                .map_or(fill_value, |(_, &v)| v),
        );
    }
    Ok(Doubles { ts: starts, vals })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataPoint, Value};

    fn pts(data: &[(i64, f64)]) -> Vec<DataPoint> {
        data.iter()
            .map(|&(t, v)| DataPoint {
                timestamp_ms: t,
                value: Value::Float(v),
            })
            .collect()
    }

    #[test]
    fn fixed_buckets_align_to_the_epoch() {
        let grid = Grid::Regular {
            step: 100,
            offset: 0,
        };
        let sum = Aggregator::from_name("sum").unwrap();
        let p = pts(&[(50, 1.0), (99, 2.0), (100, 4.0), (350, 8.0), (399, 16.0)]);
        let out = downsample_points(&p, &grid, sum, &mut Vec::new());
        assert_eq!(
            (out.ts, out.vals),
            (vec![0, 100, 300], vec![3.0, 4.0, 24.0])
        );
    }

    #[test]
    fn every_fill_policy() {
        let grid = Grid::Regular {
            step: 100,
            offset: 0,
        };
        let sparse = Doubles {
            ts: vec![100, 300],
            vals: vec![4.0, 24.0],
        };
        let ticker = &mut Ticker::new(None);
        let out = fill(sparse.clone(), &grid, FillPolicy::Zero, (0, 500), ticker).unwrap();
        assert_eq!(out.ts, [0, 100, 200, 300, 400]);
        assert_eq!(out.vals, [0.0, 4.0, 0.0, 24.0, 0.0]);
        for policy in [FillPolicy::Nan, FillPolicy::Null] {
            let v = fill(sparse.clone(), &grid, policy, (0, 500), ticker)
                .unwrap()
                .vals;
            assert_eq!(v.len(), 5);
            assert!(v[0].is_nan() && v[2].is_nan() && v[4].is_nan());
            assert_eq!((v[1], v[3]), (4.0, 24.0));
        }
        assert_eq!(
            fill(sparse.clone(), &grid, FillPolicy::None, (0, 500), ticker).unwrap(),
            sparse
        );
    }

    #[test]
    fn all_takes_start_inclusive_end_exclusive() {
        let grid = Grid::All {
            start: 100,
            end: 400,
        };
        let count = Aggregator::from_name("count").unwrap();
        let p = pts(&[(50, 1.0), (100, 1.0), (399, 1.0), (400, 1.0)]);
        let out = downsample_points(&p, &grid, count, &mut Vec::new());
        assert_eq!((out.ts, out.vals), (vec![100], vec![2.0]));
    }

    proptest::proptest! {
        /// Points in slices of any size give what `run` gives on each
        /// bucket's values collected in one piece.
        #[test]
        fn downsampler_matches_run_per_bucket(
            raw in proptest::collection::vec(
                (1i64..5_000, -50i64..50, proptest::bool::ANY, proptest::bool::weighted(0.7)),
                0..200,
            ),
            cuts in proptest::collection::vec(0usize..200, 0..6),
            step in proptest::sample::select(vec![1i64, 1000, 3000, 60_000]),
            function in proptest::sample::select(vec![
                "sum", "avg", "min", "max", "count", "dev", "first", "last", "median", "p90",
                "mult", "diff", "squareSum", "zimsum",
            ]),
            bounds in proptest::bool::ANY,
        ) {
            let mut t = 1_000_000;
            let points: Vec<DataPoint> = raw
                .iter()
                // Mostly a step apart, in runs, as data at the grid's own
                // interval comes.
                .map(|&(dt, v, int, on_step)| {
                    t += if on_step { step } else { dt };
                    DataPoint {
                        timestamp_ms: t,
                        value: if int { Value::Int(v) } else { Value::Float(v as f64 / 4.0) },
                    }
                })
                .collect();
            let grid = if bounds {
                Grid::Bounds((0..400).map(|i| 1_000_000 + i * i * 10).collect())
            } else {
                Grid::Regular { step, offset: 7 }
            };
            let function = Aggregator::from_name(function).unwrap();
            // Reference: collect each bucket's values, then `run`.
            let mut want = Doubles::default();
            let mut hint = 0;
            let mut bucket: Option<(i64, Vec<f64>)> = None;
            for p in &points {
                let b = grid.bucket(p.timestamp_ms, &mut hint).map(|b| b.0);
                if bucket.as_ref().map(|b| b.0) != b {
                    if let Some((start, mut vals)) = bucket.take() {
                        want.push(start, function.run(&mut vals));
                    }
                    bucket = b.map(|start| (start, Vec::new()));
                }
                if let Some((_, vals)) = bucket.as_mut() {
                    vals.push(p.value.as_f64());
                }
            }
            if let Some((start, mut vals)) = bucket.take() {
                want.push(start, function.run(&mut vals));
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(points.len())).collect();
            cuts.sort_unstable();
            let mut got = Doubles::default();
            let mut d = Downsampler::new(&grid, function, Vec::new());
            let mut raw = Doubles::default();
            raw.extend_points(&points);
            let mut from = 0;
            for c in cuts.into_iter().chain([points.len()]) {
                d.push(&raw.ts[from..c], &raw.vals[from..c], &mut got);
                from = c;
            }
            d.finish(&mut got);
            proptest::prop_assert_eq!(&got.ts, &want.ts);
            let bits = |v: &[f64]| v.iter().map(|x| if x.is_nan() { 1 } else { x.to_bits() }).collect::<Vec<_>>();
            proptest::prop_assert_eq!(bits(&got.vals), bits(&want.vals));
        }
    }
}
