//! The one error type of the HTTP API, rendered as OpenTSDB renders errors
//! (`HttpSerializer.formatErrorV1`):
//! `{"error":{"code":N,"message":"...","details":"..."}}`, `details` only
//! when there are some, with `Content-Type: application/json; charset=UTF-8`.
//! OpenTSDB also adds a Java stack `trace`; rtsd has none to show.
//!
//! Only 5xx answers are logged above DEBUG (500 as an error, overload 503s
//! as warnings): a client's bad request is the client's business, a failure
//! of ours is the operator's.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::query::QueryError;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub details: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Endpoint not found")
    }

    /// OpenTSDB's answer to a method an endpoint does not take.
    pub fn method_not_allowed(method: &Method) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed").with_details(format!(
            "The HTTP method [{method}] is not permitted for this endpoint"
        ))
    }

    /// `getRequiredQueryStringParam`'s complaint, HTML tags included.
    pub fn missing_parameter(name: &str) -> Self {
        Self::bad_request(format!("Missing parameter <code>{name}</code>"))
    }

    /// A JSON body that does not parse; `details` carries the parser's
    /// reason, as OpenTSDB passes on Jackson's.
    pub fn bad_json(reason: impl std::fmt::Display) -> Self {
        Self::bad_request("Unable to parse the given JSON").with_details(reason.to_string())
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// The error document, without the HTTP framing.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Inner<'a>,
        }
        #[derive(Serialize)]
        struct Inner<'a> {
            code: u16,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            details: Option<&'a str>,
        }
        let body = Body {
            error: Inner {
                code: self.status.as_u16(),
                message: &self.message,
                details: self.details.as_deref(),
            },
        };
        // Strings and integers always serialise.
        serde_json::to_string(&body).unwrap_or_default()
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError {
            status,
            message: e.message(),
            details: e.details(),
        }
    }
}

impl From<crate::storage::StoreError> for ApiError {
    fn from(e: crate::storage::StoreError) -> Self {
        Self::internal(e.to_string())
    }
}

impl From<crate::query::source::SourceError> for ApiError {
    fn from(e: crate::query::source::SourceError) -> Self {
        Self::internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(status = %self.status, message = %self.message, details = ?self.details, "request failed");
        } else if self.status.is_server_error() {
            // Overload and shutdown: expected under pressure, counted elsewhere.
            tracing::warn!(status = %self.status, message = %self.message, "request refused");
        } else {
            tracing::debug!(status = %self.status, message = %self.message, "request rejected");
        }
        super::json_reply(self.status, self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_opentsdb_error_json_in_field_order() {
        let e = ApiError::method_not_allowed(&Method::GET);
        assert_eq!(
            e.to_json(),
            r#"{"error":{"code":405,"message":"Method not allowed","details":"The HTTP method [GET] is not permitted for this endpoint"}}"#
        );
        assert_eq!(
            ApiError::not_found().to_json(),
            r#"{"error":{"code":404,"message":"Endpoint not found"}}"#
        );
        assert_eq!(
            ApiError::missing_parameter("type").message,
            "Missing parameter <code>type</code>"
        );
    }
}
