//! The ClickHouse store's read side against a real `clickhouse-server`
//! (18.16.1): every case of `protocol/queries/` answered by the same engine
//! over `ClickHouseSource` (with and without buckets aggregated in SQL)
//! and over a real RocksDB store, byte for byte; buckets aggregated in SQL
//! against the points they stand for, through duplicates, rewrites and
//! values SQL cannot add in the engine's order;
//! scans of many series in any order, from any kind of thread; and hash
//! collisions refused on both sides.
//!
//! These tests are plain `#[test]`s: the engine calls a source from
//! threads outside any runtime, so a small runtime here only starts the
//! server and writes the data.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use rtsd::clickhouse::writer::{self, WriteError};
use rtsd::clickhouse::{series_id, Compression};
use rtsd::model::{
    epoch_ms, DataPoint, NameKind, RollupAgg, RollupResolution, Sample, SeriesKey, SeriesMeta,
    Value,
};
use rtsd::query::source::{Buckets, PointScan, RollupScan, Source, SourceError, TagSelect};
use rtsd::query::{execute, QueryLimits, QueryRequest};
use rtsd::storage::StoreReader;
use serde_json::Value as Json;

use crate::clickhouse_support::{compute_rollups, embedded, load, name, rows_in, source, start};
use crate::query_cases::cases;
use crate::support::series_key;

/// "Now" for the engine; every case uses absolute times.
const NOW_MS: i64 = 1_700_000_000_000;

/// The case's series as samples, in the order the HTTP test puts them.
fn samples(case: &Json) -> Vec<Sample> {
    let mut out = Vec::new();
    for s in case["series"].as_array().expect("series") {
        let series = series_key(s);
        for p in s["points"].as_array().expect("points") {
            let value = match p[1].as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(p[1].as_f64().expect("a number")),
            };
            let point = DataPoint {
                timestamp_ms: epoch_ms(p[0].as_i64().expect("a timestamp")),
                value,
            };
            out.push(Sample {
                series: series.clone(),
                point,
            });
        }
    }
    out
}

/// What a query answers: the body of a 200, or an error's status,
/// message and details.
#[derive(Debug, PartialEq)]
enum Answer {
    Body(String),
    Error(u16, String, Option<String>),
}

fn request(case: &Json) -> Result<QueryRequest, rtsd::query::QueryError> {
    let req = &case["request"];
    if let Some(get) = req.get("get") {
        let pairs: Vec<(String, String)> = serde_json::from_value(get.clone()).expect("pairs");
        return QueryRequest::from_get_params(&pairs);
    }
    let mut parsed = QueryRequest::from_json(req["post"].to_string().as_bytes())?;
    parsed.arrays = req
        .get("params")
        .and_then(Json::as_array)
        .is_some_and(|p| p.iter().any(|kv| kv[0] == "arrays"));
    Ok(parsed)
}

fn answer(source: &dyn Source, case: &Json) -> Answer {
    let run = request(case).and_then(|r| execute(source, &r, NOW_MS, &QueryLimits::default()));
    match run {
        Ok(response) => {
            let mut body = String::new();
            response.write_json(&mut body);
            Answer::Body(body)
        }
        Err(e) => Answer::Error(e.status(), e.message(), e.details()),
    }
}

/// Whether `got` is what the case expects; details only when it names them.
fn as_expected(got: &Answer, expect: &Json) -> bool {
    let status = expect["status"].as_u64().expect("status");
    match got {
        Answer::Body(body) => status == 200 && expect["body"].as_str() == Some(body.as_str()),
        Answer::Error(code, message, details) => {
            u64::from(*code) == status
                && expect["message"].as_str() == Some(message.as_str())
                && expect
                    .get("details")
                    .map_or(true, |d| d.as_str() == details.as_deref())
        }
    }
}

#[test]
fn every_query_case_answers_byte_identically_on_clickhouse_and_rocksdb() {
    let (setup, server, client) = start();
    let all = cases();
    assert!(all.len() >= 80, "only {} cases", all.len());
    let mut failures = Vec::new();
    let mut refusals = 0;
    let (mut stored_rows, mut rollup_cases) = (0, 0);
    let (mut bucket_cases, mut fallback_cases) = (0, 0);
    for (i, (file, case)) in all.iter().enumerate() {
        let label = format!("{file}: {}", case["name"].as_str().unwrap_or("?"));
        let samples = samples(case);

        let db = name(&format!("case_{i}"));
        load(&setup, &client, &db, &samples);
        // Every fixed bucket offered to SQL, however short.
        let pushed = Counting::new(source(&server, &db).with_min_bucket(1), true);
        let on_clickhouse = answer(&pushed, case);
        let counting = Counting::new(source(&server, &db), false);
        let from_points = answer(&counting, case);
        let embedded = embedded(&samples, NOW_MS);
        let on_rocksdb = answer(&embedded.reader, case);
        if from_points != on_rocksdb {
            failures.push(format!(
                "{label} (no buckets in SQL):\n  clickhouse {from_points:?}\n  rocksdb    {on_rocksdb:?}"
            ));
        }
        bucket_cases += usize::from(pushed.from_sql.load(Relaxed) > 0);
        fallback_cases += usize::from(pushed.from_points.load(Relaxed) > 0);
        // A case whose queries read rollups is answered twice more: with
        // every hour's and day's rollups computed and stored, and with
        // every other hour's and day's row overridden by a wrong one of a
        // higher version, which the read's check must refuse.
        if counting.rollups.load(Relaxed) > 0 {
            rollup_cases += 1;
            stored_rows += compute_rollups(&setup, &client, &db, &samples).hour_rows;
            for forged in [false, true] {
                if forged {
                    for (table, width) in [("rollup_1h", 3_600_000), ("rollup_1d", 86_400_000)] {
                        setup
                            .block_on(client.execute(&format!(
                                "INSERT INTO {db}.{table} SELECT series, start, count, sum + 1, \
                                 min, max, sum_sq, first_ts, first_is_int, first_int, \
                                 first_float, last_ts, last_is_int, last_int, last_float, \
                                 version + 1 FROM {db}.{table} WHERE intDiv(start, {width}) % 2 = 0"
                            )))
                            .expect("wrong rows");
                    }
                }
                let again = answer(&Counting::new(source(&server, &db), false), case);
                if again != on_rocksdb {
                    failures.push(format!(
                        "{label} (rollups stored, forged {forged}):\n  clickhouse {again:?}\n  rocksdb    {on_rocksdb:?}"
                    ));
                }
            }
        }

        // Refusing a delete (allow-delete off) is the HTTP layer's job,
        // so the engine's answer to such a case is not its expected one;
        // the two stores must still agree on it.
        let refused_by_http = request(case).is_ok_and(|r| r.delete);
        if on_clickhouse != on_rocksdb {
            failures.push(format!(
                "{label}:\n  clickhouse {on_clickhouse:?}\n  rocksdb    {on_rocksdb:?}"
            ));
        } else if refused_by_http {
            refusals += 1;
        } else if !as_expected(&on_clickhouse, &case["expect"]) {
            failures.push(format!(
                "{label}: both stores answer {on_clickhouse:?}, expected {}",
                case["expect"]
            ));
        }
        setup
            .block_on(client.execute(&format!("DROP DATABASE {db}")))
            .expect("dropped");
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
    // The only cases not held to their expected answer.
    assert_eq!(refusals, 1);
    // The rollup path ran on ClickHouse, over stored rows.
    assert!(rollup_cases >= 2, "{rollup_cases} cases read rollups");
    assert!(stored_rows >= 10, "{stored_rows} hour rows stored");
    // Buckets came from SQL, and a series SQL could not add exactly fell
    // back to its points.
    assert!(bucket_cases >= 10, "{bucket_cases} cases read buckets");
    assert!(fallback_cases >= 2, "{fallback_cases} cases fell back");
}

/// A source that counts its rollup reads (`rollups` calls and
/// `scan_rollups` openings) and the series its buckets answered or left
/// to points, so a test sees which path the engine took; it offers the
/// inner source's buckets only when `buckets`.
struct Counting<S> {
    inner: S,
    buckets: bool,
    rollups: AtomicUsize,
    from_sql: AtomicUsize,
    from_points: AtomicUsize,
}

impl<S: Source> Counting<S> {
    fn new(inner: S, buckets: bool) -> Self {
        Counting {
            inner,
            buckets,
            rollups: AtomicUsize::new(0),
            from_sql: AtomicUsize::new(0),
            from_points: AtomicUsize::new(0),
        }
    }
}

/// A bucket read of [`Counting`].
struct CountedBuckets<'a> {
    inner: Box<dyn RollupScan + 'a>,
    from_sql: &'a AtomicUsize,
    from_points: &'a AtomicUsize,
}

impl RollupScan for CountedBuckets<'_> {
    fn rollups(&mut self, id: u64) -> Result<Option<Vec<RollupAgg>>, SourceError> {
        let got = self.inner.rollups(id)?;
        let counter = if got.is_some() {
            self.from_sql
        } else {
            self.from_points
        };
        counter.fetch_add(1, Relaxed);
        Ok(got)
    }

    fn points_read(&self, aggs: &[RollupAgg]) -> usize {
        self.inner.points_read(aggs)
    }
}

impl<S: Source> Source for Counting<S> {
    fn series_of_metric(&self, metric: &str) -> Result<Option<Vec<SeriesMeta>>, SourceError> {
        self.inner.series_of_metric(metric)
    }

    fn series_selected(
        &self,
        metric: &str,
        select: &TagSelect<'_>,
    ) -> Result<Option<Vec<SeriesMeta>>, SourceError> {
        self.inner.series_selected(metric, select)
    }

    fn series_by_ids(&self, ids: &[u64]) -> Result<Vec<SeriesMeta>, SourceError> {
        self.inner.series_by_ids(ids)
    }

    fn points(&self, id: u64, start_ms: i64, end_ms: i64) -> Result<Vec<DataPoint>, SourceError> {
        self.inner.points(id, start_ms, end_ms)
    }

    fn scan_points<'a>(
        &'a self,
        ids: &[u64],
        start_ms: i64,
        end_ms: i64,
    ) -> Box<dyn PointScan + 'a> {
        self.inner.scan_points(ids, start_ms, end_ms)
    }

    fn rollups(
        &self,
        id: u64,
        resolution: RollupResolution,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Option<Vec<RollupAgg>>, SourceError> {
        self.rollups.fetch_add(1, Relaxed);
        self.inner.rollups(id, resolution, start_ms, end_ms)
    }

    /// The store's own bulk read, counted as one read.
    fn scan_rollups<'a>(
        &'a self,
        ids: &[u64],
        resolution: RollupResolution,
        start_ms: i64,
        end_ms: i64,
    ) -> Box<dyn RollupScan + 'a> {
        self.rollups.fetch_add(1, Relaxed);
        self.inner.scan_rollups(ids, resolution, start_ms, end_ms)
    }

    fn scan_buckets<'a>(
        &'a self,
        ids: &[u64],
        buckets: Buckets,
        start_ms: i64,
        end_ms: i64,
    ) -> Option<Box<dyn RollupScan + 'a>> {
        if !self.buckets {
            return None;
        }
        let inner = self.inner.scan_buckets(ids, buckets, start_ms, end_ms)?;
        Some(Box::new(CountedBuckets {
            inner,
            from_sql: &self.from_sql,
            from_points: &self.from_points,
        }))
    }

    fn name_exists(&self, kind: NameKind, name: &str) -> Result<bool, SourceError> {
        self.inner.name_exists(kind, name)
    }
}

/// Points of series `i` as read back after the writes of
/// [`scans_stream_many_series_in_any_order_from_any_thread`].
fn expected_points(i: usize) -> Vec<DataPoint> {
    let t0 = 1_356_998_400_000;
    vec![
        DataPoint {
            timestamp_ms: t0,
            value: Value::Int(i as i64),
        },
        DataPoint {
            timestamp_ms: t0 + 10_000,
            value: Value::Float(0.5),
        },
        DataPoint {
            timestamp_ms: t0 + 20_000,
            value: Value::Int(-(i as i64)),
        },
    ]
}

/// Scans `ids` visiting them in `order` (indexes into `ids`); every series
/// must come back whole and exact.
fn scan_in_order(source: &dyn Source, ids: &[u64], order: &[usize]) {
    let mut scan = source.scan_points(ids, 0, i64::MAX);
    for &i in order {
        let mut got = Vec::new();
        let n = scan
            .scan(ids[i], &mut |p| {
                got.extend_from_slice(p);
                ControlFlow::Continue(())
            })
            .unwrap_or_else(|e| panic!("series {i}: {e}"));
        assert_eq!(n, got.len());
        assert_eq!(got, expected_points(i), "series {i}");
    }
}

#[test]
fn scans_stream_many_series_in_any_order_from_any_thread() {
    let (setup, server, client) = start();
    let db = name("scans");
    // Two statements' worth of series.
    let hosts: Vec<String> = (0..5000).map(|i| format!("h{i:04}")).collect();
    let keys: Vec<SeriesKey> = hosts
        .iter()
        .map(|h| SeriesKey::new("m", [("host", h.as_str())]))
        .collect();
    let first = |i: usize, offset: i64, value: Value| Sample {
        series: keys[i].clone(),
        point: DataPoint {
            timestamp_ms: expected_points(i)[0].timestamp_ms + offset,
            value,
        },
    };
    let batch: Vec<Sample> = (0..keys.len())
        .flat_map(|i| {
            [
                first(i, 0, Value::Int(i as i64)),
                first(i, 10_000, Value::Int(7)),
                first(i, 20_000, Value::Int(-(i as i64))),
            ]
        })
        .collect();
    load(&setup, &client, &db, &batch);
    let rewrites: Vec<Sample> = (0..keys.len())
        .map(|i| first(i, 10_000, Value::Float(0.5)))
        .collect();
    setup.block_on(async {
        // A replay of the first batch (same versions), a rewrite of every
        // middle point (newer) and a stale write of it (older).
        writer::write(&client, &db, &batch, 1, Compression::None)
            .await
            .expect("replayed");
        writer::write(&client, &db, &rewrites, 1 << 40, Compression::None)
            .await
            .expect("rewritten");
        writer::write(&client, &db, &batch[..3], 0, Compression::None)
            .await
            .expect("stale");
    });
    let source = Arc::new(source(&server, &db));
    let ids: Vec<u64> = keys.iter().map(series_id).collect();

    // Plain thread, in order and scrambled: each series is asked for
    // once, some after later ones (kept while passing), some in the second
    // statement before the first is done.
    let in_order: Vec<usize> = (0..ids.len()).collect();
    let scrambled: Vec<usize> = (0..ids.len()).map(|i| (i * 2053) % ids.len()).collect();
    scan_in_order(&*source, &ids, &in_order);
    scan_in_order(&*source, &ids, &scrambled);
    // Rounds too big to hold (the first gives up after 1000 of its 31,000
    // rows and is read in order; the next are sized from what it saw)
    // answer the same.
    let small_rounds = crate::clickhouse_support::source(&server, &db).with_round_rows(1000);
    scan_in_order(&small_rounds, &ids, &in_order);
    scan_in_order(&small_rounds, &ids, &scrambled);
    assert_eq!(
        source.points(ids[42], 0, i64::MAX).unwrap(),
        expected_points(42)
    );
    let t1 = expected_points(0)[1].timestamp_ms;
    assert_eq!(
        source.points(ids[7], t1, t1).unwrap(),
        expected_points(7)[1..2]
    );
    assert_eq!(source.points(ids[7], t1, t1 - 1).unwrap(), []);
    let unknown = series_id(&SeriesKey::new("m", [("host", "nowhere")]));
    assert_eq!(source.points(unknown, 0, i64::MAX).unwrap(), []);
    let mut scan = source.scan_points(&[unknown], 0, i64::MAX);
    assert_eq!(scan.scan(unknown, &mut |_| panic!("no points")).unwrap(), 0);
    drop(scan);

    // From the blocking pool of both kinds of runtime, the engine's way.
    for runtime in [
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build(),
        tokio::runtime::Builder::new_current_thread().build(),
    ] {
        let runtime = runtime.expect("runtime");
        let (source, ids) = (Arc::clone(&source), ids.clone());
        runtime.block_on(async move {
            tokio::task::spawn_blocking(move || {
                scan_in_order(&*source, &ids, &(0..ids.len()).collect::<Vec<_>>());
                let series = source.series_of_metric("m").unwrap().expect("metric m");
                assert_eq!(series.len(), ids.len());
            })
            .await
            .expect("scanned");
        });
    }
    // Stopped by the engine (a deadline): the next series still comes
    // whole; abandoned, the statement is dropped and the source goes on.
    let mut scan = source.scan_points(&ids, 0, i64::MAX);
    scan.scan(ids[0], &mut |_| ControlFlow::Break(())).unwrap();
    let mut next = Vec::new();
    scan.scan(ids[1], &mut |p| {
        next.extend_from_slice(p);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(next, expected_points(1));
    drop(scan);
    assert_eq!(
        source.points(ids[1], 0, i64::MAX).unwrap(),
        expected_points(1)
    );
}

/// Two writes of one timestamp with one version (two nodes' sequences
/// can meet) are settled as `FINAL` settles them, by insertion order,
/// which rows read without it do not show: such a round is read again
/// with it. One version written twice with one value is a replay.
#[test]
fn writes_sharing_a_version_are_settled_as_final_settles_them() {
    let (setup, server, client) = start();
    let db = name("tied");
    let t0 = 1_356_998_400_000;
    let keys: Vec<SeriesKey> = (0..3)
        .map(|i| SeriesKey::new("m", [("host", format!("h{i}").as_str())]))
        .collect();
    let sample = |k: usize, i: i64, value: Value| Sample {
        series: keys[k].clone(),
        point: DataPoint {
            timestamp_ms: t0 + i * 10_000,
            value,
        },
    };
    let first: Vec<Sample> = (0..3)
        .flat_map(|k| (0..50).map(move |i| (k, i)))
        .map(|(k, i)| sample(k, i, Value::Int(i)))
        .collect();
    load(&setup, &client, &db, &first);
    // Every write stays a part of its own, as before a merge.
    setup
        .block_on(client.execute(&format!("SYSTEM STOP MERGES {db}.points")))
        .expect("merges stopped");
    let ids: Vec<u64> = keys.iter().map(series_id).collect();
    let source = source(&server, &db);
    let read = |source: &dyn Source| -> Vec<Vec<DataPoint>> {
        let mut scan = source.scan_points(&ids, 0, i64::MAX);
        ids.iter()
            .rev()
            .map(|&id| {
                let mut got = Vec::new();
                scan.scan(id, &mut |p| {
                    got.extend_from_slice(p);
                    ControlFlow::Continue(())
                })
                .expect("scanned");
                got
            })
            .collect()
    };
    let with_final = |id: u64| -> Vec<String> {
        let answer = setup
            .block_on(client.execute(&format!(
                "SELECT ts, is_int, int_value, float_value FROM {db}.points FINAL \
                 WHERE series = {id} ORDER BY ts FORMAT TabSeparated"
            )))
            .expect("read");
        String::from_utf8_lossy(&answer)
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let as_rows = |points: &[DataPoint]| -> Vec<String> {
        points
            .iter()
            .map(|p| match p.value {
                Value::Int(i) => format!("{}\t1\t{i}\t0", p.timestamp_ms),
                Value::Float(f) => format!("{}\t0\t0\t{f}", p.timestamp_ms),
            })
            .collect()
    };
    // A replay of the first write (its versions) only duplicates rows.
    setup
        .block_on(writer::write(&client, &db, &first, 1, Compression::None))
        .expect("replayed");
    let replayed = read(&source);
    for (k, got) in replayed.iter().rev().enumerate() {
        let want: Vec<DataPoint> = (0..50).map(|i| sample(k, i, Value::Int(i)).point).collect();
        assert_eq!(got, &want, "series {k}");
    }
    // Another node's write of series 1 with the very versions of the
    // first (`load` numbers from 1, series by series), other values.
    let other: Vec<Sample> = first
        .iter()
        .map(|s| match s.series == keys[1] {
            true => Sample {
                point: DataPoint {
                    value: Value::Float(0.25),
                    ..s.point
                },
                ..s.clone()
            },
            false => s.clone(),
        })
        .collect();
    setup
        .block_on(writer::write(&client, &db, &other, 1, Compression::None))
        .expect("written");
    let tied = read(&source);
    for (k, got) in tied.iter().rev().enumerate() {
        assert_eq!(as_rows(got), with_final(ids[k]), "series {k}");
    }
    assert!(tied[1].iter().all(|p| p.value == Value::Float(0.25)));
    let rows = setup
        .block_on(client.execute(&format!("SELECT count() FROM {db}.points")))
        .expect("counted");
    assert_eq!(
        String::from_utf8_lossy(&rows).trim(),
        "450",
        "every write's rows"
    );
    assert_eq!(source.points(ids[1], 0, i64::MAX).unwrap(), tied[1]);
    // Rollups of such rows are computed on the fly, from the same points.
    for (k, points) in [(0, &tied[2]), (1, &tied[1])] {
        let hour = source
            .rollups(ids[k], RollupResolution::Hour, t0, t0 + 3_600_000)
            .unwrap();
        let want = RollupAgg::of_points(t0, points).expect("an hour");
        assert_eq!(hour, Some(vec![want]), "series {k}");
    }
}

#[test]
fn a_hash_collision_is_refused_by_the_writer_and_the_reader() {
    let (setup, server, client) = start();
    let db = name("collide");
    let key = SeriesKey::new("m", [("host", "a")]);
    let id = series_id(&key);
    let sample = Sample {
        series: key.clone(),
        point: DataPoint {
            timestamp_ms: 1_356_998_400_000,
            value: Value::Int(1),
        },
    };
    load(&setup, &client, &db, std::slice::from_ref(&sample));
    let source = source(&server, &db);
    assert_eq!(source.series_of_metric("m").unwrap().unwrap().len(), 1);
    assert!(source
        .name_exists(rtsd::model::NameKind::TagValue, "a")
        .unwrap());
    assert!(!source
        .name_exists(rtsd::model::NameKind::TagKey, "a'b")
        .unwrap());

    // Another key with the same id, as a racing node would leave it.
    setup
        .block_on(client.execute(&format!(
            "INSERT INTO collide.series VALUES ({id}, 'm', ['host'], ['b'], 'm\\0host\\0b')"
        )))
        .expect("inserted");
    let written = setup.block_on(writer::write(
        &client,
        &db,
        std::slice::from_ref(&sample),
        2,
        Compression::None,
    ));
    assert!(
        matches!(&written, Err(WriteError::Collision { id: i, taken, new })
            if *i == id && taken == "m{host=b}" && new == "m{host=a}"),
        "{written:?}"
    );
    let read = source.series_of_metric("m").unwrap_err().to_string();
    assert!(read.contains("a hash collision"), "{read}");
    let read = source.series_by_ids(&[id]).unwrap_err().to_string();
    assert!(read.contains("a hash collision"), "{read}");
}

/// The body `source` answers to the GET query `m` over `[start, end]` (s).
fn get(source: &dyn Source, m: &str, start: i64, end: i64) -> String {
    get_with(source, m, start, end, &[])
}

/// [`get`] with more query-string parameters.
fn get_with(source: &dyn Source, m: &str, start: i64, end: i64, more: &[&str]) -> String {
    let pairs: Vec<(String, String)> = [
        ("start", start.to_string()),
        ("end", end.to_string()),
        ("m", m.to_owned()),
    ]
    .into_iter()
    .chain(more.iter().map(|&k| (k, String::new())))
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let request = QueryRequest::from_get_params(&pairs).expect("request");
    let response = execute(source, &request, NOW_MS, &QueryLimits::default())
        .unwrap_or_else(|e| panic!("{m}: {}", e.message()));
    let mut body = String::new();
    response.write_json(&mut body);
    body
}

/// Waits until every mutation of `db` is done.
fn mutations_done(setup: &tokio::runtime::Runtime, client: &rtsd::clickhouse::Client, db: &str) {
    let start = std::time::Instant::now();
    loop {
        let left = setup
            .block_on(client.execute(&format!(
                "SELECT count() FROM system.mutations WHERE database = '{db}' AND is_done = 0"
            )))
            .expect("mutations");
        if String::from_utf8_lossy(&left).trim() == "0" {
            return;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn long_rollup_downsamples_read_stored_rows_and_stay_exact_after_late_points_and_deletes() {
    const HOUR: i64 = 3_600_000;
    let (setup, server, client) = start();
    let db = name("long");
    // 30 days from 2013-01-01 (a UTC day), a point every 10 minutes: a
    // float series and an integer one.
    let t0: i64 = 1_356_998_400_000;
    let days = 30;
    let keys = [
        SeriesKey::new("m", [("host", "a")]),
        SeriesKey::new("m", [("host", "b")]),
    ];
    let samples: Vec<Sample> = (0..days * 24 * 6)
        .flat_map(|i| {
            let ts = t0 + i * 600_000;
            [
                Sample {
                    series: keys[0].clone(),
                    point: DataPoint {
                        timestamp_ms: ts,
                        value: Value::Float((i as f64 * 0.37).sin() * 1e3 + 0.1),
                    },
                },
                Sample {
                    series: keys[1].clone(),
                    point: DataPoint {
                        timestamp_ms: ts,
                        value: Value::Int(i * 7 % 1000 - 300),
                    },
                },
            ]
        })
        .collect();
    load(&setup, &client, &db, &samples);
    let computed = compute_rollups(&setup, &client, &db, &samples);
    assert_eq!(computed.hour_rows, 2 * 24 * days as u64);
    assert_eq!(computed.day_rows, 2 * days as u64);
    assert_eq!(
        rows_in(&setup, &client, &db, "rollup_1h"),
        2 * 24 * days as u64
    );
    assert_eq!(rows_in(&setup, &client, &db, "rollup_1d"), 2 * days as u64);
    let mut embedded = embedded(&samples, NOW_MS);
    let clickhouse = Counting::new(source(&server, &db), false);
    let (start, end) = (t0 / 1000, (t0 + days * 86_400_000) / 1000 - 1);
    let queries = [
        "sum:1h-max:m",
        "sum:1h-sum:m",
        "max:1h-min:m{host=*}",
        "sum:1h-dev:m{host=*}",
        "sum:1d-sum:m{host=*}",
        "avg:1d-avg:m",
        "sum:1d-last:m{host=*}",
        "sum:6h-count:m",
    ];
    let compare = |clickhouse: &Counting<_>, embedded: &StoreReader, what: &str| {
        let before = clickhouse.rollups.load(Relaxed);
        for q in queries {
            assert_eq!(
                get(clickhouse, q, start, end),
                get(embedded, q, start, end),
                "{what}: {q}"
            );
        }
        assert!(
            clickhouse.rollups.load(Relaxed) > before,
            "{what}: no rollup reads"
        );
    };
    compare(&clickhouse, &embedded.reader, "computed");

    // Every point replayed (its rows twice until a merge): no interval's
    // rows are collapsed, so each is computed on the fly; once merged, the
    // stored rows serve again (the forged one below is read).
    setup
        .block_on(writer::write(&client, &db, &samples, 1, Compression::None))
        .expect("replayed");
    compare(&clickhouse, &embedded.reader, "replayed");
    setup
        .block_on(client.execute(&format!("OPTIMIZE TABLE {db}.points FINAL")))
        .expect("merged");
    compare(&clickhouse, &embedded.reader, "replayed, merged");

    // The stored rows are what is read: one forged (same count and
    // version, another max) and merged over the real one is answered.
    let id = series_id(&keys[0]);
    let h = t0 + 100 * HOUR;
    let forge = |max: &str| {
        setup
            .block_on(client.execute(&format!(
                "INSERT INTO {db}.rollup_1h SELECT series, start, count, sum, min, {max}, sum_sq, \
                 first_ts, first_is_int, first_int, first_float, last_ts, last_is_int, last_int, \
                 last_float, version FROM {db}.rollup_1h FINAL WHERE series = {id} AND start = {h}"
            )))
            .expect("forged");
        setup
            .block_on(client.execute(&format!("OPTIMIZE TABLE {db}.rollup_1h FINAL")))
            .expect("merged");
    };
    let genuine = clickhouse
        .rollups(id, RollupResolution::Hour, h, h + HOUR)
        .unwrap()
        .expect("rollups");
    forge("1e300");
    let read = clickhouse
        .rollups(id, RollupResolution::Hour, h, h + HOUR)
        .unwrap()
        .expect("rollups");
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].max, 1e300);
    forge(&format!("{:e}", genuine[0].max));
    assert_eq!(
        clickhouse
            .rollups(id, RollupResolution::Hour, h, h + HOUR)
            .unwrap(),
        Some(genuine)
    );

    // A late point in a computed hour: its row and its day's no longer
    // match the points, so both are computed on the fly until the hour
    // is computed again.
    let late_hour = t0 + 200 * HOUR;
    let late = Sample {
        series: keys[0].clone(),
        point: DataPoint {
            timestamp_ms: late_hour + 1234,
            value: Value::Float(5e6),
        },
    };
    setup
        .block_on(writer::write(
            &client,
            &db,
            std::slice::from_ref(&late),
            1 << 40,
            Compression::None,
        ))
        .expect("late point");
    embedded
        .writer
        .append(std::slice::from_ref(&late))
        .expect("late point");
    embedded.writer.seal_all(NOW_MS).expect("sealed");
    compare(&clickhouse, &embedded.reader, "late point");
    let final_count = |table: &str, start: i64| {
        let answer = setup
            .block_on(client.execute(&format!(
                "SELECT count FROM {db}.{table} FINAL WHERE series = {id} AND start = {start}"
            )))
            .expect("count");
        String::from_utf8_lossy(&answer).trim().to_owned()
    };
    let late_day = late_hour - late_hour.rem_euclid(86_400_000);
    assert_eq!(final_count("rollup_1h", late_hour), "6");
    compute_rollups(&setup, &client, &db, std::slice::from_ref(&late));
    assert_eq!(final_count("rollup_1h", late_hour), "7");
    assert_eq!(final_count("rollup_1d", late_day), "145");
    compare(&clickhouse, &embedded.reader, "late point computed");

    // Points deleted behind the rows' back (the rows stay): refused too.
    let (from, to) = (t0 + 300 * HOUR + 1_800_000, t0 + 302 * HOUR);
    setup
        .block_on(client.execute(&format!(
            "ALTER TABLE {db}.points DELETE WHERE series = {id} AND ts >= {from} AND ts <= {to}"
        )))
        .expect("deleted");
    mutations_done(&setup, &client, &db.to_string());
    let embedded_id = embedded
        .reader
        .series_of_metric("m")
        .unwrap()
        .expect("m")
        .into_iter()
        .find(|s| s.key == keys[0])
        .expect("series a")
        .id;
    embedded
        .writer
        .delete(&[embedded_id], from, to)
        .expect("deleted");
    compare(&clickhouse, &embedded.reader, "deleted");
    // What a range delete does next (see the spool's upkeep): drop the
    // rows of the touched hours and days, to be computed again.
    for table in ["rollup_1h", "rollup_1d"] {
        setup
            .block_on(client.execute(&format!(
                "ALTER TABLE {db}.{table} DELETE WHERE series = {id} AND start >= {} AND start <= {to}",
                from - from.rem_euclid(86_400_000)
            )))
            .expect("rows dropped");
    }
    mutations_done(&setup, &client, &db.to_string());
    compare(&clickhouse, &embedded.reader, "deleted, rows dropped");
    let deleted: Vec<Sample> = (0..3)
        .map(|i| Sample {
            series: keys[0].clone(),
            point: DataPoint {
                timestamp_ms: from + i * HOUR,
                value: Value::Int(0),
            },
        })
        .collect();
    compute_rollups(&setup, &client, &db, &deleted);
    assert_eq!(final_count("rollup_1h", t0 + 300 * HOUR), "3");
    assert_eq!(final_count("rollup_1h", t0 + 302 * HOUR), "5");
    compare(&clickhouse, &embedded.reader, "deleted computed");
}

/// Buckets aggregated in SQL answer as the points they stand for do, on
/// ClickHouse and on RocksDB, for every function and fill, buckets cut by
/// the query's start, over: small integers (every function but `dev` in
/// SQL), integers past 2^53 (their sums cannot be exact in `f64`, so those
/// series fall back to points), floats (sums fall back), `0.0` mixed with
/// `-0.0`, points replayed with their version, rewritten with a newer one
/// and written stale with an older one, and NaN (stored by SQL: no put
/// takes it; the embedded store cannot hold it, so only the two ClickHouse
/// paths are compared there). Statistics included: a bucket counts as
/// read the points it stands for; whole hours and days read rollups.
#[test]
fn buckets_aggregated_in_sql_are_the_points_bit_for_bit() {
    const HOUR: i64 = 3_600_000;
    let (setup, server, client) = start();
    let db = name("buckets");
    let t0 = 1_356_998_400_000;
    let key = |m: &str, host: &str| SeriesKey::new(m, [("host", host)]);
    let sample = |k: &SeriesKey, i: i64, value: Value| Sample {
        series: k.clone(),
        point: DataPoint {
            timestamp_ms: t0 + i * 10_000,
            value,
        },
    };
    let (int, big, float, zero, rewritten) = (
        key("x", "int"),
        key("x", "big"),
        key("x", "float"),
        key("x", "zero"),
        key("x", "rewritten"),
    );
    let mut batch = Vec::new();
    for i in 0..720 {
        let sign = if i % 2 == 0 { 1 } else { -1 };
        let zeros = [0.0, -0.0, -0.0, 0.0, 1.5, -0.0];
        batch.extend([
            sample(&int, i, Value::Int((i * 7919) % 2001 - 1000)),
            sample(&big, i, Value::Int(sign * ((1 << 53) + 1 + 2 * i))),
            sample(&float, i, Value::Float((i as f64 * 0.37).sin() * 1e3 + 0.1)),
            sample(&zero, i, Value::Float(zeros[(i % 6) as usize])),
            sample(&rewritten, i, Value::Int(i % 13)),
        ]);
    }
    let rewrites: Vec<Sample> = (0..720)
        .step_by(3)
        .map(|i| sample(&rewritten, i, Value::Int(1000 + i)))
        .collect();
    let stale: Vec<Sample> = (0..720)
        .step_by(5)
        .map(|i| sample(&rewritten, i, Value::Int(-7)))
        .collect();
    let odd = key("y", "nan");
    let with_nan: Vec<Sample> = (0..720)
        .map(|i| sample(&odd, i, Value::Float(i as f64 * 0.5)))
        .collect();
    load(&setup, &client, &db, &batch);
    setup.block_on(async {
        for (samples, version) in [
            (&batch, 1),
            (&rewrites, 1 << 40),
            (&stale, 0),
            (&with_nan, 1),
        ] {
            writer::write(&client, &db, samples, version, Compression::None)
                .await
                .expect("written");
        }
        let nan_at = t0 + 100 * 10_000;
        client
            .execute(&format!(
                "INSERT INTO {db}.points (series, ts, is_int, int_value, float_value, version) \
                 VALUES ({}, {nan_at}, 0, 0, nan, {})",
                series_id(&odd),
                1u64 << 41
            ))
            .await
            .expect("NaN written");
    });
    let embedded = embedded(&[batch, rewrites].concat(), NOW_MS);
    let pushed = Counting::new(source(&server, &db).with_min_bucket(1), true);
    let from_points = Counting::new(source(&server, &db), false);
    let (start, end) = (t0 + 95_000, t0 + 2 * HOUR - 5_000);
    let mut queries = Vec::new();
    for f in ["sum", "avg", "min", "max", "count", "first", "last", "dev"] {
        for step in ["1m", "5m", "7m", "1h", "2h", "1d"] {
            for fill in ["", "-zero", "-nan"] {
                queries.push(format!("sum:{step}-{f}{fill}:x{{host=*}}"));
            }
        }
    }
    queries.extend(
        [
            "sum:5m-avg:x",
            "max:1m-max:x",
            "sum:rate:5m-sum:x{host=*}",
            "avg:rate{counter}:1m-last-zero:x{host=*}",
        ]
        .map(String::from),
    );
    // With the points or rollups read, which limits count too. First
    // with every write's rows apart (each series was written at least
    // twice, so buckets holding a timestamp twice fall back to points),
    // then merged into one row per point.
    let stats = &["show_stats"];
    for merged in [false, true] {
        if merged {
            setup
                .block_on(client.execute(&format!("OPTIMIZE TABLE {db}.points FINAL")))
                .expect("merged");
        }
        let from_sql = pushed.from_sql.load(Relaxed);
        for q in &queries {
            let want = get_with(&embedded.reader, q, start, end, stats);
            let got = get_with(&pushed, q, start, end, stats);
            assert_eq!(got, want, "{q}, buckets in SQL, merged {merged}");
            let got = get_with(&from_points, q, start, end, stats);
            assert_eq!(got, want, "{q}, from points, merged {merged}");
            let q = q.replacen(":x", ":y", 1);
            assert_eq!(
                get(&pushed, &q, start, end),
                get(&from_points, &q, start, end),
                "{q}, merged {merged}"
            );
        }
        assert!(pushed.from_sql.load(Relaxed) > from_sql, "merged {merged}");
    }
    assert!(pushed.from_sql.load(Relaxed) > 0 && pushed.from_points.load(Relaxed) > 0);
    assert_eq!(
        from_points.from_sql.load(Relaxed) + from_points.from_points.load(Relaxed),
        0
    );
}
