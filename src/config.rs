//! Settings: command-line flags over a TOML file over defaults, validated
//! once at startup.
//!
//! `main` parses [`ServeArgs`] with clap, [`Settings::load`] reads the file
//! named by `--config` (if any), lets every flag that was given override it,
//! and checks the result. Every bad field is reported at once, so an operator
//! fixes a config file in one round instead of one error per restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::query::time::parse_duration;
use crate::queue::OverflowPolicy;
use crate::storage::Retention;

/// Flags of `rtsd serve`. Every field is optional so that an absent flag
/// leaves the config file's value (or the default) in place. The names are a
/// contract with scripts and the systemd unit.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML config file; flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory holding the RocksDB store [default: ./rtsd-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Telnet-style listener (also answers HTTP ingest) [default: 0.0.0.0:4242].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// HTTP API listener [default: 0.0.0.0:4243].
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// Points the ingest queue holds before the overflow policy applies [default: 262144].
    #[arg(long, value_name = "N")]
    pub queue_capacity: Option<usize>,
    /// What a full queue does: drop-oldest (count and shed) or block (push back on TCP) [default: drop-oldest].
    #[arg(long, value_name = "POLICY")]
    pub overflow: Option<OverflowPolicy>,
    /// Points per second the writer stores at most; 0 means unlimited [default: 0].
    #[arg(long, value_name = "N")]
    pub mps: Option<u32>,
    /// Most tags a point may carry [default: 8].
    #[arg(long, value_name = "N")]
    pub max_tags: Option<usize>,
    /// Longest accepted line in bytes; longer lines get an error reply [default: 65536].
    #[arg(long, value_name = "N")]
    pub max_line_bytes: Option<usize>,
    /// Reject points without tags, as OpenTSDB does.
    #[arg(long)]
    pub require_tags: bool,
    /// fsync RocksDB's write-ahead log on every commit (survives power loss, slower).
    #[arg(long)]
    pub sync_writes: bool,
    /// Let `/api/query` delete the data it matches (DELETE, or `delete` in the
    /// body or query string), like OpenTSDB's tsd.http.query.allow_delete.
    #[arg(long)]
    pub allow_delete: bool,
    /// Close a telnet connection that sent nothing for this long; on HTTP,
    /// the longest wait for a request header or the next kept-alive
    /// request, like OpenTSDB's tsd.core.socket.timeout [default: 5m].
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Refuse points further ahead of now than this [default: 1d].
    #[arg(long, value_name = "DURATION")]
    pub max_future: Option<String>,
    /// Keep raw points this long, e.g. 30d, 12h, 52w [default: forever].
    #[arg(long, value_name = "DURATION")]
    pub retention: Option<String>,
    /// Keep hourly rollups this long [default: forever].
    #[arg(long, value_name = "DURATION")]
    pub rollup_1h_retention: Option<String>,
    /// Keep daily rollups this long [default: forever].
    #[arg(long, value_name = "DURATION")]
    pub rollup_1d_retention: Option<String>,
}

/// The config file. Field docs double as the reference for operators; the
/// commented default file in `systemd/rtsd.toml` mirrors them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    http_listen: Option<String>,
    queue_capacity: Option<usize>,
    overflow: Option<OverflowPolicy>,
    mps: Option<u32>,
    max_tags: Option<usize>,
    max_line_bytes: Option<usize>,
    require_tags: Option<bool>,
    sync_writes: Option<bool>,
    allow_delete: Option<bool>,
    allow_special_chars: Option<String>,
    max_connections: Option<usize>,
    reply_buffer_bytes: Option<usize>,
    seal_grace_secs: Option<u64>,
    idle_timeout: Option<String>,
    max_future: Option<String>,
    retention: Option<String>,
    rollup_1h_retention: Option<String>,
    rollup_1d_retention: Option<String>,
    stale_after_secs: Option<u64>,
}

/// Validated settings the daemon runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub queue_capacity: usize,
    pub overflow: OverflowPolicy,
    /// 0 means unlimited.
    pub mps: u32,
    pub max_tags: usize,
    pub max_line_bytes: usize,
    pub require_tags: bool,
    pub sync_writes: bool,
    /// `/api/query` may delete what it matches (OpenTSDB's
    /// `tsd.http.query.allow_delete`); off, it answers 400 as OpenTSDB does.
    pub allow_delete: bool,
    /// Extra characters allowed in names, like `tsd.core.tag.allow_specialchars`.
    pub allow_special_chars: String,
    /// Connections served at once on both ports together; more are refused
    /// by closing them.
    pub max_connections: usize,
    /// Error replies a connection may have unsent before further ones are
    /// dropped (and counted): collectd and telegraf never read the socket.
    pub reply_buffer_bytes: usize,
    /// How long after an hour ends its head chunks stay open for late points.
    pub seal_grace_secs: u64,
    /// A connection silent this long is closed: half-open connections of
    /// rebooted collector hosts must not hold `max-connections` slots.
    pub idle_timeout: Duration,
    /// Points further ahead of now than this (ms) are refused: each future
    /// day would otherwise get its own partition.
    pub max_future_ms: i64,
    /// How long raw points and rollups are kept.
    pub retention: Retention,
    /// A series without points for this long counts as stale in
    /// `/metrics` and is `/api/rtsd/stale`'s default period.
    pub stale_after_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("./rtsd-data"),
            listen: SocketAddr::from(([0, 0, 0, 0], 4242)),
            http_listen: SocketAddr::from(([0, 0, 0, 0], 4243)),
            queue_capacity: 262_144,
            overflow: OverflowPolicy::DropOldest,
            mps: 0,
            max_tags: 8,
            max_line_bytes: 64 * 1024,
            require_tags: false,
            sync_writes: false,
            allow_delete: false,
            allow_special_chars: String::new(),
            max_connections: 10_000,
            reply_buffer_bytes: 64 * 1024,
            seal_grace_secs: 600,
            idle_timeout: Duration::from_secs(300),
            max_future_ms: 86_400_000,
            retention: Retention::default(),
            stale_after_secs: 3600,
        }
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
            None => FileConfig::default(),
        };
        Self::merge(args, file)
    }

    fn merge(args: &ServeArgs, file: FileConfig) -> Result<Settings, ConfigError> {
        let d = Settings::default();
        let mut errors = Vec::new();
        let mut addr = |name: &str, flag: &Option<String>, file: Option<String>, default| match flag
            .clone()
            .or(file)
        {
            None => default,
            Some(text) => text.parse().unwrap_or_else(|_| {
                errors.push(format!(
                    "{name}: {text:?} is not an address like 0.0.0.0:4242"
                ));
                default
            }),
        };
        let listen = addr("listen", &args.listen, file.listen, d.listen);
        let http_listen = addr(
            "http-listen",
            &args.http_listen,
            file.http_listen,
            d.http_listen,
        );
        let mut keep = |name: &str, flag: &Option<String>, file: Option<String>| {
            let text = flag.clone().or(file)?;
            parse_duration(&text)
                .map_err(|_| {
                    errors.push(format!(
                        "{name}: {text:?} is not a duration like 30d, 12h or 52w"
                    ))
                })
                .ok()
        };
        let retention = Retention {
            raw_ms: keep("retention", &args.retention, file.retention),
            rollup_1h_ms: keep(
                "rollup-1h-retention",
                &args.rollup_1h_retention,
                file.rollup_1h_retention,
            ),
            rollup_1d_ms: keep(
                "rollup-1d-retention",
                &args.rollup_1d_retention,
                file.rollup_1d_retention,
            ),
        };
        let idle_timeout = keep("idle-timeout", &args.idle_timeout, file.idle_timeout)
            .map_or(d.idle_timeout, |ms| Duration::from_millis(ms as u64));
        let max_future_ms =
            keep("max-future", &args.max_future, file.max_future).unwrap_or(d.max_future_ms);
        let s = Settings {
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(d.data_dir),
            listen,
            http_listen,
            queue_capacity: args
                .queue_capacity
                .or(file.queue_capacity)
                .unwrap_or(d.queue_capacity),
            overflow: args.overflow.or(file.overflow).unwrap_or(d.overflow),
            mps: args.mps.or(file.mps).unwrap_or(d.mps),
            max_tags: args.max_tags.or(file.max_tags).unwrap_or(d.max_tags),
            max_line_bytes: args
                .max_line_bytes
                .or(file.max_line_bytes)
                .unwrap_or(d.max_line_bytes),
            require_tags: args.require_tags || file.require_tags.unwrap_or(d.require_tags),
            sync_writes: args.sync_writes || file.sync_writes.unwrap_or(d.sync_writes),
            allow_delete: args.allow_delete || file.allow_delete.unwrap_or(d.allow_delete),
            allow_special_chars: file.allow_special_chars.unwrap_or(d.allow_special_chars),
            max_connections: file.max_connections.unwrap_or(d.max_connections),
            reply_buffer_bytes: file.reply_buffer_bytes.unwrap_or(d.reply_buffer_bytes),
            seal_grace_secs: file.seal_grace_secs.unwrap_or(d.seal_grace_secs),
            idle_timeout,
            max_future_ms,
            retention,
            stale_after_secs: file.stale_after_secs.unwrap_or(d.stale_after_secs),
        };
        errors.extend(s.problems());
        if errors.is_empty() {
            Ok(s)
        } else {
            Err(ConfigError(errors))
        }
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
        if self.max_connections == 0 {
            out.push("max-connections: must be at least 1".to_string());
        }
        if self.reply_buffer_bytes < 256 {
            out.push(format!(
                "reply-buffer-bytes: {} is below 256, too small for one error reply",
                self.reply_buffer_bytes
            ));
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

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(vec![format!("config {}: {e}", path.display())]))?;
    toml::from_str(&text)
        .map_err(|e| ConfigError(vec![format!("config {}: {}", path.display(), e.message())]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str, args: ServeArgs) -> Result<Settings, ConfigError> {
        let file: FileConfig = toml::from_str(text).expect("valid toml");
        Settings::merge(&args, file)
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
    fn allow_delete_from_the_file_or_the_flag() {
        let s = from_toml("allow-delete = true", ServeArgs::default()).unwrap();
        assert!(s.allow_delete);
        let args = ServeArgs {
            allow_delete: true,
            ..Default::default()
        };
        assert!(from_toml("", args).unwrap().allow_delete);
    }

    #[test]
    fn flags_override_the_file() {
        let args = ServeArgs {
            mps: Some(500),
            overflow: Some(OverflowPolicy::Block),
            ..Default::default()
        };
        let s = from_toml("mps = 10\nmax-tags = 12\noverflow = \"drop-oldest\"", args).unwrap();
        assert_eq!(
            (s.mps, s.max_tags, s.overflow),
            (500, 12, OverflowPolicy::Block)
        );
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
        let args = ServeArgs {
            rollup_1d_retention: Some("52w".into()),
            ..Default::default()
        };
        let s = from_toml("retention = \"30d\"\nrollup-1h-retention = \"12h\"", args).unwrap();
        let day = 86_400_000;
        assert_eq!(
            s.retention,
            Retention {
                raw_ms: Some(30 * day),
                rollup_1h_ms: Some(12 * 3_600_000),
                rollup_1d_ms: Some(52 * 7 * day),
            }
        );
        let d = Settings::load(&ServeArgs::default()).unwrap();
        assert_eq!(d.retention, Retention::default());
        assert_eq!(d.idle_timeout, std::time::Duration::from_secs(300));
        let args = ServeArgs {
            idle_timeout: Some("90s".into()),
            ..Default::default()
        };
        let s = from_toml("idle-timeout = \"1m\"\nmax-future = \"2h\"", args).unwrap();
        assert_eq!(s.idle_timeout, std::time::Duration::from_secs(90));
        assert_eq!((d.max_future_ms, s.max_future_ms), (day, 2 * 3_600_000));

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

    /// The packaged `/etc/rtsd/rtsd.toml` documents every key as a comment;
    /// uncommented, it must be a valid config that keeps the defaults, but
    /// for the data dir and the retention examples.
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
        assert_ne!(documented.retention, defaults.retention);
        let without_examples = Settings {
            data_dir: defaults.data_dir.clone(),
            retention: defaults.retention,
            ..documented
        };
        assert_eq!(without_examples, defaults);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<FileConfig>("max_tag = 3").is_err());
    }
}
