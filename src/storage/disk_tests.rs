//! Bytes on disk per family for the load bench's stream (issue 11),
//! written straight through the store so that it runs in a debug build in
//! minutes instead of needing a release `rtsd`. Ignored by default:
//!
//! `RTSD_DISK_POINTS=6000000 RTSD_DISK_SERIES=40000 RTSD_DISK_HOUR_OFFSET_S=3000
//! cargo test --locked --lib disk_shape -- --ignored --nocapture`
//!
//! (the offset: how far into an hour the stream starts; at 3000 s the
//! bench's 25 minutes of points cross an hour boundary). With
//! `RTSD_DISK_FLUSH_BETWEEN=1` the memtables are flushed between the two
//! hours' seals, so the first version of each day rollup reaches disk.
//!
//! It prints the usage twice: after what a shutdown leaves (seal, flush:
//! what the load bench measures) and after a full compaction of every
//! family, rewriting every file (what a store settles to once its files
//! merge).

// The bench's generator, so both measure the same values; this file uses
// only `Workload::generate` and its fields.
#[allow(dead_code)]
#[path = "../../benches/load/workload.rs"]
mod workload;

use crate::model::Sample;
use crate::protocol::{parse_line, Command, ParseOptions};

use super::head::WINDOW_MS;
use super::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes per family kind: the sum over its partitions.
fn report(label: &str, shared: &Shared, usage: &DiskUsage, points: u64) {
    let kinds = [
        "blocks_",
        "rollup_1h_",
        "rollup_1d_",
        "log",
        "series",
        "names",
    ];
    let mut lines = Vec::new();
    for kind in kinds {
        let families = || {
            usage
                .column_families
                .iter()
                .filter(move |c| c.name.starts_with(kind))
        };
        let bytes: u64 = families().map(|c| c.sst_bytes).sum();
        // Estimated, but exact enough after a flush or compaction to tell
        // whether the stream crossed an hour boundary (two hour records
        // per series instead of one).
        let keys: u64 = families()
            .filter_map(|c| {
                let family = shared.cf(&c.name).ok()?;
                shared
                    .db
                    .property_int_value_cf(&family, rocksdb::properties::ESTIMATE_NUM_KEYS)
                    .ok()
                    .flatten()
            })
            .sum();
        // What the files hold before RocksDB's block compression: how much
        // zstd still finds on top of the records' own coding.
        let (values, value_bytes) = families()
            .filter_map(|c| shared.cf(&c.name).ok())
            .flat_map(|family| {
                shared
                    .db
                    .iterator_cf(&family, rocksdb::IteratorMode::Start)
                    .map(|item| item.map_or(0, |(_, v)| v.len()))
                    .collect::<Vec<_>>()
            })
            .fold((0usize, 0usize), |(n, b), len| (n + 1, b + len));
        lines.push(format!(
            "  {kind:<11} {bytes:>11} B  {:.3} B/point  {keys:>9} keys  {:.1} B/key  \
             {:.1} B/value before compression",
            bytes as f64 / points as f64,
            bytes as f64 / keys.max(1) as f64,
            value_bytes as f64 / values.max(1) as f64
        ));
    }
    eprintln!(
        "{label}: {} B on disk ({} B WAL), {:.3} B/point\n{}",
        usage.bytes_on_disk,
        usage.wal_bytes,
        usage.bytes_on_disk as f64 / points as f64,
        lines.join("\n")
    );
}

#[test]
#[ignore = "a measurement of minutes, not a check; run it by name"]
fn disk_shape() {
    let points = env_or("RTSD_DISK_POINTS", 6_000_000);
    let series = env_or("RTSD_DISK_SERIES", 40_000) as usize;
    // The stream ends now; shifted so that its first point lies this far
    // into an hour, every run crosses (or not) the same hour boundaries,
    // and so writes the same number of rollups.
    let offset_ms = 1000 * env_or("RTSD_DISK_HOUR_OFFSET_S", 50 * 60) as i64;
    let w = workload::Workload::generate(points, series, 1).expect("stream");
    let first_ms = 1000 * w.first_ts as i64;
    let shift = first_ms.div_euclid(WINDOW_MS) * WINDOW_MS + offset_ms - first_ms;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut writer, reader) = Store::open(dir.path(), StoreOptions::default()).expect("opens");
    let opts = ParseOptions::default();
    let started = std::time::Instant::now();
    let mut batch: Vec<Sample> = Vec::with_capacity(10_000);
    for line in w.streams[0]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
    {
        let Ok(Command::Put(put)) = parse_line(line, &opts) else {
            panic!("not a put: {}", String::from_utf8_lossy(line));
        };
        batch.push(Sample {
            series: put.series_key(),
            point: crate::model::DataPoint {
                timestamp_ms: put.timestamp_ms + shift,
                value: put.value,
            },
        });
        if batch.len() == batch.capacity() {
            writer.append(&batch).expect("appends");
            batch.clear();
        }
    }
    writer.append(&batch).expect("appends");
    // As the daemon does: hours past their grace seal while it runs, the
    // rest at shutdown, then everything is flushed.
    let appended = started.elapsed();
    let now = 1000 * w.last_ts as i64 + shift + 10_000;
    writer.seal_due(now).expect("seals");
    if env_or("RTSD_DISK_FLUSH_BETWEEN", 0) == 1 {
        // As when a memtable fills between two hours' seals: the day
        // rollups the first seal wrote are then on disk twice.
        writer.flush().expect("flushes");
    }
    writer.seal_all(now).expect("seals");
    writer.flush().expect("flushes");
    eprintln!(
        "append {:.1} s, seal and flush {:.1} s",
        appended.as_secs_f64(),
        (started.elapsed() - appended).as_secs_f64()
    );
    report(
        "after seal and flush",
        &reader.shared,
        &reader.disk_usage(),
        points,
    );

    // Forced: a lone flushed file would otherwise just move to the bottom
    // level as it is, keeping its flush-time compression.
    let mut compact = rocksdb::CompactOptions::default();
    compact.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
    let s = &*reader.shared;
    for name in s.family_names() {
        let family = s.cf(&name).expect("family");
        s.db.compact_range_cf_opt(&family, None::<&[u8]>, None::<&[u8]>, &compact);
    }
    report("after full compaction", s, &reader.disk_usage(), points);
}
