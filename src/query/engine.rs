//! Query execution: plan → resolve names → for each sub-query, group the
//! matching series → run each group through the pipeline and the sweep →
//! [`QueryResponse`].
//!
//! Every name is resolved before any data is read, and the filters pick
//! the series of each sub-query; each series is read, downsampled, filled
//! and turned into rates by its sub-query's pipeline (`pipeline.rs`), and
//! the series of a group are aggregated across by a sweep (`sweep.rs`).
//! This file holds the order of the steps and OpenTSDB's grouping and tag
//! rules.
//!
//! **Limits** ([`QueryLimits`]): the buckets the downsamples would make
//! are checked from the plan, then times the matched series, before any
//! point is read; matched series, points read or produced and the
//! deadline are checked as the query runs.

use std::collections::{BTreeMap, HashSet};

use crate::model::SeriesKey;
use crate::model::{NameKind, SeriesMeta};
use crate::query::error::QueryError;
use crate::query::filter::TagFilter;
use crate::query::limits::{Budget, QueryLimits};
use crate::query::output::{self, GroupResult, GroupStats, QueryResponse, Summary};
use crate::query::pipeline::{Pipeline, Scratch};
use crate::query::request::{Plan, QueryRequest, SubPlan};
use crate::query::source::Source;
use crate::query::sweep;

/// Runs `req` against `source`. `now_ms` is "now" for relative times.
pub fn execute(
    source: &dyn Source,
    req: &QueryRequest,
    now_ms: i64,
    limits: &QueryLimits,
) -> Result<QueryResponse, QueryError> {
    let plan = req.plan(now_ms)?;
    limits.check_downsamples(&plan)?;
    let mut budget = Budget::new(limits);
    // Every name is resolved before any data is read: one unknown metric
    // fails the whole request, as in OpenTSDB.
    let mut matched = Vec::with_capacity(plan.subs.len());
    for sub in &plan.subs {
        let series = resolve(source, sub)?;
        budget.add_series(series.len())?;
        matched.push(series);
    }
    limits.check_query_buckets(&plan, &matched)?;
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
        sweeps: budget.sweeps,
        arrays: req.arrays,
        show_tsuids: req.show_tsuids,
        show_stats: req.show_stats,
        show_summary: req.show_summary,
    })
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
    let series = match narrowest(&sub.filters) {
        Some(f) => {
            let matches = |v: &str| f.matches(Some(v));
            source.series_selected(&sub.metric, &f.select(&matches))?
        }
        None => source.series_of_metric(&sub.metric)?,
    };
    let mut series = series.ok_or_else(|| no_such(NameKind::Metric, &sub.metric))?;
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
    // A name some matched series carries was written, so only the others
    // are asked about: on a store where each question is a statement
    // (ClickHouse, a few ms each) a query for one host asks none. Many
    // values (a dashboard variable set to all hosts) are looked up in
    // the set of the values carried, not by a pass over the series each.
    let listed: usize = sub.filters.iter().map(|f| f.literal_values().len()).sum();
    let values: HashSet<&str> = match listed > FEW_VALUES {
        true => series
            .iter()
            .flat_map(|s| s.key.tags().map(|(_, v)| v))
            .collect(),
        false => HashSet::new(),
    };
    let carried = |kind: NameKind, name: &str| match kind {
        NameKind::TagKey => series.iter().any(|s| s.key.tags().any(|(k, _)| k == name)),
        _ if listed > FEW_VALUES => values.contains(name),
        _ => series.iter().any(|s| s.key.tags().any(|(_, v)| v == name)),
    };
    let exists = |kind: NameKind, name: &str| -> Result<bool, QueryError> {
        Ok(carried(kind, name) || source.name_exists(kind, name)?)
    };
    for f in &sub.filters {
        if !exists(NameKind::TagKey, &f.tagk)? {
            return Err(no_such(NameKind::TagKey, &f.tagk));
        }
        for v in f.literal_values() {
            if !exists(NameKind::TagValue, v)? {
                return Err(no_such(NameKind::TagValue, v));
            }
        }
    }
    series.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok(series)
}

/// Literal values a query may list before [`resolve`] collects the values
/// its matched series carry into a set.
const FEW_VALUES: usize = 8;

/// The filter that lets a store skip the most series: one naming literal
/// values, else the one with the longest value prefix. Every filter
/// needs its tag key, so any of them narrows.
fn narrowest(filters: &[TagFilter]) -> Option<&TagFilter> {
    filters
        .iter()
        .max_by_key(|f| (!f.literal_values().is_empty(), f.value_prefix().len()))
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

/// Runs one sub-query: groups its series, aggregates each group and adds
/// the groups with data to `results`.
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
    let pipeline = Pipeline::new(plan, sub, budget.limits)?;
    let mut scratch = Scratch::default();
    for members in groups(sub, series) {
        let ids: Vec<u64> = members.iter().map(|&i| series[i].id).collect();
        let (points, present, raw_points) =
            sweep::aggregate(source, &pipeline, &ids, budget, &mut scratch)?;
        if present.is_empty() {
            continue;
        }
        let present: Vec<&SeriesMeta> = present.iter().map(|&i| &series[members[i]]).collect();
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
