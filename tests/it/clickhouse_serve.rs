//! `rtsd serve --store clickhouse` end to end, against real
//! `clickhouse-server` processes: one node on one server (it creates the
//! tables), two nodes on a two-shard cluster (one dataset, either node
//! answers everything), and a shard outage during a stream, with the node
//! restarted while the shard is down (the spool on disk carries the
//! points over).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rtsd::clickhouse::schema::{self, Identifier, Layout};
use rtsd::config::Settings;
use rtsd::daemon::Daemon;
use serde_json::Value as Json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::clickhouse_support::{self, poll_until, ClickHouse, CLUSTER};
use crate::support::{exchange, http, loopback_settings};

/// A node of the ClickHouse store on `url`, its spool in `dir`.
fn node_settings(dir: &std::path::Path, url: &str, cluster: Option<&str>) -> Settings {
    let mut settings = loopback_settings(dir);
    clickhouse_support::serve_on(&mut settings, url, cluster);
    settings
}

async fn start_node(dir: &std::path::Path, url: &str, cluster: Option<&str>) -> Daemon {
    Daemon::start(node_settings(dir, url, cluster))
        .await
        .expect("node starts")
}

/// `/api/query` of `sum` over every series of `metric`, without
/// aggregating them (`none`): each series' points as `(tags, [(ts, value)])`.
async fn series_points(node: &Daemon, metric: &str) -> Vec<(String, Vec<(String, f64)>)> {
    let path = format!("/api/query?start=1&m=none:{metric}");
    let (status, body) = http(node.http_addr, "GET", &path, b"").await;
    assert_eq!(status, 200, "{body}");
    let answer: Json = serde_json::from_str(&body).expect("json");
    let mut out: Vec<_> = answer
        .as_array()
        .expect("array")
        .iter()
        .map(|s| {
            let points = s["dps"]
                .as_object()
                .expect("dps")
                .iter()
                .map(|(t, v)| (t.clone(), v.as_f64().expect("number")))
                .collect();
            (s["tags"].to_string(), points)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Points of `metric` the node answers, over all series; 0 while the
/// metric is unknown.
async fn answered_points(node: &Daemon, metric: &str) -> usize {
    let path = format!("/api/query?start=1&m=none:{metric}");
    let (status, body) = http(node.http_addr, "GET", &path, b"").await;
    if status == 400 && body.contains("No such name") {
        return 0;
    }
    series_points(node, metric)
        .await
        .iter()
        .map(|(_, p)| p.len())
        .sum()
}

async fn stat(node: &Daemon, metric: &str) -> Option<u64> {
    let (status, body) = http(node.http_addr, "GET", "/api/stats", b"").await;
    assert_eq!(status, 200);
    let lines: Json = serde_json::from_str(&body).expect("json");
    lines
        .as_array()?
        .iter()
        .find(|l| l["metric"] == metric)
        .and_then(|l| l["value"].as_str()?.parse().ok())
}

async fn count(server: &ClickHouse, sql: &str) -> u64 {
    let rows = server.client().select_rows(sql).await.expect(sql);
    rows[0][0].parse().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_creates_its_tables_takes_telnet_and_http_and_answers_from_clickhouse() {
    let server = clickhouse_support::single().await;
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), &server.url(), None).await;

    let lines: String = (0..3)
        .flat_map(|host| (0..4).map(move |i| (host, i)))
        .map(|(host, i)| {
            format!(
                "put sys.cpu {} {} host=h{host}\n",
                1_700_000_000 + i * 10,
                i
            )
        })
        .collect();
    let replies = exchange(node.telnet_addr, lines.as_bytes()).await;
    assert!(replies.is_empty(), "{}", String::from_utf8_lossy(&replies));
    // ?sync answers once ClickHouse holds the point.
    let body = br#"{"metric":"sys.cpu","timestamp":1700000100,"value":7.5,"tags":{"host":"h9"}}"#;
    let (status, text) = http(node.http_addr, "POST", "/api/put?sync", body).await;
    assert_eq!(status, 204, "{text}");
    assert_eq!(
        count(
            &server,
            "SELECT count() FROM rtsd.points FINAL WHERE float_value = 7.5"
        )
        .await,
        1
    );
    poll_until(|| async { answered_points(&node, "sys.cpu").await == 13 }).await;
    let answer = series_points(&node, "sys.cpu").await;
    assert_eq!(answer.len(), 4);
    assert_eq!(
        answer[0],
        (
            r#"{"host":"h0"}"#.to_string(),
            (0..4)
                .map(|i| ((1_700_000_000 + i * 10).to_string(), i as f64))
                .collect()
        )
    );
    let (status, names) = http(node.http_addr, "GET", "/api/suggest?type=tagv&q=h", b"").await;
    assert_eq!((status, names.as_str()), (200, r#"["h0","h1","h2","h9"]"#));
    assert_eq!(stat(&node, "tsd.rtsd.spool.shipped").await, Some(13));
    assert_eq!(stat(&node, "tsd.rtsd.spool.points").await, Some(0));
    // scollector's metadata is shared through ClickHouse too.
    let meta = br#"[{"Metric":"sys.cpu","Name":"unit","Value":"percent"}]"#;
    let (status, _) = http(node.http_addr, "POST", "/api/metadata/put", meta).await;
    assert_eq!(status, 204);
    let sql = "SELECT metric, name, value FROM rtsd.metadata FINAL";
    let rows = server.client().select_rows(sql).await.expect(sql);
    assert_eq!(
        rows,
        [[
            "sys.cpu",
            "unit",
            r#"{"Metric":"sys.cpu","Name":"unit","Value":"percent"}"#
        ]]
    );
    let (_, metrics) = http(node.http_addr, "GET", "/metrics", b"").await;
    assert!(
        metrics.contains("\nrtsd_spool_shipped_points_total 13\n"),
        "{metrics}"
    );
    node.stop().await.expect("clean stop");

    // The data is ClickHouse's: a node with an empty spool dir serves it.
    let elsewhere = tempfile::tempdir().unwrap();
    let node = start_node(elsewhere.path(), &server.url(), None).await;
    assert_eq!(answered_points(&node, "sys.cpu").await, 13);
    node.stop().await.expect("clean stop");

    // The embedded store never saw a point: data-dir holds only the spool.
    let entries: BTreeSet<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(entries.contains("spool"), "{entries:?}");
    assert!(!entries.contains("CURRENT"), "{entries:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_a_cluster_without_tables_and_starts_with_a_shard_down() {
    let mut servers = clickhouse_support::cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let refused = Daemon::start(node_settings(dir.path(), &servers[0].url(), Some(CLUSTER)))
        .await
        .err()
        .expect("no tables, no node");
    let text = format!("{refused:#}");
    assert!(
        text.contains(&format!(
            "rtsd clickhouse-schema --database rtsd --cluster {CLUSTER}"
        )),
        "{text}"
    );

    // With the tables made, a shard that does not answer (restarting, say)
    // does not keep a node from starting: the spool holds its points.
    create_cluster_schema(&servers);
    servers[1].kill();
    let node = start_node(dir.path(), &servers[0].url(), Some(CLUSTER)).await;
    let replies = exchange(node.telnet_addr, b"put up.value 1700000000 1 host=x\n").await;
    assert!(replies.is_empty());
    poll_until(|| async { stat(&node, "tsd.rtsd.spool.errors").await > Some(0) }).await;
    servers[1].restart().await;
    poll_until(|| async { answered_points(&node, "up.value").await == 1 }).await;
    node.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_series_counts_the_series_clickhouse_holds_across_a_restart() {
    let server = clickhouse_support::single().await;
    let dir = tempfile::tempdir().unwrap();
    let limited = |dir: &std::path::Path| Settings {
        max_series: 2,
        ..node_settings(dir, &server.url(), None)
    };
    let node = Daemon::start(limited(dir.path())).await.expect("starts");
    let lines = b"put lim.a 1700000000 1 host=a\nput lim.a 1700000000 2 host=b\n\
                  put lim.a 1700000000 3 host=c\n";
    let replies = String::from_utf8(exchange(node.telnet_addr, lines).await).unwrap();
    assert!(replies.contains("too many series"), "{replies}");
    poll_until(|| async { answered_points(&node, "lim.a").await == 2 }).await;
    node.stop().await.expect("clean stop");

    // A node starting later knows both from ClickHouse: their points pass,
    // a third series is still refused.
    let node = Daemon::start(limited(dir.path())).await.expect("starts");
    let lines = b"put lim.a 1700000010 4 host=a\nput lim.a 1700000010 5 host=d\n";
    let replies = String::from_utf8(exchange(node.telnet_addr, lines).await).unwrap();
    assert_eq!(replies.matches("too many series").count(), 1, "{replies}");
    // a's second point and b's point: d was the one refused.
    poll_until(|| async { answered_points(&node, "lim.a").await == 3 }).await;
    node.stop().await.expect("clean stop");
}

/// Creates the cluster schema on both servers, as an operator would.
fn create_cluster_schema(servers: &[ClickHouse; 2]) {
    let db = Identifier::new("rtsd").unwrap();
    let layout = Layout::Cluster(Identifier::new(CLUSTER).unwrap());
    let ddl = schema::ddl_script(&db, &layout);
    for s in servers {
        s.run_script(&ddl);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_a_two_shard_cluster_serve_one_dataset() {
    let servers = clickhouse_support::cluster().await;
    create_cluster_schema(&servers);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_node(dir_a.path(), &servers[0].url(), Some(CLUSTER)).await;
    let b = start_node(dir_b.path(), &servers[1].url(), Some(CLUSTER)).await;

    // 100 series by telnet to A, 100 others by /api/put to B.
    let lines: String = (0..100)
        .map(|h| format!("put net.bytes 1700000000 {h} host=a{h}\n"))
        .collect();
    let replies = exchange(a.telnet_addr, lines.as_bytes()).await;
    assert!(replies.is_empty(), "{}", String::from_utf8_lossy(&replies));
    let body: Vec<Json> = (0..100)
        .map(|h| {
            serde_json::json!({"metric": "net.bytes", "timestamp": 1_700_000_000,
                "value": 1000 + h, "tags": {"host": format!("b{h}")}})
        })
        .collect();
    let body = serde_json::to_vec(&body).unwrap();
    let (status, text) = http(b.http_addr, "POST", "/api/put?sync", &body).await;
    assert_eq!(status, 204, "{text}");

    for node in [&a, &b] {
        poll_until(|| async { answered_points(node, "net.bytes").await == 200 }).await;
    }
    assert_eq!(
        series_points(&a, "net.bytes").await,
        series_points(&b, "net.bytes").await
    );
    let (status, sum) = http(
        a.http_addr,
        "GET",
        "/api/query?start=1&m=sum:net.bytes",
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let expected: i64 = (0..100).sum::<i64>() + (1000..1100).sum::<i64>();
    assert!(sum.contains(&format!("\"1700000000\":{expected}")), "{sum}");
    // Sharded by series: both shards hold some of them.
    for s in &servers {
        let held = count(s, "SELECT count() FROM rtsd.points_local").await;
        assert!((1..200).contains(&held), "{held}");
    }
    a.stop().await.expect("clean stop");
    b.stop().await.expect("clean stop");
}

/// Sends `lines` of 10 points each over one telnet connection, from
/// point `from` on: 100 series × 2,000 timestamps in all.
async fn stream(addr: std::net::SocketAddr, from: usize, to: usize) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut text = String::new();
    for n in from..to {
        let (series, step) = (n % 100, n / 100);
        text.push_str(&format!(
            "put stream.value {} {n} host=s{series}\n",
            1_700_000_000 + step as i64
        ));
        if text.len() > 64 * 1024 {
            s.write_all(text.as_bytes()).await.expect("write");
            text.clear();
        }
    }
    s.write_all(text.as_bytes()).await.expect("write");
    s.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_down_for_30_s_during_a_stream_and_a_node_restart_lose_and_repeat_nothing() {
    const POINTS: usize = 200_000;
    let mut servers = clickhouse_support::cluster().await;
    create_cluster_schema(&servers);
    let dir = tempfile::tempdir().unwrap();
    let url = servers[0].url();
    let node = start_node(dir.path(), &url, Some(CLUSTER)).await;

    stream(node.telnet_addr, 0, POINTS / 2).await;
    // The node's own server (a shard, and where it inserts) goes down
    // while points keep arriving; they wait in the spool.
    servers[0].kill();
    let outage = Instant::now();
    stream(node.telnet_addr, POINTS / 2, POINTS).await;
    poll_until(|| async {
        node.stats
            .points_stored
            .load(std::sync::atomic::Ordering::Relaxed)
            >= POINTS as u64
    })
    .await;
    // The node stops and starts again while the shard is still down: what
    // the spool held is on disk, not in memory.
    node.stop().await.expect("clean stop with ClickHouse down");
    let node = start_node(dir.path(), &url, Some(CLUSTER)).await;
    let rest = Duration::from_secs(30).saturating_sub(outage.elapsed());
    tokio::time::sleep(rest).await;
    assert!(stat(&node, "tsd.rtsd.spool.points").await.unwrap() > 0);
    servers[0].restart().await;

    poll_until(|| async { stat(&node, "tsd.rtsd.spool.points").await == Some(0) }).await;
    let sql = "SELECT count(), uniqExact(series, ts) FROM rtsd.points FINAL";
    let rows = servers[1].client().select_rows(sql).await.expect(sql);
    assert_eq!(rows, [[POINTS.to_string(), POINTS.to_string()]]);
    let answer = series_points(&node, "stream.value").await;
    assert_eq!(answer.len(), 100);
    for (tags, points) in &answer {
        let series: usize = tags
            .trim_start_matches(r#"{"host":"s"#)
            .trim_end_matches(r#""}"#)
            .parse()
            .expect("host=sN");
        let expected: Vec<(String, f64)> = (0..POINTS / 100)
            .map(|step| {
                (
                    (1_700_000_000 + step as i64).to_string(),
                    (step * 100 + series) as f64,
                )
            })
            .collect();
        assert_eq!(points, &expected, "series {series}");
    }
    node.stop().await.expect("clean stop");
}
