//! Rates of change (OpenTSDB's `RateSpan`): per-second differences between
//! consecutive points of one series, with the counter options.
//!
//! - The first point yields nothing; each later one yields
//!   `(v2 - v1) / ((t2 - t1) / 1000)` at `t2`, the difference taken in
//!   integer arithmetic when both values are integers.
//! - With `counter`, a drop is a reset: it yields nothing with
//!   `dropResets`, else `(counterMax - v1 + v2) / dt`, and `0` when
//!   `resetValue > 0` and that rate exceeds it.
//!
//! OpenTSDB 2.4 also computes a rate against epoch zero for the first point
//! (`v1 / t1`) and lets it stand for the series at timestamps before its
//! second point. That value is meaningless; rtsd leaves the series out of
//! the aggregation there instead, as it does for any series not yet started.

use serde::Deserialize;

use crate::java::jackson;
use crate::model::Doubles;
use crate::query::deadline::Ticker;
use crate::query::error::QueryError;

/// `rateOptions` of a sub-query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RateOptions {
    /// The series is a monotonic counter that may wrap or reset.
    #[serde(alias = "isCounter", deserialize_with = "jackson::flag")]
    pub counter: bool,
    /// The value a counter wraps at.
    #[serde(rename = "counterMax", deserialize_with = "jackson::long")]
    pub counter_max: i64,
    /// Rates above this (when positive) after a reset are reported as 0.
    #[serde(rename = "resetValue", deserialize_with = "jackson::long")]
    pub reset_value: i64,
    /// Drop the rate across a reset instead of guessing a wrap.
    #[serde(rename = "dropResets", deserialize_with = "jackson::flag")]
    pub drop_resets: bool,
}

impl Default for RateOptions {
    fn default() -> Self {
        RateOptions {
            counter: false,
            counter_max: i64::MAX,
            reset_value: 0,
            drop_resets: false,
        }
    }
}

/// One input point: time, value, and the exact integer when it is one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RatePoint {
    pub ts: i64,
    pub value: f64,
    pub int: Option<i64>,
}

/// The rate series of `points` (sorted, one per timestamp), polling the
/// deadline through `ticker`.
pub(crate) fn rates(
    points: impl IntoIterator<Item = RatePoint>,
    opts: &RateOptions,
    ticker: &mut Ticker,
) -> Result<Doubles, QueryError> {
    let mut out = Doubles::default();
    let mut points = points.into_iter();
    let Some(mut prev) = points.next() else {
        return Ok(out);
    };
    for next in points {
        ticker.tick()?;
        let dt = (next.ts - prev.ts) as f64 / 1000.0;
        let ints = prev.int.zip(next.int);
        let difference = match ints {
            Some((a, b)) => b.wrapping_sub(a) as f64,
            None => next.value - prev.value,
        };
        let rate = if opts.counter && difference < 0.0 {
            if opts.drop_resets {
                prev = next;
                continue;
            }
            let wrapped = match ints {
                Some((a, b)) => opts.counter_max.wrapping_sub(a).wrapping_add(b) as f64,
                None => opts.counter_max as f64 - prev.value + next.value,
            };
            let rate = wrapped / dt;
            if opts.reset_value > 0 && rate > opts.reset_value as f64 {
                0.0
            } else {
                rate
            }
        } else {
            difference / dt
        };
        out.ts.push(next.ts);
        out.vals.push(rate);
        prev = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(data: &[(i64, i64)]) -> Vec<RatePoint> {
        data.iter()
            .map(|&(ts, v)| RatePoint {
                ts,
                value: v as f64,
                int: Some(v),
            })
            .collect()
    }

    /// Name, options, input (ms, value) and expected (ms, rate).
    type RateCase<'a> = (&'a str, RateOptions, &'a [(i64, i64)], &'a [(i64, f64)]);

    #[test]
    fn rate_table() {
        let counter = RateOptions {
            counter: true,
            ..RateOptions::default()
        };
        let cases: &[RateCase] = &[
            (
                "plain",
                RateOptions::default(),
                &[(0, 10), (10_000, 30), (20_000, 20)],
                &[(10_000, 2.0), (20_000, -1.0)],
            ),
            ("single point", RateOptions::default(), &[(0, 10)], &[]),
            (
                "ms spacing",
                RateOptions::default(),
                &[(0, 0), (500, 1)],
                &[(500, 2.0)],
            ),
            (
                "counter wraps at counterMax",
                RateOptions {
                    counter_max: 100,
                    ..counter
                },
                &[(0, 90), (10_000, 10), (20_000, 30)],
                &[(10_000, 2.0), (20_000, 2.0)],
            ),
            (
                "counter default max is Long.MAX",
                counter,
                &[(0, 10), (1_000, 5)],
                &[(1_000, (i64::MAX - 5) as f64)],
            ),
            (
                "resetValue zeroes huge rates",
                RateOptions {
                    reset_value: 1000,
                    ..counter
                },
                &[(0, 10), (1_000, 5), (2_000, 15)],
                &[(1_000, 0.0), (2_000, 10.0)],
            ),
            (
                "resetValue keeps small wraps",
                RateOptions {
                    counter_max: 100,
                    reset_value: 1000,
                    ..counter
                },
                &[(0, 90), (10_000, 10)],
                &[(10_000, 2.0)],
            ),
            (
                "dropResets",
                RateOptions {
                    drop_resets: true,
                    ..counter
                },
                &[(0, 10), (10_000, 30), (20_000, 5), (30_000, 25)],
                &[(10_000, 2.0), (30_000, 2.0)],
            ),
            (
                "non-counter rates go negative",
                RateOptions {
                    drop_resets: true,
                    ..RateOptions::default()
                },
                &[(0, 30), (10_000, 10)],
                &[(10_000, -2.0)],
            ),
        ];
        for (name, opts, input, want) in cases {
            let out = rates(ints(input), opts, &mut Ticker::new(None)).unwrap();
            let got: Vec<(i64, f64)> = out.ts.into_iter().zip(out.vals).collect();
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn floats_and_nan() {
        let p = vec![
            RatePoint {
                ts: 0,
                value: 1.5,
                int: None,
            },
            RatePoint {
                ts: 2_000,
                value: 2.5,
                int: None,
            },
            RatePoint {
                ts: 4_000,
                value: f64::NAN,
                int: None,
            },
            RatePoint {
                ts: 6_000,
                value: 3.5,
                int: None,
            },
        ];
        let Doubles { ts, vals: v } = rates(
            p,
            &RateOptions {
                counter: true,
                ..RateOptions::default()
            },
            &mut Ticker::new(None),
        )
        .unwrap();
        assert_eq!(ts, [2_000, 4_000, 6_000]);
        assert_eq!(v[0], 0.5);
        assert!(v[1].is_nan() && v[2].is_nan());
    }

    #[test]
    fn deserializes_both_counter_spellings() {
        let o: RateOptions = serde_json::from_str(r#"{"isCounter":true,"resetValue":5}"#).unwrap();
        assert_eq!(
            o,
            RateOptions {
                counter: true,
                reset_value: 5,
                ..RateOptions::default()
            }
        );
        let o: RateOptions = serde_json::from_str(
            r#"{"counter":"true","counterMax":"100","dropResets":true,"x":1}"#,
        )
        .unwrap();
        assert_eq!(
            o,
            RateOptions {
                counter: true,
                counter_max: 100,
                drop_resets: true,
                reset_value: 0
            }
        );
    }
}
