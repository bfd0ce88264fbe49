//! The `[clickhouse]` table of the config file, and the `--clickhouse-*`
//! flags that override its fields one by one: where the ClickHouse store
//! is, and how the spool in front of it behaves.

use serde::Deserialize;

use super::client::Compression;
use super::schema::{Identifier, Layout};
use super::spool::SpoolOptions;
use crate::query::time::{duration_text, parse_duration};
use crate::queue::OverflowPolicy;
use crate::storage::Retention;

/// The table as one source gives it (file or flags); every field optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClickHouseFile {
    pub url: Option<String>,
    pub database: Option<String>,
    pub cluster: Option<String>,
    pub user: Option<String>,
    pub password: Option<Password>,
    pub spool_max_bytes: Option<u64>,
    pub spool_overflow: Option<OverflowPolicy>,
    pub batch_points: Option<usize>,
    pub flush_interval: Option<String>,
    pub compression: Option<Compression>,
    pub shard_urls: Option<Vec<String>>,
}

/// Parses a `[clickhouse]` table's body as TOML (what a flag would give,
/// if the table had one; settings take their type's parser).
impl std::str::FromStr for ClickHouseFile {
    type Err = String;
    fn from_str(text: &str) -> Result<ClickHouseFile, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }
}

/// The ClickHouse user's password; `Debug` leaves it out, so settings can
/// be logged.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl ClickHouseFile {
    /// What `self` gives, else what `under` gives, field by field.
    pub fn over(self, under: ClickHouseFile) -> ClickHouseFile {
        ClickHouseFile {
            url: self.url.or(under.url),
            database: self.database.or(under.database),
            cluster: self.cluster.or(under.cluster),
            user: self.user.or(under.user),
            password: self.password.or(under.password),
            spool_max_bytes: self.spool_max_bytes.or(under.spool_max_bytes),
            spool_overflow: self.spool_overflow.or(under.spool_overflow),
            batch_points: self.batch_points.or(under.batch_points),
            flush_interval: self.flush_interval.or(under.flush_interval),
            compression: self.compression.or(under.compression),
            shard_urls: self.shard_urls.or(under.shard_urls),
        }
    }
}

/// The database rtsd uses when none is named.
pub const DEFAULT_DATABASE: &str = "rtsd";

/// The checked table. Used only with `store = "clickhouse"`; problems are
/// reported only then (see [`ClickHouseSettings::problems`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ClickHouseSettings {
    /// `http://HOST:PORT` of a ClickHouse server; required to serve.
    pub url: Option<String>,
    pub database: Identifier,
    /// The `remote_servers` cluster the `Distributed` tables span; `None`
    /// for one server, whose tables rtsd creates itself.
    pub cluster: Option<Identifier>,
    pub user: Option<String>,
    pub password: Option<Password>,
    pub spool_max_bytes: u64,
    pub spool_overflow: OverflowPolicy,
    pub batch_points: usize,
    pub flush_interval_ms: i64,
    /// How inserts travel.
    pub compression: Compression,
    /// One server per shard of `cluster`, for retention and deletes
    /// (which `Distributed` tables do not take); empty: `url`'s alone.
    pub shard_urls: Vec<String>,
    problems: Vec<String>,
}

impl Default for ClickHouseSettings {
    fn default() -> ClickHouseSettings {
        ClickHouseSettings::from_file(ClickHouseFile::default())
    }
}

impl ClickHouseSettings {
    /// Fills defaults and checks each field; what is wrong is kept for
    /// [`problems`](Self::problems), the field falling back to its default.
    pub fn from_file(f: ClickHouseFile) -> ClickHouseSettings {
        let spool = SpoolOptions::default();
        let mut problems = Vec::new();
        let mut name = |field: &str, given: &str| match Identifier::new(given) {
            Ok(id) => Some(id),
            Err(e) => {
                problems.push(format!("clickhouse.{field}: {e}"));
                None
            }
        };
        let database = f
            .database
            .as_deref()
            .and_then(|d| name("database", d))
            .unwrap_or_else(|| Identifier::new(DEFAULT_DATABASE).expect("a valid name"));
        let cluster = f.cluster.as_deref().and_then(|c| name("cluster", c));
        if let Some(url) = &f.url {
            if let Err(e) = super::client::Client::new(url, None, None) {
                problems.push(format!("clickhouse.url: {e}"));
            }
        }
        for url in f.shard_urls.iter().flatten() {
            if let Err(e) = super::client::Client::new(url, None, None) {
                problems.push(format!("clickhouse.shard-urls: {e}"));
            }
        }
        if f.shard_urls.as_ref().is_some_and(|u| !u.is_empty()) && f.cluster.is_none() {
            problems.push("clickhouse.shard-urls: only a cluster has shards".to_string());
        }
        let batch_points = match f.batch_points {
            Some(0) => {
                problems.push("clickhouse.batch-points: must be at least 1".to_string());
                spool.batch_points
            }
            Some(n) => n,
            None => spool.batch_points,
        };
        let default_interval = spool.flush_interval.as_millis() as i64;
        let flush_interval_ms = match f.flush_interval.as_deref().map(parse_duration) {
            None => default_interval,
            Some(Ok(ms)) if ms > 0 => ms,
            Some(_) => {
                problems.push(format!(
                    "clickhouse.flush-interval: {:?} is not a duration like 1s or 500ms",
                    f.flush_interval.as_deref().unwrap_or_default()
                ));
                default_interval
            }
        };
        ClickHouseSettings {
            url: f.url,
            database,
            cluster,
            user: f.user,
            password: f.password,
            spool_max_bytes: f.spool_max_bytes.unwrap_or(spool.max_bytes),
            spool_overflow: f.spool_overflow.unwrap_or(spool.overflow),
            batch_points,
            flush_interval_ms,
            compression: f.compression.unwrap_or(Compression::Gzip),
            shard_urls: f.shard_urls.unwrap_or_default(),
            problems,
        }
    }

    /// What is wrong with the table, for serving from it.
    pub fn problems(&self) -> Vec<String> {
        let mut out = self.problems.clone();
        if self.url.is_none() {
            out.push(
                "store = \"clickhouse\" needs the server: [clickhouse] url, or --clickhouse-url"
                    .to_string(),
            );
        }
        out
    }

    /// One server, or the cluster the tables span.
    pub fn layout(&self) -> Layout {
        match &self.cluster {
            Some(c) => Layout::Cluster(c.clone()),
            None => Layout::Single,
        }
    }

    /// The spool's options; `sync_writes`, `retention` and the seal grace
    /// as the daemon's (those settings apply to either store).
    pub fn spool_options(
        &self,
        sync_writes: bool,
        retention: Retention,
        seal_grace_ms: i64,
    ) -> SpoolOptions {
        SpoolOptions {
            max_bytes: self.spool_max_bytes,
            overflow: self.spool_overflow,
            batch_points: self.batch_points,
            flush_interval: std::time::Duration::from_millis(self.flush_interval_ms as u64),
            sync_writes,
            retention,
            seal_grace_ms,
            ..SpoolOptions::default()
        }
    }

    /// As `/api/config` shows it: never the password.
    pub fn show(&self) -> String {
        fn name(v: &impl clap::ValueEnum) -> String {
            v.to_possible_value()
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
        }
        format!(
            "url={} database={} cluster={} user={} spool-max-bytes={} spool-overflow={} \
             batch-points={} flush-interval={} compression={}",
            self.url.as_deref().unwrap_or("none"),
            self.database,
            self.cluster
                .as_ref()
                .map_or("none".to_string(), |c| c.to_string()),
            self.user.as_deref().unwrap_or("default"),
            self.spool_max_bytes,
            name(&self.spool_overflow),
            self.batch_points,
            duration_text(self.flush_interval_ms),
            name(&self.compression),
        )
    }
}
