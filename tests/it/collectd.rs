//! collectd's `write_tsdb` plugin (Debian `collectd-core`, installed by
//! `.ci/deps`) as a real peer: `\r\n` line endings, `fqdn=` tags, double
//! spaces where optional tags are empty, `%.15g` values.

use std::process::{Child, Command, Stdio};

use rtsd::model::NameKind;

use crate::support::*;

/// Kills collectd however the test ends.
struct Collectd(Child);

impl Drop for Collectd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectd_write_tsdb_points_are_stored() {
    collectd_round_trip(TestDaemon::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collectd_write_tsdb_points_are_stored_in_clickhouse() {
    let server = crate::clickhouse_support::single().await;
    let url = server.url();
    let d = TestDaemon::start_with(|s| crate::clickhouse_support::serve_on(s, &url, None)).await;
    collectd_round_trip(d).await;
}

async fn collectd_round_trip(d: TestDaemon) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("collectd.conf");
    std::fs::write(
        &conf,
        format!(
            r#"Interval 1
FQDNLookup false
Hostname "collectd-test"
BaseDir "{dir}"
PIDFile "{dir}/collectd.pid"
PluginDir "/usr/lib/collectd"
LoadPlugin load
LoadPlugin memory
LoadPlugin write_tsdb
<Plugin write_tsdb>
  <Node "rtsd">
    Host "127.0.0.1"
    Port "{port}"
    HostTags "env=test"
  </Node>
</Plugin>
"#,
            dir = dir.path().display(),
            port = d.telnet().port()
        ),
    )
    .unwrap();
    let _collectd = Collectd(
        Command::new("collectd")
            .arg("-f")
            .arg("-C")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("collectd runs (see .ci/deps)"),
    );
    let store = d.daemon.store.clone();
    let metrics = ["load.load.shortterm", "memory.used.memory"];
    // write_tsdb flushes its 1428-byte buffer every few intervals.
    // Off the async worker: the ClickHouse store's reads block.
    use tokio::task::block_in_place as in_place;
    poll(|| {
        in_place(|| {
            metrics.iter().all(|m| {
                store
                    .series_of_metric(m)
                    .unwrap()
                    .and_then(|s| {
                        s.first()
                            .map(|s| store.points(s.id, i64::MIN, i64::MAX).unwrap())
                    })
                    .is_some_and(|p| p.len() >= 2)
            })
        })
    })
    .await;
    in_place(|| verify(&store, &metrics));
    assert_eq!(d.daemon.stats.rejected_total(), 0);
    d.stop().await;
}

/// Every series of `metrics` carries collectd's tags and sane values.
fn verify(store: &rtsd::backend::SharedBackend, metrics: &[&str]) {
    for m in metrics {
        for s in store.series_of_metric(m).unwrap().unwrap() {
            let tags: Vec<_> = s.key.tags().collect();
            assert_eq!(
                tags,
                vec![("env", "test"), ("fqdn", "collectd-test")],
                "{}",
                s.key
            );
            for p in store.points(s.id, i64::MIN, i64::MAX).unwrap() {
                let v = p.value.as_f64();
                assert!(v.is_finite() && v >= 0.0, "{} = {v}", s.key);
            }
        }
    }
    assert!(store
        .suggest(NameKind::Metric, "memory.", 100)
        .unwrap()
        .contains(&"memory.used.memory".to_string()));
}
