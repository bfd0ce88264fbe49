//! `/api/query`: GET with `m=`/`tsuid=` parameters or POST with a `TSQuery`
//! body, run by the query engine on the blocking pool and written as
//! OpenTSDB's JSON, with the annotations [`annotation::for_query`] reads.
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
use axum::response::IntoResponse;
use axum::response::Response;

use super::params::Params;
use super::{allow, annotation, blocking, body, ApiError, AppState};
use crate::query::output::RenderedAnnotations;
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
    let (response, notes) = blocking(move || {
        let _permit = permit;
        let now = crate::model::now_ms();
        let response = query::execute(&state.store, &request, now, &limits)?;
        let notes = annotation::for_query(&state.store, &request, &response, now)?;
        Ok((response, notes))
    })
    .await?;
    Ok(stream_json(response, notes))
}

/// Sends the answer as it is written, one result group per chunk, from the
/// blocking pool: a large answer is never held whole as text, and writing
/// it never stalls the async workers that carry ingest.
fn stream_json(response: query::QueryResponse, notes: RenderedAnnotations) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(4);
    tokio::task::spawn_blocking(move || {
        for chunk in response.into_annotated_json_chunks(notes) {
            // The client went away: stop writing.
            if tx.blocking_send(chunk).is_err() {
                break;
            }
        }
    });
    let chunks = Chunks(rx);
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, super::JSON)],
        Body::from_stream(chunks),
    )
        .into_response()
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

/// The receiving end of [`stream_json`]'s chunks as a body stream; it may
/// be polled again after its end (compression layers do).
struct Chunks(tokio::sync::mpsc::Receiver<String>);

impl futures_util::Stream for Chunks {
    type Item = Result<String, std::convert::Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }
}
