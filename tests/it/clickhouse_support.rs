//! Real `clickhouse-server` processes for the ClickHouse tests: each in its
//! own temp dir with a generated config (the one `clickhouse.md` verified),
//! on free loopback ports, ready once `GET /?query=SELECT 1` answers, and
//! killed when dropped. A test can kill one and restart it on the same
//! data dir and ports, as an outage would. Missing binaries fail the test, naming `.ci/deps`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtsd::clickhouse::schema::{self, Identifier, Layout};
use rtsd::clickhouse::settings::{ClickHouseFile, ClickHouseSettings};
use rtsd::clickhouse::source::ClickHouseSource;
use rtsd::clickhouse::spool::{Spool, SpoolMonitor, SpoolOptions, SpoolStats, Target};
use rtsd::clickhouse::{rollups, series_id, writer, Client, Compression};
use rtsd::config::{Settings, StoreKind};
use rtsd::ingest::{self, Writer};
use rtsd::model::Sample;
use rtsd::model::HOUR_MS;
use rtsd::queue::{self, OverflowPolicy, QueueSender};
use rtsd::stats::Stats;
use rtsd::storage::StoreError;
use rtsd::storage::{Store, StoreOptions, StoreReader, StoreWriter};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::support::{free_port, try_http, DEADLINE};

/// The `remote_servers` name [`cluster`] configures.
pub const CLUSTER: &str = "two";

/// One running server.
pub struct ClickHouse {
    child: Child,
    pub http: SocketAddr,
    pub tcp_port: u16,
    dir: tempfile::TempDir,
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        // Killed, not stopped: the data dies with the temp dir anyway.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server on its own.
pub async fn single() -> ClickHouse {
    let (http, tcp) = (free_port(), free_port());
    let server = ClickHouse::spawn(http, tcp, "");
    server.wait_ready().await;
    server
}

/// Two servers forming the two-shard cluster [`CLUSTER`], both knowing it.
pub async fn cluster() -> [ClickHouse; 2] {
    let ports = [(free_port(), free_port()), (free_port(), free_port())];
    let shards: String = ports
        .iter()
        .map(|(_, tcp)| {
            format!("<shard><replica><host>127.0.0.1</host><port>{tcp}</port></replica></shard>")
        })
        .collect();
    let remote = format!("<remote_servers><{CLUSTER}>{shards}</{CLUSTER}></remote_servers>");
    let servers = ports.map(|(http, tcp)| ClickHouse::spawn(http, tcp, &remote));
    for s in &servers {
        s.wait_ready().await;
    }
    servers
}

/// Makes `settings` serve from the ClickHouse server at `url` (through
/// `cluster`'s `Distributed` tables if given), shipping every 20 ms so
/// tests see points soon.
pub fn serve_on(settings: &mut Settings, url: &str, cluster: Option<&str>) {
    settings.store = StoreKind::Clickhouse;
    settings.clickhouse = ClickHouseSettings::from_file(ClickHouseFile {
        url: Some(url.to_string()),
        cluster: cluster.map(str::to_string),
        flush_interval: Some("20ms".to_string()),
        ..ClickHouseFile::default()
    });
}

/// Polls the async `cond` until it holds; fails the test at [`DEADLINE`].
pub async fn poll_until<F: std::future::Future<Output = bool>>(mut cond: impl FnMut() -> F) {
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < DEADLINE,
            "condition not met within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A server, the runtime that talks to it for setup, and a client on that
/// runtime. For plain `#[test]`s, whose sources are called from threads
/// outside any runtime.
pub fn start() -> (Runtime, ClickHouse, Client) {
    let setup = Runtime::new().expect("runtime");
    let server = setup.block_on(single());
    let client = server.client();
    (setup, server, client)
}

/// A server holding the schema in `db`, set up through `setup`.
pub fn single_with_schema(setup: &Runtime, db: &Identifier) -> ClickHouse {
    let server = setup.block_on(single());
    setup
        .block_on(schema::ensure(&server.client(), db))
        .expect("schema");
    server
}

pub fn name(text: &str) -> Identifier {
    Identifier::new(text).expect("valid name")
}

/// A fresh database `db` holding `samples`, numbered from version 1.
pub fn load(setup: &Runtime, client: &Client, db: &Identifier, samples: &[Sample]) {
    setup.block_on(async {
        schema::ensure(client, db).await.expect("schema");
        writer::write(client, db, samples, 1, Compression::Gzip)
            .await
            .expect("written");
    });
}

/// Computes the rollups of every hour `samples` touch in `db`, as a
/// node's shipper does once those hours are sealed.
pub fn compute_rollups(
    setup: &Runtime,
    client: &Client,
    db: &Identifier,
    samples: &[Sample],
) -> rollups::Computed {
    let pairs: Vec<(u64, i64)> = samples
        .iter()
        .map(|s| {
            let ts = s.point.timestamp_ms;
            (series_id(&s.series), ts - ts.rem_euclid(HOUR_MS))
        })
        .collect();
    setup
        .block_on(rollups::compute(client, db, &pairs))
        .expect("rollups computed")
}

/// The rows of `table` in `db`, every version.
pub fn rows_in(setup: &Runtime, client: &Client, db: &Identifier, table: &str) -> u64 {
    let answer = setup
        .block_on(client.execute(&format!("SELECT count() FROM {db}.{table}")))
        .expect("counted");
    String::from_utf8_lossy(&answer)
        .trim()
        .parse()
        .expect("a count")
}

/// A source reading `db` on `server`.
pub fn source(server: &ClickHouse, db: &Identifier) -> ClickHouseSource {
    ClickHouseSource::new(&server.url(), None, None, db.clone()).expect("source")
}

/// An embedded store in a temp dir (kept as long as this is).
pub struct Embedded {
    pub writer: StoreWriter,
    pub reader: StoreReader,
    _dir: tempfile::TempDir,
}

/// An embedded store holding `samples`, appended in one batch and then, as
/// the daemon does with points older than `now_ms`' head windows, sealed
/// into blocks with rollups: the same data [`load`] puts in ClickHouse.
pub fn embedded(samples: &[Sample], now_ms: i64) -> Embedded {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut writer, reader) = Store::open(dir.path(), StoreOptions::default()).expect("store");
    writer.append(samples).expect("appended");
    writer.seal_all(now_ms).expect("sealed");
    Embedded {
        writer,
        reader,
        _dir: dir,
    }
}

/// Where Debian's package puts a ClickHouse binary, or a failure saying
/// how to get it.
fn installed(name: &str) -> String {
    ["/usr/sbin/", "/usr/bin/"]
        .into_iter()
        .map(|dir| format!("{dir}{name}"))
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed (ClickHouse tests need it): run .ci/deps")
        })
}

/// Runs the server configured in `dir`, its output appended to the log
/// there (a restart keeps the earlier run's lines).
fn launch(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("log file");
    Command::new(installed("clickhouse-server"))
        .arg(format!("--config-file={}/config.xml", dir.display()))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("clickhouse-server starts")
}

impl ClickHouse {
    fn spawn(http_port: u16, tcp_port: u16, remote_servers: &str) -> ClickHouse {
        let dir = tempfile::tempdir().expect("temp dir");
        crate::clickhouse_files::write(dir.path(), http_port, tcp_port, remote_servers)
            .expect("clickhouse-server config");
        ClickHouse {
            child: launch(dir.path()),
            http: SocketAddr::from(([127, 0, 0, 1], http_port)),
            tcp_port,
            dir,
        }
    }

    /// Kills the server as a crash would; its data dir stays for
    /// [`ClickHouse::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the killed server again on the same data dir and ports.
    pub async fn restart(&mut self) {
        self.child = launch(self.dir.path());
        self.wait_ready().await;
    }

    /// Polls the HTTP interface until it answers `1`; fails with the
    /// server's log if it exits or the deadline passes first.
    async fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            let answer = try_http(self.http, "GET", "/?query=SELECT%201", &[], b"").await;
            if matches!(&answer, Ok((200, body)) if body.trim() == "1") {
                return;
            }
            let log = || std::fs::read_to_string(self.dir.path().join("server.log"));
            assert!(
                start.elapsed() < DEADLINE,
                "clickhouse-server on {} not ready within {DEADLINE:?}; log:\n{:?}",
                self.http,
                log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url(), None, None).expect("client")
    }

    /// Runs a `;`-separated script through `clickhouse-client --multiquery`,
    /// as an operator would.
    pub fn run_script(&self, script: &str) {
        use std::io::Write as _;
        let mut child = Command::new(installed("clickhouse-client"))
            .args(["--host", "127.0.0.1", "--port", &self.tcp_port.to_string()])
            // Bounded like every wait in these tests.
            .args(["--multiquery", "--receive_timeout=30", "--send_timeout=30"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("clickhouse-client starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("script written");
        let out = child.wait_with_output().expect("clickhouse-client ends");
        assert!(
            out.status.success(),
            "clickhouse-client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A spool's target: `database` on `client`'s server alone, gzipped.
pub fn spool_target(client: Client, database: Identifier) -> Target {
    Target {
        client,
        database,
        compression: Compression::Gzip,
        layout: Layout::Single,
        shards: Vec::new(),
    }
}

/// Opens (or reopens) the spool in `dir`; no shutdown ever begins.
pub fn open_spool(dir: &Path, target: Target, options: SpoolOptions) -> Spool {
    Spool::open(dir, target, options, CancellationToken::new()).expect("spool opens")
}

/// Polls `cond` on the spool's stats until it holds and returns them;
/// fails at [`DEADLINE`].
pub fn wait_spool(
    spool: &SpoolMonitor,
    what: &str,
    cond: impl Fn(&SpoolStats) -> bool,
) -> SpoolStats {
    let start = Instant::now();
    loop {
        let stats = spool.stats();
        if cond(&stats) {
            return stats;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}; {stats:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ingest thread over `spool`, as the daemon runs it: the queue that
/// feeds it (blocking when full), the stats it counts in, and the thread.
pub fn ingest_over(
    spool: Spool,
) -> (
    QueueSender,
    Arc<Stats>,
    std::thread::JoinHandle<Result<(), StoreError>>,
) {
    let stats = Arc::new(Stats::default());
    let (tx, rx) = queue::queue(
        1 << 20,
        OverflowPolicy::Block,
        Duration::ZERO,
        stats.clone(),
    );
    let writer = Writer {
        store: spool,
        queue: rx,
        stats: stats.clone(),
        shutdown: CancellationToken::new(),
        mps: 0,
    };
    (tx, stats, std::thread::spawn(move || ingest::run(writer)))
}
