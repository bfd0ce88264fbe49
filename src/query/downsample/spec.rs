//! The downsample spec, `<interval>[c]-<function>[-<fill>]` (`1m-avg`,
//! `1dc-sum-zero`, `0all-count`), parsed as OpenTSDB 2.4's
//! `DownsamplingSpecification` does, with its error texts; and the
//! calendar reading of its interval that `useCalendar` asks for.
//!
//! `scalar` is a registered fill policy in OpenTSDB 2.4, but its value
//! cannot be written in a 2.x spec and it fails every query with a 500;
//! rtsd rejects it with a 400 instead.

use crate::java::split::split;
use crate::model::{DAY_MS, HOUR_MS};
use crate::query::aggregator::Aggregator;
use crate::query::error::QueryError;
use crate::query::time::{parse_duration, CalendarUnit};

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
    pub(super) fn value(self) -> Option<f64> {
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

impl Interval {
    /// How many buckets of this interval `[start, end]` can touch, at most:
    /// arithmetic only, so a range of centuries costs no calendar walk.
    /// Wall-clock units count at their shortest (a day across a DST change
    /// is 23 hours, a month 28 days), so the count is never too low.
    pub(crate) fn buckets_over(self, start: i64, end: i64) -> u64 {
        let step = match self {
            Interval::All => return 1,
            Interval::Fixed(ms) => ms,
            Interval::Calendar { n, unit } => {
                let shortest = match unit {
                    CalendarUnit::Day => DAY_MS - HOUR_MS,
                    CalendarUnit::Week => 7 * DAY_MS - HOUR_MS,
                    CalendarUnit::Month => 28 * DAY_MS - HOUR_MS,
                    CalendarUnit::Year => 365 * DAY_MS - HOUR_MS,
                    fixed => fixed.fixed_ms().unwrap_or(1),
                };
                shortest.saturating_mul(i64::from(n))
            }
        };
        let span = (i128::from(end) - i128::from(start)).max(0);
        // The first and last buckets may stick out of the range.
        let buckets = span / i128::from(step.max(1)) + 2;
        u64::try_from(buckets).unwrap_or(u64::MAX)
    }
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
        let parts = split(spec, '-'); // Java's `String.split`
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn buckets_are_counted_without_walking_the_calendar() {
        let buckets = |spec: &str, start: i64, end: i64| {
            let s = DownsampleSpec::parse(spec).unwrap();
            s.interval.buckets_over(start, end)
        };
        let year = 365 * DAY_MS;
        assert_eq!(buckets("1m-avg", 0, year), 525_602);
        assert_eq!(buckets("0all-sum", 0, 100 * year), 1);
        assert_eq!(buckets("1ms-sum-zero", 0, 0), 2);
        // The shortest day is 23 hours: never fewer than the real count.
        assert_eq!(buckets("1dc-sum", 0, 23 * DAY_MS), 26);
        assert_eq!(buckets("1nc-sum", 0, year), 15);
        // From 1970 to `i64::MAX` ms at once.
        assert_eq!(buckets("1dc-sum", 0, i64::MAX), 111_393_382_089);
        assert_eq!(buckets("1ms-sum", i64::MIN, i64::MAX), u64::MAX);
        assert_eq!(buckets("1h-sum", 10, 0), 2);
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
}
