//! `rtsd`: parse flags, set up logging, run the daemon until a signal.

use clap::{Parser, Subcommand};
use rtsd::config::{ServeArgs, Settings};
use rtsd::daemon::Daemon;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "rtsd", version, about = "An OpenTSDB-compatible time-series daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: telnet/HTTP ingest on --listen, the HTTP API on --http-listen.
    Serve(ServeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
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
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let daemon = Daemon::start(settings).await?;
    let token = daemon.shutdown_token();
    tokio::spawn(async move {
        let signal = wait_for_signal().await;
        tracing::info!(signal, "shutting down");
        token.cancel();
    });
    daemon.wait().await
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon can only be killed; say so.
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
