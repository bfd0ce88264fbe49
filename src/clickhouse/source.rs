//! [`ClickHouseSource`]: the query engine's [`Source`] over the ClickHouse
//! store, so `/api/query` runs the same engine on either store. What SQL
//! computes is only what the engine would compute bit for bit (series
//! selection, the time range, and the per-series downsample buckets of
//! [`super::buckets`]); every aggregator across series, fill, rate and
//! filter SQL cannot express exactly stays in the engine, which is what
//! makes the answers byte-identical to the embedded store's
//! (`tests/it/clickhouse_source.rs` replays every case of
//! `protocol/queries/` on both).
//!
//! # Reads
//!
//! * **Series** come from the `series` table: by metric through its sort
//!   key, which leads with the metric, or by id (TSUID queries), which
//!   reads the whole table. An id found with two keys is a hash
//!   collision ([`super::writer`] refuses them, but two nodes can race);
//!   the read fails rather than merge two series.
//! * **Names**: a metric is found through the sort key; a tag key or value
//!   by `has()` over the whole series table, which is fine for the series
//!   counts one server holds and is the first thing to index for more.
//! * **Points** of many series ([`Source::scan_points`]) come from ONE
//!   statement per 4096 series (what fits in a statement, see
//!   `IDS_PER_STATEMENT`), streamed: rows are decoded as they arrive and
//!   handed over a series at a time, never collected whole. The engine
//!   asks for the series in its own order (by key), not by id, so the
//!   statement sorts by each id's place in the request
//!   (`transform(series, ids, places)`, a hash lookup; `indexOf` was 15×
//!   slower with 4096 ids) and then by time. A series asked for after
//!   later ones were read is served from what was kept while passing it.
//!   [`Source::points`] is such a scan of one series.
//! * **One point per timestamp, newest write wins**: `FINAL`, which
//!   collapses the rows of one `(series, ts)` to the highest `version`
//!   before the answer. `argMax(..., version)` with `GROUP BY series, ts`
//!   is the alternative; on 18.16.1 (this 2-core machine, loaded; median
//!   of 9) reading 1000 series, 405 000 rows of which 105 000 were
//!   duplicates in unmerged parts, in request order took 135 ms with
//!   `FINAL` and 277 ms with `argMax`; one series of 300 points took 4 ms
//!   either way. So `FINAL`.
//! * **Rollups** ([`Source::rollups`]): the rows of `rollup_1h`/`rollup_1d`
//!   that match the points there now (checked per interval by `count()`
//!   and `sum(version)` of the `FINAL` points), and every other interval
//!   holding points computed on the fly from them, as the embedded reader
//!   does for unsealed hours; see [`super::rollups`] for why that is
//!   exact whoever wrote or computed what.
//! * **Buckets** ([`Source::scan_buckets`]): a fixed downsample of
//!   count, sum, avg, min, max, first or last with buckets of 5 minutes or
//!   longer that rollups cannot serve (not whole hours) is one
//!   `GROUP BY series, bucket` statement per round of series, exact or
//!   answered `None` per series (see [`super::buckets`]).
//! * Annotations are not part of [`Source`]: [`super::ClickHouseBackend`]
//!   reads and writes the `annotations` table, running its statements on
//!   this source's thread (`ClickHouseSource::execute`).
//!
//! # The bridge from a synchronous trait to an async client
//!
//! [`Source`] is synchronous and the engine calls it from blocking
//! threads (`spawn_blocking` in the HTTP layer, plain threads in tests);
//! the client is async hyper. The source owns a small runtime of its own
//! (one worker thread, `rtsd-clickhouse`) on which every request runs; the
//! calling thread waits on a channel for the answer, or for each piece of
//! a streamed one. That cannot deadlock whatever runtime, if any, the
//! caller belongs to: the future never needs the caller's runtime to make
//! progress (the source also builds its own client, because a pooled
//! connection is served by a task of the runtime that opened it). The
//! wait itself is `blocking_recv`, which panics on an async worker
//! thread rather than stall it, as blocking there would. Decoding happens
//! on the calling thread, so the one worker only moves bytes.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::ops::ControlFlow;

use bytes::Bytes;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::{mpsc, oneshot};

use crate::model::{
    DataPoint, NameKind, RollupAgg, RollupResolution, SeriesKey, SeriesMeta, Value,
};
use crate::query::source::{Buckets, PointScan, RollupScan, Source, SourceError};

use super::client::{ClickHouseError, Client, Compression};
use super::rowbinary::{RowError, RowReader};
use super::schema::Identifier;
use super::{buckets, id_list, quoted, rollups, IDS_PER_STATEMENT};

/// Reads the ClickHouse store of one database for the query engine.
pub struct ClickHouseSource {
    client: Client,
    database: Identifier,
    bridge: Bridge,
    /// The shortest downsample bucket aggregated in SQL.
    min_bucket_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error("starting the clickhouse reader's thread: {0}")]
    Thread(#[from] std::io::Error),
}

impl ClickHouseSource {
    /// A source reading `database` on the server at `url`
    /// (`http://HOST:PORT`), as `user` with `password` when given. Starts
    /// the source's thread; connects on the first read.
    pub fn new(
        url: &str,
        user: Option<&str>,
        password: Option<&str>,
        database: Identifier,
    ) -> Result<ClickHouseSource, OpenError> {
        Ok(ClickHouseSource {
            client: Client::new(url, user, password)?,
            database,
            bridge: Bridge::new()?,
            min_bucket_ms: buckets::DEFAULT_MIN_STEP_MS,
        })
    }

    /// Aggregates downsample buckets of `step_ms` and longer in SQL
    /// (5 minutes by default; see [`super::buckets`] for why).
    pub fn with_min_bucket(mut self, step_ms: i64) -> ClickHouseSource {
        self.min_bucket_ms = step_ms;
        self
    }

    /// The database read.
    pub(super) fn database(&self) -> &Identifier {
        &self.database
    }

    /// Runs `sql` on the source's thread (see the module doc) and returns
    /// its whole answer; [`super::ClickHouseBackend`] runs its statements
    /// here too.
    pub(super) fn execute(&self, sql: String) -> Result<Bytes, SourceError> {
        let client = self.client.clone();
        self.bridge.run(async move { client.execute(&sql).await })
    }

    /// Runs `statement` (`INSERT INTO t (cols) FORMAT RowBinary`) with
    /// `rows` as its data, on the source's thread ([`Client::insert`]: on
    /// the shards when it returns).
    pub(super) fn insert(&self, statement: String, rows: Vec<u8>) -> Result<(), SourceError> {
        let client = self.client.clone();
        self.bridge
            .run(async move { client.insert(&statement, rows, Compression::None).await })
    }

    /// The series rows `condition` selects, by id; an id with two keys
    /// fails.
    fn series_where(&self, condition: &str) -> Result<Vec<SeriesMeta>, SourceError> {
        self.series_limited(condition, None)
    }

    /// The first `limit` (all when `None`) series rows `condition`
    /// selects, by id; an id with two keys fails.
    pub(super) fn series_limited(
        &self,
        condition: &str,
        limit: Option<usize>,
    ) -> Result<Vec<SeriesMeta>, SourceError> {
        let limit = limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default();
        let answer = self.execute(format!(
            "SELECT DISTINCT series, key FROM {}.series WHERE {condition} \
             ORDER BY series, key{limit} FORMAT RowBinary",
            self.database
        ))?;
        let mut r = RowReader::new(&answer);
        let mut out: Vec<SeriesMeta> = Vec::new();
        while !r.is_done() {
            let id = r.u64().map_err(row_error)?;
            let key = series_key(id, r.bytes().map_err(row_error)?)?;
            if let Some(before) = out.last().filter(|s| s.id == id) {
                return Err(collision(id, &before.key, &key));
            }
            out.push(SeriesMeta { id, key });
        }
        Ok(out)
    }

    fn scan(&self, ids: &[u64], start_ms: i64, end_ms: i64) -> Scan<'_> {
        let mut unique = Vec::with_capacity(ids.len());
        let mut places = HashMap::with_capacity(ids.len());
        // Nothing can be stored in an empty range.
        if start_ms <= end_ms {
            for &id in ids {
                places.entry(id).or_insert_with(|| {
                    unique.push(id);
                    unique.len() - 1
                });
            }
        }
        Scan {
            source: self,
            ids: unique,
            places,
            start_ms,
            end_ms,
            reading: None,
            opened: 0,
            early: HashMap::new(),
            points: Vec::new(),
        }
    }

    /// The rollups of each series of `ids` (at most [`IDS_PER_STATEMENT`])
    /// with data, as [`Source::rollups`] answers them: three statements
    /// for all of them (what the points hold per interval, the stored
    /// rows, the points of the intervals no stored row matches), however
    /// many series.
    fn rollups_of(
        &self,
        ids: &[u64],
        resolution: RollupResolution,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<HashMap<u64, Vec<RollupAgg>>, SourceError> {
        let mut out = HashMap::new();
        let Some((from, to)) = rollups::interval_range(resolution, start_ms, end_ms) else {
            return Ok(out);
        };
        if ids.is_empty() {
            return Ok(out);
        }
        let w = rollups::width(resolution);
        let asked: HashSet<u64> = ids.iter().copied().collect();
        let answer = self.execute(rollups::held_sql(
            &self.database,
            &id_list(ids),
            w,
            from,
            to,
        ))?;
        let held = rollups::parse_held(&answer).map_err(row_error)?;
        let fits = held.iter().all(|(series, held)| {
            asked.contains(series)
                && held
                    .iter()
                    .all(|h| (from..to).contains(&h.start_ms) && h.start_ms % w == 0)
        });
        if !fits {
            return Err(bad_answer(
                &answer,
                "holds a series or interval not asked for",
            ));
        }
        if held.is_empty() {
            return Ok(out);
        }
        let with_data: Vec<u64> = held.keys().copied().collect();
        let answer = self.execute(rollups::stored_sql(
            &self.database,
            resolution,
            &id_list(&with_data),
            from,
            to,
        ))?;
        let mut stored: HashMap<u64, Vec<rollups::Row>> = HashMap::new();
        for row in rollups::parse_rows(&answer).map_err(row_error)? {
            if !held.contains_key(&row.series) {
                return Err(bad_answer(
                    &answer,
                    "holds a rollup of a series not asked for",
                ));
            }
            stored.entry(row.series).or_default().push(row);
        }
        let mut found: HashMap<u64, std::collections::BTreeMap<i64, RollupAgg>> = HashMap::new();
        let mut missing: HashMap<u64, Vec<i64>> = HashMap::new();
        // The points to read, in statements of a bounded size (an answer
        // is held whole); a series with more than a statement's worth is
        // read on its own, streamed.
        let mut statements: Vec<rollups::Ranges> = vec![Vec::new()];
        let mut budget = MISSING_POINTS_PER_STATEMENT;
        let mut alone = Vec::new();
        for (&series, held) in &held {
            let rows = stored.get(&series).map_or(&[][..], Vec::as_slice);
            let matched = rollups::matching(held, rows);
            let left: Vec<i64> = held
                .iter()
                .map(|h| h.start_ms)
                .filter(|s| !matched.contains_key(s))
                .collect();
            found.insert(series, matched);
            if left.is_empty() {
                continue;
            }
            let spans = rollups::spans(&left, w, SPANS_PER_SERIES);
            missing.insert(series, left);
            let cost: u64 = held
                .iter()
                .filter(|h| spans.iter().any(|(a, b)| (*a..*b).contains(&h.start_ms)))
                .map(|h| h.count)
                .sum();
            if cost > MISSING_POINTS_PER_STATEMENT {
                alone.push((series, spans));
                continue;
            }
            let current = statements.last_mut().expect("one statement at least");
            if cost > budget || current.len() >= MISSING_SERIES_PER_STATEMENT {
                statements.push(Vec::new());
                budget = MISSING_POINTS_PER_STATEMENT;
            }
            budget -= cost;
            statements
                .last_mut()
                .expect("one statement at least")
                .push((series, spans));
        }
        for (series, spans) in alone {
            let (first, end) = (spans[0].0, spans[spans.len() - 1].1);
            let points = self.points(series, first, end - 1)?;
            let (Some(left), Some(into)) = (missing.get(&series), found.get_mut(&series)) else {
                continue;
            };
            for agg in rollups::aggregates(resolution, &points) {
                if left.binary_search(&agg.start_ms).is_ok() {
                    into.insert(agg.start_ms, agg);
                }
            }
        }
        for chunk in statements.iter().filter(|s| !s.is_empty()) {
            let answer = self.execute(rollups::points_sql(&self.database, chunk))?;
            let points = rollups::parse_points(&answer).map_err(row_error)?;
            if !rollups::fits(chunk, &points) {
                return Err(bad_answer(&answer, "is out of order or out of range"));
            }
            for run in points.chunk_by(|a, b| a.0 == b.0) {
                let series = run[0].0;
                let (Some(left), Some(into)) = (missing.get(&series), found.get_mut(&series))
                else {
                    continue;
                };
                let plain: Vec<DataPoint> = run.iter().map(|(_, p, _)| *p).collect();
                for agg in rollups::aggregates(resolution, &plain) {
                    if left.binary_search(&agg.start_ms).is_ok() {
                        into.insert(agg.start_ms, agg);
                    }
                }
            }
        }
        for (series, aggs) in found {
            out.insert(series, aggs.into_values().collect());
        }
        Ok(out)
    }

    /// Opens the statement that reads the points of the `chunk`th
    /// [`IDS_PER_STATEMENT`] of the scan's ids.
    fn read_chunk(&self, scan_ids: &[u64], chunk: usize, start_ms: i64, end_ms: i64) -> Reading {
        let first = chunk * IDS_PER_STATEMENT;
        let ids = &scan_ids[first..scan_ids.len().min(first + IDS_PER_STATEMENT)];
        let places: Vec<u64> = (first as u64..).take(ids.len()).collect();
        let ids = id_list(ids);
        let sql = format!(
            "SELECT series, ts, is_int, int_value, float_value FROM {}.points FINAL \
             WHERE series IN ({ids}) AND ts >= {start_ms} AND ts <= {end_ms} \
             ORDER BY transform(series, [{ids}], [{}], 0), ts FORMAT RowBinary",
            self.database,
            id_list(&places)
        );
        Reading {
            pieces: self.bridge.stream(self.client.clone(), sql),
            first,
            end: first + IDS_PER_STATEMENT,
            bytes: Vec::new(),
            at: 0,
            last: None,
            finished: false,
        }
    }
}

impl Source for ClickHouseSource {
    fn series_of_metric(&self, metric: &str) -> Result<Option<Vec<SeriesMeta>>, SourceError> {
        let series = self.series_where(&format!("metric = {}", quoted(metric)))?;
        Ok((!series.is_empty()).then_some(series))
    }

    fn series_by_ids(&self, ids: &[u64]) -> Result<Vec<SeriesMeta>, SourceError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            out.extend(self.series_where(&format!("series IN ({})", id_list(chunk)))?);
        }
        Ok(out)
    }

    fn points(&self, id: u64, start_ms: i64, end_ms: i64) -> Result<Vec<DataPoint>, SourceError> {
        let mut out = Vec::new();
        self.scan(&[id], start_ms, end_ms).scan(id, &mut |points| {
            out.extend_from_slice(points);
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    fn scan_points<'a>(
        &'a self,
        ids: &[u64],
        start_ms: i64,
        end_ms: i64,
    ) -> Box<dyn PointScan + 'a> {
        Box::new(self.scan(ids, start_ms, end_ms))
    }

    /// Stored rows where they match the points there now, the rest
    /// computed from raw points (see [`super::rollups`]).
    fn rollups(
        &self,
        id: u64,
        resolution: RollupResolution,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Option<Vec<RollupAgg>>, SourceError> {
        let mut all = self.rollups_of(&[id], resolution, start_ms, end_ms)?;
        Ok(Some(all.remove(&id).unwrap_or_default()))
    }

    /// [`Source::rollups`] of 1024 series (`ROLLUP_IDS`) per round of statements.
    fn scan_rollups<'a>(
        &'a self,
        ids: &[u64],
        resolution: RollupResolution,
        start_ms: i64,
        end_ms: i64,
    ) -> Box<dyn RollupScan + 'a> {
        let (unique, places) = places(ids);
        Box::new(RollupRead {
            source: self,
            ids: unique,
            places,
            resolution,
            start_ms,
            end_ms,
            loaded: HashSet::new(),
            ready: HashMap::new(),
        })
    }

    fn scan_buckets<'a>(
        &'a self,
        ids: &[u64],
        buckets: Buckets,
        start_ms: i64,
        end_ms: i64,
    ) -> Option<Box<dyn RollupScan + 'a>> {
        if buckets.step_ms < self.min_bucket_ms.max(1) {
            return None;
        }
        let (unique, places) = places(ids);
        Some(Box::new(BucketRead {
            source: self,
            per_round: buckets::series_per_statement(buckets.step_ms, start_ms, end_ms),
            ids: unique,
            places,
            buckets,
            range: (start_ms, end_ms),
            loaded: HashSet::new(),
            ready: HashMap::new(),
        }))
    }

    fn name_exists(&self, kind: NameKind, name: &str) -> Result<bool, SourceError> {
        let name = quoted(name);
        let condition = match kind {
            NameKind::Metric => format!("metric = {name}"),
            NameKind::TagKey => format!("has(tag_keys, {name})"),
            NameKind::TagValue => format!("has(tag_values, {name})"),
        };
        let answer = self.execute(format!(
            "SELECT 1 FROM {}.series WHERE {condition} LIMIT 1 FORMAT RowBinary",
            self.database
        ))?;
        Ok(!answer.is_empty())
    }
}

/// One open [`Source::scan_points`]. Statements are opened in order, the
/// first on the first [`PointScan::scan`].
struct Scan<'a> {
    source: &'a ClickHouseSource,
    /// The ids in the order first asked for; an id's index is its place.
    ids: Vec<u64>,
    places: HashMap<u64, usize>,
    start_ms: i64,
    end_ms: i64,
    /// The statement being read.
    reading: Option<Reading>,
    /// How many statements were opened.
    opened: usize,
    /// Points of series passed before they were asked for.
    early: HashMap<u64, Vec<DataPoint>>,
    /// The series being handed over, reused.
    points: Vec<DataPoint>,
}

/// A streamed answer of [`ClickHouseSource::read_chunk`] and how far it has
/// been decoded.
struct Reading {
    pieces: mpsc::Receiver<Piece>,
    /// The places this statement covers, `first..end`.
    first: usize,
    end: usize,
    /// Received and not yet decoded from `at` on: a row may straddle two
    /// pieces.
    bytes: Vec<u8>,
    at: usize,
    /// The place and time of the last row taken.
    last: Option<(usize, i64)>,
    /// Whether the answer's last piece has arrived.
    finished: bool,
}

/// A piece of a streamed answer; `Ok(None)` says it is complete.
type Piece = Result<Option<Bytes>, ClickHouseError>;

/// `series, ts, is_int, int_value, float_value`.
const ROW_LEN: usize = 8 + 8 + 1 + 8 + 8;

/// Pieces a stream may run ahead of its reader (hyper hands over what each
/// socket read brings, tens of KiB), so memory per scan stays bounded.
const PIECES_AHEAD: usize = 8;

struct Row {
    series: u64,
    place: usize,
    point: DataPoint,
}

enum Next {
    Row(Row),
    /// The next row has not fully arrived.
    More,
    End,
}

impl Reading {
    /// The next row, checked, without taking it. ClickHouse writes an error
    /// it meets mid-answer after the rows already sent, so every row must
    /// belong: a series of this statement, in order, in the range.
    fn next(&self, places: &HashMap<u64, usize>, range: (i64, i64)) -> Result<Next, SourceError> {
        let rest = &self.bytes[self.at..];
        if rest.len() < ROW_LEN {
            return match (self.finished, rest.is_empty()) {
                (false, _) => Ok(Next::More),
                (true, true) => Ok(Next::End),
                (true, false) => Err(bad_answer(rest, "ends inside a row")),
            };
        }
        let mut r = RowReader::new(&rest[..ROW_LEN]);
        let decoded = (|| {
            let series = r.u64()?;
            let ts = r.i64()?;
            let is_int = r.flag()?;
            let (int_value, float_value) = (r.i64()?, r.f64()?);
            Ok::<_, RowError>((series, ts, is_int, int_value, float_value))
        })();
        let Ok((series, ts, is_int, int_value, float_value)) = decoded else {
            return Err(bad_answer(rest, "holds a value flag other than 0 or 1"));
        };
        let place = places
            .get(&series)
            .copied()
            .filter(|p| (self.first..self.end).contains(p));
        let Some(place) = place else {
            return Err(bad_answer(rest, "holds a series not asked for"));
        };
        let in_order = self.last.map_or(true, |last| (place, ts) > last);
        if !in_order || ts < range.0 || ts > range.1 {
            return Err(bad_answer(rest, "is out of order or out of range"));
        }
        let value = if is_int {
            Value::Int(int_value)
        } else {
            Value::Float(float_value)
        };
        Ok(Next::Row(Row {
            series,
            place,
            point: DataPoint {
                timestamp_ms: ts,
                value,
            },
        }))
    }

    fn take(&mut self, row: &Row) {
        self.at += ROW_LEN;
        self.last = Some((row.place, row.point.timestamp_ms));
    }

    /// Waits for the next piece of the answer.
    fn receive(&mut self) -> Result<(), SourceError> {
        match self.pieces.blocking_recv() {
            Some(Ok(Some(piece))) => {
                self.bytes.drain(..self.at);
                self.at = 0;
                self.bytes.extend_from_slice(&piece);
                Ok(())
            }
            Some(Ok(None)) => {
                self.finished = true;
                Ok(())
            }
            Some(Err(e)) => Err(source_error(e)),
            None => Err(stopped()),
        }
    }
}

impl Scan<'_> {
    /// Reads the open statement up to the rows of `place`: rows before it
    /// are kept in `early`, rows of it go to `visit` in slices until it
    /// breaks. Returns how many points `visit` got.
    fn read_until(
        &mut self,
        place: usize,
        visit: &mut dyn FnMut(&[DataPoint]) -> ControlFlow<()>,
    ) -> Result<usize, SourceError> {
        let Some(reading) = self.reading.as_mut() else {
            return Ok(0);
        };
        let range = (self.start_ms, self.end_ms);
        let mut handed = 0;
        self.points.clear();
        loop {
            match reading.next(&self.places, range)? {
                Next::More => {
                    // Hand over what is here before waiting for more.
                    if !self.points.is_empty() {
                        handed += self.points.len();
                        if visit(&self.points).is_break() {
                            return Ok(handed);
                        }
                        self.points.clear();
                    }
                    reading.receive()?;
                }
                Next::End => break,
                Next::Row(row) if row.place < place => {
                    reading.take(&row);
                    self.early.entry(row.series).or_default().push(row.point);
                }
                Next::Row(row) if row.place == place => {
                    reading.take(&row);
                    self.points.push(row.point);
                }
                Next::Row(_) => break,
            }
        }
        if !self.points.is_empty() {
            handed += self.points.len();
            // The series is done either way.
            let _ = visit(&self.points);
        }
        Ok(handed)
    }
}

impl PointScan for Scan<'_> {
    fn scan(
        &mut self,
        id: u64,
        visit: &mut dyn FnMut(&[DataPoint]) -> ControlFlow<()>,
    ) -> Result<usize, SourceError> {
        let Some(&place) = self.places.get(&id) else {
            return Ok(0);
        };
        if let Some(points) = self.early.remove(&id) {
            // One slice: there is nothing left to stop.
            let _ = visit(&points);
            return Ok(points.len());
        }
        let chunk = place / IDS_PER_STATEMENT;
        if chunk + 1 < self.opened {
            // An earlier statement, read to its end: nothing was kept.
            return Ok(0);
        }
        while chunk >= self.opened {
            // Asked past the open statement: the rest of it is kept for
            // the series not yet asked for.
            if let Some(end) = self.reading.as_ref().map(|r| r.end) {
                self.read_until(end, &mut |_| ControlFlow::Continue(()))?;
            }
            let next = self
                .source
                .read_chunk(&self.ids, self.opened, self.start_ms, self.end_ms);
            self.reading = Some(next);
            self.opened += 1;
        }
        self.read_until(place, visit)
    }
}

/// Series one round of [`ClickHouseSource::rollups_of`] covers in a
/// rollup scan: what its answers hold stays in memory until asked for.
const ROLLUP_IDS: usize = 1024;

/// Ranges per series at most in the statement reading the points no
/// stored row stands for; more become one from the first to the last.
const SPANS_PER_SERIES: usize = 4;

/// Series per statement reading those points: each names its ranges,
/// and 18.16 parses at most 256 KiB and 50 000 AST elements.
const MISSING_SERIES_PER_STATEMENT: usize = 512;

/// Points per such statement at most (its answer is held whole, 41
/// bytes a point); a series with more is read on its own, streamed.
const MISSING_POINTS_PER_STATEMENT: u64 = 1 << 20;

/// One open [`Source::scan_rollups`]: the series are read
/// [`ROLLUP_IDS`] at a time, the round holding a series asked for first.
struct RollupRead<'a> {
    source: &'a ClickHouseSource,
    ids: Vec<u64>,
    places: HashMap<u64, usize>,
    resolution: RollupResolution,
    start_ms: i64,
    end_ms: i64,
    /// The rounds read.
    loaded: HashSet<usize>,
    /// What they answered, until asked for.
    ready: HashMap<u64, Vec<RollupAgg>>,
}

impl RollupScan for RollupRead<'_> {
    fn rollups(&mut self, id: u64) -> Result<Option<Vec<RollupAgg>>, SourceError> {
        let Some(&place) = self.places.get(&id) else {
            return self
                .source
                .rollups(id, self.resolution, self.start_ms, self.end_ms);
        };
        let round = place / ROLLUP_IDS;
        if self.loaded.insert(round) {
            let first = round * ROLLUP_IDS;
            let ids = &self.ids[first..self.ids.len().min(first + ROLLUP_IDS)];
            let read = self
                .source
                .rollups_of(ids, self.resolution, self.start_ms, self.end_ms)?;
            self.ready.extend(read);
        }
        Ok(Some(self.ready.remove(&id).unwrap_or_default()))
    }
}

/// One open [`Source::scan_buckets`]: the series are read `per_round` at
/// a time, one statement each round, the round holding a series asked
/// for first.
struct BucketRead<'a> {
    source: &'a ClickHouseSource,
    per_round: usize,
    ids: Vec<u64>,
    places: HashMap<u64, usize>,
    buckets: Buckets,
    /// `[start, end)` of the points aggregated.
    range: (i64, i64),
    loaded: HashSet<usize>,
    /// What the rounds read answered, until asked for.
    ready: buckets::Answer,
}

impl RollupScan for BucketRead<'_> {
    fn rollups(&mut self, id: u64) -> Result<Option<Vec<RollupAgg>>, SourceError> {
        let Some(&place) = self.places.get(&id) else {
            return Ok(None);
        };
        let round = place / self.per_round;
        if self.loaded.insert(round) && self.range.0 < self.range.1 {
            let first = round * self.per_round;
            let ids = &self.ids[first..self.ids.len().min(first + self.per_round)];
            let answer = self.source.execute(buckets::sql(
                &self.source.database,
                ids,
                self.buckets,
                self.range.0,
                self.range.1,
            ))?;
            let read = buckets::parse(&answer, ids, self.buckets.step_ms, self.range)
                .map_err(|(at, what)| bad_answer(&answer[at..], what))?;
            self.ready.extend(read);
        }
        Ok(match self.ready.remove(&id) {
            Some(found) => found.map(|b| b.iter().map(buckets::aggregate).collect()),
            // An empty range holds nothing.
            None => Some(Vec::new()),
        })
    }

    fn points_read(&self, aggs: &[RollupAgg]) -> usize {
        aggs.iter().map(|a| a.count as usize).sum()
    }
}

/// The source's own runtime (see the module doc).
struct Bridge {
    handle: Handle,
    /// Taken when dropped.
    runtime: Option<Runtime>,
}

impl Bridge {
    fn new() -> std::io::Result<Bridge> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rtsd-clickhouse")
            .enable_all()
            .build()?;
        Ok(Bridge {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on the bridge's runtime and waits for its outcome.
    fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, ClickHouseError>> + Send + 'static,
    ) -> Result<T, SourceError> {
        let (tx, rx) = oneshot::channel();
        self.handle.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.blocking_recv()
            .map_err(|_| stopped())?
            .map_err(source_error)
    }

    /// Runs the `SELECT` `sql` and hands its answer over piece by piece,
    /// a few pieces ahead of the reader. Dropping the receiver drops the
    /// answer, which closes its connection.
    fn stream(&self, client: Client, sql: String) -> mpsc::Receiver<Piece> {
        let (tx, rx) = mpsc::channel(PIECES_AHEAD);
        self.handle.spawn(async move {
            let mut answer = match client.select_stream(&sql).await {
                Ok(answer) => answer,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            loop {
                let piece = answer.next_piece().await;
                let last = !matches!(piece, Ok(Some(_)));
                if tx.send(piece).await.is_err() || last {
                    return;
                }
            }
        });
        rx
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Dropping a runtime waits for its worker, which async code must
        // not do; nothing in flight matters once the source is gone.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `ids` without repeats, in order, and the place of each in that list.
fn places(ids: &[u64]) -> (Vec<u64>, HashMap<u64, usize>) {
    let mut unique = Vec::with_capacity(ids.len());
    let mut places = HashMap::with_capacity(ids.len());
    for &id in ids {
        places.entry(id).or_insert_with(|| {
            unique.push(id);
            unique.len() - 1
        });
    }
    (unique, places)
}

/// The key of series `id` as stored.
pub(super) fn series_key(id: u64, bytes: &[u8]) -> Result<SeriesKey, SourceError> {
    SeriesKey::from_bytes(bytes).ok_or_else(|| {
        SourceError(format!(
            "clickhouse series {id:016X} has a malformed key {:?}",
            String::from_utf8_lossy(bytes)
        ))
    })
}

/// Two keys read for one id.
pub(super) fn collision(id: u64, one: &SeriesKey, other: &SeriesKey) -> SourceError {
    SourceError(format!(
        "clickhouse series id {id:016X} belongs to both {one} and {other}: \
         a hash collision, so neither can be read"
    ))
}

fn source_error(e: ClickHouseError) -> SourceError {
    SourceError(e.to_string())
}

pub(super) fn row_error(e: RowError) -> SourceError {
    SourceError(format!("clickhouse answer: {e}"))
}

fn stopped() -> SourceError {
    SourceError("the clickhouse reader stopped before answering".into())
}

/// An answer that cannot be rows; an error ClickHouse appended shows as
/// its own text.
fn bad_answer(rest: &[u8], what: &str) -> SourceError {
    if rest.starts_with(b"Code: ") {
        let text = String::from_utf8_lossy(&rest[..rest.len().min(500)]);
        return SourceError(format!(
            "clickhouse failed in the middle of its answer: {}",
            text.trim()
        ));
    }
    SourceError(format!("clickhouse answer {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clickhouse::rowbinary::PutRow;

    /// A finished answer of `bytes` for a statement over places `0..2`.
    fn answer(bytes: Vec<u8>) -> Reading {
        Reading {
            pieces: mpsc::channel(1).1,
            first: 0,
            end: 2,
            bytes,
            at: 0,
            last: None,
            finished: true,
        }
    }

    fn row(out: &mut Vec<u8>, series: u64, ts: i64, value: i64) {
        out.put_u64(series);
        out.put_i64(ts);
        out.put_u8(1);
        out.put_i64(value);
        out.put_f64(0.0);
    }

    fn errors(bytes: Vec<u8>) -> Vec<String> {
        let places = HashMap::from([(10, 0), (20, 1)]);
        let mut reading = answer(bytes);
        let mut seen = Vec::new();
        loop {
            match reading.next(&places, (0, 100)) {
                Ok(Next::Row(row)) => reading.take(&row),
                Ok(Next::End) => return seen,
                Ok(Next::More) => panic!("a finished answer wants no more"),
                Err(e) => {
                    seen.push(e.to_string());
                    return seen;
                }
            }
        }
    }

    #[test]
    fn rows_that_do_not_belong_fail_the_read() {
        let mut good = Vec::new();
        row(&mut good, 10, 1, 5);
        row(&mut good, 10, 2, 6);
        row(&mut good, 20, 1, 7);
        assert_eq!(errors(good.clone()), Vec::<String>::new());

        // An error met after the first rows were sent follows them.
        let mut failed = good.clone();
        failed.extend_from_slice(
            b"Code: 241, e.displayText() = DB::Exception: Memory limit exceeded, e.what() = DB::Exception\n",
        );
        let seen = errors(failed);
        assert!(
            seen[0].starts_with(
                "storage error: clickhouse failed in the middle of its answer: Code: 241"
            ),
            "{seen:?}"
        );

        let mut cut = good.clone();
        cut.truncate(good.len() - 1);
        let rows = |rows: &[(u64, i64)]| {
            let mut out = Vec::new();
            for &(series, ts) in rows {
                row(&mut out, series, ts, 5);
            }
            out
        };
        let disorder = "storage error: clickhouse answer is out of order or out of range";
        for (bytes, error) in [
            (cut, "storage error: clickhouse answer ends inside a row"),
            (
                rows(&[(30, 1)]),
                "storage error: clickhouse answer holds a series not asked for",
            ),
            (rows(&[(20, 1), (10, 2)]), disorder),
            (rows(&[(10, 2), (10, 2)]), disorder),
            (rows(&[(10, 101)]), disorder),
        ] {
            assert_eq!(errors(bytes), [error]);
        }
    }
}
