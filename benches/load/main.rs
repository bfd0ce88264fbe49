//! End-to-end load benchmark: the real `rtsd` binary (on its embedded store,
//! on ClickHouse, or both) and VictoriaMetrics, side by side, on one
//! generated OpenTSDB telnet stream.
//!
//! Run it with `cargo bench --bench load`, options after `--`:
//! `cargo bench --bench load -- --points 5000000 --series 10000 --connections 4 --peer vm`,
//! `cargo bench --bench load -- --stores embedded,clickhouse` or
//! `cargo bench --bench load -- --stores clickhouse --clickhouse-nodes 2 --peer none`
//! (add `--clickhouse-shards 2` for a two-shard cluster)
//! (`-- --help` lists them all). The table is printed and written to
//! `load-report.md` in the target directory. Without cargo's `--bench` flag
//! (`cargo test --benches`) it runs a small rtsd-only smoke pass instead,
//! which writes no report file, so the harness itself stays tested.
//!
//! # Method
//!
//! **Stream.** Generated in memory before any clock starts, from a fixed seed,
//! so every system and every run sees the same bytes. `--series` series are
//! ten metrics (`sys.cpu.user`, `sys.mem.free`, `net.bytes.in`, ...) × hosts
//! (`host=web-NNNN`) × a second tag with four values whose key depends on the
//! metric (`cpu`, `numa`, `iface`, `dev`, `mount`, `state`). Values mix
//! monotonic integer counters, integer gauges and float gauges printed with
//! one or two decimals. Points are 10 s apart and the newest one lies just
//! before now, so hour chunks older than the seal grace are sealed and the
//! rest stay open in the head, as in production; the default 4,000 series at
//! 2,000,000 points span 83 minutes, which always crosses an hour boundary.
//! The stream is time-major, as collectors send it: at every timestamp each
//! host sends all its series. Hosts are spread over `--connections` TCP
//! connections, one sending thread each; a series that does not get a full
//! share starts one interval late, so exactly `--points` lines are sent.
//!
//! **Per system.** Each system starts in a fresh temp data dir on free
//! loopback ports. Every connection is opened first, then all threads start
//! writing at once (time zero) as fast as the server takes the bytes and
//! half-close when done. The benchmark then waits until every point is
//! stored (rtsd: `tsd.rtsd.points.stored` in `/api/stats`; VictoriaMetrics:
//! `vm_rows_inserted_total{type="opentsdb"}` in `/metrics`, followed by
//! `/internal/force_flush`) and then until every point is *queryable*: rtsd
//! answers `sum:0all-count:<metric>` over the whole range summed over the
//! metrics, VictoriaMetrics answers `sum(count_over_time({__name__=~".+"}[range]))`
//! (with `nocache=1`, which stops it from hiding the last 30 s). Both must
//! equal the number of points sent. rtsd runs with `--overflow block` so a
//! fast sender is pushed back over TCP instead of shedding points, which is
//! what VictoriaMetrics does too; VictoriaMetrics otherwise keeps every
//! default but its listen addresses and the number of series one query may
//! touch (the count above reads them all).
//!
//! **rtsd on ClickHouse** (`--stores clickhouse`). The benchmark starts its
//! own `clickhouse-server` (a minimal generated config in the run's temp
//! dir, free loopback ports), then the rtsd node(s) with `--store
//! clickhouse --clickhouse-url`, one after the other (each creates the
//! tables if missing). With `--clickhouse-nodes N` the connections are
//! dealt out among N nodes on that one server (the single layout: every
//! node writes and reads the same tables, so the count goes to the first
//! node only). With `--clickhouse-shards S` it starts S servers forming a
//! cluster of one shard each, runs `rtsd clickhouse-schema --cluster`
//! through `clickhouse-client` on each, and node `i` runs with
//! `--clickhouse-cluster` on server `i mod S`: inserts go through the
//! `Distributed` tables (synchronously, so a shipped point is on its
//! shard) and the count reads every shard. A node has *stored* a point once it is in its spool and
//! has shipped it once `tsd.rtsd.spool.points` is 0: the run waits for
//! `points.stored` summed over the nodes to reach the points sent *and*
//! every spool to be empty, then for the same count as above through the
//! first node's `/api/query`. Server CPU and peak RSS cover every rtsd
//! node and every ClickHouse server (CPU summed; RSS summed and per
//! process); the data dir is the nodes' (their spools) plus ClickHouse's
//! `data/` after all stopped. ClickHouse gets SIGTERM after the nodes
//! have exited (killed after 60 s); *shutdown* is the nodes' only.
//! ClickHouse keeps merged-away parts for 8 minutes, so its dir can hold
//! a part twice: `system.parts`' active bytes at all-queryable are in the
//! details. All-queryable includes the last count query, which on
//! ClickHouse reads every point back through rtsd (seconds of wall and
//! CPU time, ClickHouse's and rtsd's); the details say how long it took,
//! and points/s and CPU are also given up to all stored, before it.
//!
//! **Figures.** *points/s* is points sent divided by the wall time from time
//! zero to all-queryable. *Server CPU* is the growth of `utime + stime` in
//! `/proc/<pid>/stat` (all threads) over the same interval, in
//! `getconf CLK_TCK` ticks; *points per CPU-second* divides by it. *Peak RSS*
//! is `VmHWM` from `/proc/<pid>/status` at all-queryable. The server then gets
//! SIGTERM (rtsd seals and flushes its head; VictoriaMetrics flushes its
//! in-memory parts); the time to exit is *shutdown*. *Bytes per point* is
//! the apparent size of the files left in the data dir divided by the
//! points, once for the whole dir (what the operator's disk holds) and once
//! without what the server never reads back as data: VictoriaMetrics'
//! `cache/` (several MiB whatever the load) and RocksDB's `LOG` files.
//! Per-thread CPU (grouped by thread name) and the data dir's top-level
//! breakdown are printed below the table to point at bottlenecks.
//!
//! **Caveats.** The loader shares the machine's cores with the server; its
//! own CPU time is reported. Threads that exit during the run are not in the
//! per-thread breakdown (their time is in the process total). One run is one
//! sample: on shared machines compare systems within a run, not across runs.

// The usage text and the report on stdout are what this program is for.
#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

mod clickhouse;
#[path = "../../tests/clickhouse/server_files.rs"]
mod clickhouse_files;
mod http;
mod measure;
#[path = "../../tests/common/ports.rs"]
mod ports;
mod procfs;
mod report;
mod systems;
mod workload;

use measure::{measure, Writes};
use report::{group, render, MIB};
use systems::{BenchAuth, OnClickHouse, Rtsd, Target, VictoriaMetrics};
use workload::Workload;

const USAGE: &str = "\
usage: cargo bench --bench load -- [OPTIONS]

  --points N            points to send in total (default 2000000)
  --series N            distinct series (default 4000)
  --connections N       TCP connections, one sending thread each (default 4)
  --stores LIST         rtsd stores to benchmark, comma-separated: embedded,
                        clickhouse (default embedded); clickhouse starts its
                        own clickhouse-server and runs rtsd --store clickhouse
  --clickhouse-nodes N  rtsd nodes on ClickHouse, connections dealt out among
                        them (default 1)
  --clickhouse-shards N clickhouse-servers: 1 (default), the single layout, or
                        a cluster of N one-shard servers with Distributed
                        tables (rtsd --clickhouse-cluster); node i inserts
                        into server i mod N
  --clickhouse-bin PATH clickhouse-server binary (default /usr/sbin/clickhouse-server)
  --peer vm|none        also benchmark VictoriaMetrics, or not (default vm)
  --rtsd-bin PATH       rtsd binary (default: the one this bench was built with)
  --vm-bin PATH         VictoriaMetrics binary (default: victoria-metrics on PATH)
  --writes bulk|lines   one write per buffer, or one write per line with
                        TCP_NODELAY as many collectors send (default bulk)
  --overflow POLICY     rtsd --overflow (default block, so nothing is shed)
  --queue-capacity N    rtsd --queue-capacity (default: rtsd's own)
  --auth                run rtsd with one token: each connection sends telnet
                        `auth basic` first, HTTP calls send the bearer secret
  --timeout SECS        per system, from first byte to all queryable (default 300)";

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("load benchmark failed: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<()> {
    let options = Options::parse(std::env::args().skip(1))?;
    let Some(options) = options else {
        println!("{USAGE}");
        return Ok(());
    };
    let mut systems: Vec<Box<dyn Target>> = Vec::new();
    let mut notes = Vec::new();
    for store in &options.stores {
        let clickhouse = match store {
            Store::Embedded => None,
            Store::ClickHouse => {
                if !options.clickhouse_bin.is_file() {
                    let note = format!(
                        "rtsd on ClickHouse not benchmarked: no {}",
                        options.clickhouse_bin.display()
                    );
                    eprintln!("{note}");
                    notes.push(note);
                    continue;
                }
                Some(OnClickHouse {
                    version: clickhouse::version(&options.clickhouse_bin),
                    bin: options.clickhouse_bin.clone(),
                    nodes: options.clickhouse_nodes,
                    shards: options.clickhouse_shards,
                })
            }
        };
        systems.push(Box::new(Rtsd {
            bin: options
                .rtsd_bin
                .clone()
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rtsd"))),
            overflow: options.overflow.clone(),
            queue_capacity: options.queue_capacity,
            auth: options.auth.then(BenchAuth::new).transpose()?,
            clickhouse,
        }));
    }
    if options.peer_vm {
        match VictoriaMetrics::find(options.vm_bin.as_deref()) {
            Ok(vm) => systems.push(Box::new(vm)),
            Err(e) => {
                let note = format!("VictoriaMetrics not benchmarked: {e:#}");
                eprintln!("{note}");
                notes.push(note);
            }
        }
    }

    let started = Instant::now();
    let workload = Workload::generate(options.points, options.series, options.connections)?;
    eprintln!(
        "generated {} points of {} series over {} connections ({:.1} MiB) in {:.1} s",
        group(workload.points),
        group(workload.series as u64),
        workload.streams.len(),
        workload.bytes() as f64 / MIB,
        started.elapsed().as_secs_f64()
    );

    let mut results = Vec::new();
    for system in &systems {
        eprintln!("benchmarking {} ...", system.name());
        let result = measure(system.as_ref(), &workload, options.writes, options.timeout);
        match &result {
            Ok(m) => eprintln!(
                "{}: {} points/s, all queryable after {:.2} s",
                system.name(),
                group(m.points_per_sec(workload.points) as u64),
                m.queryable.as_secs_f64()
            ),
            Err(e) => eprintln!("{}: failed: {e:#}", system.name()),
        }
        results.push((system.name(), result));
    }

    let report = render(&workload, options.writes, &results, &notes)?;
    println!("{report}");
    // A smoke pass must not overwrite the figures of the last real run.
    if options.full {
        let path = report_path();
        std::fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    if results.iter().any(|(_, r)| r.is_err()) {
        bail!("at least one system did not finish");
    }
    Ok(())
}

/// `load-report.md` beside the `rtsd` binary's profile directory, i.e. in the
/// target directory, wherever `CARGO_TARGET_DIR` put it.
fn report_path() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_rtsd"));
    let target = bin
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    target.join("load-report.md")
}

#[derive(Debug)]
struct Options {
    /// Run under `cargo bench`, not a smoke pass.
    full: bool,
    points: u64,
    series: usize,
    connections: usize,
    writes: Writes,
    stores: Vec<Store>,
    clickhouse_nodes: usize,
    clickhouse_shards: usize,
    clickhouse_bin: PathBuf,
    peer_vm: bool,
    rtsd_bin: Option<PathBuf>,
    vm_bin: Option<PathBuf>,
    overflow: String,
    queue_capacity: Option<u64>,
    auth: bool,
    timeout: Duration,
}

impl Options {
    /// `None` when help was asked for. Cargo appends `--bench` under
    /// `cargo bench`; without it this is a test run and the defaults shrink
    /// to a smoke pass.
    fn parse(args: impl Iterator<Item = String>) -> Result<Option<Options>> {
        let args: Vec<String> = args.collect();
        let bench = args.iter().any(|a| a == "--bench");
        let defaults = Options {
            full: bench,
            points: 2_000_000,
            series: 4_000,
            connections: 4,
            writes: Writes::Bulk,
            stores: vec![Store::Embedded],
            clickhouse_nodes: 1,
            clickhouse_shards: 1,
            clickhouse_bin: PathBuf::from(clickhouse::DEFAULT_BIN),
            peer_vm: true,
            rtsd_bin: None,
            vm_bin: None,
            overflow: "block".to_string(),
            queue_capacity: None,
            auth: false,
            timeout: Duration::from_secs(300),
        };
        let mut o = if bench {
            defaults
        } else {
            Options {
                points: 20_000,
                series: 200,
                connections: 2,
                peer_vm: false,
                timeout: Duration::from_secs(60),
                ..defaults
            }
        };
        let mut it = args.into_iter().filter(|a| a != "--bench");
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            if flag == "--help" || flag == "-h" {
                return Ok(None);
            }
            if flag == "--auth" {
                o.auth = true;
                continue;
            }
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next())
                    .ok_or_else(|| anyhow!("{flag} needs a value\n\n{USAGE}"))
            };
            match flag.as_str() {
                "--points" => o.points = number(&flag, &value()?)?,
                "--series" => o.series = number(&flag, &value()?)?,
                "--connections" => o.connections = number(&flag, &value()?)?,
                "--stores" => {
                    o.stores = value()?
                        .split(',')
                        .map(|store| match store.trim() {
                            "embedded" | "rocksdb" => Ok(Store::Embedded),
                            "clickhouse" => Ok(Store::ClickHouse),
                            other => {
                                bail!("--stores: {other:?} is neither embedded nor clickhouse")
                            }
                        })
                        .collect::<Result<_>>()?
                }
                "--clickhouse-nodes" => o.clickhouse_nodes = number(&flag, &value()?)?,
                "--clickhouse-shards" => o.clickhouse_shards = number(&flag, &value()?)?,
                "--clickhouse-bin" => o.clickhouse_bin = PathBuf::from(value()?),
                "--peer" => {
                    o.peer_vm = match value()?.as_str() {
                        "vm" | "victoria-metrics" => true,
                        "none" => false,
                        other => bail!("--peer: {other:?} is neither vm nor none"),
                    }
                }
                "--writes" => {
                    o.writes = match value()?.as_str() {
                        "bulk" => Writes::Bulk,
                        "lines" => Writes::Lines,
                        other => bail!("--writes: {other:?} is neither bulk nor lines"),
                    }
                }
                "--rtsd-bin" => o.rtsd_bin = Some(PathBuf::from(value()?)),
                "--vm-bin" => o.vm_bin = Some(PathBuf::from(value()?)),
                "--overflow" => o.overflow = value()?,
                "--queue-capacity" => o.queue_capacity = Some(number(&flag, &value()?)?),
                "--timeout" => o.timeout = Duration::from_secs(number(&flag, &value()?)?),
                // libtest's usual flags, which `cargo bench` users type from habit.
                "--nocapture" | "--quiet" | "-q" => {}
                _ => bail!("unknown argument {arg:?}\n\n{USAGE}"),
            }
        }
        if [
            o.series,
            o.connections,
            o.clickhouse_nodes,
            o.clickhouse_shards,
        ]
        .contains(&0)
            || o.points == 0
        {
            bail!("--points, --series, --connections and --clickhouse-* must be at least 1");
        }
        if o.stores.is_empty() {
            bail!("--stores names no store");
        }
        Ok(Some(o))
    }
}

/// Where the rtsd under test keeps its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    /// RocksDB in the data dir.
    Embedded,
    /// `--store clickhouse` on a clickhouse-server the bench starts.
    ClickHouse,
}

/// Parses `2000000` or `2_000_000`.
fn number<T: std::str::FromStr>(flag: &str, text: &str) -> Result<T> {
    text.replace('_', "")
        .parse()
        .map_err(|_| anyhow!("{flag}: {text:?} is not a positive whole number"))
}
