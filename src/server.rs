//! The accept loops of both ports: the telnet-style listener (port 4242)
//! tells HTTP from telnet by the first byte as OpenTSDB does; the HTTP port
//! (4243) serves HTTP only, or https when TLS is on. Each connection runs
//! in its own task, and one `max-connections` limit covers both ports,
//! https included, so neither can starve the other of file descriptors
//! unnoticed.
//!
//! OpenTSDB's rule (`PipelineFactory.DetectHttpOrRpc`): an ASCII upper-case
//! first byte means HTTP (`GET`, `POST`, ...), anything else is the line
//! protocol. VictoriaMetrics keys on `p` instead, which sends tcollector's
//! `version` to its HTTP parser (VictoriaMetrics#2507); we follow OpenTSDB.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::connection::{self, TelnetContext};

/// Accepts on the telnet port until shutdown; connection tasks are spawned
/// on `tracker` so the caller can wait for them to finish their current
/// line. `permits` is shared with the HTTP port's loop: `max-connections`
/// bounds both together.
pub async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<TelnetContext>,
    http: axum::Router,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
) {
    let serve_one = |stream, ctx: &Arc<TelnetContext>| {
        let (ctx, http) = (ctx.clone(), http.clone());
        async move { serve(stream, &ctx, http).await }
    };
    run(listener, &ctx, &permits, &tracker, serve_one).await;
}

/// Accepts on the HTTP port until shutdown, under the same limit and
/// timeouts as HTTP arriving on the telnet port.
pub async fn http_accept_loop(
    listener: TcpListener,
    ctx: Arc<TelnetContext>,
    http: axum::Router,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
) {
    let serve_one = |stream, ctx: &Arc<TelnetContext>| {
        crate::http::serve_connection(stream, http.clone(), ctx.http_rules())
    };
    run(listener, &ctx, &permits, &tracker, serve_one).await;
}

/// Accepts https on the HTTP port until shutdown, under the same limit
/// and timeouts as plain HTTP, and reloads the certificate on SIGHUP.
pub async fn https_accept_loop(
    listener: TcpListener,
    ctx: Arc<TelnetContext>,
    http: axum::Router,
    tls: Arc<crate::tls::Acceptor>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
) {
    let serve_one = |stream, ctx: &Arc<TelnetContext>| {
        let (rules, http, tls) = (ctx.http_rules(), http.clone(), tls.clone());
        async move { tls.serve_connection(stream, http, rules).await }
    };
    tokio::join!(
        tls.reload_on_hangup(ctx.shutdown.clone()),
        run(listener, &ctx, &permits, &tracker, serve_one),
    );
}

/// Spawns `serve_one` for every connection accepted within the limit.
async fn run<F, Fut>(
    listener: TcpListener,
    ctx: &Arc<TelnetContext>,
    permits: &Arc<Semaphore>,
    tracker: &TaskTracker,
    serve_one: F,
) where
    F: Fn(TcpStream, &Arc<TelnetContext>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    while let Some((stream, peer, slot)) = accept(&listener, ctx, permits).await {
        let conn = serve_one(stream, ctx);
        tracker.spawn(
            async move {
                conn.await;
                drop(slot);
            }
            .instrument(tracing::info_span!("conn", %peer)),
        );
    }
}

/// The next connection within `max-connections`, or `None` at shutdown.
/// Connections over the limit are closed at once and counted. When accept
/// fails (out of file descriptors, EMFILE), it waits a little before
/// trying again instead of spinning, and logs at most once a second.
async fn accept(
    listener: &TcpListener,
    ctx: &TelnetContext,
    permits: &Arc<Semaphore>,
) -> Option<(TcpStream, SocketAddr, ConnectionSlot)> {
    let mut last_warning: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            _ = ctx.shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if last_warning.map_or(true, |t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, "accept failed; backing off");
                        last_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(slot) = permits.clone().try_acquire_owned() else {
            ctx.stats.connections_refused.fetch_add(1, Relaxed);
            tracing::debug!(%peer, "connection limit reached; refusing");
            continue;
        };
        ctx.stats.connections_accepted.fetch_add(1, Relaxed);
        ctx.stats.connections_open.fetch_add(1, Relaxed);
        // Answers go out in several writes (a streamed query answer a
        // chunk per result group); with Nagle's algorithm the last one
        // waits for the client's delayed ACK, 40 ms on Linux, on every
        // request of a kept-alive connection.
        let _ = stream.set_nodelay(true);
        return Some((
            stream,
            peer,
            ConnectionSlot {
                _slot: slot,
                stats: ctx.stats.clone(),
            },
        ));
    }
}

/// How long accept waits after a failure (EMFILE): long enough not to spin,
/// short enough that a freed descriptor is used soon.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// A connection's place under `max-connections`: counted open until
/// dropped.
struct ConnectionSlot {
    _slot: OwnedSemaphorePermit,
    stats: Arc<crate::stats::Stats>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.stats.connections_open.fetch_sub(1, Relaxed);
    }
}

async fn serve(stream: TcpStream, ctx: &TelnetContext, http: axum::Router) {
    let mut first = [0u8; 1];
    let is_http = tokio::select! {
        _ = ctx.shutdown.cancelled() => return,
        // A client that connects and never sends holds a slot like an idle one.
        _ = tokio::time::sleep(ctx.idle_timeout) => return,
        peeked = stream.peek(&mut first) => match peeked {
            Ok(0) | Err(_) => return,
            Ok(_) => first[0].is_ascii_uppercase(),
        },
    };
    if is_http {
        crate::http::serve_connection(stream, http, ctx.http_rules()).await;
        return;
    }
    match connection::serve(stream, ctx).await {
        Ok(ended) => tracing::debug!(?ended, "telnet connection closed"),
        Err(e) => tracing::debug!(error = %e, "telnet connection failed"),
    }
}
