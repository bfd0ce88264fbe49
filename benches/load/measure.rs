//! One system's run: start it in a fresh data dir, send the stream over all
//! connections at once, wait until every point is stored and queryable,
//! sample `/proc`, stop it with SIGTERM and measure what it left on disk.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::clickhouse::ClickHouseServer;
use crate::http::{free_addr, http_get};
use crate::procfs::{clock_ticks_per_sec, cpu_ticks, proc_stat, DiskUsage, ProcSample};
use crate::systems::{Progress, Target};
use crate::workload::Workload;

/// How often the benchmark asks a server how far it got.
const POLL: Duration = Duration::from_millis(50);
/// How long a server may take to start listening or to exit after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(120);

/// What one system's run measured; times count from the first byte sent.
pub struct Measurement {
    pub sent: Duration,
    pub stored: Duration,
    pub queryable: Duration,
    pub server_cpu_secs: f64,
    /// Server CPU up to all stored, before the count query.
    pub server_cpu_stored_secs: f64,
    pub loader_cpu_secs: f64,
    pub peak_rss_bytes: u64,
    pub shutdown: Duration,
    pub disk: DiskUsage,
    /// CPU seconds per thread name over the run, largest first.
    pub threads: Vec<(String, f64)>,
    /// Bytes the server wrote back on the ingest connections, and the first line.
    pub replies: (u64, String),
    pub connections: usize,
    /// `/proc/loadavg` when the run started: other work on the machine.
    pub load_average: String,
    /// Points the server dropped or rejected instead of storing.
    pub lost: u64,
    /// How long the count that found every point took: *queryable*
    /// includes it, and on ClickHouse it reads every point back.
    pub count_query: Duration,
    /// `VmHWM` per process (`server`, or `rtsd`, `rtsd node N`, `ClickHouse`).
    pub peak_rss_by_process: Vec<(String, u64)>,
    /// What each process left on disk, same labels.
    pub disk_by_process: Vec<(String, DiskUsage)>,
    /// Set when the system stores into a ClickHouse server.
    pub clickhouse: Option<ClickHouseFigures>,
}

/// What the ClickHouse server itself says about the run.
pub struct ClickHouseFigures {
    /// Bytes of active parts at all-queryable (`system.parts`), summed
    /// over the servers.
    pub active_bytes: u64,
    /// Parts of rtsd's tables at all-queryable, active of all, per server.
    pub parts: String,
    /// How long the slowest server took to stop, and whether any had to
    /// be killed.
    pub stop: (Duration, bool),
}

impl Measurement {
    pub fn points_per_sec(&self, points: u64) -> f64 {
        points as f64 / self.queryable.as_secs_f64()
    }
}

/// How a sending thread hands its stream to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// As few `write` calls as the kernel allows: buffered collectors.
    Bulk,
    /// One `write` per line with `TCP_NODELAY`: collectors and client
    /// libraries that `send()` each point as it comes.
    Lines,
}

pub fn measure(
    target: &dyn Target,
    w: &Workload,
    writes: Writes,
    timeout: Duration,
) -> Result<Measurement> {
    let dir = tempfile::Builder::new().prefix("rtsd-load-").tempdir()?;
    let ready_by = Instant::now() + START_TIMEOUT;
    let mut clickhouse = match target.clickhouse() {
        Some(ch) => ClickHouseServer::start_all(
            &ch.bin,
            &dir.path().join("clickhouse"),
            ch.shards,
            ready_by,
        )?,
        None => Vec::new(),
    };
    if let Some(ddl) = target.cluster_ddl()? {
        for server in &clickhouse {
            server.run_script(&ddl)?;
        }
    }
    let urls: Vec<String> = clickhouse.iter().map(ClickHouseServer::url).collect();
    let mut servers = Vec::new();
    for node in 0..target.nodes() {
        let node_dir = match target.nodes() {
            1 => dir.path().to_path_buf(),
            _ => dir.path().join(format!("node{node}")),
        };
        std::fs::create_dir_all(&node_dir)?;
        let url = (!urls.is_empty()).then(|| urls[node % urls.len()].as_str());
        let mut server = Server::start(target, &node_dir, url)?;
        // One at a time: on one ClickHouse server each node creates the
        // tables if they are missing, and two doing so at once would race.
        wait_ready(target, &mut server, ready_by).map_err(|e| with_logs(e, &[&server]))?;
        servers.push(server);
    }
    let result = drive(target, &mut servers, &mut clickhouse, w, writes, timeout);
    result.map_err(|e| {
        let mut e = with_logs(e, &servers.iter().collect::<Vec<_>>());
        for ch in &clickhouse {
            e = anyhow!(
                "{e:#}\n--- last lines of a ClickHouse log ---\n{}",
                ch.log_tail()
            );
        }
        e
    })
}

fn with_logs(e: anyhow::Error, servers: &[&Server]) -> anyhow::Error {
    let logs: Vec<String> = servers.iter().map(|s| s.log_tail()).collect();
    anyhow!(
        "{e:#}\n--- last lines of the server log ---\n{}",
        logs.join("\n---\n")
    )
}

fn wait_ready(target: &dyn Target, server: &mut Server, ready_by: Instant) -> Result<()> {
    until(ready_by, "the server to answer HTTP", || {
        server.check_running()?;
        let health = http_get(server.http, target.health_path(), None);
        Ok(health.is_ok_and(|(status, _)| status == 200))
    })
}

/// CPU and memory of every process a system runs, sampled together.
struct Samples(Vec<ProcSample>);

impl Samples {
    fn take(pids: &[u32]) -> Result<Samples> {
        pids.iter()
            .map(|&pid| ProcSample::take(pid))
            .collect::<Result<_>>()
            .map(Samples)
    }

    fn ticks(&self) -> u64 {
        self.0.iter().map(|s| s.ticks).sum()
    }
}

fn drive(
    target: &dyn Target,
    servers: &mut [Server],
    clickhouse: &mut [ClickHouseServer],
    w: &Workload,
    writes: Writes,
    timeout: Duration,
) -> Result<Measurement> {
    let mut pids: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();
    let mut labels: Vec<String> = match (servers.len(), clickhouse.is_empty()) {
        (1, true) => vec!["server".to_string()],
        (1, false) => vec!["rtsd".to_string()],
        (n, _) => (0..n).map(|i| format!("rtsd node {i}")).collect(),
    };
    for (i, ch) in clickhouse.iter().enumerate() {
        pids.push(ch.pid());
        labels.push(match clickhouse.len() {
            1 => "ClickHouse".to_string(),
            _ => format!("ClickHouse shard {i}"),
        });
    }
    let ready_by = Instant::now() + START_TIMEOUT;
    let mut conns = Vec::with_capacity(w.streams.len());
    for i in 0..w.streams.len() {
        let mut stream = retry_connect(servers[i % servers.len()].telnet, ready_by)?;
        if let Some(hello) = target.telnet_hello() {
            say_hello(&mut stream, &hello)?;
        }
        let reader = stream.try_clone()?;
        reader.set_read_timeout(Some(POLL))?;
        conns.push((stream, reader));
    }

    let barrier = Barrier::new(w.streams.len() + 1);
    let stop_readers = AtomicBool::new(false);
    let cpu_before = Samples::take(&pids)?;
    let loader_before = cpu_ticks(&proc_stat("self")?)?;
    thread::scope(|scope| -> Result<Measurement> {
        let mut senders = Vec::new();
        let mut readers = Vec::new();
        for ((mut stream, reader), bytes) in conns.into_iter().zip(&w.streams) {
            let barrier = &barrier;
            senders.push(scope.spawn(move || -> io::Result<Instant> {
                barrier.wait();
                match writes {
                    Writes::Bulk => stream.write_all(bytes)?,
                    Writes::Lines => {
                        stream.set_nodelay(true)?;
                        for line in bytes.split_inclusive(|&b| b == b'\n') {
                            stream.write_all(line)?;
                        }
                    }
                }
                stream.shutdown(Shutdown::Write)?;
                Ok(Instant::now())
            }));
            let stop = &stop_readers;
            readers.push(scope.spawn(move || drain_replies(reader, stop)));
        }
        barrier.wait();
        let t0 = Instant::now();
        let deadline = t0 + timeout;
        // Queries go to the first node: with ClickHouse every node reads
        // the one dataset all of them write.
        let http = servers[0].http;
        let nodes: Vec<SocketAddr> = servers.iter().map(|s| s.http).collect();
        let run = || -> Result<Measurement> {
            until(deadline, "the stream to be sent", || {
                for server in servers.iter_mut() {
                    server.check_running()?;
                }
                Ok(senders.iter().all(|s| s.is_finished()))
            })?;
            let mut sent = t0;
            for sender in senders {
                let done = sender
                    .join()
                    .map_err(|_| anyhow!("a sending thread panicked"))?
                    .context("sending the stream")?;
                sent = sent.max(done);
            }

            // Shed or rejected points are a figure of the run, not a
            // failure: the default drop-oldest policy may shed under load.
            // Points still in a spool are not stored where queries look.
            let mut last = Progress::default();
            until(deadline, "every point to be stored or counted lost", || {
                let mut sum = Progress::default();
                for (server, &node) in servers.iter_mut().zip(&nodes) {
                    server.check_running()?;
                    let p = target.progress(node)?;
                    sum.stored += p.stored;
                    sum.lost += p.lost;
                    sum.pending += p.pending;
                }
                last = sum;
                Ok(last.stored + last.lost >= w.points && last.pending == 0)
            })
            .with_context(|| {
                format!(
                    "{} of {} stored, {} not yet shipped",
                    last.stored, w.points, last.pending
                )
            })?;
            let stored = t0.elapsed();
            // Before the count query, which on ClickHouse costs seconds
            // of CPU of its own.
            let cpu_stored = Samples::take(&pids)?;
            let expected = w.points - last.lost;
            target.make_queryable(http)?;
            let mut counted = 0;
            let mut count_query = Duration::ZERO;
            until(deadline, "every point to be queryable", || {
                let asked = Instant::now();
                counted = target.count(http, w)?;
                count_query = asked.elapsed();
                if counted > expected {
                    bail!("a query counts {counted} points but {expected} were stored");
                }
                Ok(counted == expected)
            })
            .with_context(|| format!("a query counts {counted} of {expected}"))?;
            let queryable = t0.elapsed();
            let cpu_after = Samples::take(&pids)?;
            let loader_after = cpu_ticks(&proc_stat("self")?)?;

            stop_readers.store(true, Ordering::Relaxed);
            let mut replies = (0, String::new());
            for reader in readers {
                let (bytes, first) = reader.join().map_err(|_| anyhow!("a reader panicked"))?;
                replies.0 += bytes;
                if replies.1.is_empty() {
                    replies.1 = first;
                }
            }

            let tick = clock_ticks_per_sec();
            let mut threads = Vec::new();
            for ((after, before), label) in cpu_after.0.iter().zip(&cpu_before.0).zip(&labels) {
                for (name, secs) in after.threads_since(before, tick) {
                    // Threads add up by name over the rtsd nodes and over
                    // the ClickHouse servers, each kind under its own names.
                    let name = match label.starts_with("ClickHouse") {
                        true => format!("ClickHouse {name}"),
                        false => name,
                    };
                    match threads.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, total)) => *total += secs,
                        None => threads.push((name, secs)),
                    }
                }
            }
            threads.sort_by(|a: &(String, f64), b| b.1.total_cmp(&a.1));
            let mut clickhouse_parts = None;
            if !clickhouse.is_empty() {
                let mut active = 0;
                let mut counts = Vec::new();
                for ch in clickhouse.iter() {
                    active += ch.active_part_bytes()?;
                    counts.push(ch.part_counts()?);
                }
                clickhouse_parts = Some((active, counts.join(", ")));
            }

            let shutdown = terminate_all(servers)?;
            let mut disk = Vec::new();
            for (server, label) in servers.iter().zip(&labels) {
                disk.push((label.clone(), DiskUsage::of(&server.data_dir)?));
            }
            let mut clickhouse_stop: Option<(Duration, bool)> = None;
            for (ch, label) in clickhouse.iter_mut().zip(&labels[servers.len()..]) {
                let (took, killed) = ch.stop()?;
                let (most, any_killed) = clickhouse_stop.unwrap_or_default();
                clickhouse_stop = Some((most.max(took), any_killed || killed));
                disk.push((label.clone(), DiskUsage::of(&ch.data_dir)?));
            }
            Ok(Measurement {
                sent: sent - t0,
                stored,
                queryable,
                server_cpu_secs: (cpu_after.ticks() - cpu_before.ticks()) as f64 / tick,
                server_cpu_stored_secs: (cpu_stored.ticks() - cpu_before.ticks()) as f64 / tick,
                loader_cpu_secs: (loader_after - loader_before) as f64 / tick,
                peak_rss_bytes: cpu_after.0.iter().map(|s| s.peak_rss_bytes).sum(),
                peak_rss_by_process: labels
                    .iter()
                    .cloned()
                    .zip(cpu_after.0.iter().map(|s| s.peak_rss_bytes))
                    .collect(),
                shutdown,
                disk: DiskUsage::sum(&disk),
                disk_by_process: disk,
                threads,
                replies,
                connections: w.streams.len(),
                load_average: cpu_before.0[0].load_average.clone(),
                lost: last.lost,
                count_query,
                clickhouse: clickhouse_parts.map(|(active_bytes, parts)| ClickHouseFigures {
                    active_bytes,
                    parts,
                    stop: clickhouse_stop.unwrap_or_default(),
                }),
            })
        };
        let result = run();
        if result.is_err() {
            // The scope joins every thread: free the blocked ones first.
            stop_readers.store(true, Ordering::Relaxed);
            for server in servers.iter_mut() {
                server.kill();
            }
        }
        result
    })
}

/// SIGTERM to every node at once, then waits for all; returns how long
/// the last one took.
fn terminate_all(servers: &mut [Server]) -> Result<Duration> {
    let start = Instant::now();
    for server in servers.iter() {
        server.signal_term()?;
    }
    for server in servers.iter_mut() {
        server.wait_exit(start)?;
    }
    Ok(start.elapsed())
}

/// Polls `check` every [`POLL`] until it says done, fails, or time is up.
fn until(deadline: Instant, what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out waiting for {what}");
        }
        thread::sleep(POLL);
    }
}

/// Sends `hello` and waits for its one-line answer, which must not be an
/// error (telnet errors name their command and end in a colon clause).
fn say_hello(stream: &mut TcpStream, hello: &str) -> Result<()> {
    stream.write_all(hello.as_bytes())?;
    stream.set_read_timeout(Some(START_TIMEOUT))?;
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while answer.last() != Some(&b'\n') {
        if stream.read(&mut byte)? == 0 {
            bail!("the server closed the connection after {:?}", hello.trim());
        }
        answer.push(byte[0]);
    }
    let answer = String::from_utf8_lossy(&answer);
    if answer.contains("FAIL") || answer.contains(": ") {
        bail!("{:?} was answered {:?}", hello.trim(), answer.trim());
    }
    Ok(())
}

/// Reads what the server says on an ingest connection (error replies, if any)
/// so it can never stall on a full socket buffer.
fn drain_replies(mut stream: TcpStream, stop: &AtomicBool) -> (u64, String) {
    let mut total = 0u64;
    let mut first = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if first.len() < 200 {
                    first.extend_from_slice(&buf[..n.min(200)]);
                }
                total += n as u64;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&first);
    (total, text.lines().next().unwrap_or("").to_string())
}

fn retry_connect(addr: SocketAddr, deadline: Instant) -> Result<TcpStream> {
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                return Err(e).with_context(|| format!("connecting to {addr}"))
            }
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// The server process and where it listens; killed if the benchmark leaves
/// early.
struct Server {
    child: Child,
    telnet: SocketAddr,
    http: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Server {
    /// Starts `target` with its data dir and log under `dir`, storing into
    /// the ClickHouse server at `clickhouse` if given.
    fn start(target: &dyn Target, dir: &Path, clickhouse: Option<&str>) -> Result<Server> {
        let data_dir = dir.join("data");
        let log = dir.join("server.log");
        let (telnet, http) = (free_addr(), free_addr());
        let out = File::create(&log)?;
        let mut cmd = target.command(&data_dir, telnet, http, clickhouse);
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
        Ok(Server {
            child,
            telnet,
            http,
            data_dir,
            log,
        })
    }

    fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("the server exited early: {status}"),
            None => Ok(()),
        }
    }

    fn signal_term(&self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed: {status}", self.child.id());
        }
        Ok(())
    }

    /// Waits for a clean exit after SIGTERM was sent at `since`.
    fn wait_exit(&mut self, since: Instant) -> Result<()> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the server exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            if since.elapsed() > SHUTDOWN_TIMEOUT {
                bail!("the server did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, for a benchmark that gives up; a no-op once it has exited.
    fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // Errors here mean it exited meanwhile, which is what we want.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
