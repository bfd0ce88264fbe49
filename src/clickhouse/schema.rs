//! The versioned ClickHouse schema: the DDL for one server or a cluster,
//! [`ensure`] (one server: create what is missing) and [`check`] (any
//! layout: verify, and name the command that fixes it).
//!
//! # Tables, version 1
//!
//! | table            | sort key                   | holds |
//! |------------------|----------------------------|-------|
//! | `points`         | `(series, ts)`             | one row per point; partitioned by UTC day (`intDiv(ts, 86400000)`) |
//! | `series`         | `(metric, series, key)`    | metric, tags as parallel `tag_keys`/`tag_values` arrays, the full canonical key |
//! | `rollup_1h`      | `(series, start)`          | count, sum, min, max, sum of squares, first and last point of an hour; 30-day partitions |
//! | `rollup_1d`      | `(series, start)`          | the same per UTC day; 365-day partitions |
//! | `annotations`    | `(series, start)`          | the annotation JSON the embedded store keeps (series 0: global), a `deleted` flag |
//! | `metadata`       | `(metric, tagset, name)`   | `/api/metadata/put` entries, the value as JSON |
//! | `schema_version` | `version`                  | the version and the rtsd that wrote it |
//!
//! Every table but `series` and `schema_version` is a
//! `ReplacingMergeTree(version)`: the row with the highest `version` of a
//! sort key wins (see the module above for why). Times are `Int64` epoch
//! milliseconds. A point's value is `is_int`, `int_value`, `float_value`,
//! and so is each of a rollup's first and last points.
//!
//! In a cluster each of these is a `<name>_local` table on every server plus
//! a `Distributed` table `<name>` over them, sharded by `series` (metadata
//! by a hash of its metric), so one series lives on one shard and its
//! duplicates meet in one `ReplacingMergeTree`. rtsd reads and writes only
//! the unsuffixed names, in both layouts. `ON CLUSTER` needs ZooKeeper in
//! 18.16, so the same DDL runs on every server instead.
//!
//! A later schema bumps [`SCHEMA_VERSION`] and either migrates from the
//! versions before it or refuses them by name; this build refuses any
//! version it does not know.

use std::collections::BTreeMap;
use std::fmt;

use super::client::{ClickHouseError, Client};

/// The schema this build creates and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The span of one partition of `points`, `rollup_1h` and `rollup_1d`
/// (their `PARTITION BY intDiv(.., span)`): retention drops whole
/// partitions, so it needs to know where each ends.
pub const POINTS_PARTITION_MS: i64 = 86_400_000;
pub const ROLLUP_1H_PARTITION_MS: i64 = 30 * POINTS_PARTITION_MS;
pub const ROLLUP_1D_PARTITION_MS: i64 = 365 * POINTS_PARTITION_MS;

/// How the tables are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Plain tables on one server; rtsd can create them itself.
    Single,
    /// Local tables plus `Distributed` ones over this `remote_servers`
    /// cluster; an operator runs the DDL on every server.
    Cluster(Identifier),
}

/// A database or cluster name: letters, digits and `_`, not starting with
/// a digit, so it goes into SQL without quoting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier(String);

impl Identifier {
    pub fn new(name: &str) -> Result<Identifier, SchemaError> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            Ok(Identifier(name.to_owned()))
        } else {
            Err(SchemaError::Name(name.to_owned()))
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{0:?} is not a ClickHouse name rtsd uses: letters, digits and _ only, not starting with a digit")]
    Name(String),
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error("clickhouse at {url} has no cluster {cluster:?} in its remote_servers")]
    NoCluster { url: String, cluster: String },
    #[error("clickhouse at {url} lacks {}; create the schema {} with: {command}", missing.join(", "), if *cluster { "on every server" } else { "there" })]
    Missing {
        url: String,
        missing: Vec<String>,
        cluster: bool,
        command: String,
    },
    /// A shard of the cluster did not answer the check; whether it holds
    /// the tables is unknown.
    #[error("clickhouse at {url}: another server of the cluster does not answer: {words}")]
    ShardUnreachable { url: String, words: String },
    #[error("clickhouse at {url}: table {table} is a {engine}, expected a {expected} (was the schema made for another layout?)")]
    Engine {
        url: String,
        table: String,
        engine: String,
        expected: &'static str,
    },
    #[error("clickhouse at {url}: database {database} holds rtsd schema version {found}, newer than this rtsd knows ({SCHEMA_VERSION}); run a newer rtsd")]
    Newer {
        url: String,
        database: String,
        found: u32,
    },
    #[error("clickhouse at {url}: database {database} holds rtsd schema versions {found:?} where this rtsd reads only {SCHEMA_VERSION}; servers disagree, or the version table was changed by hand")]
    Unknown {
        url: String,
        database: String,
        found: Vec<u32>,
    },
}

/// One table of the schema; the DDL and the checks are built from these.
struct Table {
    name: &'static str,
    columns: &'static str,
    engine: &'static str,
    /// The `Distributed` sharding expression; `None` for tables only read
    /// through it.
    shard_by: Option<&'static str>,
}

/// The tables of version [`SCHEMA_VERSION`], as the module doc lists them.
const TABLES: [Table; 7] = [
    Table {
        name: "points",
        columns: "series UInt64, ts Int64, is_int UInt8, int_value Int64, float_value Float64, version UInt64",
        engine: "ReplacingMergeTree(version) PARTITION BY intDiv(ts, 86400000) ORDER BY (series, ts)",
        shard_by: Some("series"),
    },
    Table {
        name: "series",
        columns: "series UInt64, metric String, tag_keys Array(String), tag_values Array(String), key String",
        engine: "ReplacingMergeTree ORDER BY (metric, series, key)",
        shard_by: Some("series"),
    },
    Table {
        name: "rollup_1h",
        columns: ROLLUP_COLUMNS,
        engine: "ReplacingMergeTree(version) PARTITION BY intDiv(start, 2592000000) ORDER BY (series, start)",
        shard_by: Some("series"),
    },
    Table {
        name: "rollup_1d",
        columns: ROLLUP_COLUMNS,
        engine: "ReplacingMergeTree(version) PARTITION BY intDiv(start, 31536000000) ORDER BY (series, start)",
        shard_by: Some("series"),
    },
    Table {
        name: "annotations",
        columns: "series UInt64, start Int64, deleted UInt8, body String, version UInt64",
        engine: "ReplacingMergeTree(version) ORDER BY (series, start)",
        shard_by: Some("series"),
    },
    Table {
        name: "metadata",
        columns: "metric String, tagset String, name String, value String, version UInt64",
        engine: "ReplacingMergeTree(version) ORDER BY (metric, tagset, name)",
        shard_by: Some("cityHash64(metric)"),
    },
    Table {
        name: VERSION_TABLE,
        columns: "version UInt32, rtsd String",
        engine: "ReplacingMergeTree ORDER BY version",
        shard_by: None,
    },
];

const ROLLUP_COLUMNS: &str = "series UInt64, start Int64, count UInt64, sum Float64, min Float64, max Float64, sum_sq Float64, \
first_ts Int64, first_is_int UInt8, first_int Int64, first_float Float64, \
last_ts Int64, last_is_int UInt8, last_int Int64, last_float Float64, version UInt64";

const VERSION_TABLE: &str = "schema_version";

/// ClickHouse's error codes for a missing table and database, and for a
/// remote query no replica of a shard could answer.
const UNKNOWN_TABLE: u32 = 60;
const UNKNOWN_DATABASE: u32 = 81;
const ALL_CONNECTION_TRIES_FAILED: u32 = 279;

impl Layout {
    /// The table that holds the rows of `name` on the server a client
    /// names: `name` itself, or `<name>_local` in a cluster.
    pub fn storage_name(&self, name: &str) -> String {
        match self {
            Layout::Single => name.to_owned(),
            Layout::Cluster(_) => format!("{name}_local"),
        }
    }

    /// The command that prints this layout's DDL.
    fn command(&self, database: &Identifier) -> String {
        match self {
            Layout::Single => format!("rtsd clickhouse-schema --database {database}"),
            Layout::Cluster(c) => {
                format!("rtsd clickhouse-schema --database {database} --cluster {c}")
            }
        }
    }
}

/// The statements that create schema version [`SCHEMA_VERSION`] in
/// `database` (which they create too), in order; each is idempotent but the
/// last, which records the version. Run them on every server of a cluster.
pub fn ddl(database: &Identifier, layout: &Layout) -> Vec<String> {
    let mut out = vec![format!("CREATE DATABASE IF NOT EXISTS {database}")];
    for t in &TABLES {
        let stored = layout.storage_name(t.name);
        out.push(format!(
            "CREATE TABLE IF NOT EXISTS {database}.{stored} ({}) ENGINE = {}",
            t.columns, t.engine
        ));
        if let Layout::Cluster(cluster) = layout {
            let shard = t.shard_by.map(|s| format!(", {s}")).unwrap_or_default();
            out.push(format!(
                "CREATE TABLE IF NOT EXISTS {database}.{} AS {database}.{stored} \
                 ENGINE = Distributed({cluster}, {database}, {stored}{shard})",
                t.name
            ));
        }
    }
    out.push(format!(
        "INSERT INTO {database}.{} (version, rtsd) VALUES ({SCHEMA_VERSION}, '{}')",
        layout.storage_name(VERSION_TABLE),
        env!("CARGO_PKG_VERSION")
    ));
    out
}

/// [`ddl`] as a script: each statement on its own lines, followed by a line
/// holding only `;`, as `clickhouse-client --multiquery` reads it.
pub fn ddl_script(database: &Identifier, layout: &Layout) -> String {
    ddl(database, layout)
        .into_iter()
        .map(|s| format!("{s}\n;\n"))
        .collect()
}

/// What [`ensure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// The schema was already complete at this version.
    Current,
    /// Tables or the version record were missing and are now created.
    Created,
}

/// Makes `database` on a single server hold schema [`SCHEMA_VERSION`]:
/// creates whatever is missing, leaves a complete schema alone, and
/// refuses one of another version or layout.
pub async fn ensure(client: &Client, database: &Identifier) -> Result<Ensured, SchemaError> {
    match check(client, database, &Layout::Single).await {
        Ok(()) => return Ok(Ensured::Current),
        Err(SchemaError::Missing { .. }) => {}
        Err(e) => return Err(e),
    }
    for statement in ddl(database, &Layout::Single) {
        client.execute(&statement).await?;
    }
    check(client, database, &Layout::Single).await?;
    Ok(Ensured::Created)
}

/// Verifies that the server behind `client` holds schema [`SCHEMA_VERSION`]
/// of `layout` in `database`. A missing table or version record is
/// reported with the command that prints the DDL; through a cluster's
/// `Distributed` version table, a shard without it fails the check too.
pub async fn check(
    client: &Client,
    database: &Identifier,
    layout: &Layout,
) -> Result<(), SchemaError> {
    let url = client.url().to_owned();
    if let Layout::Cluster(cluster) = layout {
        let known = client
            .select_rows(&format!(
                "SELECT count() FROM system.clusters WHERE cluster = '{cluster}'"
            ))
            .await?;
        if known == [["0"]] {
            return Err(SchemaError::NoCluster {
                url,
                cluster: cluster.to_string(),
            });
        }
    }
    let engines: BTreeMap<String, String> = client
        .select_rows(&format!(
            "SELECT name, engine FROM system.tables WHERE database = '{database}'"
        ))
        .await?
        .into_iter()
        .filter_map(|row| <[String; 2]>::try_from(row).ok())
        .map(|[name, engine]| (name, engine))
        .collect();
    let mut expected = Vec::new();
    for t in &TABLES {
        let stored = layout.storage_name(t.name);
        if stored != t.name {
            expected.push((t.name.to_owned(), "Distributed"));
        }
        expected.push((stored, "MergeTree"));
    }
    let mut missing = Vec::new();
    for (name, kind) in expected {
        match engines.get(&name) {
            None => missing.push(format!("{database}.{name}")),
            Some(engine) if !engine.ends_with(kind) => {
                return Err(SchemaError::Engine {
                    url,
                    table: format!("{database}.{name}"),
                    engine: engine.clone(),
                    expected: kind,
                })
            }
            Some(_) => {}
        }
    }
    let missing_error = |missing| SchemaError::Missing {
        url: url.clone(),
        missing,
        cluster: matches!(layout, Layout::Cluster(_)),
        command: format!(
            "{} | clickhouse-client --multiquery",
            layout.command(database)
        ),
    };
    if !missing.is_empty() {
        return Err(missing_error(missing));
    }
    let versions = client
        .select_rows(&format!(
            "SELECT DISTINCT version FROM {database}.{VERSION_TABLE} ORDER BY version"
        ))
        .await;
    let versions: Vec<u32> = match versions {
        // Through `Distributed`: a shard that never ran the DDL (18.16
        // wraps that in "all connection tries failed", as it does a shard
        // that is down, so the server's words are kept).
        Err(ClickHouseError::Server {
            code: code @ (UNKNOWN_TABLE | UNKNOWN_DATABASE | ALL_CONNECTION_TRIES_FAILED),
            message,
        }) => {
            let words = message.split_whitespace().collect::<Vec<_>>().join(" ");
            // 18.16 says "There is no table"; later releases "doesn't exist".
            let lacks = words.contains("There is no table") || words.contains("doesn't exist");
            if code == ALL_CONNECTION_TRIES_FAILED && !lacks {
                return Err(SchemaError::ShardUnreachable { url, words });
            }
            return Err(missing_error(vec![format!(
                "tables on another server of the cluster (clickhouse error {code}: {words})"
            )]));
        }
        other => other?,
    }
    .into_iter()
    .filter_map(|row| row.first()?.parse().ok())
    .collect();
    match versions[..] {
        [] => Err(missing_error(vec![format!(
            "the schema version record in {database}.{VERSION_TABLE}"
        )])),
        [SCHEMA_VERSION] => Ok(()),
        [found] if found > SCHEMA_VERSION => Err(SchemaError::Newer {
            url,
            database: database.to_string(),
            found,
        }),
        _ => Err(SchemaError::Unknown {
            url,
            database: database.to_string(),
            found: versions,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Identifier {
        Identifier::new(s).expect("valid")
    }

    #[test]
    fn names_that_would_need_quoting_are_refused() {
        for bad in ["", "1db", "my-db", "a.b", "db;DROP", "ü"] {
            assert!(Identifier::new(bad).is_err(), "{bad:?}");
        }
        assert_eq!(name("rtsd_2").to_string(), "rtsd_2");
    }

    #[test]
    fn partition_spans_are_the_ones_the_ddl_names() {
        let engine = |name| {
            TABLES
                .iter()
                .find(|t| t.name == name)
                .expect("table")
                .engine
        };
        for (table, column, span) in [
            ("points", "ts", POINTS_PARTITION_MS),
            ("rollup_1h", "start", ROLLUP_1H_PARTITION_MS),
            ("rollup_1d", "start", ROLLUP_1D_PARTITION_MS),
        ] {
            let by = format!("PARTITION BY intDiv({column}, {span}) ");
            assert!(engine(table).contains(&by), "{table}: {by}");
        }
    }

    #[test]
    fn cluster_ddl_has_a_local_and_a_distributed_table_for_each() {
        let single = ddl(&name("db"), &Layout::Single);
        let cluster = ddl(&name("db"), &Layout::Cluster(name("two")));
        assert_eq!(single.len(), 2 + TABLES.len());
        assert_eq!(cluster.len(), 2 + 2 * TABLES.len());
        assert!(cluster.contains(
            &"CREATE TABLE IF NOT EXISTS db.points AS db.points_local \
              ENGINE = Distributed(two, db, points_local, series)"
                .to_owned()
        ));
        assert!(single
            .last()
            .is_some_and(|s| s.starts_with("INSERT INTO db.schema_version ")));
        let script = ddl_script(&name("db"), &Layout::Single);
        assert_eq!(script.matches("\n;\n").count(), single.len());
    }
}
