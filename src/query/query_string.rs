//! A query from its query string (`GET /api/query?start=1h-ago&m=sum:…`),
//! as OpenTSDB's `QueryRpc.parseQuery` reads it: the `m=` and `tsuid=`
//! sub-query grammars (`<agg>[:<options>…]:<metric>[{tags}][{filters}]`),
//! and the flags, which count by presence. The result is the same
//! [`QueryRequest`] a POST body gives, validated the same way.
//!
//! GET has no `timezone` parameter (absolute dates are then UTC).

use crate::query::error::QueryError;
use crate::query::filter::TagFilter;
use crate::query::rate::RateOptions;
use crate::query::request::{QueryRequest, SubQuery};

impl QueryRequest {
    /// Builds a request from decoded GET parameters (repeated keys kept in
    /// order). Flags count by presence, as in OpenTSDB (`ms=false` is on);
    /// for other keys the last value wins; `m` and `tsuid` repeat.
    pub fn from_get_params(params: &[(String, String)]) -> Result<QueryRequest, QueryError> {
        let last = |key: &str| {
            params
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let has = |key: &str| params.iter().any(|(k, _)| k == key);
        let start = last("start")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| QueryError::bad("Missing parameter <code>start</code>"))?;
        let mut queries = Vec::new();
        for (_, value) in params.iter().filter(|(k, _)| k == "tsuid") {
            queries.push(parse_tsuid_query(value)?);
        }
        for (_, value) in params.iter().filter(|(k, _)| k == "m") {
            queries.push(parse_m_query(value)?);
        }
        if queries.is_empty() {
            return Err(QueryError::bad("Missing sub queries"));
        }
        // OpenTSDB drops identical sub-queries, keeping the first.
        let mut unique: Vec<SubQuery> = Vec::with_capacity(queries.len());
        for q in queries {
            if !unique.contains(&q) {
                unique.push(q);
            }
        }
        Ok(QueryRequest {
            start: Some(start),
            end: last("end"),
            timezone: None,
            use_calendar: false,
            ms_resolution: has("ms"),
            show_tsuids: has("show_tsuids"),
            no_annotations: has("no_annotations"),
            global_annotations: has("global_annotations"),
            show_query: has("show_query"),
            show_stats: has("show_stats"),
            show_summary: has("show_summary"),
            // By presence like the other flags, except that a destructive
            // one also honours an explicit `delete=false`.
            delete: last("delete").is_some_and(|v| !matches!(v.as_str(), "false" | "0")),
            padding: has("padding"),
            queries: Some(unique),
            arrays: has("arrays"),
        })
    }
}

/// `m=<agg>[:<options>...]:<metric>[{tags}][{filters}]`.
fn parse_m_query(m: &str) -> Result<SubQuery, QueryError> {
    let (mut sub, metric) = split_sub_query("m", m, "The query string was empty")?;
    parse_metric_and_filters(metric, &mut sub).map_err(QueryError::bad)?;
    Ok(sub)
}

/// `tsuid=<agg>[:<options>...]:<tsuid>[,<tsuid>...]`.
fn parse_tsuid_query(q: &str) -> Result<SubQuery, QueryError> {
    let (mut sub, tsuids) = split_sub_query("tsuid", q, "The tsuid query string was empty")?;
    sub.tsuids = Some(tsuids.split(',').map(String::from).collect());
    Ok(sub)
}

/// The shared shape of `m=` and `tsuid=`: 2 to 5 `:`-separated parts, the
/// aggregator first, options in the middle. Returns the sub-query with
/// aggregator and options applied, and the last part for the caller.
fn split_sub_query<'a>(
    param: &str,
    text: &'a str,
    empty: &str,
) -> Result<(SubQuery, &'a str), QueryError> {
    if text.is_empty() {
        return Err(QueryError::bad(empty));
    }
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() < 2 || parts.len() > 5 {
        let count = if parts.len() < 2 {
            "not enough"
        } else {
            "too many"
        };
        return Err(QueryError::bad(format!(
            "Invalid parameter {param}={text} ({count} :-separated parts)"
        )));
    }
    let mut sub = SubQuery {
        aggregator: Some(parts[0].to_string()),
        ..SubQuery::default()
    };
    apply_options(&mut sub, &parts[1..parts.len() - 1])?;
    Ok((sub, parts[parts.len() - 1]))
}

/// The middle parts of `m=`, matched case-insensitively; unknown ones are
/// ignored, as OpenTSDB ignores them (so `all-sum` does nothing: a
/// downsample part must start with a digit, `0all-sum`).
fn apply_options(sub: &mut SubQuery, parts: &[&str]) -> Result<(), QueryError> {
    for &part in parts {
        let lower = part.to_ascii_lowercase();
        if lower.starts_with("rate") {
            sub.rate = true;
            if part.contains('{') {
                sub.rate_options = Some(parse_rate_options(part)?);
            }
        } else if part.starts_with(|c: char| c.is_ascii_digit()) {
            sub.downsample = Some(part.to_string());
        } else if lower == "pre-agg" {
            sub.pre_aggregate = true;
        } else if lower.starts_with("rollup_") {
            sub.rollup_usage = Some(part.to_string());
        } else if lower.starts_with("percentiles") {
            sub.percentiles = Some(parse_percentiles(part)?);
        } else if lower.starts_with("show-histogram-buckets") {
            sub.show_histogram_buckets = true;
        } else if lower.starts_with("explicit_tags") {
            sub.explicit_tags = true;
        }
    }
    Ok(())
}

/// `rate{counter[,max[,reset]]}`, `rate{dropcounter,...}`.
fn parse_rate_options(spec: &str) -> Result<RateOptions, QueryError> {
    if spec.len() == 4 {
        return Ok(RateOptions::default());
    }
    let inner = spec
        .get(5..spec.len().saturating_sub(1))
        .filter(|_| spec.len() >= 6)
        .ok_or_else(|| QueryError::bad(format!("Invalid rate options specification: {spec}")))?;
    let parts: Vec<&str> = inner.split(',').collect();
    if parts.len() > 3 {
        return Err(QueryError::bad(format!(
            "Incorrect number of values in rate options specification, must be \
             counter[,counter max value,reset value], recieved: {} parts",
            parts.len()
        )));
    }
    let number = |i: usize, default: i64, what: &str| match parts.get(i) {
        Some(p) if !p.is_empty() => p.parse::<i64>().map_err(|_| {
            QueryError::bad(format!(
                "{what} of counter was not a number, received '{p}'"
            ))
        }),
        _ => Ok(default),
    };
    Ok(RateOptions {
        counter: parts[0].ends_with("counter"),
        counter_max: number(1, i64::MAX, "Max value")?,
        reset_value: number(2, 0, "Reset value")?,
        drop_resets: parts[0] == "dropcounter",
    })
}

/// `percentiles[50, 99.9]`.
fn parse_percentiles(spec: &str) -> Result<Vec<f64>, QueryError> {
    let malformed = || QueryError::bad(format!("Malformated percentile query paramater: {spec}"));
    let open = spec.find('[').ok_or_else(malformed)?;
    let close = spec.find(']').filter(|&c| c > open).ok_or_else(malformed)?;
    spec[open + 1..close]
        .split(',')
        .map(|p| p.trim().parse::<f64>().map_err(|_| malformed()))
        .collect()
}

/// `Tags.parse`: exactly one `=` between non-empty sides.
fn parse_tag(tag: &str) -> Result<(String, String), String> {
    let mut parts = tag.split('=');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(k), Some(v), None) if !k.is_empty() && !v.is_empty() => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(format!("invalid tag: {tag}")),
    }
}

/// `metric{tagk=v,...}{tagk=filter,...}` (OpenTSDB's
/// `Tags.parseWithMetricAndFilters`): the first braces group, the second
/// only filter. Each filter is built once here so that a bad one fails the
/// parse with OpenTSDB's "When parsing ..." message.
fn parse_metric_and_filters(spec: &str, sub: &mut SubQuery) -> Result<(), String> {
    if spec.is_empty() {
        return Err("Metric cannot be null or empty".into());
    }
    let Some(curly) = spec.find('{') else {
        sub.metric = Some(spec.to_string());
        return Ok(());
    };
    if !spec.ends_with('}') {
        return Err(format!("Missing '}}' at the end of: {spec}"));
    }
    let len = spec.len();
    if curly == len - 2 {
        if curly == 0 {
            return Err(format!("Missing metric and tags: {spec}"));
        }
        sub.metric = Some(spec[..len - 2].to_string());
        return Ok(());
    }
    // `find` cannot fail: the string ends with '}'.
    let close = spec.find('}').unwrap_or(len - 1);
    if close < curly {
        return Err(format!("Invalid metric and tags: {spec}"));
    }
    if close != len - 1 {
        let open = spec.rfind('{').unwrap_or(curly);
        for filter in spec[open + 1..len - 1].split(',') {
            if filter.is_empty() {
                break;
            }
            let (k, v) = parse_tag(filter)
                .and_then(|(k, v)| TagFilter::from_tag_value(&k, &v, false).map(|_| (k, v)))
                .map_err(|e| format!("When parsing filter '{filter}': {e}"))?;
            sub.uri_filters.push((k, v));
        }
    }
    let mut tags = Vec::new();
    for tag in spec[curly + 1..close].split(',') {
        if tag.is_empty() && close != len - 1 {
            break;
        }
        let (k, v) = parse_tag(tag)
            .and_then(|(k, v)| TagFilter::from_tag_value(&k, &v, true).map(|_| (k, v)))
            .map_err(|e| format!("When parsing tag '{tag}': {e}"))?;
        tags.push((k, v));
    }
    sub.tags = Some(tags);
    sub.metric = Some(spec[..curly].to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::filter::FilterType;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn get(pairs: &[(&str, &str)]) -> Result<QueryRequest, QueryError> {
        QueryRequest::from_get_params(&params(pairs))
    }

    #[test]
    fn parses_the_reference_m_example() {
        let r = get(&[
            ("start", "1h-ago"),
            (
                "m",
                "sum:rate{counter,,1000}:1h-avg-nan:explicit_tags:sys.cpu{host=*}{dc=lga}",
            ),
        ])
        .unwrap();
        let q = &r.queries.as_ref().unwrap()[0];
        assert_eq!(q.aggregator.as_deref(), Some("sum"));
        assert_eq!(q.metric.as_deref(), Some("sys.cpu"));
        assert!(q.rate);
        assert_eq!(
            q.rate_options,
            Some(RateOptions {
                counter: true,
                counter_max: i64::MAX,
                reset_value: 1000,
                drop_resets: false
            })
        );
        assert_eq!(q.downsample.as_deref(), Some("1h-avg-nan"));
        assert!(q.explicit_tags);
        assert_eq!(q.tags, Some(vec![("host".into(), "*".into())]));
        assert_eq!(q.uri_filters, [("dc".to_string(), "lga".to_string())]);
        let f = q.resolved_filters().unwrap();
        let summary: Vec<_> = f
            .iter()
            .map(|f| {
                (
                    f.tagk.as_str(),
                    f.filter_type,
                    f.filter.as_str(),
                    f.group_by,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("dc", FilterType::LiteralOr, "lga", false),
                ("host", FilterType::Wildcard, "*", true)
            ]
        );
    }

    #[test]
    fn m_options_and_brace_forms() {
        let q = |m: &str| {
            get(&[("start", "0"), ("m", m)])
                .unwrap()
                .queries
                .unwrap()
                .remove(0)
        };
        let s = q("sum:sys.cpu");
        assert_eq!(
            (s.metric.as_deref(), s.tags.clone()),
            (Some("sys.cpu"), None)
        );
        assert_eq!(q("sum:sys.cpu{}").metric.as_deref(), Some("sys.cpu"));
        let s = q("sum:sys.cpu{}{host=web*}");
        assert_eq!((s.tags.clone().unwrap().len(), s.uri_filters.len()), (0, 1));
        let s = q("max:1m-avg:rate:sys.cpu{host=a|b,dc=regexp(l.*)}");
        assert_eq!(s.downsample.as_deref(), Some("1m-avg"));
        assert!(s.rate && s.rate_options.is_none());
        assert_eq!(s.tags.unwrap()[1], ("dc".into(), "regexp(l.*)".into()));
        // `all-sum` is silently ignored in GET; `0all-sum` works.
        assert_eq!(q("sum:all-sum:m").downsample, None);
        assert_eq!(q("sum:0all-sum:m").downsample.as_deref(), Some("0all-sum"));
        assert!(q("sum:RATE:m").rate);
        let s = q("sum:rate{dropcounter,100}:m");
        assert_eq!(
            s.rate_options,
            Some(RateOptions {
                counter: true,
                counter_max: 100,
                reset_value: 0,
                drop_resets: true
            })
        );
        let s = q("sum:percentiles[50, 99.9]:pre-agg:rollup_raw:m");
        assert_eq!(s.percentiles, Some(vec![50.0, 99.9]));
        assert!(s.pre_aggregate);
        assert_eq!(s.rollup_usage.as_deref(), Some("rollup_raw"));
        assert!(q("sum:show-histogram-buckets:m").show_histogram_buckets);
        assert!(q("sum:whatever:m").metric.is_some());
    }

    #[test]
    fn get_errors() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("m", "sum:m")], "Missing parameter <code>start</code>"),
            (&[("start", ""), ("m", "sum:m")], "Missing parameter <code>start</code>"),
            (&[("start", "1h-ago")], "Missing sub queries"),
            (&[("start", "1h-ago"), ("m", "sum")], "Invalid parameter m=sum (not enough :-separated parts)"),
            (&[("start", "1h-ago"), ("m", "a:b:c:d:e:f")], "Invalid parameter m=a:b:c:d:e:f (too many :-separated parts)"),
            (&[("start", "1h-ago"), ("m", "")], "The query string was empty"),
            (&[("start", "1h-ago"), ("m", "sum:m{host")], "Missing '}' at the end of: m{host"),
            (&[("start", "1h-ago"), ("m", "sum:{}")], "Missing metric and tags: {}"),
            (&[("start", "1h-ago"), ("m", "sum:m}{a=b}")], "Invalid metric and tags: m}{a=b}"),
            (&[("start", "1h-ago"), ("m", "sum:m{host}")], "When parsing tag 'host': invalid tag: host"),
            (&[("start", "1h-ago"), ("m", "sum:m{host=a=b}")], "When parsing tag 'host=a=b': invalid tag: host=a=b"),
            (&[("start", "1h-ago"), ("m", "sum:m{host=nope(x)}")], "When parsing tag 'host=nope(x)': Could not find a tag value filter of the type: nope"),
            (&[("start", "1h-ago"), ("m", "sum:m{}{host=wildcard(x)}")], "When parsing filter 'host=wildcard(x)': Filter must contain an asterisk"),
            (&[("start", "1h-ago"), ("m", "sum:rate{:m")], "Invalid rate options specification: rate{"),
            (&[("start", "1h-ago"), ("m", "sum:rate{counter,x}:m")], "Max value of counter was not a number, received 'x'"),
            (&[("start", "1h-ago"), ("m", "sum:rate{counter,1,y}:m")], "Reset value of counter was not a number, received 'y'"),
            (&[("start", "1h-ago"), ("m", "sum:rate{a,b,c,d}:m")], "Incorrect number of values in rate options specification, must be counter[,counter max value,reset value], recieved: 4 parts"),
            (&[("start", "1h-ago"), ("m", "sum:percentiles(1):m")], "Malformated percentile query paramater: percentiles(1)"),
        ];
        for (pairs, want) in cases {
            let e = get(pairs).unwrap_err();
            assert_eq!(
                (e.status(), e.message().as_str()),
                (400, *want),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn flags_by_presence_last_value_wins_and_dedup() {
        let r = get(&[
            ("start", "2h-ago"),
            ("start", "1h-ago"),
            ("end", "now"),
            ("m", "sum:a"),
            ("m", "sum:a"),
            ("m", "avg:a"),
            ("ms", "false"),
            ("arrays", "true"),
            ("show_query", ""),
            ("show_tsuids", "0"),
        ])
        .unwrap();
        assert_eq!(r.start.as_deref(), Some("1h-ago"));
        assert_eq!(r.end.as_deref(), Some("now"));
        assert!(r.ms_resolution && r.arrays && r.show_query && r.show_tsuids);
        assert!(!r.show_stats && !r.show_summary);
        assert_eq!(r.queries.unwrap().len(), 2);
    }

    #[test]
    fn delete_is_a_flag_the_plan_ignores() {
        let now = 1_700_000_000_000;
        let json =
            r#"{"start":"1h-ago","delete":"true","queries":[{"aggregator":"sum","metric":"m"}]}"#;
        let req = QueryRequest::from_json(json.as_bytes()).unwrap();
        assert!(req.delete);
        // Whether deleting is allowed is the HTTP layer's call.
        let plan = req.plan(now).unwrap();
        assert_eq!((plan.start_ms, plan.end_ms), (now - 3_600_000, now));
        let flag = |extra: &[(&str, &str)]| {
            let mut params = vec![("start", "1h-ago"), ("m", "sum:m")];
            params.extend_from_slice(extra);
            get(&params).unwrap().delete
        };
        assert!(!flag(&[]));
        assert!(flag(&[("delete", "")]));
        assert!(flag(&[("delete", "true")]));
        assert!(!flag(&[("delete", "false")]));
        assert!(!flag(&[("delete", "0")]));
    }

    proptest::proptest! {
        /// Whatever the query string holds, parsing answers, never panics.
        #[test]
        fn get_parsing_never_panics(m in "\\PC{0,40}", start in "\\PC{0,20}") {
            let _ = get(&[("start", &start), ("m", &m)]).map(|r| r.plan(0));
        }

        #[test]
        fn m_grammar_never_panics(m in "[a-z0-9{}=|*:,()\\[\\]-]{0,40}") {
            let _ = get(&[("start", "0"), ("m", &m)]).map(|r| r.plan(1));
        }
    }
}
