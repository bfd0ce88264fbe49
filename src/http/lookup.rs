//! `/api/search/lookup` (OpenTSDB's `SearchRpc.processLookup`): the series
//! that carry a metric and/or tag pairs, where either side of a pair may be
//! `*`. Grafana reads tag keys with `m=<metric>` and tag values with
//! `m=<metric>{<key>=*}`, taking only `results[].tags`.
//!
//! GET: `m=<metric>{k=v,k=*,*=v}` and `limit`; POST:
//! `{"metric","tags":[{"key","value"}],"limit"}`. A name the store has
//! never seen answers 404 `Unable to resolve one or more UIDs`, as
//! OpenTSDB does. `tsuid` is rtsd's series id in hex (see
//! [`super::tsuid`]). OpenTSDB's other search types need a search plugin;
//! rtsd answers them as OpenTSDB without one does.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::input::{ApiRequest, Input};
use super::params::Params;
use super::series_expr::{self, Pattern};
use super::{blocking, body, json_reply, tsuid, ApiError, AppState, TagsJson};
use crate::java::jackson::int_field;
use crate::java::number::parse_int;
use crate::model::NameKind;

/// SearchQuery's default limit.
const DEFAULT_LIMIT: i32 = 25;

/// Most results one lookup returns, whatever `limit` asks for.
const MAX_RESULTS: usize = 100_000;

/// A lookup: the metric (absent, empty or `*` means any) and tag patterns.
#[derive(Debug, Default, PartialEq)]
struct Lookup {
    metric: Option<String>,
    tags: Vec<(Pattern, Pattern)>,
    limit: i32,
}

pub async fn lookup(
    State(state): State<Arc<AppState>>,
    mut req: ApiRequest,
) -> Result<Response, ApiError> {
    check_method(&req.method)?;
    let query = req
        .parse(Input::BODY_OR_QUERY, Lookup::from_params, Lookup::from_json)
        .await?;
    if query.metric.is_none() && query.tags.is_empty() {
        return Err(ApiError::bad_request(
            "Missing metric and tags. Please supply at least one value.",
        ));
    }
    let permit = state.reads.enter().await?;
    let started = Instant::now();
    let body = blocking(move || {
        let _permit = permit;
        let results = run(&state, &query)?;
        Ok(render(&query, &results, started))
    })
    .await?;
    Ok(json_reply(StatusCode::OK, body))
}

/// `/api/search/<anything else>`: OpenTSDB needs a search plugin for these.
pub async fn other_search(method: Method, uri: Uri) -> Result<Response, ApiError> {
    check_method(&method)?;
    let kind = uri
        .path()
        .trim_start_matches("/api/search")
        .trim_start_matches('/');
    match kind {
        "tsmeta" | "tsmeta_summary" | "tsuids" | "uidmeta" | "annotation" => {
            Err(ApiError::bad_request("Searching is not enabled"))
        }
        _ => Err(ApiError::bad_request("Invalid search query type supplied")),
    }
}

fn check_method(method: &Method) -> Result<(), ApiError> {
    if method == Method::GET || method == Method::POST {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "Unsupported method: {method}"
        )))
    }
}

impl Lookup {
    fn from_params(params: &Params) -> Result<Lookup, ApiError> {
        let m = params.required("m")?;
        let (metric, tags) = series_expr::parse_lookup(m)
            .map_err(|msg| ApiError::bad_request("Unable to parse query").with_details(msg))?;
        let limit = match params.get("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => parse_int(text).ok_or_else(|| {
                ApiError::bad_request("Unable to convert 'limit' to a valid number")
            })?,
        };
        Ok(Lookup {
            metric,
            tags,
            limit,
        })
    }

    fn from_json(bytes: &[u8]) -> Result<Lookup, ApiError> {
        #[derive(Deserialize)]
        struct Pair {
            #[serde(default)]
            key: Option<String>,
            #[serde(default)]
            value: Option<String>,
        }
        #[derive(Deserialize)]
        struct Post {
            #[serde(default)]
            metric: Option<String>,
            #[serde(default)]
            tags: Option<Vec<Pair>>,
            #[serde(default)]
            limit: Option<Value>,
        }
        let post: Post = body::json(bytes)?;
        let limit = int_field(post.limit, DEFAULT_LIMIT)
            .ok_or_else(|| ApiError::bad_json("'limit' is not a 32-bit integer"))?;
        Ok(Lookup {
            metric: post.metric,
            tags: post
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.key, p.value))
                .collect(),
            limit,
        })
    }

    /// The metric to match, if one is given (`*` and empty mean any).
    fn metric_filter(&self) -> Option<&str> {
        self.metric
            .as_deref()
            .filter(|m| !m.is_empty() && *m != "*")
    }

    fn result_limit(&self) -> usize {
        if self.limit > 0 {
            (self.limit as usize).min(MAX_RESULTS)
        } else {
            DEFAULT_LIMIT as usize
        }
    }
}

/// Resolves every name first (OpenTSDB fails the lookup on an unknown
/// one), then asks the store.
fn run(state: &AppState, q: &Lookup) -> Result<Vec<crate::model::SeriesMeta>, ApiError> {
    let mut names: Vec<(NameKind, &str)> = Vec::new();
    if let Some(m) = q.metric_filter() {
        names.push((NameKind::Metric, m));
    }
    for (k, v) in &q.tags {
        if !series_expr::is_wildcard(k) {
            names.push((NameKind::TagKey, k.as_deref().unwrap_or_default()));
        }
        if !series_expr::is_wildcard(v) {
            names.push((NameKind::TagValue, v.as_deref().unwrap_or_default()));
        }
    }
    for (kind, name) in names {
        if !state.store.name_exists(kind, name)? {
            return Err(
                ApiError::new(StatusCode::NOT_FOUND, "Unable to resolve one or more UIDs")
                    .with_details(no_such_name(kind, name)),
            );
        }
    }
    let tags: Vec<(String, String)> = q
        .tags
        .iter()
        .map(|(k, v)| (pattern_text(k), pattern_text(v)))
        .collect();
    Ok(state
        .store
        .lookup(q.metric_filter(), &tags, q.result_limit())?)
}

/// The store's spelling of a pattern: `*` for "any".
fn pattern_text(p: &Pattern) -> String {
    if series_expr::is_wildcard(p) {
        "*".to_string()
    } else {
        p.clone().unwrap_or_default()
    }
}

/// OpenTSDB's `NoSuchUniqueName` message.
pub(super) fn no_such_name(kind: NameKind, name: &str) -> String {
    let kind = match kind {
        NameKind::Metric => "metrics",
        NameKind::TagKey => "tagk",
        NameKind::TagValue => "tagv",
    };
    format!("No such name for '{kind}': '{name}'")
}

fn render(q: &Lookup, results: &[crate::model::SeriesMeta], started: Instant) -> String {
    #[derive(Serialize)]
    struct PairOut<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<&'a str>,
    }
    #[derive(Serialize)]
    struct Series<'a> {
        tsuid: String,
        metric: &'a str,
        tags: TagsJson<'a>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        metric: Option<&'a str>,
        tags: Vec<PairOut<'a>>,
        limit: i32,
        time: u128,
        results: Vec<Series<'a>>,
        start_index: u32,
        total_results: usize,
    }
    let answer = Answer {
        kind: "LOOKUP",
        metric: q.metric.as_deref(),
        tags: q
            .tags
            .iter()
            .map(|(k, v)| PairOut {
                key: k.as_deref(),
                value: v.as_deref(),
            })
            .collect(),
        limit: q.limit,
        time: started.elapsed().as_millis(),
        results: results
            .iter()
            .map(|s| Series {
                tsuid: tsuid(s.id),
                metric: s.key.metric(),
                tags: TagsJson(s.key.tags().collect()),
            })
            .collect(),
        start_index: 0,
        total_results: results.len(),
    };
    // Only strings and integers: serialising cannot fail.
    serde_json::to_string(&answer).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(query: &str) -> Result<Lookup, ApiError> {
        Lookup::from_params(&Params::parse(query).unwrap())
    }

    #[test]
    fn get_requests() {
        let q = get("m=sys.cpu%7Bhost%3D*%7D&limit=1000").unwrap();
        assert_eq!(q.metric.as_deref(), Some("sys.cpu"));
        assert_eq!(q.tags, vec![(Some("host".into()), Some("*".into()))]);
        assert_eq!((q.limit, q.result_limit()), (1000, 1000));
        assert_eq!(
            get("").unwrap_err().message,
            "Missing parameter <code>m</code>"
        );
        let e = get("m=a%7Bb").unwrap_err();
        assert_eq!(e.message, "Unable to parse query");
        assert_eq!(e.details.as_deref(), Some("Missing '}' at the end of: a{b"));
        assert_eq!(
            get("m=a&limit=x").unwrap_err().message,
            "Unable to convert 'limit' to a valid number"
        );
        assert_eq!(get("m=a&limit=0").unwrap().result_limit(), 25);
    }

    #[test]
    fn post_requests() {
        let q = Lookup::from_json(
            br#"{"metric":"m","tags":[{"key":"host","value":"*"}],"limit":3,"useMeta":true}"#,
        )
        .unwrap();
        assert_eq!(q.metric_filter(), Some("m"));
        assert_eq!(q.tags, vec![(Some("host".into()), Some("*".into()))]);
        assert_eq!(q.limit, 3);
        let q = Lookup::from_json(br#"{"tags":[{"value":"web01"}]}"#).unwrap();
        assert_eq!((q.metric_filter(), q.limit), (None, 25));
        assert_eq!(q.tags, vec![(None, Some("web01".into()))]);
        assert_eq!(pattern_text(&q.tags[0].0), "*");
    }

    #[test]
    fn unknown_names_use_opentsdb_wording() {
        assert_eq!(
            no_such_name(NameKind::Metric, "x"),
            "No such name for 'metrics': 'x'"
        );
        assert_eq!(
            no_such_name(NameKind::TagValue, "y"),
            "No such name for 'tagv': 'y'"
        );
    }
}
