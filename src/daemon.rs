//! Wires the daemon together and owns its shutdown.
//!
//! [`Daemon::start`] opens the store, starts the writer thread, binds both
//! listeners (or, through [`Daemon::start_with`], serves on sockets systemd
//! passed) and returns their real addresses (tests bind port 0).
//! Shutdown happens in one place, [`Daemon::wait`], in dependency order:
//!
//! 1. the token is cancelled (SIGINT/SIGTERM in `main`, or a test);
//! 2. accept loops stop; telnet connections process the complete lines they
//!    have read and close; the HTTP server finishes in-flight requests;
//! 3. with every queue sender dropped, the writer drains the queue, seals all
//!    head chunks, commits and flushes, then its thread ends.
//!
//! Nothing that was accepted is lost on the way. A writer thread that ends
//! on its own cancels the token itself (see [`crate::health`]) and `wait`
//! fails, so the process exits non-zero.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::activation::Inherited;
use crate::backend::SharedBackend;
use crate::cardinality::SeriesGate;
use crate::config::{Settings, StoreKind};
use crate::connection::TelnetContext;
use crate::health::WriterGuard;
use crate::http::{self, AppState, HttpLimits};
use crate::ingest::{Sink, Writer};
use crate::model::SeriesKey;
use crate::protocol::ParseOptions;
use crate::queue::QueueReceiver;
use crate::stats::Stats;
use crate::storage::{Store, StoreError, StoreOptions, StoreReader, StoreWriter};

/// A running daemon.
pub struct Daemon {
    pub telnet_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub stats: Arc<Stats>,
    pub store: SharedBackend,
    shutdown: CancellationToken,
    tasks: tokio::task::JoinHandle<()>,
    writer: std::thread::JoinHandle<Result<(), StoreError>>,
}

impl Daemon {
    /// Opens the store and starts serving; returns once both ports listen.
    pub async fn start(settings: Settings) -> anyhow::Result<Daemon> {
        Self::start_with(settings, Inherited::default()).await
    }

    /// Like [`Daemon::start`], serving on the sockets systemd passed where
    /// there are some instead of binding the configured addresses.
    pub async fn start_with(settings: Settings, inherited: Inherited) -> anyhow::Result<Daemon> {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
        // Certificate and address problems stop startup before the store
        // opens and the writer starts.
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(crate::tls::Acceptor::load(cert, key)?)),
            _ => None,
        };
        let telnet = listen(inherited.telnet, settings.listen, "telnet").await?;
        let http_listener = listen(inherited.http, settings.http_listen, "http").await?;
        let telnet_addr = telnet.local_addr()?;
        let http_addr = http_listener.local_addr()?;

        let stats = Arc::new(Stats::default());
        let (queue, queue_rx) = crate::queue::queue(
            settings.queue_capacity,
            settings.overflow,
            settings.shed_after.duration(),
            stats.clone(),
        );
        let shutdown = CancellationToken::new();
        let (store, series_gate, writer) = match settings.store {
            StoreKind::Embedded => {
                let (store_writer, store) = open_embedded(&settings).await?;
                let gate = series_gate(&settings, store_writer.series_keys());
                let writer = spawn_writer(store_writer, queue_rx, &stats, &shutdown, settings.mps)?;
                (Arc::new(store) as SharedBackend, gate, writer)
            }
            StoreKind::Clickhouse => {
                let (spool, store) = crate::clickhouse::serve::open(
                    &settings.clickhouse,
                    &settings.data_dir,
                    settings.sync_writes,
                    settings.store_retention(),
                    settings.seal_grace_secs as i64 * 1000,
                    shutdown.clone(),
                )
                .await?;
                let store: SharedBackend = Arc::new(store);
                let gate = clickhouse_series_gate(&settings, &store).await?;
                let writer = spawn_writer(spool, queue_rx, &stats, &shutdown, settings.mps)?;
                (store, gate, writer)
            }
        };

        let parse = ParseOptions {
            max_tags: settings.max_tags,
            require_tags: settings.require_tags,
            allow_special_chars: settings.allow_special_chars.clone(),
            max_future_ms: Some(settings.max_future.0),
        };
        let state = Arc::new(
            AppState::new(
                store.clone(),
                queue.clone(),
                stats.clone(),
                settings.clone(),
                parse.clone(),
                HttpLimits {
                    request_timeout: settings.request_timeout.duration(),
                    ..HttpLimits::default()
                },
            )
            .with_series_gate(series_gate.clone()),
        );
        let survey = state.survey.clone();
        let app = http::router(state);
        let ctx = Arc::new(TelnetContext {
            queue,
            stats: stats.clone(),
            store: store.clone(),
            parse,
            series_gate,
            max_line_bytes: settings.max_line_bytes,
            reply_buffer_bytes: settings.reply_buffer_bytes,
            survey,
            auth: settings.auth.clone(),
            idle_timeout: settings.idle_timeout.duration(),
            http_write_timeout: settings.request_timeout.duration(),
            shutdown: shutdown.clone(),
        });

        let tasks = {
            let max_connections = settings.max_connections;
            tokio::spawn(async move {
                let tracker = TaskTracker::new();
                let permits = Arc::new(Semaphore::new(max_connections));
                let http = {
                    let (ctx, app, permits, tracker) =
                        (ctx.clone(), app.clone(), permits.clone(), tracker.clone());
                    async move {
                        match tls {
                            Some(tls) => {
                                crate::server::https_accept_loop(
                                    http_listener,
                                    ctx,
                                    app,
                                    tls,
                                    permits,
                                    tracker,
                                )
                                .await
                            }
                            None => {
                                crate::server::http_accept_loop(
                                    http_listener,
                                    ctx,
                                    app,
                                    permits,
                                    tracker,
                                )
                                .await
                            }
                        }
                    }
                };
                tokio::join!(
                    http,
                    crate::server::accept_loop(telnet, ctx, app, permits, tracker.clone()),
                );
                tracker.close();
                tracker.wait().await;
            })
        };
        tracing::info!(%telnet_addr, %http_addr, "rtsd listening");
        Ok(Daemon {
            telnet_addr,
            http_addr,
            stats,
            store,
            shutdown,
            tasks,
            writer,
        })
    }

    /// A handle that starts shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits for shutdown to be requested and to complete.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.tasks.await.context("listener task failed")?;
        let writer = self.writer;
        tokio::task::spawn_blocking(move || writer.join())
            .await?
            .map_err(|_| anyhow::anyhow!("writer thread panicked"))?
            .context("final seal and flush")?;
        if self.stats.health.writer_died() {
            anyhow::bail!("the writer thread stopped before shutdown");
        }
        tracing::info!("rtsd stopped; all accepted points are stored");
        Ok(())
    }

    /// Requests shutdown and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// Opens the embedded store in `data-dir`.
async fn open_embedded(settings: &Settings) -> anyhow::Result<(StoreWriter, StoreReader)> {
    let opts = StoreOptions {
        sync_writes: settings.sync_writes,
        seal_grace_ms: settings.seal_grace_secs as i64 * 1000,
        retention: settings.store_retention(),
        head_memory_limit: settings.head_memory_bytes,
        block_cache_bytes: settings.block_cache_bytes,
        write_buffer_bytes: settings.write_buffer_bytes,
    };
    let data_dir = settings.data_dir.clone();
    tokio::task::spawn_blocking(move || Store::open(&data_dir, opts))
        .await?
        .with_context(|| format!("opening store in {}", settings.data_dir.display()))
}

/// The cardinality gate of `max-series` and `max-new-series-per-minute`,
/// if either is set, knowing the `existing` series.
fn series_gate<'a>(
    settings: &Settings,
    existing: impl IntoIterator<Item = &'a SeriesKey>,
) -> Option<Arc<SeriesGate>> {
    SeriesGate::new(
        settings.max_series,
        settings.max_new_series_per_minute,
        existing,
    )
    .map(Arc::new)
}

/// [`series_gate`] over the ClickHouse store: the series every node wrote
/// until now are read once, and only when a limit is set. Series other
/// nodes create later are not seen, so with several nodes each admits its
/// own new series on top of those.
async fn clickhouse_series_gate(
    settings: &Settings,
    store: &SharedBackend,
) -> anyhow::Result<Option<Arc<SeriesGate>>> {
    if settings.max_series == 0 && settings.max_new_series_per_minute == 0 {
        return Ok(None);
    }
    let store = store.clone();
    let existing = tokio::task::spawn_blocking(move || store.lookup(None, &[], usize::MAX))
        .await?
        .context("reading the series ClickHouse holds for the cardinality limits")?;
    Ok(series_gate(settings, existing.iter().map(|s| &s.key)))
}

/// Starts the ingest thread, which drains `queue` into `store`.
fn spawn_writer<S: Sink + Send + 'static>(
    store: S,
    queue: QueueReceiver,
    stats: &Arc<Stats>,
    shutdown: &CancellationToken,
    mps: u32,
) -> std::io::Result<std::thread::JoinHandle<Result<(), StoreError>>> {
    let w = Writer {
        store,
        queue,
        stats: stats.clone(),
        shutdown: shutdown.clone(),
        mps,
    };
    std::thread::Builder::new()
        .name("rtsd-writer".into())
        .spawn(move || {
            let stats = w.stats.clone();
            let _guard = WriterGuard {
                health: &stats.health,
                shutdown: w.shutdown.clone(),
            };
            crate::ingest::run(w)
        })
}

/// An inherited socket as a Tokio listener, or `addr` freshly bound.
async fn listen(
    inherited: Option<std::net::TcpListener>,
    addr: SocketAddr,
    what: &str,
) -> anyhow::Result<TcpListener> {
    match inherited {
        Some(listener) => TcpListener::from_std(listener)
            .with_context(|| format!("serving on the {what} socket passed by systemd")),
        None => TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {what} listener {addr}")),
    }
}
