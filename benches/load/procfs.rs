//! What Linux tells about a process and a machine: CPU ticks per process and
//! per thread, peak RSS, the CPU model, and the size of a data dir.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::thread;

use anyhow::{anyhow, Context, Result};

/// `/proc/<pid>/stat`; `pid` may be `self`.
pub fn proc_stat(pid: &str) -> Result<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))
}

/// `(comm, utime + stime)` from a `/proc/.../stat` line. The name sits in
/// parentheses and may hold spaces, so fields are counted after the last `)`.
fn stat_fields(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    // After the name come state (field 3) ... utime (14) and stime (15).
    let utime: u64 = rest.nth(11)?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

/// utime + stime of a `/proc/.../stat` line, in clock ticks.
pub fn cpu_ticks(stat: &str) -> Result<u64> {
    stat_fields(stat)
        .map(|(_, t)| t)
        .ok_or_else(|| anyhow!("unreadable stat line {stat:?}"))
}

/// `sysconf(_SC_CLK_TCK)` without `unsafe`: ask `getconf`; Linux uses 100.
pub fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// A process's CPU use, per thread and in total, and its peak RSS.
pub struct ProcSample {
    pub ticks: u64,
    /// Keyed by thread id so a name shared by many threads adds up right.
    threads: BTreeMap<String, (String, u64)>,
    pub peak_rss_bytes: u64,
    /// The machine's 1, 5 and 15 minute load averages.
    pub load_average: String,
}

impl ProcSample {
    pub fn take(pid: u32) -> Result<ProcSample> {
        let ticks = cpu_ticks(&proc_stat(&pid.to_string())?)?;
        let mut threads = BTreeMap::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let task = task?;
            // A thread may end between listing and reading; skip it.
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            if let Some((comm, t)) = stat_fields(&stat) {
                let tid = task.file_name().to_string_lossy().into_owned();
                threads.insert(tid, (comm.to_string(), t));
            }
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let peak_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        let load_average = loadavg
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(ProcSample {
            ticks,
            threads,
            peak_rss_bytes: peak_kib * 1024,
            load_average,
        })
    }

    /// CPU seconds per thread name (digits stripped, so `rocksdb:low3` and
    /// `rocksdb:low7` add up) between `before` and `self`, largest first.
    pub fn threads_since(&self, before: &ProcSample, tick: f64) -> Vec<(String, f64)> {
        let mut by_name: BTreeMap<String, u64> = BTreeMap::new();
        for (tid, (comm, t)) in &self.threads {
            let base = before.threads.get(tid).map_or(0, |(_, b)| *b);
            let name = comm
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .to_string();
            *by_name.entry(name).or_default() += t.saturating_sub(base);
        }
        let mut out: Vec<(String, f64)> = by_name
            .into_iter()
            .map(|(n, t)| (n, t as f64 / tick))
            .filter(|(_, s)| *s > 0.0)
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }
}

/// Sizes of what a server left in its data dir.
pub struct DiskUsage {
    pub apparent: u64,
    pub allocated: u64,
    /// Apparent bytes less what the server would rebuild or never read:
    /// VictoriaMetrics' top-level `cache/` and RocksDB's info logs.
    pub data: u64,
    /// Apparent bytes per top-level entry, largest first.
    pub parts: Vec<(String, u64)>,
}

impl DiskUsage {
    pub fn of(dir: &Path) -> Result<DiskUsage> {
        let mut usage = DiskUsage {
            apparent: 0,
            allocated: 0,
            data: 0,
            parts: Vec::new(),
        };
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let size = tree_size(&entry.path())?;
            usage.apparent += size.apparent;
            usage.allocated += size.allocated;
            if name != "cache" {
                usage.data += size.data;
            }
            usage.parts.push((name, size.apparent));
        }
        usage.parts.sort_by_key(|part| std::cmp::Reverse(part.1));
        Ok(usage)
    }
}

impl DiskUsage {
    /// The usage of several dirs as one; with more than one, each part is
    /// named after its dir's label (`ClickHouse/data`).
    pub fn sum(dirs: &[(String, DiskUsage)]) -> DiskUsage {
        let mut total = DiskUsage {
            apparent: 0,
            allocated: 0,
            data: 0,
            parts: Vec::new(),
        };
        for (label, usage) in dirs {
            total.apparent += usage.apparent;
            total.allocated += usage.allocated;
            total.data += usage.data;
            for (name, bytes) in &usage.parts {
                let name = match dirs.len() {
                    1 => name.clone(),
                    _ => format!("{label}/{name}"),
                };
                total.parts.push((name, *bytes));
            }
        }
        total.parts.sort_by_key(|part| std::cmp::Reverse(part.1));
        total
    }
}

#[derive(Default)]
struct TreeSize {
    apparent: u64,
    allocated: u64,
    /// Apparent bytes without RocksDB info logs (`LOG`, `LOG.old.*`).
    data: u64,
}

fn tree_size(path: &Path) -> Result<TreeSize> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let log = name == "LOG" || name.starts_with("LOG.old");
        return Ok(TreeSize {
            apparent: meta.len(),
            allocated: meta.blocks() * 512,
            data: if log { 0 } else { meta.len() },
        });
    }
    let mut sum = TreeSize::default();
    for entry in std::fs::read_dir(path)? {
        let size = tree_size(&entry?.path())?;
        sum.apparent += size.apparent;
        sum.allocated += size.allocated;
        sum.data += size.data;
    }
    Ok(sum)
}

/// The CPU model, CPU count and memory, for the report's first line.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim())
        })
        .unwrap_or("unknown CPU");
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{model}, {cpus} CPUs (nproc), {mem_gib:.0} GiB RAM")
}
