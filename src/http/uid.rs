//! `/api/uid/assign` (OpenTSDB's `UniqueIdRpc.handleAssign`), answered in
//! OpenTSDB's shape although rtsd has no per-name UIDs.
//!
//! OpenTSDB gives every metric, tag key and tag value a 3-byte UID, and
//! tools call `assign` to create names ahead of writing (typically when
//! `auto_create_metrics` is off). rtsd has one id per *series* and creates
//! names with the first point that uses them, so:
//!
//! - a name the store already knows is reported as OpenTSDB reports an
//!   existing one, `Name already exists with UID: <id>`, where `<id>` is
//!   the TSUID (hex series id) of the first series that carries the name —
//!   the same id `/api/search/lookup` shows, usable with
//!   `/api/query/last?tsuids=`;
//! - a valid name the store does not know yet cannot be registered without
//!   data: it is reported in `<type>_errors` with a message saying so,
//!   instead of a made-up UID. Writing a point creates it.
//! - an invalid name gets OpenTSDB's `Invalid <type> ("…"): illegal
//!   character: …` text; a type other than `metric`, `tagk` or `tagv` gets
//!   `Unknown type name`.
//!
//! As in OpenTSDB, the `<type>` map is present for every type asked about
//! and `<type>_errors` holds the names that got no UID; since no name ever
//! gets one here, the map is empty and the status is always 400. The other
//! `/api/uid/*` endpoints (UID and TS meta, rename) are not implemented:
//! 501.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::input::{ApiRequest, Input};
use super::params::Params;
use super::put_check::first_illegal;
use super::{allow, blocking, body, json_reply, tsuid, ApiError, AppState};
use crate::model::NameKind;

pub async fn assign(
    State(state): State<Arc<AppState>>,
    mut req: ApiRequest,
) -> Result<Response, ApiError> {
    allow(&req.method, &[Method::GET, Method::POST])?;
    let request = req
        .parse(
            Input::POST_BODY,
            |params| Ok(from_params(params)),
            from_json,
        )
        .await?;
    if request.is_empty() {
        return Err(ApiError::bad_request("Missing values to assign UIDs"));
    }
    let answers = blocking(move || {
        let mut answers = Vec::with_capacity(request.len());
        for (kind, names) in request {
            let mut errors = BTreeMap::new();
            for name in names {
                let why = answer(&state, &kind, &name)?;
                errors.insert(name, why);
            }
            answers.push((kind, errors));
        }
        Ok(answers)
    })
    .await?;
    // Every name fails (see the module doc), so the status is always 400.
    Ok(json_reply(StatusCode::BAD_REQUEST, render(answers)))
}

/// `/api/uid` and `/api/uid/<other>`.
pub async fn not_implemented() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "Other UID endpoints have not been implemented yet",
    )
}

/// GET: `metric=a,b&tagk=…&tagv=…`, each a comma-separated list.
fn from_params(params: &Params) -> Vec<(String, Vec<String>)> {
    ["metric", "tagk", "tagv"]
        .into_iter()
        .filter_map(|kind| {
            let values = params.get(kind).filter(|v| !v.is_empty())?;
            Some((
                kind.to_string(),
                values.split(',').map(str::to_string).collect(),
            ))
        })
        .collect()
}

/// POST: `{"metric":["a"],"tagk":[…],"tagv":[…]}`; any key is taken (an
/// unknown type fails per name, as in OpenTSDB).
fn from_json(bytes: &[u8]) -> Result<Vec<(String, Vec<String>)>, ApiError> {
    let posted: BTreeMap<String, Vec<Value>> = body::json(bytes)?;
    Ok(posted
        .into_iter()
        .map(|(kind, names)| {
            let names = names
                .into_iter()
                .map(|n| match n {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect();
            (kind, names)
        })
        .collect())
}

/// Why `name` gets no new UID, checked in `TSDB.assignUid`'s order: the
/// name's characters, the type, whether it exists.
fn answer(state: &AppState, kind: &str, name: &str) -> Result<String, ApiError> {
    if name.is_empty() {
        return Ok(format!("Invalid {kind}: empty string"));
    }
    if let Some(ch) = first_illegal(name, &state.parse) {
        return Ok(format!(
            "Invalid {kind} (\"{name}\"): illegal character: {ch}"
        ));
    }
    let (name_kind, tag_pattern) = match kind.to_ascii_lowercase().as_str() {
        "metric" => (NameKind::Metric, None),
        "tagk" => (NameKind::TagKey, Some((name.to_string(), "*".to_string()))),
        "tagv" => (
            NameKind::TagValue,
            Some(("*".to_string(), name.to_string())),
        ),
        _ => return Ok("Unknown type name".to_string()),
    };
    if !state.store.name_exists(name_kind, name)? {
        return Ok(format!(
            "Name not assigned: rtsd has no per-name UIDs; '{name}' is created by the first data point that uses it"
        ));
    }
    let first = match tag_pattern {
        None => state.store.lookup(Some(name), &[], 1)?,
        Some(tag) => state.store.lookup(None, &[tag], 1)?,
    };
    Ok(match first.first() {
        Some(series) => format!("Name already exists with UID: {}", tsuid(series.id)),
        None => "Name already exists".to_string(),
    })
}

/// `{"<type>":{},"<type>_errors":{name:msg}}`, names sorted as in
/// OpenTSDB's `TreeMap`s.
fn render(answers: Vec<(String, BTreeMap<String, String>)>) -> String {
    let mut out = serde_json::Map::new();
    for (kind, errors) in answers {
        out.insert(kind.clone(), Value::Object(serde_json::Map::new()));
        if !errors.is_empty() {
            out.insert(format!("{kind}_errors"), serde_json::json!(errors));
        }
    }
    Value::Object(out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_from_both_transports() {
        let p = Params::parse("metric=a,b&tagv=x&tagk=").unwrap();
        assert_eq!(
            from_params(&p),
            vec![
                ("metric".to_string(), vec!["a".to_string(), "b".to_string()]),
                ("tagv".to_string(), vec!["x".to_string()]),
            ]
        );
        assert_eq!(
            from_json(br#"{"metric":["sys.cpu"],"foo":[1]}"#).unwrap(),
            vec![
                ("foo".to_string(), vec!["1".to_string()]),
                ("metric".to_string(), vec!["sys.cpu".to_string()]),
            ]
        );
        assert_eq!(
            from_json(b"[1]").unwrap_err().message,
            "Unable to parse the given JSON"
        );
    }

    #[test]
    fn rendering_keeps_the_type_map_and_adds_errors() {
        let errors = BTreeMap::from([
            (
                "x y".to_string(),
                "Invalid metric (\"x y\"): illegal character:  ".to_string(),
            ),
            (
                "b".to_string(),
                "Name already exists with UID: 0000000000000001".to_string(),
            ),
        ]);
        assert_eq!(
            render(vec![("metric".to_string(), errors)]),
            r#"{"metric":{},"metric_errors":{"b":"Name already exists with UID: 0000000000000001","x y":"Invalid metric (\"x y\"): illegal character:  "}}"#
        );
        assert_eq!(
            render(vec![("tagk".into(), BTreeMap::new())]),
            r#"{"tagk":{}}"#
        );
    }
}
