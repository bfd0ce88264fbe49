//! The bench's own `clickhouse-server`: a generated minimal config (the
//! shape `tests/it/clickhouse_support.rs` verified on 18.16) in a temp dir,
//! free loopback ports, killed if the benchmark leaves early.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::http::{http_get, http_get_ok};
use crate::measure::free_port;

/// Where Debian's package installs the server.
pub const DEFAULT_BIN: &str = "/usr/sbin/clickhouse-server";

/// How long a stopped server may take to exit before it is killed: 18.16
/// waits for running merges, which a benchmark need not.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server; its data lives under the dir given to [`start`].
///
/// [`start`]: ClickHouseServer::start
pub struct ClickHouseServer {
    child: Child,
    pub http: SocketAddr,
    /// What the server stores: tables, parts, metadata.
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl ClickHouseServer {
    /// Starts `bin` with its config, data and log under `dir`; returns
    /// once it answers `SELECT 1`.
    pub fn start(bin: &Path, dir: &Path, deadline: Instant) -> Result<ClickHouseServer> {
        std::fs::create_dir_all(dir)?;
        let (http, tcp) = (free_port()?, free_port()?);
        let root = dir.display();
        let config = format!(
            "<yandex>\n\
             <logger><level>warning</level><console>1</console></logger>\n\
             <http_port>{http_port}</http_port>\n\
             <tcp_port>{tcp_port}</tcp_port>\n\
             <listen_host>127.0.0.1</listen_host>\n\
             <path>{root}/data/</path>\n\
             <tmp_path>{root}/tmp/</tmp_path>\n\
             <user_files_path>{root}/user_files/</user_files_path>\n\
             <format_schema_path>{root}/format_schemas/</format_schema_path>\n\
             <users_config>{root}/users.xml</users_config>\n\
             <default_profile>default</default_profile>\n\
             <default_database>default</default_database>\n\
             <mark_cache_size>53687091</mark_cache_size>\n\
             </yandex>\n",
            http_port = http.port(),
            tcp_port = tcp.port(),
        );
        let users = "<yandex>\n\
             <profiles><default></default></profiles>\n\
             <users><default><password></password><networks><ip>::/0</ip></networks>\
             <profile>default</profile><quota>default</quota></default></users>\n\
             <quotas><default></default></quotas>\n\
             </yandex>\n";
        std::fs::write(dir.join("config.xml"), config)?;
        std::fs::write(dir.join("users.xml"), users)?;
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
        let mut server = ClickHouseServer {
            child,
            http,
            data_dir: dir.join("data"),
            log,
        };
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "clickhouse-server exited at start: {status}\n{}",
                    server.log_tail()
                );
            }
            if http_get(http, "/?query=SELECT%201", None).is_ok_and(|(s, _)| s == 200) {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                bail!(
                    "clickhouse-server did not answer in time\n{}",
                    server.log_tail()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
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
