//! Settings: command-line flags over a TOML file over defaults, validated
//! once at startup.
//!
//! Every setting is declared once, in the `settings!` table below: its
//! type, default, TOML key (also its flag's name), its flag if it has one,
//! and its doc, which is also the flag's help. The table makes the
//! [`Settings`] the daemon runs with, their defaults, [`Given`] (the
//! settings one source gives, read from the flags and from the file alike)
//! and `/api/config`'s list ([`Settings::shown`]).
//!
//! `main` parses [`ServeArgs`] with clap, [`Settings::load`] reads the file
//! named by `--config` (if any), lets every flag that was given override it,
//! and checks the result. Every bad field is reported at once, so an operator
//! fixes a config file in one round instead of one error per restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::auth::{Auth, AuthFile};
use crate::clickhouse::settings::{ClickHouseFile, ClickHouseSettings};
use crate::model::{DAY_MS, MINUTE_MS};
use crate::query::time::{duration_text, parse_duration};
use crate::query::QueryLimits;
use crate::queue::OverflowPolicy;
use crate::storage::{Retention, StoreOptions};

/// A type a setting can have: what a flag or the file gives for it, and
/// how it is shown.
pub trait Setting: Sized {
    /// The value as given, before it is checked.
    type Given: Clone + std::fmt::Debug + DeserializeOwned + Send + Sync + 'static;
    /// The setting's value, or what is wrong with the given one.
    fn parse(given: Self::Given) -> Result<Self, &'static str>;
    /// As `--help` (`[default: …]`) and `/api/config` show it.
    fn show(&self) -> String;
}

/// Types given as themselves and shown as they print.
macro_rules! plain_settings {
    ($($t:ty),*) => {$(
        impl Setting for $t {
            type Given = $t;
            fn parse(given: $t) -> Result<$t, &'static str> {
                Ok(given)
            }
            fn show(&self) -> String {
                self.to_string()
            }
        }
    )*};
}

plain_settings!(bool, u32, u64, usize, String);

impl Setting for PathBuf {
    type Given = PathBuf;
    fn parse(given: PathBuf) -> Result<PathBuf, &'static str> {
        Ok(given)
    }
    fn show(&self) -> String {
        self.display().to_string()
    }
}

/// An optional file, shown as `none` when unset.
impl Setting for Option<PathBuf> {
    type Given = PathBuf;
    fn parse(given: PathBuf) -> Result<Option<PathBuf>, &'static str> {
        Ok(Some(given))
    }
    fn show(&self) -> String {
        self.as_ref()
            .map_or_else(|| "none".to_string(), |p| p.display().to_string())
    }
}

/// The `[auth]` table. Its problems, named by token, are reported by
/// [`Settings::problems`]; it is shown as whether auth is on and how many
/// tokens there are, never which.
impl Setting for Auth {
    type Given = AuthFile;
    fn parse(given: AuthFile) -> Result<Auth, &'static str> {
        Ok(Auth::from_file(given))
    }
    fn show(&self) -> String {
        match self.token_count() {
            0 => "off".to_string(),
            n => format!("on, {n} tokens"),
        }
    }
}

impl Setting for SocketAddr {
    type Given = String;
    fn parse(given: String) -> Result<SocketAddr, &'static str> {
        given
            .parse()
            .map_err(|_| "is not an address like 0.0.0.0:4242")
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

/// Enums given and shown by their flag value names.
macro_rules! value_enum_settings {
    ($($t:ty),*) => {$(
        impl Setting for $t {
            type Given = $t;
            fn parse(given: $t) -> Result<$t, &'static str> {
                Ok(given)
            }
            fn show(&self) -> String {
                clap::ValueEnum::to_possible_value(self)
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            }
        }
    )*};
}

value_enum_settings!(OverflowPolicy, StoreKind);

/// Which store holds the points.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// RocksDB in `data-dir`.
    #[default]
    Embedded,
    /// A ClickHouse server or cluster (`[clickhouse]`), fed through a
    /// spool in `data-dir`.
    Clickhouse,
}

/// The `[clickhouse]` table; its problems matter only with
/// `store = "clickhouse"` ([`Settings::problems`]).
impl Setting for ClickHouseSettings {
    type Given = ClickHouseFile;
    fn parse(given: ClickHouseFile) -> Result<ClickHouseSettings, &'static str> {
        Ok(ClickHouseSettings::from_file(given))
    }
    fn show(&self) -> String {
        ClickHouseSettings::show(self)
    }
}

/// How long data is kept, in ms; `None` keeps it forever.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep(pub Option<i64>);

impl Setting for Keep {
    type Given = String;
    fn parse(given: String) -> Result<Keep, &'static str> {
        parse_duration(&given)
            .map(|ms| Keep(Some(ms)))
            .map_err(|_| "is not a duration like 30d, 12h or 52w")
    }
    fn show(&self) -> String {
        self.0.map_or_else(|| "forever".to_string(), duration_text)
    }
}

/// A span of time in ms, given like 30s, 5m or 1d.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub i64);

impl Span {
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.max(0) as u64)
    }
}

impl Setting for Span {
    type Given = String;
    fn parse(given: String) -> Result<Span, &'static str> {
        parse_duration(&given)
            .map(Span)
            .map_err(|_| "is not a duration like 30s, 5m or 1d")
    }
    fn show(&self) -> String {
        duration_text(self.0)
    }
}

/// Whether a setting has a flag on `rtsd serve`, and of what kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flag {
    /// In the file only.
    None,
    /// `--name VALUE`, the value named so in the help.
    Value(&'static str),
    /// `--name` alone sets a boolean.
    Switch,
}

/// The flag `--key` of a setting: its help is the doc's first paragraph
/// (lines joined, the final period dropped, as clap shows doc comments)
/// and, for a flag with a value, the default.
fn flag_arg(key: &'static str, flag: Flag, doc: &[&str], default: String) -> Option<Arg> {
    let lines: Vec<&str> = doc
        .iter()
        .map(|l| l.trim())
        .take_while(|l| !l.is_empty())
        .collect();
    let text = lines.join(" ");
    let text = text.strip_suffix('.').unwrap_or(&text);
    let arg = Arg::new(key).long(key);
    match flag {
        Flag::None => None,
        Flag::Value(name) => Some(
            arg.value_name(name)
                .action(ArgAction::Set)
                .help(format!("{text} [default: {default}]")),
        ),
        Flag::Switch => Some(arg.action(ArgAction::SetTrue).help(text.to_string())),
    }
}

/// The value of `key` given on the command line, if it was.
fn flag_value<T: Clone + Send + Sync + 'static>(m: &ArgMatches, key: &str) -> Option<T> {
    let given = m.try_get_one::<T>(key).ok().flatten()?;
    (m.value_source(key) == Some(ValueSource::CommandLine)).then(|| given.clone())
}

/// A setting's value: the given one if it is valid, else (with the reason
/// in `errors`) or when none was given, the default.
fn value_of<T: Setting>(
    key: &str,
    given: Option<T::Given>,
    default: T,
    errors: &mut Vec<String>,
) -> T {
    match given {
        None => default,
        Some(given) => T::parse(given.clone()).unwrap_or_else(|why| {
            errors.push(format!("{key}: {given:?} {why}"));
            default
        }),
    }
}

/// The table: each setting's doc, name, type, default, key and flag.
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $ty:ty = $default:expr, $key:literal, $flag:expr;
    )+) => {
        /// Validated settings the daemon runs with.
        #[derive(Debug, Clone, PartialEq)]
        pub struct Settings {
            $( $(#[doc = $doc])+ pub $name: $ty, )+
        }

        impl Default for Settings {
            fn default() -> Self {
                Settings { $( $name: $default, )+ }
            }
        }

        /// The settings one source gives: the command line or the config
        /// file, whose keys are the flags' names.
        #[derive(Debug, Default, Clone, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Given {
            $(
                #[serde(rename = $key)]
                pub $name: Option<<$ty as Setting>::Given>,
            )+
        }

        impl Given {
            /// Adds a flag for every setting that has one.
            fn flags(mut cmd: Command) -> Command {
                let defaults = Settings::default();
                $(
                    let doc: &[&str] = &[$($doc),+];
                    if let Some(arg) = flag_arg($key, $flag, doc, defaults.$name.show()) {
                        cmd = cmd.arg(arg.value_parser(value_parser!(<$ty as Setting>::Given)));
                    }
                )+
                cmd
            }

            fn from_flags(m: &ArgMatches) -> Given {
                Given { $( $name: flag_value(m, $key), )+ }
            }

            /// What `self` gives, else what `under` gives.
            fn over(self, under: Given) -> Given {
                Given { $( $name: self.$name.or(under.$name), )+ }
            }

            /// The settings, defaults filling what is not given; each bad
            /// value is reported in `errors` and replaced by its default.
            fn settings(self, errors: &mut Vec<String>) -> Settings {
                let defaults = Settings::default();
                Settings { $( $name: value_of($key, self.$name, defaults.$name, errors), )+ }
            }
        }

        impl Settings {
            /// Every setting under its key, shown as a string.
            pub fn shown(&self) -> Vec<(&'static str, String)> {
                vec![ $( ($key, self.$name.show()), )+ ]
            }
        }
    };
}

// Keys and flag names are a contract with scripts, the systemd unit and
// config files; `systemd/rtsd.toml` documents every key with its default.
settings! {
    /// Directory holding the RocksDB store (with --store clickhouse, the
    /// spool of points not yet in ClickHouse).
    data_dir: PathBuf = PathBuf::from("./rtsd-data"), "data-dir", Flag::Value("DIR");
    /// Where points are stored: embedded (RocksDB in --data-dir) or
    /// clickhouse (the [clickhouse] server or cluster).
    store: StoreKind = StoreKind::Embedded, "store", Flag::Value("STORE");
    /// The `[clickhouse]` table: url, database, cluster, user, password and
    /// the spool's settings; --clickhouse-url, --clickhouse-database and
    /// --clickhouse-cluster override its fields.
    clickhouse: ClickHouseSettings = ClickHouseSettings::default(), "clickhouse", Flag::None;
    /// Telnet-style listener (also answers HTTP ingest).
    listen: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 4242)), "listen", Flag::Value("ADDR");
    /// HTTP API listener.
    http_listen: SocketAddr = SocketAddr::from(([0, 0, 0, 0], 4243)), "http-listen", Flag::Value("ADDR");
    /// Points the ingest queue holds before the overflow policy applies.
    queue_capacity: usize = 262_144, "queue-capacity", Flag::Value("N");
    /// What a full queue does: drop-oldest (count and shed) or block (push back on TCP).
    overflow: OverflowPolicy = OverflowPolicy::DropOldest, "overflow", Flag::Value("POLICY");
    /// Under drop-oldest, how long a telnet connection waits for room in a
    /// full queue (not reading, so TCP pushes back) before the oldest
    /// points are shed; 0 sheds at once.
    ///
    /// A burst that only outpaces the writer for a moment loses nothing;
    /// a store that cannot keep up (a stalled or full disk) still sheds.
    shed_after: Span = Span(1000), "shed-after", Flag::Value("DURATION");
    /// Points per second the writer stores at most; 0 means unlimited.
    mps: u32 = 0, "mps", Flag::Value("N");
    /// Bytes of open head chunks beyond which the oldest windows seal early.
    head_memory_bytes: usize = StoreOptions::default().head_memory_limit, "head-memory-bytes", Flag::None;
    /// Bytes of RocksDB's block cache, shared by every column family.
    block_cache_bytes: usize = StoreOptions::default().block_cache_bytes, "block-cache-bytes", Flag::None;
    /// Bytes of all RocksDB memtables together; beyond it the largest is
    /// flushed.
    ///
    /// Most of the log's records are range-deleted before a flush while
    /// they fit; a smaller budget trades resident memory for log writes.
    write_buffer_bytes: usize = StoreOptions::default().write_buffer_bytes, "write-buffer-bytes", Flag::None;
    /// Most tags a point may carry.
    max_tags: usize = 8, "max-tags", Flag::Value("N");
    /// Longest accepted line in bytes; longer lines get an error reply.
    max_line_bytes: usize = 64 * 1024, "max-line-bytes", Flag::Value("N");
    /// Reject points without tags, as OpenTSDB does.
    require_tags: bool = false, "require-tags", Flag::Switch;
    /// fsync RocksDB's write-ahead log on every commit (survives power loss, slower).
    sync_writes: bool = false, "sync-writes", Flag::Switch;
    /// Let `/api/query` delete the data it matches (DELETE, or POST with
    /// `delete` in the body), like OpenTSDB's tsd.http.query.allow_delete,
    /// and `/api/annotation` DELETE delete notes.
    ///
    /// Off, such requests answer 400, as OpenTSDB's do. A GET never deletes.
    allow_delete: bool = false, "allow-delete", Flag::Switch;
    /// Extra characters allowed in names, like `tsd.core.tag.allow_specialchars`.
    allow_special_chars: String = String::new(), "allow-special-chars", Flag::None;
    /// Connections served at once on both ports together, https included;
    /// more are refused by closing them.
    max_connections: usize = 10_000, "max-connections", Flag::None;
    /// Close a telnet connection that sent nothing (nor read a reply) for
    /// this long; on HTTP,
    /// the longest wait for a request header or the next kept-alive
    /// request, like OpenTSDB's tsd.core.socket.timeout.
    ///
    /// Half-open connections of rebooted collector hosts must not hold
    /// `max-connections` slots.
    idle_timeout: Span = Span(5 * MINUTE_MS), "idle-timeout", Flag::Value("DURATION");
    // Grafana's data source proxy gives up after 30 s, scollector after a
    // minute: answer before either does.
    /// An HTTP request still unanswered after this long gets 503, a query
    /// stops working, and a client that takes none of its answer for
    /// this long is disconnected.
    request_timeout: Span = Span(30_000), "request-timeout", Flag::Value("DURATION");
    /// Series one query may match, over all its sub-queries; more get 413.
    max_query_series: usize = QueryLimits::default().max_series, "max-query-series", Flag::None;
    /// Points one query may read (raw points, rollup intervals) and fill;
    /// more get 413.
    max_query_points: usize = QueryLimits::default().max_points, "max-query-points", Flag::None;
    /// Buckets one downsample may lay over a query's time range (the range
    /// divided by the interval); more get 400 before anything is read.
    max_downsample_buckets: u64 = QueryLimits::default().max_downsample_buckets, "max-downsample-buckets", Flag::None;
    /// Downsample buckets times the series each sub-query matched, summed
    /// over the query; more get 413 before any point is read.
    max_query_buckets: u64 = QueryLimits::default().max_query_buckets, "max-query-buckets", Flag::None;
    /// `/api/put` requests handled at once; more get 503 with Retry-After.
    ///
    /// Each holds its body (up to 32 MiB inflated) while it runs.
    max_concurrent_puts: usize = 64, "max-concurrent-puts", Flag::None;
    /// Refuse points further ahead of now than this.
    ///
    /// Each future day would otherwise get its own partition.
    max_future: Span = Span(DAY_MS), "max-future", Flag::Value("DURATION");
    /// Series the store may hold; a point of a new series beyond it is
    /// refused with `too many series`. 0: no limit.
    ///
    /// Points of existing series always pass.
    max_series: u64 = 0, "max-series", Flag::Value("N");
    /// New series admitted per minute (a token bucket: a burst of N, then
    /// one every 60/N s); a point of a new series beyond it is refused with
    /// `too many series`. 0: no limit.
    max_new_series_per_minute: u32 = 0, "max-new-series-per-minute", Flag::Value("N");
    /// Unsent replies a telnet connection may hold: error replies past it
    /// are dropped (and counted), since collectd and telegraf never read
    /// the socket.
    ///
    /// Replies asked for (`version`, `stats`...) are never dropped; past
    /// this the connection reads nothing more until the client reads them.
    reply_buffer_bytes: usize = 64 * 1024, "reply-buffer-bytes", Flag::None;
    /// How long after an hour ends its head chunks stay open for late points
    /// (with store = "clickhouse": before its rollups are computed).
    seal_grace_secs: u64 = 600, "seal-grace-secs", Flag::None;
    /// Keep raw points this long, e.g. 30d, 12h, 52w.
    retention: Keep = Keep(None), "retention", Flag::Value("DURATION");
    /// Keep hourly rollups this long.
    rollup_1h_retention: Keep = Keep(None), "rollup-1h-retention", Flag::Value("DURATION");
    /// Keep daily rollups this long.
    rollup_1d_retention: Keep = Keep(None), "rollup-1d-retention", Flag::Value("DURATION");
    /// A series without points for this long counts as stale in
    /// `/metrics` and is `/api/rtsd/stale`'s default period.
    stale_after_secs: u64 = 3600, "stale-after-secs", Flag::None;
    /// Seconds between surveys of the store's disk usage and stale series
    /// for `stats`, `/api/stats` and `/metrics`, which show the latest one.
    ///
    /// A survey reads every column family and seeks every series, so it
    /// runs at most this often, off the request, and only while read.
    stats_refresh_secs: u64 = 10, "stats-refresh-secs", Flag::None;
    /// The `[auth]` tokens and write networks; no token means auth off.
    auth: Auth = Auth::default(), "auth", Flag::None;
    /// PEM certificate chain: the HTTP port speaks https (with --tls-key).
    tls_cert: Option<PathBuf> = None, "tls-cert", Flag::Value("FILE");
    /// PEM private key of --tls-cert.
    tls_key: Option<PathBuf> = None, "tls-key", Flag::Value("FILE");
}

/// Flags of `rtsd serve`: `--config` and a flag for each setting that has
/// one ([`Given`]); an absent flag leaves the config file's value (or the
/// default) in place.
#[derive(Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML config file; flags given on the command line override it.
    pub config: Option<PathBuf>,
    pub given: Given,
    /// Fields of the `[clickhouse]` table given as flags.
    pub clickhouse: ClickHouseFile,
}

/// The `--clickhouse-*` flags: a flag per field of `[clickhouse]` an
/// operator changes per node.
const CLICKHOUSE_FLAGS: [(&str, &str, &str); 3] = [
    (
        "clickhouse-url",
        "URL",
        "ClickHouse server of --store clickhouse, http://HOST:8123",
    ),
    (
        "clickhouse-database",
        "NAME",
        "ClickHouse database of rtsd's tables [default: rtsd]",
    ),
    (
        "clickhouse-cluster",
        "NAME",
        "ClickHouse cluster (remote_servers) the tables span; none: one server",
    ),
];

impl clap::Args for ServeArgs {
    fn augment_args(cmd: Command) -> Command {
        let cmd = CLICKHOUSE_FLAGS
            .iter()
            .fold(cmd, |cmd, &(key, value, help)| {
                cmd.arg(
                    Arg::new(key)
                        .long(key)
                        .value_name(value)
                        .action(ArgAction::Set)
                        .help(help),
                )
            });
        Given::flags(
            cmd.arg(
                Arg::new("config")
                    .long("config")
                    .value_name("FILE")
                    .action(ArgAction::Set)
                    .value_parser(value_parser!(PathBuf))
                    .help("TOML config file; flags given on the command line override it"),
            ),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for ServeArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(ServeArgs {
            config: flag_value(m, "config"),
            given: Given::from_flags(m),
            clickhouse: ClickHouseFile {
                url: flag_value(m, "clickhouse-url"),
                database: flag_value(m, "clickhouse-database"),
                cluster: flag_value(m, "clickhouse-cluster"),
                ..ClickHouseFile::default()
            },
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

/// Every problem found in the settings, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

impl Settings {
    /// Reads `args.config` if given, applies the flags, validates.
    pub fn load(args: &ServeArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => Given::default(),
        };
        Self::merge(args, file)
    }

    fn merge(args: &ServeArgs, file: Given) -> Result<Settings, ConfigError> {
        let mut errors = Vec::new();
        let mut given = args.given.clone().over(file);
        given.clickhouse = Some(
            args.clickhouse
                .clone()
                .over(given.clickhouse.unwrap_or_default()),
        );
        let s = given.settings(&mut errors);
        errors.extend(s.problems());
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(ConfigError(errors))
        }
    }

    /// How long the store keeps each kind of data.
    pub fn store_retention(&self) -> Retention {
        Retention {
            raw_ms: self.retention.0,
            rollup_1h_ms: self.rollup_1h_retention.0,
            rollup_1d_ms: self.rollup_1d_retention.0,
        }
    }

    /// The query limits these settings give; the deadline is per request.
    pub fn query_limits(&self) -> QueryLimits {
        QueryLimits {
            max_series: self.max_query_series,
            max_points: self.max_query_points,
            max_downsample_buckets: self.max_downsample_buckets,
            max_query_buckets: self.max_query_buckets,
            ..QueryLimits::default()
        }
    }

    /// [`Settings::stale_after_secs`] in ms.
    pub fn stale_after_ms(&self) -> i64 {
        i64::try_from(self.stale_after_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// [`Settings::stats_refresh_secs`] as a duration.
    pub fn stats_refresh(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.stats_refresh_secs)
    }

    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.queue_capacity == 0 {
            out.push("queue-capacity: must be at least 1".to_string());
        }
        if !(1..=1024).contains(&self.max_tags) {
            out.push(format!("max-tags: {} is outside 1..=1024", self.max_tags));
        }
        // A put line needs room for at least a short metric, timestamp and value.
        if !(64..=16 * 1024 * 1024).contains(&self.max_line_bytes) {
            out.push(format!(
                "max-line-bytes: {} is outside 64..=16777216",
                self.max_line_bytes
            ));
        }
        if self.stale_after_secs == 0 {
            out.push("stale-after-secs: must be at least 1".to_string());
        }
        if self.stats_refresh_secs == 0 {
            out.push("stats-refresh-secs: must be at least 1".to_string());
        }
        if self.max_concurrent_puts == 0 {
            out.push("max-concurrent-puts: must be at least 1".to_string());
        }
        if self.max_connections == 0 {
            out.push("max-connections: must be at least 1".to_string());
        }
        if self.reply_buffer_bytes < 256 {
            out.push(format!(
                "reply-buffer-bytes: {} is below 256, too small for one error reply",
                self.reply_buffer_bytes
            ));
        }
        out.extend(self.auth.problems().iter().cloned());
        if self.store == StoreKind::Clickhouse {
            out.extend(self.clickhouse.problems());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            out.push("tls-cert and tls-key: give both or neither".to_string());
        }
        if self.listen == self.http_listen {
            out.push(format!(
                "listen and http-listen are both {}; they need separate ports",
                self.listen
            ));
        }
        if let Some(c) = self
            .allow_special_chars
            .chars()
            .find(|c| c.is_whitespace() || matches!(c, '=' | '\0'))
        {
            out.push(format!(
                "allow-special-chars: {c:?} cannot be allowed, it separates words or tags"
            ));
        }
        out
    }
}

fn read_file(path: &Path) -> Result<Given, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(vec![format!("config {}: {e}", path.display())]))?;
    toml::from_str(&text)
        .map_err(|e| ConfigError(vec![format!("config {}: {}", path.display(), e.message())]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DAY_MS, HOUR_MS};
    use clap::{Args, FromArgMatches};

    fn from_toml(text: &str, args: ServeArgs) -> Result<Settings, ConfigError> {
        let file: Given = toml::from_str(text).expect("valid toml");
        Settings::merge(&args, file)
    }

    fn flags(given: Given) -> ServeArgs {
        ServeArgs {
            given,
            ..ServeArgs::default()
        }
    }

    fn parse_flags(argv: &[&str]) -> Result<ServeArgs, clap::Error> {
        let cmd = ServeArgs::augment_args(Command::new("serve"));
        let m = cmd.try_get_matches_from(std::iter::once("serve").chain(argv.iter().copied()))?;
        ServeArgs::from_arg_matches(&m)
    }

    #[test]
    fn defaults_match_the_documented_contract() {
        let s = Settings::load(&ServeArgs::default()).expect("defaults are valid");
        assert_eq!(s.data_dir, PathBuf::from("./rtsd-data"));
        assert_eq!(s.listen.to_string(), "0.0.0.0:4242");
        assert_eq!(s.http_listen.to_string(), "0.0.0.0:4243");
        assert_eq!(s.overflow, OverflowPolicy::DropOldest);
        assert_eq!((s.mps, s.max_tags), (0, 8));
        assert!(!s.allow_delete);
    }

    #[test]
    fn memory_budgets_from_the_file() {
        let s = from_toml("", ServeArgs::default()).unwrap();
        let d = StoreOptions::default();
        assert_eq!(
            (
                s.head_memory_bytes,
                s.block_cache_bytes,
                s.write_buffer_bytes
            ),
            (
                d.head_memory_limit,
                d.block_cache_bytes,
                d.write_buffer_bytes
            )
        );
        let text = "head-memory-bytes = 1000\nblock-cache-bytes = 2000\nwrite-buffer-bytes = 3000";
        let s = from_toml(text, ServeArgs::default()).unwrap();
        assert_eq!(
            (
                s.head_memory_bytes,
                s.block_cache_bytes,
                s.write_buffer_bytes
            ),
            (1000, 2000, 3000)
        );
    }

    #[test]
    fn allow_delete_from_the_file_or_the_flag() {
        let s = from_toml("allow-delete = true", ServeArgs::default()).unwrap();
        assert!(s.allow_delete);
        let args = parse_flags(&["--allow-delete"]).unwrap();
        assert!(from_toml("", args).unwrap().allow_delete);
    }

    #[test]
    fn flags_override_the_file() {
        let args = flags(Given {
            mps: Some(500),
            overflow: Some(OverflowPolicy::Block),
            ..Default::default()
        });
        let s = from_toml("mps = 10\nmax-tags = 12\noverflow = \"drop-oldest\"", args).unwrap();
        assert_eq!(
            (s.mps, s.max_tags, s.overflow),
            (500, 12, OverflowPolicy::Block)
        );
    }

    #[test]
    fn flags_parse_by_their_names() {
        let args = parse_flags(&[
            "--config",
            "/etc/rtsd/rtsd.toml",
            "--mps",
            "5",
            "--overflow",
            "block",
            "--require-tags",
            "--retention",
            "30d",
        ])
        .unwrap();
        assert_eq!(args.config, Some(PathBuf::from("/etc/rtsd/rtsd.toml")));
        assert_eq!(args.given.mps, Some(5));
        assert_eq!(args.given.overflow, Some(OverflowPolicy::Block));
        assert_eq!(args.given.require_tags, Some(true));
        assert_eq!(args.given.retention.as_deref(), Some("30d"));
        // Absent flags, switches included, leave the file's value in place.
        assert_eq!((args.given.sync_writes, args.given.max_tags), (None, None));
        let s = from_toml("require-tags = false\nsync-writes = true", args).unwrap();
        assert!(s.require_tags && s.sync_writes);
        // Settings without a flag are the file's alone.
        assert!(parse_flags(&["--max-connections", "5"]).is_err());
        assert!(parse_flags(&["--mps", "x"]).is_err());
    }

    #[test]
    fn help_shows_each_flag_with_its_default() {
        let mut cmd = ServeArgs::augment_args(Command::new("serve"));
        let help = cmd.render_help().to_string();
        for text in [
            "--data-dir <DIR>",
            "not yet in ClickHouse) [default: ./rtsd-data]",
            "--store <STORE>",
            "--clickhouse-url <URL>",
            "[default: forever]",
            "--require-tags",
            "Reject points without tags, as OpenTSDB does",
        ] {
            assert!(help.contains(text), "{text} in {help}");
        }
        assert!(!help.contains("max-connections"), "{help}");
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let err = from_toml(
            "queue-capacity = 0\nmax-tags = 0\nlisten = \"nowhere\"",
            ServeArgs::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert_eq!(err.0.len(), 3, "{text}");
        assert!(
            text.contains("listen: \"nowhere\" is not an address"),
            "{text}"
        );
        assert!(
            text.contains("queue-capacity: must be at least 1"),
            "{text}"
        );
        assert!(text.contains("max-tags: 0 is outside 1..=1024"), "{text}");
    }

    #[test]
    fn retention_durations() {
        let args = flags(Given {
            rollup_1d_retention: Some("52w".into()),
            ..Default::default()
        });
        let s = from_toml("retention = \"30d\"\nrollup-1h-retention = \"12h\"", args).unwrap();
        assert_eq!(
            s.store_retention(),
            Retention {
                raw_ms: Some(30 * DAY_MS),
                rollup_1h_ms: Some(12 * HOUR_MS),
                rollup_1d_ms: Some(52 * 7 * DAY_MS),
            }
        );
        let d = Settings::load(&ServeArgs::default()).unwrap();
        assert_eq!(d.store_retention(), Retention::default());
        assert_eq!(
            (d.idle_timeout, d.max_future),
            (Span(300_000), Span(DAY_MS))
        );
        let args = parse_flags(&["--idle-timeout", "90s"]).unwrap();
        let s = from_toml("idle-timeout = \"1m\"\nmax-future = \"2h\"", args).unwrap();
        assert_eq!(
            (s.idle_timeout, s.max_future),
            (Span(90_000), Span(2 * HOUR_MS))
        );

        let text = "retention = \"30x\"\nrollup-1h-retention = \"0d\"";
        let err = from_toml(text, ServeArgs::default()).unwrap_err();
        assert_eq!(
            err.0,
            vec![
                "retention: \"30x\" is not a duration like 30d, 12h or 52w".to_string(),
                "rollup-1h-retention: \"0d\" is not a duration like 30d, 12h or 52w".to_string(),
            ]
        );
    }

    #[test]
    fn every_setting_is_shown_under_its_key() {
        let shown = Settings::default().shown();
        let get = |key: &str| {
            shown
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("data-dir"), Some("./rtsd-data"));
        assert_eq!(get("overflow"), Some("drop-oldest"));
        assert_eq!(get("retention"), Some("forever"));
        assert_eq!(get("stale-after-secs"), Some("3600"));
        let s = from_toml("retention = \"30d\"", ServeArgs::default()).unwrap();
        assert_eq!(s.retention.show(), "30d");
    }

    /// The packaged `/etc/rtsd/rtsd.toml` documents every key as a comment;
    /// uncommented, it must be a valid config that keeps the defaults, but
    /// for the data dir and the retention and TLS examples.
    #[test]
    fn shipped_config_documents_valid_defaults() {
        let shipped = include_str!("../systemd/rtsd.toml");
        let uncommented: String = shipped
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(uncommented.lines().count() >= 15, "{uncommented}");
        let documented = from_toml(&uncommented, ServeArgs::default()).expect("valid");
        let defaults = Settings::load(&ServeArgs::default()).unwrap();
        assert_eq!(documented.data_dir, PathBuf::from("/var/lib/rtsd"));
        assert_ne!(documented.store_retention(), defaults.store_retention());
        assert!(documented.tls_cert.is_some() && documented.tls_key.is_some());
        let without_examples = Settings {
            data_dir: defaults.data_dir.clone(),
            retention: defaults.retention,
            rollup_1h_retention: defaults.rollup_1h_retention,
            rollup_1d_retention: defaults.rollup_1d_retention,
            tls_cert: None,
            tls_key: None,
            ..documented
        };
        assert_eq!(without_examples, defaults);
        // And every key is documented: a value, or a table (`[auth]`).
        for (key, _) in defaults.shown() {
            assert!(
                uncommented.contains(&format!("{key} = "))
                    || shipped.contains(&format!("\n# [{key}]\n")),
                "{key} is not in systemd/rtsd.toml"
            );
        }
    }

    #[test]
    fn tls_needs_both_files() {
        let err = from_toml("tls-cert = \"/c.pem\"", ServeArgs::default()).unwrap_err();
        assert_eq!(err.0, vec!["tls-cert and tls-key: give both or neither"]);
        let args = ServeArgs {
            given: Given {
                tls_key: Some("/k.pem".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let s = from_toml("tls-cert = \"/c.pem\"", args).unwrap();
        assert_eq!(s.tls_key, Some(PathBuf::from("/k.pem")));
    }

    #[test]
    fn clickhouse_table_and_flags() {
        let text = "store = \"clickhouse\"\n[clickhouse]\nurl = \"http://10.0.0.1:8123\"\n\
                    database = \"tsdb\"\nuser = \"rtsd\"\npassword = \"secret\"\n\
                    batch-points = 1000\nflush-interval = \"250ms\"\ncompression = \"none\"";
        let s = from_toml(text, ServeArgs::default()).unwrap();
        assert_eq!(s.store, StoreKind::Clickhouse);
        let c = &s.clickhouse;
        assert_eq!(c.url.as_deref(), Some("http://10.0.0.1:8123"));
        assert_eq!(
            (c.database.to_string(), c.cluster.clone()),
            ("tsdb".to_string(), None)
        );
        assert_eq!((c.batch_points, c.flush_interval_ms), (1000, 250));
        assert_eq!(c.compression, crate::clickhouse::Compression::None);
        assert_eq!(
            ClickHouseSettings::default().compression,
            crate::clickhouse::Compression::Gzip
        );
        assert!(!format!("{s:?}").contains("secret"));
        assert!(!s.shown().iter().any(|(_, v)| v.contains("secret")));

        // A flag overrides its field only.
        let args = parse_flags(&[
            "--clickhouse-url",
            "http://10.0.0.2:8123",
            "--clickhouse-cluster",
            "two",
        ])
        .unwrap();
        let s = from_toml(text, args).unwrap();
        let c = &s.clickhouse;
        assert_eq!(c.url.as_deref(), Some("http://10.0.0.2:8123"));
        assert_eq!(c.database.to_string(), "tsdb");
        assert_eq!(
            c.cluster.as_ref().map(ToString::to_string).as_deref(),
            Some("two")
        );

        let args = parse_flags(&[
            "--store",
            "clickhouse",
            "--clickhouse-url",
            "http://127.0.0.1:8123",
        ])
        .unwrap();
        let s = from_toml("", args).unwrap();
        assert_eq!(s.clickhouse.database.to_string(), "rtsd");
    }

    #[test]
    fn clickhouse_problems_count_only_for_that_store() {
        let err = from_toml("store = \"clickhouse\"", ServeArgs::default()).unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert!(err.0[0].contains("--clickhouse-url"), "{err}");
        let bad = "[clickhouse]\nurl = \"https://x:8443\"\ndatabase = \"1x\"\nbatch-points = 0";
        assert!(from_toml(bad, ServeArgs::default()).is_ok());
        let err = from_toml(
            &format!("store = \"clickhouse\"\n{bad}"),
            ServeArgs::default(),
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(toml::from_str::<Given>("[clickhouse]\nurls = \"x\"").is_err());
        let shards = "store = \"clickhouse\"\n[clickhouse]\nurl = \"http://a:8123\"\n\
                      shard-urls = [\"http://a:8123\", \"http://b:8123\"]";
        let err = from_toml(shards, ServeArgs::default()).unwrap_err();
        assert_eq!(err.0, ["clickhouse.shard-urls: only a cluster has shards"]);
        let s = from_toml(
            &format!("{shards}\ncluster = \"two\""),
            ServeArgs::default(),
        )
        .unwrap();
        assert_eq!(s.clickhouse.shard_urls.len(), 2);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<Given>("max_tag = 3").is_err());
    }
}
