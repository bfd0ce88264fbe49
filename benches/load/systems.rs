//! The systems under test: how to start each one and how to ask it how many
//! points it has stored and how many a query over the whole range counts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Context, Result};
use serde_json::Value as Json;

use crate::clickhouse::CLUSTER;
use crate::http::{http_get_ok, truncate};
use crate::workload::{Workload, INTERVAL_SECS};

/// A system under test: how to start it and how to ask it how far it got.
pub trait Target {
    fn name(&self) -> String;
    /// Server processes to run, each on its own data dir and ports; the
    /// ingest connections are dealt out among them in turn.
    fn nodes(&self) -> usize {
        1
    }
    /// The ClickHouse servers the nodes store into, which the benchmark
    /// starts first.
    fn clickhouse(&self) -> Option<&OnClickHouse> {
        None
    }
    /// The DDL to run on every server of a ClickHouse cluster before any
    /// node starts (a node creates the tables itself only on one server).
    fn cluster_ddl(&self) -> Result<Option<String>> {
        Ok(None)
    }
    /// The command of one node; `clickhouse` is the URL of the server it
    /// inserts into, one of those [`Target::clickhouse`] asked for.
    fn command(
        &self,
        data_dir: &Path,
        telnet: SocketAddr,
        http: SocketAddr,
        clickhouse: Option<&str>,
    ) -> Command;
    /// A path that answers 200 once the server serves HTTP.
    fn health_path(&self) -> &'static str;
    /// How far one node got.
    fn progress(&self, http: SocketAddr) -> Result<Progress>;
    /// Called once everything is stored, before counting.
    fn make_queryable(&self, http: SocketAddr) -> Result<()>;
    /// Points a query over the whole range counts.
    fn count(&self, http: SocketAddr, workload: &Workload) -> Result<u64>;
    /// A line each ingest connection sends, and has answered, before the
    /// clock starts (a telnet `auth`).
    fn telnet_hello(&self) -> Option<String> {
        None
    }
}

#[derive(Default)]
pub struct Progress {
    pub stored: u64,
    /// Points the server says it will never store (dropped or rejected).
    pub lost: u64,
    /// Points stored locally but not yet where queries read them: rtsd's
    /// ClickHouse spool.
    pub pending: u64,
}

pub struct Rtsd {
    /// The binary to run: this build's unless `--rtsd-bin` names another
    /// (an older build, for before/after figures from one run).
    pub bin: PathBuf,
    pub overflow: String,
    pub queue_capacity: Option<u64>,
    /// With `--auth`: the config file defining the bench's token, so the
    /// run pays for authentication as a secured deployment does.
    pub auth: Option<BenchAuth>,
    /// `--store clickhouse` instead of the embedded store.
    pub clickhouse: Option<OnClickHouse>,
}

/// rtsd nodes serving on ClickHouse servers the benchmark starts.
pub struct OnClickHouse {
    pub bin: PathBuf,
    pub version: String,
    /// rtsd nodes sharing one dataset; node `i` inserts into and reads
    /// through shard `i % shards`.
    pub nodes: usize,
    /// 1: one server, the single layout. More: that many servers, one
    /// shard each, under `Distributed` tables (`--clickhouse-cluster`).
    pub shards: usize,
}

/// One token with `read` and `write` scopes in a config file of its own.
pub struct BenchAuth {
    config: tempfile::NamedTempFile,
}

impl BenchAuth {
    const NAME: &'static str = "bench";
    const SECRET: &'static str = "load-bench-secret";

    pub fn new() -> Result<BenchAuth> {
        let mut config = tempfile::Builder::new()
            .prefix("rtsd-load-auth-")
            .suffix(".toml")
            .tempfile()?;
        std::io::Write::write_all(
            &mut config,
            format!(
                "[[auth.token]]\nname = \"{}\"\nsecret = \"{}\"\nscopes = [\"read\", \"write\"]\n",
                Self::NAME,
                Self::SECRET
            )
            .as_bytes(),
        )?;
        Ok(BenchAuth { config })
    }
}

impl Rtsd {
    fn bearer(&self) -> Option<&'static str> {
        self.auth.as_ref().map(|_| BenchAuth::SECRET)
    }
}

impl Target for Rtsd {
    fn name(&self) -> String {
        let name = if self.bin == Path::new(env!("CARGO_BIN_EXE_rtsd")) {
            format!("rtsd {}", env!("CARGO_PKG_VERSION"))
        } else {
            format!("rtsd ({})", self.bin.display())
        };
        let name = match &self.clickhouse {
            Some(ch) => {
                let nodes = match ch.nodes {
                    1 => name,
                    n => format!("{n} × {name}"),
                };
                let servers = match ch.shards {
                    1 => format!("ClickHouse {}", ch.version),
                    n => format!("{n} shards of ClickHouse {}", ch.version),
                };
                format!("{nodes} → {servers}")
            }
            None => name,
        };
        match self.auth {
            Some(_) => format!("{name}, auth on"),
            None => name,
        }
    }

    fn nodes(&self) -> usize {
        self.clickhouse.as_ref().map_or(1, |ch| ch.nodes)
    }

    fn clickhouse(&self) -> Option<&OnClickHouse> {
        self.clickhouse.as_ref()
    }

    fn cluster_ddl(&self) -> Result<Option<String>> {
        if !self.clickhouse.as_ref().is_some_and(|ch| ch.shards > 1) {
            return Ok(None);
        }
        let out = Command::new(&self.bin)
            .args(["clickhouse-schema", "--cluster", CLUSTER])
            .output()
            .context("running rtsd clickhouse-schema")?;
        if !out.status.success() {
            anyhow::bail!(
                "rtsd clickhouse-schema failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Some(String::from_utf8(out.stdout)?))
    }

    fn command(
        &self,
        data_dir: &Path,
        telnet: SocketAddr,
        http: SocketAddr,
        clickhouse: Option<&str>,
    ) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", &telnet.to_string()])
            .args(["--http-listen", &http.to_string()])
            .args(["--overflow", &self.overflow]);
        if let Some(n) = self.queue_capacity {
            cmd.args(["--queue-capacity", &n.to_string()]);
        }
        if let Some(auth) = &self.auth {
            cmd.arg("--config").arg(auth.config.path());
        }
        if let Some(url) = clickhouse {
            cmd.args(["--store", "clickhouse", "--clickhouse-url", url]);
            if self.clickhouse.as_ref().is_some_and(|ch| ch.shards > 1) {
                cmd.args(["--clickhouse-cluster", CLUSTER]);
            }
        }
        cmd
    }

    fn telnet_hello(&self) -> Option<String> {
        self.auth
            .as_ref()
            .map(|_| format!("auth basic {} {}\n", BenchAuth::NAME, BenchAuth::SECRET))
    }

    fn health_path(&self) -> &'static str {
        "/api/version"
    }

    fn progress(&self, http: SocketAddr) -> Result<Progress> {
        let body = http_get_ok(http, "/api/stats", self.bearer())?;
        let stats: Vec<Json> = serde_json::from_str(&body).context("parsing /api/stats")?;
        let mut p = Progress::default();
        for stat in &stats {
            let value = stat.get("value").and_then(json_u64).unwrap_or(0);
            match stat.get("metric").and_then(Json::as_str) {
                Some("tsd.rtsd.points.stored") => p.stored += value,
                Some(
                    "tsd.rtsd.points.dropped"
                    | "tsd.rtsd.points.rejected"
                    | "tsd.rtsd.spool.dropped",
                ) => p.lost += value,
                Some("tsd.rtsd.spool.points") => p.pending += value,
                _ => {}
            }
        }
        Ok(p)
    }

    fn make_queryable(&self, _http: SocketAddr) -> Result<()> {
        Ok(())
    }

    fn count(&self, http: SocketAddr, w: &Workload) -> Result<u64> {
        let mut total = 0;
        for metric in &w.metrics {
            // 0all buckets are [start, end): end is one past the newest point.
            let query = serde_urlencoded::to_string([
                ("start", w.first_ts.to_string()),
                ("end", (w.last_ts + 1).to_string()),
                ("m", format!("sum:0all-count:{metric}")),
            ])?;
            let body = http_get_ok(http, &format!("/api/query?{query}"), self.bearer())?;
            let results: Vec<Json> = serde_json::from_str(&body)
                .with_context(|| format!("parsing the count of {metric}"))?;
            for result in &results {
                let dps = result
                    .get("dps")
                    .and_then(Json::as_object)
                    .ok_or_else(|| anyhow!("no dps object in {}", truncate(&body)))?;
                total += dps.values().filter_map(json_u64).sum::<u64>();
            }
        }
        Ok(total)
    }
}

pub struct VictoriaMetrics {
    bin: PathBuf,
    version: String,
}

impl VictoriaMetrics {
    pub fn find(bin: Option<&Path>) -> Result<VictoriaMetrics> {
        let bin = match bin {
            Some(b) => b.to_path_buf(),
            None => which("victoria-metrics").ok_or_else(|| {
                anyhow!("no victoria-metrics on PATH (apt-get install victoria-metrics)")
            })?,
        };
        // Debian's build prints an empty `-version`; the package knows better.
        let from_dpkg = || {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Version}", "victoria-metrics"])
                .output()
                .ok()?;
            let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !v.is_empty()).then(|| format!("{v} (Debian)"))
        };
        let from_flag = || {
            let out = Command::new(&bin).arg("-version").output().ok()?;
            let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!v.is_empty()).then_some(v)
        };
        let version = if bin.starts_with("/usr/bin") {
            from_dpkg()
        } else {
            None
        }
        .or_else(from_flag)
        .unwrap_or_else(|| "(unknown version)".to_string());
        Ok(VictoriaMetrics { bin, version })
    }
}

impl Target for VictoriaMetrics {
    fn name(&self) -> String {
        format!("VictoriaMetrics {}", self.version)
    }

    fn command(
        &self,
        data_dir: &Path,
        telnet: SocketAddr,
        http: SocketAddr,
        _clickhouse: Option<&str>,
    ) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg(format!("-storageDataPath={}", data_dir.display()))
            .arg(format!("-httpListenAddr={http}"))
            .arg(format!("-opentsdbListenAddr={telnet}"))
            // The count over every series must run at a million series;
            // by default a query may touch 300,000.
            .arg("-search.maxUniqueTimeseries=100000000");
        cmd
    }

    fn health_path(&self) -> &'static str {
        "/health"
    }

    fn progress(&self, http: SocketAddr) -> Result<Progress> {
        let body = http_get_ok(http, "/metrics", None)?;
        let stored = body
            .lines()
            .find_map(|l| {
                l.strip_prefix(r#"vm_rows_inserted_total{type="opentsdb"}"#)?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0, |v| v as u64);
        // 1.79 only logs the lines it cannot parse; it counts none.
        Ok(Progress {
            stored,
            ..Progress::default()
        })
    }

    fn make_queryable(&self, http: SocketAddr) -> Result<()> {
        http_get_ok(http, "/internal/force_flush", None).map(drop)
    }

    fn count(&self, http: SocketAddr, w: &Workload) -> Result<u64> {
        // The window (time - range, time] must reach back to the oldest point.
        let range = w.last_ts - w.first_ts + INTERVAL_SECS;
        let query = serde_urlencoded::to_string([
            (
                "query",
                format!(r#"sum(count_over_time({{__name__=~".+"}}[{range}s]))"#),
            ),
            ("time", w.last_ts.to_string()),
            ("nocache", "1".to_string()),
        ])?;
        let body = http_get_ok(http, &format!("/api/v1/query?{query}"), None)?;
        let reply: Json = serde_json::from_str(&body).context("parsing /api/v1/query")?;
        let result = reply
            .pointer("/data/result")
            .and_then(Json::as_array)
            .ok_or_else(|| anyhow!("no data.result in {}", truncate(&body)))?;
        Ok(result
            .iter()
            .filter_map(|r| r.pointer("/value/1").and_then(json_u64))
            .sum())
    }
}

/// A count that arrives as a JSON number or, OpenTSDB style, a string.
fn json_u64(v: &Json) -> Option<u64> {
    match v {
        Json::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f.round() as u64)),
        Json::String(s) => s.parse::<f64>().ok().map(|f| f.round() as u64),
        _ => None,
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
