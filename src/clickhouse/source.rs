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
//! * **Points** of many series ([`Source::scan_points`]) come in rounds:
//!   one statement for as many series as fit (4096 ids at most, see
//!   `IDS_PER_STATEMENT`, and [`ROUND_ROWS`] rows), in the order the
//!   engine asks for them (its group order, by key, which fixes the order
//!   its folds add in, so the store cannot choose it). A round's
//!   statement has neither `FINAL` nor `ORDER BY`: it brings every row of
//!   its series with its `version`, in whatever order the parts give,
//!   and rtsd keeps per series and timestamp the row of the highest
//!   version, which is what `FINAL` keeps of a
//!   `ReplacingMergeTree(version)`, then hands each series over when
//!   asked. On 18.16.1 (2 cores; median of 5 to 30) `FINAL` is what
//!   costs: a day of one series at 60 s took 8.4 ms as `FINAL` sorted by
//!   request order, 7.7 ms with `FINAL` alone, 2.5 ms with neither; of
//!   1000 series (1.44 M rows, 47 MB) 605, 278 and 211 ms, and with
//!   every point's rows there once to three times in unmerged parts
//!   (2.31 M rows) 683, 406 and 401 ms; of 10, 100 and 300 series `FINAL`
//!   took 25, 103 and 180 ms, its rows read plainly 7, 26 and 71 ms.
//!   Sorting by request order in SQL (`transform(series, ids, places)`)
//!   cost 300 ms of the 605; rtsd puts rows in their place as they
//!   arrive. The price is memory: a round is held whole (32 bytes a row)
//!   before its first series is handed over, hence the bound on its rows,
//!   which sizes rounds after the first from the rows per series seen.
//!   Two cases go back to the old way, one statement with `FINAL` sorted
//!   by request order and streamed: a round that brings more rows than
//!   the bound (dropped when it passes it; a series with more than a
//!   round holds is so streamed), and a timestamp whose newest rows
//!   disagree, two writes sharing a version (two nodes' sequences can
//!   meet), which `FINAL` settles by insertion order that the rows do not
//!   show. [`Source::points`] is a scan of one series.
//! * **One point per timestamp, newest write wins**: as above, the
//!   highest `version`, as `FINAL` collapses rows; every read of points
//!   for the engine keeps it so. Settling it in SQL without `FINAL`
//!   (`argMax(..., version)` with `GROUP BY series, ts`) took 1328 ms for
//!   the 2.31 M rows above. The buckets of [`super::buckets`] are
//!   grouped without `FINAL` too, and used only where every timestamp
//!   has one row.
//! * **Rollups** ([`Source::rollups`]): the rows of `rollup_1h`/`rollup_1d`
//!   that match the points there now (checked per interval by `count()`,
//!   `uniqExact(ts)` and `sum(version)` of the rows of points), and every
//!   other interval holding points computed on the fly from them (read as
//!   a round is, without `FINAL`), as the embedded reader does for
//!   unsealed hours; see [`super::rollups`] for why that is exact whoever
//!   wrote or computed what.
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
    /// Rows one round of a point scan holds at most (see [`ROUND_ROWS`]).
    round_rows: usize,
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
            round_rows: ROUND_ROWS,
        })
    }

    /// Holds at most `rows` rows per round of a point scan ([`ROUND_ROWS`]
    /// by default); past them a round is read in order, streamed. For
    /// tests, which need that path with a few rows.
    pub fn with_round_rows(mut self, rows: usize) -> ClickHouseSource {
        self.round_rows = rows.max(1);
        self
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
        // Nothing can be stored in an empty range.
        let (unique, places) = match start_ms <= end_ms {
            true => places(ids),
            false => (Vec::new(), HashMap::new()),
        };
        Scan {
            source: self,
            ids: unique,
            places,
            start_ms,
            end_ms,
            covered: 0,
            kept: HashMap::new(),
            reading: None,
            rows_seen: 0,
            places_seen: 0,
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
            for (series, plain) in self.points_in(chunk)? {
                let (Some(left), Some(into)) = (missing.get(&series), found.get_mut(&series))
                else {
                    continue;
                };
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

    /// The points of each series of `ranges` in its ranges, by series:
    /// its rows read without `FINAL` and the newest kept per timestamp,
    /// or, where two writes share a version, read again with `FINAL`
    /// (see [`newest`]).
    fn points_in(
        &self,
        ranges: &[(u64, Vec<(i64, i64)>)],
    ) -> Result<Vec<(u64, Vec<DataPoint>)>, SourceError> {
        let mut by_series: HashMap<u64, Vec<Versioned>> = HashMap::new();
        for (series, p, version) in self.read_points(ranges, false)? {
            by_series.entry(series).or_default().push(Versioned {
                ts: p.timestamp_ms,
                version,
                value: p.value,
            });
        }
        let mut out = Vec::with_capacity(by_series.len());
        for (series, rows) in by_series {
            match newest(rows) {
                Some(points) => out.push((series, points)),
                None => {
                    let points = self.read_points(ranges, true)?;
                    return Ok(points
                        .chunk_by(|a, b| a.0 == b.0)
                        .map(|run| (run[0].0, run.iter().map(|(_, p, _)| *p).collect()))
                        .collect());
                }
            }
        }
        Ok(out)
    }

    /// The rows of points of `ranges`: every row in any order, or with
    /// `FINAL` by series and time; checked to be what was asked for.
    fn read_points(
        &self,
        ranges: &[(u64, Vec<(i64, i64)>)],
        with_final: bool,
    ) -> Result<Vec<(u64, DataPoint, u64)>, SourceError> {
        let sql = match with_final {
            true => rollups::points_sql(&self.database, ranges),
            false => rollups::rows_sql(&self.database, ranges),
        };
        let answer = self.execute(sql)?;
        let rows = rollups::parse_points(&answer).map_err(row_error)?;
        let fits = match with_final {
            true => rollups::fits(ranges, &rows),
            false => rollups::within(ranges, &rows),
        };
        match fits {
            true => Ok(rows),
            false => Err(bad_answer(&answer, "is out of order or out of range")),
        }
    }

    /// Reads the points of `ids`, the places `first..` of a scan, in one
    /// statement without `FINAL` or `ORDER BY` (see the module doc) and
    /// keeps each series' newest write per timestamp; or says why the
    /// round must be read in order instead.
    fn read_round(
        &self,
        ids: &[u64],
        first: usize,
        places: &HashMap<u64, usize>,
        range: (i64, i64),
    ) -> Result<Round, SourceError> {
        let sql = format!(
            "SELECT series, ts, is_int, int_value, float_value, version FROM {}.points \
             WHERE series IN ({}) AND ts >= {} AND ts <= {} FORMAT RowBinary",
            self.database,
            id_list(ids),
            range.0,
            range.1
        );
        let mut stream = Stream::new(self.bridge.stream(self.client.clone(), sql));
        let mut rows: Vec<Vec<Versioned>> = vec![Vec::new(); ids.len()];
        let mut total = 0;
        loop {
            let rest = stream.fill(VERSIONED_ROW_LEN)?;
            if rest.is_empty() {
                break;
            }
            let Some((series, row)) = decode_versioned(rest) else {
                return Err(bad_answer(
                    rest,
                    "ends inside a row or holds a bad value flag",
                ));
            };
            let place = places
                .get(&series)
                .and_then(|p| p.checked_sub(first))
                .filter(|&p| p < ids.len());
            let Some(place) = place else {
                return Err(bad_answer(rest, "holds a series not asked for"));
            };
            if row.ts < range.0 || row.ts > range.1 {
                return Err(bad_answer(rest, "is out of range"));
            }
            stream.advance(VERSIONED_ROW_LEN);
            total += 1;
            if total > self.round_rows {
                // Dropping the stream ends the statement.
                let places = rows.iter().filter(|r| !r.is_empty()).count();
                return Ok(Round::TooBig {
                    rows: total,
                    places: places.max(1),
                });
            }
            rows[place].push(row);
        }
        let mut read = Vec::new();
        for (i, series) in rows.into_iter().enumerate() {
            if series.is_empty() {
                continue;
            }
            match newest(series) {
                Some(points) => read.push((first + i, points)),
                None => return Ok(Round::Undecided { rows: total }),
            }
        }
        Ok(Round::Read { read, rows: total })
    }

    /// Opens the statement that reads the points of `ids`, the places
    /// `first..` of a scan, with `FINAL`, by place and time, streamed.
    fn read_in_order(&self, ids: &[u64], first: usize, start_ms: i64, end_ms: i64) -> Reading {
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
            stream: Stream::new(self.bridge.stream(self.client.clone(), sql)),
            first,
            end: first + places.len(),
            last: None,
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

/// One open [`Source::scan_points`]: its ids are read in rounds of
/// consecutive places, the first when a series is first asked for.
struct Scan<'a> {
    source: &'a ClickHouseSource,
    /// The ids in the order first asked for; an id's index is its place.
    ids: Vec<u64>,
    places: HashMap<u64, usize>,
    start_ms: i64,
    end_ms: i64,
    /// Places below it belong to a round read or being read.
    covered: usize,
    /// Points of series read and not yet asked for, by place.
    kept: HashMap<usize, Vec<DataPoint>>,
    /// The round being read in order.
    reading: Option<Reading>,
    /// Rows, and places with rows, of the rounds read so far: how dense
    /// the series are, which sizes the next round.
    rows_seen: usize,
    places_seen: usize,
    /// The series being handed over, reused.
    points: Vec<DataPoint>,
}

/// What [`ClickHouseSource::read_round`] made of a round.
enum Round {
    /// Each place with rows, its points; `rows` rows came.
    Read {
        read: Vec<(usize, Vec<DataPoint>)>,
        rows: usize,
    },
    /// More rows than a round holds: `rows` had come, of `places` places.
    TooBig { rows: usize, places: usize },
    /// A timestamp whose newest rows disagree (two writes with one
    /// version), which only `FINAL` settles.
    Undecided { rows: usize },
}

/// Rows one round of a scan holds at most (32 bytes each while read, so
/// 64 MiB): a day of 1,000 series at 60 s is 1.44 M. A round that brings
/// more is dropped and read in order instead, streamed, having cost the
/// reading of these rows; later rounds are sized from the rows per
/// series seen so far, to half of this.
const ROUND_ROWS: usize = 2 << 20;

/// A row read without `FINAL`: a point and the version of its write.
#[derive(Debug, Clone, Copy)]
struct Versioned {
    ts: i64,
    version: u64,
    value: Value,
}

/// `series, ts, is_int, int_value, float_value, version`.
const VERSIONED_ROW_LEN: usize = ROW_LEN + 8;

/// The series and row at the start of `bytes`; `None` if they are not a
/// whole row or its value flag is neither 0 nor 1.
fn decode_versioned(bytes: &[u8]) -> Option<(u64, Versioned)> {
    let mut r = RowReader::new(bytes.get(..VERSIONED_ROW_LEN)?);
    let series = r.u64().ok()?;
    let point = r.point().ok()?;
    let version = r.u64().ok()?;
    let versioned = Versioned {
        ts: point.timestamp_ms,
        version,
        value: point.value,
    };
    Some((series, versioned))
}

/// One series' points from its rows in any order: per timestamp the row
/// of the highest version, which is what `FINAL` keeps of a
/// `ReplacingMergeTree(version)`. Rows of one version are one write
/// replayed, hence equal; two that differ (two nodes' writes can share a
/// version) are kept by `FINAL` in insertion order, which the rows do not
/// show, so `None` then.
fn newest(mut rows: Vec<Versioned>) -> Option<Vec<DataPoint>> {
    let point = |r: &Versioned| DataPoint {
        timestamp_ms: r.ts,
        value: r.value,
    };
    // Usually one part's rows, already in order and unique.
    if rows.windows(2).all(|w| w[0].ts < w[1].ts) {
        return Some(rows.iter().map(point).collect());
    }
    rows.sort_unstable_by_key(|r| (r.ts, r.version));
    let mut out = Vec::with_capacity(rows.len());
    for same_ts in rows.chunk_by(|a, b| a.ts == b.ts) {
        let last = same_ts[same_ts.len() - 1];
        let tied = same_ts
            .iter()
            .rev()
            .take_while(|r| r.version == last.version);
        if tied.clone().any(|r| !same_value(r.value, last.value)) {
            return None;
        }
        out.push(point(&last));
    }
    Some(out)
}

/// Whether two values are the same write's: equal bits, NaN included.
fn same_value(a: Value, b: Value) -> bool {
    match (a, b) {
        (Value::Int(a), Value::Int(b)) => a == b,
        (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
        _ => false,
    }
}

/// A streamed answer, and how far it has been decoded.
struct Stream {
    pieces: mpsc::Receiver<Piece>,
    /// Received and not yet decoded from `at` on: a row may straddle two
    /// pieces.
    bytes: Vec<u8>,
    at: usize,
    /// Whether the answer's last piece has arrived.
    finished: bool,
}

impl Stream {
    fn new(pieces: mpsc::Receiver<Piece>) -> Stream {
        Stream {
            pieces,
            bytes: Vec::new(),
            at: 0,
            finished: false,
        }
    }

    /// What has arrived and is not decoded yet.
    fn rest(&self) -> &[u8] {
        &self.bytes[self.at..]
    }

    /// The rest once it holds `len` bytes or the answer has ended.
    fn fill(&mut self, len: usize) -> Result<&[u8], SourceError> {
        while self.rest().len() < len && !self.finished {
            self.receive()?;
        }
        Ok(self.rest())
    }

    fn advance(&mut self, len: usize) {
        self.at += len;
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

/// A round read in order ([`ClickHouseSource::read_in_order`]) and how far
/// it has been taken.
struct Reading {
    stream: Stream,
    /// The places this statement covers, `first..end`.
    first: usize,
    end: usize,
    /// The place and time of the last row taken.
    last: Option<(usize, i64)>,
}

/// A piece of a streamed answer; `Ok(None)` says it is complete.
type Piece = Result<Option<Bytes>, ClickHouseError>;

/// `series, ts, is_int, int_value, float_value`.
const ROW_LEN: usize = 8 + 8 + 1 + 8 + 8;

/// Pieces a stream may run ahead of its reader (hyper hands over what each
/// socket read brings, tens of KiB), so memory per scan stays bounded.
const PIECES_AHEAD: usize = 8;

struct Row {
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
        let rest = self.stream.rest();
        if rest.len() < ROW_LEN {
            return match (self.stream.finished, rest.is_empty()) {
                (false, _) => Ok(Next::More),
                (true, true) => Ok(Next::End),
                (true, false) => Err(bad_answer(rest, "ends inside a row")),
            };
        }
        let mut r = RowReader::new(&rest[..ROW_LEN]);
        let decoded = (|| Ok::<_, RowError>((r.u64()?, r.point()?)))();
        let Ok((series, point)) = decoded else {
            return Err(bad_answer(rest, "holds a value flag other than 0 or 1"));
        };
        let place = places
            .get(&series)
            .copied()
            .filter(|p| (self.first..self.end).contains(p));
        let Some(place) = place else {
            return Err(bad_answer(rest, "holds a series not asked for"));
        };
        let ts = point.timestamp_ms;
        let in_order = self.last.map_or(true, |last| (place, ts) > last);
        if !in_order || ts < range.0 || ts > range.1 {
            return Err(bad_answer(rest, "is out of order or out of range"));
        }
        Ok(Next::Row(Row { place, point }))
    }

    fn take(&mut self, row: &Row) {
        self.stream.advance(ROW_LEN);
        self.last = Some((row.place, row.point.timestamp_ms));
    }
}

impl Scan<'_> {
    /// Reads the round read in order up to the rows of `place`: rows
    /// before it are kept, rows of it go to `visit` in slices until it
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
                    reading.stream.receive()?;
                }
                Next::End => break,
                Next::Row(row) if row.place < place => {
                    reading.take(&row);
                    self.kept.entry(row.place).or_default().push(row.point);
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

    /// How many places the next round covers: as many as
    /// [`IDS_PER_STATEMENT`] while nothing is known, else what half a
    /// round's rows hold at the rows per series seen so far.
    fn round_len(&self) -> usize {
        if self.rows_seen == 0 {
            return IDS_PER_STATEMENT;
        }
        let per_place = self.rows_seen.div_ceil(self.places_seen.max(1));
        (self.source.round_rows / 2 / per_place).clamp(1, IDS_PER_STATEMENT)
    }

    /// Reads the next round: into `kept`, or opens it in order.
    fn next_round(&mut self) -> Result<(), SourceError> {
        let first = self.covered;
        let end = (first + self.round_len()).min(self.ids.len());
        self.covered = end;
        let ids = &self.ids[first..end];
        let range = (self.start_ms, self.end_ms);
        let (rows, places) = match self.source.read_round(ids, first, &self.places, range)? {
            Round::Read { read, rows } => {
                self.kept.extend(read);
                (rows, ids.len())
            }
            Round::TooBig { rows, places } => {
                self.reading = Some(self.source.read_in_order(ids, first, range.0, range.1));
                (rows, places)
            }
            Round::Undecided { rows } => {
                self.reading = Some(self.source.read_in_order(ids, first, range.0, range.1));
                (rows, ids.len())
            }
        };
        self.rows_seen += rows;
        self.places_seen += places;
        Ok(())
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
        loop {
            if let Some(points) = self.kept.remove(&place) {
                // One slice: there is nothing left to stop.
                let _ = visit(&points);
                return Ok(points.len());
            }
            if let Some(reading) = &self.reading {
                if (reading.first..reading.end).contains(&place) {
                    return self.read_until(place, visit);
                }
            }
            if place < self.covered {
                // Its round is read, and held nothing of it.
                return Ok(0);
            }
            // Past every round so far: the rest of the one read in order
            // is kept for the series not yet asked for.
            if let Some(end) = self.reading.as_ref().map(|r| r.end) {
                self.read_until(end, &mut |_| ControlFlow::Continue(()))?;
                self.reading = None;
            }
            self.next_round()?;
        }
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
            stream: Stream {
                pieces: mpsc::channel(1).1,
                bytes,
                at: 0,
                finished: true,
            },
            first: 0,
            end: 2,
            last: None,
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

    fn v(ts: i64, version: u64, value: Value) -> Versioned {
        Versioned { ts, version, value }
    }

    fn p(ts: i64, value: Value) -> DataPoint {
        DataPoint {
            timestamp_ms: ts,
            value,
        }
    }

    #[test]
    fn the_newest_write_of_each_timestamp_wins_as_under_final() {
        let (i, f) = (Value::Int, Value::Float);
        // One part's rows: as they came.
        let plain = vec![v(1, 5, i(1)), v(2, 3, f(0.5))];
        assert_eq!(newest(plain), Some(vec![p(1, i(1)), p(2, f(0.5))]));
        // Three parts: a replay (same version, same value), a rewrite
        // (newer) and a stale write (older), out of order.
        let parts = vec![
            v(3, 7, i(3)),
            v(1, 5, i(1)),
            v(2, 9, f(2.5)),
            v(1, 5, i(1)),
            v(2, 3, i(2)),
            v(3, 1, i(-3)),
            v(1, 4, i(-1)),
        ];
        assert_eq!(
            newest(parts),
            Some(vec![p(1, i(1)), p(2, f(2.5)), p(3, i(3))])
        );
        // NaN replayed is the same write.
        let nan = f64::from_bits(0x7ff8_0000_0000_0001);
        let replayed = vec![v(1, 5, f(nan)), v(1, 5, f(nan))];
        let got = newest(replayed).expect("one write");
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0].value, Value::Float(x) if x.to_bits() == nan.to_bits()));
        // Two writes with one version disagree, whatever older rows say.
        for tied in [
            vec![v(1, 5, i(1)), v(1, 5, i(2))],
            vec![v(1, 5, i(1)), v(1, 5, f(1.0))],
            vec![v(1, 5, f(0.0)), v(1, 5, f(-0.0)), v(1, 2, f(0.0))],
            vec![v(1, 5, i(1)), v(1, 5, i(1)), v(1, 5, i(2)), v(0, 1, i(0))],
        ] {
            assert_eq!(newest(tied.clone()), None, "{tied:?}");
        }
    }
}
