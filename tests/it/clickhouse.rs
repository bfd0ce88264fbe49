//! The ClickHouse foundation against real `clickhouse-server` processes
//! (18.16.1 from Debian): the schema on one server and on a two-shard
//! cluster, the `clickhouse-schema` command, and points written as
//! RowBinary and read back exactly, duplicates and all.

use rtsd::clickhouse::points::{self, PointRow};
use rtsd::clickhouse::schema::{self, Ensured, Identifier, Layout};
use rtsd::clickhouse::{
    series_id, ClickHouseError, Client, Compression, SchemaError, SCHEMA_VERSION,
};
use rtsd::model::{DataPoint, SeriesKey, Value};

use crate::clickhouse_support::{self, poll_until, ClickHouse, CLUSTER};
use crate::support::binary;

fn rtsd_db() -> Identifier {
    Identifier::new("rtsd").expect("valid name")
}

async fn rows(client: &Client, sql: &str) -> Vec<Vec<String>> {
    client.select_rows(sql).await.expect(sql)
}

async fn exec(client: &Client, sql: &str) {
    client.execute(sql).await.expect(sql);
}

/// Bits, not `==`: NaN and -0.0 must come back as they went in.
fn exact(points: &[DataPoint]) -> Vec<(i64, bool, u64)> {
    points
        .iter()
        .map(|p| match p.value {
            Value::Int(i) => (p.timestamp_ms, true, i as u64),
            Value::Float(f) => (p.timestamp_ms, false, f.to_bits()),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_creates_the_schema_once_records_its_version_and_refuses_a_newer_one() {
    let server = clickhouse_support::single().await;
    let client = server.client();
    let db = rtsd_db();

    // The server's own errors arrive typed, code and text.
    let unknown = client.execute("SELECT * FROM rtsd.points").await;
    assert!(
        matches!(&unknown, Err(ClickHouseError::Server { code: 81, message })
            if message.starts_with("Database rtsd doesn't exist")),
        "{unknown:?}"
    );

    let missing = schema::check(&client, &db, &Layout::Single).await;
    let text = missing.expect_err("nothing created yet").to_string();
    assert!(
        text.ends_with(
            "create the schema there with: rtsd clickhouse-schema --database rtsd | clickhouse-client --multiquery"
        ),
        "{text}"
    );

    assert_eq!(
        schema::ensure(&client, &db).await.unwrap(),
        Ensured::Created
    );
    assert_eq!(
        schema::ensure(&client, &db).await.unwrap(),
        Ensured::Current
    );
    let tables = rows(
        &client,
        "SELECT name FROM system.tables WHERE database = 'rtsd' ORDER BY name",
    )
    .await;
    let expected = [
        "annotations",
        "metadata",
        "points",
        "rollup_1d",
        "rollup_1h",
        "schema_version",
        "series",
    ];
    assert_eq!(tables, expected.map(|t| vec![t.to_owned()]));
    assert_eq!(
        rows(&client, "SELECT version, rtsd FROM rtsd.schema_version").await,
        [[
            SCHEMA_VERSION.to_string(),
            env!("CARGO_PKG_VERSION").to_owned()
        ]]
    );

    // A table lost by hand comes back; the version is not recorded twice.
    exec(&client, "DROP TABLE rtsd.metadata").await;
    assert_eq!(
        schema::ensure(&client, &db).await.unwrap(),
        Ensured::Created
    );
    exec(&client, "OPTIMIZE TABLE rtsd.schema_version FINAL").await;
    assert_eq!(
        rows(&client, "SELECT count() FROM rtsd.schema_version").await,
        [["1"]]
    );

    // A later rtsd upgraded the schema: this one must not touch it.
    let newer = SCHEMA_VERSION + 1;
    exec(
        &client,
        &format!("INSERT INTO rtsd.schema_version VALUES ({newer}, '99.0.0')"),
    )
    .await;
    exec(&client, "OPTIMIZE TABLE rtsd.schema_version FINAL").await;
    let refused = schema::ensure(&client, &db).await;
    assert!(
        matches!(refused, Err(SchemaError::Unknown { ref found, .. }) if *found == [SCHEMA_VERSION, newer]),
        "{refused:?}"
    );
    // Only the newer one left: refused by name.
    exec(&client, "DROP TABLE rtsd.schema_version").await;
    let create_version_table = schema::ddl(&db, &Layout::Single)
        .into_iter()
        .find(|s| s.contains(".schema_version ("))
        .expect("a version table");
    exec(&client, &create_version_table).await;
    exec(
        &client,
        &format!("INSERT INTO rtsd.schema_version VALUES ({newer}, '99.0.0')"),
    )
    .await;
    let refused = schema::ensure(&client, &db).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!(
            "clickhouse at {}: database rtsd holds rtsd schema version {newer}, \
             newer than this rtsd knows ({SCHEMA_VERSION}); run a newer rtsd",
            server.url()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_read_back_exactly_and_a_replayed_batch_is_not_seen_twice() {
    let server = clickhouse_support::single().await;
    let client = server.client();
    let db = rtsd_db();
    schema::ensure(&client, &db).await.unwrap();
    let series = series_id(&SeriesKey::new("sys.cpu", [("host", "a")]));
    let values = [
        Value::Int(0),
        Value::Int(-1),
        Value::Int(i64::MAX),
        Value::Int(i64::MIN + 1),
        Value::Int((1 << 53) + 1),
        Value::Float(3.0),
        Value::Float(-0.0),
        Value::Float(0.1),
        Value::Float(-1e-300),
        Value::Float(f64::MAX),
        Value::Float(f64::NAN),
        Value::Float(f64::from_bits(0x7ff8_0000_dead_beef)),
    ];
    let batch: Vec<PointRow> = values
        .iter()
        .enumerate()
        .map(|(i, &value)| PointRow {
            series,
            point: DataPoint {
                timestamp_ms: 1_700_000_000_000 + i as i64 * 10_000,
                value,
            },
            version: 1,
        })
        .collect();
    let (plain, gzipped) = batch.split_at(6);
    points::insert(&client, &db, plain, Compression::None)
        .await
        .unwrap();
    points::insert(&client, &db, gzipped, Compression::Gzip)
        .await
        .unwrap();
    let wanted: Vec<DataPoint> = batch.iter().map(|r| r.point).collect();
    let read = |start, end| points::read(&client, &db, series, start, end);
    assert_eq!(exact(&read(0, i64::MAX).await.unwrap()), exact(&wanted));
    assert_eq!(
        exact(
            &read(wanted[1].timestamp_ms, wanted[2].timestamp_ms)
                .await
                .unwrap()
        ),
        exact(&wanted[1..3])
    );

    // At-least-once shipping: the whole batch again, one point rewritten
    // later (higher version) and a stale write of another (lower version).
    points::insert(&client, &db, &batch, Compression::Gzip)
        .await
        .unwrap();
    let mut rewrite = batch[0];
    rewrite.point.value = Value::Float(42.5);
    rewrite.version = 2;
    let mut stale = batch[1];
    stale.point.value = Value::Int(7);
    stale.version = 0;
    points::insert(&client, &db, &[rewrite, stale], Compression::None)
        .await
        .unwrap();
    let mut expected = wanted.clone();
    expected[0] = rewrite.point;
    assert_eq!(exact(&read(0, i64::MAX).await.unwrap()), exact(&expected));

    // 18.16 answers the same through argMax, the alternative to FINAL.
    let by_arg_max = rows(
        &client,
        &format!(
            "SELECT ts, argMax(is_int, version), argMax(int_value, version) FROM rtsd.points \
             WHERE series = {series} GROUP BY ts ORDER BY ts"
        ),
    )
    .await;
    let ints: Vec<Vec<String>> = expected
        .iter()
        .map(|p| match p.value {
            Value::Int(i) => vec![p.timestamp_ms.to_string(), "1".into(), i.to_string()],
            Value::Float(_) => vec![p.timestamp_ms.to_string(), "0".into(), "0".into()],
        })
        .collect();
    assert_eq!(by_arg_max, ints);

    // Two keys that hash alike stay two series rows, so the collision
    // can be found instead of silently merging them.
    for host in ["a", "b"] {
        exec(
            &client,
            &format!(
                "INSERT INTO rtsd.series VALUES ({series}, 'm', ['host'], ['{host}'], 'm\\0host\\0{host}')"
            ),
        )
        .await;
    }
    exec(&client, "OPTIMIZE TABLE rtsd.series FINAL").await;
    assert_eq!(
        rows(
            &client,
            &format!("SELECT uniqExact(key) FROM rtsd.series FINAL WHERE series = {series}")
        )
        .await,
        [["2"]]
    );

    // Merging keeps one row per point, the highest version's.
    exec(&client, "OPTIMIZE TABLE rtsd.points FINAL").await;
    assert_eq!(
        rows(&client, "SELECT count() FROM rtsd.points").await,
        [[expected.len().to_string()]]
    );
    assert_eq!(exact(&read(0, i64::MAX).await.unwrap()), exact(&expected));
}

/// Runs `rtsd clickhouse-schema` with `args`; (success, stdout, stderr).
fn schema_command(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(binary())
        .arg("clickhouse-schema")
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("rtsd runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_ddl_from_the_command_spreads_points_over_both_shards() {
    let servers = clickhouse_support::cluster().await;
    let check = |s: &ClickHouse| {
        let url = s.url();
        schema_command(&["--database", "rtsd", "--cluster", CLUSTER, "--check", &url])
    };
    let fix = format!(
        "create the schema on every server with: rtsd clickhouse-schema --database rtsd --cluster {CLUSTER} | clickhouse-client --multiquery"
    );

    let (ok, _, err) = check(&servers[0]);
    assert!(!ok && err.trim_end().ends_with(&fix), "{err}");

    let (ok, ddl, _) = schema_command(&["--database", "rtsd", "--cluster", CLUSTER]);
    assert!(ok);
    // Run on one server only, the other shard is reported missing.
    servers[0].run_script(&ddl);
    let (ok, _, err) = check(&servers[0]);
    assert!(
        !ok && err.contains("lacks tables on another server") && err.trim_end().ends_with(&fix),
        "{err}"
    );
    servers[1].run_script(&ddl);
    for s in &servers {
        let (ok, out, err) = check(s);
        assert!(ok, "{err}");
        assert_eq!(
            out,
            format!(
                "clickhouse at {} holds rtsd schema version {SCHEMA_VERSION} in database rtsd\n",
                s.url()
            )
        );
    }
    // The single-server check tells the layouts apart.
    let single = schema::check(&servers[0].client(), &rtsd_db(), &Layout::Single).await;
    assert!(
        matches!(&single, Err(SchemaError::Engine { table, .. }) if table == "rtsd.points"),
        "{single:?}"
    );

    let db = rtsd_db();
    let rows_of = |i: u64| PointRow {
        series: series_id(&SeriesKey::new("m", [("host", i.to_string().as_str())])),
        point: DataPoint {
            timestamp_ms: 1_000 * i as i64,
            value: Value::Int(i as i64),
        },
        version: 1,
    };
    let batch: Vec<PointRow> = (0..1000).map(rows_of).collect();
    points::insert(&servers[0].client(), &db, &batch, Compression::Gzip)
        .await
        .unwrap();

    // Distributed inserts reach the shards in the background.
    let total = batch.len();
    let clients = [servers[0].client(), servers[1].client()];
    let shard_counts = || async {
        let mut counts = [0usize; 2];
        for (count, client) in counts.iter_mut().zip(&clients) {
            let answer = rows(client, "SELECT count() FROM rtsd.points_local").await;
            *count = answer[0][0].parse().expect("a count");
        }
        counts
    };
    poll_until(|| async { shard_counts().await.iter().sum::<usize>() >= total }).await;
    let counts = shard_counts().await;
    assert_eq!(counts.iter().sum::<usize>(), total);
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    for client in &clients {
        assert_eq!(
            rows(client, "SELECT count() FROM rtsd.points").await,
            [[total.to_string()]]
        );
        let one = rows_of(777);
        let read = points::read(client, &db, one.series, 0, i64::MAX).await;
        assert_eq!(read.unwrap(), [one.point]);
    }
}
