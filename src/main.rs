//! `rtsd`: parse flags, set up logging, then run the daemon until a signal
//! or one of the offline tools (`import`, `export`, `clickhouse-schema`)
//! to completion.

use clap::{Parser, Subcommand};
use rtsd::activation;
use rtsd::config::{ServeArgs, Settings};
use rtsd::daemon::Daemon;
use rtsd::notify::Notifier;
use rtsd::tools::clickhouse_schema::{self, ClickHouseSchemaArgs};
use rtsd::tools::export::{self, ExportArgs};
use rtsd::tools::import::{self, ImportArgs};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "rtsd",
    version,
    about = "An OpenTSDB-compatible time-series daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: telnet/HTTP ingest on --listen, the HTTP API on --http-listen.
    // Boxed: one field per setting makes it far larger than the others.
    Serve(Box<ServeArgs>),
    /// Load OpenTSDB `tsdb import` files (plain or gzipped, `-` for stdin) into a data dir; no daemon may be running on it.
    Import(ImportArgs),
    /// Write a data dir's points as import lines or CSV; no daemon may be running on it.
    Export(ExportArgs),
    /// Print the DDL of rtsd's ClickHouse tables (`;` lines between statements; run it on every server of a cluster), or with --check URL verify a server holds them.
    ClickhouseSchema(ClickHouseSchemaArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The tools report on stderr themselves; the store's own logging would
    // only interleave with that.
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        Command::Import(_) | Command::Export(_) | Command::ClickhouseSchema(_) => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => {
            let settings = Settings::load(&args)?;
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("rtsd-io")
                .build()?
                .block_on(serve(settings))
        }
        Command::Import(args) => {
            import::run(&args, &mut std::io::stderr().lock())?;
            Ok(())
        }
        Command::Export(args) => {
            export::run(&args)?;
            Ok(())
        }
        Command::ClickhouseSchema(args) => {
            clickhouse_schema::run(&args, &mut std::io::stdout().lock())?;
            Ok(())
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let notifier = Notifier::from_env()?;
    // Installed before READY=1: a SIGTERM sent the moment the manager hears
    // READY would otherwise meet the default action and kill the process
    // without draining the queue.
    let signals = Signals::install();
    let daemon = Daemon::start_with(settings, activation::from_env()?).await?;
    notifier.ready(&format!(
        "serving telnet on {}, http on {}",
        daemon.telnet_addr, daemon.http_addr
    ));
    let token = daemon.shutdown_token();
    let supervisor = tokio::spawn(notifier.supervise(token.clone()));
    tokio::spawn(async move {
        let signal = signals.recv().await;
        tracing::info!(signal, "shutting down");
        token.cancel();
    });
    let result = daemon.wait().await;
    // Shutdown has begun, so the supervisor has sent or is sending STOPPING=1.
    supervisor.await?;
    result
}

/// The signals that stop the daemon; `None` where the handlers could not
/// be installed.
struct Signals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Signals(Some((term, int))),
            _ => {
                // Without signal handlers the daemon can only be killed; say so.
                tracing::error!("cannot install signal handlers");
                Signals(None)
            }
        }
    }

    async fn recv(self) -> &'static str {
        let Some((mut term, mut int)) = self.0 else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}
