//! Downsampling: the `<interval>[c]-<function>[-<fill>]` spec, the bucket
//! grid it defines, and folding a series' points (or its rollups) into one
//! value per bucket, with missing buckets filled per the fill policy.
//!
//! Rules, as OpenTSDB 2.4's `Downsampler`/`FillingDownsampler` apply them:
//!
//! - buckets are start-inclusive, end-exclusive, and reported at their
//!   start; fixed intervals align to the epoch, calendar ones (`1dc`, or any
//!   interval with `useCalendar`) to the wall clock in the query timezone;
//! - `all` / `0all-` folds `[start, end)` of the query into one value
//!   reported at `start`;
//! - the engine reads whole buckets (and whole hours around them), so the
//!   first and last buckets are complete even when `start`/`end` cut them;
//!   the output later drops buckets starting before `start` or after `end`;
//! - with a fill policy every bucket from the start of the read range to
//!   the end of the bucket holding `end` exists, missing ones as NaN
//!   (`nan`, `null`) or 0 (`zero`); without one, missing buckets are absent
//!   and the cross-series step interpolates over them.
//!
//! rtsd computes one calendar grid per query, anchored at the start of the
//! read range. OpenTSDB anchors it at each series' first point; the two
//! agree for every interval that divides its parent unit (hours of a day,
//! days of a month, ...), which are the ones people use.
//!
//! `scalar` is a registered fill policy in OpenTSDB 2.4, but its value
//! cannot be written in a 2.x spec and it fails every query with a 500;
//! rtsd rejects it with a 400 instead.

use chrono_tz::Tz;

use crate::model::{DataPoint, RollupAgg, Value};
use crate::query::aggregator::{Aggregator, Fold, FoldOp, RollupFunction, WithFold};
use crate::query::error::QueryError;
use crate::query::filter::java_split;
use crate::query::time::{add_calendar, parse_duration, previous_interval, CalendarUnit};

/// What to emit for a bucket without data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FillPolicy {
    /// Emit nothing; the cross-series step interpolates.
    None,
    Zero,
    Nan,
    Null,
}

impl FillPolicy {
    fn parse(s: &str) -> Result<FillPolicy, QueryError> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(FillPolicy::None),
            "zero" => Ok(FillPolicy::Zero),
            "nan" => Ok(FillPolicy::Nan),
            "null" => Ok(FillPolicy::Null),
            "scalar" => Err(QueryError::bad(
                "Fill policy 'scalar' needs a value, which the downsample syntax cannot carry",
            )),
            _ => Err(QueryError::bad(format!("Unrecognized fill policy: {s}"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FillPolicy::None => "none",
            FillPolicy::Zero => "zero",
            FillPolicy::Nan => "nan",
            FillPolicy::Null => "null",
        }
    }

    /// The value of an empty bucket; `None` when empty buckets are skipped.
    fn value(self) -> Option<f64> {
        match self {
            FillPolicy::None => None,
            FillPolicy::Zero => Some(0.0),
            FillPolicy::Nan | FillPolicy::Null => Some(f64::NAN),
        }
    }
}

/// The bucket width of a downsample spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// One bucket for the whole query.
    All,
    /// Epoch-aligned buckets of this many milliseconds.
    Fixed(i64),
    /// `n` calendar units in the query timezone.
    Calendar { n: u32, unit: CalendarUnit },
}

/// A parsed downsample spec.
#[derive(Debug, Clone, PartialEq)]
pub struct DownsampleSpec {
    pub interval: Interval,
    pub function: Aggregator,
    pub fill: FillPolicy,
    /// The interval read as a calendar one, for `useCalendar`.
    as_calendar: Option<(u32, CalendarUnit)>,
}

impl DownsampleSpec {
    /// Parses `<interval>[c]-<function>[-<fill>]`; errors are OpenTSDB's.
    pub fn parse(spec: &str) -> Result<DownsampleSpec, QueryError> {
        let parts = java_split(spec, '-');
        if parts.len() < 2 {
            return Err(QueryError::bad(format!(
                "Invalid downsampling specifier '{spec}': must provide at least interval and function"
            )));
        }
        if parts.len() > 3 {
            return Err(QueryError::bad(format!(
                "Invalid downsampling specifier '{spec}': must consist of interval, function, \
                 and optional fill policy"
            )));
        }
        let (interval, as_calendar) = if parts[0].contains("all") {
            (Interval::All, None)
        } else if let Some(duration) = parts[0].strip_suffix('c') {
            parse_duration(duration)?;
            let (n, unit) = calendar_parts(duration)?;
            (Interval::Calendar { n, unit }, Some((n, unit)))
        } else {
            let ms = parse_duration(parts[0])?;
            (Interval::Fixed(ms), calendar_parts(parts[0]).ok())
        };
        let function = Aggregator::from_name(parts[1]).ok_or_else(|| {
            QueryError::bad(format!("No such downsampling function: {}", parts[1]))
        })?;
        if function.is_none() {
            return Err(QueryError::bad(
                "cannot use the NONE aggregator for downsampling",
            ));
        }
        let fill = match parts.get(2) {
            Some(p) => FillPolicy::parse(p)?,
            None => FillPolicy::None,
        };
        Ok(DownsampleSpec {
            interval,
            function,
            fill,
            as_calendar,
        })
    }

    /// The spec with calendar buckets, as `useCalendar` asks for.
    pub(crate) fn with_calendar(mut self) -> Result<DownsampleSpec, QueryError> {
        if let (Interval::Fixed(_), Some((n, unit))) = (self.interval, self.as_calendar) {
            self.interval = Interval::Calendar { n, unit };
        } else if let Interval::Fixed(ms) = self.interval {
            return Err(QueryError::bad(format!(
                "Invalid calendar downsampling interval: {ms} ms"
            )));
        }
        Ok(self)
    }
}

/// `<count><unit>` of an already valid duration, for calendar stepping.
fn calendar_parts(duration: &str) -> Result<(u32, CalendarUnit), QueryError> {
    let digits = duration.bytes().take_while(u8::is_ascii_digit).count();
    let n: u32 = duration[..digits]
        .parse()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| QueryError::bad(format!("Invalid duration (number): {duration}")))?;
    let unit = if duration.ends_with("ms") {
        CalendarUnit::Millisecond
    } else {
        match duration.as_bytes()[duration.len() - 1].to_ascii_lowercase() {
            b's' => CalendarUnit::Second,
            b'm' => CalendarUnit::Minute,
            b'h' => CalendarUnit::Hour,
            b'd' => CalendarUnit::Day,
            b'w' => CalendarUnit::Week,
            b'n' => CalendarUnit::Month,
            _ => CalendarUnit::Year,
        }
    };
    Ok((n, unit))
}

fn floor_to(ts: i64, step: i64, offset: i64) -> i64 {
    ts - (ts - offset).rem_euclid(step)
}

/// The range of stored data a query reads, `[start, end)`: the start of the
/// hour holding the first bucket, through the end of the hour holding the
/// end of the last bucket. Points just outside `[start, end]` thereby feed
/// interpolation and rates, as OpenTSDB's hour-row scans make them do.
pub(crate) fn read_range(
    spec: Option<&DownsampleSpec>,
    start: i64,
    end: i64,
    tz: Tz,
) -> (i64, i64) {
    let hour = crate::model::HOUR_MS;
    let ceil_hour = |t: i64| floor_to(t.saturating_add(hour - 1), hour, 0);
    let (first, after_last) = match spec.map(|s| s.interval) {
        None | Some(Interval::All) => (start, floor_to(end, hour, 0).saturating_add(hour)),
        Some(Interval::Fixed(step)) => (
            floor_to(start, step, 0),
            floor_to(end, step, 0).saturating_add(step),
        ),
        Some(Interval::Calendar { n, unit }) => {
            let last = previous_interval(end, n, unit, tz);
            let (step_n, step_unit) = stepping(n, unit);
            (
                previous_interval(start, n, unit, tz),
                add_calendar(last, step_n, step_unit, tz),
            )
        }
    };
    (floor_to(first, hour, 0), ceil_hour(after_last))
}

/// Weeks start on a week boundary but step `7 n` days.
fn stepping(n: u32, unit: CalendarUnit) -> (u32, CalendarUnit) {
    match unit {
        CalendarUnit::Week => (n.saturating_mul(7), CalendarUnit::Day),
        _ => (n, unit),
    }
}

/// The buckets of one query.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Grid {
    /// Boundaries at `offset + k * step`.
    Regular { step: i64, offset: i64 },
    /// Explicit boundaries, sorted (calendar days, weeks, months, years).
    Bounds(Vec<i64>),
    /// One bucket `[start, end)`.
    All { start: i64, end: i64 },
}

impl Grid {
    /// The grid of `spec` over the read range. `max_buckets` bounds the
    /// boundaries materialised for calendar grids.
    pub(crate) fn new(
        spec: &DownsampleSpec,
        tz: Tz,
        (query_start, query_end): (i64, i64),
        (read_start, read_end): (i64, i64),
        max_buckets: usize,
    ) -> Result<Grid, QueryError> {
        let (n, unit) = match spec.interval {
            Interval::All => {
                return Ok(Grid::All {
                    start: query_start,
                    end: query_end,
                })
            }
            Interval::Fixed(step) => return Ok(Grid::Regular { step, offset: 0 }),
            Interval::Calendar { n, unit } => (n, unit),
        };
        let first = previous_interval(read_start, n, unit, tz);
        let (n, unit) = stepping(n, unit);
        if let Some(unit_ms) = unit.fixed_ms() {
            return Ok(Grid::Regular {
                step: unit_ms * i64::from(n),
                offset: first,
            });
        }
        let mut bounds = vec![first];
        let mut b = first;
        while b <= read_end {
            let next = add_calendar(b, n, unit, tz);
            if next <= b {
                break;
            }
            if bounds.len() >= max_buckets {
                return Err(QueryError::TooManyPoints { limit: max_buckets });
            }
            bounds.push(next);
            b = next;
        }
        Ok(Grid::Bounds(bounds))
    }

    /// The bucket `[start, end)` holding `ts`; `hint` speeds up sorted
    /// lookups in explicit bounds.
    fn bucket(&self, ts: i64, hint: &mut usize) -> Option<(i64, i64)> {
        match self {
            Grid::Regular { step, offset } => {
                let start = floor_to(ts, *step, *offset);
                Some((start, start.saturating_add(*step)))
            }
            Grid::Bounds(b) => {
                if b.is_empty() || ts < b[0] {
                    return None;
                }
                if *hint >= b.len() || b[*hint] > ts {
                    *hint = 0;
                }
                while *hint + 1 < b.len() && b[*hint + 1] <= ts {
                    *hint += 1;
                }
                b.get(*hint + 1).map(|&end| (b[*hint], end))
            }
            Grid::All { start, end } => (*start <= ts && ts < *end).then_some((*start, *end)),
        }
    }

    /// Starts of the buckets a fill policy emits, OpenTSDB's
    /// `FillingDownsampler` range: from the bucket of the read start up to,
    /// not including, the bucket of the read end (at least one bucket).
    fn fill_starts(&self, read_start: i64, read_end: i64) -> Vec<i64> {
        match self {
            Grid::Regular { step, offset } => {
                let first = floor_to(read_start, *step, *offset);
                let last = floor_to(read_end, *step, *offset);
                let mut out = Vec::new();
                let mut b = first;
                while b < last {
                    out.push(b);
                    b += step;
                }
                out
            }
            Grid::Bounds(b) => {
                let last = b.iter().rposition(|&x| x <= read_end).unwrap_or(0).max(1);
                b[..last.min(b.len())].to_vec()
            }
            Grid::All { .. } => Vec::new(),
        }
    }

    /// How many buckets a fill emits, checked before allocating them.
    pub(crate) fn fill_len(&self, read_start: i64, read_end: i64) -> u64 {
        match self {
            Grid::Regular { step, offset } => {
                let first = floor_to(read_start, *step, *offset);
                let last = floor_to(read_end, *step, *offset);
                u64::try_from((last - first) / step).unwrap_or(0)
            }
            Grid::Bounds(b) => b.len() as u64,
            Grid::All { .. } => 0,
        }
    }

    /// Whether every bucket boundary is a multiple of `unit` ms, so that
    /// rollups of that resolution never straddle two buckets.
    pub(crate) fn aligned_to(&self, unit: i64) -> bool {
        match self {
            Grid::Regular { step, offset } => step % unit == 0 && offset % unit == 0,
            Grid::Bounds(b) => b.iter().all(|x| x % unit == 0),
            Grid::All { .. } => false,
        }
    }
}

/// The buckets of a [`Grid`] that data read over one range can land in,
/// numbered from 0 in time order: every timestamp the downsamplers, `fill`
/// and rates over their output produce is one of these bucket starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Slots<'g> {
    Regular { first: i64, step: i64, len: usize },
    Bounds(&'g [i64]),
    All(i64),
}

impl Grid {
    /// The slots of data read over `[read_start, read_end)`.
    pub(crate) fn slots(&self, (read_start, read_end): (i64, i64)) -> Slots<'_> {
        match self {
            Grid::Regular { step, offset } => {
                let first = floor_to(read_start, *step, *offset);
                let last = floor_to(read_end.saturating_sub(1), *step, *offset);
                let len = if last < first {
                    0
                } else {
                    usize::try_from((last - first) / step + 1).unwrap_or(usize::MAX)
                };
                Slots::Regular {
                    first,
                    step: *step,
                    len,
                }
            }
            // The last bound only ends a bucket.
            Grid::Bounds(b) => Slots::Bounds(&b[..b.len().saturating_sub(1)]),
            Grid::All { start, .. } => Slots::All(*start),
        }
    }
}

impl Slots<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Slots::Regular { len, .. } => *len,
            Slots::Bounds(b) => b.len(),
            Slots::All(_) => 1,
        }
    }

    /// The start of slot `i < len()`.
    #[inline]
    pub(crate) fn start(&self, i: usize) -> i64 {
        match self {
            Slots::Regular { first, step, .. } => first + i as i64 * step,
            Slots::Bounds(b) => b[i],
            Slots::All(start) => *start,
        }
    }

    /// The slot starting at `ts`, if any. `cursor` (0 for a new series)
    /// speeds up increasing lookups.
    #[inline]
    pub(crate) fn index(&self, ts: i64, cursor: &mut usize) -> Option<usize> {
        match self {
            Slots::Regular { first, step, len } => {
                // Most series have a value in the slot after their last.
                let i = *cursor;
                if i < *len && ts == first + i as i64 * step {
                    *cursor = i + 1;
                    return Some(i);
                }
                let d = ts.checked_sub(*first)?;
                if d < 0 || d % step != 0 {
                    return None;
                }
                let i = usize::try_from(d / step).ok().filter(|i| i < len)?;
                *cursor = i + 1;
                Some(i)
            }
            Slots::Bounds(b) => {
                if *cursor > b.len() || (*cursor > 0 && b[*cursor - 1] >= ts) {
                    *cursor = 0;
                }
                while *cursor < b.len() && b[*cursor] < ts {
                    *cursor += 1;
                }
                (*cursor < b.len() && b[*cursor] == ts).then_some(*cursor)
            }
            Slots::All(start) => (ts == *start).then_some(0),
        }
    }
}

/// A series of doubles: bucket starts (or rate times) and values.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Doubles {
    pub ts: Vec<i64>,
    pub vals: Vec<f64>,
}

impl Doubles {
    pub(crate) fn clear(&mut self) {
        self.ts.clear();
        self.vals.clear();
    }

    fn push(&mut self, ts: i64, v: f64) {
        self.ts.push(ts);
        self.vals.push(v);
    }
}

/// One value per non-empty bucket, from raw points in time order.
#[cfg(test)]
pub(crate) fn downsample_points(
    points: &[DataPoint],
    grid: &Grid,
    function: Aggregator,
    buf: &mut Vec<f64>,
) -> Doubles {
    let mut out = Doubles::default();
    let mut d = Downsampler::new(grid, function, std::mem::take(buf));
    d.push(points, &mut out);
    d.finish(&mut out);
    *buf = d.into_buf();
    out
}

/// Where a [`Downsampler`] puts its buckets.
pub(crate) trait BucketSink {
    fn bucket(&mut self, start: i64, value: f64);
}

impl BucketSink for Doubles {
    #[inline]
    fn bucket(&mut self, start: i64, value: f64) {
        self.push(start, value);
    }
}

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
    fn flush(&mut self, out: &mut impl BucketSink) {
        if let (Some((start, _)), true) = (self.current, self.filled) {
            let v = if self.fold {
                self.function.fold_result(&self.acc)
            } else {
                self.function.run(&mut self.buf)
            };
            out.bucket(start, v);
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

    /// Adds points later than any pushed before.
    pub(crate) fn push(&mut self, points: &[DataPoint], out: &mut impl BucketSink) {
        if !self.fold {
            for p in points {
                if !matches!(self.current, Some((_, end)) if p.timestamp_ms < end) {
                    self.flush(out);
                    self.current = self.next_bucket(p.timestamp_ms);
                }
                if self.current.is_some() {
                    self.buf.push(p.value.as_f64());
                    self.filled = true;
                }
            }
            return;
        }
        struct Push<'a, 'g, S> {
            d: &'a mut Downsampler<'g>,
            points: &'a [DataPoint],
            out: &'a mut S,
        }
        impl<S: BucketSink> WithFold for Push<'_, '_, S> {
            type Output = ();
            fn run<F: FoldOp>(self, op: F) {
                self.d.push_folded(op, self.points, self.out);
            }
        }
        let function = self.function;
        function.with_fold(Push {
            d: self,
            points,
            out,
        });
    }

    #[inline(always)]
    fn push_folded<F: FoldOp>(&mut self, op: F, points: &[DataPoint], out: &mut impl BucketSink) {
        if let Grid::Regular { step, .. } = *self.grid {
            return self.push_regular(op, step, points, out);
        }
        let (mut acc, mut filled) = (self.acc, self.filled);
        for p in points {
            let ts = p.timestamp_ms;
            if !matches!(self.current, Some((_, end)) if ts < end) {
                if let (Some((start, _)), true) = (self.current, filled) {
                    out.bucket(start, op.result(&acc));
                }
                acc = Fold::default();
                filled = false;
                self.current = self.next_bucket(ts);
            }
            if self.current.is_some() {
                op.push(&mut acc, p.value.as_f64());
                filled = true;
            }
        }
        (self.acc, self.filled) = (acc, filled);
    }

    /// `push_folded` on a regular grid, where every point has a bucket, so
    /// a bucket is current (and filled) from the first point on.
    #[inline(always)]
    fn push_regular<F: FoldOp>(
        &mut self,
        op: F,
        step: i64,
        points: &[DataPoint],
        out: &mut impl BucketSink,
    ) {
        let mut acc = self.acc;
        let mut current = self.current.is_some();
        // Before the first point, no bucket, and every point is past it.
        let (mut start, mut end) = self.current.unwrap_or((i64::MIN, i64::MIN));
        for p in points {
            let ts = p.timestamp_ms;
            if ts >= end {
                if current {
                    out.bucket(start, op.result(&acc));
                }
                acc = Fold::default();
                (start, end) = match ts.checked_sub(end) {
                    Some(d) if current && d < step && end <= i64::MAX - step => (end, end + step),
                    // Every timestamp has a bucket on a regular grid.
                    _ => match self.grid.bucket(ts, &mut self.hint) {
                        Some(bucket) => bucket,
                        None => {
                            current = false;
                            continue;
                        }
                    },
                };
                current = true;
            }
            match p.value {
                Value::Int(i) => op.push_number(&mut acc, i as f64),
                Value::Float(f) => op.push(&mut acc, f),
            }
        }
        self.acc = acc;
        self.filled = current;
        if current {
            self.current = Some((start, end));
        }
    }

    /// Emits the last bucket and starts over for another series.
    pub(crate) fn finish(&mut self, out: &mut impl BucketSink) {
        self.flush(out);
        self.current = None;
        self.hint = 0;
    }
}

/// One value per non-empty bucket, from hourly or daily rollups whose
/// intervals never straddle a bucket boundary.
pub(crate) fn downsample_rollups(
    aggs: &[RollupAgg],
    grid: &Grid,
    function: RollupFunction,
) -> Doubles {
    let mut out = Doubles::default();
    let mut hint = 0;
    let mut current: Option<((i64, i64), RollupAgg)> = None;
    for a in aggs {
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
    out
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

/// The downsampled series with missing buckets filled per `fill`.
pub(crate) fn fill(
    buckets: Doubles,
    grid: &Grid,
    fill: FillPolicy,
    (read_start, read_end): (i64, i64),
) -> Doubles {
    let Some(fill_value) = fill.value().filter(|_| !matches!(grid, Grid::All { .. })) else {
        return buckets;
    };
    let starts = grid.fill_starts(read_start, read_end);
    let mut vals = Vec::with_capacity(starts.len());
    let mut data = buckets.ts.iter().zip(&buckets.vals).peekable();
    for &b in &starts {
        while data.next_if(|&(&t, _)| t < b).is_some() {}
        vals.push(
            data.next_if(|&(&t, _)| t == b)
                .map_or(fill_value, |(_, &v)| v),
        );
    }
    Doubles { ts: starts, vals }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn err(spec: &str) -> String {
        DownsampleSpec::parse(spec).unwrap_err().message()
    }

    #[test]
    fn parses_specs() {
        let s = DownsampleSpec::parse("1h-avg").unwrap();
        assert_eq!(
            (s.interval, s.function.name(), s.fill),
            (Interval::Fixed(3_600_000), "avg", FillPolicy::None)
        );
        let s = DownsampleSpec::parse("1dc-sum-zero").unwrap();
        assert_eq!(
            s.interval,
            Interval::Calendar {
                n: 1,
                unit: CalendarUnit::Day
            }
        );
        assert_eq!(s.fill, FillPolicy::Zero);
        assert_eq!(
            DownsampleSpec::parse("0all-sum").unwrap().interval,
            Interval::All
        );
        assert_eq!(
            DownsampleSpec::parse("all-count").unwrap().interval,
            Interval::All
        );
        assert_eq!(
            DownsampleSpec::parse("1m-max-NaN").unwrap().fill,
            FillPolicy::Nan
        );
        assert_eq!(
            DownsampleSpec::parse("500ms-min-null").unwrap().interval,
            Interval::Fixed(500)
        );
        // Java's split drops the trailing empty part.
        assert_eq!(
            DownsampleSpec::parse("1h-sum-").unwrap().fill,
            FillPolicy::None
        );
        let cal = DownsampleSpec::parse("15m-sum")
            .unwrap()
            .with_calendar()
            .unwrap();
        assert_eq!(
            cal.interval,
            Interval::Calendar {
                n: 15,
                unit: CalendarUnit::Minute
            }
        );
        let cal = DownsampleSpec::parse("1w-sum")
            .unwrap()
            .with_calendar()
            .unwrap();
        assert_eq!(
            cal.interval,
            Interval::Calendar {
                n: 1,
                unit: CalendarUnit::Week
            }
        );
    }

    #[test]
    fn spec_errors() {
        let cases: &[(&str, &str)] = &[
            ("1h", "Invalid downsampling specifier '1h': must provide at least interval and function"),
            ("1h-", "Invalid downsampling specifier '1h-': must provide at least interval and function"),
            ("1h-sum-nan-x", "Invalid downsampling specifier '1h-sum-nan-x': must consist of interval, function, and optional fill policy"),
            ("1h-foo", "No such downsampling function: foo"),
            ("1h-SUM", "No such downsampling function: SUM"),
            ("1h-none", "cannot use the NONE aggregator for downsampling"),
            ("10x-sum", "Invalid duration (suffix): 10x"),
            ("0h-sum", "Zero or negative duration: 0h"),
            ("h-sum", "Invalid duration (number): h"),
            ("1h-sum-bogus", "Unrecognized fill policy: bogus"),
            ("1h-sum-scalar", "Fill policy 'scalar' needs a value, which the downsample syntax cannot carry"),
        ];
        for &(spec, want) in cases {
            assert_eq!(err(spec), want, "{spec}");
        }
    }

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
        let out = fill(sparse.clone(), &grid, FillPolicy::Zero, (0, 500));
        assert_eq!(out.ts, [0, 100, 200, 300, 400]);
        assert_eq!(out.vals, [0.0, 4.0, 0.0, 24.0, 0.0]);
        for policy in [FillPolicy::Nan, FillPolicy::Null] {
            let v = fill(sparse.clone(), &grid, policy, (0, 500)).vals;
            assert_eq!(v.len(), 5);
            assert!(v[0].is_nan() && v[2].is_nan() && v[4].is_nan());
            assert_eq!((v[1], v[3]), (4.0, 24.0));
        }
        assert_eq!(
            fill(sparse.clone(), &grid, FillPolicy::None, (0, 500)),
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

    #[test]
    fn calendar_days_across_dst() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let spec = DownsampleSpec::parse("1dc-sum").unwrap();
        // 2024-03-09 12:00 EST to 2024-03-11 12:00 EDT.
        let (start, end) = (1_710_003_600_000, 1_710_172_800_000);
        let range = read_range(Some(&spec), start, end, ny);
        // Midnight EST on the 9th; midnight EDT on the 12th.
        assert_eq!(range, (1_709_960_400_000, 1_710_216_000_000));
        let grid = Grid::new(&spec, ny, (start, end), range, 1000).unwrap();
        let Grid::Bounds(b) = &grid else {
            panic!("{grid:?}")
        };
        let hours: Vec<i64> = b.windows(2).map(|w| (w[1] - w[0]) / 3_600_000).collect();
        assert_eq!(&hours[..3], [24, 23, 24]);
        assert!(grid.aligned_to(3_600_000));
        assert!(!grid.aligned_to(86_400_000));
    }

    proptest::proptest! {
        /// Points in slices of any size give what `run` gives on each
        /// bucket's values collected in one piece.
        #[test]
        fn downsampler_matches_run_per_bucket(
            raw in proptest::collection::vec((1i64..5_000, -50i64..50, proptest::bool::ANY), 0..200),
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
                .map(|&(dt, v, int)| {
                    t += dt;
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
            let mut from = 0;
            for c in cuts.into_iter().chain([points.len()]) {
                d.push(&points[from..c], &mut got);
                from = c;
            }
            d.finish(&mut got);
            proptest::prop_assert_eq!(&got.ts, &want.ts);
            let bits = |v: &[f64]| v.iter().map(|x| if x.is_nan() { 1 } else { x.to_bits() }).collect::<Vec<_>>();
            proptest::prop_assert_eq!(bits(&got.vals), bits(&want.vals));
        }

        #[test]
        fn spec_parsing_never_panics(s in "[0-9a-z-]{0,16}") {
            if let Ok(spec) = DownsampleSpec::parse(&s) {
                let _ = spec.clone().with_calendar();
                let ny: Tz = "America/New_York".parse().unwrap();
                let range = read_range(Some(&spec), 1_700_000_000_000, 1_700_100_000_000, ny);
                let _ = Grid::new(&spec, ny, range, range, 10_000);
            }
        }
    }
}
