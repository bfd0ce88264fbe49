//! Authentication and authorization of every HTTP request, on both ports,
//! before it is routed.
//!
//! Which scope an endpoint needs is decided here, from the method and the
//! normalised path alone, in one table ([`required`]), so a new endpoint is
//! read-only unless listed. What a path cannot tell — a query whose body
//! asks to delete — is checked by the handler against the [`Access`] this
//! module leaves in the request's extensions ([`need_admin`]).
//!
//! | scope | endpoints |
//! |---|---|
//! | none | `GET /api/version`, `GET /health` |
//! | read | queries, last, suggest, lookup, annotations GET, stats, config, aggregators, stale, `/metrics`, the dashboard, anything not listed |
//! | write | `/api/put`, `/api/metadata/put`, annotation POST/PUT (single and bulk) |
//! | admin | any DELETE (query delete, annotation DELETE and bulk DELETE), `/api/dropcaches`, `/api/uid/assign`, a query body with `"delete":true` |
//!
//! No credentials or wrong ones: 401 with `WWW-Authenticate` naming both
//! schemes; a known token without the scope: 403. Both in OpenTSDB's error
//! shape, and neither quotes what the client sent.

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::ApiError;
use crate::auth::{Access, Auth, Scope};

/// The challenge of a 401: Bearer for API clients, Basic so Grafana and
/// browsers know to send a name and password.
const CHALLENGE: &str = "Bearer realm=\"rtsd\", Basic realm=\"rtsd\", charset=\"UTF-8\"";

/// The scope `method` on `path` (normalised: lower case, no `/api/v1`)
/// needs; `None` for the open endpoints.
pub fn required(method: &Method, path: &str) -> Option<Scope> {
    let reads = method == Method::GET || method == Method::HEAD;
    if reads && matches!(path, "/api/version" | "/health") {
        return None;
    }
    if method == Method::DELETE {
        return Some(Scope::Admin);
    }
    let annotation = path.starts_with("/api/annotation");
    Some(match path {
        "/api/dropcaches" | "/api/uid/assign" => Scope::Admin,
        "/api/put" | "/api/metadata/put" => Scope::Write,
        _ if annotation && !reads => Scope::Write,
        _ => Scope::Read,
    })
}

/// Why [`admit`] turned a request away; its response is the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No credentials, or none that name a token: 401.
    Unauthorized,
    /// A token without the scope the endpoint needs: 403.
    Forbidden(Scope),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Unauthorized => unauthorized(),
            Refused::Forbidden(scope) => forbidden(scope).into_response(),
        }
    }
}

/// Admits `req` or refuses it: with auth off every request gets
/// [`Access::ALL`]; else the credentials' access, if it covers what the
/// endpoint needs. The access is left in the request's extensions.
pub fn admit(auth: &Auth, mut req: Request) -> Result<Request, Refused> {
    let access = if auth.enabled() {
        let access = credentials(auth, &req);
        if let Some(scope) = required(req.method(), req.uri().path()) {
            match access {
                None => return Err(Refused::Unauthorized),
                Some(a) if !a.allows(scope) => return Err(Refused::Forbidden(scope)),
                Some(_) => {}
            }
        }
        access.unwrap_or_default()
    } else {
        Access::ALL
    };
    req.extensions_mut().insert(access);
    Ok(req)
}

/// `Err(403)` unless `access` includes admin: for what only the request
/// body says, such as a query with `"delete":true`.
pub fn need_admin(access: Access) -> Result<(), ApiError> {
    match access.allows(Scope::Admin) {
        true => Ok(()),
        false => Err(forbidden(Scope::Admin)),
    }
}

/// The access the `Authorization` header grants; `None` when it is missing,
/// malformed or names no token.
fn credentials(auth: &Auth, req: &Request) -> Option<Access> {
    let value = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    let rest = rest.trim_ascii();
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return auth.bearer(rest);
    }
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest)
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    auth.basic(&decoded[..colon], &decoded[colon + 1..])
}

fn unauthorized() -> Response {
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized")
        .with_details("This endpoint needs a token: Authorization: Bearer <secret>, or Basic with the token's name and secret")
        .into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(CHALLENGE),
    );
    resp
}

fn forbidden(scope: Scope) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "Forbidden")
        .with_details(format!("This request needs a token with the {scope} scope"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scope_table() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(required(&get, "/api/version"), None);
        assert_eq!(required(&get, "/health"), None);
        assert_eq!(required(&post, "/api/version"), Some(Scope::Read));
        assert_eq!(required(&get, "/api/query"), Some(Scope::Read));
        assert_eq!(required(&post, "/api/query"), Some(Scope::Read));
        assert_eq!(required(&Method::DELETE, "/api/query"), Some(Scope::Admin));
        assert_eq!(required(&post, "/api/put"), Some(Scope::Write));
        assert_eq!(required(&get, "/api/annotation"), Some(Scope::Read));
        assert_eq!(
            required(&Method::PUT, "/api/annotation"),
            Some(Scope::Write)
        );
        assert_eq!(required(&post, "/api/annotation/bulk"), Some(Scope::Write));
        assert_eq!(
            required(&Method::DELETE, "/api/annotation/bulk"),
            Some(Scope::Admin)
        );
        assert_eq!(required(&get, "/api/dropcaches"), Some(Scope::Admin));
        assert_eq!(required(&post, "/api/uid/assign"), Some(Scope::Admin));
        assert_eq!(required(&get, "/metrics"), Some(Scope::Read));
        assert_eq!(required(&get, "/"), Some(Scope::Read));
        assert_eq!(required(&get, "/no/such/thing"), Some(Scope::Read));
    }
}
