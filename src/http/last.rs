//! `/api/query/last` (OpenTSDB's `QueryRpc.handleLastDataPointQuery`): the
//! newest point of each matching series, straight from the store's
//! `last_point`, without aggregation.
//!
//! GET: `timeseries=<metric>{k=v,…}` (repeatable), `tsuids=<hex>[,<hex>]`,
//! `resolve` (presence flag), `back_scan=<hours>`. POST:
//! `{"queries":[{"metric","tags"}|{"tsuids":[…]}],"resolveNames","backScan"}`
//! (`resolve` is taken as a synonym). Answer:
//! `[{"metric"?,"timestamp":<ms>,"value":"<text>","tags"?,"tsuid"}]`, with
//! `metric` and `tags` only under `resolve`, `value` as Java's
//! `Long/Double.toString`.
//!
//! A `timeseries` query matches every series of the metric that carries the
//! given tags, as OpenTSDB's meta-table path does; unlike OpenTSDB, a tag
//! value may be `*` (any value, the key must be present), the wildcard
//! users have long asked for (opentsdb#691, #1064, #2159). `back_scan=N`
//! keeps only points from the current hour and the N before it, as
//! OpenTSDB scans; without it (or 0) the newest point is returned however
//! old. An unknown name answers 400 `No such name for …`, as OpenTSDB's.
//! A `tsuids` query names its series under `resolve` from the series
//! index; an id no series has gives no result, as a TSUID with no data
//! does in OpenTSDB.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::input::{ApiRequest, Input};
use super::lookup::no_such_name;
use super::params::Params;
use super::query::refuse_delete;
use super::{
    blocking, body, json_reply, parse_tsuid, series_expr, tsuid, ApiError, AppState, TagsJson,
};
use crate::java::jackson::int_field;
use crate::java::number::parse_int;
use crate::model::{DataPoint, NameKind, SeriesKey, Value, HOUR_MS};

/// One sub-query.
#[derive(Debug, Clone, PartialEq)]
enum Sub {
    Series {
        metric: String,
        tags: Vec<(String, String)>,
    },
    Tsuids(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
struct LastQuery {
    subs: Vec<Sub>,
    resolve: bool,
    back_scan: i32,
}

pub async fn last(
    State(state): State<Arc<AppState>>,
    mut req: ApiRequest,
) -> Result<Response, ApiError> {
    refuse_delete(&req.method, state.settings.allow_delete)?;
    let query = req
        .parse(
            Input::POST_BODY,
            LastQuery::from_params,
            LastQuery::from_json,
        )
        .await?;
    if query.subs.is_empty() {
        return Err(ApiError::bad_request("Missing sub queries"));
    }
    let permit = state.reads.enter().await?;
    let body = blocking(move || {
        let _permit = permit;
        let found = run(&state, &query, crate::model::now_ms())?;
        Ok(render(&found, query.resolve))
    })
    .await?;
    Ok(json_reply(StatusCode::OK, body))
}

impl LastQuery {
    fn from_params(params: &Params) -> Result<LastQuery, ApiError> {
        let back_scan = if params.has("back_scan") {
            params
                .get("back_scan")
                .and_then(parse_int)
                .ok_or_else(|| ApiError::bad_request("Unable to parse back_scan parameter"))?
        } else {
            0
        };
        let mut subs = Vec::new();
        for text in params.all("timeseries") {
            let (metric, tags) = series_expr::parse_exact(text).map_err(ApiError::bad_request)?;
            subs.push(Sub::Series { metric, tags });
        }
        for text in params.all("tsuids") {
            subs.push(Sub::Tsuids(text.split(',').map(str::to_string).collect()));
        }
        Ok(LastQuery {
            subs,
            resolve: params.has("resolve"),
            back_scan,
        })
    }

    fn from_json(bytes: &[u8]) -> Result<LastQuery, ApiError> {
        #[derive(Deserialize)]
        struct PostSub {
            #[serde(default)]
            metric: Option<String>,
            #[serde(default)]
            tags: Option<BTreeMap<String, String>>,
            #[serde(default)]
            tsuids: Option<Vec<String>>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Post {
            #[serde(default)]
            queries: Vec<PostSub>,
            #[serde(default, alias = "resolve")]
            resolve_names: bool,
            #[serde(default)]
            back_scan: Option<Json>,
        }
        let post: Post = body::json(bytes)?;
        let back_scan = int_field(post.back_scan, 0)
            .ok_or_else(|| ApiError::bad_json("'backScan' is not a 32-bit integer"))?;
        let subs = post
            .queries
            .into_iter()
            .map(|q| match q.tsuids.filter(|t| !t.is_empty()) {
                // OpenTSDB: TSUIDs take precedence over a metric.
                Some(tsuids) => Ok(Sub::Tsuids(tsuids)),
                None => Ok(Sub::Series {
                    metric: q.metric.filter(|m| !m.is_empty()).ok_or_else(|| {
                        ApiError::bad_request("Missing metric or tsuids in a sub query")
                    })?,
                    tags: q.tags.unwrap_or_default().into_iter().collect(),
                }),
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(LastQuery {
            subs,
            resolve: post.resolve_names,
            back_scan,
        })
    }
}

/// A series' newest point, and the series when it is known.
struct Found {
    id: u64,
    key: Option<SeriesKey>,
    point: DataPoint,
}

fn run(state: &AppState, q: &LastQuery, now_ms: i64) -> Result<Vec<Found>, ApiError> {
    let cutoff = (q.back_scan > 0)
        .then(|| now_ms - now_ms.rem_euclid(HOUR_MS) - i64::from(q.back_scan) * HOUR_MS);
    let recent = |p: &DataPoint| cutoff.map_or(true, |c| p.timestamp_ms >= c);
    let mut found = Vec::new();
    for sub in &q.subs {
        match sub {
            Sub::Tsuids(tsuids) => {
                let ids = tsuids
                    .iter()
                    .map(|text| {
                        parse_tsuid(text)
                            .ok_or_else(|| ApiError::bad_request(format!("Invalid TSUID: {text}")))
                    })
                    .collect::<Result<Vec<u64>, _>>()?;
                let mut keys: BTreeMap<u64, SeriesKey> = BTreeMap::new();
                if q.resolve {
                    let known = state.store.series_by_ids(&ids)?;
                    keys.extend(known.into_iter().map(|s| (s.id, s.key)));
                }
                for id in ids {
                    if let Some(point) = state.store.last_point(id)?.filter(recent) {
                        found.push(Found {
                            id,
                            key: keys.remove(&id),
                            point,
                        });
                    }
                }
            }
            Sub::Series { metric, tags } => {
                resolve_names(state, metric, tags)?;
                let series = state
                    .store
                    .lookup(Some(metric), tags, state.limits.max_series)?;
                for s in series {
                    if let Some(point) = state.store.last_point(s.id)?.filter(recent) {
                        found.push(Found {
                            id: s.id,
                            key: Some(s.key),
                            point,
                        });
                    }
                }
            }
        }
    }
    Ok(found)
}

/// Every name must exist, as OpenTSDB resolves them to UIDs first.
fn resolve_names(
    state: &AppState,
    metric: &str,
    tags: &[(String, String)],
) -> Result<(), ApiError> {
    let mut names = vec![(NameKind::Metric, metric)];
    for (k, v) in tags {
        names.push((NameKind::TagKey, k.as_str()));
        if v != "*" {
            names.push((NameKind::TagValue, v.as_str()));
        }
    }
    for (kind, name) in names {
        if !state.store.name_exists(kind, name)? {
            let msg = no_such_name(kind, name);
            return Err(ApiError::bad_request(msg.clone()).with_details(msg));
        }
    }
    Ok(())
}

fn render(found: &[Found], resolve: bool) -> String {
    #[derive(Serialize)]
    struct Last<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        metric: Option<&'a str>,
        timestamp: i64,
        value: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        tags: Option<TagsJson<'a>>,
        tsuid: String,
    }
    let out: Vec<Last<'_>> = found
        .iter()
        .map(|f| {
            let key = f.key.as_ref().filter(|_| resolve);
            Last {
                metric: key.map(SeriesKey::metric),
                timestamp: f.point.timestamp_ms,
                value: value_text(f.point.value),
                tags: key.map(|k| TagsJson(k.tags().collect())),
                tsuid: tsuid(f.id),
            }
        })
        .collect();
    // Strings and integers only: serialising cannot fail.
    serde_json::to_string(&out).unwrap_or_default()
}

/// `Long.toString` / `Double.toString`.
fn value_text(v: Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Float(f) => crate::java::double_text::java_double(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(q: &str) -> Result<LastQuery, ApiError> {
        LastQuery::from_params(&Params::parse(q).unwrap())
    }

    #[test]
    fn get_requests() {
        let q = get("timeseries=sys.cpu%7Bhost%3D*%7D&tsuids=2A,2B&resolve&back_scan=24").unwrap();
        assert_eq!(
            q.subs,
            vec![
                Sub::Series {
                    metric: "sys.cpu".into(),
                    tags: vec![("host".into(), "*".into())]
                },
                Sub::Tsuids(vec!["2A".into(), "2B".into()]),
            ]
        );
        assert!(q.resolve);
        assert_eq!(q.back_scan, 24);
        assert!(get("").unwrap().subs.is_empty());
        assert_eq!(
            get("back_scan=x").unwrap_err().message,
            "Unable to parse back_scan parameter"
        );
        assert_eq!(
            get("timeseries=m%7Ba").unwrap_err().message,
            "Missing '}' at the end of: m{a"
        );
    }

    #[test]
    fn post_requests() {
        let q = LastQuery::from_json(
            br#"{"queries":[{"metric":"m","tags":{"host":"a"}},{"tsuids":["01"]}],"resolveNames":true,"backScan":2}"#,
        )
        .unwrap();
        assert_eq!(
            q,
            LastQuery {
                subs: vec![
                    Sub::Series {
                        metric: "m".into(),
                        tags: vec![("host".into(), "a".into())]
                    },
                    Sub::Tsuids(vec!["01".into()]),
                ],
                resolve: true,
                back_scan: 2,
            }
        );
        assert!(
            LastQuery::from_json(br#"{"queries":[],"resolve":true}"#)
                .unwrap()
                .resolve
        );
        assert_eq!(
            LastQuery::from_json(b"").unwrap_err().message,
            "Missing message content"
        );
    }

    #[test]
    fn values_print_like_java() {
        assert_eq!(value_text(Value::Int(42)), "42");
        assert_eq!(value_text(Value::Float(30.0)), "30.0");
        assert_eq!(value_text(Value::Float(1e7)), "1.0E7");
    }

    #[test]
    fn rendering_shows_names_only_when_resolving() {
        let found = vec![Found {
            id: 1,
            key: Some(SeriesKey::new("m", [("host", "a")])),
            point: DataPoint {
                timestamp_ms: 1_700_000_000_000,
                value: Value::Float(1.5),
            },
        }];
        assert_eq!(
            render(&found, false),
            r#"[{"timestamp":1700000000000,"value":"1.5","tsuid":"0000000000000001"}]"#
        );
        assert_eq!(
            render(&found, true),
            r#"[{"metric":"m","timestamp":1700000000000,"value":"1.5","tags":{"host":"a"},"tsuid":"0000000000000001"}]"#
        );
    }
}
