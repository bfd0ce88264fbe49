//! The read side of a store as the HTTP and telnet layers see it: the query
//! engine's [`Source`] plus what the other endpoints ask (suggest, lookup,
//! last points, stale series, annotations, the figures `stats` shows).
//! The embedded store ([`StoreReader`]) and the ClickHouse store
//! (`crate::clickhouse::ClickHouseBackend`) both implement it, so every
//! endpoint runs the same code on either; the write side's boundary is
//! [`crate::ingest::Sink`].
//!
//! Handlers hold a [`SharedBackend`]; every method may block (RocksDB reads,
//! ClickHouse round trips), so they call it from the blocking pool.

use std::sync::Arc;

use crate::model::{DataPoint, NameKind, SeriesMeta};
use crate::query::source::{Source, SourceError};
use crate::storage::{Annotation, Annotations, DiskUsage, StaleSeries, StorageStats, StoreReader};

/// What handlers share: one backend, cheap to clone.
pub type SharedBackend = Arc<dyn Backend>;

/// A store's read side (and its annotation writes, which bypass the
/// ingest queue: see [`crate::storage::annotation`]).
pub trait Backend: Source + Send + Sync {
    /// Up to `max` names of `kind` starting with `prefix`, in byte order.
    fn suggest(&self, kind: NameKind, prefix: &str, max: usize)
        -> Result<Vec<String>, SourceError>;

    /// Series for `/api/search/lookup`: of `metric` if given, carrying a
    /// tag matching every `(key, value)` pair (either may be `*`), at most
    /// `limit`, by id.
    fn lookup(
        &self,
        metric: Option<&str>,
        tags: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<SeriesMeta>, SourceError>;

    /// The newest point of series `id` that retention still keeps.
    fn last_point(&self, id: u64) -> Result<Option<DataPoint>, SourceError>;

    /// Series (of `metric`, if given) whose newest point is before
    /// `cutoff_ms`, oldest first.
    fn stale_series(
        &self,
        metric: Option<&str>,
        cutoff_ms: i64,
    ) -> Result<Vec<StaleSeries>, SourceError>;

    /// The annotation store.
    fn notes(&self) -> Box<dyn Notes>;

    /// The figures kept in memory, read now, with `disk` as read earlier
    /// (by [`crate::survey`]).
    fn stats_with(&self, disk: Arc<DiskUsage>) -> StorageStats;

    /// What the store occupies on this machine's disk; costs a walk.
    fn disk_usage(&self) -> DiskUsage;

    /// Empties the caches (`/api/dropcaches`, telnet `dropcaches`).
    fn drop_caches(&self);

    /// Shares `/api/metadata/put` entries with the other nodes of the
    /// store, if it has any; every node also keeps them in its data
    /// directory (`crate::http::metadata`).
    fn share_metadata(&self, entries: &[MetadataEntry]) -> Result<(), SourceError>;

    /// Whether reads only touch this process's memory and local disk,
    /// never wait on another server: such a store may answer a small
    /// query on an async worker instead of the blocking pool.
    fn reads_locally(&self) -> bool;

    /// Every figure, disk usage read now.
    fn stats(&self) -> StorageStats {
        self.stats_with(Arc::new(self.disk_usage()))
    }
}

/// One `/api/metadata/put` entry: its key fields and the whole posted
/// object as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataEntry {
    pub metric: String,
    pub tagset: String,
    pub name: String,
    pub json: String,
}

/// Annotations, global (`series: None`) or of one series, keyed by start.
pub trait Notes: Send + Sync {
    /// The note of `series` starting at `start_ms`.
    fn get(&self, series: Option<u64>, start_ms: i64) -> Result<Option<Annotation>, SourceError>;

    /// The notes of `series` starting in `[from_ms, to_ms]`, by start.
    fn range(
        &self,
        series: Option<u64>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Annotation>, SourceError>;

    /// The notes of every series in `ids` (sorted) starting in
    /// `[from_ms, to_ms]`, by series then start.
    fn of_series(
        &self,
        ids: &[u64],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Annotation>, SourceError>;

    /// Stores every note, each combined with the one already stored at its
    /// key (or given earlier in this call) by `merge(stored, given)`;
    /// returns what was stored, in order. Durable when it returns.
    fn upsert(
        &self,
        notes: Vec<Annotation>,
        merge: &dyn Fn(Annotation, Annotation) -> Annotation,
    ) -> Result<Vec<Annotation>, SourceError>;

    /// Deletes the note of `series` at `start_ms`, if there is one.
    fn delete(&self, series: Option<u64>, start_ms: i64) -> Result<(), SourceError>;

    /// Deletes the notes of `series` starting in `[from_ms, to_ms]`;
    /// returns how many there were.
    fn delete_range(
        &self,
        series: Option<u64>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<usize, SourceError>;
}

impl Backend for StoreReader {
    fn suggest(
        &self,
        kind: NameKind,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<String>, SourceError> {
        StoreReader::suggest(self, kind, prefix, max).map_err(SourceError::from)
    }

    fn lookup(
        &self,
        metric: Option<&str>,
        tags: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<SeriesMeta>, SourceError> {
        Ok(StoreReader::lookup(self, metric, tags, limit))
    }

    fn last_point(&self, id: u64) -> Result<Option<DataPoint>, SourceError> {
        StoreReader::last_point(self, id).map_err(SourceError::from)
    }

    fn stale_series(
        &self,
        metric: Option<&str>,
        cutoff_ms: i64,
    ) -> Result<Vec<StaleSeries>, SourceError> {
        StoreReader::stale_series(self, metric, cutoff_ms).map_err(SourceError::from)
    }

    fn notes(&self) -> Box<dyn Notes> {
        Box::new(self.annotations())
    }

    fn stats_with(&self, disk: Arc<DiskUsage>) -> StorageStats {
        StoreReader::stats_with(self, disk)
    }

    fn disk_usage(&self) -> DiskUsage {
        StoreReader::disk_usage(self)
    }

    fn drop_caches(&self) {
        StoreReader::drop_caches(self)
    }

    /// One node: the data directory's file is the whole store.
    fn share_metadata(&self, _entries: &[MetadataEntry]) -> Result<(), SourceError> {
        Ok(())
    }

    fn reads_locally(&self) -> bool {
        true
    }
}

impl Notes for Annotations {
    fn get(&self, series: Option<u64>, start_ms: i64) -> Result<Option<Annotation>, SourceError> {
        Annotations::get(self, series, start_ms).map_err(SourceError::from)
    }

    fn range(
        &self,
        series: Option<u64>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Annotation>, SourceError> {
        Annotations::range(self, series, from_ms, to_ms).map_err(SourceError::from)
    }

    fn of_series(
        &self,
        ids: &[u64],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Annotation>, SourceError> {
        Annotations::of_series(self, ids, from_ms, to_ms).map_err(SourceError::from)
    }

    fn upsert(
        &self,
        notes: Vec<Annotation>,
        merge: &dyn Fn(Annotation, Annotation) -> Annotation,
    ) -> Result<Vec<Annotation>, SourceError> {
        Annotations::upsert(self, notes, merge).map_err(SourceError::from)
    }

    fn delete(&self, series: Option<u64>, start_ms: i64) -> Result<(), SourceError> {
        Annotations::delete(self, series, start_ms).map_err(SourceError::from)
    }

    fn delete_range(
        &self,
        series: Option<u64>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<usize, SourceError> {
        Annotations::delete_range(self, series, from_ms, to_ms).map_err(SourceError::from)
    }
}
