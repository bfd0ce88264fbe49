//! The buckets a downsample spec defines over one query: the [`Grid`]
//! (fixed steps aligned to the epoch, calendar steps in the query
//! timezone, or one bucket for `all`), the range of stored data a query
//! reads around it, and the [`Slots`] that number the buckets that data can
//! land in.
//!
//! Calendar units that have a fixed length (milliseconds to hours) make a
//! regular grid anchored at the first calendar boundary; days, weeks,
//! months and years make explicit boundaries, stepped on the wall clock so
//! that a day across a DST change is 23 or 25 hours long.

use chrono_tz::Tz;

use super::spec::{DownsampleSpec, Interval};
use crate::query::deadline::Ticker;
use crate::query::error::QueryError;
use crate::query::limits::QueryLimits;
use crate::query::time::{add_calendar, previous_interval, CalendarUnit};

pub(super) fn floor_to(ts: i64, step: i64, offset: i64) -> i64 {
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
    /// The grid of `spec` over the read range. `limits` bound the
    /// boundaries materialised for calendar grids (`max_points`) and the
    /// time spent walking the calendar (`deadline`).
    pub(crate) fn new(
        spec: &DownsampleSpec,
        tz: Tz,
        (query_start, query_end): (i64, i64),
        (read_start, read_end): (i64, i64),
        limits: &QueryLimits,
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
        let mut ticker = Ticker::new(limits.deadline);
        while b <= read_end {
            ticker.tick()?;
            let next = add_calendar(b, n, unit, tz);
            if next <= b {
                break;
            }
            if bounds.len() >= limits.max_points {
                return Err(QueryError::TooManyPoints {
                    limit: limits.max_points,
                });
            }
            bounds.push(next);
            b = next;
        }
        Ok(Grid::Bounds(bounds))
    }

    /// The bucket `[start, end)` holding `ts`; `hint` speeds up sorted
    /// lookups in explicit bounds.
    pub(super) fn bucket(&self, ts: i64, hint: &mut usize) -> Option<(i64, i64)> {
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
    pub(super) fn fill_starts(&self, read_start: i64, read_end: i64) -> Vec<i64> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_days_across_dst() {
        let ny: Tz = "America/New_York".parse().unwrap();
        let spec = DownsampleSpec::parse("1dc-sum").unwrap();
        // 2024-03-09 12:00 EST to 2024-03-11 12:00 EDT.
        let (start, end) = (1_710_003_600_000, 1_710_172_800_000);
        let range = read_range(Some(&spec), start, end, ny);
        // Midnight EST on the 9th; midnight EDT on the 12th.
        assert_eq!(range, (1_709_960_400_000, 1_710_216_000_000));
        let grid = Grid::new(&spec, ny, (start, end), range, &QueryLimits::default()).unwrap();
        let Grid::Bounds(b) = &grid else {
            panic!("{grid:?}")
        };
        let hours: Vec<i64> = b.windows(2).map(|w| (w[1] - w[0]) / 3_600_000).collect();
        assert_eq!(&hours[..3], [24, 23, 24]);
        assert!(grid.aligned_to(3_600_000));
        assert!(!grid.aligned_to(86_400_000));
    }

    #[test]
    fn a_calendar_walk_polls_the_deadline() {
        let spec = DownsampleSpec::parse("1dc-sum").unwrap();
        let range = (0, crate::model::MAX_TIMESTAMP_MS);
        let limits = QueryLimits {
            max_points: usize::MAX,
            deadline: Some(std::time::Instant::now()),
            ..QueryLimits::default()
        };
        let walked = Grid::new(&spec, Tz::UTC, range, range, &limits);
        assert!(
            matches!(walked, Err(QueryError::DeadlineExceeded)),
            "{walked:?}"
        );
    }

    proptest::proptest! {
        #[test]
        fn spec_parsing_never_panics(s in "[0-9a-z-]{0,16}") {
            if let Ok(spec) = DownsampleSpec::parse(&s) {
                let _ = spec.clone().with_calendar();
                let ny: Tz = "America/New_York".parse().unwrap();
                let range = read_range(Some(&spec), 1_700_000_000_000, 1_700_100_000_000, ny);
                let _ = Grid::new(&spec, ny, range, range, &QueryLimits::default());
            }
        }
    }
}
