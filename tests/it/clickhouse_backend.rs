//! `ClickHouseBackend` against a real `clickhouse-server` (18.16.1): the
//! same series and points loaded into it and into the embedded store, and
//! every `Backend` method asked the same on both: suggest, lookup, last
//! points, stale series, annotations, figures. Ids differ between the
//! stores (a counter there, a hash here), so answers are compared by
//! series key.
//!
//! Plain `#[test]`s, as in `clickhouse_source.rs`: the backend is called
//! from threads outside any runtime.

use std::collections::BTreeMap;
use std::path::Path;

use rtsd::backend::{Backend, Notes};
use rtsd::clickhouse::schema::{self, Identifier, Layout};
use rtsd::clickhouse::spool::{Spool, SpoolOptions, Target};
use rtsd::clickhouse::{series_id, writer, ClickHouseBackend, Client, Compression};
use rtsd::ingest::Sink;
use rtsd::model::{DataPoint, NameKind, Sample, SeriesKey, SeriesMeta, Value};
use rtsd::storage::{Annotation, StaleSeries};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::clickhouse_support::{self, embedded, load, name, poll_until, source, start};
use crate::clickhouse_support::{Embedded, CLUSTER};
use crate::support::free_port;

/// The newest point of the data; "now" for sealing.
const T0: i64 = 1_700_000_000_000;
const NOW_MS: i64 = T0 + 30 * 86_400_000;

/// Series of several metrics, tag keys and values sharing prefixes, one
/// name needing quoting; each with a distinct newest timestamp.
fn keys() -> Vec<SeriesKey> {
    let k = |metric: &str, tags: &[(&str, &str)]| SeriesKey::new(metric, tags.iter().copied());
    vec![
        k("sys.cpu.user", &[("host", "web01"), ("dc", "lga")]),
        k("sys.cpu.user", &[("host", "web02"), ("dc", "lga")]),
        k("sys.cpu.user", &[("host", "db01"), ("dc", "sjc")]),
        k("sys.cpu.nice", &[("host", "web01"), ("dc", "lga")]),
        k("sys.mem", &[("host", "web01")]),
        k("sys.mem", &[("hostgroup", "web")]),
        k("net.bytes", &[("iface", "eth0"), ("host", "db01")]),
        k("app.o'brien", &[("env", "prod's"), ("dc", "sjc")]),
    ]
}

/// Series `i`'s points: a few, ints and floats, the newest at
/// `T0 - i` hours.
fn samples(keys: &[SeriesKey]) -> Vec<Sample> {
    let mut out = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let newest = T0 - i as i64 * 3_600_000;
        for j in 0..4i64 {
            let value = if (i as i64 + j) % 2 == 0 {
                Value::Int(i as i64 * 100 + j)
            } else {
                Value::Float(j as f64 + 0.25)
            };
            out.push(Sample {
                series: key.clone(),
                point: DataPoint {
                    timestamp_ms: newest - (3 - j) * 60_000,
                    value,
                },
            });
        }
    }
    out
}

/// A spool in `dir` shipping to `db` through `client`, for its monitor.
fn spool(dir: &Path, client: Client, db: &Identifier) -> Spool {
    let target = Target {
        client,
        database: db.clone(),
        compression: Compression::None,
        // Only its monitor is read: it neither expires nor deletes here.
        layout: Layout::Single,
        shards: Vec::new(),
    };
    Spool::open(
        dir,
        target,
        SpoolOptions::default(),
        CancellationToken::new(),
    )
    .expect("spool opens")
}

fn keys_of(series: &[SeriesMeta]) -> Vec<String> {
    series.iter().map(|s| s.key.to_string()).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn stale(found: Vec<StaleSeries>) -> Vec<(String, Option<i64>)> {
    found
        .into_iter()
        .map(|s| (s.meta.key.to_string(), s.last_ms))
        .collect()
}

/// The two backends, with each store's id of every key.
struct Both<'a> {
    embedded: &'a dyn Backend,
    clickhouse: &'a dyn Backend,
    ids: Vec<(SeriesKey, u64, u64)>,
}

impl Both<'_> {
    fn id(&self, on_clickhouse: bool, i: usize) -> u64 {
        let (_, e, c) = &self.ids[i];
        if on_clickhouse {
            *c
        } else {
            *e
        }
    }

    /// `note`'s series as a key, so notes of both stores compare.
    fn key_of(&self, on_clickhouse: bool, note: &Annotation) -> (Option<String>, Annotation) {
        let key = note.series.map(|id| {
            let (key, ..) = self
                .ids
                .iter()
                .find(|(_, e, c)| id == if on_clickhouse { *c } else { *e })
                .unwrap_or_else(|| panic!("a note of unknown series {id}"));
            key.to_string()
        });
        let mut note = note.clone();
        note.series = None;
        (key, note)
    }

    fn keyed(
        &self,
        on_clickhouse: bool,
        notes: &[Annotation],
    ) -> Vec<(Option<String>, Annotation)> {
        notes
            .iter()
            .map(|n| self.key_of(on_clickhouse, n))
            .collect()
    }

    /// Runs `op` on both stores' notes (`true` for ClickHouse) and requires
    /// the same notes back; returns them.
    fn notes_agree(
        &self,
        what: &str,
        op: impl Fn(&dyn Notes, bool) -> Vec<Annotation>,
    ) -> Vec<(Option<String>, Annotation)> {
        let e = op(&*self.embedded.notes(), false);
        let c = op(&*self.clickhouse.notes(), true);
        let (e, c) = (self.keyed(false, &e), self.keyed(true, &c));
        assert_eq!(c, e, "{what}");
        c
    }
}

fn note(series: Option<u64>, start_time: i64, description: &str, notes: &str) -> Annotation {
    Annotation {
        series,
        start_time,
        description: description.into(),
        notes: notes.into(),
        ..Annotation::default()
    }
}

/// Keeps the stored description, joins the notes, takes the given rest.
fn combine(stored: Annotation, given: Annotation) -> Annotation {
    Annotation {
        description: stored.description,
        notes: format!("{}+{}", stored.notes, given.notes),
        ..given
    }
}

/// Newer writes of two newest points: the newest write of a timestamp is
/// what both stores read.
fn rewrites(keys: &[SeriesKey]) -> Vec<Sample> {
    vec![
        Sample {
            series: keys[0].clone(),
            point: DataPoint {
                timestamp_ms: T0,
                value: Value::Float(-0.5),
            },
        },
        Sample {
            series: keys[1].clone(),
            point: DataPoint {
                timestamp_ms: T0 - 3_600_000,
                value: Value::Int(i64::MIN),
            },
        },
    ]
}

/// The embedded store holding [`samples`] then [`rewrites`].
fn local_store() -> Embedded {
    let keys = keys();
    let mut local = embedded(&samples(&keys), NOW_MS);
    local.writer.append(&rewrites(&keys)).expect("rewritten");
    local
}

/// Writes [`samples`], [`rewrites`] (versions from 2^40) and a write of a
/// point older by version than the one stored (which must lose) into `db`.
fn write_clickhouse(setup: &Runtime, client: &Client, db: &Identifier) {
    let keys = keys();
    let (samples, rewrites) = (samples(&keys), rewrites(&keys));
    setup.block_on(async {
        writer::write(client, db, &samples, 1, Compression::Gzip)
            .await
            .expect("written");
        writer::write(client, db, &rewrites, 1 << 40, Compression::None)
            .await
            .expect("rewritten");
        writer::write(client, db, &samples[..1], 0, Compression::None)
            .await
            .expect("stale write");
    });
}

/// Each key with its embedded id and its ClickHouse id.
fn both<'a>(local: &'a Embedded, clickhouse: &'a ClickHouseBackend) -> Both<'a> {
    let embedded_series = local.reader.lookup(None, &[], usize::MAX);
    let ids = keys()
        .into_iter()
        .map(|k| {
            let e = embedded_series
                .iter()
                .find(|s| s.key == k)
                .expect("in the embedded store")
                .id;
            let c = series_id(&k);
            (k, e, c)
        })
        .collect();
    Both {
        embedded: &local.reader,
        clickhouse,
        ids,
    }
}

/// Every comparison of the two stores.
fn all_agree(both: &Both<'_>) {
    suggest_agrees(both);
    lookup_agrees(both);
    last_points_agree(both);
    stale_series_agree(both);
    annotations_agree(both);
}

#[test]
fn every_backend_method_answers_as_the_embedded_store_does() {
    let (setup, server, client) = start();
    let db = name("backend");
    setup
        .block_on(schema::ensure(&client, &db))
        .expect("schema");
    write_clickhouse(&setup, &client, &db);
    let local = local_store();
    let keys = keys();
    let samples = samples(&keys);

    let spool_dir = tempfile::tempdir().expect("temp dir");
    // Ships nowhere: what is appended stays in the spool.
    let nowhere =
        Client::new(&format!("http://127.0.0.1:{}", free_port()), None, None).expect("client");
    let mut spool = spool(spool_dir.path(), nowhere, &db);
    let clickhouse = ClickHouseBackend::new(source(&server, &db), spool.monitor());

    let both = both(&local, &clickhouse);
    all_agree(&both);

    // Figures: the series count waits for a disk usage read.
    assert_eq!(clickhouse.stats_with(Default::default()).series, 0);
    let disk = clickhouse.disk_usage();
    let stats = clickhouse.stats_with(std::sync::Arc::new(disk.clone()));
    assert_eq!(stats.series, keys.len());
    assert_eq!(stats.series, both.embedded.stats().series);
    assert_eq!(stats.log_records, 0);
    assert_eq!((stats.head_points, stats.partitions), (0, 0));
    let families: Vec<&str> = disk
        .column_families
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(families, ["default", "records", "meta", "rollup_pending"]);
    spool.append(&samples).expect("spooled");
    spool.flush().expect("flushed");
    let stats = clickhouse.stats();
    assert_eq!(stats.log_records, 1);
    assert!(stats.disk.wal_bytes > 0, "{:?}", stats.disk);
    assert_eq!(
        stats.disk.bytes_on_disk,
        stats.disk.wal_bytes
            + stats
                .disk
                .column_families
                .iter()
                .map(|c| c.sst_bytes)
                .sum::<u64>()
    );
    clickhouse.drop_caches();
    assert_eq!(
        clickhouse.suggest(NameKind::Metric, "net", 5).unwrap(),
        ["net.bytes"]
    );
}

fn suggest_agrees(both: &Both<'_>) {
    let prefixes = [
        "", "s", "sys.cpu", "sys.cpu.", "web", "h", "host", "d", "app.o'", "prod'", "zzz", "é",
    ];
    let mut seen = 0;
    for kind in [NameKind::Metric, NameKind::TagKey, NameKind::TagValue] {
        for prefix in prefixes {
            for max in [0, 1, 2, 100] {
                let e = both.embedded.suggest(kind, prefix, max).expect("embedded");
                let c = both
                    .clickhouse
                    .suggest(kind, prefix, max)
                    .expect("clickhouse");
                assert_eq!(c, e, "suggest {kind:?} {prefix:?} {max}");
                seen += c.len();
            }
        }
    }
    assert!(seen > 50, "{seen}");
    let c = both.clickhouse;
    assert_eq!(
        c.suggest(NameKind::Metric, "sys.", 10).unwrap(),
        ["sys.cpu.nice", "sys.cpu.user", "sys.mem"]
    );
    assert_eq!(
        c.suggest(NameKind::TagKey, "host", 10).unwrap(),
        ["host", "hostgroup"]
    );
    assert_eq!(c.suggest(NameKind::TagValue, "web", 1).unwrap(), ["web"]);
    assert_eq!(
        c.suggest(NameKind::TagValue, "prod", 9).unwrap(),
        ["prod's"]
    );
}

/// Metric, filters, limit.
type LookupCase = (Option<&'static str>, Vec<(String, String)>, usize);

fn lookup_agrees(both: &Both<'_>) {
    let f = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let cases: Vec<LookupCase> = vec![
        (None, vec![], 100),
        (Some("sys.cpu.user"), vec![], 100),
        (Some("sys.cpu.user"), vec![f("host", "web01")], 1),
        (None, vec![f("host", "web01")], 3),
        (None, vec![f("host", "*")], 4),
        (None, vec![f("*", "sjc")], 2),
        (None, vec![f("*", "web")], 5),
        (None, vec![f("*", "*")], 100),
        (
            Some("sys.cpu.user"),
            vec![f("dc", "lga"), f("host", "*")],
            2,
        ),
        (Some("sys.cpu.user"), vec![f("host", "web09")], 10),
        (Some("app.o'brien"), vec![f("env", "prod's")], 10),
        (Some("nope"), vec![], 10),
        (None, vec![f("dc", "lga"), f("host", "db01")], 10),
        (None, vec![], 0),
    ];
    let mut found = 0;
    for (metric, filters, limit) in cases {
        let what = format!("lookup {metric:?} {filters:?} {limit}");
        let e = both
            .embedded
            .lookup(metric, &filters, usize::MAX)
            .expect("embedded");
        let c = both
            .clickhouse
            .lookup(metric, &filters, usize::MAX)
            .expect("clickhouse");
        assert_eq!(sorted(keys_of(&c)), sorted(keys_of(&e)), "{what}");
        // With a limit: the first by each store's own ids.
        let e_limited = both
            .embedded
            .lookup(metric, &filters, limit)
            .expect("embedded");
        let c_limited = both
            .clickhouse
            .lookup(metric, &filters, limit)
            .expect("clickhouse");
        assert_eq!(e_limited[..], e[..e.len().min(limit)], "{what}");
        assert_eq!(c_limited[..], c[..c.len().min(limit)], "{what}");
        assert!(c.windows(2).all(|w| w[0].id < w[1].id), "{what}");
        assert!(c.iter().all(|s| s.id == series_id(&s.key)), "{what}");
        found += c_limited.len();
    }
    assert_eq!(found, 8 + 3 + 1 + 3 + 4 + 2 + 1 + 8 + 2 + 1);
}

fn last_points_agree(both: &Both<'_>) {
    for (i, (key, ..)) in both.ids.iter().enumerate() {
        let e = both
            .embedded
            .last_point(both.id(false, i))
            .expect("embedded");
        let c = both
            .clickhouse
            .last_point(both.id(true, i))
            .expect("clickhouse");
        assert!(e.is_some(), "{key}");
        assert_eq!(c, e, "{key}");
    }
    let rewritten = both.clickhouse.last_point(both.id(true, 0)).unwrap();
    assert_eq!(
        rewritten,
        Some(DataPoint {
            timestamp_ms: T0,
            value: Value::Float(-0.5)
        })
    );
    let unknown = series_id(&SeriesKey::new("m", [("host", "nowhere")]));
    assert_eq!(both.clickhouse.last_point(unknown).unwrap(), None);
}

fn stale_series_agree(both: &Both<'_>) {
    let hour = 3_600_000;
    let mut seen = 0;
    for metric in [None, Some("sys.cpu.user"), Some("sys.mem"), Some("nope")] {
        for cutoff in [0, T0 - 20 * hour, T0 - 4 * hour, T0 - hour + 1, T0, T0 + 1] {
            let e = stale(
                both.embedded
                    .stale_series(metric, cutoff)
                    .expect("embedded"),
            );
            let c = stale(
                both.clickhouse
                    .stale_series(metric, cutoff)
                    .expect("clickhouse"),
            );
            assert_eq!(c, e, "stale {metric:?} {cutoff}");
            seen += c.len();
        }
    }
    // Newest points at T0 - i hours: 3 + 7 + 7 + 8 of all, 2 + 2 + 3 of
    // sys.cpu.user (0, 1, 2), 1 + 2 + 2 + 2 of sys.mem (4, 5).
    assert_eq!(seen, 25 + 7 + 7);
}

/// A ClickHouse series row without points (a node stopped between its
/// series and its points) is stale whatever the cutoff, before any other.
#[test]
fn a_series_without_points_is_the_stalest() {
    let (setup, server, client) = start();
    let db = name("pointless");
    let keys = keys();
    load(&setup, &client, &db, &samples(&keys[..1]));
    let empty = SeriesKey::new("sys.cpu.user", [("host", "new")]);
    setup
        .block_on(writer::insert_series(&client, &db, &[&empty]))
        .expect("series row");
    let spool_dir = tempfile::tempdir().expect("temp dir");
    let spool = spool(spool_dir.path(), client.clone(), &db);
    let backend = ClickHouseBackend::new(source(&server, &db), spool.monitor());
    let found = stale(backend.stale_series(Some("sys.cpu.user"), T0 + 1).unwrap());
    assert_eq!(
        found,
        [(empty.to_string(), None), (keys[0].to_string(), Some(T0))]
    );
    assert_eq!(
        stale(backend.stale_series(None, 0).unwrap()),
        [(empty.to_string(), None)]
    );
    assert_eq!(backend.last_point(series_id(&empty)).unwrap(), None);
}

fn annotations_agree(both: &Both<'_>) {
    let (a, b) = (0, 4);
    let id = |c: bool, i| Some(both.id(c, i));
    // Seconds and ms; a second note of one key in the same call merges
    // with the first.
    let first = both.notes_agree("first upsert", |n, c| {
        n.upsert(
            vec![
                note(None, 1_369_141_261, "g1", "x"),
                note(id(c, a), 1_369_141_261, "a1", "one"),
                note(id(c, a), 10_000_000_000, "a2", "two"),
                note(id(c, a), 1_369_141_261_000, "a1 again", "three"),
                note(id(c, b), 2_000, "b1", "four"),
                note(id(c, b), 3_000, "b2", ""),
            ],
            &combine,
        )
        .expect("upserted")
    });
    assert_eq!(first.len(), 6);
    assert_eq!(first[3].1.description, "a1");
    assert_eq!(first[3].1.notes, "one+three");
    // Merged with what is stored.
    let mut custom = note(id(true, a), 10_000_000_000, "ignored", "more");
    custom.custom = Some(BTreeMap::from([("owner".into(), "jdoe".into())]));
    let second = both.notes_agree("second upsert", |n, c| {
        let mut given = custom.clone();
        given.series = id(c, a);
        n.upsert(
            vec![given, note(None, 1_369_141_261_000, "g", "y")],
            &combine,
        )
        .expect("upserted")
    });
    assert_eq!(second[0].1.description, "a2");
    assert_eq!(second[0].1.notes, "two+more");
    assert!(second[0].1.custom.is_some());
    assert_eq!(second[1].1.notes, "x+y");

    let got = both.notes_agree("get", |n, c| {
        [
            n.get(None, 1_369_141_261_000).unwrap(),
            n.get(id(c, a), 10_000_000_000).unwrap(),
            n.get(id(c, a), 10_000_000_001).unwrap(),
            n.get(id(c, b), 2_000_000).unwrap(),
            n.get(id(c, 1), 2_000_000).unwrap(),
        ]
        .into_iter()
        .flatten()
        .collect()
    });
    assert_eq!(got.len(), 3);
    let ranged = both.notes_agree("range", |n, c| {
        let mut out = n.range(id(c, a), 1_000_000, i64::MAX).unwrap();
        out.extend(n.range(None, 0, i64::MAX).unwrap());
        out.extend(n.range(id(c, b), 2_000_000, 2_999_999).unwrap());
        out.extend(n.range(id(c, b), 5, 4).unwrap());
        out
    });
    let described: Vec<&str> = ranged.iter().map(|(_, n)| n.description.as_str()).collect();
    assert_eq!(described, ["a2", "a1", "g1", "b1"]);
    // By series then start: the series order is each store's id order.
    for (c, notes) in [
        (false, both.embedded.notes()),
        (true, both.clickhouse.notes()),
    ] {
        let mut ids = vec![both.id(c, a), both.id(c, b), both.id(c, 2)];
        ids.sort_unstable();
        let found = notes.of_series(&ids, 0, i64::MAX).unwrap();
        let order: Vec<(u64, i64)> = found
            .iter()
            .map(|n| (n.series.unwrap(), n.start_ms()))
            .collect();
        assert_eq!(order.len(), 4, "{c}");
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{c} {order:?}");
        assert!(notes.of_series(&ids, 5, 4).unwrap().is_empty());
        let later = notes.of_series(&ids, 2_500_000, i64::MAX).unwrap();
        let mut described: Vec<&str> = later.iter().map(|n| n.description.as_str()).collect();
        described.sort_unstable();
        assert_eq!(described, ["a1", "a2", "b2"], "{c}");
    }

    // Deletes: one note (twice: the second finds nothing), a range, and a
    // note written again after its delete starts afresh.
    let after = both.notes_agree("deletes", |n, c| {
        n.delete(id(c, b), 2_000_000).unwrap();
        n.delete(id(c, b), 2_000_000).unwrap();
        assert_eq!(n.get(id(c, b), 2_000_000).unwrap(), None);
        assert_eq!(n.delete_range(id(c, a), 0, i64::MAX).unwrap(), 2);
        assert_eq!(n.delete_range(id(c, a), 0, i64::MAX).unwrap(), 0);
        assert_eq!(n.delete_range(None, 0, i64::MAX).unwrap(), 1);
        let again = n
            .upsert(
                vec![note(id(c, a), 10_000_000_000, "anew", "fresh")],
                &combine,
            )
            .unwrap();
        assert_eq!(again[0].notes, "fresh");
        let mut out = n.range(id(c, a), 0, i64::MAX).unwrap();
        out.extend(n.range(id(c, b), 0, i64::MAX).unwrap());
        out.extend(n.range(None, 0, i64::MAX).unwrap());
        out
    });
    let described: Vec<&str> = after.iter().map(|(_, n)| n.description.as_str()).collect();
    assert_eq!(described, ["anew", "b2"]);
}

/// A note written again replaces the stored row even when that row's
/// version is far ahead of this node's clock (another node's clock runs
/// fast), and every row of one note gets a higher version than the last.
#[test]
fn a_note_written_again_beats_a_version_from_a_clock_ahead() {
    let (setup, server, client) = start();
    let db = name("versions");
    setup
        .block_on(schema::ensure(&client, &db))
        .expect("schema");
    let spool_dir = tempfile::tempdir().expect("temp dir");
    let spool = spool(spool_dir.path(), client.clone(), &db);
    let backend = ClickHouseBackend::new(source(&server, &db), spool.monitor());
    let ahead: u64 = 9_000_000_000_000_000_000;
    setup
        .block_on(client.execute(&format!(
            "INSERT INTO versions.annotations VALUES \
             (0, 5000, 0, '{{\"startTime\":5,\"description\":\"ahead\"}}', {ahead})"
        )))
        .expect("inserted");
    let notes = backend.notes();
    assert_eq!(notes.get(None, 5000).unwrap().unwrap().description, "ahead");
    let replace = |_: Annotation, given: Annotation| given;
    notes
        .upsert(vec![note(None, 5, "mine", "")], &replace)
        .unwrap();
    assert_eq!(notes.get(None, 5000).unwrap().unwrap().description, "mine");
    notes.delete(None, 5000).unwrap();
    assert_eq!(notes.get(None, 5000).unwrap(), None);
    assert_eq!(notes.range(None, 0, i64::MAX).unwrap(), []);
    // Twice at the current clock: the second still wins.
    for description in ["one", "two"] {
        notes
            .upsert(vec![note(None, 7, description, "")], &replace)
            .unwrap();
    }
    assert_eq!(notes.get(None, 7000).unwrap().unwrap().description, "two");

    let rows = setup
        .block_on(client.select_rows(
            "SELECT start, deleted, version FROM versions.annotations ORDER BY start, version",
        ))
        .expect("rows");
    let rows: Vec<(i64, u8, u64)> = rows
        .iter()
        .map(|r| {
            (
                r[0].parse().unwrap(),
                r[1].parse().unwrap(),
                r[2].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows[..3],
        [(5000, 0, ahead), (5000, 0, ahead + 1), (5000, 1, ahead + 2)]
    );
    assert_eq!(rows.len(), 5);
    // This node's versions only grow, so the next note starts past `ahead`.
    assert!(rows[3].2 > ahead + 2 && rows[4].2 > rows[3].2, "{rows:?}");
}

/// The same through a two-shard cluster's `Distributed` tables: every
/// statement must pass there too (no double-distributed `IN`, notes on
/// their shard when a write returns).
#[test]
fn every_backend_method_answers_the_same_through_a_cluster() {
    let setup = Runtime::new().expect("runtime");
    let servers = setup.block_on(clickhouse_support::cluster());
    let db = name("backend");
    let ddl = schema::ddl_script(&db, &Layout::Cluster(name(CLUSTER)));
    for s in &servers {
        s.run_script(&ddl);
    }
    let client = servers[0].client();
    write_clickhouse(&setup, &client, &db);
    // Distributed inserts reach the shards in the background; counted
    // so that merges of duplicates on the shards cannot hide arrivals.
    let count = |sql: &'static str| {
        let client = client.clone();
        async move {
            let answer = client.select_rows(sql).await.expect("counted");
            answer[0][0].parse::<u64>().expect("a count")
        }
    };
    let points = samples(&keys()).len() as u64;
    setup.block_on(poll_until(|| async {
        count("SELECT count() FROM backend.points FINAL").await == points
            && count("SELECT count() FROM backend.points WHERE version >= 1099511627776").await == 2
            && count("SELECT uniqExact(series) FROM backend.series").await == keys().len() as u64
    }));
    let local = local_store();
    let spool_dir = tempfile::tempdir().expect("temp dir");
    let spool = spool(spool_dir.path(), client.clone(), &db);
    let clickhouse = ClickHouseBackend::new(source(&servers[1], &db), spool.monitor());
    all_agree(&both(&local, &clickhouse));
    clickhouse.disk_usage();
    assert_eq!(clickhouse.stats().series, keys().len());
}
