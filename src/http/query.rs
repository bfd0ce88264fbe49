//! `/api/query`: GET with `m=`/`tsuid=` parameters or POST with a `TSQuery`
//! body, run by the query engine on the blocking pool and written as
//! OpenTSDB's JSON, with the annotations [`annotation::for_query`] reads.
//!
//! `?arrays` (Grafana's "2.4" setting posts to `/api/query?arrays=true`) is
//! read from the URL for POST as well, as OpenTSDB's serializer does; the
//! other flags of a POST come from its body. The engine's deadline is the
//! request timeout, so a query that has been answered 503 stops working too.
//!
//! **Deleting** (OpenTSDB's `tsd.http.query.allow_delete`; rtsd's
//! `allow-delete`). DELETE (with the query in the query string) or a POST
//! body with `"delete":true` runs the query, then deletes every point of the series it matched with a
//! timestamp in `[start, end]`, and answers with the query's result, as
//! OpenTSDB does. It goes through the ingest queue twice: first an empty
//! delete, whose answer means every write queued before the request is
//! committed, so the query matches those points; then the delete itself,
//! ordered with writes like a batch. A point acknowledged before the
//! request is therefore deleted and one written after the answer is kept.
//! The answer waits until the delete is committed (durable); past the
//! request timeout the client gets 503, and a delete already queued still
//! happens. Without `allow-delete` both get OpenTSDB's 400. Unlike
//! OpenTSDB, a GET with a `delete` parameter is refused with 400 even
//! with `allow-delete` (a web page can make a browser send a GET), and a
//! delete needs a token with the admin scope when auth is on.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::Extension;

use super::guard;
use super::input::{ApiRequest, Input};
use super::params::Params;
use super::{allow, annotation, blocking, ApiError, AppState};
use crate::auth::Access;
use crate::query::output::RenderedAnnotations;
use crate::query::{self, QueryLimits, QueryRequest};
use crate::queue::DeleteRequest;

pub async fn query(
    State(state): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    mut req: ApiRequest,
) -> Result<Response, ApiError> {
    let allow_delete = state.settings.allow_delete;
    refuse_delete(&req.method, allow_delete)?;
    state.stats.queries.fetch_add(1, Relaxed);
    let _latency = state.stats.query_latency.timer();
    let arrays = req.params.has("arrays");
    let from_params = |params: &Params| Ok(QueryRequest::from_get_params(params.pairs())?);
    let from_json = |bytes: &[u8]| {
        let mut request = QueryRequest::from_json(bytes)?;
        request.arrays = arrays;
        Ok(request)
    };
    let mut request = req.parse(Input::POST_BODY, from_params, from_json).await?;
    request.delete |= req.method == Method::DELETE;
    if request.delete && !allow_delete {
        return Err(delete_disabled());
    }
    if request.delete && req.method == Method::GET {
        // A link, an image tag or a rebinding page can make a browser GET
        // anything; a GET must never change data.
        return Err(ApiError::bad_request("Bad request")
            .with_details("A GET never deletes; send the query with DELETE or POST"));
    }
    if request.delete {
        guard::need_admin(access)?;
        // The query must see every point written before this request, or
        // a series whose only points in range are still queued would not
        // be matched and those points would survive.
        through_writer(&state, Vec::new(), 0, 0).await?;
    }
    let permit = state.reads.enter().await?;
    let limits = QueryLimits {
        deadline: Some(Instant::now() + state.http.request_timeout),
        ..state.limits.clone()
    };
    if state.store.reads_locally() && !request.delete {
        if let Some(answer) = small_answer(&state, &request, &limits)? {
            return Ok(reply(answer, &state));
        }
    }
    let (store, stats) = (state.store.clone(), state.stats.clone());
    let (answer, delete) = blocking(move || {
        let _permit = permit;
        let now = crate::model::now_ms();
        let response = query::execute(&*store, &request, now, &limits).inspect_err(|e| {
            if let Some(limit) = e.limit() {
                stats.query_refused(limit);
            }
        })?;
        let notes = annotation::for_query(&*store, &request, &response, now)?;
        let delete = match request.delete {
            true => {
                let plan = request.plan(now)?;
                Some((response.series_ids(), plan.start_ms, plan.end_ms))
            }
            false => None,
        };
        Ok((Answer::new(response, notes), delete))
    })
    .await?;
    if let Some((series, start_ms, end_ms)) = delete {
        if !series.is_empty() {
            through_writer(&state, series, start_ms, end_ms).await?;
        }
    }
    Ok(reply(answer, &state))
}

/// What a query may do on the async worker that received it. Handing a
/// query to the blocking pool and its answer back costs two thread
/// wake-ups, 0.08 to 0.14 ms here: as much as reading and writing a day of
/// one series. A query that stays within these bounds runs where it is;
/// one that would not gives up and runs again on the pool, having held
/// the worker about [`SMALL_DEADLINE`] at most (a disk read under way
/// finishes first) and spent on reading what it must read again some
/// 0.3 ms at most, which a query that size hardly notices.
const SMALL_SERIES: usize = 64;
const SMALL_POINTS: usize = 16 * 1024;
const SMALL_BUCKETS: u64 = 128 * 1024;
const SMALL_DEADLINE: Duration = Duration::from_millis(1);

/// The answer to `request` if it is small (see [`SMALL_SERIES`]), computed
/// here; `None` if it is not.
fn small_answer(
    state: &AppState,
    request: &QueryRequest,
    limits: &QueryLimits,
) -> Result<Option<Answer>, ApiError> {
    let deadline = Instant::now() + SMALL_DEADLINE;
    let small = QueryLimits {
        max_series: SMALL_SERIES.min(limits.max_series),
        max_points: SMALL_POINTS.min(limits.max_points),
        max_downsample_buckets: SMALL_BUCKETS.min(limits.max_downsample_buckets),
        max_query_buckets: SMALL_BUCKETS.min(limits.max_query_buckets),
        deadline: limits.deadline.map(|d| d.min(deadline)).or(Some(deadline)),
        grid_max_slots: limits.grid_max_slots,
    };
    let now = crate::model::now_ms();
    let response = match query::execute(&*state.store, request, now, &small) {
        // Refused by a bound of its own, the pool's run answers (or is
        // refused and counted) under the real limits.
        Err(e) if e.limit().is_some() => return Ok(None),
        result => result?,
    };
    let notes = annotation::for_query(&*state.store, request, &response, now)?;
    Ok(Some(Answer::new(response, notes)))
}

fn reply(answer: Answer, state: &AppState) -> Response {
    match answer {
        Answer::Whole(body) => super::json_reply(StatusCode::OK, body),
        Answer::Streamed(response, notes) => stream_json(response, notes, state),
    }
}

/// An answer of at most this many points (some 100 KB of text) is written
/// whole by the thread that ran the query: handing it to another thread
/// of the blocking pool and through a channel costs more than writing it.
const WHOLE_ANSWER_POINTS: usize = 4096;

/// A query's answer, written whole or to be streamed ([`stream_json`]).
enum Answer {
    Whole(String),
    Streamed(query::QueryResponse, RenderedAnnotations),
}

impl Answer {
    fn new(response: query::QueryResponse, notes: RenderedAnnotations) -> Answer {
        let notes_count: usize = notes.groups.iter().map(Vec::len).sum();
        if response.summary.emitted + notes_count + notes.global.len() > WHOLE_ANSWER_POINTS {
            return Answer::Streamed(response, notes);
        }
        let mut body = String::new();
        response.write_annotated_json(&notes, &mut body);
        Answer::Whole(body)
    }
}

/// Queues a delete behind every write queued so far and waits until the
/// writer has committed it (no series: until it has committed those writes).
async fn through_writer(
    state: &AppState,
    series: Vec<u64>,
    start_ms: i64,
    end_ms: i64,
) -> Result<(), ApiError> {
    let (ack, answer) = tokio::sync::oneshot::channel();
    let request = DeleteRequest {
        series,
        start_ms,
        end_ms,
        ack,
    };
    if state.queue.push_delete(request).await.is_err() {
        return Err(ApiError::unavailable("The TSD is shutting down")
            .with_details("Nothing was deleted; retry later"));
    }
    match answer.await {
        Ok(Ok(_points)) => Ok(()),
        Ok(Err(why)) => Err(ApiError::unavailable("Storage exception").with_details(why)),
        // The writer dropped the request without a word: it stopped.
        Err(_) => Err(ApiError::unavailable("Storage exception")
            .with_details("the writer stopped before deleting the points")),
    }
}

/// Sends the answer as it is written, one result group per chunk, from the
/// blocking pool: a large answer is never held whole as text, and writing
/// it never stalls the async workers that carry ingest.
///
/// The thread waits while the client reads. It is freed when the client
/// goes away, when the connection is dropped because the client took
/// nothing for `request-timeout` (`stall`), or when writing the text
/// itself outlasts `request-timeout`; the body then ends in an error, so
/// the client sees a broken answer rather than a short one.
fn stream_json(
    response: query::QueryResponse,
    notes: RenderedAnnotations,
    state: &AppState,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(4);
    let deadline = Instant::now() + state.http.request_timeout;
    let streaming = Streaming::start(state.stats.clone());
    tokio::task::spawn_blocking(move || {
        let stats = &streaming.0;
        let mut chunks = response.into_annotated_json_chunks(notes, Some(deadline));
        let sent_all = chunks
            .by_ref()
            .all(|chunk| tx.blocking_send(Ok(chunk)).is_ok());
        if chunks.expired() {
            let why = "the answer was not written within the request timeout";
            let _ = tx.blocking_send(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, why)));
        }
        if !sent_all || chunks.expired() {
            stats.answers_abandoned.fetch_add(1, Relaxed);
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

/// One answer on `tsd.rtsd.query.answers state=streaming`, until dropped
/// (by the writing thread, however it ends).
struct Streaming(Arc<crate::stats::Stats>);

impl Streaming {
    fn start(stats: Arc<crate::stats::Stats>) -> Streaming {
        stats.answers_streaming.fetch_add(1, Relaxed);
        Streaming(stats)
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.0.answers_streaming.fetch_sub(1, Relaxed);
    }
}

/// `QueryRpc.execute`'s method checks, shared by every `/api/query/*`:
/// DELETE passes only when `allow_delete` is set.
pub fn refuse_delete(method: &Method, allow_delete: bool) -> Result<(), ApiError> {
    allow(method, &[Method::GET, Method::POST, Method::DELETE])?;
    if method == Method::DELETE && !allow_delete {
        return Err(delete_disabled());
    }
    Ok(())
}

fn delete_disabled() -> ApiError {
    ApiError::bad_request("Bad request")
        .with_details("Deleting data is not enabled (tsd.http.query.allow_delete=false)")
}

/// The receiving end of [`stream_json`]'s chunks as a body stream; it may
/// be polled again after its end (compression layers do).
struct Chunks(tokio::sync::mpsc::Receiver<std::io::Result<String>>);

impl futures_util::Stream for Chunks {
    type Item = std::io::Result<String>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
