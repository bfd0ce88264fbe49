//! `/api/annotation` and `/api/annotation/bulk` (OpenTSDB's `AnnotationRpc`;
//! `/api/annotations` is the same endpoint), and the annotations
//! `/api/query` writes into its answer ([`for_query`]).
//!
//! A note belongs to a series, named by its TSUID (rtsd's hex series id,
//! as `showTSUIDs` prints it), or, without one, to everything (global).
//! It is identified by that and its `startTime`, epoch seconds or ms.
//!
//! - GET reads one note: 404 `Unable to locate annotation in storage`.
//! - POST creates or updates: fields the request leaves at their default
//!   (empty text, `endTime` 0, no `custom`) keep their stored values. PUT
//!   replaces every field. A request that sets nothing answers 304 without
//!   storing, as OpenTSDB does. Both answer the stored note.
//! - DELETE removes one note and answers 204, whether it existed or not.
//! - `/bulk` POST/PUT take an array and answer the stored notes (those
//!   that set nothing are skipped); DELETE removes, for a time range, the
//!   notes of `tsuids` and with `global` the global ones, and answers the
//!   request with `totalDeleted`.
//!
//! Without a body, the single endpoint reads `tsuid`, `start_time`,
//! `end_time`, `description` and `notes` from the query string, times in
//! any `/api/query` form, truncated to seconds as OpenTSDB does; bulk
//! DELETE reads `start_time` (required), `end_time` (default now), `tsuids`
//! (comma-separated) and the flag `global`.
//!
//! Differences from OpenTSDB, on purpose: deletes (single and bulk) are
//! refused with 400 unless `allow-delete` is on, and need the admin scope
//! when auth is on, so no anonymous client can erase notes; a note can only be written for a
//! series that exists (400 `No such TSUID`, the query's text), because
//! rtsd hands out ids in sequence and a note on an unused id would later
//! land on an unrelated series; a bulk write checks every note before it
//! stores any, then stores all in one batch, where OpenTSDB may store some
//! before failing; malformed JSON is OpenTSDB's usual 400 rather than the
//! 500 its annotation parser gives; `method_override` is not supported.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::input::{ApiRequest, Input};
use super::params::Params;
use super::{allow, blocking, body, json_reply, parse_tsuid, tsuid, ApiError, AppState};
use crate::backend::Backend;
use crate::java::jackson::scalar_text;
use crate::model::epoch_ms;
use crate::query::output::RenderedAnnotations;
use crate::query::time::parse_time;
use crate::query::{QueryRequest, QueryResponse};
use crate::storage::Annotation;

/// `/api/annotation` and `/api/annotations`.
pub async fn single(
    State(state): State<Arc<AppState>>,
    mut req: ApiRequest,
) -> Result<Response, ApiError> {
    allow(
        &req.method,
        &[Method::GET, Method::POST, Method::PUT, Method::DELETE],
    )?;
    let given = req
        .parse(
            Input::BODY_OR_QUERY,
            |params| from_params(params, crate::model::now_ms()),
            |bytes| Ok(to_note(object(body::json(bytes)?)?)?.1),
        )
        .await?;
    let method = req.method;
    blocking(move || match method {
        Method::GET => get(&*state.store, &given),
        Method::DELETE => {
            deletes_allowed(&state)?;
            delete(&*state.store, &given)
        }
        _ => write(&*state.store, given, method == Method::PUT),
    })
    .await
}

/// `/api/annotation/<rest>`: `bulk` when the first segment ends with it,
/// as OpenTSDB decides, else the single endpoint.
pub async fn nested(
    Path(rest): Path<String>,
    state: State<Arc<AppState>>,
    mut req: ApiRequest,
) -> Result<Response, ApiError> {
    let first = rest.split('/').next().unwrap_or_default();
    if !first.ends_with("bulk") {
        return single(state, req).await;
    }
    let State(state) = state;
    allow(&req.method, &[Method::POST, Method::PUT, Method::DELETE])?;
    if req.method == Method::DELETE {
        deletes_allowed(&state)?;
        let request = req
            .parse(Input::BODY_OR_QUERY, BulkDelete::from_params, |bytes| {
                object(body::json(bytes)?)
            })
            .await?;
        return blocking(move || bulk_delete(&*state.store, request, crate::model::now_ms())).await;
    }
    let replace = req.method == Method::PUT;
    let posted = body::json::<Vec<JsonObject>>(&req.body().await?)?
        .into_iter()
        .map(object)
        .collect::<Result<Vec<Posted>, _>>()?;
    blocking(move || bulk_write(&*state.store, posted, replace)).await
}

type JsonObject = serde_json::Map<String, Json>;

/// Binds a JSON object to `T`. Going through the object keeps serde from
/// also accepting an array of the fields in declaration order.
fn object<T: serde::de::DeserializeOwned>(fields: JsonObject) -> Result<T, ApiError> {
    serde_json::from_value(Json::Object(fields)).map_err(ApiError::bad_json)
}

/// A note as posted. Jackson takes numbers as strings and strings as
/// numbers; unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Posted {
    tsuid: Option<String>,
    #[serde(rename = "startTime")]
    start_time: Json,
    #[serde(rename = "endTime")]
    end_time: Json,
    description: Option<String>,
    notes: Option<String>,
    custom: Option<BTreeMap<String, String>>,
}

/// A JSON long the way Jackson reads one into a Java `long`.
fn long(field: &str, v: &Json) -> Result<i64, ApiError> {
    let n = match v {
        Json::Null => Some(0),
        Json::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| ApiError::bad_json(format!("cannot read {field} {v} as a long")))
}

/// The note and the TSUID text it was posted with (for error details).
fn to_note(p: Posted) -> Result<(String, Annotation), ApiError> {
    let text = p.tsuid.unwrap_or_default();
    let note = Annotation {
        series: series_of(&text)?,
        start_time: long("startTime", &p.start_time)?,
        end_time: long("endTime", &p.end_time)?,
        description: p.description.unwrap_or_default(),
        notes: p.notes.unwrap_or_default(),
        custom: p.custom,
    };
    Ok((text, note))
}

/// An empty TSUID means a global note.
fn series_of(text: &str) -> Result<Option<u64>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    parse_tsuid(text)
        .map(Some)
        .ok_or_else(|| invalid_tsuid(text))
}

/// A `BadRequestException(e)`: message and details both the reason.
fn invalid_tsuid(text: &str) -> ApiError {
    let message = format!("Invalid TSUID: {text}");
    ApiError::bad_request(&message).with_details(message)
}

/// `AnnotationRpc.parseQS`: times are truncated to seconds; a missing or
/// non-positive start is "Missing start time".
fn from_params(params: &Params, now_ms: i64) -> Result<Annotation, ApiError> {
    let seconds = |key: &str| -> Result<i64, ApiError> {
        match params.get(key).filter(|v| !v.is_empty()) {
            Some(text) => Ok(parse_time(text, now_ms, None)? / 1000),
            None => Ok(0),
        }
    };
    let start_time = seconds("start_time")?;
    if start_time < 1 {
        return Err(ApiError::bad_request("Missing start time"));
    }
    Ok(Annotation {
        series: series_of(params.get("tsuid").unwrap_or_default())?,
        start_time,
        end_time: seconds("end_time")?,
        description: params.get("description").unwrap_or_default().to_string(),
        notes: params.get("notes").unwrap_or_default().to_string(),
        custom: None,
    })
}

/// Whether the request sets any field: OpenTSDB stores nothing otherwise.
fn sets_anything(n: &Annotation) -> bool {
    n.end_time != 0 || !n.description.is_empty() || !n.notes.is_empty() || n.custom.is_some()
}

/// `syncNote`: the earlier spelling of the start wins; POST keeps stored
/// values where the request left the default, PUT replaces them all.
fn merge(stored: Annotation, given: Annotation, replace: bool) -> Annotation {
    let start_time = if stored.start_time > 0 && stored.start_time < given.start_time {
        stored.start_time
    } else {
        given.start_time
    };
    if replace {
        return Annotation {
            start_time,
            ..given
        };
    }
    let or = |given: String, stored: String| if given.is_empty() { stored } else { given };
    Annotation {
        series: given.series,
        start_time,
        end_time: if given.end_time != 0 {
            given.end_time
        } else {
            stored.end_time
        },
        description: or(given.description, stored.description),
        notes: or(given.notes, stored.notes),
        custom: given.custom.or(stored.custom),
    }
}

/// OpenTSDB's `Annotation.toString()`, the `details` of a bulk failure.
fn describe(tsuid: &str, n: &Annotation) -> String {
    format!(
        "Annotation error: TSUID: {tsuid} Start: {}  Description: {}",
        n.start_time, n.description
    )
}

fn no_start() -> String {
    "The start timestamp has not been set".to_string()
}

fn get(store: &dyn Backend, given: &Annotation) -> Result<Response, ApiError> {
    if given.start_time < 1 {
        return Err(ApiError::bad_request("Missing start time"));
    }
    match store.notes().get(given.series, given.start_ms())? {
        Some(found) => Ok(json_reply(StatusCode::OK, render(&found))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Unable to locate annotation in storage",
        )),
    }
}

/// Annotation deletes follow `allow-delete`, as query deletes do (OpenTSDB
/// lets anyone delete annotations); the admin scope is [`super::guard`]'s.
fn deletes_allowed(state: &AppState) -> Result<(), ApiError> {
    match state.settings.allow_delete {
        true => Ok(()),
        false => Err(ApiError::bad_request("Bad request")
            .with_details("Deleting annotations is not enabled (allow-delete=false)")),
    }
}

fn delete(store: &dyn Backend, given: &Annotation) -> Result<Response, ApiError> {
    if given.start_time < 1 {
        return Err(
            ApiError::bad_request("Unable to delete Annotation information")
                .with_details(no_start()),
        );
    }
    store.notes().delete(given.series, given.start_ms())?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn write(store: &dyn Backend, given: Annotation, replace: bool) -> Result<Response, ApiError> {
    if given.start_time < 1 {
        return Err(ApiError::bad_request(no_start()).with_details(no_start()));
    }
    if !sets_anything(&given) {
        return Ok(StatusCode::NOT_MODIFIED.into_response());
    }
    if let Some(id) = unknown_series(store, given.series.as_slice())? {
        let message = format!("No such TSUID: {}", tsuid(id));
        return Err(ApiError::bad_request(&message).with_details(message));
    }
    let stored = store
        .notes()
        .upsert(vec![given], &|s, g| merge(s, g, replace))?;
    Ok(json_reply(StatusCode::OK, render(&stored[0])))
}

/// The first of `ids` no series has.
fn unknown_series(store: &dyn Backend, ids: &[u64]) -> Result<Option<u64>, ApiError> {
    if ids.is_empty() {
        return Ok(None);
    }
    let known = store.series_by_ids(ids)?;
    Ok(ids
        .iter()
        .copied()
        .find(|id| !known.iter().any(|s| s.id == *id)))
}

fn bulk_write(
    store: &dyn Backend,
    posted: Vec<Posted>,
    replace: bool,
) -> Result<Response, ApiError> {
    let mut notes = Vec::with_capacity(posted.len());
    for p in posted {
        let (text, note) = to_note(p)?;
        if note.start_time < 1 {
            return Err(ApiError::bad_request(no_start()).with_details(describe(&text, &note)));
        }
        if !sets_anything(&note) {
            continue;
        }
        if let Some(id) = unknown_series(store, note.series.as_slice())? {
            return Err(
                ApiError::bad_request(format!("No such TSUID: {}", tsuid(id)))
                    .with_details(describe(&text, &note)),
            );
        }
        notes.push(note);
    }
    let stored = store.notes().upsert(notes, &|s, g| merge(s, g, replace))?;
    let mut out = String::from("[");
    for (i, n) in stored.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&render(n));
    }
    out.push(']');
    Ok(json_reply(StatusCode::OK, out))
}

/// `AnnotationBulkDelete`: times as text in any query form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BulkDelete {
    tsuids: Option<Vec<String>>,
    global: Json,
    #[serde(rename = "startTime")]
    start_time: Json,
    #[serde(rename = "endTime")]
    end_time: Json,
}

impl BulkDelete {
    /// `parseBulkDeleteQS`.
    fn from_params(params: &Params) -> Result<BulkDelete, ApiError> {
        let text = |s: &str| Json::String(s.to_string());
        Ok(BulkDelete {
            start_time: text(params.required("start_time")?),
            end_time: params.get("end_time").map_or(Json::Null, text),
            tsuids: params
                .get("tsuids")
                .map(|t| t.split(',').map(|s| s.trim().to_string()).collect()),
            global: Json::Bool(params.has("global")),
        })
    }
}

#[derive(Serialize)]
struct Deleted<'a> {
    tsuids: Option<&'a [String]>,
    global: bool,
    #[serde(rename = "startTime")]
    start_time: i64,
    #[serde(rename = "endTime")]
    end_time: i64,
    #[serde(rename = "totalDeleted")]
    total_deleted: usize,
}

fn bulk_delete(store: &dyn Backend, req: BulkDelete, now_ms: i64) -> Result<Response, ApiError> {
    let start = scalar_text(&req.start_time).filter(|s| !s.is_empty());
    let Some(start) = start else {
        return Err(ApiError::bad_request("Missing the start time value"));
    };
    let global = match &req.global {
        Json::Bool(b) => *b,
        Json::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    let tsuids = req.tsuids.as_deref().unwrap_or_default();
    if !global && tsuids.is_empty() {
        return Err(ApiError::bad_request(
            "Missing the TSUIDs or global annotations flag",
        ));
    }
    // Anything else wrong is a `BadRequestException(e)`: message and
    // details both the reason.
    let time = |text: &str| {
        parse_time(text, now_ms, None).map_err(|e| {
            let e = ApiError::from(e);
            ApiError::bad_request(&e.message).with_details(e.message)
        })
    };
    let start_ms = time(&start)?;
    let end_ms = match scalar_text(&req.end_time).filter(|s| !s.is_empty()) {
        Some(end) => time(&end)?,
        None => now_ms,
    };
    let mut scopes = Vec::with_capacity(tsuids.len() + 1);
    if global {
        scopes.push(None);
    }
    for text in tsuids {
        scopes.push(Some(parse_tsuid(text).ok_or_else(|| invalid_tsuid(text))?));
    }
    let notes = store.notes();
    let mut total_deleted = 0;
    for series in scopes {
        total_deleted += notes.delete_range(series, start_ms, end_ms)?;
    }
    let answer = Deleted {
        tsuids: req.tsuids.as_deref(),
        global,
        start_time: start_ms,
        end_time: end_ms,
        total_deleted,
    };
    // Strings, integers and booleans always serialise.
    Ok(json_reply(
        StatusCode::OK,
        serde_json::to_string(&answer).unwrap_or_default(),
    ))
}

/// A note as OpenTSDB writes one (`Annotation` through Jackson): its
/// fields in that order, `tsuid` empty for a global note, `custom` left
/// out when there is none.
fn render(n: &Annotation) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        tsuid: String,
        description: &'a str,
        notes: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        custom: Option<&'a BTreeMap<String, String>>,
        #[serde(rename = "endTime")]
        end_time: i64,
        #[serde(rename = "startTime")]
        start_time: i64,
    }
    let out = Out {
        tsuid: n.series.map(tsuid).unwrap_or_default(),
        description: &n.description,
        notes: &n.notes,
        custom: n.custom.as_ref(),
        end_time: n.end_time,
        start_time: n.start_time,
    };
    // Strings, integers and a string map always serialise.
    serde_json::to_string(&out).unwrap_or_default()
}

/// The annotations of a query's answer: per result group, the notes of
/// its series starting within the query's range, by start, unless
/// `noAnnotations`; with `globalAnnotations`, the global notes of the
/// range, written into every group (as OpenTSDB does, so there are none
/// without a group). Runs after [`crate::query::execute`] so the engine
/// stays free of storage.
pub fn for_query(
    store: &dyn Backend,
    request: &QueryRequest,
    response: &QueryResponse,
    now_ms: i64,
) -> Result<RenderedAnnotations, ApiError> {
    let mut out = RenderedAnnotations::default();
    if response.results.is_empty() || (request.no_annotations && !request.global_annotations) {
        return Ok(out);
    }
    // The same `now` as the query's, so the same range.
    let plan = request.plan(now_ms)?;
    let (start, end) = (plan.start_ms, plan.end_ms);
    let notes = store.notes();
    if request.global_annotations {
        out.global = notes.range(None, start, end)?.iter().map(render).collect();
    }
    if !request.no_annotations {
        let ids = response.series_ids();
        let mut by_series: HashMap<u64, Vec<Annotation>> = HashMap::new();
        for note in notes.of_series(&ids, start, end)? {
            by_series
                .entry(note.series.unwrap_or_default())
                .or_default()
                .push(note);
        }
        if !by_series.is_empty() {
            out.groups = response
                .results
                .iter()
                .map(|r| {
                    let mut found: Vec<&Annotation> = r
                        .tsuids
                        .iter()
                        .filter_map(|id| by_series.get(id))
                        .flatten()
                        .collect();
                    found.sort_by_key(|n| epoch_ms(n.start_time));
                    found.into_iter().map(render).collect()
                })
                .collect();
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posted(json: &str) -> Result<(String, Annotation), ApiError> {
        to_note(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn posted_notes_take_jackson_coercions() {
        let (text, n) = posted(
            r#"{"startTime":"1369141261","tsuid":"2a","description":"d","custom":{"a":"b"},"x":1}"#,
        )
        .unwrap();
        assert_eq!(text, "2a");
        assert_eq!(n.series, Some(42));
        assert_eq!(n.start_time, 1_369_141_261);
        assert_eq!(n.end_time, 0);
        assert!(sets_anything(&n));
        let (_, global) = posted(r#"{"startTime":5,"tsuid":""}"#).unwrap();
        assert_eq!(global.series, None);
        assert!(!sets_anything(&global));
        let err = posted(r#"{"startTime":5,"tsuid":"xyz"}"#).unwrap_err();
        assert_eq!(
            err.to_json(),
            r#"{"error":{"code":400,"message":"Invalid TSUID: xyz","details":"Invalid TSUID: xyz"}}"#
        );
        assert_eq!(
            posted(r#"{"startTime":"soon"}"#).unwrap_err().message,
            "Unable to parse the given JSON"
        );
    }

    #[test]
    fn query_strings_are_truncated_to_seconds() {
        let p =
            Params::parse("start_time=1369141261500ms&tsuid=2A&notes=n&end_time=1h-ago").unwrap();
        let n = from_params(&p, 1_369_141_300_000).unwrap();
        assert_eq!(n.start_time, 1_369_141_261);
        assert_eq!(n.end_time, 1_369_137_700);
        assert_eq!((n.series, n.notes.as_str()), (Some(42), "n"));
        for missing in ["", "start_time=", "tsuid=2A"] {
            let err = from_params(&Params::parse(missing).unwrap(), 0).unwrap_err();
            assert_eq!(err.message, "Missing start time");
        }
    }

    #[test]
    fn post_merges_and_put_replaces() {
        let stored = Annotation {
            series: Some(1),
            start_time: 100,
            end_time: 200,
            description: "old".into(),
            notes: "kept".into(),
            custom: Some(BTreeMap::from([("k".into(), "v".into())])),
        };
        let given = Annotation {
            series: Some(1),
            start_time: 100_000,
            description: "new".into(),
            ..Annotation::default()
        };
        let merged = merge(stored.clone(), given.clone(), false);
        assert_eq!(
            merged,
            Annotation {
                description: "new".into(),
                ..stored.clone()
            }
        );
        let replaced = merge(stored, given.clone(), true);
        assert_eq!(
            replaced,
            Annotation {
                start_time: 100,
                ..given
            }
        );
    }

    #[test]
    fn notes_render_in_opentsdb_field_order() {
        let mut n = Annotation {
            series: Some(42),
            start_time: 1_369_141_261,
            description: "Deploy \"v2\"".into(),
            ..Annotation::default()
        };
        assert_eq!(
            render(&n),
            r#"{"tsuid":"000000000000002A","description":"Deploy \"v2\"","notes":"","endTime":0,"startTime":1369141261}"#
        );
        n.series = None;
        n.custom = Some(BTreeMap::from([("owner".into(), "jdoe".into())]));
        assert_eq!(
            render(&n),
            r#"{"tsuid":"","description":"Deploy \"v2\"","notes":"","custom":{"owner":"jdoe"},"endTime":0,"startTime":1369141261}"#
        );
        assert_eq!(
            describe("", &n),
            "Annotation error: TSUID:  Start: 1369141261  Description: Deploy \"v2\""
        );
    }
}
