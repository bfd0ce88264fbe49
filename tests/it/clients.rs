//! Real OpenTSDB clients against the daemon. `.ci/deps` installs them.

use rtsd::model::{SeriesKey, Value};

use crate::support::*;

/// potsdb (PyPI) sends through its own queue and sender thread, with
/// Python's float formatting (`1e-05`) and its `host` tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn potsdb_points_are_all_read_back() {
    potsdb_round_trip(TestDaemon::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn potsdb_points_are_all_read_back_from_clickhouse() {
    let server = crate::clickhouse_support::single().await;
    let url = server.url();
    let d = TestDaemon::start_with(|s| crate::clickhouse_support::serve_on(s, &url, None)).await;
    potsdb_round_trip(d).await;
}

async fn potsdb_round_trip(d: TestDaemon) {
    let n: usize = 2000;
    let script = format!(
        r#"
import potsdb
# potsdb sheds its own oldest lines when its queue is full: room for all.
c = potsdb.Client("127.0.0.1", port={port}, host_tag="potsdb-test", qsize={qsize})
for i in range({n}):
    c.send("potsdb.float", i * 1e-05, timestamp=1700000000 + i, dc="lga")
    c.send("potsdb.int", i, timestamp=1700000000 + i, dc="lga")
c.wait()
"#,
        port = d.telnet().port(),
        qsize = 2 * n + 1
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3 runs (see .ci/deps)")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "potsdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tags = [("dc", "lga"), ("host", "potsdb-test")];
    let (float_key, int_key) = (
        SeriesKey::new("potsdb.float", tags),
        SeriesKey::new("potsdb.int", tags),
    );
    // Stored is not yet readable on ClickHouse, which the spool ships to.
    poll(|| d.points(&float_key).len() == n && d.points(&int_key).len() == n).await;
    let (floats, ints) = (d.points(&float_key), d.points(&int_key));
    for (i, (f, k)) in floats.iter().zip(&ints).enumerate() {
        let ts = (1_700_000_000 + i as i64) * 1000;
        assert_eq!((f.timestamp_ms, k.timestamp_ms), (ts, ts));
        // potsdb turns whole floats (0.0) into ints before sending.
        let want = i as f64 * 1e-05;
        match f.value {
            Value::Float(v) => assert_eq!(v, want, "point {i}"),
            Value::Int(v) => assert_eq!(v as f64, want, "point {i}"),
        }
        assert_eq!(k.value, Value::Int(i as i64));
    }
    d.stop().await;
}
