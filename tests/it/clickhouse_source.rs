//! The ClickHouse store's read side against a real `clickhouse-server`
//! (18.16.1): every case of `protocol/queries/` answered by the same engine
//! over `ClickHouseSource` and over a real RocksDB store, byte for byte;
//! scans of many series in any order, from any kind of thread; and hash
//! collisions refused on both sides.
//!
//! These tests are plain `#[test]`s: the engine calls a source from
//! threads outside any runtime, so a small runtime here only starts the
//! server and writes the data.

use std::ops::ControlFlow;
use std::sync::Arc;

use rtsd::clickhouse::writer::{self, WriteError};
use rtsd::clickhouse::{series_id, Compression};
use rtsd::model::{epoch_ms, DataPoint, Sample, SeriesKey, Value};
use rtsd::query::source::Source;
use rtsd::query::{execute, QueryLimits, QueryRequest};
use serde_json::Value as Json;

use crate::clickhouse_support::{embedded, load, name, source, start};
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
    for (i, (file, case)) in all.iter().enumerate() {
        let label = format!("{file}: {}", case["name"].as_str().unwrap_or("?"));
        let samples = samples(case);

        let db = name(&format!("case_{i}"));
        load(&setup, &client, &db, &samples);
        let on_clickhouse = answer(&source(&server, &db), case);

        let embedded = embedded(&samples, NOW_MS);
        let on_rocksdb = answer(&embedded.reader, case);

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
