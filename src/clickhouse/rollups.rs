//! Hour and day rollups on the ClickHouse store (`rollup_1h`,
//! `rollup_1d`): computing them ([`compute`]) and reading them back
//! exactly ([`super::ClickHouseSource`]'s `Source::rollups`).
//!
//! # Exact, whatever wrote what when
//!
//! A rollup read must equal what the raw points give, bit for bit, as on
//! the embedded store. Three things make it so:
//!
//! * **Computed in Rust, never in SQL.** A row is
//!   [`RollupAgg::of_points`] over the hour's points read back with
//!   `FINAL`, in time order, and a day is `storage::rollup::fold` of its hours in
//!   order: the very functions and order the embedded store uses (its
//!   writer folds a day from its sealed hours, its reader folds unsealed
//!   days the same way). ClickHouse's `sum()` of floats adds in an order
//!   that depends on parts, threads and release (18.16 and current
//!   releases differ), so an SQL sum can differ in the last bits; `min`,
//!   `max` and `count` would be exact, the sums would not.
//! * **Each row says which points it was computed from.** Its `version`
//!   is the wrapping sum of the versions of the points it counts (the
//!   hour's `FINAL` rows; a day's is the sum of its hours'). A point's
//!   version is unique to its write (`seq << 24 | i` of the node that
//!   spooled it) and a later write of a timestamp only wins in `FINAL`
//!   with a higher version, so adding or overwriting a point always
//!   changes the sum, and removing points (a range delete) also drops
//!   the rows of the touched hours and days.
//! * **A read checks every row against the points there now.** One
//!   statement per read (per 1024 series in a query's bulk read,
//!   `Source::scan_rollups`) groups the series' rows of points in the
//!   range by series and interval into `count()`, `uniqExact(ts)` and
//!   `sum(version)` (only the sort key and `version` columns are read, no
//!   values, and without `FINAL`, see [`held_sql`]); a stored row is used
//!   only where the interval has one row per timestamp (so its rows are
//!   the points `FINAL` keeps) and count and version sum match it. An
//!   interval whose duplicate rows no merge has collapsed yet is
//!   computed on the fly until one has. Every other interval that holds points (an
//!   hour still filling, one not computed yet, one a late point or
//!   another node's write changed since) is computed on the fly from its
//!   raw points, as the embedded reader does for unsealed hours. So a
//!   stale row, from a late point, a race between two nodes computing
//!   the same hour, or a compute that raced a delete, is never used: it
//!   only costs the on-the-fly read until the hour is computed again.
//!
//! The rows a read scans are not `FINAL`: every version of an
//! interval's row comes back and the one matching the points wins, so a
//! fresh row is used even before a merge collapsed it with a stale one
//! (and a stale one with a higher version that survived a merge only
//! makes that interval computed on the fly). Two nodes computing an
//! interval from the same points insert the very same row, which
//! `ReplacingMergeTree` collapses.
//!
//! A read is three statements however many series it covers: the check,
//! the stored rows, and the points of the intervals no stored row stands
//! for (each series' runs of such intervals, read with `FINAL`). What
//! moves is one check row and at most one rollup row per interval, plus
//! the points of those intervals only (typically the hours still
//! filling); ClickHouse still scans the `(series, ts, version)`
//! columns of the range to check, which is the price of exactness
//! without a coordinator between nodes.
//!
//! # Who computes what, when
//!
//! Each node's spool shipper marks the `(series, hour)` pairs it ships
//! and computes them once sealed, and again after a late point or a
//! range delete (see `spool`'s Rollups section). None of that is needed
//! for exactness, only for speed: an hour nobody computed, or computed
//! before its last point arrived, is computed on the fly at each read.
//!
//! Versions wrap: a row's `version` is a sum modulo 2^64, so an interval
//! may in principle keep, after a merge, a stale row whose sum happened
//! to be higher than the fresh one's (only after a range delete raced a
//! computation, or sums that wrapped); it is then computed on the fly at
//! every read until its points change again. Two point sets of one
//! interval with equal counts and equal version sums would be taken for
//! each other; with versions unique per write and only growing, that
//! takes a delete followed by rewrites summing to exactly what went.
//!
//! # What "exact" means for days
//!
//! A day's sums are the sums of its hours' sums, in hour order, as the
//! embedded store folds them, not one running sum over the day's points:
//! for float values the two can differ in the last bits (on either
//! store, a `1d-sum` read from rollups can differ from the same query
//! read from raw points). The answers here equal the embedded store's,
//! which is what `tests/it/clickhouse_source.rs` holds them to.
//!
//! # One difference
//!
//! One thing differs from the embedded store: it keeps serving hour and
//! day rollups of hours whose raw points retention already dropped
//! (rollups may be kept longer). Here a row with no points behind it
//! fails the check, so such intervals answer nothing, exactly as the raw
//! points do.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{DataPoint, RollupAgg, RollupResolution, Value, DAY_MS, HOUR_MS};
use crate::storage::rollup;

use super::client::{ClickHouseError, Client, Compression};
use super::rowbinary::{PutRow, RowError, RowReader};
use super::schema::Identifier;

/// The width of an interval of `resolution`.
pub fn width(resolution: RollupResolution) -> i64 {
    match resolution {
        RollupResolution::Hour => HOUR_MS,
        RollupResolution::Day => DAY_MS,
    }
}

/// The table holding the rows of `resolution`.
pub fn table(resolution: RollupResolution) -> &'static str {
    match resolution {
        RollupResolution::Hour => "rollup_1h",
        RollupResolution::Day => "rollup_1d",
    }
}

/// The interval starts of `resolution` in `[start_ms, end_ms)`, as the
/// half-open time range `[from, to)` their intervals cover; `None` when
/// there are none (times before 0 hold nothing).
pub fn interval_range(
    resolution: RollupResolution,
    start_ms: i64,
    end_ms: i64,
) -> Option<(i64, i64)> {
    let w = width(resolution);
    let up = |t: i64| t.max(0).saturating_add(w - 1) / w * w;
    let from = up(start_ms);
    let to = up(end_ms);
    (from < to && from < end_ms).then_some((from, to))
}

/// What the rows of points of one interval are now: how many, at how
/// many timestamps, and the wrapping sum of their versions. Where every
/// timestamp has one row, the rows are the points `FINAL` would give, so
/// `count` and `versions` are theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub start_ms: i64,
    pub count: u64,
    pub timestamps: u64,
    pub versions: u64,
}

impl Held {
    /// Whether no timestamp of the interval has two rows (a replay or a
    /// rewrite no merge has collapsed yet).
    pub fn collapsed(&self) -> bool {
        self.count == self.timestamps
    }
}

/// The statement giving [`Held`] per series (of the list `ids`) and
/// interval in `[from, to)`, by series and start. Without `FINAL`, which
/// on 18.16 costs about 2 ms per day partition however few rows it
/// keeps (30 days of one series at 60 s, median of 20: 60 ms with it,
/// 9.5 ms without); `uniqExact(ts)` tells where rows are not yet
/// collapsed, which a grouping of the newest row per timestamp would
/// settle too, at 15 ms.
pub fn held_sql(database: &Identifier, ids: &str, w: i64, from: i64, to: i64) -> String {
    format!(
        "SELECT series, toInt64(intDiv(ts, {w}) * {w}) AS s, toUInt64(count()), \
         toUInt64(uniqExact(ts)), toUInt64(sum(version)) FROM {database}.points \
         WHERE series IN ({ids}) AND ts >= {from} AND ts < {to} \
         GROUP BY series, s ORDER BY series, s FORMAT RowBinary"
    )
}

/// [`held_sql`]'s answer, by series.
pub fn parse_held(answer: &[u8]) -> Result<BTreeMap<u64, Vec<Held>>, RowError> {
    let mut r = RowReader::new(answer);
    let mut out: BTreeMap<u64, Vec<Held>> = BTreeMap::new();
    while !r.is_done() {
        let series = r.u64()?;
        out.entry(series).or_default().push(Held {
            start_ms: r.i64()?,
            count: r.u64()?,
            timestamps: r.u64()?,
            versions: r.u64()?,
        });
    }
    Ok(out)
}

const COLUMNS: &str = "series, start, count, sum, min, max, sum_sq, \
first_ts, first_is_int, first_int, first_float, last_ts, last_is_int, last_int, last_float, version";

/// The statement reading every stored row (all versions, no `FINAL`) of
/// the series of the list `ids` whose interval starts in `[from, to)`.
pub fn stored_sql(
    database: &Identifier,
    resolution: RollupResolution,
    ids: &str,
    from: i64,
    to: i64,
) -> String {
    format!(
        "SELECT {COLUMNS} FROM {database}.{} WHERE series IN ({ids}) AND start >= {from} \
         AND start < {to} FORMAT RowBinary",
        table(resolution)
    )
}

/// Runs of consecutive interval starts (of width `w`) as time ranges
/// `[from, to)`; more than `most` runs become one range over them all.
pub fn spans(starts: &[i64], w: i64, most: usize) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &s in starts {
        match out.last_mut() {
            Some((_, end)) if *end == s => *end = s + w,
            _ => out.push((s, s + w)),
        }
    }
    if out.len() > most {
        let (first, last) = (out[0].0, out[out.len() - 1].1);
        out = vec![(first, last)];
    }
    out
}

/// Series, each with time ranges `[from, to)`.
pub type Ranges = Vec<(u64, Vec<(i64, i64)>)>;

/// The statement reading the `FINAL` points of each series in its
/// ranges `[from, to)`, by series and time.
pub fn points_sql(database: &Identifier, ranges: &[(u64, Vec<(i64, i64)>)]) -> String {
    format!(
        "SELECT series, ts, is_int, int_value, float_value, version FROM {database}.points FINAL \
         WHERE {} ORDER BY series, ts FORMAT RowBinary",
        in_ranges(ranges)
    )
}

/// The statement reading every row of points of each series in its
/// ranges `[from, to)`, in no order: without `FINAL`, several rows may
/// stand for one point, of which the reader keeps the newest (see
/// `super::source`).
pub fn rows_sql(database: &Identifier, ranges: &[(u64, Vec<(i64, i64)>)]) -> String {
    format!(
        "SELECT series, ts, is_int, int_value, float_value, version FROM {database}.points \
         WHERE {} FORMAT RowBinary",
        in_ranges(ranges)
    )
}

/// The condition selecting each series in its ranges.
fn in_ranges(ranges: &[(u64, Vec<(i64, i64)>)]) -> String {
    let conditions: Vec<String> = ranges
        .iter()
        .map(|(series, spans)| {
            let spans: Vec<String> = spans
                .iter()
                .map(|(a, b)| format!("(ts >= {a} AND ts < {b})"))
                .collect();
            format!("(series = {series} AND ({}))", spans.join(" OR "))
        })
        .collect();
    conditions.join(" OR ")
}

fn put_point(out: &mut Vec<u8>, p: DataPoint) {
    out.put_i64(p.timestamp_ms);
    match p.value {
        Value::Int(i) => {
            out.put_u8(1);
            out.put_i64(i);
            out.put_f64(0.0);
        }
        Value::Float(f) => {
            out.put_u8(0);
            out.put_i64(0);
            out.put_f64(f);
        }
    }
}

/// A rollup row: the series, the aggregate and its version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub series: u64,
    pub agg: RollupAgg,
    pub version: u64,
}

pub fn parse_rows(answer: &[u8]) -> Result<Vec<Row>, RowError> {
    let mut r = RowReader::new(answer);
    let mut out = Vec::new();
    while !r.is_done() {
        let series = r.u64()?;
        let start_ms = r.i64()?;
        let count = r.u64()?;
        let (sum, min, max, sum_sq) = (r.f64()?, r.f64()?, r.f64()?, r.f64()?);
        let first = r.point()?;
        let last = r.point()?;
        let version = r.u64()?;
        out.push(Row {
            series,
            agg: RollupAgg {
                start_ms,
                count,
                sum,
                min,
                max,
                sum_sq,
                first,
                last,
            },
            version,
        });
    }
    Ok(out)
}

fn encode_rows(rows: &[Row]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 121);
    for row in rows {
        let a = &row.agg;
        out.put_u64(row.series);
        out.put_i64(a.start_ms);
        out.put_u64(a.count);
        for f in [a.sum, a.min, a.max, a.sum_sq] {
            out.put_f64(f);
        }
        put_point(&mut out, a.first);
        put_point(&mut out, a.last);
        out.put_u64(row.version);
    }
    out
}

/// The stored rows `rows` that match what the points hold now (`held`),
/// by interval start; at most one per interval, none for an interval
/// whose rows are not collapsed (its points' versions are not known).
pub fn matching(held: &[Held], rows: &[Row]) -> BTreeMap<i64, RollupAgg> {
    let wanted: BTreeMap<i64, (u64, u64)> = held
        .iter()
        .filter(|h| h.collapsed())
        .map(|h| (h.start_ms, (h.count, h.versions)))
        .collect();
    rows.iter()
        .filter(|r| wanted.get(&r.agg.start_ms) == Some(&(r.agg.count, r.version)))
        .map(|r| (r.agg.start_ms, r.agg))
        .collect()
}

/// Points with their versions, sorted by time.
pub type Versioned = [(DataPoint, u64)];

/// The hour rows of `points` (sorted by time), with their versions.
fn hours_of(series: u64, points: &Versioned) -> Vec<Row> {
    let mut out = Vec::new();
    let mut rest = points;
    while let Some(&(first, _)) = rest.first() {
        let hour = first.timestamp_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let n = rest
            .iter()
            .position(|(p, _)| p.timestamp_ms >= hour + HOUR_MS)
            .unwrap_or(rest.len());
        let (group, tail) = rest.split_at(n);
        let plain: Vec<DataPoint> = group.iter().map(|(p, _)| *p).collect();
        if let Some(agg) = RollupAgg::of_points(hour, &plain) {
            let version = group.iter().fold(0u64, |s, (_, v)| s.wrapping_add(*v));
            out.push(Row {
                series,
                agg,
                version,
            });
        }
        rest = tail;
    }
    out
}

/// The day rows folded from `hours` (hour rows of one series, by start),
/// each day from its hours in order, as the embedded store folds them.
fn days_of(hours: &[Row]) -> Vec<Row> {
    let mut out = Vec::new();
    let mut rest = hours;
    while let Some(first) = rest.first() {
        let day = first.agg.start_ms.div_euclid(DAY_MS) * DAY_MS;
        let n = rest
            .iter()
            .position(|r| r.agg.start_ms >= day + DAY_MS)
            .unwrap_or(rest.len());
        let (group, tail) = rest.split_at(n);
        if let Some(agg) = rollup::fold(day, group.iter().map(|r| r.agg)) {
            let version = group.iter().fold(0u64, |s, r| s.wrapping_add(r.version));
            out.push(Row {
                series: first.series,
                agg,
                version,
            });
        }
        rest = tail;
    }
    out
}

/// The aggregates of `resolution` of `points` (one series, sorted by
/// time), computed as [`compute`] stores them.
pub fn aggregates(resolution: RollupResolution, points: &[DataPoint]) -> Vec<RollupAgg> {
    let versioned: Vec<(DataPoint, u64)> = points.iter().map(|p| (*p, 0)).collect();
    let hours = hours_of(0, &versioned);
    let rows = match resolution {
        RollupResolution::Hour => hours,
        RollupResolution::Day => days_of(&hours),
    };
    rows.into_iter().map(|r| r.agg).collect()
}

/// Series-days a compute statement reads at most: its answer is held
/// whole (32 days of a series sending every second is 113 MB of rows).
const DAYS_PER_STATEMENT: usize = 32;

/// What [`compute`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Computed {
    pub hour_rows: u64,
    pub day_rows: u64,
}

/// Computes and inserts the rollups of every UTC day that holds one of
/// the `(series, hour start)` pairs: each hour row of those days and the
/// day row, from the points read back with `FINAL`. Whole days, because
/// a day row folds all its hours; an hour of the day that did not change
/// gets the very row it had, which `ReplacingMergeTree` collapses. An
/// hour or day left with no points gets no row (a stale one fails every
/// read's check).
pub async fn compute(
    client: &Client,
    database: &Identifier,
    pairs: &[(u64, i64)],
) -> Result<Computed, ClickHouseError> {
    let days: BTreeSet<(u64, i64)> = pairs
        .iter()
        .map(|&(series, hour)| (series, hour.div_euclid(DAY_MS) * DAY_MS))
        .collect();
    let days: Vec<(u64, i64)> = days.into_iter().collect();
    let mut done = Computed::default();
    for chunk in days.chunks(DAYS_PER_STATEMENT) {
        let mut by_series: BTreeMap<u64, BTreeSet<i64>> = BTreeMap::new();
        for &(series, day) in chunk {
            by_series.entry(series).or_default().insert(day);
        }
        let ranges: Vec<(u64, Vec<(i64, i64)>)> = by_series
            .into_iter()
            .map(|(series, days)| (series, runs(&days)))
            .collect();
        let answer = client.execute(&points_sql(database, &ranges)).await?;
        let points = parse_points(&answer).map_err(|e| ClickHouseError::Answer(e.to_string()))?;
        if !fits(&ranges, &points) {
            return Err(ClickHouseError::Answer(
                "points read back for rollups are out of order or out of range".into(),
            ));
        }
        let (mut hour_rows, mut day_rows) = (Vec::new(), Vec::new());
        for run in points.chunk_by(|a, b| a.0 == b.0) {
            let versioned: Vec<(DataPoint, u64)> = run.iter().map(|&(_, p, v)| (p, v)).collect();
            let hours = hours_of(run[0].0, &versioned);
            day_rows.extend(days_of(&hours));
            hour_rows.extend(hours);
        }
        for (resolution, rows) in [
            (RollupResolution::Hour, &hour_rows),
            (RollupResolution::Day, &day_rows),
        ] {
            if rows.is_empty() {
                continue;
            }
            let statement = format!(
                "INSERT INTO {database}.{} ({COLUMNS}) FORMAT RowBinary",
                table(resolution)
            );
            client
                .insert(&statement, encode_rows(rows), Compression::None)
                .await?;
        }
        done.hour_rows += hour_rows.len() as u64;
        done.day_rows += day_rows.len() as u64;
    }
    Ok(done)
}

/// Days (starts) as runs of consecutive days, `[from, to)`.
fn runs(days: &BTreeSet<i64>) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &d in days {
        match out.last_mut() {
            Some((_, end)) if *end == d => *end = d + DAY_MS,
            _ => out.push((d, d + DAY_MS)),
        }
    }
    out
}

/// Whether `points` (series, point, version) are what [`points_sql`] of
/// `ranges` can answer: in order, one per timestamp, each in a range of
/// its series. ClickHouse appends an error it meets mid-answer to the
/// rows already sent, which must not pass for points.
pub fn fits(ranges: &[(u64, Vec<(i64, i64)>)], points: &[(u64, DataPoint, u64)]) -> bool {
    let in_order = points
        .windows(2)
        .all(|w| (w[0].0, w[0].1.timestamp_ms) < (w[1].0, w[1].1.timestamp_ms));
    in_order && within(ranges, points)
}

/// Whether every row of `points` (series, point, version) is in a range
/// of its series, as [`rows_sql`] of `ranges` answers (in any order).
pub fn within(ranges: &[(u64, Vec<(i64, i64)>)], points: &[(u64, DataPoint, u64)]) -> bool {
    let spans: std::collections::HashMap<u64, &[(i64, i64)]> =
        ranges.iter().map(|(s, r)| (*s, r.as_slice())).collect();
    points.iter().all(|&(series, p, _)| {
        spans
            .get(&series)
            .is_some_and(|r| r.iter().any(|(a, b)| (*a..*b).contains(&p.timestamp_ms)))
    })
}

/// [`points_sql`]'s and [`rows_sql`]'s answer: series, point, version.
pub fn parse_points(answer: &[u8]) -> Result<Vec<(u64, DataPoint, u64)>, RowError> {
    let mut r = RowReader::new(answer);
    let mut out = Vec::new();
    while !r.is_done() {
        let series = r.u64()?;
        let point = r.point()?;
        out.push((series, point, r.u64()?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ts: i64, v: f64) -> DataPoint {
        DataPoint {
            timestamp_ms: ts,
            value: Value::Float(v),
        }
    }

    #[test]
    fn intervals_round_up_to_whole_ones() {
        let h = RollupResolution::Hour;
        assert_eq!(interval_range(h, 0, HOUR_MS), Some((0, HOUR_MS)));
        assert_eq!(interval_range(h, 1, HOUR_MS), None);
        assert_eq!(
            interval_range(h, 1, HOUR_MS + 1),
            Some((HOUR_MS, 2 * HOUR_MS))
        );
        assert_eq!(interval_range(h, -5, 10), Some((0, HOUR_MS)));
        assert_eq!(interval_range(h, 10, 10), None);
    }

    #[test]
    fn spans_join_runs_and_collapse_past_the_limit() {
        assert_eq!(
            spans(&[0, 10, 20, 40, 70], 10, 4),
            [(0, 30), (40, 50), (70, 80)]
        );
        assert_eq!(spans(&[0, 10, 20, 40, 70], 10, 2), [(0, 80)]);
        assert_eq!(spans(&[], 10, 2), []);
    }

    #[test]
    fn rows_round_trip_and_days_fold_their_hours_in_order() {
        let pts: Vec<(DataPoint, u64)> = (0..100)
            .map(|i| (p(i * 1_000_000, 0.1 * i as f64), i as u64 + 7))
            .collect();
        let hours = hours_of(9, &pts);
        assert_eq!(hours.len(), 28);
        let days = days_of(&hours);
        assert_eq!(days.len(), 2);
        assert_eq!(
            days[0].agg,
            rollup::fold(0, hours.iter().take(24).map(|r| r.agg)).expect("hours")
        );
        let total: u64 = pts.iter().map(|(_, v)| v).sum();
        assert_eq!(days[0].version.wrapping_add(days[1].version), total);
        let bytes = encode_rows(&hours);
        assert_eq!(parse_rows(&bytes).expect("rows"), hours);
        let held: Vec<Held> = hours
            .iter()
            .map(|r| Held {
                start_ms: r.agg.start_ms,
                count: r.agg.count,
                timestamps: r.agg.count,
                versions: r.version,
            })
            .collect();
        assert_eq!(matching(&held, &hours).len(), 28);
        let mut changed = held.clone();
        changed[3].versions += 1;
        assert_eq!(matching(&changed, &hours).len(), 27);
        // A replayed point: count and versions no longer the points'.
        changed[5].count += 1;
        changed[5].versions += 9;
        assert_eq!(matching(&changed, &hours).len(), 26);
        let mut replayed = held.clone();
        replayed[5].timestamps -= 1;
        assert_eq!(matching(&replayed, &hours).len(), 27);
        let plain: Vec<DataPoint> = pts.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            aggregates(RollupResolution::Day, &plain),
            days.iter().map(|r| r.agg).collect::<Vec<_>>()
        );
    }
}
