//! Retention and range deletes of the ClickHouse spool against a real
//! `clickhouse-server` (18.16.1): an expiry drops the day partitions of
//! `points` and the rollup partitions wholly past their retention and
//! keeps the rest; a delete removes exactly a range of some series,
//! points appended just before it (not shipped yet) included, and the
//! rollup rows of the buckets it touches.
//!
//! In a cluster a node reaches only the `_local` tables of the server it
//! points at, and the tests show that too.
//!
//! Plain `#[test]`s that play the ingest thread, as in `clickhouse_spool`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rtsd::clickhouse::schema::{self, Identifier, Layout};
use rtsd::clickhouse::spool::{SpoolOptions, Target};
use rtsd::clickhouse::{series_id, Client};
use rtsd::ingest::Sink;
use rtsd::model::{DataPoint, Sample, SeriesKey, Value, DAY_MS, HOUR_MS};
use rtsd::queue::{Batch, DeleteRequest};
use rtsd::storage::{Retention, StoreError};
use tokio::runtime::Runtime;

use crate::clickhouse_support::{
    self, open_spool as open, wait_spool as wait, ClickHouse, CLUSTER,
};
use crate::support::{free_port, DEADLINE};

const METRIC: &str = "retention.test";
/// Noon of a UTC day: the tests' "now".
const NOW: i64 = 19_000 * DAY_MS + 12 * HOUR_MS;

fn db() -> Identifier {
    Identifier::new("kept").expect("valid name")
}

fn target(client: Client) -> Target {
    clickhouse_support::spool_target(client, db())
}

fn key(host: usize) -> SeriesKey {
    SeriesKey::new(METRIC, [("host", format!("h{host}").as_str())])
}

fn sample(host: usize, ts: i64) -> Sample {
    Sample {
        series: key(host),
        point: DataPoint {
            timestamp_ms: ts,
            value: Value::Int(ts),
        },
    }
}

fn rows(setup: &Runtime, server: &ClickHouse, sql: &str) -> Vec<Vec<String>> {
    setup
        .block_on(server.client().select_rows(sql))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn execute(setup: &Runtime, server: &ClickHouse, sql: &str) {
    setup
        .block_on(server.client().execute(sql))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// `(series, ts)` of every point `FINAL` reads.
fn stored(setup: &Runtime, server: &ClickHouse) -> BTreeSet<(u64, i64)> {
    stored_in(setup, server, "points")
}

/// `(series, ts)` of every point `FINAL` reads from `table`.
fn stored_in(setup: &Runtime, server: &ClickHouse, table: &str) -> BTreeSet<(u64, i64)> {
    let db = db();
    rows(
        setup,
        server,
        &format!("SELECT series, ts FROM {db}.{table} FINAL"),
    )
    .into_iter()
    .map(|r| (r[0].parse().expect("id"), r[1].parse().expect("ts")))
    .collect()
}

/// The active partitions of `table`.
fn partitions(setup: &Runtime, server: &ClickHouse, table: &str) -> BTreeSet<i64> {
    let db = db();
    rows(
        setup,
        server,
        &format!(
            "SELECT DISTINCT partition_id FROM system.parts \
             WHERE database = '{db}' AND table = '{table}' AND active"
        ),
    )
    .into_iter()
    .map(|r| r[0].parse().expect("a number"))
    .collect()
}

/// Rollup rows of `series` at `starts` (the other columns zero).
fn rollup_rows(setup: &Runtime, server: &ClickHouse, table: &str, rows: &[(u64, i64)]) {
    let values: Vec<String> = rows
        .iter()
        .map(|(series, start)| format!("({series}, {start}, 1, 1)"))
        .collect();
    execute(
        setup,
        server,
        &format!(
            "INSERT INTO {}.{table} (series, start, count, version) VALUES {}",
            db(),
            values.join(",")
        ),
    );
}

fn rollup_starts(setup: &Runtime, server: &ClickHouse, table: &str) -> BTreeSet<(u64, i64)> {
    rows(
        setup,
        server,
        &format!("SELECT series, start FROM {}.{table} FINAL", db()),
    )
    .into_iter()
    .map(|r| (r[0].parse().expect("id"), r[1].parse().expect("start")))
    .collect()
}

#[test]
fn expiry_drops_whole_partitions_past_retention_and_keeps_the_rest() {
    let setup = Runtime::new().expect("runtime");
    let server = clickhouse_support::single_with_schema(&setup, &db());
    let dir = tempfile::tempdir().expect("temp dir");
    let retention = Retention {
        raw_ms: Some(3 * DAY_MS),
        rollup_1h_ms: Some(60 * DAY_MS),
        rollup_1d_ms: None,
    };
    let options = SpoolOptions {
        flush_interval: Duration::from_millis(20),
        retention,
        // The rollup rows here are the test's own.
        rollup_interval: Duration::from_secs(3600),
        ..SpoolOptions::default()
    };
    let mut spool = open(dir.path(), target(server.client()), options);
    let today = NOW.div_euclid(DAY_MS);
    // Days 10, 5 and 4 back end before the cutoff (3 days before noon);
    // day 3 back holds a point older than the cutoff but ends after it,
    // so it stays whole, as the embedded store keeps a partly live family.
    let days_back = [10, 5, 4, 3, 1, 0];
    let samples: Vec<Sample> = days_back
        .iter()
        .flat_map(|&d| (0..4).map(move |h| sample(h, (today - d) * DAY_MS + HOUR_MS + h as i64)))
        .collect();
    spool.append(&samples).expect("appended");
    wait(&spool.monitor(), "shipped", |s| s.records == 0);
    let hour_span = 30 * DAY_MS;
    let cutoff_1h = NOW - 60 * DAY_MS;
    let old_1h = NOW - 200 * DAY_MS;
    // Starts before the cutoff, in a partition that ends after it.
    let straddling_1h = cutoff_1h.div_euclid(hour_span) * hour_span;
    assert!(straddling_1h < cutoff_1h);
    rollup_rows(
        &setup,
        &server,
        "rollup_1h",
        &[(1, old_1h), (1, straddling_1h), (1, NOW - HOUR_MS)],
    );
    // Kept forever: no rollup_1d retention.
    rollup_rows(&setup, &server, "rollup_1d", &[(1, NOW - 1000 * DAY_MS)]);

    spool.expire(NOW).expect("expiry handed over");
    let stats = wait(&spool.monitor(), "partitions dropped", |s| {
        s.partitions_dropped >= 4
    });
    assert_eq!((stats.partitions_dropped, stats.expire_errors), (4, 0));

    let kept_days: BTreeSet<i64> = [3, 1, 0].iter().map(|d| today - d).collect();
    assert_eq!(partitions(&setup, &server, "points"), kept_days);
    let want: BTreeSet<(u64, i64)> = samples
        .iter()
        .filter(|s| kept_days.contains(&s.point.timestamp_ms.div_euclid(DAY_MS)))
        .map(|s| (series_id(&s.series), s.point.timestamp_ms))
        .collect();
    assert_eq!(want.len(), 12);
    assert_eq!(stored(&setup, &server), want);
    assert_eq!(
        rollup_starts(&setup, &server, "rollup_1h"),
        [(1, straddling_1h), (1, NOW - HOUR_MS)].into()
    );
    assert_eq!(rollup_starts(&setup, &server, "rollup_1d").len(), 1);

    // Nothing more is due at the same time: a second run drops nothing.
    spool.expire(NOW).expect("expiry handed over");
    spool.delete(&[], 0, 0).expect("barrier");
    let monitor = spool.monitor();
    let again = wait(&monitor, "second expiry ran", |s| s.partitions_dropped == 4);
    assert_eq!(again.expire_errors, 0);
    assert_eq!(stored(&setup, &server), want);
}

#[test]
fn an_expiry_with_the_server_down_is_counted_and_holds_nothing_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{}", free_port());
    let options = SpoolOptions {
        retention: Retention {
            raw_ms: Some(DAY_MS),
            ..Retention::default()
        },
        ..SpoolOptions::default()
    };
    let mut spool = open(
        dir.path(),
        target(Client::new(&url, None, None).expect("client")),
        options,
    );
    let started = Instant::now();
    spool.expire(NOW).expect("expiry handed over");
    spool.append(&[sample(0, NOW)]).expect("appended");
    assert!(started.elapsed() < Duration::from_secs(1));
    let stats = wait(&spool.monitor(), "failure counted", |s| {
        s.expire_errors >= 1
    });
    assert_eq!(stats.partitions_dropped, 0);
}

#[test]
fn a_delete_removes_its_range_of_its_series_points_not_yet_shipped_included() {
    let setup = Runtime::new().expect("runtime");
    let server = clickhouse_support::single_with_schema(&setup, &db());
    let dir = tempfile::tempdir().expect("temp dir");
    // Once the first batch has gone, later points wait an hour: only the
    // delete can make them ship.
    let options = SpoolOptions {
        flush_interval: Duration::from_secs(3600),
        // The rollup rows here are the test's own.
        rollup_interval: Duration::from_secs(3600),
        ..SpoolOptions::default()
    };
    let mut spool = open(dir.path(), target(server.client()), options);
    let monitor = spool.monitor();
    let base = NOW - 2 * DAY_MS;
    let early: Vec<Sample> = (0..10)
        .flat_map(|h| (0..100).map(move |i| sample(h, base + i * 60_000)))
        .collect();
    spool.append(&early).expect("appended");
    wait(&monitor, "first batch shipped", |s| s.records == 0);
    let late: Vec<Sample> = (0..10)
        .flat_map(|h| (100..200).map(move |i| sample(h, base + i * 60_000)))
        .collect();
    spool.append(&late).expect("appended");
    assert_eq!(
        monitor.stats().points,
        late.len() as u64,
        "late points wait"
    );

    let doomed: Vec<u64> = (0..5).map(|h| series_id(&key(h))).collect();
    // Minutes 50..=150: half in the shipped points, half in the waiting.
    let (from, to) = (base + 50 * 60_000, base + 150 * 60_000);
    let hour = |t: i64| t.div_euclid(HOUR_MS) * HOUR_MS;
    let untouched_hour = hour(base + 3 * HOUR_MS + 30 * 60_000);
    for table in ["rollup_1h", "rollup_1d"] {
        rollup_rows(
            &setup,
            &server,
            table,
            &[
                (doomed[0], hour(from)),
                (doomed[0], hour(to)),
                (doomed[0], untouched_hour),
            ],
        );
    }
    rollup_rows(
        &setup,
        &server,
        "rollup_1h",
        &[(series_id(&key(9)), hour(from))],
    );

    let deleted = spool.delete(&doomed, from, to).expect("deleted");
    assert_eq!(deleted, 5 * 101);
    assert_eq!(
        monitor.stats().records,
        0,
        "the delete shipped what came before"
    );
    let want: BTreeSet<(u64, i64)> = early
        .iter()
        .chain(&late)
        .map(|s| (series_id(&s.series), s.point.timestamp_ms))
        .filter(|(id, ts)| !(doomed.contains(id) && (from..=to).contains(ts)))
        .collect();
    assert_eq!(want.len(), 2000 - 505);
    assert_eq!(stored(&setup, &server), want);
    // Every hour the range touches loses its rollup; others stay.
    assert_eq!(
        rollup_starts(&setup, &server, "rollup_1h"),
        [
            (doomed[0], untouched_hour),
            (series_id(&key(9)), hour(from))
        ]
        .into()
    );
    // The range lies in one day: the rows starting in that day up to its
    // end go, a row starting after it stays.
    assert_eq!(
        rollup_starts(&setup, &server, "rollup_1d"),
        [(doomed[0], untouched_hour)].into()
    );

    // Points appended after the delete are not touched by it.
    let after = vec![sample(0, from + 1)];
    spool.append(&after).expect("appended");
    assert_eq!(spool.delete(&[], 0, 0).expect("barrier"), 0);
    assert!(stored(&setup, &server).contains(&(doomed[0], from + 1)));
    // Nothing left in the range: deleting again finds nothing.
    assert_eq!(spool.delete(&doomed[1..], from, to).expect("deleted"), 0);
}

#[test]
fn a_delete_queued_behind_writes_deletes_them_too_through_the_ingest_thread() {
    let setup = Runtime::new().expect("runtime");
    let server = clickhouse_support::single_with_schema(&setup, &db());
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SpoolOptions {
        flush_interval: Duration::from_secs(3600),
        ..SpoolOptions::default()
    };
    let spool = open(dir.path(), target(server.client()), options);
    let monitor = spool.monitor();
    let (tx, stats, ingest) = clickhouse_support::ingest_over(spool);
    let batch = |from: i64| Batch {
        samples: (0..4)
            .flat_map(|h| (from..from + 10).map(move |i| sample(h, NOW + i * 1000)))
            .collect(),
        ack: None,
    };
    tx.try_push(batch(0)).expect("queued");
    wait(&monitor, "first batch shipped", |s| s.points_shipped == 40);
    // Queued, committed to the spool, not shipped (an hour's interval)
    // when the delete behind them runs.
    tx.try_push(batch(10)).expect("queued");
    let (ack, answer) = tokio::sync::oneshot::channel();
    let doomed = series_id(&key(0));
    let delete = DeleteRequest {
        series: vec![doomed],
        start_ms: NOW + 5_000,
        end_ms: NOW + 14_000,
        ack,
    };
    setup
        .block_on(tx.push_delete(delete))
        .expect("delete queued");
    let deleted = setup
        .block_on(async { tokio::time::timeout(DEADLINE, answer).await })
        .expect("answered in time")
        .expect("writer answers");
    assert_eq!(deleted, Ok(10));
    assert_eq!(
        stats
            .points_deleted
            .load(std::sync::atomic::Ordering::Relaxed),
        10
    );
    let want: BTreeSet<(u64, i64)> = (0..4)
        .flat_map(|h| (0..20).map(move |i| (series_id(&key(h)), NOW + i * 1000)))
        .filter(|&(id, ts)| !(id == doomed && (NOW + 5_000..=NOW + 14_000).contains(&ts)))
        .collect();
    assert_eq!(stored(&setup, &server), want);
    drop(tx);
    ingest
        .join()
        .expect("ingest thread")
        .expect("ingest ends cleanly");
}

#[test]
fn a_delete_whose_earlier_points_cannot_ship_fails_after_its_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{}", free_port());
    let timeout = Duration::from_millis(300);
    let options = SpoolOptions {
        delete_timeout: timeout,
        ..SpoolOptions::default()
    };
    let mut spool = open(
        dir.path(),
        target(Client::new(&url, None, None).expect("client")),
        options,
    );
    spool.append(&[sample(0, NOW)]).expect("appended");
    let started = Instant::now();
    let err = spool
        .delete(&[series_id(&key(0))], 0, NOW)
        .expect_err("cannot ship, so cannot delete");
    assert!(matches!(err, StoreError::Server(_)), "{err:?}");
    assert!(err.to_string().contains("did not finish"), "{err}");
    assert!(started.elapsed() < DEADLINE);
    // The points stay in the spool for when the server is back.
    assert_eq!(spool.monitor().stats().points, 1);
}

#[test]
fn in_a_cluster_a_node_expires_and_deletes_on_its_own_server_only() {
    cluster_upkeep(false);
}

#[test]
fn in_a_cluster_with_shard_urls_a_node_expires_and_deletes_on_every_shard() {
    cluster_upkeep(true);
}

/// A node of a two-shard cluster pointing at the first server expires
/// and deletes: on that server alone, or on both given them as shards.
fn cluster_upkeep(every_shard: bool) {
    let setup = Runtime::new().expect("runtime");
    let servers = setup.block_on(clickhouse_support::cluster());
    let layout = Layout::Cluster(Identifier::new(CLUSTER).expect("valid name"));
    let ddl = schema::ddl_script(&db(), &layout);
    for s in &servers {
        s.run_script(&ddl);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SpoolOptions {
        flush_interval: Duration::from_millis(20),
        retention: Retention {
            raw_ms: Some(3 * DAY_MS),
            ..Retention::default()
        },
        ..SpoolOptions::default()
    };
    let node = Target {
        layout,
        shards: match every_shard {
            true => servers.iter().map(ClickHouse::client).collect(),
            false => Vec::new(),
        },
        ..target(servers[0].client())
    };
    let mut spool = open(dir.path(), node, options);
    let today = NOW.div_euclid(DAY_MS);
    let samples: Vec<Sample> = (0..20)
        .flat_map(|h| {
            [today - 10, today]
                .into_iter()
                .flat_map(move |d| (0..5).map(move |i| sample(h, d * DAY_MS + i * 60_000)))
        })
        .collect();
    spool.append(&samples).expect("appended");
    wait(&spool.monitor(), "shipped", |s| s.records == 0);
    // Shipped means on the shards (`insert_distributed_sync`); the poll
    // only bounds the wait should that ever change.
    let start = Instant::now();
    let before = loop {
        let local = servers
            .each_ref()
            .map(|s| stored_in(&setup, s, "points_local"));
        if local.iter().map(BTreeSet::len).sum::<usize>() == samples.len() {
            break local;
        }
        assert!(start.elapsed() < DEADLINE, "points not on their shards");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        before.iter().all(|b| !b.is_empty()),
        "both shards hold points"
    );

    let doomed: Vec<u64> = (0..10).map(|h| series_id(&key(h))).collect();
    let (from, to) = (today * DAY_MS + 60_000, today * DAY_MS + 180_000);
    let in_range = |(id, ts): &(u64, i64)| doomed.contains(id) && (from..=to).contains(ts);
    let reached = if every_shard { 2 } else { 1 };
    let deleted = spool.delete(&doomed, from, to).expect("deleted");
    assert_eq!(
        deleted,
        before[..reached]
            .iter()
            .flatten()
            .filter(|p| in_range(p))
            .count() as u64
    );
    assert!(deleted > 0);
    spool.expire(NOW).expect("expiry handed over");
    let stats = wait(&spool.monitor(), "partitions dropped", |s| {
        s.partitions_dropped >= reached as u64
    });
    assert_eq!(
        (stats.partitions_dropped, stats.expire_errors),
        (reached as u64, 0)
    );

    // The servers reached: the old day and the range are gone.
    for (server, held) in servers.iter().zip(&before).take(reached) {
        let want: BTreeSet<(u64, i64)> = held
            .iter()
            .copied()
            .filter(|p| p.1 >= today * DAY_MS && !in_range(p))
            .collect();
        assert_eq!(stored_in(&setup, server, "points_local"), want);
    }
    // Without shard urls the other shard's server is out of reach:
    // untouched.
    if !every_shard {
        assert_eq!(stored_in(&setup, &servers[1], "points_local"), before[1]);
    }
}

/// The `count` of the `FINAL` row of `table` for `series` at `start`, if any.
fn rollup_count(
    setup: &Runtime,
    server: &ClickHouse,
    table: &str,
    series: u64,
    start: i64,
) -> Option<u64> {
    let db = db();
    let found = rows(
        setup,
        server,
        &format!(
            "SELECT count FROM {db}.{table} FINAL WHERE series = {series} AND start = {start}"
        ),
    );
    found.first().map(|r| r[0].parse().expect("a count"))
}

#[test]
fn shipped_hours_get_rollups_once_sealed_again_after_late_points_and_deletes_across_restarts() {
    use rtsd::clickhouse::rollups;
    use rtsd::clickhouse::ClickHouseSource;
    use rtsd::model::RollupResolution;
    use rtsd::query::source::Source;

    let setup = Runtime::new().expect("runtime");
    let server = clickhouse_support::single_with_schema(&setup, &db());
    let dir = tempfile::tempdir().expect("temp dir");
    let quick = SpoolOptions {
        flush_interval: Duration::from_millis(20),
        rollup_interval: Duration::from_millis(50),
        ..SpoolOptions::default()
    };
    // First no computing at all: the marks must outlive the spool.
    let idle = SpoolOptions {
        rollup_interval: Duration::from_secs(3600),
        ..quick.clone()
    };
    let mut spool = open(dir.path(), target(server.client()), idle);
    let base = NOW - 2 * DAY_MS;
    let hour = |t: i64| t.div_euclid(HOUR_MS) * HOUR_MS;
    let points: Vec<Sample> = (0..3)
        .flat_map(|h| (0..100).map(move |i| sample(h, base + i * 60_000)))
        .collect();
    // And an hour that is not sealed yet.
    let now = rtsd::model::now_ms();
    let recent = sample(0, now);
    spool.append(&points).expect("appended");
    spool
        .append(std::slice::from_ref(&recent))
        .expect("appended");
    assert_eq!(spool.delete(&[], 0, 0).expect("barrier"), 0);
    assert_eq!(rollup_starts(&setup, &server, "rollup_1h"), BTreeSet::new());
    drop(spool);

    let mut spool = open(dir.path(), target(server.client()), quick);
    let monitor = spool.monitor();
    let stats = wait(&monitor, "sealed hours computed", |s| s.rollup_hours >= 6);
    assert_eq!((stats.rollup_hours, stats.rollup_days), (6, 3));
    let ids: Vec<u64> = (0..3).map(|h| series_id(&key(h))).collect();
    let want: BTreeSet<(u64, i64)> = ids
        .iter()
        .flat_map(|&id| [(id, base), (id, base + HOUR_MS)])
        .collect();
    assert_eq!(rollup_starts(&setup, &server, "rollup_1h"), want);
    assert_eq!(
        rollup_count(&setup, &server, "rollup_1h", ids[0], hour(now)),
        None
    );
    assert_eq!(
        rollup_count(&setup, &server, "rollup_1h", ids[1], base),
        Some(60)
    );
    assert_eq!(
        rollup_count(
            &setup,
            &server,
            "rollup_1d",
            ids[1],
            base - base.rem_euclid(DAY_MS)
        ),
        Some(100)
    );

    // What a read answers equals what the points give.
    let source = ClickHouseSource::new(&server.url(), None, None, db()).expect("source");
    let exact = |what: &str| {
        for &id in &ids {
            let raw = source.points(id, 0, i64::MAX).expect("points");
            for resolution in [RollupResolution::Hour, RollupResolution::Day] {
                assert_eq!(
                    source
                        .rollups(id, resolution, 0, i64::MAX)
                        .expect("rollups"),
                    Some(rollups::aggregates(resolution, &raw)),
                    "{what}: {resolution:?}"
                );
            }
        }
    };
    exact("computed");

    // A late point in a sealed hour: computed again.
    let late = sample(0, base + 30 * 60_000 + 1000);
    spool.append(std::slice::from_ref(&late)).expect("appended");
    wait(&monitor, "late hour computed", |s| {
        s.rollup_hours > stats.rollup_hours
    });
    let day = base - base.rem_euclid(DAY_MS);
    wait(&monitor, "late hour stored", |_| {
        rollup_count(&setup, &server, "rollup_1h", ids[0], base) == Some(61)
    });
    assert_eq!(
        rollup_count(&setup, &server, "rollup_1d", ids[0], day),
        Some(101)
    );
    exact("late point");

    // A delete drops the touched rows, and they are computed again.
    let before = monitor.stats().rollup_hours;
    let deleted = spool
        .delete(&ids[..1], base + 10 * 60_000, base + 20 * 60_000)
        .expect("deleted");
    assert_eq!(deleted, 11);
    exact("deleted");
    wait(&monitor, "deleted hours computed", |s| {
        s.rollup_hours > before
    });
    wait(&monitor, "deleted hours stored", |_| {
        rollup_count(&setup, &server, "rollup_1h", ids[0], base) == Some(50)
    });
    assert_eq!(
        rollup_count(&setup, &server, "rollup_1d", ids[0], day),
        Some(90)
    );
    assert_eq!(
        rollup_count(&setup, &server, "rollup_1h", ids[0], base + HOUR_MS),
        Some(40)
    );
    exact("deleted and computed");
    assert_eq!(monitor.stats().rollup_errors, 0);
    // The unsealed hour is still waiting.
    assert_eq!(
        rollup_count(&setup, &server, "rollup_1h", ids[0], hour(now)),
        None
    );
}
