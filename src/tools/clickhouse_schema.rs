//! `rtsd clickhouse-schema`: prints the DDL of rtsd's ClickHouse tables
//! for one server or a cluster, or with `--check URL` verifies that a
//! server holds them, saying which command creates what is missing.
//!
//! With a cluster (`--cluster`, a `remote_servers` name) the DDL must run
//! on every server, e.g. `rtsd clickhouse-schema --database rtsd --cluster
//! NAME | clickhouse-client --multiquery --host HOST` once per host: 18.16
//! runs `ON CLUSTER` DDL only through ZooKeeper.

use std::io::Write;

use crate::clickhouse::schema::{self, Identifier, Layout};
use crate::clickhouse::Client;

use super::ToolError;

/// Flags of `rtsd clickhouse-schema`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClickHouseSchemaArgs {
    /// Database holding rtsd's tables.
    #[arg(long, value_name = "NAME", default_value = "rtsd")]
    pub database: String,
    /// Cluster (a `remote_servers` entry): local tables plus `Distributed` tables over them.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Instead of printing, check that the server at this URL (`http://HOST:8123`) holds the schema.
    #[arg(long, value_name = "URL")]
    pub check: Option<String>,
    /// ClickHouse user for --check [default: ClickHouse's `default`].
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Password for --check.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "RTSD_CLICKHOUSE_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
}

/// Prints the DDL, or the outcome of `--check`, to `out`.
pub fn run(args: &ClickHouseSchemaArgs, out: &mut impl Write) -> Result<(), ToolError> {
    let database = Identifier::new(&args.database)?;
    let layout = match &args.cluster {
        None => Layout::Single,
        Some(name) => Layout::Cluster(Identifier::new(name)?),
    };
    let io = |e| ToolError::io("stdout", e);
    let Some(url) = &args.check else {
        return out
            .write_all(schema::ddl_script(&database, &layout).as_bytes())
            .map_err(io);
    };
    let client = Client::new(url, args.user.as_deref(), args.password.as_deref())
        .map_err(schema::SchemaError::from)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ToolError::io("tokio runtime", e))?
        .block_on(schema::check(&client, &database, &layout))?;
    writeln!(
        out,
        "clickhouse at {} holds rtsd schema version {} in database {database}",
        client.url(),
        schema::SCHEMA_VERSION
    )
    .map_err(io)
}
