//! Downsample buckets aggregated by ClickHouse (`Source::scan_buckets`):
//! one row per series and bucket instead of its raw points, as exact as
//! the engine's own fold or not used at all.
//!
//! The rows are read without `FINAL`, which on 18.16 costs more than the
//! grouping (1000 series over a day at 60 s, 5-minute buckets: 400 ms
//! with it, 272 ms without; 15-minute 235 and 165 ms; 10 series 29 and
//! 6.4 ms), so a bucket counts its rows and its distinct timestamps: where
//! they differ, rows of a replay or a rewrite no merge has collapsed yet
//! are in it, and it is inexact (below); where they agree, its rows are
//! the points `FINAL` would keep (one per timestamp, the newest write).
//!
//! # Exact or not at all
//!
//! The engine folds a bucket's values as `f64` in time order. What SQL
//! computes per bucket, and why it is that fold bit for bit:
//!
//! * `count()`, `min`, `max`: exact for finite values with no `-0.0`,
//!   which compare as a total order whose equal values are the same bits,
//!   so no order of adding rows or merging threads and shards matters.
//! * `argMin(v, ts)` / `argMax(v, ts)` for `first` / `last`: one row
//!   per timestamp, so the earliest and latest are unique.
//! * `sum` (and `avg`, the sum over the count): only for buckets of
//!   integers whose magnitudes add up to less than 2^52 (checked in
//!   `f64`, whose error stays far inside the factor 2 to 2^53). Every
//!   partial sum of the engine's fold is then an integer below 2^53,
//!   which `f64` holds exactly, so the fold gives the exact sum, which is
//!   what `sum(int_value)` gives in `Int64`. ClickHouse's float sums do
//!   not follow the engine's order: `sum()` adds per thread and part, and
//!   `arraySum` over values sorted by time, which does add in order (18.16
//!   from 0, current releases from the first element), costs more on
//!   18.16 than reading the points (a `groupArray` per bucket: 7.7 s
//!   against 0.65 s for 1.44 M points in 1-minute buckets).
//! * A value that is NaN or `-0.0` (the first cannot be put, the second
//!   can) makes the bucket inexact: the engine skips NaN, and of two
//!   zeros Rust's `f64::min`/`max` leave the sign unspecified while
//!   ClickHouse keeps the one it met first, which across threads and
//!   shards need not be the earliest.
//!
//! A series with an inexact bucket is answered `None`, so the engine
//! reads its points.
//!
//! # When
//!
//! A `GROUP BY series, bucket` costs 18.16 more per row than streaming the
//! rows sorted; it pays when buckets hold several points each. Measured
//! on 1.44 M points of 1000 series at 60 s (2 cores, loaded): reading the
//! points sorted for the engine 0.45–0.65 s; grouping into 1-minute
//! buckets 0.85–1.3 s, 5-minute 0.41–0.53 s, 15-minute 0.25–0.33 s, hourly
//! 0.16–0.27 s, and the engine then decodes a fifth or less of the rows.
//! The store cannot know how dense a series is before reading it, so it
//! aggregates buckets of [`DEFAULT_MIN_STEP_MS`] and longer, which hold
//! five points or more at the usual collection intervals (60 s or less).
//! Buckets of whole hours or days are never offered: the rollups serve
//! them, and grouping in SQL instead was no faster (`1h-max` over 30 days
//! of 60 s points, median of 20 at load 6–8: 154 ms from rollups, 204 ms
//! grouped; of 10 series 203 ms and 255 ms).

use std::collections::HashMap;

use crate::model::{DataPoint, RollupAgg, Value, MINUTE_MS};
use crate::query::source::{BucketField, Buckets};

use super::id_list;
use super::rowbinary::{RowError, RowReader};
use super::schema::Identifier;

/// The shortest bucket aggregated in SQL unless configured otherwise.
pub const DEFAULT_MIN_STEP_MS: i64 = 5 * MINUTE_MS;

/// Buckets per statement at most, as series times buckets per series:
/// an answer is held whole (33 bytes a row).
const BUCKETS_PER_STATEMENT: i64 = 1 << 20;

/// Series per statement at most (its list of ids stays well inside what
/// 18.16 parses, see `IDS_PER_STATEMENT`).
const MAX_SERIES_PER_STATEMENT: usize = 1024;

/// How many series one statement covers for buckets of `step_ms` over
/// `[start_ms, end_ms)`.
pub(super) fn series_per_statement(step_ms: i64, start_ms: i64, end_ms: i64) -> usize {
    let per_series = (end_ms.saturating_sub(start_ms) / step_ms).saturating_add(2);
    usize::try_from(BUCKETS_PER_STATEMENT / per_series)
        .unwrap_or(0)
        .clamp(1, MAX_SERIES_PER_STATEMENT)
}

/// The statement aggregating the points of `ids` with
/// `start_ms <= ts < end_ms` into `buckets`: rows of `series`, bucket
/// start, `count()`, whether the bucket is exact (one row per timestamp,
/// and see the module doc) and the value of the field.
pub(super) fn sql(
    database: &Identifier,
    ids: &[u64],
    buckets: Buckets,
    start_ms: i64,
    end_ms: i64,
) -> String {
    let v = "if(is_int, toFloat64(int_value), float_value)";
    // NaN is the one value not equal to itself; `-0.0` the one zero whose
    // reciprocal is negative.
    let plain = "min(is_int OR (float_value = float_value \
                 AND NOT (float_value = 0 AND 1 / float_value < 0)))";
    let (exact, value) = match buckets.field {
        BucketField::Count => (plain.to_owned(), "toFloat64(0)".to_owned()),
        BucketField::Sum => (
            format!("min(is_int) AND sum(abs({v})) < 4503599627370496"),
            "toFloat64(sum(int_value))".to_owned(),
        ),
        BucketField::Min => (plain.to_owned(), format!("min({v})")),
        BucketField::Max => (plain.to_owned(), format!("max({v})")),
        BucketField::First => (plain.to_owned(), format!("argMin({v}, ts)")),
        BucketField::Last => (plain.to_owned(), format!("argMax({v}, ts)")),
    };
    let step = buckets.step_ms;
    format!(
        "SELECT series, intDiv(ts, {step}) * {step} AS bucket, count(), \
         {exact} AND count() = uniqExact(ts), {value} \
         FROM {database}.points \
         WHERE series IN ({}) AND ts >= {start_ms} AND ts < {end_ms} \
         GROUP BY series, bucket FORMAT RowBinary",
        id_list(ids)
    )
}

/// One bucket as read: start, count, the field's value.
type Bucket = (i64, u64, f64);

/// A series' buckets, or `None` when one of them is inexact.
pub(super) type Answer = HashMap<u64, Option<Vec<Bucket>>>;

/// Decodes [`sql`]'s answer for `ids`, checking that every row belongs
/// (ClickHouse appends an error met mid-answer after the rows sent). A
/// failure says where the row that does not belong starts, and how.
pub(super) fn parse(
    answer: &[u8],
    ids: &[u64],
    step_ms: i64,
    (start_ms, end_ms): (i64, i64),
) -> Result<Answer, (usize, &'static str)> {
    let mut out: Answer = ids.iter().map(|&id| (id, Some(Vec::new()))).collect();
    let first_bucket = start_ms - start_ms.rem_euclid(step_ms);
    let mut r = RowReader::new(answer);
    while !r.is_done() {
        let at = r.position();
        let row = (|| Ok::<_, RowError>((r.u64()?, r.i64()?, r.u64()?, r.flag()?, r.f64()?)))();
        let Ok((series, start, count, exact, value)) = row else {
            return Err((at, "ends inside a row or holds a flag other than 0 or 1"));
        };
        let Some(entry) = out.get_mut(&series) else {
            return Err((at, "holds a series not asked for"));
        };
        if start % step_ms != 0 || start < first_bucket || start >= end_ms || count == 0 {
            return Err((at, "holds a bucket out of range"));
        }
        match entry {
            Some(buckets) if exact => buckets.push((start, count, value)),
            _ => *entry = None,
        }
    }
    for buckets in out.values_mut().flatten() {
        buckets.sort_unstable_by_key(|b| b.0);
        if buckets.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err((answer.len(), "holds a bucket twice"));
        }
    }
    Ok(out)
}

/// A bucket as the engine's rollup arithmetic reads it: the count, and
/// the value in every field, so whichever the query's function reads.
pub(super) fn aggregate(&(start_ms, count, value): &Bucket) -> RollupAgg {
    let point = DataPoint {
        timestamp_ms: start_ms,
        value: Value::Float(value),
    };
    RollupAgg {
        start_ms,
        count,
        sum: value,
        min: value,
        max: value,
        sum_sq: value,
        first: point,
        last: point,
    }
}
