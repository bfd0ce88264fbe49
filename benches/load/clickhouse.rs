//! The bench's own `clickhouse-server`s: a generated minimal config (the
//! shape `tests/it/clickhouse_support.rs` verified on 18.16) in a temp dir,
//! free loopback ports, killed if the benchmark leaves early. Two or more
//! form the cluster [`CLUSTER`], one shard each, every server knowing it.

use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::http::{free_addr, http_get, http_get_ok};

/// Where Debian's package installs the server.
pub const DEFAULT_BIN: &str = "/usr/sbin/clickhouse-server";
/// And the client, which runs the cluster DDL.
const CLIENT_BIN: &str = "/usr/bin/clickhouse-client";

/// The `remote_servers` name of a cluster of more than one server.
pub const CLUSTER: &str = "bench";

/// How long a stopped server may take to exit before it is killed: 18.16
/// waits for running merges, which a benchmark need not.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server; its data lives under the dir given to
/// [`ClickHouseServer::start_all`].
pub struct ClickHouseServer {
    child: Child,
    pub http: SocketAddr,
    tcp_port: u16,
    /// What the server stores: tables, parts, metadata.
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl ClickHouseServer {
    /// Starts `shards` servers of `bin`, each under `dir/shardN` (just
    /// `dir` for one), and returns once all answer `SELECT 1`. More than
    /// one form [`CLUSTER`].
    pub fn start_all(
        bin: &Path,
        dir: &Path,
        shards: usize,
        deadline: Instant,
    ) -> Result<Vec<ClickHouseServer>> {
        let mut ports = Vec::new();
        for _ in 0..shards {
            ports.push((free_addr(), crate::ports::free_port()));
        }
        let remote_servers = match shards {
            1 => String::new(),
            _ => {
                let list: String = ports
                    .iter()
                    .map(|(_, tcp)| {
                        format!(
                            "<shard><replica><host>127.0.0.1</host><port>{tcp}</port></replica></shard>"
                        )
                    })
                    .collect();
                format!("<remote_servers><{CLUSTER}>{list}</{CLUSTER}></remote_servers>")
            }
        };
        let mut servers = Vec::new();
        for (i, &(http, tcp)) in ports.iter().enumerate() {
            let dir = match shards {
                1 => dir.to_path_buf(),
                _ => dir.join(format!("shard{i}")),
            };
            servers.push(ClickHouseServer::spawn(
                bin,
                &dir,
                http,
                tcp,
                &remote_servers,
            )?);
        }
        for server in &mut servers {
            server.wait_ready(deadline)?;
        }
        Ok(servers)
    }

    fn spawn(
        bin: &Path,
        dir: &Path,
        http: SocketAddr,
        tcp_port: u16,
        remote_servers: &str,
    ) -> Result<ClickHouseServer> {
        std::fs::create_dir_all(dir)?;
        crate::clickhouse_files::write(dir, http.port(), tcp_port, remote_servers)?;
        let log = dir.join("clickhouse.log");
        let out = File::create(&log)?;
        let mut cmd = Command::new(bin);
        cmd.arg(format!(
            "--config-file={}",
            dir.join("config.xml").display()
        ))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        Ok(ClickHouseServer {
            child,
            http,
            tcp_port,
            data_dir: dir.join("data"),
            log,
        })
    }

    fn wait_ready(&mut self, deadline: Instant) -> Result<()> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "clickhouse-server exited at start: {status}\n{}",
                    self.log_tail()
                );
            }
            if http_get(self.http, "/?query=SELECT%201", None).is_ok_and(|(s, _)| s == 200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "clickhouse-server did not answer in time\n{}",
                    self.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a `;`-separated script through `clickhouse-client
    /// --multiquery`, as an operator creates a cluster's tables.
    pub fn run_script(&self, script: &str) -> Result<()> {
        let mut child = Command::new(CLIENT_BIN)
            .args(["--host", "127.0.0.1", "--port", &self.tcp_port.to_string()])
            .args(["--multiquery", "--receive_timeout=60", "--send_timeout=60"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {CLIENT_BIN}"))?;
        child
            .stdin
            .take()
            .context("clickhouse-client's stdin")?
            .write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "clickhouse-client failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Bytes of the active parts of every table, as `system.parts` counts
    /// them: the data dir less parts merged away but not yet deleted
    /// (ClickHouse keeps those for `old_parts_lifetime`, 8 minutes).
    pub fn active_part_bytes(&self) -> Result<u64> {
        let body = http_get_ok(
            self.http,
            "/?query=SELECT%20sum(bytes_on_disk)%20FROM%20system.parts%20WHERE%20active",
            None,
        )?;
        body.trim()
            .parse()
            .with_context(|| format!("system.parts answered {body:?}"))
    }

    /// Parts of rtsd's tables, active and all, for the report: how far the
    /// background merges got.
    pub fn part_counts(&self) -> Result<String> {
        let body = http_get_ok(
            self.http,
            "/?query=SELECT%20countIf(active)%2C%20count()%20FROM%20system.parts%20WHERE%20database%20!%3D%20'system'",
            None,
        )?;
        let mut fields = body.split_whitespace();
        match (fields.next(), fields.next()) {
            (Some(active), Some(all)) => Ok(format!("{active} active of {all}")),
            _ => bail!("system.parts answered {body:?}"),
        }
    }

    /// SIGTERM, then waits; kills it past [`STOP_TIMEOUT`]. Returns how long
    /// it took and whether it had to be killed.
    pub fn stop(&mut self) -> Result<(Duration, bool)> {
        let start = Instant::now();
        if self.child.try_wait()?.is_some() {
            return Ok((Duration::ZERO, false));
        }
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill")?;
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok((start.elapsed(), false));
            }
            if start.elapsed() > STOP_TIMEOUT {
                self.kill();
                return Ok((start.elapsed(), true));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // Errors here mean it exited meanwhile, which is what we want.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `18.16.1 (Debian)` from the package, else from the binary's `--version`.
pub fn version(bin: &Path) -> String {
    let from_dpkg = || {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f=${Version}", "clickhouse-server"])
            .output()
            .ok()?;
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let v = v.split(['+', '-']).next().unwrap_or("").to_string();
        (out.status.success() && !v.is_empty()).then(|| format!("{v} (Debian)"))
    };
    if bin.starts_with("/usr") {
        if let Some(v) = from_dpkg() {
            return v;
        }
    }
    "(unknown version)".to_string()
}
