//! One system's run: start it in a fresh data dir, send the stream over all
//! connections at once, wait until every point is stored and queryable,
//! sample `/proc`, stop it with SIGTERM and measure what it left on disk.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::http::http_get;
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
    let mut server = Server::start(target, dir.path())?;
    drive(target, &mut server, w, writes, timeout).map_err(|e| {
        anyhow!(
            "{e:#}\n--- last lines of the server log ---\n{}",
            server.log_tail()
        )
    })
}

fn drive(
    target: &dyn Target,
    server: &mut Server,
    w: &Workload,
    writes: Writes,
    timeout: Duration,
) -> Result<Measurement> {
    let pid = server.child.id();
    let ready_by = Instant::now() + START_TIMEOUT;
    until(ready_by, "the server to answer HTTP", || {
        server.check_running()?;
        let health = http_get(server.http, target.health_path(), None);
        Ok(health.is_ok_and(|(status, _)| status == 200))
    })?;
    let mut conns = Vec::with_capacity(w.streams.len());
    for _ in &w.streams {
        let mut stream = retry_connect(server.telnet, ready_by)?;
        if let Some(hello) = target.telnet_hello() {
            say_hello(&mut stream, &hello)?;
        }
        let reader = stream.try_clone()?;
        reader.set_read_timeout(Some(POLL))?;
        conns.push((stream, reader));
    }

    let barrier = Barrier::new(w.streams.len() + 1);
    let stop_readers = AtomicBool::new(false);
    let cpu_before = ProcSample::take(pid)?;
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
        let http = server.http;
        let run = || -> Result<Measurement> {
            until(deadline, "the stream to be sent", || {
                server.check_running()?;
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
            let mut last = Progress { stored: 0, lost: 0 };
            until(deadline, "every point to be stored or counted lost", || {
                server.check_running()?;
                last = target.progress(http)?;
                Ok(last.stored + last.lost >= w.points)
            })
            .with_context(|| format!("{} of {} stored", last.stored, w.points))?;
            let stored = t0.elapsed();
            let expected = w.points - last.lost;
            target.make_queryable(http)?;
            let mut counted = 0;
            until(deadline, "every point to be queryable", || {
                counted = target.count(http, w)?;
                if counted > expected {
                    bail!("a query counts {counted} points but {expected} were stored");
                }
                Ok(counted == expected)
            })
            .with_context(|| format!("a query counts {counted} of {expected}"))?;
            let queryable = t0.elapsed();
            let cpu_after = ProcSample::take(pid)?;
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

            let shutdown = server.terminate()?;
            let tick = clock_ticks_per_sec();
            Ok(Measurement {
                sent: sent - t0,
                stored,
                queryable,
                server_cpu_secs: (cpu_after.ticks - cpu_before.ticks) as f64 / tick,
                loader_cpu_secs: (loader_after - loader_before) as f64 / tick,
                peak_rss_bytes: cpu_after.peak_rss_bytes,
                shutdown,
                disk: DiskUsage::of(&server.data_dir)?,
                threads: cpu_after.threads_since(&cpu_before, tick),
                replies,
                connections: w.streams.len(),
                load_average: cpu_before.load_average.clone(),
                lost: last.lost,
            })
        };
        let result = run();
        if result.is_err() {
            // The scope joins every thread: free the blocked ones first.
            stop_readers.store(true, Ordering::Relaxed);
            server.kill();
        }
        result
    })
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

fn free_port() -> Result<SocketAddr> {
    // Binding port 0 and letting go leaves a small race with other programs,
    // acceptable on a benchmark machine.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
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
    /// Starts `target` with its data dir and log under `dir`.
    fn start(target: &dyn Target, dir: &Path) -> Result<Server> {
        let data_dir = dir.join("data");
        let log = dir.join("server.log");
        let (telnet, http) = (free_port()?, free_port()?);
        let out = File::create(&log)?;
        let mut cmd = target.command(&data_dir, telnet, http);
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

    /// SIGTERM, then waits for a clean exit; returns how long it took.
    fn terminate(&mut self) -> Result<Duration> {
        let start = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed: {status}", self.child.id());
        }
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the server exited with {status} after SIGTERM");
                }
                return Ok(start.elapsed());
            }
            if start.elapsed() > SHUTDOWN_TIMEOUT {
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
