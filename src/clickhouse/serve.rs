//! Opening the ClickHouse store for `rtsd serve --store clickhouse`: the
//! schema checked (a cluster) or created (one server), the spool in the
//! data directory started, and the read side connected.

use std::path::Path;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::backend::ClickHouseBackend;
use super::client::{ClickHouseError, Client};
use super::schema::{self, Ensured, Layout, SchemaError};
use super::settings::ClickHouseSettings;
use super::source::ClickHouseSource;
use super::spool::{Spool, Target};
use crate::storage::Retention;

/// The spool's directory inside `data-dir`.
pub const SPOOL_DIR: &str = "spool";

/// Whether `e` says a server could not be reached, rather than that it
/// refused something.
fn unreachable(e: &ClickHouseError) -> bool {
    matches!(
        e,
        ClickHouseError::Transport { .. } | ClickHouseError::Timeout { .. }
    )
}

/// The ingest thread's sink and the handlers' backend of the ClickHouse
/// store `settings` names. Fails, saying what to do, when the server
/// lacks the tables or holds another version of them; starts anyway
/// when ClickHouse does not answer (it may be restarting).
pub async fn open(
    settings: &ClickHouseSettings,
    data_dir: &Path,
    sync_writes: bool,
    retention: Retention,
    seal_grace_ms: i64,
    shutdown: CancellationToken,
) -> anyhow::Result<(Spool, ClickHouseBackend)> {
    let url = settings
        .url
        .as_deref()
        .context("store = \"clickhouse\" needs [clickhouse] url")?;
    let user = settings.user.as_deref();
    let password = settings.password.as_ref().map(|p| p.0.as_str());
    let client = Client::new(url, user, password)?;
    let database = settings.database.clone();
    let checked = match settings.layout() {
        Layout::Single => schema::ensure(&client, &database).await.map(|ensured| {
            if ensured == Ensured::Created {
                tracing::info!(%url, %database, "created rtsd's ClickHouse tables");
            }
        }),
        layout => schema::check(&client, &database, &layout).await,
    };
    match checked {
        Ok(()) => {}
        // Collectors keep sending while ClickHouse is down, and the spool
        // is there to hold their points: start, and ship once it answers.
        Err(e @ SchemaError::ShardUnreachable { .. }) => tracing::warn!(
            %url, error = %e,
            "a shard does not answer; serving anyway, its points wait in ClickHouse's \
             distributed queue and the schema is not checked there"
        ),
        Err(SchemaError::ClickHouse(e)) if unreachable(&e) => tracing::warn!(
            %url, error = %e,
            "ClickHouse does not answer; serving anyway, points wait in the spool \
             and the schema is not checked"
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("preparing database {database} through {url}"))
        }
    }
    let shards = settings
        .shard_urls
        .iter()
        .map(|shard| Client::new(shard, user, password))
        .collect::<Result<Vec<_>, _>>()?;
    let target = Target {
        layout: settings.layout(),
        shards,
        client,
        database: database.clone(),
        compression: settings.compression,
    };
    let dir = data_dir.join(SPOOL_DIR);
    let options = settings.spool_options(sync_writes, retention, seal_grace_ms);
    let spool = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || Spool::open(&dir, target, options, shutdown))
    }
    .await?
    .with_context(|| format!("opening the spool in {}", dir.display()))?;
    let source = ClickHouseSource::new(url, user, password, database)?;
    let backend = ClickHouseBackend::new(source, spool.monitor());
    tracing::info!(%url, spool = %dir.display(), "serving from ClickHouse");
    Ok((spool, backend))
}
