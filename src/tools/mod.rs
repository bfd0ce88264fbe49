//! Offline tools that work on a data dir directly, without a daemon:
//! `rtsd import` (OpenTSDB `tsdb import` files in, at full speed) and
//! `rtsd export` (points out as import lines or CSV), and
//! `rtsd clickhouse-schema`, which prints or checks the ClickHouse schema
//! and touches no data dir.
//!
//! Both open the store the normal way ([`crate::storage::Store::open`]):
//! RocksDB's `LOCK` file then makes them refuse a data dir a running daemon
//! holds, with [`ToolError::InUse`], instead of racing its writer.

pub mod clickhouse_schema;
pub mod export;
pub mod import;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::storage::{Store, StoreError, StoreOptions, StoreReader, StoreWriter};

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("data dir {0} is in use by another process (is an rtsd daemon running on it?); stop it first")]
    InUse(PathBuf),
    #[error("data dir {0} does not exist")]
    NoDataDir(PathBuf),
    #[error("store in {dir}: {source}")]
    Store {
        dir: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the store: {0}")]
    Read(String),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    ClickHouse(#[from] crate::clickhouse::SchemaError),
}

impl ToolError {
    fn io(path: impl std::fmt::Display, source: std::io::Error) -> ToolError {
        ToolError::Io {
            path: path.to_string(),
            source,
        }
    }

    fn store(dir: &Path, source: StoreError) -> ToolError {
        ToolError::Store {
            dir: dir.to_owned(),
            source,
        }
    }
}

/// Opens the store in `dir`, telling a lock held by a daemon apart from
/// other failures.
fn open_store(dir: &Path) -> Result<(StoreWriter, StoreReader), ToolError> {
    Store::open(dir, StoreOptions::default()).map_err(|e| match &e {
        // RocksDB reports the held lock as an I/O error naming the file.
        StoreError::Rocks(r)
            if r.kind() == rocksdb::ErrorKind::IOError && r.to_string().contains("LOCK") =>
        {
            ToolError::InUse(dir.to_owned())
        }
        _ => ToolError::store(dir, e),
    })
}

/// A progress bar on stderr when it is a terminal, a hidden one otherwise
/// (logs and pipes get only the summary). `total` is `None` when unknown.
fn progress(total: Option<u64>, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}
