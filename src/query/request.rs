//! The query request (OpenTSDB's `TSQuery` / `TSSubQuery`): the POST body,
//! and the validation that turns it, or the same request built from GET
//! parameters (`query_string.rs`), into an executable [`Plan`].
//!
//! Parsing is structural only, so the HTTP layer can reject a malformed
//! request cheaply; times, aggregators, downsample specs and filters are
//! checked by [`QueryRequest::plan`], in OpenTSDB's order and with its
//! messages, the query's description attached as `details` as OpenTSDB does.

use std::fmt::Write as _;

use chrono_tz::Tz;
use serde::Deserialize;

use crate::java::jackson;
use crate::query::aggregator::Aggregator;
use crate::query::downsample::DownsampleSpec;
use crate::query::error::QueryError;
use crate::query::filter::{push_filter, TagFilter};
use crate::query::rate::RateOptions;
use crate::query::time::parse_time;

/// A whole query: a time range, output options and sub-queries.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct QueryRequest {
    /// Required; any form [`crate::query::time::parse_time`] takes.
    #[serde(deserialize_with = "jackson::opt_text")]
    pub start: Option<String>,
    /// Defaults to now.
    #[serde(deserialize_with = "jackson::opt_text")]
    pub end: Option<String>,
    /// IANA zone for absolute dates and calendar downsampling (UTC if unset).
    #[serde(deserialize_with = "jackson::opt_text")]
    pub timezone: Option<String>,
    /// Calendar buckets for every downsampler of the query.
    #[serde(rename = "useCalendar", deserialize_with = "jackson::flag")]
    pub use_calendar: bool,
    /// Millisecond timestamps in the output (`ms` in GET).
    #[serde(rename = "msResolution", deserialize_with = "jackson::flag")]
    pub ms_resolution: bool,
    #[serde(rename = "showTSUIDs", deserialize_with = "jackson::flag")]
    pub show_tsuids: bool,
    #[serde(rename = "noAnnotations", deserialize_with = "jackson::flag")]
    pub no_annotations: bool,
    #[serde(rename = "globalAnnotations", deserialize_with = "jackson::flag")]
    pub global_annotations: bool,
    /// Echo each sub-query (with its `index`) in its results.
    #[serde(rename = "showQuery", deserialize_with = "jackson::flag")]
    pub show_query: bool,
    #[serde(rename = "showStats", deserialize_with = "jackson::flag")]
    pub show_stats: bool,
    #[serde(rename = "showSummary", deserialize_with = "jackson::flag")]
    pub show_summary: bool,
    /// Delete the points matched in `[start, end]`. The query itself runs
    /// as usual; the HTTP layer refuses it unless `allow-delete` is set.
    #[serde(deserialize_with = "jackson::flag")]
    pub delete: bool,
    /// Accepted and ignored, as OpenTSDB's JSON serializer ignores it.
    #[serde(deserialize_with = "jackson::flag")]
    pub padding: bool,
    pub queries: Option<Vec<SubQuery>>,
    /// `dps` as `[[ts, value], ...]`. Set by the `arrays` query-string flag,
    /// which applies to POST too, so the HTTP layer sets it for both.
    #[serde(skip)]
    pub arrays: bool,
}

/// One metric's query.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SubQuery {
    #[serde(deserialize_with = "jackson::opt_text")]
    pub aggregator: Option<String>,
    #[serde(deserialize_with = "jackson::opt_text")]
    pub metric: Option<String>,
    /// rtsd TSUIDs (series ids in hex, as `showTSUIDs` prints them), in
    /// place of `metric`; filters do not apply to them.
    #[serde(deserialize_with = "jackson::opt_text_list")]
    pub tsuids: Option<Vec<String>>,
    #[serde(deserialize_with = "jackson::opt_text")]
    pub downsample: Option<String>,
    #[serde(deserialize_with = "jackson::flag")]
    pub rate: bool,
    #[serde(rename = "rateOptions")]
    pub rate_options: Option<RateOptions>,
    /// The old syntax, `{"host":"*"}`: group-by filters.
    #[serde(deserialize_with = "jackson::text_pairs")]
    pub tags: Option<Vec<(String, String)>>,
    pub filters: Option<Vec<FilterSpec>>,
    /// Old-syntax filters that do not group (the second braces of `m=`).
    #[serde(skip)]
    pub uri_filters: Vec<(String, String)>,
    /// Only series whose tag keys are exactly the filtered ones.
    #[serde(rename = "explicitTags", deserialize_with = "jackson::flag")]
    pub explicit_tags: bool,
    /// Histogram options, accepted and echoed; rtsd stores no histograms.
    pub percentiles: Option<Vec<f64>>,
    #[serde(rename = "showHistogramBuckets", deserialize_with = "jackson::flag")]
    pub show_histogram_buckets: bool,
    #[serde(rename = "preAggregate", deserialize_with = "jackson::flag")]
    pub pre_aggregate: bool,
    /// `ROLLUP_RAW` keeps the engine off rollups; other values are echoed.
    #[serde(rename = "rollupUsage", deserialize_with = "jackson::opt_text")]
    pub rollup_usage: Option<String>,
    #[serde(
        rename = "useFuzzyFilter",
        deserialize_with = "jackson::flag_default_true"
    )]
    pub use_fuzzy_filter: bool,
    #[serde(
        rename = "useMultiGets",
        deserialize_with = "jackson::flag_default_true"
    )]
    pub use_multi_gets: bool,
}

impl Default for SubQuery {
    fn default() -> Self {
        SubQuery {
            aggregator: None,
            metric: None,
            tsuids: None,
            downsample: None,
            rate: false,
            rate_options: None,
            tags: None,
            filters: None,
            uri_filters: Vec::new(),
            explicit_tags: false,
            percentiles: None,
            show_histogram_buckets: false,
            pre_aggregate: false,
            rollup_usage: None,
            use_fuzzy_filter: true,
            use_multi_gets: true,
        }
    }
}

/// A filter of the JSON form `{"type","tagk","filter","groupBy"}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct FilterSpec {
    #[serde(rename = "type", deserialize_with = "jackson::opt_text")]
    pub filter_type: Option<String>,
    #[serde(deserialize_with = "jackson::opt_text")]
    pub tagk: Option<String>,
    #[serde(deserialize_with = "jackson::opt_text")]
    pub filter: Option<String>,
    #[serde(
        rename = "groupBy",
        alias = "group_by",
        deserialize_with = "jackson::flag"
    )]
    pub group_by: bool,
}

/// A validated query, ready to run.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub start_ms: i64,
    pub end_ms: i64,
    pub tz: Tz,
    pub subs: Vec<SubPlan>,
}

/// A validated sub-query.
#[derive(Debug, Clone)]
pub(crate) struct SubPlan {
    pub index: usize,
    /// Empty for a TSUID sub-query until its series are resolved.
    pub metric: String,
    /// The series ids of a TSUID sub-query; empty when selecting by metric.
    pub tsuids: Vec<u64>,
    pub aggregator: Aggregator,
    /// Resolved filters, in OpenTSDB's order.
    pub filters: Vec<TagFilter>,
    pub explicit_tags: bool,
    pub downsample: Option<DownsampleSpec>,
    /// The most buckets the downsample can make per series over the range
    /// asked for (0 without one), counted before anything is built.
    pub buckets: u64,
    pub rate: Option<RateOptions>,
    pub allow_rollups: bool,
}

fn bad(message: impl Into<String>) -> QueryError {
    QueryError::bad(message)
}

impl QueryRequest {
    /// Parses a POST body, with OpenTSDB's 400 for JSON it cannot read.
    pub fn from_json(body: &[u8]) -> Result<QueryRequest, QueryError> {
        serde_json::from_slice(body).map_err(|e| QueryError::BadRequest {
            message: "Unable to parse the given JSON".into(),
            details: Some(e.to_string()),
        })
    }

    /// Validates the request into a plan; `now_ms` is "now" for relative
    /// times and a missing end.
    pub(crate) fn plan(&self, now_ms: i64) -> Result<Plan, QueryError> {
        self.validate(now_ms)
            .map_err(|e| e.with_details(|| self.describe()))
    }

    fn validate(&self, now_ms: i64) -> Result<Plan, QueryError> {
        let start = match self.start.as_deref() {
            Some(s) if !s.is_empty() => s,
            _ => return Err(bad("Missing start time")),
        };
        let tz = match self.timezone.as_deref() {
            Some(name) if !name.is_empty() => name
                .parse::<Tz>()
                .map_err(|_| bad(format!("Invalid timezone name: {name}")))?,
            _ => Tz::UTC,
        };
        // A large `-ago` can reach before 1970; nothing is stored there.
        let start_ms = parse_time(start, now_ms, Some(tz))?.max(0);
        let asked_end_ms = match self.end.as_deref() {
            Some(e) if !e.is_empty() => parse_time(e, now_ms, Some(tz))?,
            _ => now_ms,
        };
        // Nothing is stored after the store's last timestamp either. The
        // buckets a downsample would make are counted over the range asked
        // for, so an end near i64::MAX is refused rather than quietly
        // shortened when it would make too many.
        let end_ms = asked_end_ms.min(crate::model::MAX_TIMESTAMP_MS);
        if end_ms <= start_ms {
            return Err(bad(format!(
                "End time [{end_ms}] must be greater than the start time [{start_ms}]"
            )));
        }
        let queries = match &self.queries {
            Some(q) if !q.is_empty() => q,
            _ => return Err(bad("Missing queries")),
        };
        let subs = queries
            .iter()
            .enumerate()
            .map(|(index, q)| q.validate(index, self.use_calendar, (start_ms, asked_end_ms)))
            .collect::<Result<_, _>>()?;
        Ok(Plan {
            start_ms,
            end_ms,
            tz,
            subs,
        })
    }

    /// OpenTSDB's `TSQuery.toString()`, the `details` of validation errors.
    pub(crate) fn describe(&self) -> String {
        let mut out = String::from("TSQuery(start_time=");
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "null".into());
        let _ = write!(
            out,
            "{}, end_time={}, subQueries[",
            opt(&self.start),
            opt(&self.end)
        );
        for (i, q) in self.queries.iter().flatten().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            q.describe(i, &mut out);
        }
        let _ = write!(
            out,
            "] padding={}, no_annotations={}, with_global_annotations={}, show_tsuids={}, \
             ms_resolution={}, options=[])",
            self.padding,
            self.no_annotations,
            self.global_annotations,
            self.show_tsuids,
            self.ms_resolution
        );
        out
    }
}

impl SubQuery {
    fn validate(
        &self,
        index: usize,
        use_calendar: bool,
        (start_ms, end_ms): (i64, i64),
    ) -> Result<SubPlan, QueryError> {
        let name = match self.aggregator.as_deref() {
            Some(a) if !a.is_empty() => a,
            _ => return Err(bad("Missing the aggregation function")),
        };
        let aggregator = Aggregator::from_name(name)
            .ok_or_else(|| bad(format!("No such aggregation function: {name}")))?;
        let tsuids = self
            .tsuids
            .iter()
            .flatten()
            .map(|t| parse_tsuid(t))
            .collect::<Result<Vec<u64>, _>>()?;
        let metric = match self.metric.as_deref() {
            _ if !tsuids.is_empty() => String::new(),
            Some(m) if !m.is_empty() => m.to_string(),
            _ => return Err(bad("Missing the metric or tsuids, provide at least one")),
        };
        let downsample = match self.downsample.as_deref() {
            Some(d) if !d.is_empty() => {
                let spec = DownsampleSpec::parse(d)?;
                Some(if use_calendar {
                    spec.with_calendar()?
                } else {
                    spec
                })
            }
            _ => None,
        };
        Ok(SubPlan {
            index,
            metric,
            tsuids,
            aggregator,
            filters: self.resolved_filters()?,
            explicit_tags: self.explicit_tags,
            buckets: downsample
                .as_ref()
                .map_or(0, |d| d.interval.buckets_over(start_ms, end_ms)),
            downsample,
            rate: self.rate.then(|| self.rate_options.unwrap_or_default()),
            allow_rollups: !self
                .rollup_usage
                .as_deref()
                .is_some_and(|u| u.eq_ignore_ascii_case("rollup_raw")),
        })
    }

    /// The filters in OpenTSDB's order: JSON filters, the non-grouping old
    /// syntax, then `tags` (group-by, merged into identical filters).
    pub(crate) fn resolved_filters(&self) -> Result<Vec<TagFilter>, QueryError> {
        let mut filters = Vec::new();
        for f in self.filters.iter().flatten() {
            let text = |s: &Option<String>| s.clone().unwrap_or_default();
            filters.push(
                TagFilter::new(
                    &text(&f.filter_type),
                    &text(&f.tagk),
                    &text(&f.filter),
                    f.group_by,
                )
                .map_err(bad)?,
            );
        }
        for (k, v) in &self.uri_filters {
            filters.push(TagFilter::from_tag_value(k, v, false).map_err(bad)?);
        }
        for (k, v) in self.tags.iter().flatten() {
            push_filter(
                &mut filters,
                TagFilter::from_tag_value(k, v, true).map_err(bad)?,
            );
        }
        Ok(filters)
    }

    fn describe(&self, index: usize, out: &mut String) {
        let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "null".into());
        let _ = write!(
            out,
            "TSSubQuery(metric={}, filters=[",
            self.metric.clone().unwrap_or_default()
        );
        let mut first = true;
        for f in self.filters.iter().flatten() {
            if !first {
                out.push_str(", ");
            }
            first = false;
            let _ = write!(
                out,
                "filter_name={}, tagk={}, group_by={}",
                opt(&f.filter_type),
                opt(&f.tagk),
                f.group_by
            );
        }
        for (k, v) in self.uri_filters.iter().chain(self.tags.iter().flatten()) {
            if !first {
                out.push_str(", ");
            }
            first = false;
            let _ = write!(out, "{k}={v}");
        }
        let _ = write!(
            out,
            "], tsuids=[{}], agg={}, downsample={}, rate={}, rate_options={}, explicit_tags={}, index={index})",
            self.tsuids.as_deref().unwrap_or_default().join(", "),
            opt(&self.aggregator),
            opt(&self.downsample),
            self.rate,
            self.rate_options
                .map(|o| format!(
                    "counter={}, counterMax={}, resetValue={}, dropResets={}",
                    o.counter, o.counter_max, o.reset_value, o.drop_resets
                ))
                .unwrap_or_else(|| "null".into()),
            self.explicit_tags,
        );
    }
}

/// rtsd's TSUID: the series id as upper- or lower-case hex (16 digits as
/// `showTSUIDs` prints it; shorter is accepted).
fn parse_tsuid(text: &str) -> Result<u64, QueryError> {
    if text.is_empty() || text.len() > 16 {
        return Err(bad(format!("Invalid TSUID: {text}")));
    }
    u64::from_str_radix(text, 16).map_err(|_| bad(format!("Invalid TSUID: {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_body_fields() {
        let body = br#"{"start":1356998400,"end":"1356998460","timezone":"UTC","useCalendar":"true",
            "msResolution":true,"showTSUIDs":"true","showQuery":true,"showStats":1,"showSummary":false,
            "noAnnotations":true,"globalAnnotations":true,"padding":true,"options":{"x":["y"]},"unknown":1,
            "queries":[{"aggregator":"sum","metric":"sys.cpu","downsample":"1m-avg","rate":"true",
              "rateOptions":{"counter":true,"counterMax":100,"resetValue":5,"dropResets":false},
              "tags":{"host":"*"},"explicitTags":true,
              "filters":[{"type":"literal_or","tagk":"dc","filter":"lga","group_by":true},
                         {"type":"wildcard","tagk":"rack","filter":"r*","groupBy":false}],
              "percentiles":[99.9],"rollupUsage":"ROLLUP_RAW","useFuzzyFilter":false}]}"#;
        let r = QueryRequest::from_json(body).unwrap();
        assert_eq!(r.start.as_deref(), Some("1356998400"));
        assert_eq!(r.end.as_deref(), Some("1356998460"));
        assert!(r.use_calendar && r.ms_resolution && r.show_tsuids && r.show_query && r.show_stats);
        assert!(
            !r.show_summary && r.no_annotations && r.global_annotations && r.padding && !r.arrays
        );
        let q = &r.queries.as_ref().unwrap()[0];
        assert!(q.rate && q.explicit_tags && !q.use_fuzzy_filter && q.use_multi_gets);
        assert_eq!(q.rate_options.unwrap().reset_value, 5);
        let f = q.filters.as_ref().unwrap();
        assert!(f[0].group_by && !f[1].group_by);
        let plan = r.plan(0).unwrap();
        assert_eq!(
            (plan.start_ms, plan.end_ms),
            (1_356_998_400_000, 1_356_998_460_000)
        );
        let sub = &plan.subs[0];
        assert!(!sub.allow_rollups);
        assert_eq!(sub.filters.len(), 3);
        // useCalendar turns the fixed interval into a calendar one.
        assert!(matches!(
            sub.downsample.as_ref().unwrap().interval,
            crate::query::downsample::Interval::Calendar { .. }
        ));
        let e = QueryRequest::from_json(b"{\"start\":").unwrap_err();
        assert_eq!(e.message(), "Unable to parse the given JSON");
        assert!(e.details().is_some());
    }

    #[test]
    fn validation_errors_in_opentsdb_order() {
        let now = 1_700_000_000_000;
        let body = |json: &str| QueryRequest::from_json(json.as_bytes()).unwrap();
        let cases: &[(&str, &str)] = &[
            (r#"{"queries":[]}"#, "Missing start time"),
            (r#"{"start":"","queries":[]}"#, "Missing start time"),
            (
                r#"{"start":"1h-ago","end":"2h-ago"}"#,
                "End time [1699992800000] must be greater than the start time [1699996400000]",
            ),
            (
                r#"{"start":"1h-ago","end":"1h-ago"}"#,
                "End time [1699996400000] must be greater than the start time [1699996400000]",
            ),
            (r#"{"start":"1h-ago"}"#, "Missing queries"),
            (r#"{"start":"1h-ago","queries":[]}"#, "Missing queries"),
            (
                r#"{"start":"1h-ago","queries":[{"metric":"m"}]}"#,
                "Missing the aggregation function",
            ),
            (
                r#"{"start":"1h-ago","queries":[{"aggregator":"SUM","metric":"m"}]}"#,
                "No such aggregation function: SUM",
            ),
            (
                r#"{"start":"1h-ago","queries":[{"aggregator":"sum"}]}"#,
                "Missing the metric or tsuids, provide at least one",
            ),
            (
                r#"{"start":"1h-ago","queries":[{"aggregator":"sum","tsuids":["xyz"]}]}"#,
                "Invalid TSUID: xyz",
            ),
            (
                r#"{"start":"1h-ago","queries":[{"aggregator":"sum","metric":"m","downsample":"1x-sum"}]}"#,
                "Invalid duration (suffix): 1x",
            ),
            (
                r#"{"start":"1h-ago","queries":[{"aggregator":"sum","metric":"m","filters":[{"type":"bogus","tagk":"h","filter":"x"}]}]}"#,
                "Could not find a tag value filter of the type: bogus",
            ),
            (
                r#"{"start":"2013/01/01","timezone":"Mars/Base","queries":[]}"#,
                "Invalid timezone name: Mars/Base",
            ),
            (
                r#"{"start":"yesterday","queries":[]}"#,
                "Invalid time: yesterday. Invalid character 'y' in yesterday",
            ),
            (
                r#"{"start":"1h-ago","delete":true,"queries":[]}"#,
                "Missing queries",
            ),
        ];
        for &(json, want) in cases {
            let e = body(json).plan(now).unwrap_err();
            assert_eq!((e.status(), e.message().as_str()), (400, want), "{json}");
            assert!(e.details().is_some(), "{json}");
        }
        let e = body(r#"{"start":"1h-ago","queries":[{"metric":"sys.cpu"}]}"#)
            .plan(now)
            .unwrap_err();
        assert_eq!(
            e.details().unwrap(),
            "TSQuery(start_time=1h-ago, end_time=null, subQueries[TSSubQuery(metric=sys.cpu, \
             filters=[], tsuids=[], agg=null, downsample=null, rate=false, rate_options=null, \
             explicit_tags=false, index=0)] padding=false, no_annotations=false, \
             with_global_annotations=false, show_tsuids=false, ms_resolution=false, options=[])"
        );
    }
}
