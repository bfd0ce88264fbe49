//! `/api/suggest` (OpenTSDB's `SuggestRpc`): names of one kind that start
//! with a prefix, for auto-completion. Grafana's data-source health check
//! is `GET /api/suggest?q=cpu&type=metrics`, and its template variables
//! (`metrics(p)`, `suggest_tagk(p)`, `suggest_tagv(p)`) call it too.
//!
//! GET reads `type`, `q` and `max` from the query string, POST from a JSON
//! object (values may be strings or numbers, as Jackson coerces them). The
//! prefix is case-sensitive, an empty one matches everything; `max`
//! defaults to 25 when absent or not positive. The answer is a JSON array
//! of names in the store's byte order.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::input::{ApiRequest, Input};
use super::params::Params;
use super::{allow, blocking, body, json_reply, ApiError, AppState};
use crate::java::jackson::scalar_text;
use crate::java::number::parse_int;
use crate::model::NameKind;

/// OpenTSDB's `UniqueId.MAX_SUGGESTIONS`.
const DEFAULT_MAX: usize = 25;

pub async fn suggest(
    State(state): State<Arc<AppState>>,
    mut req: ApiRequest,
) -> Result<Response, ApiError> {
    allow(&req.method, &[Method::GET, Method::POST])?;
    let request = req
        .parse(
            Input::POST_BODY_OR_QUERY,
            Request::from_params,
            Request::from_json,
        )
        .await?;
    let (kind, max) = request.validate()?;
    let names = blocking(move || Ok(state.store.suggest(kind, &request.q, max)?)).await?;
    let body = serde_json::to_string(&names).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json_reply(StatusCode::OK, body))
}

/// A suggest request before validation, from either transport.
#[derive(Debug, PartialEq)]
struct Request {
    kind: String,
    q: String,
    max: Option<String>,
}

impl Request {
    fn from_params(params: &Params) -> Result<Request, ApiError> {
        Ok(Request {
            kind: params.required("type")?.to_string(),
            q: params.get("q").unwrap_or("").to_string(),
            max: params.get("max").map(str::to_string),
        })
    }

    fn from_json(bytes: &[u8]) -> Result<Request, ApiError> {
        #[derive(Deserialize)]
        struct Post {
            #[serde(default, rename = "type")]
            kind: Option<Value>,
            #[serde(default)]
            q: Option<Value>,
            #[serde(default)]
            max: Option<Value>,
        }
        let post: Post = body::json(bytes)?;
        let kind = post.kind.as_ref().and_then(scalar_text);
        let Some(kind) = kind.filter(|t| !t.is_empty()) else {
            return Err(ApiError::bad_request("Missing 'type' parameter"));
        };
        Ok(Request {
            kind,
            q: post.q.as_ref().and_then(scalar_text).unwrap_or_default(),
            max: post.max.as_ref().and_then(scalar_text),
        })
    }

    /// OpenTSDB's order: `max` is parsed before `type` is checked.
    fn validate(&self) -> Result<(NameKind, usize), ApiError> {
        let max = match self.max.as_deref().filter(|m| !m.is_empty()) {
            None => DEFAULT_MAX,
            Some(text) => match parse_int(text) {
                Some(n) if n > 0 => n as usize,
                Some(_) => DEFAULT_MAX,
                None => return Err(ApiError::bad_request("Unable to parse 'max' as a number")),
            },
        };
        Ok((name_kind(&self.kind)?, max))
    }
}

/// `UniqueId.stringToUniqueIdType`: case-insensitive, `metric` or
/// `metrics`, `tagk`, `tagv`.
fn name_kind(text: &str) -> Result<NameKind, ApiError> {
    match text.to_ascii_lowercase().as_str() {
        "metric" | "metrics" => Ok(NameKind::Metric),
        "tagk" => Ok(NameKind::TagKey),
        "tagv" => Ok(NameKind::TagValue),
        _ => Err(ApiError::bad_request(format!(
            "Invalid 'type' parameter:{text}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(query: &str) -> Result<(NameKind, usize), ApiError> {
        Request::from_params(&Params::parse(query).unwrap())?.validate()
    }

    fn post(body: &str) -> Result<(NameKind, usize), ApiError> {
        Request::from_json(body.as_bytes())?.validate()
    }

    #[test]
    fn get_parameters_and_their_errors() {
        assert_eq!(get("type=metrics&q=cpu").unwrap(), (NameKind::Metric, 25));
        assert_eq!(get("type=TAGK&max=1000").unwrap(), (NameKind::TagKey, 1000));
        assert_eq!(get("type=tagv&max=0").unwrap(), (NameKind::TagValue, 25));
        assert_eq!(get("type=metric&max=-4").unwrap(), (NameKind::Metric, 25));
        assert_eq!(
            get("q=cpu").unwrap_err().message,
            "Missing parameter <code>type</code>"
        );
        assert_eq!(
            get("type=").unwrap_err().message,
            "Missing parameter <code>type</code>"
        );
        assert_eq!(
            get("type=foo").unwrap_err().message,
            "Invalid 'type' parameter:foo"
        );
        assert_eq!(
            get("type=foo&max=x").unwrap_err().message,
            "Unable to parse 'max' as a number"
        );
    }

    #[test]
    fn post_bodies_coerce_scalars() {
        assert_eq!(
            post(r#"{"type":"tagk","q":"ho","max":5}"#).unwrap(),
            (NameKind::TagKey, 5)
        );
        assert_eq!(
            post(r#"{"type":"metrics","max":"7"}"#).unwrap(),
            (NameKind::Metric, 7)
        );
        assert_eq!(
            post(r#"{"q":"x"}"#).unwrap_err().message,
            "Missing 'type' parameter"
        );
        assert_eq!(
            post(r#"{"type":"x"}"#).unwrap_err().message,
            "Invalid 'type' parameter:x"
        );
        assert_eq!(
            post("{").unwrap_err().message,
            "Unable to parse the given JSON"
        );
    }
}
