//! The HTTP API: OpenTSDB's `/api/*` on the HTTP port, and the same router
//! for HTTP requests that arrive on the telnet port (first byte `A`–`Z`).
//!
//! [`router`] builds the whole application so tests drive it with
//! `tower::ServiceExt::oneshot`. Before routing, paths are normalised the
//! way OpenTSDB does: lower-cased, trailing slashes ignored, `/api/v1/x` is
//! `/api/x` (a higher version answers 501). Unknown `/api/...` paths, and
//! `/api/serializers`, which OpenTSDB 2.4.1 does not register, answer
//! OpenTSDB's 404 JSON. Every API reply is `application/json; charset=UTF-8`.
//!
//! | endpoint | module |
//! |---|---|
//! | `/api/put`, `/api/metadata/put` | [`put`] (body: [`put_body`], checks: [`put_check`]), [`metadata`] |
//! | `/api/query`, `/api/query/last` | [`query`], [`last`] |
//! | `/api/annotation`, `/api/annotation/bulk` (and `/api/annotations…`) | [`annotation`] |
//! | `/api/suggest`, `/api/search/lookup` | [`suggest`], [`lookup`] |
//! | `/api/uid/assign` | [`uid`] |
//! | `/api/version`, `/api/stats`, `/api/aggregators`, `/api/config`, `/api/config/filters`, `/api/dropcaches` | [`info`] |
//! | `/api/rtsd/stale` (rtsd's own) | [`stale`] |
//! | `/metrics` (Prometheus text exposition) | [`metrics`] |
//! | `/health` (200, or 503 with the reason) | [`info`] |
//! | `/`, `/dashboard/app.js`, `/dashboard/app.css` (the dashboard page) | [`dashboard`] |
//!
//! Before routing, [`guard`] checks the request's token against the scope
//! its endpoint needs (when `[auth]` defines tokens) and answers 401/403
//! itself.
//!
//! Around every request: gzip response compression when the client sends
//! `Accept-Encoding: gzip`, and a timeout ([`HttpLimits::request_timeout`])
//! answered with OpenTSDB-shaped 503. Request bodies are read by [`body`]
//! (gzip/deflate inflated, size-limited, 413 beyond). Reads that can be
//! expensive (queries, last points, lookups) pass a [`gate`]: a few run,
//! some wait, the rest are shed with 503, so a burst of dashboards cannot
//! starve ingest of CPU. Handlers that touch RocksDB run on the
//! blocking pool so a slow disk never stalls the async workers that carry
//! ingest.
//!
//! Deliberate differences from OpenTSDB's HTTP server: chunked request
//! bodies are accepted (OpenTSDB refuses them unless configured), `/` is
//! rtsd's own dashboard rather than OpenTSDB's GWT UI, other non-API paths
//! answer the 404 JSON instead of HTML pages, and `jsonp` is not supported.

mod annotation;
mod body;
mod dashboard;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod gate;
mod guard;
mod info;
mod input;
mod last;
mod lookup;
mod metadata;
mod metrics;
mod params;
mod put;
mod put_body;
mod put_check;
mod query;
mod series_expr;
mod stale;
mod stall;
mod suggest;
mod uid;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tower_http::compression::CompressionLayer;

pub use error::ApiError;
use gate::ReadGate;
pub use metadata::MetadataStore;

use crate::backend::SharedBackend;
use crate::cardinality::SeriesGate;
use crate::config::Settings;
use crate::protocol::ParseOptions;
use crate::query::QueryLimits;
use crate::queue::QueueSender;
use crate::stats::Stats;
use crate::survey::Survey;

/// OpenTSDB's content type for every `/api/*` reply.
pub const JSON: &str = "application/json; charset=UTF-8";

/// Resource limits of the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request body, after decompression; larger ones get 413.
    /// VictoriaMetrics' `-opentsdbhttp.maxInsertRequestSize` default.
    pub max_body_bytes: usize,
    /// A request still unanswered after this long gets 503, so a client
    /// (telegraf retries on 5xx) tries again instead of hanging.
    pub request_timeout: Duration,
    /// Expensive reads (queries, last points, lookups) running at once.
    pub max_concurrent_reads: usize,
    /// Expensive reads waiting for a turn; more are shed with 503.
    pub max_queued_reads: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: 32 << 20,
            request_timeout: Settings::default().request_timeout.duration(),
            // Reads are CPU-bound once the block cache is warm; more at
            // once than cores only slows ingest down.
            max_concurrent_reads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            // A few dashboards' worth of panels firing together.
            max_queued_reads: 64,
        }
    }
}

/// What handlers share.
pub struct AppState {
    pub store: SharedBackend,
    pub queue: QueueSender,
    pub stats: Arc<Stats>,
    pub limits: QueryLimits,
    /// Served by `/api/config`; `data_dir` also locates the metadata file.
    pub settings: Settings,
    /// The telnet parser's rules, which `/api/put` applies too.
    pub parse: ParseOptions,
    pub http: HttpLimits,
    /// What scollector posts to `/api/metadata/put`.
    pub metadata: MetadataStore,
    /// The concurrency limit on expensive reads.
    reads: ReadGate,
    /// `/api/put` requests running, at most `max-concurrent-puts`.
    puts: tokio::sync::Semaphore,
    /// Disk usage and stale series for `/api/stats` and `/metrics`, shared
    /// with telnet `stats`.
    pub survey: Arc<Survey>,
    /// The cardinality limits `/api/put` applies, if any are set.
    series_gate: Option<Arc<SeriesGate>>,
}

impl AppState {
    /// Opens the metadata file in `settings.data_dir` (a missing or corrupt
    /// one starts empty, with a warning).
    pub fn new(
        store: SharedBackend,
        queue: QueueSender,
        stats: Arc<Stats>,
        settings: Settings,
        parse: ParseOptions,
        http: HttpLimits,
    ) -> AppState {
        AppState {
            metadata: MetadataStore::open(&settings.data_dir),
            reads: ReadGate::new(http.max_concurrent_reads, http.max_queued_reads),
            puts: tokio::sync::Semaphore::new(settings.max_concurrent_puts),
            survey: Arc::new(Survey::new(
                store.clone(),
                stats.clone(),
                settings.stale_after_ms(),
                settings.stats_refresh(),
            )),
            store,
            queue,
            stats,
            limits: settings.query_limits(),
            settings,
            parse,
            http,
            series_gate: None,
        }
    }

    /// The same state, `/api/put` applying the cardinality limits of
    /// `gate` (shared with the telnet connections).
    pub fn with_series_gate(self, gate: Option<Arc<SeriesGate>>) -> AppState {
        AppState {
            series_gate: gate,
            ..self
        }
    }
}

/// The complete HTTP application.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/api/put", any(put::put))
        .route("/api/metadata/put", any(metadata::put))
        .route("/api/query", any(query::query))
        .route("/api/query/last", any(last::last))
        .route("/api/annotation", any(annotation::single))
        .route("/api/annotation/{*rest}", any(annotation::nested))
        .route("/api/annotations", any(annotation::single))
        .route("/api/annotations/{*rest}", any(annotation::nested))
        .route("/api/suggest", any(suggest::suggest))
        .route("/api/search/lookup", any(lookup::lookup))
        .route("/api/search", any(lookup::other_search))
        .route("/api/search/{*kind}", any(lookup::other_search))
        .route("/api/uid/assign", any(uid::assign))
        .route("/api/uid", any(uid::not_implemented))
        .route("/api/uid/{*rest}", any(uid::not_implemented))
        .route("/api/version", any(info::version))
        .route("/api/stats", any(info::stats))
        .route("/api/aggregators", any(info::aggregators))
        .route("/api/config", any(info::config))
        .route("/api/config/filters", any(info::filters))
        .route("/api/dropcaches", any(info::dropcaches))
        .route("/api/rtsd/stale", any(stale::stale))
        .route("/metrics", any(metrics::metrics))
        .route("/health", any(info::health))
        .route("/", any(dashboard::index))
        .route("/dashboard/app.js", any(dashboard::script))
        .route("/dashboard/app.css", any(dashboard::style))
        .fallback(any(|| async { ApiError::not_found() }))
        .with_state(state.clone());
    let timeout = state.http.request_timeout;
    Router::new()
        .fallback_service(tower::service_fn(move |req: Request| {
            let api = api.clone();
            let state = state.clone();
            state
                .stats
                .http_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                let req = match normalize(req) {
                    Ok(req) => req,
                    Err(e) => return Ok::<_, Infallible>(e.into_response()),
                };
                let req = match guard::admit(&state.settings.auth, req) {
                    Ok(req) => req,
                    Err(refused) => {
                        state
                            .stats
                            .auth_refused_http
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return Ok(refused.into_response());
                    }
                };
                let resp = match tokio::time::timeout(timeout, api.oneshot(req)).await {
                    Ok(Ok(resp)) => resp,
                    Ok(Err(never)) => match never {},
                    Err(_) => timed_out(timeout).into_response(),
                };
                Ok(resp)
            }
        }))
        .layer(CompressionLayer::new())
}

fn timed_out(limit: Duration) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Request timed out").with_details(format!(
        "The request did not complete within {} ms",
        limit.as_millis()
    ))
}

/// Lower-cases the path, drops trailing slashes and the `/v1` version
/// segment, keeping the query string as sent. OpenTSDB knows API version 1
/// only and answers 501 for higher ones.
fn normalize(mut req: Request) -> Result<Request, ApiError> {
    let uri = req.uri();
    let mut path = uri.path().to_ascii_lowercase();
    while path.len() > 1 && path.ends_with('/') {
        path.pop();
    }
    if let Some(rest) = path.strip_prefix("/api/v") {
        let (version, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) {
            // Too many digits for a u64 is certainly above the maximum.
            if version.parse::<u64>().map_or(true, |v| v > 1) {
                return Err(ApiError::new(
                    StatusCode::NOT_IMPLEMENTED,
                    "Requested API version is greater than the max implemented",
                )
                .with_details(format!(
                    "API version [{version}] is greater than the max [1]"
                )));
            }
            path = format!("/api/{tail}");
        }
    }
    if path != uri.path() {
        let rebuilt = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        if let Ok(new) = rebuilt.parse::<Uri>() {
            *req.uri_mut() = new;
        }
    }
    Ok(req)
}

/// What every HTTP connection is held to, on either port and over TLS.
#[derive(Clone)]
pub struct ConnectionRules {
    pub shutdown: CancellationToken,
    /// The longest wait for a request's header or the next kept-alive
    /// request.
    pub idle_timeout: Duration,
    /// The longest a write may wait for the peer to take bytes
    /// ([`stall`]).
    pub write_timeout: Duration,
    pub stats: Arc<Stats>,
}

/// Serves HTTP on an accepted connection (a plain one on either port, or
/// an https one) until the client closes it or shutdown. A request's
/// header must arrive within `idle_timeout`, and a kept-alive connection
/// waiting for its next request is closed after it too, so slow-loris
/// clients and idle keep-alives give their slot back; a client that stops
/// reading its answer is dropped after `write_timeout`.
pub async fn serve_connection<S>(stream: S, app: Router, rules: ConnectionRules)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let ConnectionRules {
        shutdown,
        idle_timeout,
        write_timeout,
        stats,
    } = rules;
    let stream = stall::StallTimeout::new(stream, write_timeout, stats);
    let io = hyper_util::rt::TokioIo::new(stream);
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(idle_timeout);
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "http connection failed");
            }
        }
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Runs `f` on the blocking pool; a panic there becomes a 500.
async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("request handler failed: {e}")))?
}

/// A JSON reply with OpenTSDB's content type.
fn json_reply(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, JSON)], body).into_response()
}

/// `Ok` if `method` is one of `allowed`, else OpenTSDB's 405.
fn allow(method: &Method, allowed: &[Method]) -> Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(method))
    }
}

/// Tag pairs as a JSON object, in the order given.
struct TagsJson<'a>(Vec<(&'a str, &'a str)>);

impl serde::Serialize for TagsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The text OpenTSDB shows for a series id: its TSUID is upper-case hex.
/// rtsd has one numeric id per series, written as 16 hex digits.
fn tsuid(id: u64) -> String {
    format!("{id:016X}")
}

/// The inverse of [`tsuid`]; any hex spelling of the id is accepted.
fn parse_tsuid(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of(uri: &str) -> Result<String, ApiError> {
        let req = Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        normalize(req).map(|r| r.uri().to_string())
    }

    #[test]
    fn paths_are_normalised_like_opentsdb() {
        assert_eq!(path_of("/API/Put/").unwrap(), "/api/put");
        assert_eq!(
            path_of("/api/v1/query?m=sum:A").unwrap(),
            "/api/query?m=sum:A"
        );
        assert_eq!(path_of("/api/v01/suggest").unwrap(), "/api/suggest");
        assert_eq!(path_of("/api/version").unwrap(), "/api/version");
        let err = path_of("/api/v2/query").unwrap_err();
        assert_eq!(err.status, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(
            err.details.as_deref(),
            Some("API version [2] is greater than the max [1]")
        );
    }

    #[test]
    fn tsuids_round_trip() {
        assert_eq!(tsuid(42), "000000000000002A");
        assert_eq!(parse_tsuid("000000000000002A"), Some(42));
        assert_eq!(parse_tsuid("2a"), Some(42));
        assert_eq!(parse_tsuid("xyz"), None);
        assert_eq!(parse_tsuid(""), None);
        assert_eq!(parse_tsuid("00000000000000002A"), None);
    }
}
