//! Query execution: plan → resolve names → read through [`Source`] →
//! filter and group series → downsample → rate → aggregate across series →
//! [`QueryResponse`].
//!
//! **Reading.** Each sub-query reads whole hours around the buckets it
//! needs (`downsample::read_range`), as OpenTSDB's hour-row scans do, so
//! points just outside `[start, end]` feed interpolation and rates; the
//! output keeps only timestamps in `[start, end]`. When the downsampler can
//! be computed from pre-aggregates and every bucket boundary is a whole
//! hour (or a whole UTC day), the engine reads `Source::rollups` instead of
//! raw points, falling back to points when the store has none; both paths
//! give the same buckets.
//!
//! **Aggregating** (OpenTSDB's `AggregationIterator`). The output
//! timestamps are the union of the group's timestamps. At each one a series
//! takes part with its own value, or, between two of its points, with the
//! aggregator's interpolation (linear, zero, previous; `mimmin`/`mimmax`
//! leave it out). Before its first point and after its last it is left out,
//! even for `zimsum` and `count` (the "ghost lines" of #977). For rates a
//! series between two rates contributes its previous rate. The sweep visits
//! every series once per output timestamp, with no allocation per point:
//! O(timestamps × series), as in OpenTSDB, which is why dashboards
//! downsample (1000 series of 1440 one-minute buckets take tens of ms).
//!
//! **Integers.** OpenTSDB aggregates in truncating integer maths when every
//! value involved (each series' current and next point, a not-yet-started
//! series' first point) is an integer. rtsd computes in floating point and
//! reports an integer exactly in those cases where the result is a whole
//! number, so `sum` of integers stays `42` while `avg` of 1 and 2 is `1.5`.
//! Downsampled values and rates are always doubles (`30.0`).
//!
//! **Limits** ([`QueryLimits`]) are checked as the query runs: matched
//! series, points read or produced, and a deadline polled between series
//! and every few thousand output timestamps.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::model::{DataPoint, SeriesKey, Value};
use crate::query::aggregator::{Aggregator, Interpolation};
use crate::query::downsample::{self, downsample_points, downsample_rollups, Doubles, Grid};
use crate::query::error::QueryError;
use crate::query::output::{self, GroupResult, GroupStats, QueryResponse, Summary};
use crate::query::rate::{rates, RatePoint};
use crate::query::request::{Plan, QueryRequest, SubPlan};
use crate::query::source::{NameKind, RollupResolution, SeriesMeta, Source};
use crate::query::time;

/// Bounds on one query's work.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryLimits {
    /// Series matched by the filters, over all sub-queries.
    pub max_series: usize,
    /// Points read (raw points and rollup intervals) plus filled buckets.
    pub max_points: usize,
    /// Give up (503) once this instant has passed.
    pub deadline: Option<Instant>,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_series: 100_000,
            max_points: 50_000_000,
            deadline: None,
        }
    }
}

/// Runs `req` against `source`. `now_ms` is "now" for relative times.
pub fn execute(
    source: &dyn Source,
    req: &QueryRequest,
    now_ms: i64,
    limits: &QueryLimits,
) -> Result<QueryResponse, QueryError> {
    let plan = req.plan(now_ms)?;
    let mut budget = Budget {
        limits,
        series: 0,
        points: 0,
    };
    // Every name is resolved before any data is read: one unknown metric
    // fails the whole request, as in OpenTSDB.
    let mut matched = Vec::with_capacity(plan.subs.len());
    for sub in &plan.subs {
        let series = resolve(source, sub)?;
        budget.add_series(series.len())?;
        matched.push(series);
    }
    let queries = req.queries.as_deref().unwrap_or_default();
    let echoes = if req.show_query {
        plan.subs
            .iter()
            .zip(queries)
            .map(|(sub, q)| output::query_echo(q, &sub.filters, sub.index))
            .collect()
    } else {
        Vec::new()
    };
    let mut results = Vec::new();
    for (sub, series) in plan.subs.iter().zip(&matched) {
        run_sub(
            source,
            &plan,
            sub,
            series,
            req.ms_resolution,
            &mut budget,
            &mut results,
        )?;
    }
    let summary = Summary {
        queries: plan.subs.len(),
        series: results.iter().map(|r| r.stats.series).sum(),
        raw_points: results.iter().map(|r| r.stats.raw_points).sum(),
        emitted: results.iter().map(|r| r.dps.len()).sum(),
    };
    Ok(QueryResponse {
        results,
        echoes,
        summary,
        arrays: req.arrays,
        show_tsuids: req.show_tsuids,
        show_stats: req.show_stats,
        show_summary: req.show_summary,
    })
}

struct Budget<'a> {
    limits: &'a QueryLimits,
    series: usize,
    points: usize,
}

impl Budget<'_> {
    fn add_series(&mut self, n: usize) -> Result<(), QueryError> {
        self.series = self.series.saturating_add(n);
        if self.series > self.limits.max_series {
            return Err(QueryError::TooManySeries {
                limit: self.limits.max_series,
            });
        }
        Ok(())
    }

    fn add_points(&mut self, n: u64) -> Result<(), QueryError> {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.points = self.points.saturating_add(n);
        if self.points > self.limits.max_points {
            return Err(QueryError::TooManyPoints {
                limit: self.limits.max_points,
            });
        }
        Ok(())
    }
}

fn check_deadline(deadline: Option<Instant>) -> Result<(), QueryError> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(QueryError::DeadlineExceeded),
        _ => Ok(()),
    }
}

/// The series of a sub-query that pass its filters, in key order, after
/// checking that every name it mentions exists.
fn resolve(source: &dyn Source, sub: &SubPlan) -> Result<Vec<SeriesMeta>, QueryError> {
    let no_such = |kind, name: &str| QueryError::NoSuchName {
        kind,
        name: name.to_string(),
    };
    if !sub.tsuids.is_empty() {
        return resolve_tsuids(source, &sub.tsuids);
    }
    let mut series = source
        .series_of_metric(&sub.metric)?
        .ok_or_else(|| no_such(NameKind::Metric, &sub.metric))?;
    for f in &sub.filters {
        if !source.name_exists(NameKind::TagKey, &f.tagk)? {
            return Err(no_such(NameKind::TagKey, &f.tagk));
        }
        for v in f.literal_values() {
            if !source.name_exists(NameKind::TagValue, v)? {
                return Err(no_such(NameKind::TagValue, v));
            }
        }
    }
    let filter_keys: Vec<&str> = {
        let mut k: Vec<&str> = sub.filters.iter().map(|f| f.tagk.as_str()).collect();
        k.sort_unstable();
        k.dedup();
        k
    };
    series.retain(|s| {
        let tag = |k: &str| s.key.tags().find(|(tk, _)| *tk == k).map(|(_, v)| v);
        sub.filters.iter().all(|f| f.matches(tag(&f.tagk)))
            && (!sub.explicit_tags || s.key.tags().map(|(k, _)| k).eq(filter_keys.iter().copied()))
    });
    series.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok(series)
}

/// The series of a TSUID sub-query: every id must exist and all must share
/// one metric, as in OpenTSDB; filters do not apply.
fn resolve_tsuids(source: &dyn Source, ids: &[u64]) -> Result<Vec<SeriesMeta>, QueryError> {
    let mut series = source.series_by_ids(ids)?;
    if let Some(missing) = ids.iter().find(|id| !series.iter().any(|s| s.id == **id)) {
        return Err(QueryError::bad(format!("No such TSUID: {missing:016X}")));
    }
    if let Some(other) = series
        .iter()
        .find(|s| s.key.metric() != series[0].key.metric())
    {
        return Err(QueryError::bad(format!(
            "One or more TSUIDs did not share the same metric [{}] [{}]",
            series[0].key.metric(),
            other.key.metric()
        )));
    }
    series.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    series.dedup_by_key(|s| s.id);
    Ok(series)
}

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

/// What a sub-query does to each series before aggregation.
struct Pipeline<'a> {
    sub: &'a SubPlan,
    read: (i64, i64),
    grid: Option<Grid>,
    rollups: Option<RollupResolution>,
}

impl Pipeline<'_> {
    fn is_raw(&self) -> bool {
        self.grid.is_none() && self.sub.rate.is_none()
    }

    /// Reads and transforms one series; `None` when it has no data in the
    /// read range (such series are not part of any group, as in OpenTSDB).
    fn load(
        &self,
        source: &dyn Source,
        id: u64,
        budget: &mut Budget,
        buf: &mut Vec<f64>,
    ) -> Result<Option<(Series, usize)>, QueryError> {
        let (read_start, read_end) = self.read;
        if let (Some(res), Some(grid), Some(spec)) =
            (self.rollups, &self.grid, &self.sub.downsample)
        {
            if let Some(aggs) = source.rollups(id, res, read_start, read_end)? {
                budget.add_points(aggs.len() as u64)?;
                if aggs.is_empty() {
                    return Ok(None);
                }
                let buckets = spec
                    .function
                    .rollup_function()
                    .map_or_else(Doubles::default, |f| downsample_rollups(&aggs, grid, f));
                return Ok(Some((
                    Series::Computed(self.finish(buckets, budget)?),
                    aggs.len(),
                )));
            }
        }
        let points = source.points(id, read_start, read_end - 1)?;
        budget.add_points(points.len() as u64)?;
        if points.is_empty() {
            return Ok(None);
        }
        let read = points.len();
        let series = match (&self.grid, &self.sub.downsample, &self.sub.rate) {
            (Some(grid), Some(spec), _) => {
                let buckets = downsample_points(&points, grid, spec.function, buf);
                Series::Computed(self.finish(buckets, budget)?)
            }
            (_, _, Some(opts)) => {
                let input = (0..points.len()).map(|i| RatePoint {
                    ts: points.ts(i),
                    value: points.val(i),
                    int: points.int(i),
                });
                Series::Computed(rates(input, opts))
            }
            _ => Series::Raw(points),
        };
        Ok(Some((series, read)))
    }

    /// Fill and rate after downsampling.
    fn finish(&self, buckets: Doubles, budget: &mut Budget) -> Result<Doubles, QueryError> {
        let (Some(grid), Some(spec)) = (&self.grid, &self.sub.downsample) else {
            return Ok(buckets);
        };
        if spec.fill != downsample::FillPolicy::None {
            budget.add_points(grid.fill_len(self.read.0, self.read.1))?;
        }
        let filled = downsample::fill(buckets, grid, spec.fill, self.read);
        Ok(match &self.sub.rate {
            Some(opts) => {
                let input = filled
                    .ts
                    .iter()
                    .zip(&filled.vals)
                    .map(|(&ts, &value)| RatePoint {
                        ts,
                        value,
                        int: None,
                    });
                rates(input, opts)
            }
            None => filled,
        })
    }
}

enum Series {
    Raw(Vec<DataPoint>),
    Computed(Doubles),
}

fn run_sub(
    source: &dyn Source,
    plan: &Plan,
    sub: &SubPlan,
    series: &[SeriesMeta],
    ms_resolution: bool,
    budget: &mut Budget,
    results: &mut Vec<GroupResult>,
) -> Result<(), QueryError> {
    let query = (plan.start_ms, plan.end_ms);
    let read = downsample::read_range(sub.downsample.as_ref(), plan.start_ms, plan.end_ms, plan.tz);
    let grid = sub
        .downsample
        .as_ref()
        .map(|spec| Grid::new(spec, plan.tz, query, read, budget.limits.max_points))
        .transpose()?;
    let rollups = match (&grid, &sub.downsample) {
        (Some(grid), Some(spec))
            if sub.allow_rollups && spec.function.rollup_function().is_some() =>
        {
            if grid.aligned_to(time::day_ms()) {
                Some(RollupResolution::Day)
            } else if grid.aligned_to(time::hour_ms()) {
                Some(RollupResolution::Hour)
            } else {
                None
            }
        }
        _ => None,
    };
    let pipeline = Pipeline {
        sub,
        read,
        grid,
        rollups,
    };
    for members in groups(sub, series) {
        let mut raw = Vec::new();
        let mut computed = Vec::new();
        let mut present: Vec<&SeriesMeta> = Vec::with_capacity(members.len());
        let mut raw_points = 0;
        let mut buf = Vec::new();
        for &i in &members {
            check_deadline(budget.limits.deadline)?;
            let Some((data, read_count)) = pipeline.load(source, series[i].id, budget, &mut buf)?
            else {
                continue;
            };
            raw_points += read_count;
            present.push(&series[i]);
            match data {
                Series::Raw(p) => raw.push(p),
                Series::Computed(c) => computed.push(c),
            }
        }
        if present.is_empty() {
            continue;
        }
        let sweep = Sweep {
            aggregator: sub.aggregator,
            rates: sub.rate.is_some(),
            deadline: budget.limits.deadline,
        };
        let points = if pipeline.is_raw() {
            sweep.run(&raw)?
        } else {
            sweep.run(&computed)?
        };
        let dps = output::select(points, query, ms_resolution);
        let keys: Vec<&SeriesKey> = present.iter().map(|s| &s.key).collect();
        let (tags, aggregate_tags) = compute_tags(&keys);
        let mut tsuids: Vec<u64> = present.iter().map(|s| s.id).collect();
        tsuids.sort_unstable();
        results.push(GroupResult {
            metric: present[0].key.metric().to_string(),
            tags,
            aggregate_tags,
            query_index: sub.index,
            tsuids,
            stats: GroupStats {
                series: present.len(),
                raw_points,
            },
            dps,
        });
    }
    Ok(())
}

/// Series indexes per group, groups in order of their group-by values;
/// with `none` every series is its own group.
fn groups(sub: &SubPlan, series: &[SeriesMeta]) -> Vec<Vec<usize>> {
    if sub.aggregator.is_none() {
        return (0..series.len()).map(|i| vec![i]).collect();
    }
    let mut group_keys: Vec<&str> = sub
        .filters
        .iter()
        .filter(|f| f.group_by)
        .map(|f| f.tagk.as_str())
        .collect();
    group_keys.sort_unstable();
    group_keys.dedup();
    let mut groups: BTreeMap<Vec<&str>, Vec<usize>> = BTreeMap::new();
    for (i, s) in series.iter().enumerate() {
        let values: Vec<&str> = group_keys
            .iter()
            .map(|k| s.key.tags().find(|(tk, _)| tk == k).map_or("", |(_, v)| v))
            .collect();
        groups.entry(values).or_default().push(i);
    }
    groups.into_values().collect()
}

/// OpenTSDB's `SpanGroup.computeTags`: a tag whose value differs between
/// two series becomes an aggregate tag; one that only some series carry
/// still counts as common.
fn compute_tags(keys: &[&SeriesKey]) -> (Vec<(String, String)>, Vec<String>) {
    let mut seen: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    for key in keys {
        for (k, v) in key.tags() {
            match seen.get(k) {
                None => {
                    seen.insert(k, Some(v));
                }
                Some(Some(prev)) if *prev != v => {
                    seen.insert(k, None);
                }
                _ => {}
            }
        }
    }
    let mut tags = Vec::new();
    let mut aggregated = Vec::new();
    for (k, v) in seen {
        match v {
            Some(v) => tags.push((k.to_string(), v.to_string())),
            None => aggregated.push(k.to_string()),
        }
    }
    (tags, aggregated)
}

/// The cross-series aggregation of one group.
struct Sweep {
    aggregator: Aggregator,
    /// Inputs are rates: no interpolation, previous rate instead.
    rates: bool,
    deadline: Option<Instant>,
}

/// Largest magnitude at which every integer is an exact double.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

impl Sweep {
    fn run<C: Column>(&self, cols: &[C]) -> Result<Vec<(i64, Value)>, QueryError> {
        let mut pos = vec![0usize; cols.len()];
        let mut buf: Vec<f64> = Vec::with_capacity(cols.len());
        let mut out = Vec::new();
        let interpolation = self.aggregator.interpolation();
        // The output timestamps: each step's is the earliest unread point.
        let mut next = cols.iter().filter(|c| c.len() > 0).map(|c| c.ts(0)).min();
        while let Some(t) = next {
            if out.len() % 4096 == 4095 {
                check_deadline(self.deadline)?;
            }
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
