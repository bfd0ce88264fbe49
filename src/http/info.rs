//! Small informational endpoints, in OpenTSDB's JSON shapes:
//! `/api/version`, `/api/stats`, `/api/aggregators`, `/api/config`,
//! `/api/config/filters` (GET or POST) and `/api/dropcaches` (GET or
//! DELETE), and rtsd's `/health`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::{allow, blocking, json_reply, ApiError, AppState};

fn ok(body: Value) -> Response {
    json_reply(StatusCode::OK, body.to_string())
}

/// OpenTSDB allows only GET and POST on its informational endpoints.
fn read_only(method: &Method) -> Result<(), ApiError> {
    allow(method, &[Method::GET, Method::POST])
}

/// All values are strings, as in OpenTSDB. `version` names the OpenTSDB API
/// level rtsd implements; `rtsd_version` is this build.
pub async fn version(method: Method) -> Result<Response, ApiError> {
    read_only(&method)?;
    Ok(ok(json!({
        "version": "2.4.1",
        "short_revision": "",
        "full_revision": "",
        "timestamp": "",
        "repo_status": "MINT",
        "user": "",
        "host": crate::stats::hostname(),
        "repo": "",
        "branch": "",
        "rtsd_version": env!("CARGO_PKG_VERSION"),
    })))
}

/// `GET /health` (rtsd's own, for load balancers and probes): 200
/// `{"status":"ok"}` while the store takes writes and the writer runs,
/// otherwise 503 in OpenTSDB's error shape with the reason as details.
pub async fn health(
    method: Method,
    State(state): State<Arc<AppState>>,
) -> Result<Response, ApiError> {
    allow(&method, &[Method::GET, Method::HEAD])?;
    match state.stats.health.problem() {
        None => Ok(ok(json!({"status": "ok"}))),
        Some(why) => Err(ApiError::unavailable("Not healthy").with_details(why)),
    }
}

/// `[{"metric","timestamp","value":"<string>","tags":{...,"host"}}]`.
pub async fn stats(
    method: Method,
    State(state): State<Arc<AppState>>,
) -> Result<Response, ApiError> {
    read_only(&method)?;
    let findings = state.survey.findings().await;
    let lines = blocking(move || {
        let store = state.survey.storage_stats(&findings);
        Ok(state.stats.lines(&store))
    })
    .await?;
    let now = crate::model::now_ms() / 1000;
    let host = crate::stats::hostname();
    let body: Vec<Value> = lines
        .into_iter()
        .map(|l| {
            let mut tags: Map<String, Value> =
                l.tags.into_iter().map(|(k, v)| (k.to_string(), Value::String(v))).collect();
            tags.insert("host".into(), Value::String(host.clone()));
            json!({"metric": l.metric, "timestamp": now, "value": l.value.to_string(), "tags": tags})
        })
        .collect();
    Ok(ok(Value::Array(body)))
}

pub async fn aggregators(method: Method) -> Result<Response, ApiError> {
    read_only(&method)?;
    Ok(ok(json!(crate::query::aggregator_names())))
}

pub async fn filters(method: Method) -> Result<Response, ApiError> {
    read_only(&method)?;
    let body: Map<String, Value> = crate::query::filter_descriptions()
        .into_iter()
        .map(|(name, description, examples)| {
            (
                name.to_string(),
                json!({"description": description, "examples": examples}),
            )
        })
        .collect();
    Ok(ok(Value::Object(body)))
}

/// Every setting as a string, like OpenTSDB's config dump. Settings with an
/// OpenTSDB counterpart appear under its `tsd.*` name too, so tools that
/// read e.g. `tsd.storage.max_tags` find it; all of them appear as
/// `rtsd.<config file key>`, and the HTTP layer's limits as `rtsd.http.*`.
pub async fn config(
    method: Method,
    State(state): State<Arc<AppState>>,
) -> Result<Response, ApiError> {
    read_only(&method)?;
    Ok(ok(json!(config_map(&state))))
}

fn config_map(state: &AppState) -> BTreeMap<String, String> {
    let s = &state.settings;
    let opentsdb = [
        ("tsd.core.auto_create_metrics", "true".to_string()),
        ("tsd.core.auto_create_tagks", "true".to_string()),
        ("tsd.core.auto_create_tagvs", "true".to_string()),
        (
            "tsd.core.tag.allow_specialchars",
            s.allow_special_chars.clone(),
        ),
        ("tsd.http.query.allow_delete", s.allow_delete.to_string()),
        ("tsd.mode", "rw".to_string()),
        ("tsd.network.port", s.listen.port().to_string()),
        ("tsd.storage.max_tags", s.max_tags.to_string()),
        ("tsd.core.connections.limit", s.max_connections.to_string()),
    ];
    let http = [
        ("max-body-bytes", state.http.max_body_bytes.to_string()),
        (
            "max-concurrent-reads",
            state.http.max_concurrent_reads.to_string(),
        ),
        ("max-queued-reads", state.http.max_queued_reads.to_string()),
    ];
    let opentsdb = opentsdb.into_iter().map(|(k, v)| (k.to_string(), v));
    let settings = s.shown().into_iter().map(|(k, v)| (format!("rtsd.{k}"), v));
    let http = http.into_iter().map(|(k, v)| (format!("rtsd.http.{k}"), v));
    opentsdb.chain(settings).chain(http).collect()
}

/// Clears the store's caches; `status` is a string in OpenTSDB's reply.
pub async fn dropcaches(
    method: Method,
    State(state): State<Arc<AppState>>,
) -> Result<Response, ApiError> {
    allow(&method, &[Method::GET, Method::DELETE])?;
    blocking(move || {
        state.store.drop_caches();
        Ok(())
    })
    .await?;
    Ok(json_reply(
        StatusCode::OK,
        r#"{"status":"200","message":"Caches dropped"}"#.to_string(),
    ))
}
