//! Shared test fixtures: a daemon on loopback port 0 with its store in a
//! temp dir, line senders, HTTP helpers and polls with deadlines.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rtsd::config::Settings;
use rtsd::daemon::Daemon;
use rtsd::model::{DataPoint, SeriesKey};
use rtsd::query::source::Source;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use crate::ports::free_port;

/// How long any poll may wait before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn loopback_settings(dir: &Path) -> Settings {
    Settings {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        ..Settings::default()
    }
}

pub struct TestDaemon {
    pub daemon: Daemon,
    pub dir: tempfile::TempDir,
}

impl TestDaemon {
    pub async fn start() -> TestDaemon {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Settings)) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = loopback_settings(dir.path());
        tweak(&mut settings);
        let daemon = Daemon::start(settings).await.expect("daemon starts");
        TestDaemon { daemon, dir }
    }

    pub fn telnet(&self) -> SocketAddr {
        self.daemon.telnet_addr
    }

    pub fn http(&self) -> SocketAddr {
        self.daemon.http_addr
    }

    /// Waits until `n` points in total have been committed by the writer.
    pub async fn wait_stored(&self, n: u64) {
        poll(|| {
            self.daemon
                .stats
                .points_stored
                .load(std::sync::atomic::Ordering::Relaxed)
                >= n
        })
        .await;
    }

    /// All points of one series, read through the store's query interface
    /// (off the async worker: the ClickHouse store's reads block).
    pub fn points(&self, key: &SeriesKey) -> Vec<DataPoint> {
        tokio::task::block_in_place(|| read_points(&*self.daemon.store, key))
    }

    /// Stops the daemon and returns its data dir for a restart.
    pub async fn stop(self) -> tempfile::TempDir {
        self.daemon.stop().await.expect("clean shutdown");
        self.dir
    }
}

pub fn read_points(store: &(impl Source + ?Sized), key: &SeriesKey) -> Vec<DataPoint> {
    let series = store
        .series_of_metric(key.metric())
        .expect("store readable")
        .unwrap_or_default();
    match series.iter().find(|s| &s.key == key) {
        Some(s) => store
            .points(s.id, i64::MIN, i64::MAX)
            .expect("points readable"),
        None => Vec::new(),
    }
}

/// Polls `cond` until it holds; fails the test at [`DEADLINE`].
pub async fn poll(mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < DEADLINE,
            "condition not met within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends `text` on a fresh connection, half-closes, and returns every byte
/// the server replied before closing.
pub async fn exchange(addr: SocketAddr, text: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(text).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("server closes the connection")
        .unwrap();
    out
}

/// Reads one reply line (up to and including `\n`).
pub async fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = tokio::time::timeout(DEADLINE, s.read(&mut byte))
            .await
            .expect("reply arrives")
            .unwrap();
        assert!(
            n == 1,
            "connection closed mid-line: {:?}",
            String::from_utf8_lossy(&line)
        );
        line.push(byte[0]);
        if byte[0] == b'\n' {
            return String::from_utf8(line).unwrap();
        }
    }
}

/// A minimal HTTP/1.1 client over a real socket; returns (status, body).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    http_with(addr, method, path, &[], body).await
}

pub async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    tokio::time::timeout(DEADLINE, try_http(addr, method, path, headers, body))
        .await
        .expect("http reply")
        .expect("http exchange")
}

/// Like [`http_with`], but a connection that fails or closes before a
/// whole reply (a daemon being killed) is an error instead of a panic.
pub async fn try_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let raw = exchange_http(addr, method, path, headers, body).await?;
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(parse_response(&raw))
}

/// The whole reply, headers included.
pub async fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    tokio::time::timeout(DEADLINE, exchange_http(addr, method, path, headers, body))
        .await
        .expect("http reply")
        .expect("http exchange")
}

/// Sends one request and reads until the server closes. (The HTTP server
/// closes on a half-closed socket, so the request is sent without shutting
/// down.)
async fn exchange_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    s.write_all(body).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    Ok(raw)
}

fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("http header end");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// The `rtsd` binary Cargo built for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rtsd"))
}

/// The real binary, serving on loopback with its data in `dir`.
pub struct Spawned {
    pub child: std::process::Child,
    pub telnet: SocketAddr,
    pub http: SocketAddr,
}

/// A test that fails before stopping its daemon must not leave it running
/// (holding the test's output pipe open).
impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Spawned {
    pub async fn start(dir: &Path) -> Spawned {
        Self::start_with_env(dir, &[]).await
    }

    /// Like [`Spawned::start`], with extra environment variables.
    pub async fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Spawned {
        Self::start_with(dir, &[], env).await
    }

    /// Like [`Spawned::start`], with extra flags and environment variables.
    pub async fn start_with(dir: &Path, flags: &[&str], env: &[(&str, &str)]) -> Spawned {
        let telnet: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let http_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = std::process::Command::new(binary())
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args([
                "--listen",
                &telnet.to_string(),
                "--http-listen",
                &http_addr.to_string(),
            ])
            .args(flags)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .spawn()
            .expect("binary starts");
        let s = Spawned {
            child,
            telnet,
            http: http_addr,
        };
        let start = Instant::now();
        while TcpStream::connect(http_addr).await.is_err() {
            assert!(start.elapsed() < DEADLINE, "daemon did not listen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        s
    }

    /// A counter from `/api/stats`, matched by metric and one tag value.
    pub async fn stat(&self, metric: &str, tag_value: &str) -> u64 {
        let (status, body) = http(self.http, "GET", "/api/stats", b"").await;
        assert_eq!(status, 200);
        let lines: serde_json::Value = serde_json::from_str(&body).unwrap();
        lines
            .as_array()
            .unwrap()
            .iter()
            .find(|l| {
                l["metric"] == metric
                    && (tag_value.is_empty()
                        || l["tags"]
                            .as_object()
                            .unwrap()
                            .values()
                            .any(|v| v == tag_value))
            })
            .and_then(|l| l["value"].as_str()?.parse().ok())
            .unwrap_or_else(|| panic!("no stat {metric} {tag_value}"))
    }

    /// Waits until the counter [`Spawned::stat`] reads satisfies `want`.
    pub async fn wait_stat(&self, metric: &str, tag_value: &str, want: impl Fn(u64) -> bool) {
        let start = Instant::now();
        loop {
            let value = self.stat(metric, tag_value).await;
            if want(value) {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{metric} {tag_value} stuck at {value}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its status.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "daemon did not exit");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The series of a JSON object with `metric` and `tags`, as the protocol
/// vectors and query cases write one.
pub fn series_key(v: &serde_json::Value) -> SeriesKey {
    let tags: Vec<(&str, &str)> = v["tags"]
        .as_object()
        .expect("tags")
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().expect("tag value")))
        .collect();
    SeriesKey::new(v["metric"].as_str().expect("metric"), tags)
}
