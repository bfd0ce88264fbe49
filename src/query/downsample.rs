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

use crate::model::{DataPoint, RollupAgg};
use crate::query::aggregator::{Aggregator, RollupFunction};
use crate::query::error::QueryError;
use crate::query::filter::java_split;
use crate::query::time::{self, add_calendar, parse_duration, previous_interval, CalendarUnit};

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
    let hour = time::hour_ms();
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

/// A series of doubles: bucket starts (or rate times) and values.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Doubles {
    pub ts: Vec<i64>,
    pub vals: Vec<f64>,
}

impl Doubles {
    fn push(&mut self, ts: i64, v: f64) {
        self.ts.push(ts);
        self.vals.push(v);
    }
}

/// One value per non-empty bucket, from raw points in time order.
pub(crate) fn downsample_points(
    points: &[DataPoint],
    grid: &Grid,
    function: Aggregator,
    buf: &mut Vec<f64>,
) -> Doubles {
    let mut out = Doubles::default();
    let mut hint = 0;
    let mut current: Option<(i64, i64)> = None;
    buf.clear();
    for p in points {
        let ts = p.timestamp_ms;
        match current {
            Some((_, end)) if ts < end => {}
            _ => {
                if let Some((start, _)) = current {
                    out.push(start, function.run(buf));
                    buf.clear();
                }
                current = grid.bucket(ts, &mut hint);
            }
        }
        if current.is_some() {
            buf.push(p.value.as_f64());
        }
    }
    if let (Some((start, _)), false) = (current, buf.is_empty()) {
        out.push(start, function.run(buf));
    }
    out
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
