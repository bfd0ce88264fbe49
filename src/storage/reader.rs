//! The read half of the store, shared by every HTTP request and the query
//! engine through [`crate::query::source::Source`].
//!
//! Every read merges the head (unsealed, newer) over sealed blocks. The head
//! is always copied first and RocksDB read second: a window sealed in
//! between then shows up in both (identical points, merged), never in
//! neither. Rollups are exact: an hour with unsealed points is aggregated on
//! the fly from its merged points, and a day holding such an hour is
//! refolded from its hours, with the same code the writer uses.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use rocksdb::properties::PropName;
use rocksdb::{BoundColumnFamily, DBRawIteratorWithThreadMode, ReadOptions};

use crate::model::{DataPoint, Doubles, RollupAgg, DAY_MS, MAX_TIMESTAMP_MS};
use crate::model::{NameKind, RollupResolution, SeriesMeta};
use crate::query::source::{PointScan, ScanOpener, Source, SourceError, TagSelect, VisitDoubles};

use super::cf::{self, Partitioned, Period};
use super::head::{window_start, Window, WindowSnapshot, WINDOW_MS};
use super::{blocks, chunk, index, keys, rollup};
use super::{Db, Shared, StoreError};
use crate::stats::{ColumnFamilySize, DiskUsage, StorageStats};

/// A series that received nothing since a cutoff
/// ([`StoreReader::stale_series`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StaleSeries {
    pub meta: SeriesMeta,
    /// The newest point's timestamp in ms; `None` if the series has no
    /// point at all (a crash between creating it and writing one).
    pub last_ms: Option<i64>,
}

/// Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct StoreReader {
    pub(super) shared: Arc<Shared>,
}

/// Aggregates stored in the `kind` families for `id` with starts in
/// `[from, to)`, by start.
pub(super) fn stored_rollups(
    shared: &Shared,
    kind: Partitioned,
    id: u64,
    from: i64,
    to: i64,
) -> Result<BTreeMap<i64, RollupAgg>, StoreError> {
    Ok(stored_rollup_rows(shared, kind, id, from, to)?
        .into_iter()
        .map(|agg| (agg.start_ms, agg))
        .collect())
}

/// [`stored_rollups`] as rows sorted by start, one per start, for reads,
/// which only lay a few head intervals over them: building a map of 720
/// hours and walking it was 4 % of answering query (c).
fn stored_rollup_rows(
    shared: &Shared,
    kind: Partitioned,
    id: u64,
    from: i64,
    to: i64,
) -> Result<Vec<RollupAgg>, StoreError> {
    if from >= to {
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    let mut families = 0;
    for (_, name, family) in shared.partitions(kind).covering(&shared.db, from, to - 1) {
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(keys::series_time(id, to).to_vec());
        let mut it = shared.db.raw_iterator_cf_opt(&family, ro);
        it.seek(keys::series_time(id, from));
        while let Some((k, v)) = it.item() {
            let (_, start) = keys::parse_series_time(k)
                .ok_or_else(|| StoreError::corrupt(&name, k, "malformed rollup key"))?;
            let agg = rollup::decode(start, v).map_err(|e| StoreError::corrupt(&name, k, e))?;
            rows.push(agg);
            it.next();
        }
        it.status()?;
        families += 1;
    }
    if families > 1 {
        // Fine families come first: their copy wins (see `blocks`). The
        // sort is stable, so the first of equal starts is theirs.
        rows.sort_by_key(|agg| agg.start_ms);
        rows.dedup_by_key(|agg| agg.start_ms);
    }
    Ok(rows)
}

/// Puts `agg` at its start in `rows` (sorted by start), in place of any
/// row there.
fn overlay(rows: &mut Vec<RollupAgg>, agg: RollupAgg) {
    match rows.binary_search_by_key(&agg.start_ms, |row| row.start_ms) {
        Ok(i) => rows[i] = agg,
        Err(i) => rows.insert(i, agg),
    }
}

/// Clamps a query range to the timestamps the store can hold; `None` if
/// nothing is left.
fn clamp(start: i64, end: i64) -> Option<(i64, i64)> {
    let (s, e) = (start.max(0), end.min(MAX_TIMESTAMP_MS));
    (s <= e).then_some((s, e))
}

impl StoreReader {
    pub(super) fn new(shared: Arc<Shared>) -> StoreReader {
        StoreReader { shared }
    }

    /// Up to `max` names of `kind` starting with `prefix`, in byte order
    /// (as OpenTSDB's UID table scan returns them).
    pub fn suggest(
        &self,
        kind: NameKind,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<String>, StoreError> {
        index::suggest(&self.shared, kind, prefix, max)
    }

    /// Series for `/api/search/lookup`: of `metric` if given, carrying a tag
    /// matching every `(key, value)` pair (either may be `*`), at most
    /// `limit`, by id.
    pub fn lookup(
        &self,
        metric: Option<&str>,
        tags: &[(String, String)],
        limit: usize,
    ) -> Vec<SeriesMeta> {
        self.shared.series_index.read().lookup(metric, tags, limit)
    }

    /// Series (of `metric`, if given) whose newest point is before
    /// `cutoff_ms`, oldest first. A series with a point since the cutoff
    /// in its open head window is passed over from memory, so in the
    /// usual store, where most series are live, only the stale ones cost a
    /// RocksDB seek (and only they have their keys copied).
    pub fn stale_series(
        &self,
        metric: Option<&str>,
        cutoff_ms: i64,
    ) -> Result<Vec<StaleSeries>, StoreError> {
        let ids = self.shared.series_index.read().ids(metric);
        let mut stale = Vec::new();
        for id in ids {
            let live = self
                .shared
                .head
                .read()
                .newest(id)
                .is_some_and(|w| w.has_point_since(cutoff_ms));
            if live {
                continue;
            }
            let last_ms = self.last_point(id)?.map(|p| p.timestamp_ms);
            if last_ms.map_or(true, |t| t < cutoff_ms) {
                stale.push((id, last_ms));
            }
        }
        stale.sort_by_key(|&(id, last_ms)| (last_ms, id));
        let index = self.shared.series_index.read();
        Ok(stale
            .into_iter()
            .filter_map(|(id, last_ms)| {
                Some(StaleSeries {
                    meta: index.meta(id)?,
                    last_ms,
                })
            })
            .collect())
    }

    /// The newest point of series `id`.
    pub fn last_point(&self, id: u64) -> Result<Option<DataPoint>, StoreError> {
        let head = self.shared.head.read().newest(id).map(Window::snapshot);
        let from = head.as_ref().map_or(0, |w| w.start);
        let block = blocks::newest(&self.shared.db, &self.shared.blocks, id, from)?;
        let points = match (head, block) {
            (Some(h), Some(b)) if b.start > h.start => decode(id, b.start, &b.bytes)?,
            (Some(h), Some(b)) => merge(id, &h, Some(&b.bytes))?,
            (Some(h), None) => merge(id, &h, None)?,
            (None, Some(b)) => decode(id, b.start, &b.bytes)?,
            (None, None) => return Ok(None),
        };
        let cutoff = self.cutoff(Partitioned::Blocks);
        Ok(points.last().copied().filter(|p| p.timestamp_ms >= cutoff))
    }

    /// The oldest timestamp of `kind` not expired now.
    fn cutoff(&self, kind: Partitioned) -> i64 {
        self.shared.retention.cutoff(kind, crate::model::now_ms())
    }

    pub fn series_count(&self) -> usize {
        self.shared.series.load(Relaxed)
    }

    fn wal_bytes(&self) -> u64 {
        let Ok(dir) = std::fs::read_dir(&self.shared.dir) else {
            return 0;
        };
        dir.filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// Every figure, disk usage read now.
    pub fn stats(&self) -> StorageStats {
        self.stats_with(Arc::new(self.disk_usage()))
    }

    /// The figures kept in memory, read now, with `disk` as read earlier.
    /// Costs the same whatever the number of series and partitions.
    pub fn stats_with(&self, disk: Arc<DiskUsage>) -> StorageStats {
        let (head_chunks, head_points, head_bytes) = {
            let head = self.shared.head.read();
            (head.windows(), head.points(), head.bytes())
        };
        StorageStats {
            series: self.series_count(),
            head_chunks,
            head_points,
            head_bytes,
            sealed_blocks: self.shared.sealed_blocks.load(Relaxed),
            log_records: self.shared.log_records.load(Relaxed),
            partitions: self.shared.blocks.len(),
            disk,
            spool: None,
        }
    }

    pub fn disk_usage(&self) -> DiskUsage {
        let db = &self.shared.db;
        let column_families: Vec<ColumnFamilySize> = self
            .shared
            .family_names()
            .into_iter()
            .filter_map(|name| {
                let family = self.shared.cf(&name).ok()?;
                let prop = |p: &PropName| {
                    db.property_int_value_cf(&family, p)
                        .ok()
                        .flatten()
                        .unwrap_or(0)
                };
                Some(ColumnFamilySize {
                    sst_bytes: prop(rocksdb::properties::LIVE_SST_FILES_SIZE),
                    memtable_bytes: prop(rocksdb::properties::CUR_SIZE_ALL_MEM_TABLES),
                    name,
                })
            })
            .collect();
        let wal_bytes = self.wal_bytes();
        DiskUsage {
            bytes_on_disk: wal_bytes + column_families.iter().map(|c| c.sst_bytes).sum::<u64>(),
            wal_bytes,
            column_families,
        }
    }

    /// Bytes the store occupies on disk: live SST files plus the WAL.
    pub fn bytes_on_disk(&self) -> u64 {
        self.disk_usage().bytes_on_disk
    }

    /// Empties the block cache (OpenTSDB's `/api/dropcaches`). The series
    /// map and head are not caches: they hold the only fast path to ids and
    /// the unsealed data.
    pub fn drop_caches(&self) {
        let mut cache = self.shared.cache.clone();
        cache.set_capacity(0);
        cache.set_capacity(self.shared.cache_bytes);
    }

    fn points_in(&self, id: u64, start: i64, end: i64) -> Result<Vec<DataPoint>, StoreError> {
        let mut out = Vec::new();
        self.scan(&[id], start, end)
            .scan_series(id, &mut Vec::new(), |points, within| {
                out.extend_from_slice(&points[within]);
                ControlFlow::Continue(())
            })?;
        Ok(out)
    }

    /// A scan of `ids` over `[start, end]`, cut to what retention keeps.
    fn scan(&self, ids: &[u64], start: i64, end: i64) -> Scan<'_> {
        Scan {
            reader: self,
            ids: ids.to_vec(),
            range: self.scan_range(start, end),
            heads: None,
            open: None,
            points: Vec::new(),
            doubles: Doubles::default(),
        }
    }

    /// `[start, end]` cut to what retention keeps and the store can hold.
    fn scan_range(&self, start: i64, end: i64) -> Option<(i64, i64)> {
        clamp(start.max(self.cutoff(Partitioned::Blocks)), end)
    }

    /// Hour aggregates of `id` for hours starting in `[from, to)`, by
    /// start: stored ones, replaced by on-the-fly ones where the head has
    /// data.
    fn hours(&self, id: u64, from: i64, to: i64) -> Result<Vec<RollupAgg>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let heads = self.shared.head.read().snapshot(id, from, to - 1);
        let mut hours = stored_rollup_rows(&self.shared, Partitioned::Hours, id, from, to)?;
        for h in heads {
            let block = blocks::get(&self.shared.db, &self.shared.blocks, id, h.start)?;
            if let Some(agg) = RollupAgg::of_points(h.start, &merge(id, &h, block.as_deref())?) {
                overlay(&mut hours, agg);
            }
        }
        Ok(hours)
    }

    fn rollups_in(
        &self,
        id: u64,
        resolution: RollupResolution,
        start: i64,
        end: i64,
    ) -> Result<Vec<RollupAgg>, StoreError> {
        let kind = match resolution {
            RollupResolution::Hour => Partitioned::Hours,
            RollupResolution::Day => Partitioned::Days,
        };
        let start = start.max(self.cutoff(kind));
        let Some((start, end)) = clamp(start, end.saturating_sub(1)) else {
            return Ok(Vec::new());
        };
        // Intervals starting in [start, end]: round `start` up to a boundary.
        let rows = match resolution {
            RollupResolution::Hour => {
                let from = window_start(start + WINDOW_MS - 1);
                self.hours(id, from, end + 1)?
            }
            RollupResolution::Day => {
                let from = cf::day_start(start + DAY_MS - 1);
                // Head first, as everywhere: a day whose head hour seals
                // meanwhile is still refolded below, from the stored hour.
                let mut head_days: Vec<i64> = self
                    .shared
                    .head
                    .read()
                    .starts_of(id)
                    .into_iter()
                    .map(cf::day_start)
                    .filter(|d| (from..=end).contains(d))
                    .collect();
                head_days.dedup();
                let mut days = stored_rollup_rows(&self.shared, kind, id, from, end + 1)?;
                for day in head_days {
                    let hours = self.hours(id, day, day + DAY_MS)?;
                    if let Some(agg) = rollup::fold(day, hours) {
                        overlay(&mut days, agg);
                    }
                }
                days
            }
        };
        Ok(rows)
    }
}

fn corrupt_block(id: u64, start: i64, e: chunk::ChunkError) -> StoreError {
    // The key names the block; which family of its period held it does
    // not matter to whoever reads the error.
    StoreError::corrupt("blocks", &keys::series_time(id, start), e)
}

fn decode(id: u64, start: i64, chunk: &[u8]) -> Result<Vec<DataPoint>, StoreError> {
    chunk::decode(chunk).map_err(|e| corrupt_block(id, start, e))
}

/// The head window laid over its block; a decode error is blamed on the
/// block, since head chunks are built in memory by the encoder.
fn merge(
    id: u64,
    head: &WindowSnapshot,
    block: Option<&[u8]>,
) -> Result<Vec<DataPoint>, StoreError> {
    head.merge_over(block)
        .map_err(|e| corrupt_block(id, head.start, e))
}

/// The query engine sees a store failure as its text.
impl From<StoreError> for SourceError {
    fn from(e: StoreError) -> SourceError {
        SourceError(e.to_string())
    }
}

impl Source for StoreReader {
    fn series_of_metric(&self, metric: &str) -> Result<Option<Vec<SeriesMeta>>, SourceError> {
        Ok(self.shared.series_index.read().series_of_metric(metric))
    }

    fn series_selected(
        &self,
        metric: &str,
        select: &TagSelect<'_>,
    ) -> Result<Option<Vec<SeriesMeta>>, SourceError> {
        Ok(self
            .shared
            .series_index
            .read()
            .series_selected(metric, select))
    }

    fn series_by_ids(&self, ids: &[u64]) -> Result<Vec<SeriesMeta>, SourceError> {
        Ok(self.shared.series_index.read().series_by_ids(ids))
    }

    fn points(&self, id: u64, start_ms: i64, end_ms: i64) -> Result<Vec<DataPoint>, SourceError> {
        self.points_in(id, start_ms, end_ms)
            .map_err(SourceError::from)
    }

    fn scan_points<'a>(
        &'a self,
        ids: &[u64],
        start_ms: i64,
        end_ms: i64,
    ) -> Box<dyn PointScan + 'a> {
        Box::new(self.scan(ids, start_ms, end_ms))
    }

    /// A scan seeks to each series it is asked for.
    fn parallel_scans(&self) -> bool {
        true
    }

    /// Siblings share one copy of the head's windows, taken now: before
    /// any of them creates its iterators, as each scan's own copy is.
    fn sibling_scans<'a>(&'a self, ids: &'a [u64], start_ms: i64, end_ms: i64) -> ScanOpener<'a> {
        let range = self.scan_range(start_ms, end_ms);
        let heads = Arc::new(range.map_or_else(Heads::new, |(start, end)| {
            snapshot_heads(&self.shared, ids, window_start(start), window_start(end))
        }));
        Box::new(move || {
            let mut scan = self.scan(ids, start_ms, end_ms);
            scan.heads = Some(Arc::clone(&heads));
            Box::new(scan)
        })
    }

    fn rollups(
        &self,
        id: u64,
        resolution: RollupResolution,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Option<Vec<RollupAgg>>, SourceError> {
        self.rollups_in(id, resolution, start_ms, end_ms)
            .map(Some)
            .map_err(SourceError::from)
    }

    fn name_exists(&self, kind: NameKind, name: &str) -> Result<bool, SourceError> {
        index::name_exists(&self.shared, kind, name).map_err(SourceError::from)
    }
}

/// The store's points (`points_in`, [`Source::scan_points`]): read with one
/// RocksDB iterator per block family for all the series (seeking from one
/// series to the next), each block decoded into one reused buffer.
///
/// Opened on the first scan: the head windows of every series are copied
/// first, under one lock, and the iterators created after, fine families
/// before coarse ones, so that a window sealed or moved meanwhile shows up
/// twice, never not at all (see `blocks`).
struct Scan<'a> {
    reader: &'a StoreReader,
    ids: Vec<u64>,
    /// `[start, end]`, clamped; `None` when nothing can be stored there.
    range: Option<(i64, i64)>,
    /// The head windows shared with sibling scans, if any.
    heads: Option<Arc<Heads>>,
    open: Option<Open<'a>>,
    points: Vec<DataPoint>,
    doubles: Doubles,
}

/// A window's points as a scan hands them on: [`DataPoint`]s, or
/// timestamps and doubles apart.
trait Batch {
    /// Decodes a sealed block into the batch, replacing what it held.
    fn decode(&mut self, chunk: &[u8]) -> Result<(), chunk::ChunkError>;
    /// Replaces the batch with merged points.
    fn set(&mut self, points: Vec<DataPoint>);
    /// The points at or after `start` and at or before `end`. Mostly a
    /// whole window, known from its ends: the two binary searches that
    /// cut the first and last were 2.5 % of query (b)'s profile.
    fn within(&self, start: i64, end: i64) -> std::ops::Range<usize>;
}

impl Batch for Vec<DataPoint> {
    fn decode(&mut self, chunk: &[u8]) -> Result<(), chunk::ChunkError> {
        chunk::decode_into(chunk, self)
    }
    fn set(&mut self, points: Vec<DataPoint>) {
        *self = points;
    }
    fn within(&self, start: i64, end: i64) -> std::ops::Range<usize> {
        match (self.first(), self.last()) {
            (Some(first), Some(last))
                if first.timestamp_ms >= start && last.timestamp_ms <= end =>
            {
                0..self.len()
            }
            _ => {
                self.partition_point(|p| p.timestamp_ms < start)
                    ..self.partition_point(|p| p.timestamp_ms <= end)
            }
        }
    }
}

impl Batch for Doubles {
    fn decode(&mut self, chunk: &[u8]) -> Result<(), chunk::ChunkError> {
        chunk::decode_doubles(chunk, self)
    }
    fn set(&mut self, points: Vec<DataPoint>) {
        self.clear();
        self.extend_points(&points);
    }
    fn within(&self, start: i64, end: i64) -> std::ops::Range<usize> {
        match (self.ts.first(), self.ts.last()) {
            (Some(&first), Some(&last)) if first >= start && last <= end => 0..self.len(),
            _ => self.ts.partition_point(|&t| t < start)..self.ts.partition_point(|&t| t <= end),
        }
    }
}

/// Head windows by series.
type Heads = std::collections::HashMap<u64, Vec<WindowSnapshot>>;

/// The head windows of `ids` overlapping windows `from..=to`.
fn snapshot_heads(shared: &Shared, ids: &[u64], from: i64, to: i64) -> Heads {
    let head = shared.head.read();
    ids.iter()
        .map(|&id| (id, head.snapshot(id, from, to)))
        .filter(|(_, w)| !w.is_empty())
        .collect()
}

struct Open<'a> {
    heads: Arc<Heads>,
    /// One stream per period length, fine first.
    streams: Vec<Stream<'a>>,
}

/// The block families of one period length, oldest first: their periods
/// do not overlap, so a series' blocks come out in time order.
struct Stream<'a> {
    families: Vec<Family<'a>>,
    /// The family the next block comes from.
    at: usize,
}

/// One block family. The iterator is declared before the handle it reads
/// through, so it is dropped first.
struct Family<'a> {
    period: Period,
    name: String,
    /// The first key past the current series' windows.
    upper: Vec<u8>,
    /// The start of the block under the iterator, `None` past the current
    /// series' windows: read once per move, not on every look (a scan
    /// looks two or three times a block).
    start: Option<i64>,
    it: DBRawIteratorWithThreadMode<'a, Db>,
    _family: Arc<BoundColumnFamily<'a>>,
}

impl Family<'_> {
    fn seek(&mut self, id: u64, from: i64, to: i64) -> Result<(), StoreError> {
        let (lower, upper) = blocks::window_keys(id, self.period, from, to);
        self.upper = upper;
        self.it.seek(lower);
        self.read_start()
    }

    fn next(&mut self) -> Result<(), StoreError> {
        self.it.next();
        self.read_start()
    }

    /// Reads the start of the block now under the iterator.
    fn read_start(&mut self) -> Result<(), StoreError> {
        self.start = None;
        let Some(key) = self.it.key() else {
            return Ok(self.it.status()?);
        };
        if key >= &self.upper[..] {
            return Ok(());
        }
        let (_, start) = keys::parse_series_time(key)
            .ok_or_else(|| StoreError::corrupt(&self.name, key, "malformed block key"))?;
        self.start = Some(start);
        Ok(())
    }

    /// Start and chunk of the block under the iterator; `None` past the
    /// current series' windows.
    fn block(&self) -> Option<(i64, &[u8])> {
        Some((self.start?, self.it.value()?))
    }
}

impl Stream<'_> {
    fn seek(&mut self, id: u64, from: i64, to: i64) -> Result<(), StoreError> {
        self.at = 0;
        for f in &mut self.families {
            f.seek(id, from, to)?;
        }
        Ok(())
    }

    /// Moves past families with no block left for the current series;
    /// the start of the next block, if any.
    fn settle(&mut self) -> Option<i64> {
        while let Some(f) = self.families.get(self.at) {
            if f.start.is_some() {
                return f.start;
            }
            self.at += 1;
        }
        None
    }

    /// The next block's start, once settled.
    fn start(&self) -> Option<i64> {
        self.families.get(self.at)?.start
    }

    /// The next block, once settled.
    fn block(&self) -> Option<(i64, &[u8])> {
        self.families.get(self.at)?.block()
    }

    fn advance(&mut self) -> Result<(), StoreError> {
        match self.families.get_mut(self.at) {
            Some(f) => f.next(),
            None => Ok(()),
        }
    }
}

impl<'a> Scan<'a> {
    fn open(&mut self, from: i64, to: i64) -> &mut Open<'a> {
        let shared = &*self.reader.shared;
        let (ids, heads) = (&self.ids, &mut self.heads);
        self.open.get_or_insert_with(|| {
            // Before the iterators: a window sealed in between is then
            // read twice (and merged), never missed.
            let heads = heads
                .take()
                .unwrap_or_else(|| Arc::new(snapshot_heads(shared, ids, from, to)));
            let mut streams: Vec<Stream> = Vec::new();
            for (period, name, family) in shared.blocks.covering(&shared.db, from, to) {
                let family = Family {
                    period,
                    name,
                    upper: Vec::new(),
                    start: None,
                    it: shared
                        .db
                        .raw_iterator_cf_opt(&family, ReadOptions::default()),
                    _family: family,
                };
                match streams.last_mut() {
                    Some(s) if s.families[0].period.span == period.span => s.families.push(family),
                    _ => streams.push(Stream {
                        families: vec![family],
                        at: 0,
                    }),
                }
            }
            Open { heads, streams }
        })
    }
}

impl PointScan for Scan<'_> {
    fn scan(
        &mut self,
        id: u64,
        visit: &mut dyn FnMut(&[DataPoint]) -> ControlFlow<()>,
    ) -> Result<usize, SourceError> {
        let mut buf = std::mem::take(&mut self.points);
        let read = self.scan_series(id, &mut buf, |b: &Vec<DataPoint>, r| visit(&b[r]));
        self.points = buf;
        read.map_err(SourceError::from)
    }

    fn scan_doubles(
        &mut self,
        id: u64,
        visit: &mut VisitDoubles<'_>,
    ) -> Result<usize, SourceError> {
        let mut buf = std::mem::take(&mut self.doubles);
        let read = self.scan_series(id, &mut buf, |b: &Doubles, r| {
            visit(&b.ts[r.clone()], &b.vals[r])
        });
        self.doubles = buf;
        read.map_err(SourceError::from)
    }
}

impl Scan<'_> {
    /// Hands `visit` the points of series `id` in `buf`, a window at a
    /// time, with the range of them inside the scan's.
    fn scan_series<B: Batch>(
        &mut self,
        id: u64,
        buf: &mut B,
        mut visit: impl FnMut(&B, std::ops::Range<usize>) -> ControlFlow<()>,
    ) -> Result<usize, StoreError> {
        let Some((start, end)) = self.range else {
            return Ok(0);
        };
        let (from, to) = (window_start(start), window_start(end));
        let open = self.open(from, to);
        let mut heads = open
            .heads
            .get(&id)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .peekable();
        let mut count = 0;
        // The points of one window, cut to `[start, end]`; a break from
        // `visit` ends the scan.
        let mut emit = |buf: &B| {
            let within = buf.within(start, end);
            if within.is_empty() {
                return ControlFlow::Continue(());
            }
            count += within.len();
            visit(buf, within)
        };
        let streams = &mut open.streams;
        for s in streams.iter_mut() {
            s.seek(id, from, to)?;
        }
        'scan: {
            loop {
                // The stream whose next block starts first, the finer on a tie.
                let mut next: Option<(usize, i64)> = None;
                for (i, s) in streams.iter_mut().enumerate() {
                    if let Some(block_start) = s.settle() {
                        if next.map_or(true, |(_, n)| block_start < n) {
                            next = Some((i, block_start));
                        }
                    }
                }
                let Some((i, block_start)) = next else {
                    break;
                };
                // A block caught mid-move shows in a coarser stream too.
                for s in &mut streams[i + 1..] {
                    if s.start() == Some(block_start) {
                        s.advance()?;
                    }
                }
                if let Some((_, value)) = streams[i].block() {
                    while let Some(h) = heads.next_if(|h| h.start < block_start) {
                        buf.set(merge(id, h, None)?);
                        if emit(buf).is_break() {
                            break 'scan;
                        }
                    }
                    match heads.next_if(|h| h.start == block_start) {
                        Some(h) => buf.set(merge(id, h, Some(value))?),
                        None => buf
                            .decode(value)
                            .map_err(|e| corrupt_block(id, block_start, e))?,
                    }
                    if emit(buf).is_break() {
                        break 'scan;
                    }
                }
                streams[i].advance()?;
            }
            for h in heads {
                buf.set(merge(id, h, None)?);
                if emit(buf).is_break() {
                    break 'scan;
                }
            }
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Sample, SeriesKey, Value};
    use crate::storage::{Store, StoreOptions};

    /// 2026-11-23T00:00:00Z, less three hours: the data spans two days.
    const T0: i64 = 1_795_392_000_000 - 3 * WINDOW_MS;

    fn point(t: i64, v: i64) -> DataPoint {
        DataPoint {
            timestamp_ms: T0 + t,
            value: if v % 3 == 0 {
                Value::Float(v as f64 / 8.0)
            } else {
                Value::Int(v)
            },
        }
    }

    fn put(w: &mut super::super::StoreWriter, host: &str, points: &[DataPoint]) {
        let series = SeriesKey::new("m", [("host", host)]);
        let samples: Vec<Sample> = points
            .iter()
            .map(|&point| Sample {
                series: series.clone(),
                point,
            })
            .collect();
        w.append(&samples).expect("appends");
    }

    /// A scan hands over exactly what `points` returns, for sealed blocks,
    /// head windows, head windows over blocks (late and rewritten points),
    /// windows across two day families, in any series order.
    #[test]
    fn scan_points_equals_points() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, r) = Store::open(dir.path(), StoreOptions::default()).expect("opens");
        let m = 60_000;
        // Sealed: six hours every 10 s, across midnight; one series only
        // sealed, one also later in the head.
        let sealed: Vec<DataPoint> = (0..6 * 360).map(|i| point(i * 10_000, i)).collect();
        put(&mut w, "a", &sealed);
        put(&mut w, "c", &sealed[..900]);
        w.seal_all(T0 + 30 * 24 * WINDOW_MS).expect("seals");
        // Head over blocks: late points in sealed hours, some rewriting a
        // timestamp; a new hour; a head-only series.
        put(
            &mut w,
            "a",
            &[
                point(2 * WINDOW_MS + 5, -1),
                point(2 * WINDOW_MS + 10 * m, 77),
            ],
        );
        put(
            &mut w,
            "a",
            &(0..30)
                .map(|i| point(7 * WINDOW_MS + i * m, i))
                .collect::<Vec<_>>(),
        );
        put(
            &mut w,
            "b",
            &(0..90).map(|i| point(i * m + 7, -i)).collect::<Vec<_>>(),
        );
        put(&mut w, "b", &[point(30 * m + 7, 5)]);
        let ids: Vec<u64> = r
            .series_of_metric("m")
            .expect("reads")
            .expect("exists")
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids.len(), 3);
        let ranges = [
            (i64::MIN, i64::MAX),
            (T0, T0 + 8 * WINDOW_MS),
            (T0 + 1, T0 + 2 * WINDOW_MS + 10 * m),
            (T0 + 2 * WINDOW_MS + 6, T0 + 3 * WINDOW_MS - 1),
            (T0 + 3 * WINDOW_MS, T0 + 3 * WINDOW_MS),
            (T0 + 5 * WINDOW_MS - 3, T0 + 7 * WINDOW_MS + 5 * m),
            (T0 + 100 * WINDOW_MS, T0 + 101 * WINDOW_MS),
            (T0 + 5, T0 - 5),
        ];
        let orders = [
            ids.clone(),
            ids.iter().rev().copied().collect(),
            vec![ids[1], 999],
        ];
        for (start, end) in ranges {
            for order in &orders {
                let mut scan = r.scan_points(order, start, end);
                for &id in order {
                    let mut got = Vec::new();
                    let n = scan
                        .scan(id, &mut |p| {
                            assert!(!p.is_empty());
                            got.extend_from_slice(p);
                            ControlFlow::Continue(())
                        })
                        .expect("scans");
                    let want = r.points(id, start, end).expect("reads");
                    assert_eq!(n, want.len());
                    assert_eq!(got, want, "{id} in [{start}, {end}]");
                }
                // The same points as doubles, from a scan of its own.
                let mut scan = r.scan_points(order, start, end);
                for &id in order {
                    let mut got = Doubles::default();
                    let n = scan
                        .scan_doubles(id, &mut |ts, vals| {
                            assert!(!ts.is_empty());
                            assert_eq!(ts.len(), vals.len());
                            got.ts.extend_from_slice(ts);
                            got.vals.extend_from_slice(vals);
                            ControlFlow::Continue(())
                        })
                        .expect("scans");
                    let mut want = Doubles::default();
                    want.extend_points(&r.points(id, start, end).expect("reads"));
                    assert_eq!(n, want.len());
                    assert_eq!(got, want, "{id} in [{start}, {end}] as doubles");
                }
            }
        }
        // A visitor that breaks (a query past its deadline) gets no more.
        let mut scan = r.scan_points(&ids, i64::MIN, i64::MAX);
        for &id in &ids {
            let mut slices = 0;
            let n = scan
                .scan(id, &mut |_| {
                    slices += 1;
                    ControlFlow::Break(())
                })
                .expect("scans");
            assert_eq!(slices, 1);
            assert!(n < r.points(id, i64::MIN, i64::MAX).unwrap().len(), "{id}");
        }
    }

    /// A group large enough for helper threads reads through sibling scans
    /// that share one copy of the head: sealed hours, head hours, late
    /// points laid over blocks, answered as the general sweep answers them.
    #[test]
    fn sibling_scans_answer_as_one_scan() {
        use crate::query::{execute, QueryLimits, QueryRequest};
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut w, r) = Store::open(dir.path(), StoreOptions::default()).expect("opens");
        // 130 series × 3 hours at 10 s: 140 k points, past the helpers'
        // threshold; the first two hours sealed, then late points into
        // them.
        for h in 0..130 {
            let points: Vec<DataPoint> = (0..1080).map(|i| point(i * 10_000 + h, i + h)).collect();
            put(&mut w, &format!("h{h}"), &points);
        }
        let grace = StoreOptions::default().seal_grace_ms;
        assert_eq!(
            w.seal_due(T0 + 2 * WINDOW_MS + grace + 1).expect("seals"),
            260
        );
        for h in (0..130).step_by(3) {
            put(
                &mut w,
                &format!("h{h}"),
                &[point(20 * 60_000 + 1, -7), point(30_000 + h, 1000)],
            );
        }
        let body = format!(
            r#"{{"start":{},"end":{},"queries":[{{"aggregator":"sum","metric":"m","downsample":"1m-avg"}}]}}"#,
            T0,
            T0 + 3 * WINDOW_MS
        );
        let request = QueryRequest::from_json(body.as_bytes()).expect("parses");
        let [general, grid] = [0, QueryLimits::default().grid_max_slots].map(|grid_max_slots| {
            let limits = QueryLimits {
                grid_max_slots,
                ..QueryLimits::default()
            };
            let response = execute(&r, &request, T0 + 30 * WINDOW_MS, &limits).expect("answers");
            assert_eq!(response.sweeps.grid, usize::from(grid_max_slots > 0));
            let mut out = String::new();
            response.write_json(&mut out);
            out
        });
        assert_eq!(grid, general);
    }
}
