//! `rtsd export` and `rtsd import` run as the real binary: a round trip
//! between data dirs gives the same `/api/query` answers; gzip and bad
//! lines on import; refusing a data dir a daemon holds.

use std::io::Write;
use std::path::Path;
use std::process::Output;

use rtsd::model::{DataPoint, SeriesKey, Value};
use rtsd::storage::{Store, StoreOptions};

use crate::support::{binary, exchange, http, read_points, TestDaemon};

fn rtsd(args: &[&str]) -> Output {
    std::process::Command::new(binary())
        .args(args)
        .output()
        .expect("rtsd runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// 2026-01-02T00:00:00Z in seconds: old enough to seal at once.
const T: i64 = 1_767_312_000;

const QUERIES: [&str; 3] = [
    r#"{"start":1767312000,"end":1767398400,"queries":[{"aggregator":"none","metric":"sys.cpu"}]}"#,
    r#"{"start":1767312000,"end":1767398400,"msResolution":true,"queries":[{"aggregator":"sum","metric":"sys.cpu","downsample":"1h-avg","tags":{"host":"*"}}]}"#,
    r#"{"start":1767312000,"end":1767398400,"queries":[{"aggregator":"max","metric":"net.bytes"}]}"#,
];

async fn answers(d: &TestDaemon) -> Vec<String> {
    let mut out = Vec::new();
    for q in QUERIES {
        let (status, body) = http(d.http(), "POST", "/api/query", q.as_bytes()).await;
        assert_eq!(status, 200, "{body}");
        out.push(body);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn export_then_import_gives_the_same_answers() {
    let d = TestDaemon::start().await;
    let mut lines = String::new();
    for i in 0..500 {
        let ts = T + i * 37;
        lines.push_str(&format!("put sys.cpu {ts} {} host=a dc=x\n", i % 17));
        lines.push_str(&format!("put sys.cpu {ts}250 {}.5 host=b dc=x\n", i));
        lines.push_str(&format!(
            "put net.bytes {ts} {} iface=eth0\n",
            i as f64 * 0.1
        ));
    }
    exchange(d.telnet(), lines.as_bytes()).await;
    d.wait_stored(1500).await;
    let before = answers(&d).await;
    let dir = d.stop().await;

    let work = tempfile::tempdir().unwrap();
    let dump = work.path().join("dump.txt");
    let out = rtsd(&[
        "export",
        "--data-dir",
        path(dir.path()),
        "--output",
        path(&dump),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exported = std::fs::read_to_string(&dump).unwrap();
    assert_eq!(exported.lines().count(), 1500);
    assert!(
        exported.starts_with(
            "net.bytes 1767312000 0 iface=eth0\nnet.bytes 1767312037 0.1 iface=eth0\n"
        ),
        "{exported:.200}"
    );
    assert!(exported.contains("\nsys.cpu 1767312000250 0.5 dc=x host=b\n"));

    let copy = tempfile::tempdir().unwrap();
    let out = rtsd(&["import", "--data-dir", path(copy.path()), path(&dump)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stderr);
    assert!(
        report.contains("imported 1500 points, 0 bad lines"),
        "{report}"
    );

    let copy_dir = copy.path().to_path_buf();
    let d2 = TestDaemon::start_with(|s| s.data_dir = copy_dir).await;
    assert_eq!(answers(&d2).await, before);
    d2.stop().await;

    // A second export of the copy is byte for byte the first.
    let again = work.path().join("again.txt");
    let out = rtsd(&[
        "export",
        "--data-dir",
        path(copy.path()),
        "--output",
        path(&again),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&again).unwrap(), exported);
}

#[test]
fn import_reads_gzip_and_counts_bad_lines() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("points.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&file).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(
        b"m 1767312000 1 host=a\n\
          m 1767312060 oops host=a\n\
          \n\
          put m 1767312120 2.5 host=a\n\
          m\n",
    )
    .unwrap();
    gz.finish().unwrap();
    let data = work.path().join("data");
    let out = rtsd(&["import", "--data-dir", path(&data), path(&file)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stderr);
    let name = path(&file);
    assert!(report.contains(&format!("{name}:2: put: ")), "{report}");
    assert!(report.contains(&format!("{name}:5: put: ")), "{report}");
    assert!(
        report.contains("imported 2 points, 2 bad lines"),
        "{report}"
    );

    let (_w, r) = Store::open(&data, StoreOptions::default()).unwrap();
    let key = SeriesKey::new("m", [("host", "a")]);
    let point = |ts, value| DataPoint {
        timestamp_ms: ts,
        value,
    };
    assert_eq!(
        read_points(&r, &key),
        vec![
            point(1_767_312_000_000, Value::Int(1)),
            point(1_767_312_120_000, Value::Float(2.5)),
        ]
    );
}

#[test]
fn export_writes_csv_for_chosen_series() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in.txt");
    std::fs::write(
        &input,
        "m 1767312000 1 host=a dc=x\nm 1767312000500 -2.25 host=b\nn 1767312000 3 host=a\n",
    )
    .unwrap();
    let data = work.path().join("data");
    let out = rtsd(&["import", "--data-dir", path(&data), path(&input)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let args = [
        "export",
        "--data-dir",
        path(&data),
        "--format",
        "csv",
        "--metric",
        "m",
    ];
    let out = rtsd(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "metric,timestamp_ms,value,tags\n\
         m,1767312000000,1,dc=x;host=a\n\
         m,1767312000500,-2.25,host=b\n"
    );
    let out = rtsd(
        &[
            &args[..],
            &[
                "--tag",
                "host=b",
                "--start",
                "1767312000",
                "--end",
                "1767312001",
            ],
        ]
        .concat(),
    );
    assert_eq!(
        text(&out.stdout),
        "metric,timestamp_ms,value,tags\nm,1767312000500,-2.25,host=b\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tools_refuse_a_data_dir_a_daemon_holds() {
    let d = TestDaemon::start().await;
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in.txt");
    std::fs::write(&input, "m 1767312000 1\n").unwrap();
    for args in [
        vec!["import", "--data-dir", path(d.dir.path()), path(&input)],
        vec!["export", "--data-dir", path(d.dir.path())],
    ] {
        let out = rtsd(&args);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains("is in use by another process"), "{err}");
    }
    d.stop().await;
}
