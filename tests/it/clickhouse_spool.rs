//! The ClickHouse spool against real `clickhouse-server` processes
//! (18.16.1): points appended to the spool (as the ingest thread does)
//! reach ClickHouse exactly once as readers see them — with the server up,
//! killed mid-stream and restarted, and with the spool itself reopened
//! from disk while the server is down — and a full spool sheds or blocks
//! as its policy says.
//!
//! Plain `#[test]`s: the spool's shipper runs its own runtime, and the
//! test thread plays the ingest thread; a small runtime only starts
//! servers and sets up schemas.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rtsd::clickhouse::schema::Identifier;
use rtsd::clickhouse::source::ClickHouseSource;
use rtsd::clickhouse::spool::{Spool, SpoolOptions, SpoolStats, Target};
use rtsd::clickhouse::Client;
use rtsd::ingest::Sink;
use rtsd::model::{DataPoint, Sample, SeriesKey, Value};
use rtsd::query::source::Source;
use rtsd::queue::{Batch, OverflowPolicy};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::clickhouse_support::{self, open_spool as open, wait_spool as wait, ClickHouse};
use crate::support::{free_port, DEADLINE};

const METRIC: &str = "spool.test";
const SERIES: usize = 200;
/// Points per append, as one ingest commit.
const COMMIT: usize = 1000;
const START_MS: i64 = 1_700_000_000_000;

fn db() -> Identifier {
    Identifier::new("spooled").expect("valid name")
}

/// A server with the schema in place, killed, and a dir for a spool.
fn down(setup: &Runtime) -> (ClickHouse, tempfile::TempDir) {
    let mut server = clickhouse_support::single_with_schema(setup, &db());
    server.kill();
    (server, tempfile::tempdir().expect("temp dir"))
}

fn target(client: Client) -> Target {
    clickhouse_support::spool_target(client, db())
}

/// Small batches and a short interval, so a test ships many batches.
fn options() -> SpoolOptions {
    SpoolOptions {
        batch_points: 8 * COMMIT,
        flush_interval: Duration::from_millis(20),
        ..SpoolOptions::default()
    }
}

/// A client of a port nobody listens on: every shipment fails.
fn nowhere() -> Target {
    let url = format!("http://127.0.0.1:{}", free_port());
    target(Client::new(&url, None, None).expect("client"))
}

/// `n` points over [`SERIES`] series, a value per point that says which.
fn stream(n: usize) -> Vec<Sample> {
    (0..n)
        .map(|i| Sample {
            series: SeriesKey::new(METRIC, [("host", format!("h{}", i % SERIES).as_str())]),
            point: DataPoint {
                timestamp_ms: START_MS + (i / SERIES) as i64 * 1000,
                value: Value::Int(i as i64),
            },
        })
        .collect()
}

fn append(spool: &mut Spool, samples: &[Sample]) {
    for commit in samples.chunks(COMMIT) {
        spool.append(commit).expect("appended");
    }
}

/// Waits until the spool has shipped everything; returns its stats then.
fn drained(spool: &Spool) -> SpoolStats {
    let monitor = spool.monitor();
    wait(&monitor, "spool drained", |s| s.records == 0);
    monitor.stats()
}

/// Every point of `samples` reads back through `ClickHouseSource` once,
/// and the points table holds exactly that many after `FINAL`.
fn stored_once(setup: &Runtime, server: &ClickHouse, samples: &[Sample]) {
    let mut want: BTreeMap<SeriesKey, Vec<DataPoint>> = BTreeMap::new();
    for s in samples {
        want.entry(s.series.clone()).or_default().push(s.point);
    }
    let source = ClickHouseSource::new(&server.url(), None, None, db()).expect("source");
    let series = source
        .series_of_metric(METRIC)
        .expect("series read")
        .expect("metric known");
    assert_eq!(series.len(), want.len());
    for meta in series {
        let got = source.points(meta.id, 0, i64::MAX).expect("points read");
        assert!(
            want.get(&meta.key) == Some(&got),
            "series {} reads back {} points, not the {} written",
            meta.key,
            got.len(),
            want.get(&meta.key).map_or(0, Vec::len)
        );
    }
    let count = |sql: &str| -> u64 {
        let rows = setup
            .block_on(server.client().select_rows(sql))
            .expect("count");
        rows[0][0].parse().expect("a count")
    };
    let db = db();
    assert_eq!(
        count(&format!("SELECT count() FROM {db}.points FINAL")),
        samples.len() as u64
    );
    // Re-shipped rows may sit on disk until a merge; never fewer.
    assert!(count(&format!("SELECT count() FROM {db}.points")) >= samples.len() as u64);
}

#[test]
fn a_stream_through_the_spool_arrives_once() {
    let setup = Runtime::new().expect("runtime");
    let server = clickhouse_support::single_with_schema(&setup, &db());
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spool = open(dir.path(), target(server.client()), options());
    let samples = stream(50_000);
    append(&mut spool, &samples);
    let stats = drained(&spool);
    assert_eq!(stats.points_shipped, samples.len() as u64);
    assert!(stats.ship_batches >= (samples.len() / (8 * COMMIT)) as u64);
    assert_eq!((stats.points_dropped, stats.ship_errors), (0, 0));
    stored_once(&setup, &server, &samples);
}

#[test]
fn a_colliding_key_loses_its_points_and_stalls_nothing() {
    let setup = Runtime::new().expect("runtime");
    let server = clickhouse_support::single_with_schema(&setup, &db());
    let samples = stream(4 * SERIES);
    // Another key holding the id of host h0, as a crafted key would.
    let victim = &samples[0].series;
    let id = rtsd::clickhouse::series_id(victim);
    setup
        .block_on(server.client().execute(&format!(
            "INSERT INTO {}.series VALUES ({id}, '{METRIC}', ['host'], ['x'], '{METRIC}\\0host\\0x')",
            db()
        )))
        .expect("inserted");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spool = open(dir.path(), target(server.client()), options());
    append(&mut spool, &samples);
    let stats = drained(&spool);
    assert_eq!((stats.points_dropped, stats.ship_errors), (4, 0));
    assert_eq!(stats.points_shipped, samples.len() as u64 - 4);
    let rows = setup
        .block_on(server.client().select_rows(&format!(
            "SELECT count(), countIf(series = {id}) FROM {}.points FINAL",
            db()
        )))
        .expect("count");
    assert_eq!(rows, [[(samples.len() - 4).to_string(), "0".to_string()]]);
}

#[test]
fn a_server_killed_mid_stream_gets_everything_once_after_its_restart() {
    let setup = Runtime::new().expect("runtime");
    let mut server = clickhouse_support::single_with_schema(&setup, &db());
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spool = open(dir.path(), target(server.client()), options());
    let samples = stream(50_000);
    let (before, after) = samples.split_at(20_000);
    append(&mut spool, before);
    server.kill();
    append(&mut spool, after);
    // A `?sync` requester of the last commit hears only once it ships.
    let (ack, mut heard) = oneshot::channel();
    spool.acknowledge(&mut vec![ack], Ok(()));
    let monitor = spool.monitor();
    wait(&monitor, "failures counted", |s| s.ship_errors >= 2);
    assert!(monitor.stats().points > 0);
    assert!(heard.try_recv().is_err(), "acknowledged before shipping");
    setup.block_on(server.restart());
    let stats = drained(&spool);
    assert_eq!(heard.try_recv(), Ok(Ok(())));
    assert!(stats.ship_retries >= 1);
    assert_eq!(stats.points_dropped, 0);
    stored_once(&setup, &server, &samples);
}

#[test]
fn a_spool_reopened_while_the_server_is_down_ships_once_it_is_back() {
    let setup = Runtime::new().expect("runtime");
    let (mut server, dir) = down(&setup);
    let samples = stream(50_000);
    {
        let mut spool = open(dir.path(), target(server.client()), options());
        append(&mut spool, &samples);
        wait(&spool.monitor(), "failures counted", |s| s.ship_errors >= 1);
        spool.flush().expect("flushed");
    }
    let spool = open(dir.path(), target(server.client()), options());
    assert_eq!(spool.monitor().stats().points, samples.len() as u64);
    let files = |spool: &Spool| -> u64 {
        let disk = spool.monitor().disk_usage();
        disk.column_families.iter().map(|c| c.sst_bytes).sum()
    };
    let waited = files(&spool);
    assert!(waited > 100_000, "{waited} bytes of files");
    setup.block_on(server.restart());
    assert_eq!(drained(&spool).points_shipped, samples.len() as u64);
    stored_once(&setup, &server, &samples);
    // Shipped records that had reached files do not stay in them.
    let start = Instant::now();
    while files(&spool) > waited / 10 {
        assert!(
            start.elapsed() < DEADLINE,
            "{} bytes of files left",
            files(&spool)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Sequences go on after an emptied spool, so later writes still win.
    drop(spool);
    let mut spool = open(dir.path(), target(server.client()), options());
    let mut rewritten = samples.clone();
    for s in &mut rewritten[..SERIES] {
        s.point.value = Value::Float(0.5);
    }
    append(&mut spool, &rewritten[..SERIES]);
    drained(&spool);
    stored_once(&setup, &server, &rewritten);
}

#[test]
fn ingest_through_the_spool_answers_sync_once_clickhouse_has_the_points() {
    let setup = Runtime::new().expect("runtime");
    let server = clickhouse_support::single_with_schema(&setup, &db());
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = open(dir.path(), target(server.client()), options());
    let (tx, _stats, ingest) = clickhouse_support::ingest_over(spool);
    let samples = stream(20_000);
    let mut acks = Vec::new();
    for commit in samples.chunks(COMMIT) {
        let (ack, heard) = oneshot::channel();
        let batch = Batch {
            samples: commit.to_vec(),
            ack: Some(ack),
        };
        tx.try_push(batch).expect("queued");
        acks.push(heard);
    }
    for heard in acks {
        assert_eq!(heard.blocking_recv(), Ok(Ok(())));
    }
    // Every requester heard, so every point is in ClickHouse already.
    stored_once(&setup, &server, &samples);
    drop(tx);
    ingest
        .join()
        .expect("ingest thread")
        .expect("ingest ends cleanly");
}

#[test]
fn a_blocked_append_keeps_its_points_once_shutdown_begins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = SpoolOptions {
        max_bytes: 64 * 1024,
        overflow: OverflowPolicy::Block,
        ..options()
    };
    let shutdown = CancellationToken::new();
    let mut spool =
        Spool::open(dir.path(), nowhere(), options.clone(), shutdown.clone()).expect("opens");
    let monitor = spool.monitor();
    let samples = stream(20_000);
    let appender = {
        let samples = samples.clone();
        std::thread::spawn(move || append(&mut spool, &samples))
    };
    wait(&monitor, "an append blocked", |s| s.appends_blocked >= 1);
    shutdown.cancel();
    appender.join().expect("appends end");
    let stats = monitor.stats();
    assert_eq!(stats.points, samples.len() as u64);
    assert!(stats.bytes > options.max_bytes, "{stats:?}");
    assert_eq!(stats.points_dropped, 0);
}

#[test]
fn a_full_spool_drops_the_oldest_and_counts_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Room for a few dozen records, more than one batch in flight holds.
    let options = SpoolOptions {
        max_bytes: 256 * 1024,
        ..options()
    };
    let mut spool = open(dir.path(), nowhere(), options.clone());
    let samples = stream(100_000);
    let mut acks = Vec::new();
    for commit in samples.chunks(COMMIT) {
        spool.append(commit).expect("appended");
        let (ack, heard) = oneshot::channel();
        spool.acknowledge(&mut vec![ack], Ok(()));
        acks.push(heard);
    }
    let stats = spool.monitor().stats();
    assert!(stats.bytes <= options.max_bytes, "{stats:?}");
    assert!(stats.points_dropped > 0);
    assert_eq!(stats.points + stats.points_dropped, samples.len() as u64);
    // A shed commit's requester hears so; the newest waits for shipping.
    let middle = acks.len() / 2;
    let shed = acks[middle].try_recv();
    assert!(matches!(shed, Ok(Err(_))), "{shed:?}");
    let newest = acks.last_mut().expect("acks").try_recv();
    assert!(newest.is_err(), "{newest:?}");
}

#[test]
fn a_full_spool_with_block_waits_for_the_server() {
    let setup = Runtime::new().expect("runtime");
    let (mut server, dir) = down(&setup);
    let options = SpoolOptions {
        max_bytes: 64 * 1024,
        overflow: OverflowPolicy::Block,
        ..options()
    };
    let mut spool = open(dir.path(), target(server.client()), options.clone());
    let monitor = spool.monitor();
    let samples = stream(50_000);
    let (done_tx, done) = std::sync::mpsc::channel();
    let appender = {
        let samples = samples.clone();
        std::thread::spawn(move || {
            append(&mut spool, &samples);
            done_tx.send(()).expect("test waits");
            spool
        })
    };
    // Blocked, with the server still down and the shipper failing on:
    // nothing can have let it through.
    wait(&monitor, "an append blocked", |s| s.appends_blocked >= 1);
    let failures = monitor.stats().ship_errors;
    wait(&monitor, "failures go on", |s| s.ship_errors > failures);
    assert!(done.try_recv().is_err(), "append went past a full spool");
    let stats = monitor.stats();
    assert!(stats.bytes <= options.max_bytes, "{stats:?}");
    assert!(stats.points < samples.len() as u64, "{stats:?}");
    setup.block_on(server.restart());
    done.recv_timeout(DEADLINE).expect("appends resume");
    let spool = appender.join().expect("appender");
    let stats = drained(&spool);
    assert_eq!(stats.points_dropped, 0);
    assert_eq!(stats.points_shipped, samples.len() as u64);
    stored_once(&setup, &server, &samples);
}
