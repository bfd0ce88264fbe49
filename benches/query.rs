//! Query engine over the real store: the three queries of
//! `benches/query_latency.py`, without HTTP, on the same data (1,000 series
//! of a day at 60 s, integer values; 10 series of 30 days at 60 s, decimal
//! values), sealed into blocks and rollups except the last, partial hour,
//! which stays in the head as it does in the daemon:
//!
//! - `a`: one series over a day, raw points;
//! - `b`: `sum:1m-avg` over the 1,000 series, over a day (raw points: a
//!   minute grid cannot use hourly rollups);
//! - `c`: `max:1h-max` of one series over 30 days (hourly rollups).
//!
//! Each iteration runs `query::execute` and writes the JSON answer, as the
//! HTTP handler does. `cargo bench --bench query`. Before the measurements
//! a report prints the best and median CPU time of the calling thread
//! for each of those queries, and the mean over all threads (a parallel
//! query's helpers included), and the same for a few other shapes (the general sweep over raw points and rates,
//! rollups, a percentile, a fill, `none`): CPU time moves less than wall
//! time on a shared machine. `QUERY_REPORT_RUNS` (default 30) sets the runs,
//! for a profiler.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};

use rtsd::model::{DataPoint, Sample, SeriesKey, Value};
use rtsd::query::{execute, QueryLimits, QueryRequest};
use rtsd::storage::{Store, StoreOptions, StoreReader, StoreWriter};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
const MONTH: i64 = 30 * DAY;
/// A whole minute, 37 minutes into an hour, so the head holds a partial hour.
const NOW: i64 = 1_795_394_220_000;

fn samples(before: bool) -> Vec<Sample> {
    let keep = |t: i64| (t < NOW / HOUR * HOUR) == before;
    let mut out = Vec::new();
    for h in 0..1000i64 {
        let key = SeriesKey::new("bench.a", [("host", format!("h{h}").as_str())]);
        for t in (NOW - DAY..NOW)
            .step_by(MINUTE as usize)
            .filter(|&t| keep(t))
        {
            let value = Value::Int((t / MINUTE + h) % 97);
            out.push(Sample {
                series: key.clone(),
                point: DataPoint {
                    timestamp_ms: t,
                    value,
                },
            });
        }
    }
    for h in 0..10i64 {
        let key = SeriesKey::new("bench.c", [("host", format!("c{h}").as_str())]);
        for t in (NOW - MONTH..NOW)
            .step_by(MINUTE as usize)
            .filter(|&t| keep(t))
        {
            let value = Value::Float(((t / MINUTE * 7 + h) % 1000) as f64 / 10.0);
            out.push(Sample {
                series: key.clone(),
                point: DataPoint {
                    timestamp_ms: t,
                    value,
                },
            });
        }
    }
    out
}

fn load() -> (tempfile::TempDir, StoreWriter, StoreReader) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut w, r) = Store::open(dir.path(), StoreOptions::default()).expect("store opens");
    for batch in samples(true).chunks(4096) {
        w.append(batch).expect("appends");
    }
    w.seal_all(rtsd::model::now_ms()).expect("seals");
    for batch in samples(false).chunks(4096) {
        w.append(batch).expect("appends");
    }
    (dir, w, r)
}

fn request(m: &str, start: i64) -> QueryRequest {
    let params = [
        ("start".to_string(), (start / 1000).to_string()),
        ("end".to_string(), (NOW / 1000).to_string()),
        ("m".to_string(), m.to_string()),
    ];
    QueryRequest::from_get_params(&params).expect("valid query")
}

fn run(reader: &StoreReader, req: &QueryRequest) -> String {
    let resp = execute(reader, req, NOW, &QueryLimits::default()).expect("query runs");
    let mut out = String::new();
    resp.write_json(&mut out);
    out
}

/// CPU time of every thread of this process, living or gone, in ms: the
/// user and system ticks of `/proc/self/stat` (USER_HZ, 100 per second on
/// Linux), coarse, so only a mean over many runs means much; a parallel
/// query's helpers count here and not in [`cpu_ms`]. `None` where that
/// file is missing.
fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may hold spaces: state is
    // field 3, utime and stime fields 14 and 15.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 * 10.0)
}

/// CPU time of this thread in ms: the first field of Linux's
/// `/proc/thread-self/schedstat` (nanoseconds on a CPU), read without
/// `unsafe`. Where that file is missing, wall time stands in.
fn cpu_ms() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or_else(
            || START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3,
            |ns| ns as f64 / 1e6,
        )
}

fn bench_queries(c: &mut Criterion) {
    let (_dir, _w, reader) = load();
    let cases = [
        (
            "a_one_series_raw_day",
            request("none:bench.a{host=h1}", NOW - DAY),
        ),
        (
            "b_sum_1000_series_1m_avg_day",
            request("sum:1m-avg:bench.a", NOW - DAY),
        ),
        (
            "c_1h_max_one_series_30_days",
            request("max:1h-max:bench.c{host=c1}", NOW - MONTH),
        ),
    ];
    // The report (see the module doc).
    let n = std::env::var("QUERY_REPORT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30usize)
        .max(1);
    let others = [
        (
            "d_sum_1000_series_raw_day",
            request("sum:bench.a", NOW - DAY),
        ),
        (
            "e_sum_rate_1000_series_day",
            request("sum:rate:bench.a", NOW - DAY),
        ),
        (
            "f_sum_1000_series_1h_avg_day",
            request("sum:1h-avg:bench.a", NOW - DAY),
        ),
        (
            "g_p95_1000_series_1m_avg_day",
            request("p95:1m-avg:bench.a", NOW - DAY),
        ),
        (
            "h_sum_1000_series_1m_avg_zero_day",
            request("sum:1m-avg-zero:bench.a", NOW - DAY),
        ),
        (
            "i_none_1000_series_1m_avg_day",
            request("none:1m-avg:bench.a", NOW - DAY),
        ),
    ];
    for (name, req) in cases.iter().chain(&others) {
        let all_threads = process_cpu_ms();
        let mut runs: Vec<f64> = (0..n)
            .map(|_| {
                let t = cpu_ms();
                black_box(run(&reader, req));
                cpu_ms() - t
            })
            .collect();
        let all_threads = all_threads
            .zip(process_cpu_ms())
            .map_or(String::new(), |(before, after)| {
                format!(", all threads' mean {:.2}", (after - before) / n as f64)
            });
        runs.sort_by(f64::total_cmp);
        eprintln!(
            "query report: {name}: CPU ms best {:.2}, median {:.2}{all_threads}",
            runs[0],
            runs[n / 2]
        );
    }
    let mut group = c.benchmark_group("query");
    group.sample_size(20);
    for (name, req) in &cases {
        assert!(run(&reader, req).len() > 100, "{name} answers");
        group.bench_function(*name, |b| b.iter(|| run(&reader, black_box(req))));
    }
    group.finish();
}

criterion_group!(benches, bench_queries);
criterion_main!(benches);
