//! The generated OpenTSDB stream: ten host-agent metrics × hosts × a second
//! tag, counters and gauges, 10 s apart and ending now, rendered once into
//! one `put` byte buffer per connection before any clock starts.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Result};

/// Seconds between two points of one series, as a typical collector sends.
pub const INTERVAL_SECS: u64 = 10;

/// The whole stream, already split into one byte buffer per connection.
pub struct Workload {
    pub streams: Vec<Vec<u8>>,
    pub points: u64,
    pub series: usize,
    /// Metric names the stream holds (all ten unless there are few series).
    pub metrics: Vec<&'static str>,
    pub first_ts: u64,
    pub last_ts: u64,
}

impl Workload {
    /// Exactly `points` lines of at most `series` series. Time-major, as
    /// collectors send: every host reports all its series at each timestamp.
    /// When `points` is not a multiple of the series count, the first series
    /// start one interval late. Hosts go round-robin to the connections.
    pub fn generate(points: u64, series: usize, connections: usize) -> Result<Workload> {
        let series = series.min(usize::try_from(points).unwrap_or(usize::MAX));
        let steps = points.div_ceil(series as u64);
        let late = usize::try_from(steps * series as u64 - points)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let last_ts = now / INTERVAL_SECS * INTERVAL_SECS;
        let first_ts = last_ts
            .checked_sub((steps - 1) * INTERVAL_SECS)
            .ok_or_else(|| anyhow!("{points} points of {series} series reach before 1970"))?;

        let connections = connections.min(series.div_ceil(SERIES_PER_HOST));
        let mut rng = Rng(0x5EED_0F7A_D5ED);
        let mut all: Vec<Series> = (0..series)
            .map(|s| Series::new(s, connections, &mut rng))
            .collect();
        // ~70 bytes a line; reserving up front keeps generation one pass.
        let per_connection = usize::try_from(points / connections as u64 * 72)?;
        let mut streams: Vec<Vec<u8>> = (0..connections)
            .map(|_| Vec::with_capacity(per_connection))
            .collect();
        for step in 0..steps {
            let ts = first_ts + step * INTERVAL_SECS;
            let from = if step == 0 { late } else { 0 };
            for s in &mut all[from..] {
                s.put(ts, &mut rng, &mut streams[s.connection])?;
            }
        }
        let metrics = METRICS
            .iter()
            .take(series.div_ceil(TAG_VALUES))
            .map(|m| m.name)
            .collect();
        Ok(Workload {
            streams,
            points,
            series,
            metrics,
            first_ts,
            last_ts,
        })
    }

    pub fn bytes(&self) -> usize {
        self.streams.iter().map(Vec::len).sum()
    }
}

/// One series' fixed text and running value.
struct Series {
    connection: usize,
    /// `put <metric> `
    prefix: String,
    /// ` host=web-NNNN <key>=<value>\n`
    suffix: String,
    kind: Kind,
    value: Value,
}

impl Series {
    /// Series `index`: host-major, so one host's 40 series sit together.
    fn new(index: usize, connections: usize, rng: &mut Rng) -> Series {
        let host = index / SERIES_PER_HOST;
        let spec = &METRICS[index % SERIES_PER_HOST / TAG_VALUES];
        let tag_value = spec.tag_values[index % TAG_VALUES];
        Series {
            connection: host % connections,
            prefix: format!("put {} ", spec.name),
            suffix: format!(" host=web-{host:04} {}={tag_value}\n", spec.tag_key),
            kind: spec.kind,
            value: Value::start(spec.kind, rng),
        }
    }

    fn put(&mut self, ts: u64, rng: &mut Rng, out: &mut Vec<u8>) -> io::Result<()> {
        out.extend_from_slice(self.prefix.as_bytes());
        write!(out, "{ts} ")?;
        self.value.step(self.kind, rng, out)?;
        out.extend_from_slice(self.suffix.as_bytes());
        Ok(())
    }
}

/// How a metric's values move from one interval to the next.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Monotonic integer, grows by up to `max_step` per interval.
    Counter { max_step: u64 },
    /// Integer random walk inside `lo..=hi`.
    IntGauge { lo: i64, hi: i64, step: i64 },
    /// Float random walk inside `lo..=hi`, printed with `decimals` digits.
    FloatGauge {
        lo: f64,
        hi: f64,
        step: f64,
        decimals: usize,
    },
}

/// A series' running value, one variant per [`Kind`].
enum Value {
    Counter(u64),
    Int(i64),
    Float(f64),
}

impl Value {
    fn start(kind: Kind, rng: &mut Rng) -> Value {
        match kind {
            Kind::Counter { max_step } => Value::Counter(rng.below(max_step * 100_000)),
            Kind::IntGauge { lo, hi, .. } => Value::Int(lo + rng.below(hi.abs_diff(lo)) as i64),
            Kind::FloatGauge { lo, hi, .. } => {
                Value::Float(lo + (hi - lo) * (rng.signed_unit() + 1.0) / 2.0)
            }
        }
    }

    /// Moves one interval on and appends the new value's text.
    fn step(&mut self, kind: Kind, rng: &mut Rng, out: &mut Vec<u8>) -> io::Result<()> {
        match (self, kind) {
            (Value::Counter(v), Kind::Counter { max_step }) => {
                *v += rng.below(max_step);
                write!(out, "{v}")
            }
            (Value::Int(v), Kind::IntGauge { lo, hi, step }) => {
                *v = (*v + rng.below(2 * step as u64 + 1) as i64 - step).clamp(lo, hi);
                write!(out, "{v}")
            }
            (
                Value::Float(v),
                Kind::FloatGauge {
                    lo,
                    hi,
                    step,
                    decimals,
                },
            ) => {
                *v = (*v + step * rng.signed_unit()).clamp(lo, hi);
                write!(out, "{v:.decimals$}")
            }
            _ => Err(io::Error::other(
                "series value does not match its metric kind",
            )),
        }
    }
}

struct MetricSpec {
    name: &'static str,
    tag_key: &'static str,
    tag_values: [&'static str; TAG_VALUES],
    kind: Kind,
}

const TAG_VALUES: usize = 4;
const SERIES_PER_HOST: usize = METRICS.len() * TAG_VALUES;

const fn metric(
    name: &'static str,
    tag_key: &'static str,
    tag_values: [&'static str; TAG_VALUES],
    kind: Kind,
) -> MetricSpec {
    MetricSpec {
        name,
        tag_key,
        tag_values,
        kind,
    }
}

const fn counter(max_step: u64) -> Kind {
    Kind::Counter { max_step }
}

const fn int_gauge(lo: i64, hi: i64, step: i64) -> Kind {
    Kind::IntGauge { lo, hi, step }
}

const fn float_gauge(lo: f64, hi: f64, step: f64, decimals: usize) -> Kind {
    Kind::FloatGauge {
        lo,
        hi,
        step,
        decimals,
    }
}

const CPUS: [&str; TAG_VALUES] = ["0", "1", "2", "3"];
const NUMA: [&str; TAG_VALUES] = ["node0", "node1", "node2", "node3"];
const IFACES: [&str; TAG_VALUES] = ["eth0", "eth1", "bond0", "lo"];
const DEVS: [&str; TAG_VALUES] = ["sda", "sdb", "nvme0n1", "nvme1n1"];
const MOUNTS: [&str; TAG_VALUES] = ["/", "/var", "/home", "/data"];
const STATES: [&str; TAG_VALUES] = ["running", "sleeping", "blocked", "zombie"];

/// What a typical host agent (tcollector, collectd, telegraf) reports.
#[rustfmt::skip]
const METRICS: [MetricSpec; 10] = [
    metric("sys.cpu.user",    "cpu",   CPUS,   float_gauge(0.0, 100.0, 4.0, 2)),
    metric("sys.cpu.system",  "cpu",   CPUS,   float_gauge(0.0, 100.0, 1.5, 2)),
    metric("sys.mem.free",    "numa",  NUMA,   int_gauge(100_000_000, 16_000_000_000, 40_000_000)),
    metric("sys.mem.cached",  "numa",  NUMA,   int_gauge(0, 8_000_000_000, 2_000_000)),
    metric("net.bytes.in",    "iface", IFACES, counter(5_000_000)),
    metric("net.bytes.out",   "iface", IFACES, counter(2_000_000)),
    metric("net.packets.in",  "iface", IFACES, counter(5_000)),
    metric("disk.bytes.read", "dev",   DEVS,   counter(50_000_000)),
    metric("disk.used.pct",   "mount", MOUNTS, float_gauge(1.0, 99.0, 0.1, 1)),
    metric("proc.count",      "state", STATES, int_gauge(0, 2_000, 5)),
];

/// splitmix64: tiny, fast and good enough to make values look alive; a
/// fixed seed keeps the stream identical for every system and run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `-1.0..1.0`.
    fn signed_unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}
