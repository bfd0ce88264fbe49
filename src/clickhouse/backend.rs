//! [`ClickHouseBackend`]: the [`Backend`] of the ClickHouse store, so every
//! HTTP and telnet endpoint runs on it as on the embedded store. Points and
//! series come through the [`ClickHouseSource`] it owns (whose thread runs
//! every statement here too, see [`super::source`]); the local figures
//! come from the spool ([`SpoolMonitor`]).
//!
//! # The embedded store's rules, in SQL
//!
//! * **Suggest**: `DISTINCT` names of the `series` table starting with the
//!   prefix (`startsWith`, beside a `>=` the metric's sort key can use),
//!   tag names through `ARRAY JOIN`, `ORDER BY` (ClickHouse compares
//!   strings by their bytes, as RocksDB orders keys) and `LIMIT`.
//! * **Lookup**: every filter is an `arrayExists` over the zipped tag
//!   arrays, `*` matching any key or value, as in the series index; by
//!   series id (here the hash, [`super::series_id`]) and `LIMIT`.
//! * **Last point**: the newest timestamp of the series' rows, then its
//!   point as a scan reads it (the newest write of a timestamp wins).
//!   rtsd applies no retention to ClickHouse, so every stored point
//!   counts.
//! * **Stale series**: one statement, the series of the metric `LEFT JOIN`ed
//!   to one `GROUP BY series` of `max(ts)` (duplicate rows of a point share
//!   its `ts`, so no `FINAL` is needed), keeping those without a point or
//!   whose newest is before the cutoff; no point first, then oldest, then
//!   by id, as the embedded store sorts.
//! * **Annotations** (`ClickHouseNotes`): one row per note in the
//!   `annotations` table, `series` 0 for a global note, `start` the note's
//!   start in ms, `body` the JSON of [`Annotation`] the embedded store keeps
//!   (without its record-version byte: the schema version covers it). A
//!   delete writes a tombstone (`deleted = 1`, empty body) with a higher
//!   `version`; reads use `FINAL` and skip tombstones (the `deleted` test
//!   is made on the collapsed rows, in Rust, never before `FINAL`).
//! * **Figures**: the series count is a cached figure refreshed by
//!   [`Backend::disk_usage`] (so `stats` never waits on ClickHouse), the
//!   log records are the spool's, disk usage is the spool's RocksDB; a
//!   ClickHouse node has no head, blocks or partitions of its own.
//!
//! A series id of 0 would share its notes with the global ones; with ids
//! drawn from SHA-256 that is a 1 in 2^64 chance per series, and accepted.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::backend::{Backend, MetadataEntry, Notes};
use crate::model::{DataPoint, NameKind, RollupAgg, RollupResolution, SeriesMeta};
use crate::query::source::{Buckets, PointScan, RollupScan, Source, SourceError, TagSelect};
use crate::storage::{Annotation, DiskUsage, StaleSeries, StorageStats};

use super::rowbinary::{PutRow, RowReader};
use super::source::{collision, row_error, series_key};
use super::spool::SpoolMonitor;
use super::{id_list, quoted, ClickHouseSource, IDS_PER_STATEMENT};

/// The series id of global notes.
const GLOBAL: u64 = 0;

/// The wildcard of lookup filters.
const ANY: &str = "*";

/// The ClickHouse store's read side and annotation store.
pub struct ClickHouseBackend {
    source: Arc<ClickHouseSource>,
    spool: SpoolMonitor,
    /// Series in ClickHouse as last counted by [`Backend::disk_usage`];
    /// 0 until then.
    series: AtomicUsize,
    notes: Arc<NoteWrites>,
}

impl ClickHouseBackend {
    /// The backend reading through `source`, with the figures of the
    /// node's `spool`. Asks ClickHouse nothing until used.
    pub fn new(source: ClickHouseSource, spool: SpoolMonitor) -> ClickHouseBackend {
        ClickHouseBackend {
            source: Arc::new(source),
            spool,
            series: AtomicUsize::new(0),
            notes: Arc::new(NoteWrites::default()),
        }
    }

    /// Counts the series in ClickHouse again.
    fn count_series(&self) -> Result<usize, SourceError> {
        let answer = self.source.execute(format!(
            "SELECT uniqExact(series) FROM {}.series FORMAT RowBinary",
            self.source.database()
        ))?;
        let count = RowReader::new(&answer).u64().map_err(row_error)?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }
}

/// `column` starts with `prefix` (always true for an empty one). The `>=`
/// lets a sort key column skip what cannot match.
fn starts_with(column: &str, prefix: &str) -> String {
    if prefix.is_empty() {
        return "1".to_owned();
    }
    let p = quoted(prefix);
    format!("{column} >= {p} AND startsWith({column}, {p})")
}

/// `column = text`, or true for the wildcard.
fn equals_or_any(column: &str, text: &str) -> String {
    if text == ANY {
        "1".to_owned()
    } else {
        format!("{column} = {}", quoted(text))
    }
}

impl Source for ClickHouseBackend {
    fn series_of_metric(&self, metric: &str) -> Result<Option<Vec<SeriesMeta>>, SourceError> {
        self.source.series_of_metric(metric)
    }

    fn series_selected(
        &self,
        metric: &str,
        select: &TagSelect<'_>,
    ) -> Result<Option<Vec<SeriesMeta>>, SourceError> {
        self.source.series_selected(metric, select)
    }

    fn series_by_ids(&self, ids: &[u64]) -> Result<Vec<SeriesMeta>, SourceError> {
        self.source.series_by_ids(ids)
    }

    fn points(&self, id: u64, start_ms: i64, end_ms: i64) -> Result<Vec<DataPoint>, SourceError> {
        self.source.points(id, start_ms, end_ms)
    }

    fn scan_points<'a>(
        &'a self,
        ids: &[u64],
        start_ms: i64,
        end_ms: i64,
    ) -> Box<dyn PointScan + 'a> {
        self.source.scan_points(ids, start_ms, end_ms)
    }

    fn rollups(
        &self,
        id: u64,
        resolution: RollupResolution,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Option<Vec<RollupAgg>>, SourceError> {
        self.source.rollups(id, resolution, start_ms, end_ms)
    }

    // Every method, defaults included: a default left here would bypass
    // the source's bulk reads.
    fn scan_rollups<'a>(
        &'a self,
        ids: &[u64],
        resolution: RollupResolution,
        start_ms: i64,
        end_ms: i64,
    ) -> Box<dyn RollupScan + 'a> {
        self.source.scan_rollups(ids, resolution, start_ms, end_ms)
    }

    fn scan_buckets<'a>(
        &'a self,
        ids: &[u64],
        buckets: Buckets,
        start_ms: i64,
        end_ms: i64,
    ) -> Option<Box<dyn RollupScan + 'a>> {
        self.source.scan_buckets(ids, buckets, start_ms, end_ms)
    }

    fn name_exists(&self, kind: NameKind, name: &str) -> Result<bool, SourceError> {
        self.source.name_exists(kind, name)
    }
}

impl Backend for ClickHouseBackend {
    fn suggest(
        &self,
        kind: NameKind,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<String>, SourceError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let db = self.source.database();
        let (name, from) = match kind {
            NameKind::Metric => ("metric", format!("{db}.series")),
            NameKind::TagKey => ("name", format!("{db}.series ARRAY JOIN tag_keys AS name")),
            NameKind::TagValue => ("name", format!("{db}.series ARRAY JOIN tag_values AS name")),
        };
        let answer = self.source.execute(format!(
            "SELECT DISTINCT {name} FROM {from} WHERE {} ORDER BY {name} LIMIT {max} \
             FORMAT RowBinary",
            starts_with(name, prefix)
        ))?;
        let mut r = RowReader::new(&answer);
        let mut out = Vec::new();
        while !r.is_done() {
            let bytes = r.bytes().map_err(row_error)?;
            let name = std::str::from_utf8(bytes).map_err(|_| {
                SourceError(format!(
                    "clickhouse holds a name that is not UTF-8: {:?}",
                    String::from_utf8_lossy(bytes)
                ))
            })?;
            out.push(name.to_owned());
        }
        Ok(out)
    }

    fn lookup(
        &self,
        metric: Option<&str>,
        tags: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<SeriesMeta>, SourceError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conditions: Vec<String> = metric
            .map(|m| format!("metric = {}", quoted(m)))
            .into_iter()
            .collect();
        for (key, value) in tags {
            conditions.push(format!(
                "arrayExists((k, v) -> ({}) AND ({}), tag_keys, tag_values)",
                equals_or_any("k", key),
                equals_or_any("v", value)
            ));
        }
        if conditions.is_empty() {
            conditions.push("1".to_owned());
        }
        self.source
            .series_limited(&conditions.join(" AND "), Some(limit))
    }

    /// The newest timestamp first, then its point read as any scan reads
    /// points (`FINAL` over every partition of a series took 64 ms for
    /// 30 days at 60 s on 18.16; the two statements 5.6 and 2.1 ms).
    fn last_point(&self, id: u64) -> Result<Option<DataPoint>, SourceError> {
        let db = self.source.database();
        // The rows of one point share its timestamp, so no `FINAL`.
        let answer = self.source.execute(format!(
            "SELECT max(ts), count() FROM {db}.points WHERE series = {id} FORMAT RowBinary"
        ))?;
        let mut r = RowReader::new(&answer);
        let newest = r.i64().map_err(row_error)?;
        if r.u64().map_err(row_error)? == 0 {
            return Ok(None);
        }
        if let Some(&last) = self.source.points(id, newest, newest)?.last() {
            return Ok(Some(last));
        }
        // Deleted in between: what is newest now.
        let answer = self.source.execute(format!(
            "SELECT ts, is_int, int_value, float_value FROM {}.points FINAL \
             WHERE series = {id} ORDER BY ts DESC LIMIT 1 FORMAT RowBinary",
            self.source.database()
        ))?;
        if answer.is_empty() {
            return Ok(None);
        }
        let mut r = RowReader::new(&answer);
        let point = r.point().map_err(row_error)?;
        if !r.is_done() {
            return Err(SourceError(
                "clickhouse answered more than the one last point asked for".into(),
            ));
        }
        Ok(Some(point))
    }

    fn stale_series(
        &self,
        metric: Option<&str>,
        cutoff_ms: i64,
    ) -> Result<Vec<StaleSeries>, SourceError> {
        let db = self.source.database();
        let condition =
            metric.map_or_else(|| "1".to_owned(), |m| format!("metric = {}", quoted(m)));
        // `has` is 0 where the join found no point (18.16 fills missing
        // right-hand columns with defaults, and `last` may be 0 for real).
        // `GLOBAL IN`: through a cluster's `Distributed` tables a plain
        // `IN` over another one is refused (`distributed_product_mode`);
        // on plain tables it is an `IN`.
        let answer = self.source.execute(format!(
            "SELECT series, key, has, last FROM \
             (SELECT DISTINCT series, key FROM {db}.series WHERE {condition}) \
             ANY LEFT JOIN \
             (SELECT series, max(ts) AS last, toUInt8(1) AS has FROM {db}.points \
              WHERE series GLOBAL IN (SELECT series FROM {db}.series WHERE {condition}) \
              GROUP BY series) \
             USING series \
             WHERE has = 0 OR last < {cutoff_ms} \
             ORDER BY has, last, series, key FORMAT RowBinary"
        ))?;
        let mut r = RowReader::new(&answer);
        let mut out: Vec<StaleSeries> = Vec::new();
        while !r.is_done() {
            let id = r.u64().map_err(row_error)?;
            let key = series_key(id, r.bytes().map_err(row_error)?)?;
            let has = r.flag().map_err(row_error)?;
            let last = r.i64().map_err(row_error)?;
            if let Some(before) = out.last().filter(|s| s.meta.id == id) {
                return Err(collision(id, &before.meta.key, &key));
            }
            out.push(StaleSeries {
                meta: SeriesMeta { id, key },
                last_ms: has.then_some(last),
            });
        }
        Ok(out)
    }

    fn notes(&self) -> Box<dyn Notes> {
        Box::new(ClickHouseNotes {
            source: Arc::clone(&self.source),
            writes: Arc::clone(&self.notes),
        })
    }

    fn stats_with(&self, disk: Arc<DiskUsage>) -> StorageStats {
        let spool = self.spool.stats();
        StorageStats {
            series: self.series.load(Relaxed),
            log_records: spool.records,
            disk,
            spool: Some(spool),
            ..StorageStats::default()
        }
    }

    /// The spool's RocksDB; also counts the series in ClickHouse again for
    /// [`Backend::stats_with`] (the survey calls this on a blocking thread
    /// every few seconds at most). A failed count keeps the last one.
    fn disk_usage(&self) -> DiskUsage {
        match self.count_series() {
            Ok(count) => self.series.store(count, Relaxed),
            Err(e) => tracing::warn!(error = %e, "counting the series in clickhouse failed"),
        }
        self.spool.disk_usage()
    }

    /// Nothing to drop: this node caches nothing it reads from ClickHouse
    /// (every read is a statement), the spool holds points not yet shipped
    /// rather than a cache, and ClickHouse's own caches belong to the
    /// server, shared with every other node (`SYSTEM DROP MARK CACHE` is
    /// an operator's call, not a client's).
    fn drop_caches(&self) {}

    /// Rows of the `metadata` table, the newest (by clock) of a key winning
    /// after `FINAL`, so every node's posts are in one place.
    fn reads_locally(&self) -> bool {
        false
    }

    fn share_metadata(&self, entries: &[MetadataEntry]) -> Result<(), SourceError> {
        if entries.is_empty() {
            return Ok(());
        }
        let version = now_ns();
        let mut body = Vec::new();
        for e in entries {
            body.put_bytes(e.metric.as_bytes());
            body.put_bytes(e.tagset.as_bytes());
            body.put_bytes(e.name.as_bytes());
            body.put_bytes(e.json.as_bytes());
            body.put_u64(version);
        }
        self.source.insert(
            format!(
                "INSERT INTO {}.metadata (metric, tagset, name, value, version) FORMAT RowBinary",
                self.source.database()
            ),
            body,
        )
    }
}

/// Annotation writes of one backend: serialised, so the read-merge-write of
/// one node cannot lose its own fields, and numbered.
#[derive(Default)]
struct NoteWrites {
    /// The last version written.
    last: Mutex<u64>,
}

/// The annotations of a [`ClickHouseBackend`].
///
/// # Versions
///
/// Every row written gets a version above the clock in nanoseconds, above
/// the last version this node wrote and above the version of the row it
/// replaces: successive writes of one note from one node always win, even
/// if the clock steps back or another node's clock runs ahead (a version
/// far ahead then carries this node's later versions along with it, which
/// is harmless: only their order matters).
///
/// A write returns once ClickHouse has inserted the rows, on their shard
/// in a cluster (see `ClickHouseSource::insert`): that is what "durable"
/// means for this store.
///
/// Two nodes writing the same note at once each read the stored row, merge
/// and write; the row with the higher version (in practice the later
/// clock) replaces the other whole, so what one node merged in is lost, as
/// with any read-modify-write without a shared lock. Equal versions (same
/// nanosecond on two clocks) leave whichever row ClickHouse keeps last.
struct ClickHouseNotes {
    source: Arc<ClickHouseSource>,
    writes: Arc<NoteWrites>,
}

/// One row of the annotations table, after `FINAL`.
struct NoteRow {
    series: u64,
    start: i64,
    deleted: bool,
    version: u64,
    body: Vec<u8>,
}

impl NoteRow {
    fn note(&self) -> Result<Annotation, SourceError> {
        let mut note: Annotation = serde_json::from_slice(&self.body).map_err(|e| {
            SourceError(format!(
                "clickhouse annotation of series {:016X} at {}: {e}",
                self.series, self.start
            ))
        })?;
        note.series = (self.series != GLOBAL).then_some(self.series);
        Ok(note)
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl ClickHouseNotes {
    /// The rows `condition` selects, tombstones included, by series then
    /// start.
    fn rows(&self, condition: &str) -> Result<Vec<NoteRow>, SourceError> {
        let answer = self.source.execute(format!(
            "SELECT series, start, deleted, version, body FROM {}.annotations FINAL \
             WHERE {condition} ORDER BY series, start FORMAT RowBinary",
            self.source.database()
        ))?;
        let mut r = RowReader::new(&answer);
        let mut out = Vec::new();
        while !r.is_done() {
            out.push(NoteRow {
                series: r.u64().map_err(row_error)?,
                start: r.i64().map_err(row_error)?,
                deleted: r.flag().map_err(row_error)?,
                version: r.u64().map_err(row_error)?,
                body: r.bytes().map_err(row_error)?.to_vec(),
            });
        }
        Ok(out)
    }

    /// The live notes `condition` selects.
    fn notes(&self, condition: &str) -> Result<Vec<Annotation>, SourceError> {
        self.rows(condition)?
            .iter()
            .filter(|row| !row.deleted)
            .map(NoteRow::note)
            .collect()
    }

    /// Writes `rows`, each numbered past the row it replaces and the last
    /// version written; `last` is held under the writes' lock.
    fn write(&self, last: &mut u64, rows: &[NoteWrite<'_>]) -> Result<(), SourceError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut body = Vec::new();
        for row in rows {
            let version = now_ns()
                .max(last.saturating_add(1))
                .max(row.replaces.saturating_add(1));
            *last = version;
            body.put_u64(row.series);
            body.put_i64(row.start);
            body.put_u8(u8::from(row.body.is_none()));
            body.put_bytes(row.body.unwrap_or_default());
            body.put_u64(version);
        }
        self.source.insert(
            format!(
                "INSERT INTO {}.annotations (series, start, deleted, body, version) FORMAT RowBinary",
                self.source.database()
            ),
            body,
        )
    }

    /// Tombstones for the live notes `condition` selects; returns how many.
    fn delete_where(&self, condition: &str) -> Result<usize, SourceError> {
        let mut last = self.writes.last.lock();
        let found = self.rows(condition)?;
        let rows: Vec<NoteWrite<'_>> = found
            .iter()
            .filter(|row| !row.deleted)
            .map(|row| NoteWrite {
                series: row.series,
                start: row.start,
                body: None,
                replaces: row.version,
            })
            .collect();
        self.write(&mut last, &rows)?;
        Ok(rows.len())
    }
}

/// A row to write to the annotations table.
struct NoteWrite<'a> {
    series: u64,
    start: i64,
    /// The note's JSON; `None` for a tombstone.
    body: Option<&'a [u8]>,
    /// The version of the row this replaces (0 if none).
    replaces: u64,
}

fn in_range(series: u64, from_ms: i64, to_ms: i64) -> String {
    format!("series = {series} AND start >= {from_ms} AND start <= {to_ms}")
}

impl Notes for ClickHouseNotes {
    fn get(&self, series: Option<u64>, start_ms: i64) -> Result<Option<Annotation>, SourceError> {
        let series = series.unwrap_or(GLOBAL);
        Ok(self
            .notes(&format!("series = {series} AND start = {start_ms}"))?
            .into_iter()
            .next())
    }

    fn range(
        &self,
        series: Option<u64>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Annotation>, SourceError> {
        if from_ms > to_ms {
            return Ok(Vec::new());
        }
        self.notes(&in_range(series.unwrap_or(GLOBAL), from_ms, to_ms))
    }

    fn of_series(
        &self,
        ids: &[u64],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Annotation>, SourceError> {
        let mut out = Vec::new();
        if from_ms > to_ms {
            return Ok(out);
        }
        // `ids` are sorted, so the chunks' answers follow one another.
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            out.extend(self.notes(&format!(
                "series IN ({}) AND start >= {from_ms} AND start <= {to_ms}",
                id_list(chunk)
            ))?);
        }
        Ok(out)
    }

    fn upsert(
        &self,
        notes: Vec<Annotation>,
        merge: &dyn Fn(Annotation, Annotation) -> Annotation,
    ) -> Result<Vec<Annotation>, SourceError> {
        let mut last = self.writes.last.lock();
        let key = |n: &Annotation| (n.series.unwrap_or(GLOBAL), n.start_ms());
        let mut keys: Vec<(u64, i64)> = notes.iter().map(key).collect();
        keys.sort_unstable();
        keys.dedup();
        // What is stored at the keys: (note if live, version) by key.
        let mut stored: std::collections::HashMap<(u64, i64), (Option<Annotation>, u64)> =
            std::collections::HashMap::new();
        for chunk in keys.chunks(IDS_PER_STATEMENT) {
            let tuples: Vec<String> = chunk.iter().map(|(s, t)| format!("({s},{t})")).collect();
            for row in self.rows(&format!("(series, start) IN ({})", tuples.join(",")))? {
                let note = if row.deleted { None } else { Some(row.note()?) };
                stored.insert((row.series, row.start), (note, row.version));
            }
        }
        let mut out = Vec::with_capacity(notes.len());
        let mut rows: Vec<(u64, i64, Vec<u8>, u64)> = Vec::with_capacity(notes.len());
        for note in notes {
            let at = key(&note);
            let (before, version) = stored.remove(&at).unwrap_or((None, 0));
            let merged = match before {
                Some(before) => merge(before, note),
                None => note,
            };
            // Strings, integers and a string map always serialise.
            let body = serde_json::to_vec(&merged).unwrap_or_default();
            // A later note of this call at the key replaces this row.
            stored.insert(at, (Some(merged.clone()), version));
            rows.push((at.0, at.1, body, version));
            out.push(merged);
        }
        let rows: Vec<NoteWrite<'_>> = rows
            .iter()
            .map(|(series, start, body, replaces)| NoteWrite {
                series: *series,
                start: *start,
                body: Some(body),
                replaces: *replaces,
            })
            .collect();
        self.write(&mut last, &rows)?;
        Ok(out)
    }

    fn delete(&self, series: Option<u64>, start_ms: i64) -> Result<(), SourceError> {
        let series = series.unwrap_or(GLOBAL);
        self.delete_where(&format!("series = {series} AND start = {start_ms}"))
            .map(drop)
    }

    fn delete_range(
        &self,
        series: Option<u64>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<usize, SourceError> {
        if from_ms > to_ms {
            return Ok(0);
        }
        self.delete_where(&in_range(series.unwrap_or(GLOBAL), from_ms, to_ms))
    }
}
