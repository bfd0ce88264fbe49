//! Where an endpoint's request is: the query string or a JSON body.
//!
//! OpenTSDB's endpoints read a request from the query string or from a
//! JSON body by one rule, which [`ApiRequest::parse`] states:
//!
//! 1. the query string is parsed before anything else (a malformed one is
//!    400 `Unable to parse the query string`, whatever the method);
//! 2. the endpoint checks the method (its own allow list);
//! 3. if the endpoint reads the body of this method ([`BodyOn`]), the body
//!    is read ([`body::read`]: size limit, gzip or deflate) and, unless it
//!    is blank, is the request;
//! 4. otherwise the query string is the request, unless the body was read
//!    and the endpoint takes a blank one for OpenTSDB's `Missing message
//!    content` ([`Blank`]).
//!
//! Each endpoint states only its [`Input`] (which methods' bodies it reads
//! and what a blank one means), one of the three named on [`Input`].

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method};

use super::params::Params;
use super::{body, ApiError, AppState};

/// Which requests' bodies an endpoint reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyOn {
    /// POST's only (OpenTSDB's `method() == POST`); other methods use the
    /// query string and their bodies are never read.
    Post,
    /// Every method's (OpenTSDB's `hasContent()`).
    Any,
}

/// What a blank body, where one was read, means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blank {
    /// The request is in the query string after all.
    Query,
    /// 400 `Missing message content`.
    Missing,
}

/// An endpoint's half of the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Input {
    pub body_on: BodyOn,
    pub blank: Blank,
}

impl Input {
    /// A POST's body, which must not be blank; other methods' query string
    /// (`/api/query`, `/api/query/last`, `/api/uid/assign`).
    pub const POST_BODY: Input = Input {
        body_on: BodyOn::Post,
        blank: Blank::Missing,
    };
    /// A POST's body unless blank, else the query string (`/api/suggest`).
    pub const POST_BODY_OR_QUERY: Input = Input {
        body_on: BodyOn::Post,
        blank: Blank::Query,
    };
    /// Any method's body unless blank, else the query string
    /// (`/api/search/lookup`, `/api/annotation`).
    pub const BODY_OR_QUERY: Input = Input {
        body_on: BodyOn::Any,
        blank: Blank::Query,
    };
}

/// A request to an `/api/*` endpoint: its method, its parsed query string,
/// and its body, read only when [`ApiRequest::parse`] or
/// [`ApiRequest::body`] asks for it.
pub struct ApiRequest {
    pub method: Method,
    pub params: Params,
    headers: HeaderMap,
    body: Body,
    max_body_bytes: usize,
}

impl FromRequest<Arc<AppState>> for ApiRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        Ok(ApiRequest {
            params: Params::parse(parts.uri.query().unwrap_or(""))?,
            method: parts.method,
            headers: parts.headers,
            body,
            max_body_bytes: state.http.max_body_bytes,
        })
    }
}

impl ApiRequest {
    /// The whole body, size-limited and inflated; a second call finds it
    /// empty.
    pub async fn body(&mut self) -> Result<Bytes, ApiError> {
        let body = std::mem::take(&mut self.body);
        body::read(&self.headers, body, self.max_body_bytes).await
    }

    /// The request, by the module's rule for `input`: `from_json` gets a
    /// body that is not blank, `from_params` the query string.
    pub async fn parse<T>(
        &mut self,
        input: Input,
        from_params: impl FnOnce(&Params) -> Result<T, ApiError>,
        from_json: impl FnOnce(&[u8]) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let reads_body = match input.body_on {
            BodyOn::Post => self.method == Method::POST,
            BodyOn::Any => true,
        };
        if !reads_body {
            return from_params(&self.params);
        }
        let bytes = self.body().await?;
        if !body::is_blank(&bytes) {
            return from_json(&bytes);
        }
        match input.blank {
            Blank::Query => from_params(&self.params),
            Blank::Missing => Err(body::missing_content()),
        }
    }
}
