//! `/api/query`: GET with `m=`/`tsuid=` parameters or POST with a `TSQuery`
//! body, run by the query engine on the blocking pool and written as
//! OpenTSDB's JSON.
//!
//! `?arrays` (Grafana's "2.4" setting posts to `/api/query?arrays=true`) is
//! read from the URL for POST as well, as OpenTSDB's serializer does; the
//! other flags of a POST come from its body. DELETE, and a body asking to
//! `delete`, get OpenTSDB's 400 for `tsd.http.query.allow_delete=false`.
//! The engine's deadline is the request timeout, so a query that has been
//! answered 503 stops working too.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;

use super::params::Params;
use super::{allow, blocking, body, json_reply, ApiError, AppState};
use crate::query::{self, QueryLimits, QueryRequest};

pub async fn query(
    method: Method,
    State(state): State<Arc<AppState>>,
    params: Params,
    headers: HeaderMap,
    request_body: Body,
) -> Result<Response, ApiError> {
    refuse_delete(&method)?;
    state.stats.queries.fetch_add(1, Relaxed);
    let _latency = state.stats.query_latency.timer();
    let request = if method == Method::POST {
        let bytes = body::read(&headers, request_body, state.http.max_body_bytes).await?;
        if body::is_blank(&bytes) {
            return Err(body::missing_content());
        }
        let mut request = QueryRequest::from_json(&bytes)?;
        request.arrays = params.has("arrays");
        request
    } else {
        QueryRequest::from_get_params(params.pairs())?
    };
    let permit = state.reads.enter().await?;
    let limits = QueryLimits {
        deadline: Some(Instant::now() + state.http.request_timeout),
        ..state.limits.clone()
    };
    let body = blocking(move || {
        let _permit = permit;
        let now = crate::model::now_ms();
        let response = query::execute(&state.store, &request, now, &limits)?;
        let mut out = String::new();
        response.write_json(&mut out);
        Ok(out)
    })
    .await?;
    Ok(json_reply(StatusCode::OK, body))
}

/// `QueryRpc.execute`'s method checks, shared by every `/api/query/*`.
pub fn refuse_delete(method: &Method) -> Result<(), ApiError> {
    allow(method, &[Method::GET, Method::POST, Method::DELETE])?;
    if method == Method::DELETE {
        return Err(ApiError::bad_request("Bad request")
            .with_details("Deleting data is not enabled (tsd.http.query.allow_delete=false)"));
    }
    Ok(())
}
