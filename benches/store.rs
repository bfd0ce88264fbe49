//! Storage engine micro-benchmark: `StoreWriter::append`, the per-point hot
//! path of ingest, on a real RocksDB in a temp dir.
//!
//! 100 k points over 1 k series in batches of 4096, as the writer thread
//! commits them. Two cases: into a fresh store (the first batch creates
//! every series) and into a store that already knows the series (steady
//! state, the case that matters). Criterion reports points/s as
//! "elem/s". A one-off pass before the measurements appends 1 M points,
//! seals and flushes, and prints points/s and bytes on disk per point.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use rtsd::model::{DataPoint, Sample, SeriesKey, Value};
use rtsd::storage::{Store, StoreOptions, StoreReader, StoreWriter};

const SERIES: usize = 1_000;
const POINTS: usize = 100_000;
const BATCH: usize = 4096;
/// 2026-11-23T00:00:00Z; points are 10 s apart from here.
const T0: i64 = 1_795_392_000_000;
const STEP_MS: i64 = 10_000;

fn series() -> Vec<SeriesKey> {
    (0..SERIES)
        .map(|i| {
            let host = format!("web-{:04}", i / 10);
            let cpu = format!("{}", i % 10);
            SeriesKey::new(
                "sys.cpu.user",
                [("host", host.as_str()), ("cpu", cpu.as_str())],
            )
        })
        .collect()
}

/// `rounds` scrapes of every series, time-major, starting at scrape
/// `first`: odd series are integer counters, even ones float gauges with
/// two decimals, like the load benchmark's stream.
fn stream(keys: &[SeriesKey], first: usize, rounds: usize) -> Vec<Sample> {
    let mut out = Vec::with_capacity(keys.len() * rounds);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in first..first + rounds {
        for (i, key) in keys.iter().enumerate() {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let value = if i % 2 == 1 {
                Value::Int((round * 1000 + (seed >> 54) as usize) as i64)
            } else {
                Value::Float(((seed >> 40) % 10_000) as f64 / 100.0)
            };
            out.push(Sample {
                series: key.clone(),
                point: DataPoint {
                    timestamp_ms: T0 + round as i64 * STEP_MS,
                    value,
                },
            });
        }
    }
    out
}

fn open() -> (tempfile::TempDir, StoreWriter, StoreReader) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (w, r) = Store::open(dir.path(), StoreOptions::default()).expect("store opens");
    (dir, w, r)
}

fn append_all(w: &mut StoreWriter, samples: &[Sample]) {
    for batch in samples.chunks(BATCH) {
        w.append(batch).expect("appends");
    }
}

/// Prints throughput and bytes per point for 1 M points, once.
fn report() {
    let keys = series();
    let samples = stream(&keys, 0, 1_000);
    let (_dir, mut w, r) = open();
    let started = Instant::now();
    append_all(&mut w, &samples);
    let append_s = started.elapsed().as_secs_f64();
    let logged = r.bytes_on_disk();
    let sealed = Instant::now();
    w.seal_all(rtsd::model::now_ms()).expect("seals");
    w.flush().expect("flushes");
    let seal_s = sealed.elapsed().as_secs_f64();
    let n = samples.len() as f64;
    eprintln!(
        "store report: {} points, {} series: append {:.0} points/s; seal_all {:.2} s; \
         {:.2} bytes/point on disk sealed ({:.2} while only logged)",
        samples.len(),
        keys.len(),
        n / append_s,
        seal_s,
        r.bytes_on_disk() as f64 / n,
        logged as f64 / n,
    );
    let disk = r.disk_usage();
    let mut parts: Vec<String> = disk
        .column_families
        .iter()
        .filter(|c| c.sst_bytes > 0)
        .map(|c| format!("{} {}", c.name, c.sst_bytes))
        .collect();
    parts.push(format!("wal {}", disk.wal_bytes));
    eprintln!(
        "store report: bytes on disk by family: {}",
        parts.join(", ")
    );
}

fn bench_append(c: &mut Criterion) {
    report();
    let keys = series();
    let rounds = POINTS / SERIES;
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(POINTS as u64));
    group.sample_size(10);

    let fresh = stream(&keys, 0, rounds);
    group.bench_function("append_100k_new_store", |b| {
        b.iter_batched(
            open,
            |(dir, mut w, r)| {
                append_all(&mut w, &fresh);
                (dir, w, r)
            },
            BatchSize::PerIteration,
        )
    });

    let (_dir, mut w, _r) = open();
    append_all(&mut w, &stream(&keys, 0, 1));
    let mut next_round = 1;
    group.bench_function("append_100k_known_series", |b| {
        b.iter_batched(
            || {
                let samples = stream(&keys, next_round, rounds);
                next_round += rounds;
                samples
            },
            |samples| {
                append_all(&mut w, &samples);
                // Dropped outside the measurement: freeing the samples is
                // the queue's cost, not the store's.
                samples
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_append);
criterion_main!(benches);
