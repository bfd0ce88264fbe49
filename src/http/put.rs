//! `/api/put` (OpenTSDB's `PutDataPointRpc`): POST only, a JSON object or
//! array of points ([`super::put_body`] reads and checks them), gzip welcome.
//!
//! Valid points are queued even when others fail, as OpenTSDB stores the
//! good points of a mixed batch; a point of a new series beyond a
//! cardinality limit (see `cardinality`) fails like an invalid one. The
//! answer follows OpenTSDB's table, which collectors depend on (scollector
//! re-sends anything that is not 204, telegraf drops a batch on 4xx and
//! retries on 5xx):
//!
//! | request | all points valid | some invalid |
//! |---|---|---|
//! | plain | 204, empty | 400 `One or more data points had errors` |
//! | `?summary` | 200 `{"success":S,"failed":F}` | 400, same body |
//! | `?details` (implies summary) | 200 `{…,"errors":[]}` | 400 `{…,"errors":[{"datapoint","error"}]}` |
//!
//! Flags are presence flags (`?details=false` switches details on).
//! Without `?sync`, `success` counts points queued. With `?sync` the answer
//! waits until the writer has committed the points (RocksDB WAL); with
//! `sync_timeout=<ms>` it waits at most that long, the summary gains
//! `"timeouts":N` (points not confirmed in time) and any timeout makes it a
//! 400, as in OpenTSDB.
//!
//! Overload is 503, never 429, so telegraf retries: beyond
//! `max-concurrent-puts` requests at once (503 with `Retry-After: 1`, the
//! limit taken before the body is read so it bounds bodies in memory), and
//! under the `block`
//! overflow policy a full queue refuses the request instead of parking it,
//! and a `?sync` request whose commit failed (or whose points the
//! `drop-oldest` policy shed) learns it. A request refused part way may
//! have queued its first batches; the client's retry writes them again,
//! which is harmless since the last write of a point wins.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::input::ApiRequest;
use super::params::Params;
use super::put_body::{parse_body, Rejection};
use super::{allow, blocking, json_reply, ApiError, AppState};
use crate::model::Sample;
use crate::queue::{Batch, PushError};

/// Bodies up to this size are decoded on the async worker; larger ones on
/// the blocking pool.
const INLINE_DECODE_BYTES: usize = 256 << 10;

/// The URL flags of a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flags {
    summary: bool,
    details: bool,
    sync: bool,
    /// Only with `sync`; `None` waits as long as the request may live.
    sync_timeout: Option<Duration>,
}

impl Flags {
    fn from_params(params: &Params) -> Result<Flags, ApiError> {
        let details = params.has("details");
        let sync = params.has("sync");
        let sync_timeout = match params.get("sync_timeout") {
            Some(text) if sync => {
                let ms: u64 = text.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "Unable to parse 'sync_timeout' as a number: {text}"
                    ))
                })?;
                (ms > 0).then(|| Duration::from_millis(ms))
            }
            _ => None,
        };
        Ok(Flags {
            summary: details || params.has("summary"),
            details,
            sync,
            sync_timeout,
        })
    }
}

/// The outcome of decoding a body.
struct Decoded {
    samples: Vec<Sample>,
    failed: u64,
    /// `(datapoint JSON, error)` per failure, kept only for `?details`.
    errors: Vec<(String, String)>,
}

pub async fn put(
    State(state): State<Arc<AppState>>,
    mut req: ApiRequest,
) -> Result<Response, ApiError> {
    allow(&req.method, &[Method::POST])?;
    // Taken before the body is read: the limit bounds the bodies in memory.
    let Ok(_running) = state.puts.try_acquire() else {
        return Ok(too_many_puts(&state));
    };
    // While commits fail the points could only wait in the queue; a 503
    // makes the collector keep them and retry.
    if let Some(why) = state.stats.health.problem() {
        return Err(ApiError::unavailable("Storage exception").with_details(why));
    }
    let flags = Flags::from_params(&req.params)?;
    let bytes = req.body().await?;
    let decoded = if bytes.len() <= INLINE_DECODE_BYTES {
        decode(&state, &bytes, flags.details)?
    } else {
        let state = state.clone();
        blocking(move || decode(&state, &bytes, flags.details)).await?
    };
    let queued = decoded.samples.len() as u64;
    let acks = enqueue(&state, decoded.samples, flags.sync)?;
    let (success, timeouts) = if flags.sync {
        wait_for_commit(acks, flags.sync_timeout).await?
    } else {
        (queued, 0)
    };
    Ok(reply(
        flags,
        success,
        decoded.failed,
        timeouts,
        decoded.errors,
    ))
}

/// Parses and checks every point, counting rejections by kind.
fn decode(state: &AppState, bytes: &[u8], details: bool) -> Result<Decoded, ApiError> {
    let points = parse_body(bytes)?;
    let mut out = Decoded {
        samples: Vec::with_capacity(points.len()),
        failed: 0,
        errors: Vec::new(),
    };
    let admit = |sample: Sample| match &state.series_gate {
        Some(gate) => gate
            .admit(&sample.series)
            .map(|()| sample)
            .map_err(Rejection::too_many_series),
        None => Ok(sample),
    };
    for point in &points {
        match point.validate(&state.parse).and_then(admit) {
            Ok(sample) => out.samples.push(sample),
            Err(Rejection { message, kind }) => {
                state.stats.rejected(kind);
                tracing::debug!(error = %message, point = %point.echo(), "http put point rejected");
                out.failed += 1;
                if details {
                    out.errors.push((point.echo(), message));
                }
            }
        }
    }
    Ok(out)
}

/// A batch's point count and, with `?sync`, where its commit is reported.
/// 503 with `Retry-After`, counted: telegraf and scollector retry.
fn too_many_puts(state: &AppState) -> Response {
    state.stats.puts_refused.fetch_add(1, Relaxed);
    let mut resp = ApiError::unavailable("Too many concurrent writes")
        .with_details(format!(
            "{} /api/put requests are running; retry later",
            state.settings.max_concurrent_puts
        ))
        .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

type Pending = (u64, oneshot::Receiver<Result<(), String>>);

/// Queues the samples in batches of the queue's size, without waiting for
/// room: a full queue (block policy) is the client's cue to retry.
fn enqueue(state: &AppState, samples: Vec<Sample>, sync: bool) -> Result<Vec<Pending>, ApiError> {
    let mut pending = Vec::new();
    for chunk in state.queue.batches(samples) {
        let n = chunk.len() as u64;
        let (ack, verdict) = if sync {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        match state.queue.try_push(Batch {
            samples: chunk,
            ack,
        }) {
            Ok(()) => {
                state.stats.http_points.fetch_add(n, Relaxed);
                pending.extend(verdict.map(|rx| (n, rx)));
            }
            Err(PushError::Full) => {
                return Err(ApiError::unavailable("Please throttle writes")
                    .with_details("The ingest queue is full; retry later"))
            }
            Err(PushError::Closed) => {
                return Err(ApiError::unavailable("The TSD is shutting down")
                    .with_details("No more data points are accepted; retry later"))
            }
        }
    }
    Ok(pending)
}

/// Waits for the writer's verdict on every batch: `(points committed,
/// points not confirmed before the timeout)`. A failed commit fails the
/// request with 503: the points are not stored and a retry may succeed.
async fn wait_for_commit(
    pending: Vec<Pending>,
    timeout: Option<Duration>,
) -> Result<(u64, u64), ApiError> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let (mut committed, mut timed_out) = (0, 0);
    for (n, rx) in pending {
        let verdict = match deadline {
            Some(d) => match tokio::time::timeout_at(d, rx).await {
                Ok(v) => v,
                Err(_) => {
                    timed_out += n;
                    continue;
                }
            },
            None => rx.await,
        };
        match verdict {
            Ok(Ok(())) => committed += n,
            Ok(Err(why)) => {
                return Err(ApiError::unavailable("Storage exception").with_details(why));
            }
            // The writer dropped the batch without a word: it stopped.
            Err(_) => {
                return Err(ApiError::unavailable("Storage exception")
                    .with_details("the writer stopped before committing the points"));
            }
        }
    }
    Ok((committed, timed_out))
}

fn reply(
    flags: Flags,
    success: u64,
    failed: u64,
    timeouts: u64,
    errors: Vec<(String, String)>,
) -> Response {
    let bad = failed > 0 || timeouts > 0;
    if !flags.summary {
        return if bad {
            ApiError::bad_request("One or more data points had errors")
                .with_details("Please see the TSD logs or append \"details\" to the put request")
                .into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        };
    }
    #[derive(Serialize)]
    struct PointError {
        datapoint: Box<RawValue>,
        error: String,
    }
    #[derive(Serialize)]
    struct Summary {
        success: u64,
        failed: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        timeouts: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        errors: Option<Vec<PointError>>,
    }
    let summary = Summary {
        success,
        failed,
        timeouts: flags.sync_timeout.map(|_| timeouts),
        errors: flags.details.then(|| {
            errors
                .into_iter()
                .filter_map(|(datapoint, error)| {
                    // The echo is JSON we serialised ourselves.
                    let datapoint = RawValue::from_string(datapoint).ok()?;
                    Some(PointError { datapoint, error })
                })
                .collect()
        }),
    };
    let status = if bad {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    // Integers, strings and JSON we produced: serialising cannot fail.
    json_reply(status, serde_json::to_string(&summary).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(q: &str) -> Flags {
        Flags::from_params(&Params::parse(q).unwrap()).unwrap()
    }

    #[test]
    fn flags_are_presence_based() {
        assert_eq!(
            flags("details=false"),
            Flags {
                summary: true,
                details: true,
                sync: false,
                sync_timeout: None
            }
        );
        assert_eq!(
            flags("sync=no&sync_timeout=250"),
            Flags {
                summary: false,
                details: false,
                sync: true,
                sync_timeout: Some(Duration::from_millis(250))
            }
        );
        // sync_timeout means nothing without sync; 0 waits without limit.
        assert_eq!(flags("sync_timeout=5").sync_timeout, None);
        assert_eq!(flags("sync&sync_timeout=0").sync_timeout, None);
        let err = Flags::from_params(&Params::parse("sync&sync_timeout=x").unwrap()).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }

    async fn body_of(r: Response) -> (StatusCode, String) {
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn replies_follow_opentsdb_table() {
        let plain = Flags {
            summary: false,
            details: false,
            sync: false,
            sync_timeout: None,
        };
        assert_eq!(
            body_of(reply(plain, 3, 0, 0, vec![])).await,
            (StatusCode::NO_CONTENT, String::new())
        );
        let (status, body) = body_of(reply(plain, 2, 1, 0, vec![])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            r#"{"error":{"code":400,"message":"One or more data points had errors","details":"Please see the TSD logs or append \"details\" to the put request"}}"#
        );
        let summary = Flags {
            summary: true,
            ..plain
        };
        assert_eq!(
            body_of(reply(summary, 3, 0, 0, vec![])).await,
            (StatusCode::OK, r#"{"success":3,"failed":0}"#.to_string())
        );
        let details = Flags {
            summary: true,
            details: true,
            ..plain
        };
        let errors = vec![(
            r#"{"timestamp":0}"#.to_string(),
            "Metric name was empty".to_string(),
        )];
        assert_eq!(
            body_of(reply(details, 1, 1, 0, errors)).await,
            (
                StatusCode::BAD_REQUEST,
                r#"{"success":1,"failed":1,"errors":[{"datapoint":{"timestamp":0},"error":"Metric name was empty"}]}"#
                    .to_string()
            )
        );
        let timed = Flags {
            sync: true,
            sync_timeout: Some(Duration::from_millis(1)),
            ..summary
        };
        assert_eq!(
            body_of(reply(timed, 0, 0, 2, vec![])).await,
            (
                StatusCode::BAD_REQUEST,
                r#"{"success":0,"failed":0,"timeouts":2}"#.to_string()
            )
        );
    }

    #[tokio::test]
    async fn commit_verdicts() {
        let (tx1, rx1) = oneshot::channel();
        let (_tx2, rx2) = oneshot::channel::<Result<(), String>>();
        tx1.send(Ok(())).unwrap();
        let (ok, late) = wait_for_commit(vec![(3, rx1), (4, rx2)], Some(Duration::from_millis(20)))
            .await
            .unwrap();
        assert_eq!((ok, late), (3, 4));
        let (tx, rx) = oneshot::channel();
        tx.send(Err("storage error: disk full".to_string()))
            .unwrap();
        let err = wait_for_commit(vec![(1, rx)], None).await.unwrap_err();
        assert_eq!(
            (err.status, err.details.as_deref()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("storage error: disk full")
            )
        );
    }
}
