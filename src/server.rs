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
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::connection::{self, TelnetContext};
use crate::stats::Stats;
use crate::storage::StoreReader;

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

/// The `version` reply: two lines, like OpenTSDB's revision and build
/// strings, so tools that print them show something meaningful.
pub fn version_reply() -> String {
    format!(
        "rtsd {} built at revision {} (OpenTSDB 2.4.1 compatible)\nBuilt for {}-{}\n",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH,
        std::env::consts::OS,
    )
}

/// The `stats` reply, one counter per line as OpenTSDB prints them:
/// `tsd.<name> <unix-seconds> <value>[ tags] host=<hostname>`.
pub fn stats_reply(stats: &Stats, store: &StoreReader) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let host = crate::stats::hostname();
    let mut out = String::new();
    for line in stats
        .snapshot()
        .into_iter()
        .chain(crate::stats::storage_lines(store))
    {
        out.push_str(&format!("{} {} {}", line.metric, now, line.value));
        for (k, v) in &line.tags {
            out.push_str(&format!(" {k}={v}"));
        }
        out.push_str(&format!(" host={host}\n"));
    }
    out
}
