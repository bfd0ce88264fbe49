//! Years of history in a real store: the two period lengths of the
//! time-partitioned families (see `blocks`) keep their number bounded
//! while every read, rollup, delete and retention works across both.

use std::path::Path;
use std::time::Instant;

use crate::model::{DataPoint, RollupResolution, SeriesKey};
use crate::query::source::Source;

use super::cf::{Period, Span};
use super::tests::samples;
use super::tests::{all_points, families_on_disk, id_of, int, key, open, raw_rollups, rollups};
use super::*;

const HOUR: i64 = crate::model::HOUR_MS;
const DAY: i64 = crate::model::DAY_MS;
const YEARS: i64 = 10;

/// Partitioned families on disk.
fn partitioned(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = families_on_disk(dir)
        .into_iter()
        .filter(|n| Partitioned::parse(n).is_some())
        .collect();
    names.sort();
    names
}

/// The families a store holding data from `first` to `now` may have: per
/// kind a year's for every year, plus day (blocks) and month (hour
/// rollups) families within the horizon and the day of `max-future`.
fn bound(first: i64, now: i64) -> usize {
    let years = (date_year(now) - date_year(first) + 1) as usize;
    let horizon_days = (blocks::MIN_HORIZON_MS / DAY) as usize + 2;
    3 * years + horizon_days + 3
}

fn date_year(ts: i64) -> i32 {
    use chrono::Datelike;
    chrono::DateTime::from_timestamp_millis(ts)
        .expect("in range")
        .year()
}

/// One point a day at 07:30 for ten years, for three series, written as
/// an import of history writes them (appends in batches, sealing what is
/// due after each).
fn import(w: &mut StoreWriter, series: &[SeriesKey], first: i64, now: i64) -> Vec<DataPoint> {
    let points: Vec<DataPoint> = (0..)
        .map(|d| first + d * DAY + 7 * HOUR + 30 * 60_000)
        .take_while(|&ts| ts < now)
        .enumerate()
        .map(|(i, ts)| int(ts, (i as i64 * 37) % 101 - 50))
        .collect();
    for chunk in points.chunks(500) {
        let batch: Vec<_> = series.iter().flat_map(|k| samples(k, chunk)).collect();
        w.append(&batch).expect("appends");
        w.seal_due(now).expect("seals");
    }
    w.seal_all(now).expect("seals");
    w.flush().expect("flushes");
    points
}

fn check_reads(r: &StoreReader, series: &[SeriesKey], points: &[DataPoint]) {
    for k in series {
        let id = id_of(r, k);
        assert_eq!(all_points(r, id), points, "{k:?}");
        assert_eq!(
            rollups(r, id, RollupResolution::Hour, 0, i64::MAX),
            raw_rollups(points, HOUR)
        );
        assert_eq!(
            rollups(r, id, RollupResolution::Day, 0, i64::MAX),
            raw_rollups(points, DAY)
        );
        assert_eq!(r.last_point(id).expect("reads"), points.last().copied());
    }
}

#[test]
fn ten_years_of_daily_points_keep_the_families_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = crate::model::now_ms();
    let first = cf::day_start(now - YEARS * 365 * DAY);
    let series: Vec<SeriesKey> = ["a", "b", "c"]
        .iter()
        .map(|h| key("history", &[("host", h)]))
        .collect();
    let (mut w, r) = open(dir.path());
    let points = import(&mut w, &series, first, now);
    let families = partitioned(dir.path());
    let fine = families
        .iter()
        .filter(|n| Partitioned::parse(n).is_some_and(|(_, p)| p.span != Span::Year))
        .count();
    eprintln!(
        "{} points a series in {} partitioned families ({fine} day or month ones)",
        points.len(),
        families.len()
    );
    assert!(families.len() <= bound(first, now), "{families:?}");
    // Ten years of days went to the years, only the horizon's to days.
    let horizon_days = (blocks::MIN_HORIZON_MS / DAY) as usize;
    assert!(fine <= horizon_days + 4, "{families:?}");
    check_reads(&r, &series, &points);

    // Reopening lists every family again.
    drop((w, r));
    let started = Instant::now();
    let (mut w, r) = open(dir.path());
    eprintln!("reopened in {:?}", started.elapsed());
    assert_eq!(partitioned(dir.path()), families);
    check_reads(&r, &series, &points);

    // A delete spanning year and day families, and its rollups.
    let (from, to) = (now - 60 * DAY, now - 10 * DAY);
    let id = id_of(&r, &series[0]);
    let doomed = points
        .iter()
        .filter(|p| (from..=to).contains(&p.timestamp_ms))
        .count();
    assert_eq!(w.delete(&[id], from, to).expect("deletes"), doomed as u64);
    let kept: Vec<DataPoint> = points
        .iter()
        .copied()
        .filter(|p| !(from..=to).contains(&p.timestamp_ms))
        .collect();
    check_reads(&r, &series[..1], &kept);
    check_reads(&r, &series[1..], &points);

    // A year later the days have aged: they move into their years, and
    // every point is still there.
    let later = now + 365 * DAY;
    let mut moves = 0;
    while w.migrate(later).expect("migrates") > 0 {
        moves += 1;
    }
    assert!(moves > 0);
    let after = partitioned(dir.path());
    assert!(
        after.iter().all(|n| {
            Partitioned::parse(n).is_some_and(|(_, p)| {
                p.span == Span::Year || p.end() > later - blocks::MIN_HORIZON_MS
            })
        }),
        "{after:?}"
    );
    assert!(after.len() < families.len(), "{after:?}");
    check_reads(&r, &series[..1], &kept);
    check_reads(&r, &series[1..], &points);

    // Retention of five years drops the years wholly older, and hides the
    // rest of what is older.
    drop((w, r));
    let opts = StoreOptions {
        retention: Retention {
            raw_ms: Some(5 * 365 * DAY),
            ..Retention::default()
        },
        ..StoreOptions::default()
    };
    let (_w, r) = Store::open(dir.path(), opts).expect("store opens");
    let cutoff = now - 5 * 365 * DAY;
    let blocks_left: Vec<Period> = partitioned(dir.path())
        .iter()
        .filter_map(|n| Partitioned::parse(n))
        .filter(|&(kind, _)| kind == Partitioned::Blocks)
        .map(|(_, p)| p)
        .collect();
    assert!(
        blocks_left.iter().all(|p| p.end() > cutoff),
        "{blocks_left:?}"
    );
    assert!(
        blocks_left.iter().any(|p| p.start < cutoff),
        "{blocks_left:?}"
    );
    let id = id_of(&r, &series[1]);
    let recent: Vec<DataPoint> = points
        .iter()
        .copied()
        .filter(|p| p.timestamp_ms >= cutoff)
        .collect();
    assert_eq!(all_points(&r, id), recent);
    assert_eq!(
        r.rollups(id, RollupResolution::Day, 0, i64::MAX)
            .expect("reads")
            .expect("rollups")
            .len(),
        points.len()
    );
}

/// A family moved a few keys at a time: after every step, and for a scan
/// opened before it, each block is read exactly once.
#[test]
fn a_move_over_several_calls_shows_every_block_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = crate::model::now_ms();
    let day = cf::day_start(now - 5 * DAY);
    let series: Vec<SeriesKey> = (0..5)
        .map(|i| key("moving", &[("host", &format!("h{i}"))]))
        .collect();
    let (mut w, r) = open(dir.path());
    let points: Vec<DataPoint> = (0..3).map(|h| int(day + h * HOUR + 5, h)).collect();
    let batch: Vec<_> = series.iter().flat_map(|k| samples(k, &points)).collect();
    w.append(&batch).expect("appends");
    w.seal_all(now).expect("seals");
    let day_family = Partitioned::Blocks.name(Period::of(Span::Day, day));
    assert!(families_on_disk(dir.path()).contains(&day_family));
    let ids: Vec<u64> = series.iter().map(|k| id_of(&r, k)).collect();
    let later = now + 365 * DAY;
    let shared = &w.shared;
    let mut steps = 0;
    loop {
        // Opened by its first series, before the step.
        let mut scan = r.scan_points(&ids, 0, i64::MAX);
        let mut got = Vec::new();
        scan.scan(ids[0], &mut |p| {
            got.extend_from_slice(p);
            std::ops::ControlFlow::Continue(())
        })
        .expect("scans");
        assert_eq!(got, points);
        let (moved, dropped) = shared
            .blocks
            .migrate(
                &shared.db,
                later,
                i64::MIN,
                4,
                &rocksdb::WriteOptions::default(),
            )
            .expect("moves");
        steps += 1;
        for &id in &ids[1..] {
            let mut got = Vec::new();
            scan.scan(id, &mut |p| {
                got.extend_from_slice(p);
                std::ops::ControlFlow::Continue(())
            })
            .expect("scans");
            assert_eq!(got, points, "step {steps}, scan opened before");
            assert_eq!(all_points(&r, id), points, "step {steps}");
        }
        if dropped.is_some() {
            assert!(moved <= 4);
            break;
        }
        assert_eq!(moved, 4);
    }
    assert_eq!(steps, 4);
    assert!(!families_on_disk(dir.path()).contains(&day_family));
    let year_family = Partitioned::Blocks.name(Period::of(Span::Year, day));
    assert!(families_on_disk(dir.path()).contains(&year_family));
}
