//! End-to-end tests of the store against a real RocksDB in a temp dir.
//!
//! A test file, long because each case writes, flushes and reopens a real
//! store; the unit tests of each part stay beside their code.

use std::path::Path;

use crate::model::{DataPoint, RollupAgg, Sample, SeriesKey, Value};
use crate::model::{NameKind, RollupResolution, SeriesMeta};
use crate::query::source::Source;

use super::head::WINDOW_MS;
use super::*;

/// 2026-11-23T00:00:00Z.
const T0: i64 = 1_795_392_000_000;
const HOUR: i64 = WINDOW_MS;
const DAY: i64 = crate::model::DAY_MS;
/// Far past every window used here: `seal_due(LATER)` seals everything.
const LATER: i64 = T0 + 30 * DAY;

pub(super) fn key(metric: &str, tags: &[(&str, &str)]) -> SeriesKey {
    SeriesKey::new(metric, tags.iter().copied())
}

pub(super) fn int(ts: i64, v: i64) -> DataPoint {
    DataPoint {
        timestamp_ms: ts,
        value: Value::Int(v),
    }
}

fn float(ts: i64, v: f64) -> DataPoint {
    DataPoint {
        timestamp_ms: ts,
        value: Value::Float(v),
    }
}

pub(super) fn samples(series: &SeriesKey, points: &[DataPoint]) -> Vec<Sample> {
    points
        .iter()
        .map(|&point| Sample {
            series: series.clone(),
            point,
        })
        .collect()
}

pub(super) fn open(dir: &Path) -> (StoreWriter, StoreReader) {
    Store::open(dir, StoreOptions::default()).expect("store opens")
}

pub(super) fn id_of(r: &StoreReader, k: &SeriesKey) -> u64 {
    let all = r
        .series_of_metric(k.metric())
        .expect("reads")
        .expect("metric exists");
    all.into_iter()
        .find(|m| &m.key == k)
        .expect("series exists")
        .id
}

pub(super) fn all_points(r: &StoreReader, id: u64) -> Vec<DataPoint> {
    r.points(id, 0, i64::MAX).expect("reads")
}

pub(super) fn rollups(
    r: &StoreReader,
    id: u64,
    res: RollupResolution,
    start: i64,
    end: i64,
) -> Vec<RollupAgg> {
    r.rollups(id, res, start, end)
        .expect("reads")
        .expect("rollups available")
}

/// Log records still on disk (not just counted): in journal segments and
/// in the `log` family.
fn live_log_records(r: &StoreReader) -> usize {
    let shared = &r.shared;
    let mut n = 0;
    journal::Journal::open(&journal_dir(r), false, |_, _| {
        n += 1;
        Ok(())
    })
    .expect("reads the journal");
    let mut it = shared
        .db
        .raw_iterator_cf(&shared.cf(cf::LOG).expect("log family"));
    it.seek_to_first();
    while it.valid() {
        n += 1;
        it.next();
    }
    n
}

fn journal_dir(r: &StoreReader) -> std::path::PathBuf {
    r.shared.dir.join(writer::JOURNAL_DIR)
}

#[test]
fn the_halves_can_cross_threads() {
    fn writer<T: Send>() {}
    fn reader<T: Send + Sync + Clone>() {}
    writer::<StoreWriter>();
    reader::<StoreReader>();
}

#[test]
fn appended_points_read_back_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = open(dir.path());
    let cpu = key("sys.cpu", &[("host", "a")]);
    let mem = key("sys.mem", &[("host", "a"), ("dc", "x")]);
    let cpu_points = [int(T0, 1), float(T0 + 1000, 2.5), int(T0 + 2 * HOUR, -3)];
    let mut batch = samples(&cpu, &cpu_points);
    batch.extend(samples(&mem, &[int(T0, 7)]));
    assert_eq!(
        w.append(&batch).expect("appends"),
        AppendStats {
            points: 4,
            new_series: 2
        }
    );
    assert_eq!(
        w.append(&samples(&cpu, &[int(T0 + 3000, 4)]))
            .expect("appends")
            .new_series,
        0
    );
    assert_eq!(r.series_count(), 2);
    let id = id_of(&r, &cpu);
    assert_eq!(
        all_points(&r, id),
        vec![
            cpu_points[0],
            cpu_points[1],
            int(T0 + 3000, 4),
            cpu_points[2]
        ]
    );
    assert_eq!(
        r.points(id, T0 + 1, T0 + 3000).expect("reads"),
        vec![cpu_points[1], int(T0 + 3000, 4)]
    );
    assert_eq!(r.points(id, T0 + 4000, T0 + HOUR).expect("reads"), vec![]);
    assert_eq!(all_points(&r, id_of(&r, &mem)), vec![int(T0, 7)]);
    assert_eq!(all_points(&r, 999), vec![]);
}

#[test]
fn duplicates_last_write_wins_and_out_of_order_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = open(dir.path());
    let k = key("m", &[("t", "1")]);
    w.append(&samples(
        &k,
        &[int(T0 + 20, 1), int(T0 + 10, 2), int(T0 + 20, 3)],
    ))
    .expect("appends");
    w.append(&samples(&k, &[int(T0 + 5, 4), int(T0 + 10, 5)]))
        .expect("appends");
    let id = id_of(&r, &k);
    let expected = vec![int(T0 + 5, 4), int(T0 + 10, 5), int(T0 + 20, 3)];
    assert_eq!(all_points(&r, id), expected);
    // The same answer from the sealed block.
    assert_eq!(w.seal_all(LATER).expect("seals"), 1);
    assert_eq!(r.stats().head_points, 0);
    assert_eq!(all_points(&r, id), expected);
}

#[test]
fn late_data_into_a_sealed_window_merges_newest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = open(dir.path());
    let k = key("m", &[]);
    w.append(&samples(
        &k,
        &[int(T0 + 10, 1), int(T0 + 20, 2), int(T0 + 30, 3)],
    ))
    .expect("appends");
    assert_eq!(w.seal_due(LATER).expect("seals"), 1);
    let id = id_of(&r, &k);
    // Rewrite one point and add an older one into the sealed hour.
    w.append(&samples(&k, &[int(T0 + 20, 20), int(T0 + 5, 0)]))
        .expect("appends");
    let expected = vec![
        int(T0 + 5, 0),
        int(T0 + 10, 1),
        int(T0 + 20, 20),
        int(T0 + 30, 3),
    ];
    assert_eq!(all_points(&r, id), expected, "block and head merged");
    assert_eq!(r.last_point(id).expect("reads"), Some(int(T0 + 30, 3)));
    assert_eq!(w.seal_due(LATER).expect("seals"), 1);
    assert_eq!(all_points(&r, id), expected, "merged into one block");
    assert_eq!(r.stats().sealed_blocks, 2);
    let hour = rollups(&r, id, RollupResolution::Hour, T0, T0 + HOUR);
    assert_eq!(hour.len(), 1);
    assert_eq!((hour[0].count, hour[0].sum), (4, 24.0));
}

#[test]
fn reopen_without_shutdown_replays_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = key("m", &[("host", "a")]);
    let points = [int(T0, 1), float(T0 + 1, 0.5), int(T0 + 3 * HOUR, 9)];
    {
        let (mut w, _r) = open(dir.path());
        w.append(&samples(&k, &points[..2])).expect("appends");
        w.append(&samples(&k, &points[2..])).expect("appends");
        // Dropped without seal_all or flush: the kill -9 case.
    }
    let (mut w, r) = open(dir.path());
    let stats = r.stats();
    assert_eq!(
        (
            stats.series,
            stats.head_points,
            stats.head_chunks,
            stats.log_records
        ),
        (1, 3, 2, 2)
    );
    let id = id_of(&r, &k);
    assert_eq!(all_points(&r, id), points.to_vec());
    // The series map came back too: no new series, ids keep counting.
    let other = key("m", &[("host", "b")]);
    let mut batch = samples(&k, &[int(T0 + 2, 2)]);
    batch.extend(samples(&other, &[int(T0, 1)]));
    assert_eq!(w.append(&batch).expect("appends").new_series, 1);
    assert_eq!(id_of(&r, &other), id + 1);
}

#[test]
fn sealed_data_survives_reopen_and_empties_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = key("m", &[]);
    let points: Vec<DataPoint> = (0..100).map(|i| int(T0 + i * 60_000, i)).collect();
    {
        let (mut w, r) = open(dir.path());
        w.append(&samples(&k, &points)).expect("appends");
        let grace = StoreOptions::default().seal_grace_ms;
        // Hour 0 ends at T0 + HOUR; not due until the grace has passed.
        assert_eq!(w.seal_due(T0 + HOUR + grace).expect("seals"), 0);
        assert_eq!(w.seal_due(T0 + HOUR + grace + 1).expect("seals"), 1);
        assert_eq!(r.stats().log_records, 1, "hour 1 still needs the record");
        assert_eq!(w.seal_due(LATER).expect("seals"), 1);
        assert_eq!(r.stats().log_records, 0);
        assert_eq!(live_log_records(&r), 0);
    }
    let (_w, r) = open(dir.path());
    let stats = r.stats();
    assert_eq!(
        (stats.head_points, stats.log_records, stats.partitions),
        (0, 0, 1)
    );
    assert_eq!(live_log_records(&r), 0);
    assert_eq!(all_points(&r, id_of(&r, &k)), points);
}

/// Journal segment files on disk.
fn segment_files(r: &StoreReader) -> usize {
    std::fs::read_dir(journal_dir(r)).expect("lists").count()
}

/// Copies the files of `from` and of its subdirectories into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creates");
    for entry in std::fs::read_dir(from).expect("lists") {
        let entry = entry.expect("lists");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("stats").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copies");
        }
    }
}

/// The worst moment for a power cut is right after a seal deleted journal
/// segments whose points now live only in the new blocks; the seal syncs
/// the WAL first, so a copy of the directory taken then (what survives)
/// holds every point.
#[test]
fn a_copy_taken_right_after_journal_segments_are_deleted_reopens_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = key("m", &[]);
    let points: Vec<DataPoint> = (0..1000).map(|i| int(T0 + i * 1000, i)).collect();
    let (mut w, r) = open(dir.path());
    w.append(&samples(&k, &points)).expect("appends");
    assert_eq!(segment_files(&r), 1);
    assert_eq!(w.seal_due(LATER).expect("seals"), 1);
    assert_eq!(segment_files(&r), 0, "the seal deleted the segment");
    let copy = tempfile::tempdir().expect("tempdir");
    copy_tree(dir.path(), copy.path());
    drop((w, r));
    let (_w, r) = open(copy.path());
    assert_eq!(all_points(&r, id_of(&r, &k)), points);
}

#[test]
fn replay_skips_windows_the_watermark_proves_sealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = key("m", &[]);
    let points = [int(T0 + 1, 1), int(T0 + HOUR + 1, 2)];
    {
        let (mut w, _r) = open(dir.path());
        // One record touching two windows; only the first seals.
        w.append(&samples(&k, &points)).expect("appends");
        assert_eq!(w.seal_due(T0 + 2 * HOUR + 1).expect("seals"), 1);
    }
    let (_w, r) = open(dir.path());
    let stats = r.stats();
    assert_eq!(
        (stats.head_points, stats.head_chunks, stats.log_records),
        (1, 1, 1)
    );
    assert_eq!(all_points(&r, id_of(&r, &k)), points.to_vec());
}

/// Hour and day aggregates computed straight from the raw points.
pub(super) fn raw_rollups(points: &[DataPoint], interval: i64) -> Vec<RollupAgg> {
    let mut out = Vec::new();
    for group in points
        .chunk_by(|a, b| a.timestamp_ms.div_euclid(interval) == b.timestamp_ms.div_euclid(interval))
    {
        let start = group[0].timestamp_ms.div_euclid(interval) * interval;
        out.extend(RollupAgg::of_points(start, group));
    }
    out
}

#[test]
fn rollups_equal_raw_aggregates_sealed_head_and_mixed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = open(dir.path());
    let k = key("m", &[]);
    // Day 0 hours 22 and 23, day 1 hours 0 and 1; integers keep sums exact.
    let mut points: Vec<DataPoint> = (0..4 * 60)
        .map(|i| int(T0 + 22 * HOUR + i * 60_000, (i * 37) % 101 - 50))
        .collect();
    w.append(&samples(&k, &points)).expect("appends");
    let id = id_of(&r, &k);
    // At 01:00 on day 1, day 0 seals; day 1 stays in the head.
    assert_eq!(w.seal_due(T0 + DAY + HOUR).expect("seals"), 2);
    // Late data into sealed hour 22 (mixed block + head), one rewrite.
    let late = [int(T0 + 22 * HOUR + 30, 1000), int(T0 + 22 * HOUR, -1000)];
    w.append(&samples(&k, &late)).expect("appends");
    points[0] = late[1];
    points.insert(1, late[0]);
    assert_eq!(all_points(&r, id), points);

    let check = |r: &StoreReader, what: &str| {
        let range = (T0, T0 + 2 * DAY);
        assert_eq!(
            rollups(r, id, RollupResolution::Hour, range.0, range.1),
            raw_rollups(&points, HOUR),
            "{what}: hours"
        );
        assert_eq!(
            rollups(r, id, RollupResolution::Day, range.0, range.1),
            raw_rollups(&points, DAY),
            "{what}: days"
        );
    };
    check(&r, "mixed");
    // Intervals are selected by their start.
    let hours = rollups(
        &r,
        id,
        RollupResolution::Hour,
        T0 + 22 * HOUR + 1,
        T0 + DAY + 1,
    );
    assert_eq!(
        hours.iter().map(|h| h.start_ms).collect::<Vec<_>>(),
        vec![T0 + 23 * HOUR, T0 + DAY]
    );
    assert_eq!(
        rollups(&r, id, RollupResolution::Day, T0 + 1, T0 + DAY).len(),
        0
    );
    w.seal_all(LATER).expect("seals");
    check(&r, "sealed");
    assert_eq!(r.stats().head_chunks, 0);
}

/// A new series puts only the names the store does not know yet, within
/// a commit and across commits; every name is still suggested, also after
/// a reopen.
#[test]
fn known_names_are_not_put_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let names_in_memtable = |r: &StoreReader| {
        let names = r.shared.cf(cf::NAMES).expect("names family");
        r.shared
            .db
            .property_int_value_cf(&names, "rocksdb.num-entries-active-mem-table")
            .expect("reads")
            .expect("known property")
    };
    let hosts = |range: std::ops::Range<i32>| -> Vec<Sample> {
        range
            .flat_map(|h| samples(&key("m", &[("host", &format!("h{h}"))]), &[int(T0, 1)]))
            .collect()
    };
    {
        let (mut w, r) = open(dir.path());
        // One commit of 50 new series, then 50 more one by one.
        w.append(&hosts(0..50)).expect("appends");
        for h in 50..100 {
            w.append(&hosts(h..h + 1)).expect("appends");
        }
        // The metric, the tag key and 100 values; it was 300 puts.
        assert_eq!(names_in_memtable(&r), 102);
        assert_eq!(
            r.suggest(NameKind::TagValue, "h", 1000)
                .expect("reads")
                .len(),
            100
        );
    }
    let (mut w, r) = open(dir.path());
    w.append(&hosts(100..101)).expect("appends");
    assert_eq!(names_in_memtable(&r), 1, "only the new value");
    assert_eq!(r.suggest(NameKind::Metric, "", 10).expect("reads"), ["m"]);
    assert_eq!(
        r.suggest(NameKind::TagKey, "", 10).expect("reads"),
        ["host"]
    );
    assert_eq!(
        r.suggest(NameKind::TagValue, "h", 1000)
            .expect("reads")
            .len(),
        101
    );
}

#[test]
fn suggest_lookup_and_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = open(dir.path());
    let series = [
        key("sys.cpu.user", &[("host", "web01"), ("dc", "lga")]),
        key("sys.cpu.sys", &[("host", "web02"), ("dc", "lga")]),
        key("sys.mem", &[("host", "web01")]),
        key("app.req", &[("path", "lga")]),
    ];
    for k in &series {
        w.append(&samples(k, &[int(T0, 1)])).expect("appends");
    }
    let s = |kind, prefix, max| r.suggest(kind, prefix, max).expect("reads");
    assert_eq!(
        s(NameKind::Metric, "sys.cpu", 25),
        ["sys.cpu.sys", "sys.cpu.user"]
    );
    assert_eq!(s(NameKind::Metric, "", 2), ["app.req", "sys.cpu.sys"]);
    assert_eq!(s(NameKind::TagKey, "", 25), ["dc", "host", "path"]);
    assert_eq!(s(NameKind::TagValue, "web", 25), ["web01", "web02"]);
    assert_eq!(s(NameKind::TagValue, "x", 25), Vec::<String>::new());
    assert!(r.name_exists(NameKind::Metric, "sys.mem").expect("reads"));
    assert!(!r.name_exists(NameKind::Metric, "sys").expect("reads"));
    assert!(r.name_exists(NameKind::TagValue, "lga").expect("reads"));
    assert!(!r.name_exists(NameKind::TagKey, "lga").expect("reads"));

    let found = |metric: Option<&str>, tags: &[(&str, &str)], limit| -> Vec<String> {
        let tags: Vec<(String, String)> = tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let hits = r.lookup(metric, &tags, limit);
        hits.iter().map(|m| m.key.to_string()).collect()
    };
    assert_eq!(found(Some("sys.mem"), &[], 25), ["sys.mem{host=web01}"]);
    assert_eq!(
        found(None, &[("host", "web01")], 25),
        ["sys.cpu.user{dc=lga,host=web01}", "sys.mem{host=web01}"]
    );
    assert_eq!(
        found(None, &[("host", "web01")], 1),
        ["sys.cpu.user{dc=lga,host=web01}"]
    );
    assert_eq!(
        found(None, &[("dc", "*"), ("host", "web02")], 25),
        ["sys.cpu.sys{dc=lga,host=web02}"]
    );
    assert_eq!(
        found(None, &[("*", "lga")], 25),
        [
            "sys.cpu.user{dc=lga,host=web01}",
            "sys.cpu.sys{dc=lga,host=web02}",
            "app.req{path=lga}"
        ]
    );
    assert_eq!(
        found(Some("sys.cpu.user"), &[("host", "web02")], 25),
        Vec::<String>::new()
    );
    assert_eq!(found(None, &[("nope", "*")], 25), Vec::<String>::new());
    assert_eq!(found(None, &[], 25).len(), 4);
}

#[test]
fn series_of_metric_lists_every_series_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = open(dir.path());
    let a = key("m", &[("host", "a")]);
    let b = key("m", &[("host", "b")]);
    let mut batch = samples(&a, &[int(T0, 1)]);
    batch.extend(samples(&b, &[int(T0, 1)]));
    batch.extend(samples(&a, &[int(T0 + 1, 1)]));
    batch.extend(samples(&key("m2", &[]), &[int(T0, 1)]));
    w.append(&batch).expect("appends");
    let found = r.series_of_metric("m").expect("reads").expect("exists");
    let keys: Vec<_> = found.iter().map(|m| (m.id, m.key.clone())).collect();
    assert_eq!(keys, vec![(1, a), (2, b)]);
    assert_eq!(r.series_of_metric("m3").expect("reads"), None);
}

#[test]
fn posting_lists_are_rebuilt_at_open_and_retired_families_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = |n: u32| key("m", &[("host", &format!("web{n:02}")), ("dc", "lga")]);
    {
        let (mut w, _) = open(dir.path());
        for n in [2, 1] {
            w.append(&samples(&web(n), &[int(T0, 1)])).expect("appends");
        }
        w.append(&samples(&key("m", &[("host", "db01")]), &[int(T0, 1)]))
            .expect("appends");
    }
    // Version 2 stores had these families on disk.
    {
        let names = families_on_disk(dir.path());
        let db = Db::open_cf(&rocksdb::Options::default(), dir.path(), &names).expect("opens");
        for name in cf::RETIRED {
            db.create_cf(name, &rocksdb::Options::default())
                .expect("creates");
        }
    }
    let (mut w, r) = open(dir.path());
    let on_disk = families_on_disk(dir.path());
    assert!(cf::RETIRED.iter().all(|n| !on_disk.iter().any(|d| d == n)));
    w.append(&samples(&web(3), &[int(T0, 1)])).expect("appends");

    let web_only = |v: &str| v.starts_with("web");
    let select = |exact, prefix| crate::query::source::TagSelect {
        key: "host",
        exact,
        prefix,
        matches: &web_only,
    };
    let keys = |found: Option<Vec<SeriesMeta>>| -> Vec<(u64, String)> {
        let found = found.expect("metric exists");
        found.iter().map(|m| (m.id, m.key.to_string())).collect()
    };
    let selected = r.series_selected("m", &select(None, "web")).expect("reads");
    assert_eq!(
        keys(selected),
        [
            (1, web(2).to_string()),
            (2, web(1).to_string()),
            (4, web(3).to_string())
        ]
    );
    let exact = ["web03".to_string(), "db01".to_string()];
    let selected = r
        .series_selected("m", &select(Some(&exact), ""))
        .expect("reads");
    assert_eq!(keys(selected), [(4, web(3).to_string())]);
    assert_eq!(
        r.series_of_metric("m").expect("reads").map(|s| s.len()),
        Some(4)
    );
    assert_eq!(r.series_by_ids(&[3, 9]).expect("reads").len(), 1);
    let hits = r.lookup(None, &[("host".into(), "db01".into())], 10);
    assert_eq!(hits.len(), 1);
}

#[test]
fn stale_series_from_the_head_and_from_blocks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = open(dir.path());
    let old = key("m", &[("host", "old")]);
    let live = key("m", &[("host", "live")]);
    w.append(&samples(&old, &[int(T0 - 2 * DAY, 1)]))
        .expect("appends");
    w.seal_all(LATER).expect("seals");
    w.append(&samples(&live, &[int(T0, 1), int(T0 + 10, 2)]))
        .expect("appends");
    let stale = |cutoff| -> Vec<(String, Option<i64>)> {
        let found = r.stale_series(Some("m"), cutoff).expect("reads");
        found
            .iter()
            .map(|s| (s.meta.key.to_string(), s.last_ms))
            .collect()
    };
    // The live series answers from its head window.
    assert_eq!(stale(T0 - HOUR), [(old.to_string(), Some(T0 - 2 * DAY))]);
    // Past its newest point it is stale too, oldest first.
    assert_eq!(
        stale(T0 + 11),
        [
            (old.to_string(), Some(T0 - 2 * DAY)),
            (live.to_string(), Some(T0 + 10))
        ]
    );
    assert_eq!(r.stale_series(Some("nope"), T0).expect("reads"), []);
}

#[test]
fn many_series_across_day_partitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let series: Vec<SeriesKey> = (0..200)
        .map(|i| key("load", &[("host", &format!("h{i:03}"))]))
        .collect();
    // Every 6 hours for 3 days, so each series has 12 windows over 3 days.
    let times: Vec<i64> = (0..12).map(|i| T0 + i * 6 * HOUR + 17).collect();
    {
        let (mut w, r) = open(dir.path());
        for &ts in &times {
            let batch: Vec<Sample> = series
                .iter()
                .enumerate()
                .flat_map(|(i, k)| samples(k, &[int(ts, i as i64 + ts % 1000)]))
                .collect();
            w.append(&batch).expect("appends");
        }
        assert_eq!(w.seal_all(LATER).expect("seals"), 200 * 12);
        let stats = r.stats();
        assert_eq!(
            (stats.partitions, stats.sealed_blocks, stats.log_records),
            (3, 2400, 0)
        );
        w.flush().expect("flushes");
        assert!(r.bytes_on_disk() > 0);
    }
    let (_w, r) = open(dir.path());
    assert_eq!(r.series_count(), 200);
    let names: Vec<String> = r
        .disk_usage()
        .column_families
        .into_iter()
        .map(|c| c.name)
        .collect();
    for day in ["blocks_20261123", "blocks_20261124", "blocks_20261125"] {
        assert!(names.iter().any(|n| n == day), "{day} in {names:?}");
    }
    for (i, k) in series.iter().enumerate() {
        let id = id_of(&r, k);
        let expected: Vec<DataPoint> = times
            .iter()
            .map(|&ts| int(ts, i as i64 + ts % 1000))
            .collect();
        assert_eq!(all_points(&r, id), expected);
        // A range crossing a day boundary.
        assert_eq!(
            r.points(id, T0 + 18 * HOUR, T0 + DAY + 6 * HOUR + 17)
                .expect("reads"),
            expected[3..6]
        );
        assert_eq!(r.last_point(id).expect("reads"), expected.last().copied());
    }
}

#[test]
fn memory_pressure_seals_the_oldest_windows_early() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions {
        head_memory_limit: 1,
        ..StoreOptions::default()
    };
    let (mut w, r) = Store::open(dir.path(), opts).expect("store opens");
    let k = key("m", &[]);
    w.append(&samples(&k, &[int(T0, 1), int(T0 + HOUR, 2)]))
        .expect("appends");
    // Nothing is due by time at T0, yet the head is over its limit.
    assert_eq!(w.seal_due(T0).expect("seals"), 2);
    assert_eq!(r.stats().head_bytes, 0);
    assert_eq!(
        all_points(&r, id_of(&r, &k)),
        vec![int(T0, 1), int(T0 + HOUR, 2)]
    );
}

#[test]
fn a_point_from_the_future_does_not_pin_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = open(dir.path());
    let k = key("m", &[]);
    w.append(&samples(&k, &[int(T0, 1), int(LATER, 2)]))
        .expect("appends");
    // At T0 the first hour is open and stays; the far-future one seals.
    assert_eq!(w.seal_due(T0).expect("seals"), 1);
    assert_eq!(r.stats().head_chunks, 1);
    w.append(&samples(&k, &[int(LATER + 1, 3)]))
        .expect("appends");
    assert_eq!(w.seal_due(T0).expect("seals"), 1);
    assert_eq!(
        all_points(&r, id_of(&r, &k)),
        vec![int(T0, 1), int(LATER, 2), int(LATER + 1, 3)]
    );
    assert_eq!(w.seal_due(LATER + DAY).expect("seals"), 1);
    assert_eq!(r.stats().log_records, 0);
}

#[test]
fn a_big_hour_seals_over_several_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = open(dir.path());
    let batch: Vec<Sample> = (0..=SEAL_WINDOWS_PER_CALL)
        .flat_map(|i| samples(&key("m", &[("i", &i.to_string())]), &[int(T0, i as i64)]))
        .collect();
    w.append(&batch).expect("appends");
    assert_eq!(w.seal_due(LATER).expect("seals"), SEAL_WINDOWS_PER_CALL);
    assert_eq!((r.stats().head_chunks, r.stats().log_records), (1, 1));
    assert_eq!(w.seal_due(LATER).expect("seals"), 1);
    assert_eq!((r.stats().head_chunks, r.stats().log_records), (0, 0));
    assert_eq!(w.seal_due(LATER).expect("seals"), 0);
    let last = key("m", &[("i", &SEAL_WINDOWS_PER_CALL.to_string())]);
    assert_eq!(
        all_points(&r, id_of(&r, &last)),
        vec![int(T0, SEAL_WINDOWS_PER_CALL as i64)]
    );
}

#[test]
fn last_point_prefers_the_newest_window_anywhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = open(dir.path());
    let k = key("m", &[]);
    w.append(&samples(
        &k,
        &[int(T0 + 2 * HOUR, 1), int(T0 + 2 * HOUR + 5, 2)],
    ))
    .expect("appends");
    let id = id_of(&r, &k);
    assert_eq!(
        r.last_point(id).expect("reads"),
        Some(int(T0 + 2 * HOUR + 5, 2)),
        "head only"
    );
    w.seal_all(LATER).expect("seals");
    assert_eq!(
        r.last_point(id).expect("reads"),
        Some(int(T0 + 2 * HOUR + 5, 2)),
        "block only"
    );
    // A late point in an older window must not hide the newer block.
    w.append(&samples(&k, &[int(T0, 3)])).expect("appends");
    assert_eq!(
        r.last_point(id).expect("reads"),
        Some(int(T0 + 2 * HOUR + 5, 2))
    );
    // Rewriting the newest point in the head wins over the block.
    w.append(&samples(&k, &[int(T0 + 2 * HOUR + 5, 4)]))
        .expect("appends");
    assert_eq!(
        r.last_point(id).expect("reads"),
        Some(int(T0 + 2 * HOUR + 5, 4))
    );
    assert_eq!(r.last_point(id + 1).expect("reads"), None);
}

#[test]
fn concurrent_reads_never_miss_points_being_sealed() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("tempdir");
    // A one-byte head limit makes every `seal_due` seal the whole head, so
    // windows move from head to blocks (and merge there) all the time.
    let opts = StoreOptions {
        head_memory_limit: 1,
        ..StoreOptions::default()
    };
    let (mut w, r) = Store::open(dir.path(), opts).expect("store opens");
    let k = key("m", &[]);
    let point = |i: i64| int(T0 + i * 10_000, i);
    w.append(&samples(&k, &[point(0)])).expect("appends");
    let id = id_of(&r, &k);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut seen = 0;
            loop {
                let last = done.load(Ordering::Acquire);
                let points = all_points(&r, id);
                // Points are written in order, so any read is a prefix.
                let expected: Vec<DataPoint> = (0..points.len() as i64).map(point).collect();
                assert_eq!(points, expected);
                assert!(
                    points.len() >= seen,
                    "went back from {seen} to {}",
                    points.len()
                );
                seen = points.len();
                if last {
                    return seen;
                }
            }
        })
    };
    for i in 1..2000 {
        w.append(&samples(&k, &[point(i)])).expect("appends");
        if i % 7 == 0 {
            w.seal_due(T0).expect("seals");
        }
    }
    done.store(true, Ordering::Release);
    assert_eq!(reader.join().expect("reader thread"), 2000);
}

#[test]
fn a_rejected_batch_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = open(dir.path());
    let fresh = key("fresh", &[]);
    let mut batch = samples(&fresh, &[int(T0, 1)]);
    batch.extend(samples(&key("m", &[]), &[int(-1, 1)]));
    let err = w.append(&batch).expect_err("negative timestamp");
    assert_eq!(
        err.to_string(),
        "timestamp -1 out of range 0..=9999999999999 ms"
    );
    assert_eq!(r.series_count(), 0);
    assert_eq!(r.stats().log_records, 0);
    // The id handed out to the rolled-back series is reused.
    w.append(&samples(&fresh, &[int(T0, 1)])).expect("appends");
    assert_eq!(id_of(&r, &fresh), 1);
}

fn set_format_version(dir: &Path, version: u32) {
    let (w, _r) = open(dir);
    let meta = w.shared.cf(cf::META).expect("meta family");
    w.shared
        .db
        .put_cf(&meta, keys::META_FORMAT_VERSION, version.to_be_bytes())
        .expect("writes");
}

#[test]
fn other_format_versions_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    set_format_version(dir.path(), 1);
    let err = Store::open(dir.path(), StoreOptions::default())
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        "store has format version 1, this build supports version 6"
    );
}

/// Version 5 kept points records in the `log` family. Replay takes them in
/// sequence order with the journal's, so the newest write of a timestamp
/// wins whichever holds it, and marks the store version 6.
#[test]
fn version_5_points_records_in_the_log_family_replay_in_order_with_the_journal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = key("m", &[]);
    let id = {
        let (mut w, r) = open(dir.path());
        // Record 0, in the journal.
        w.append(&samples(&k, &[int(T0, 1)])).expect("appends");
        let id = id_of(&r, &k);
        // Record 1, in the family, as version 5 wrote it.
        let mut record = log::RecordEncoder::default();
        record.start();
        record.push(id, int(T0, 2));
        let log_cf = r.shared.cf(cf::LOG).expect("log family");
        r.shared
            .db
            .put_cf(&log_cf, keys::u64_key(1), record.bytes())
            .expect("writes");
        id
    };
    set_format_version(dir.path(), 5);
    {
        let (mut w, r) = open(dir.path());
        let version = w.shared.meta(keys::META_FORMAT_VERSION).expect("reads");
        assert_eq!(version, Some(FORMAT_VERSION.to_be_bytes().to_vec()));
        assert_eq!(all_points(&r, id), vec![int(T0, 2)]);
        // Record 2, in the journal again.
        w.append(&samples(&k, &[int(T0, 3), int(T0 + 1000, 4)]))
            .expect("appends");
    }
    let (_w, r) = open(dir.path());
    assert_eq!(all_points(&r, id), vec![int(T0, 3), int(T0 + 1000, 4)]);
    assert_eq!(r.stats().log_records, 3);
}

/// Version 2 stored only day, month and year families, which version 3
/// names the same: such a store opens, with its data, and is marked 3 so
/// that version 2 builds, blind to year families of blocks, refuse it.
#[test]
fn version_2_stores_open_and_become_version_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = key("m", &[]);
    {
        let (mut w, _r) = open(dir.path());
        w.append(&samples(&k, &[int(T0, 1)])).expect("appends");
        w.seal_all(LATER).expect("seals");
        w.flush().expect("flushes");
    }
    set_format_version(dir.path(), 2);
    let (w, r) = open(dir.path());
    assert_eq!(all_points(&r, id_of(&r, &k)), vec![int(T0, 1)]);
    let version = w.shared.meta(keys::META_FORMAT_VERSION).expect("reads");
    assert_eq!(version, Some(FORMAT_VERSION.to_be_bytes().to_vec()));
}

/// Version 3 wrote 75-byte rollup records: such a store opens, answers
/// the same rollups and is marked 4, so that version 3 builds, which
/// cannot read the compact records written from then on, refuse it.
#[test]
fn version_3_stores_open_with_their_rollups_and_become_version_4() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = key("m", &[]);
    let points = [int(T0, 1), float(T0 + 10, -2.5), int(T0 + HOUR, 7)];
    let rewritten = {
        let (mut w, _r) = open(dir.path());
        w.append(&samples(&k, &points)).expect("appends");
        w.seal_all(LATER).expect("seals");
        let s = &*w.shared;
        let mut rewritten = 0;
        for name in s.family_names().iter().filter(|n| n.starts_with("rollup_")) {
            let family = s.cf(name).expect("family");
            for item in s.db.iterator_cf(&family, rocksdb::IteratorMode::Start) {
                let (k, v) = item.expect("reads");
                let (_, start) = keys::parse_series_time(&k).expect("rollup key");
                let agg = rollup::decode(start, &v).expect("decodes");
                s.db.put_cf(&family, &k, rollup::encode_v1(&agg))
                    .expect("writes");
                rewritten += 1;
            }
        }
        w.flush().expect("flushes");
        rewritten
    };
    // Two hours and their day.
    assert_eq!(rewritten, 3);
    set_format_version(dir.path(), 3);
    let (w, r) = open(dir.path());
    let version = w.shared.meta(keys::META_FORMAT_VERSION).expect("reads");
    assert_eq!(version, Some(FORMAT_VERSION.to_be_bytes().to_vec()));
    let id = id_of(&r, &k);
    let range = (T0, T0 + DAY);
    assert_eq!(
        rollups(&r, id, RollupResolution::Hour, range.0, range.1),
        raw_rollups(&points, HOUR)
    );
    assert_eq!(
        rollups(&r, id, RollupResolution::Day, range.0, range.1),
        raw_rollups(&points, DAY)
    );
}

/// Version 4 sealed every block as a version 1 chunk: such a store opens,
/// reads the same points, is marked 5 (so that version 4 builds, which
/// cannot read packed chunks, refuse it), and packs what it seals later.
#[test]
fn version_4_stores_open_with_their_chunks_and_become_version_5() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = key("m", &[]);
    let first: Vec<_> = (0..30)
        .map(|i| int(T0 + i * 10_000, 1000 + i * i))
        .collect();
    let later: Vec<_> = (0..30)
        .map(|i| float(T0 + HOUR + i * 10_000, (i * 37 % 101) as f64 / 4.0))
        .collect();
    let versions = |w: &StoreWriter| {
        let s = &*w.shared;
        let mut versions = Vec::new();
        for name in s.family_names().iter().filter(|n| n.starts_with("blocks_")) {
            let family = s.cf(name).expect("family");
            for item in s.db.iterator_cf(&family, rocksdb::IteratorMode::Start) {
                let (_, v) = item.expect("reads");
                versions.push(v[0]);
            }
        }
        versions
    };
    {
        let (mut w, _r) = open(dir.path());
        w.append(&samples(&k, &first)).expect("appends");
        w.seal_all(LATER).expect("seals");
        assert_eq!(versions(&w), [2]);
        // As version 4 wrote it: the head's bit-level chunk.
        let s = &*w.shared;
        for name in s.family_names().iter().filter(|n| n.starts_with("blocks_")) {
            let family = s.cf(name).expect("family");
            for item in s.db.iterator_cf(&family, rocksdb::IteratorMode::Start) {
                let (k, v) = item.expect("reads");
                let mut enc = chunk::ChunkEncoder::new();
                for p in chunk::decode(&v).expect("decodes") {
                    enc.push(p).expect("in order");
                }
                s.db.put_cf(&family, &k, enc.finish()).expect("writes");
            }
        }
        assert_eq!(versions(&w), [1]);
        w.flush().expect("flushes");
    }
    set_format_version(dir.path(), 4);
    let (mut w, r) = open(dir.path());
    let version = w.shared.meta(keys::META_FORMAT_VERSION).expect("reads");
    assert_eq!(version, Some(FORMAT_VERSION.to_be_bytes().to_vec()));
    let id = id_of(&r, &k);
    assert_eq!(all_points(&r, id), first);
    w.append(&samples(&k, &later)).expect("appends");
    w.seal_all(LATER).expect("seals");
    assert_eq!(versions(&w), [1, 2]);
    let all: Vec<_> = first.iter().chain(&later).copied().collect();
    assert_eq!(all_points(&r, id), all);
    assert_eq!(
        rollups(&r, id, RollupResolution::Hour, T0, T0 + DAY),
        raw_rollups(&all, HOUR)
    );
}

/// `cf::tune_open` reaches RocksDB: the options file it rewrites shows
/// the lower compression threshold on the families written.
#[test]
fn written_families_keep_blocks_compressed_at_small_savings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, _r) = open(dir.path());
    w.append(&samples(&key("m", &[]), &[int(T0, 1)]))
        .expect("appends");
    w.seal_all(LATER).expect("seals");
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .expect("lists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("OPTIONS-"))
        .collect();
    files.sort_by_key(|n| n["OPTIONS-".len()..].parse::<u64>().expect("number"));
    let latest = files.last().expect("an options file");
    let text = std::fs::read_to_string(dir.path().join(latest)).expect("reads");
    let tuned = text
        .split("[CFOptions ")
        .filter(|section| section.contains("max_compressed_bytes_per_kb=1000;"))
        .filter_map(|section| section.split('"').nth(1))
        .collect::<Vec<_>>();
    assert_eq!(
        tuned,
        ["blocks_20261123", "rollup_1h_202611", "rollup_1d_2026"]
    );
}

#[test]
fn drop_caches_keeps_data_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = open(dir.path());
    let k = key("m", &[]);
    w.append(&samples(&k, &[int(T0, 1)])).expect("appends");
    w.seal_all(LATER).expect("seals");
    w.flush().expect("flushes");
    r.drop_caches();
    assert_eq!(all_points(&r, id_of(&r, &k)), vec![int(T0, 1)]);
}

/// Names of the store's families on disk, as RocksDB lists them.
pub(super) fn families_on_disk(dir: &Path) -> Vec<String> {
    Db::list_cf(&rocksdb::Options::default(), dir).expect("lists families")
}

/// A year of raw data, a month of hour rollups, day rollups for ever.
fn retention() -> Retention {
    Retention {
        raw_ms: Some(365 * DAY),
        rollup_1h_ms: Some(30 * DAY),
        rollup_1d_ms: None,
    }
}

#[test]
fn expired_partitions_are_hidden_then_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions {
        retention: retention(),
        ..StoreOptions::default()
    };
    let (mut w, r) = Store::open(dir.path(), opts).expect("store opens");
    let now = crate::model::now_ms();
    // Whole hours, far enough apart that no family holds both.
    let old = cf::day_start(now - 800 * DAY);
    let recent = cf::day_start(now - 100 * DAY);
    let new = cf::day_start(now - DAY);
    let k = key("m", &[]);
    let points = [int(old, 1), int(recent, 2), int(new, 3)];
    w.append(&samples(&k, &points)).expect("appends");
    // Sealed as if long ago, when none of it was expired (nor old enough
    // for a year's family).
    w.seal_all(now - 1000 * DAY).expect("seals");
    w.flush().expect("flushes");
    let id = id_of(&r, &k);
    let blocks = |ts| Partitioned::Blocks.name(cf::Period::of(cf::Span::Day, ts));
    let hours = |ts| Partitioned::Hours.name(cf::Period::of(cf::Span::Month, ts));
    let days = |ts| Partitioned::Days.name(cf::Period::of(cf::Span::Year, ts));
    assert!(families_on_disk(dir.path()).contains(&blocks(old)));

    // Before expiry runs, reads already stop at each kind's cutoff.
    assert_eq!(all_points(&r, id), points[1..].to_vec());
    let hour_starts = |r: &StoreReader| -> Vec<i64> {
        rollups(r, id, RollupResolution::Hour, 0, now)
            .iter()
            .map(|a| a.start_ms)
            .collect()
    };
    assert_eq!(hour_starts(&r), vec![new]);
    assert_eq!(rollups(&r, id, RollupResolution::Day, 0, now).len(), 3);

    let before = r.bytes_on_disk();
    let mut dropped = w.expire(now).expect("expires");
    dropped.sort();
    let mut expected = vec![blocks(old), hours(old), hours(recent)];
    expected.sort();
    assert_eq!(dropped, expected);
    let on_disk = families_on_disk(dir.path());
    for gone in &expected {
        assert!(!on_disk.contains(gone), "{gone} still listed: {on_disk:?}");
    }
    for kept in [
        blocks(recent),
        blocks(new),
        hours(new),
        days(old),
        days(new),
    ] {
        assert!(on_disk.contains(&kept), "{kept} missing: {on_disk:?}");
    }
    assert!(r.bytes_on_disk() < before);
    assert_eq!(all_points(&r, id), points[1..].to_vec());
    assert_eq!(hour_starts(&r), vec![new]);
    assert_eq!(rollups(&r, id, RollupResolution::Day, 0, now).len(), 3);
    assert_eq!(w.expire(now).expect("expires"), Vec::<String>::new());
}

#[test]
fn expiry_runs_when_the_store_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = crate::model::now_ms();
    let old = cf::day_start(now - 800 * DAY);
    let k = key("m", &[]);
    {
        let (mut w, _r) = open(dir.path());
        w.append(&samples(&k, &[int(old, 1), int(now, 2)]))
            .expect("appends");
        w.seal_all(now).expect("seals");
        w.flush().expect("flushes");
    }
    let old_blocks = Partitioned::Blocks.name(cf::Period::of(cf::Span::Year, old));
    assert!(families_on_disk(dir.path()).contains(&old_blocks));
    let opts = StoreOptions {
        retention: retention(),
        ..StoreOptions::default()
    };
    let (_w, r) = Store::open(dir.path(), opts).expect("store opens");
    assert!(!families_on_disk(dir.path()).contains(&old_blocks));
    assert_eq!(all_points(&r, id_of(&r, &k)), vec![int(now, 2)]);
}

const MIN: i64 = 60_000;

/// A series `host=a` to delete from and an identical `host=b` to leave
/// alone: a point every 10 minutes from 22:00 on day 0 to 02:50 on day 1.
fn two_series(w: &mut StoreWriter, r: &StoreReader) -> (u64, u64, Vec<DataPoint>) {
    let points: Vec<DataPoint> = (0..30)
        .map(|i| int(T0 + 22 * HOUR + i * 10 * MIN, (i * 7) % 13 - 6))
        .collect();
    let (a, b) = (key("m", &[("host", "a")]), key("m", &[("host", "b")]));
    let mut batch = samples(&a, &points);
    batch.extend(samples(&b, &points));
    w.append(&batch).expect("appends");
    (id_of(r, &a), id_of(r, &b), points)
}

fn without(points: &[DataPoint], from: i64, to: i64) -> Vec<DataPoint> {
    let gone = |p: &&DataPoint| (from..=to).contains(&p.timestamp_ms);
    points.iter().filter(|p| !gone(p)).copied().collect()
}

/// Points, hour and day rollups of `id` are exactly those of `expected`.
fn assert_reads(r: &StoreReader, id: u64, expected: &[DataPoint], what: &str) {
    assert_eq!(all_points(r, id), expected, "{what}: points");
    let (from, to) = (T0 - DAY, LATER);
    assert_eq!(
        rollups(r, id, RollupResolution::Hour, from, to),
        raw_rollups(expected, HOUR),
        "{what}: hours"
    );
    assert_eq!(
        rollups(r, id, RollupResolution::Day, from, to),
        raw_rollups(expected, DAY),
        "{what}: days"
    );
}

#[test]
fn delete_in_the_head_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = open(dir.path());
    let (a, b, points) = two_series(&mut w, &r);
    // 22:20 to 23:00 inclusive: a partial hour and the first point of the next.
    let (from, to) = (T0 + 22 * HOUR + 15 * MIN, T0 + 23 * HOUR);
    assert_eq!(w.delete(&[a], from, to).expect("deletes"), 5);
    let kept = without(&points, from, to);
    assert_reads(&r, a, &kept, "head");
    assert_reads(&r, b, &points, "other series");
    assert_eq!(r.stats().head_points, kept.len() + points.len());
    w.seal_all(LATER).expect("seals");
    assert_reads(&r, a, &kept, "sealed afterwards");
    assert_reads(&r, b, &points, "other series sealed");
}

#[test]
fn delete_in_sealed_blocks_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (from, to) = (T0 + 23 * HOUR + 25 * MIN, T0 + DAY + HOUR + 10 * MIN);
    let points = {
        let (mut w, r) = open(dir.path());
        let (a, b, points) = two_series(&mut w, &r);
        w.seal_all(LATER).expect("seals");
        // 23:30 to 01:10: three hours, two of them partial, across days.
        assert_eq!(w.delete(&[a], from, to).expect("deletes"), 3 + 6 + 2);
        assert_eq!(r.stats().head_points, 0);
        assert_reads(&r, a, &without(&points, from, to), "sealed");
        assert_reads(&r, b, &points, "other series");
        points
    };
    let (_w, r) = open(dir.path());
    let id = id_of(&r, &key("m", &[("host", "a")]));
    assert_reads(&r, id, &without(&points, from, to), "reopened");
}

#[test]
fn delete_spanning_blocks_and_head_replays_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (from, to) = (T0 + 23 * HOUR + 5 * MIN, T0 + DAY + HOUR + 30 * MIN);
    let expected = {
        let (mut w, r) = open(dir.path());
        let (a, b, original) = two_series(&mut w, &r);
        let mut points = original.clone();
        // At 02:00 on day 1, hours up to 00:00 seal; 01:00 and 02:00 stay
        // in the head.
        assert_eq!(w.seal_due(T0 + DAY + 2 * HOUR).expect("seals"), 6);
        // Late data into sealed 23:00: a new point and a rewrite.
        let late = [
            int(T0 + 23 * HOUR + 5 * MIN, 100),
            int(T0 + 23 * HOUR + 10 * MIN, 200),
        ];
        w.append(&samples(&key("m", &[("host", "a")]), &late))
            .expect("appends");
        points.insert(7, late[0]);
        points[8] = late[1];
        assert_eq!(all_points(&r, a), points);
        // 23:05 (head), 23:10 (block and head, once), 23:20-23:50,
        // 00:00-00:50, 01:00-01:30.
        assert_eq!(
            w.delete(&[a], from, to).expect("deletes"),
            1 + 1 + 4 + 6 + 4
        );
        let expected = without(&points, from, to);
        assert_reads(&r, a, &expected, "mixed");
        assert_eq!(r.stats().log_records, 3, "two batches and the delete");
        assert_reads(&r, b, &original, "other series");
        expected
        // Dropped without seal_all or flush: the kill -9 case.
    };
    let (mut w, r) = open(dir.path());
    let id = id_of(&r, &key("m", &[("host", "a")]));
    assert_reads(&r, id, &expected, "replayed");
    w.seal_all(LATER).expect("seals");
    assert_reads(&r, id, &expected, "replayed and sealed");
}

#[test]
fn deleting_a_whole_day_drops_its_rollups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = open(dir.path());
    let (a, b, points) = two_series(&mut w, &r);
    w.seal_all(LATER).expect("seals");
    let (from, to) = (T0 + DAY, T0 + 2 * DAY - 1);
    assert_eq!(w.delete(&[a, b], from, to).expect("deletes"), 2 * 18);
    let kept = without(&points, from, to);
    for id in [a, b] {
        assert_reads(&r, id, &kept, "whole day");
    }
    assert_eq!(
        rollups(&r, a, RollupResolution::Day, T0, T0 + 2 * DAY).len(),
        1
    );
}

#[test]
fn a_delete_orders_with_writes_across_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = key("m", &[]);
    let (x, y) = (T0 + 10 * MIN, T0 + 20 * MIN);
    {
        let (mut w, r) = open(dir.path());
        // `y` is sealed, rewritten in the head, deleted, then written anew.
        w.append(&samples(&k, &[int(x, 1), int(y, 1)]))
            .expect("appends");
        w.seal_all(LATER).expect("seals");
        w.append(&samples(&k, &[int(x, 2), int(y, 2)]))
            .expect("appends");
        let id = id_of(&r, &k);
        assert_eq!(w.delete(&[id], x, y).expect("deletes"), 2);
        assert_eq!(all_points(&r, id), vec![]);
        w.append(&samples(&k, &[int(y, 3)])).expect("appends");
        assert_eq!(all_points(&r, id), vec![int(y, 3)]);
    }
    let (mut w, r) = open(dir.path());
    let id = id_of(&r, &k);
    assert_reads(&r, id, &[int(y, 3)], "reopened");
    w.seal_all(LATER).expect("seals");
    assert_reads(&r, id, &[int(y, 3)], "sealed");
    assert_eq!(
        live_log_records(&r),
        0,
        "a delete record does not pin the log"
    );
    // Nothing to do: no such series, or an empty range.
    let records = r.stats().log_records;
    assert_eq!(w.delete(&[id + 1], 0, LATER).expect("deletes"), 0);
    assert_eq!(w.delete(&[id], LATER, 0).expect("deletes"), 0);
    assert_eq!(r.stats().log_records, records);
}

#[test]
fn deleting_where_raw_data_expired_still_clears_whole_rollups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions {
        retention: Retention {
            raw_ms: Some(30 * DAY),
            ..Retention::default()
        },
        ..StoreOptions::default()
    };
    let (mut w, r) = Store::open(dir.path(), opts).expect("store opens");
    let now = crate::model::now_ms();
    let old = cf::day_start(now - 100 * DAY);
    let k = key("m", &[]);
    // Hours 0, 1 and 2 of an old day, two points each.
    let points: Vec<DataPoint> = (0..6).map(|i| int(old + i * 30 * MIN, i)).collect();
    w.append(&samples(&k, &points)).expect("appends");
    w.seal_all(LATER).expect("seals");
    w.expire(now).expect("expires");
    let id = id_of(&r, &k);
    assert_eq!(all_points(&r, id), vec![], "raw data expired");
    let starts = |res| -> Vec<i64> {
        let all = rollups(&r, id, res, old, old + DAY);
        all.iter().map(|a| a.start_ms).collect()
    };
    assert_eq!(
        starts(RollupResolution::Hour),
        vec![old, old + HOUR, old + 2 * HOUR]
    );
    // Hour 1 whole and the start of hour 2: only the whole hour can go.
    assert_eq!(
        w.delete(&[id], old + HOUR, old + 2 * HOUR + 1)
            .expect("deletes"),
        0
    );
    assert_eq!(starts(RollupResolution::Hour), vec![old, old + 2 * HOUR]);
    let day = rollups(&r, id, RollupResolution::Day, old, old + DAY);
    assert_eq!(day.iter().map(|d| d.count).collect::<Vec<_>>(), vec![4]);
    w.delete(&[id], old, old + DAY - 1).expect("deletes");
    assert!(starts(RollupResolution::Hour).is_empty());
    assert!(starts(RollupResolution::Day).is_empty());
}

/// A key shared by several points of one failed commit (as a connection's
/// series cache shares it) must not keep the id that commit gave it: the
/// id goes to the next new series, and the key's later points would land
/// in that series.
#[test]
fn a_failed_commit_leaves_no_id_cached_in_its_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, r) = open(dir.path());
    let first = key("m", &[("host", "first")]);
    let mut batch = samples(&first, &[int(T0, 1), int(T0 + 1000, 2)]);
    batch.push(Sample {
        series: first.clone(),
        point: int(-1, 3),
    });
    assert!(
        w.append(&batch).is_err(),
        "a timestamp before 1970 fails the commit"
    );

    let second = key("m", &[("host", "second")]);
    w.append(&samples(&second, &[int(T0, 10)])).unwrap();
    w.append(&samples(&first, &[int(T0, 20)])).unwrap();

    let (first_id, second_id) = (id_of(&r, &first), id_of(&r, &second));
    assert_ne!(first_id, second_id);
    assert_eq!(all_points(&r, second_id), vec![int(T0, 10)]);
    assert_eq!(all_points(&r, first_id), vec![int(T0, 20)]);
}
