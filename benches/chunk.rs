//! Chunk codec throughput on 1000-point chunks of typical series shapes
//! (`rtsd::storage::chunk::testkit::Shape`). Throughput is counted in
//! points, so criterion's time divided by 1000 is the cost per point:
//! `cargo bench --bench chunk`. Encoding is on the write hot path (target:
//! under 20 ns a point), sealing on the writer thread once per window;
//! decoding is on the query path.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rtsd::model::DataPoint;
use rtsd::storage::chunk::testkit::Shape;
use rtsd::storage::chunk::{decode, iter, ChunkEncoder};

const POINTS: usize = 1000;

/// One benchmark per shape in group `name`, each encoding its points
/// with `encode`.
fn encode_shapes(c: &mut Criterion, name: &str, encode: impl Fn(&[DataPoint]) -> Vec<u8>) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(POINTS as u64));
    for shape in Shape::ALL {
        let points = shape.sample(POINTS);
        group.bench_function(shape.name(), |b| b.iter(|| encode(black_box(&points))));
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    encode_shapes(c, "chunk_encode", |points| {
        let mut enc = ChunkEncoder::new();
        for &p in points {
            // Samples are strictly increasing, so every push succeeds.
            let _ = enc.push(p);
        }
        enc.finish()
    });
}

fn seal(c: &mut Criterion) {
    // Sealing a window: the smaller of the encoder's chunk and the packed
    // one, from the window's points.
    encode_shapes(c, "chunk_seal", rtsd::storage::chunk::encode);
}

// Bytes per point go beside criterion's own lines on stdout.
#[allow(clippy::print_stdout)]
fn decode_all(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunk_decode");
    group.throughput(Throughput::Elements(POINTS as u64));
    for shape in Shape::ALL {
        let bytes = rtsd::storage::chunk::encode(&shape.sample(POINTS));
        println!(
            "{}: {:.3} bytes/point",
            shape.name(),
            bytes.len() as f64 / POINTS as f64
        );
        group.bench_function(shape.name(), |b| b.iter(|| decode(black_box(&bytes))));
    }
    group.finish();
}

fn scan(c: &mut Criterion) {
    // A range query's path: iterate without collecting.
    let mut group = c.benchmark_group("chunk_iter");
    group.throughput(Throughput::Elements(POINTS as u64));
    let bytes = rtsd::storage::chunk::encode(&Shape::Gauge1dp.sample(POINTS));
    group.bench_function("gauge_1dp_sum", |b| {
        b.iter(|| {
            iter(black_box(&bytes)).map(|it| {
                it.map_while(Result::ok)
                    .map(|p| p.value.as_f64())
                    .sum::<f64>()
            })
        })
    });
    group.finish();
}

criterion_group!(benches, encode, seal, decode_all, scan);
criterion_main!(benches);
