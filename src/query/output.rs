//! The `/api/query` response (OpenTSDB's `HttpJsonSerializer.formatQueryAsyncV1`)
//! and its JSON text, written straight into the caller's buffer so a large
//! answer is built once.
//!
//! One object per result group, in sub-query order and then group order:
//!
//! ```text
//! {"metric":..,"tags":{..},"aggregateTags":[..],
//!  ["query":{.. "index":i ..}]   showQuery; older Grafana matches on index
//!  ["tsuids":[..]]               showTSUIDs
//!  ["annotations":[..]]          the group's notes, if any, unless noAnnotations
//!  ["globalAnnotations":[..]]    globalAnnotations, if there are any
//!  "dps":{"<ts>":v,..} | [[ts,v],..]   the latter with `arrays`
//!  ["stats":{..}]}               showStats
//! [,{"statsSummary":{..}}]       showSummary
//! ```
//!
//! Values are Java-formatted (`42`, `30.0`, `1.0E7`) via `crate::java::double_text`;
//! a missing value (NaN from a fill, or a non-finite result) is `null`,
//! never `"NaN"`. Timestamps are seconds unless `ms` was asked for; several
//! points within one second then merge, the last one winning, so keys never
//! repeat (OpenTSDB 2.4 repeats them, #2166).
//!
//! rtsd's TSUID of a series is the upper-case hex of its 8-byte big-endian
//! id. Group tag maps and aggregate tags are sorted by key (OpenTSDB orders
//! them by UID). The stats rtsd reports are counts, named after OpenTSDB's
//! where one exists (`emittedDPs`).
//!
//! Annotations are not the engine's business: the HTTP layer reads them
//! after the query ran and hands them over already rendered
//! ([`RenderedAnnotations`]).

use std::fmt::Write as _;
use std::time::Instant;

use crate::java::double_text;
use crate::model::Value;
use crate::query::deadline::Ticker;
use crate::query::error::QueryError;
use crate::query::filter::TagFilter;
use crate::query::limits::Sweeps;
use crate::query::request::SubQuery;

/// The answer to a query, ready to serialise.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResponse {
    pub results: Vec<GroupResult>,
    /// Per sub-query echo JSON, when `showQuery` was asked for.
    pub(crate) echoes: Vec<String>,
    pub summary: Summary,
    /// Not part of any answer.
    pub sweeps: Sweeps,
    pub(crate) arrays: bool,
    pub(crate) show_tsuids: bool,
    pub(crate) show_stats: bool,
    pub(crate) show_summary: bool,
}

/// One output series: a group of stored series aggregated together.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupResult {
    pub metric: String,
    /// Tags every series of the group that has them agrees on.
    pub tags: Vec<(String, String)>,
    /// Tag keys whose values differ within the group.
    pub aggregate_tags: Vec<String>,
    /// Index of the sub-query this group answers.
    pub query_index: usize,
    /// Series ids of the group, sorted.
    pub tsuids: Vec<u64>,
    /// Output timestamps (s or ms) and values; NaN means missing.
    pub dps: Vec<(i64, Value)>,
    pub stats: GroupStats,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupStats {
    /// Series with data in the group.
    pub series: usize,
    /// Raw points (or rollup intervals) read for the group.
    pub raw_points: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    pub queries: usize,
    pub series: usize,
    pub raw_points: usize,
    pub emitted: usize,
}

/// Annotation JSON objects to write into the result groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderedAnnotations {
    /// `annotations` of each result group, by position; a group beyond the
    /// end or with none gets no field.
    pub groups: Vec<Vec<String>>,
    /// `globalAnnotations`, the same in every group; none writes no field.
    pub global: Vec<String>,
}

/// Keeps the points in `[start, end]` (ms) and converts them to output
/// timestamps, merging points of one second (last wins) unless `ms`.
pub(crate) fn select(
    points: Vec<(i64, Value)>,
    (start, end): (i64, i64),
    ms: bool,
) -> Vec<(i64, Value)> {
    let mut out: Vec<(i64, Value)> = Vec::with_capacity(points.len());
    for (t, v) in points {
        if t < start || t > end {
            continue;
        }
        let t = if ms { t } else { t / 1000 };
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 = v,
            _ => out.push((t, v)),
        }
    }
    out
}

/// Appends `s` as a JSON string literal.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, v: Value) {
    match v {
        Value::Float(f) if !f.is_finite() => out.push_str("null"),
        v => double_text::write_value(out, v),
    }
}

fn write_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.push_str("null"),
    }
}

impl QueryResponse {
    /// The ids of the series in every group, sorted, each once.
    pub fn series_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .results
            .iter()
            .flat_map(|g| g.tsuids.iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Appends the JSON body to `out`.
    pub fn write_json(&self, out: &mut String) {
        self.write_annotated_json(&RenderedAnnotations::default(), out);
    }

    /// Appends the JSON body with `notes` to `out`.
    pub fn write_annotated_json(&self, notes: &RenderedAnnotations, out: &mut String) {
        let points: usize = self.results.iter().map(|r| r.dps.len()).sum();
        out.reserve(points * 24 + self.results.len() * 128);
        out.push('[');
        for (i, r) in self.results.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let own = notes.groups.get(i).map_or(&[][..], Vec::as_slice);
            // Without a deadline the writing never stops early.
            let _ = self.write_group(out, r, own, &notes.global, &mut Ticker::new(None));
        }
        self.write_tail(out, !self.results.is_empty());
    }

    /// The JSON body in pieces, one result group each, freeing every group
    /// once it is written: a large answer is never held whole as text next
    /// to the results it was written from.
    pub fn into_json_chunks(self) -> JsonChunks {
        self.into_annotated_json_chunks(RenderedAnnotations::default(), None)
    }

    /// [`QueryResponse::into_json_chunks`] with `notes`, stopping (see
    /// [`JsonChunks::expired`]) once `deadline` has passed.
    pub fn into_annotated_json_chunks(
        mut self,
        notes: RenderedAnnotations,
        deadline: Option<Instant>,
    ) -> JsonChunks {
        let groups = std::mem::take(&mut self.results).into_iter();
        JsonChunks {
            response: self,
            groups,
            notes: notes.groups.into_iter(),
            global: notes.global,
            ticker: Ticker::new(deadline),
            wrote_group: false,
            done: false,
            expired: false,
        }
    }

    /// The optional summary object and the closing bracket.
    fn write_tail(&self, out: &mut String, after_groups: bool) {
        if self.show_summary {
            if after_groups {
                out.push(',');
            }
            let s = &self.summary;
            let _ = write!(
                out,
                "{{\"statsSummary\":{{\"emittedDPs\":{},\"queries\":{},\"rawDPs\":{},\"series\":{}}}}}",
                s.emitted, s.queries, s.raw_points, s.series
            );
        }
        out.push(']');
    }

    /// Writes one group; its points poll the deadline through `ticker`.
    fn write_group(
        &self,
        out: &mut String,
        r: &GroupResult,
        notes: &[String],
        global: &[String],
        ticker: &mut Ticker,
    ) -> Result<(), QueryError> {
        out.push_str("{\"metric\":");
        write_str(out, &r.metric);
        out.push_str(",\"tags\":{");
        for (i, (k, v)) in r.tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(out, k);
            out.push(':');
            write_str(out, v);
        }
        out.push_str("},\"aggregateTags\":[");
        for (i, k) in r.aggregate_tags.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(out, k);
        }
        out.push(']');
        if let Some(echo) = self.echoes.get(r.query_index) {
            out.push_str(",\"query\":");
            out.push_str(echo);
        }
        if self.show_tsuids {
            out.push_str(",\"tsuids\":[");
            for (i, id) in r.tsuids.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "\"{id:016X}\"");
            }
            out.push(']');
        }
        for (field, list) in [("annotations", notes), ("globalAnnotations", global)] {
            if !list.is_empty() {
                let _ = write!(out, ",\"{field}\":[{}]", list.join(","));
            }
        }
        if self.arrays {
            out.push_str(",\"dps\":[");
            for (i, &(t, v)) in r.dps.iter().enumerate() {
                ticker.tick()?;
                if i > 0 {
                    out.push(',');
                }
                out.push('[');
                out.push_str(itoa::Buffer::new().format(t));
                out.push(',');
                write_number(out, v);
                out.push(']');
            }
            out.push(']');
        } else {
            out.push_str(",\"dps\":{");
            for (i, &(t, v)) in r.dps.iter().enumerate() {
                ticker.tick()?;
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(itoa::Buffer::new().format(t));
                out.push_str("\":");
                write_number(out, v);
            }
            out.push('}');
        }
        if self.show_stats {
            let _ = write!(
                out,
                ",\"stats\":{{\"emittedDPs\":{},\"queryIndex\":{},\"rawDPs\":{},\"series\":{}}}",
                r.dps.len(),
                r.query_index,
                r.stats.raw_points,
                r.stats.series
            );
        }
        out.push('}');
        Ok(())
    }
}

/// [`QueryResponse::into_json_chunks`]: concatenated, the chunks are
/// exactly what [`QueryResponse::write_json`] writes, unless the deadline
/// passed first: the chunks then end early and [`JsonChunks::expired`]
/// says so.
pub struct JsonChunks {
    /// The response without its groups (echoes, flags, summary).
    response: QueryResponse,
    groups: std::vec::IntoIter<GroupResult>,
    /// Each group's annotations, in step with `groups`.
    notes: std::vec::IntoIter<Vec<String>>,
    global: Vec<String>,
    ticker: Ticker,
    wrote_group: bool,
    done: bool,
    expired: bool,
}

impl JsonChunks {
    /// Whether the chunks ended early, the deadline having passed: the
    /// JSON they make is cut short.
    pub fn expired(&self) -> bool {
        self.expired
    }
}

impl Iterator for JsonChunks {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.done {
            return None;
        }
        let mut out = String::new();
        if !self.wrote_group {
            out.push('[');
        }
        match self.groups.next() {
            Some(group) => {
                if self.wrote_group {
                    out.push(',');
                }
                out.reserve(group.dps.len() * 24 + 128);
                let notes = self.notes.next().unwrap_or_default();
                let written = self.response.write_group(
                    &mut out,
                    &group,
                    &notes,
                    &self.global,
                    &mut self.ticker,
                );
                if written.is_err() {
                    self.expired = true;
                    self.done = true;
                    return None;
                }
                self.wrote_group = true;
            }
            None => {
                self.response.write_tail(&mut out, self.wrote_group);
                self.done = true;
            }
        }
        Some(out)
    }
}

/// The `query` echo of one sub-query, with OpenTSDB 2.4.1's fields and
/// order. `filterTagKs` (tag key UIDs in OpenTSDB) is always empty.
pub(crate) fn query_echo(q: &SubQuery, filters: &[TagFilter], index: usize) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("{\"aggregator\":");
    write_opt_str(&mut out, q.aggregator.as_deref());
    out.push_str(",\"metric\":");
    write_opt_str(&mut out, q.metric.as_deref());
    out.push_str(",\"tsuids\":");
    match &q.tsuids {
        Some(t) => {
            out.push('[');
            for (i, s) in t.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(&mut out, s);
            }
            out.push(']');
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"downsample\":");
    write_opt_str(&mut out, q.downsample.as_deref());
    let _ = write!(out, ",\"rate\":{},\"filters\":[", q.rate);
    for (i, f) in filters.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"tagk\":");
        write_str(&mut out, &f.tagk);
        out.push_str(",\"filter\":");
        write_str(&mut out, &f.filter);
        let _ = write!(out, ",\"group_by\":{},\"type\":", f.group_by);
        write_str(&mut out, f.filter_type.name());
        out.push('}');
    }
    out.push_str("],\"percentiles\":");
    match &q.percentiles {
        Some(p) => {
            out.push('[');
            for (i, &v) in p.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_number(&mut out, Value::Float(v));
            }
            out.push(']');
        }
        None => out.push_str("null"),
    }
    let _ = write!(out, ",\"index\":{index},\"rateOptions\":");
    match &q.rate_options {
        Some(o) => {
            let _ = write!(
                out,
                "{{\"counter\":{},\"counterMax\":{},\"resetValue\":{},\"dropResets\":{}}}",
                o.counter, o.counter_max, o.reset_value, o.drop_resets
            );
        }
        None => out.push_str("null"),
    }
    let _ = write!(
        out,
        ",\"filterTagKs\":[],\"explicitTags\":{},\"useFuzzyFilter\":{},\"preAggregate\":{},\"rollupUsage\":",
        q.explicit_tags, q.use_fuzzy_filter, q.pre_aggregate
    );
    write_opt_str(&mut out, q.rollup_usage.as_deref());
    let _ = write!(
        out,
        ",\"rollupTable\":\"raw\",\"showHistogramBuckets\":{},\"useMultiGets\":{},\"tags\":{{",
        q.show_histogram_buckets, q.use_multi_gets
    );
    // Group-by filters, as OpenTSDB lists them: `"host":"wildcard(*)"`;
    // for a key with several, the last one.
    let mut tags: Vec<(&str, String)> = Vec::new();
    for f in filters.iter().filter(|f| f.group_by) {
        let text = format!("{}({})", f.filter_type.name(), f.filter);
        match tags.iter_mut().find(|(k, _)| *k == f.tagk) {
            Some(slot) => slot.1 = text,
            None => tags.push((&f.tagk, text)),
        }
    }
    tags.sort_by(|a, b| a.0.cmp(b.0));
    for (i, (k, v)) in tags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(&mut out, k);
        out.push(':');
        write_str(&mut out, v);
    }
    out.push_str("},\"histogramQuery\":false}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(dps: Vec<(i64, Value)>) -> QueryResponse {
        QueryResponse {
            results: vec![GroupResult {
                metric: "sys.cpu".into(),
                tags: vec![("dc".into(), "lga".into())],
                aggregate_tags: vec!["host".into()],
                query_index: 0,
                tsuids: vec![1, 0xABCDEF],
                dps,
                stats: GroupStats {
                    series: 2,
                    raw_points: 7,
                },
            }],
            echoes: Vec::new(),
            summary: Summary {
                queries: 1,
                series: 2,
                raw_points: 7,
                emitted: 3,
            },
            sweeps: Sweeps::default(),
            arrays: false,
            show_tsuids: false,
            show_stats: false,
            show_summary: false,
        }
    }

    fn json(r: &QueryResponse) -> String {
        let mut out = String::new();
        r.write_json(&mut out);
        out
    }

    #[test]
    fn object_and_array_forms_with_java_numbers_and_null() {
        let dps = vec![
            (1, Value::Int(42)),
            (2, Value::Float(30.0)),
            (3, Value::Float(f64::NAN)),
            (4, Value::Float(1e7)),
            (5, Value::Float(0.1)),
        ];
        let mut r = response(dps);
        assert_eq!(
            json(&r),
            r#"[{"metric":"sys.cpu","tags":{"dc":"lga"},"aggregateTags":["host"],"dps":{"1":42,"2":30.0,"3":null,"4":1.0E7,"5":0.1}}]"#
        );
        r.arrays = true;
        r.show_tsuids = true;
        r.show_stats = true;
        r.show_summary = true;
        assert_eq!(
            json(&r),
            r#"[{"metric":"sys.cpu","tags":{"dc":"lga"},"aggregateTags":["host"],"tsuids":["0000000000000001","0000000000ABCDEF"],"dps":[[1,42],[2,30.0],[3,null],[4,1.0E7],[5,0.1]],"stats":{"emittedDPs":5,"queryIndex":0,"rawDPs":7,"series":2}},{"statsSummary":{"emittedDPs":3,"queries":1,"rawDPs":7,"series":2}}]"#
        );
        r.results.clear();
        assert_eq!(
            json(&r),
            r#"[{"statsSummary":{"emittedDPs":3,"queries":1,"rawDPs":7,"series":2}}]"#
        );
        r.show_summary = false;
        assert_eq!(json(&r), "[]");
    }

    #[test]
    fn annotations_sit_between_tsuids_and_dps_and_stream_alike() {
        let mut r = response(vec![(1, Value::Int(1))]);
        r.results.push(r.results[0].clone());
        r.show_tsuids = true;
        r.show_stats = true;
        let notes = RenderedAnnotations {
            groups: vec![vec![r#"{"n":1}"#.into(), r#"{"n":2}"#.into()]],
            global: vec![r#"{"g":1}"#.into()],
        };
        let mut whole = String::new();
        r.write_annotated_json(&notes, &mut whole);
        let group = |own: &str| {
            format!(
                r#"{{"metric":"sys.cpu","tags":{{"dc":"lga"}},"aggregateTags":["host"],"tsuids":["0000000000000001","0000000000ABCDEF"],{own}"globalAnnotations":[{{"g":1}}],"dps":{{"1":1}},"stats":{{"emittedDPs":1,"queryIndex":0,"rawDPs":7,"series":2}}}}"#
            )
        };
        assert_eq!(
            whole,
            format!(
                "[{},{}]",
                group(r#""annotations":[{"n":1},{"n":2}],"#),
                group("")
            )
        );
        let chunks: Vec<String> = r.clone().into_annotated_json_chunks(notes, None).collect();
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks.concat(), whole);

        let mut plain = String::new();
        r.write_json(&mut plain);
        assert!(!plain.contains("nnotations"));
        assert_eq!(r.into_json_chunks().collect::<String>(), plain);
    }

    #[test]
    fn strings_are_escaped() {
        let mut r = response(Vec::new());
        r.results[0].metric = "a\"b\\c\u{1}é".into();
        assert!(json(&r).starts_with(r#"[{"metric":"a\"b\\c\u0001é","#));
    }

    #[test]
    fn select_filters_and_merges_seconds() {
        let p = vec![
            (999, Value::Int(1)),
            (1000, Value::Int(2)),
            (1500, Value::Int(3)),
            (2000, Value::Int(4)),
            (2001, Value::Int(5)),
        ];
        assert_eq!(
            select(p.clone(), (1000, 2000), false),
            vec![(1, Value::Int(3)), (2, Value::Int(4))]
        );
        assert_eq!(select(p, (1000, 2000), true).len(), 3);
    }

    #[test]
    fn query_echo_matches_opentsdb_shape() {
        let q = SubQuery {
            aggregator: Some("sum".into()),
            metric: Some("sys.cpu".into()),
            tags: Some(vec![("host".into(), "*".into())]),
            ..SubQuery::default()
        };
        let filters = q.resolved_filters().unwrap();
        assert_eq!(
            query_echo(&q, &filters, 3),
            r#"{"aggregator":"sum","metric":"sys.cpu","tsuids":null,"downsample":null,"rate":false,"filters":[{"tagk":"host","filter":"*","group_by":true,"type":"wildcard"}],"percentiles":null,"index":3,"rateOptions":null,"filterTagKs":[],"explicitTags":false,"useFuzzyFilter":true,"preAggregate":false,"rollupUsage":null,"rollupTable":"raw","showHistogramBuckets":false,"useMultiGets":true,"tags":{"host":"wildcard(*)"},"histogramQuery":false}"#
        );
    }
}
