//! The telnet-style listener (port 4242): accepts connections, tells HTTP
//! from telnet by the first byte as OpenTSDB does, and runs each connection
//! in its own task under a connection limit.
//!
//! OpenTSDB's rule (`PipelineFactory.DetectHttpOrRpc`): an ASCII upper-case
//! first byte means HTTP (`GET`, `POST`, ...), anything else is the line
//! protocol. VictoriaMetrics keys on `p` instead, which sends tcollector's
//! `version` to its HTTP parser (VictoriaMetrics#2507); we follow OpenTSDB.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::connection::{self, TelnetContext};

/// Accepts until shutdown; connection tasks are spawned on `tracker` so the
/// caller can wait for them to finish their current line.
pub async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<TelnetContext>,
    http: axum::Router,
    max_connections: usize,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving
                    // the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            ctx.stats.connections_refused.fetch_add(1, Relaxed);
            tracing::debug!(%peer, "connection limit reached; refusing");
            continue;
        };
        ctx.stats.connections_accepted.fetch_add(1, Relaxed);
        let ctx = ctx.clone();
        let http = http.clone();
        let span = tracing::info_span!("conn", %peer);
        tracker.spawn(
            async move {
                ctx.stats.connections_open.fetch_add(1, Relaxed);
                serve(stream, &ctx, http).await;
                ctx.stats.connections_open.fetch_sub(1, Relaxed);
                drop(permit);
            }
            .instrument(span),
        );
    }
}

async fn serve(stream: TcpStream, ctx: &TelnetContext, http: axum::Router) {
    let _ = stream.set_nodelay(true);
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
        crate::http::serve_connection(stream, http, ctx.shutdown.clone()).await;
        return;
    }
    match connection::serve(stream, ctx).await {
        Ok(ended) => tracing::debug!(?ended, "telnet connection closed"),
        Err(e) => tracing::debug!(error = %e, "telnet connection failed"),
    }
}
