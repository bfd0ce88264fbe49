//! Reading and downsampling the series of a group on several threads,
//! handed to the caller one at a time in group order.
//!
//! Reading, decoding and downsampling one series needs nothing from any
//! other, and is most of a downsampled query's work; the cross-series
//! folds that follow must see the series in group order, or float sums
//! would change in their last bits. So the calling thread and its helpers
//! take series in group order, each through a store scan of its own
//! ([`Source::sibling_scans`]: the embedded store's share one copy of the
//! head), and
//! the calling thread hands each series' buckets to the caller once every
//! series before it has been handed over. A series may only be taken
//! while fewer than [`WINDOW`] series from the next one to hand over on
//! are taken, so the buckets held stay a few series' worth however large
//! the group and however slow one series is to read.
//!
//! Helpers start only where the source reads nothing twice through
//! several scans ([`Source::parallel_scans`]), and once the group proves to
//! hold enough points to pay for a thread (judged from the series the
//! calling thread read first), so small queries stay on one thread.

use std::ops::ControlFlow;
use std::sync::OnceLock;
use std::time::Instant;

use crate::model::Doubles;
use crate::query::aggregator::Aggregator;
use crate::query::deadline::check_deadline;
use crate::query::downsample::Grid;
use crate::query::error::QueryError;
use crate::query::pipeline::{downsample_scan, Pipeline};
use crate::query::source::{PointScan, Source};

/// More threads than this (the caller's included) gain little: the
/// caller's folds, one at a time, become the bottleneck.
const MAX_THREADS: usize = 4;

/// Series taken but not yet handed over, at most.
const WINDOW: usize = 16;

/// Points the rest of a group must be expected to hold before helpers
/// start: starting a thread costs tens of microseconds, reading this many
/// points about a millisecond.
const MIN_POINTS_FOR_HELPERS: usize = 100_000;

/// Threads to read on, the caller's included; read once, as the standard
/// library asks the system (and cgroups) on every call.
fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
    })
}

/// One series read: its index in the group, the points read (or why
/// not), and its buckets.
type Read = (usize, Result<usize, QueryError>, Doubles);

/// Reads the series `ids` of `pipeline` through downsamplers on `grid`
/// with `function`, and calls `visit` with each one's index, points read
/// and buckets, in the order of `ids`, until `visit` breaks or fails;
/// a failed read fails the call when its series' turn comes. The deadline
/// is checked before each series is visited; `room` is how many points
/// the query may still read, so that one about to be refused (or run
/// under an async worker's small bounds, `http::query`) starts no helper.
/// `buf` is the calling thread's downsampler scratch space.
pub(super) fn each_downsampled(
    source: &dyn Source,
    pipeline: &Pipeline,
    (grid, function): (&Grid, Aggregator),
    (deadline, room): (Option<Instant>, usize),
    ids: &[u64],
    buf: &mut Vec<f64>,
    mut visit: impl FnMut(usize, usize, &Doubles) -> Result<ControlFlow<()>, QueryError>,
) -> Result<ControlFlow<()>, QueryError> {
    let (read_start, read_end) = pipeline.read;
    let open = source.sibling_scans(ids, read_start, read_end - 1);
    // Buckets handed over come back here for another series to fill.
    let (spare_tx, spare_rx) = crossbeam_channel::unbounded::<Doubles>();
    let read = |scan: &mut dyn PointScan, i: usize, buf: &mut Vec<f64>| {
        let mut series = spare_rx.try_recv().unwrap_or_default();
        let read = downsample_scan(scan, ids[i], (grid, function), deadline, buf, &mut series);
        (i, read, series)
    };
    std::thread::scope(|scope| {
        // A series is taken by taking its index from `tickets`; the index
        // `WINDOW` on is put there as each series is handed over.
        let (ticket_tx, tickets) = crossbeam_channel::unbounded();
        for i in 0..ids.len().min(WINDOW) {
            let _ = ticket_tx.send(i);
        }
        let (done_tx, done_rx) = crossbeam_channel::unbounded::<Read>();
        let mut done_tx = Some(done_tx);
        // Series read but not yet handed over, series `i` at `i % WINDOW`.
        let mut waiting: [Option<(Result<usize, QueryError>, Doubles)>; WINDOW] =
            std::array::from_fn(|_| None);
        let mut scan = open();
        let (mut own_series, mut own_points) = (0usize, 0usize);
        let mut run = || {
            for turn in 0..ids.len() {
                let (result, series) = loop {
                    for (i, result, series) in done_rx.try_iter() {
                        waiting[i % WINDOW] = Some((result, series));
                    }
                    if let Some(done) = waiting[turn % WINDOW].take() {
                        break done;
                    }
                    let Ok(i) = tickets.try_recv() else {
                        // Every series in the window is taken, this one
                        // by a helper.
                        let (i, result, series) = done_rx
                            .recv()
                            .expect("a helper sends every series it takes");
                        waiting[i % WINDOW] = Some((result, series));
                        continue;
                    };
                    let (i, result, series) = read(&mut *scan, i, &mut *buf);
                    own_series += 1;
                    own_points += result.as_ref().map_or(0, |&n| n);
                    let expected = (own_points / own_series)
                        .saturating_mul(ids.len() - i - 1)
                        .min(room);
                    if threads() > 1
                        && source.parallel_scans()
                        && expected >= MIN_POINTS_FOR_HELPERS
                    {
                        // Each helper holds a clone, and the original is
                        // dropped, so that `recv` fails rather than waits
                        // should every helper die.
                        if let Some(done_tx) = done_tx.take() {
                            for _ in 1..threads() {
                                let (done_tx, tickets) = (done_tx.clone(), tickets.clone());
                                let (open, read) = (&open, &read);
                                scope.spawn(move || {
                                    let mut scan = open();
                                    let mut buf = Vec::new();
                                    while let Ok(i) = tickets.recv() {
                                        if done_tx.send(read(&mut *scan, i, &mut buf)).is_err() {
                                            break;
                                        }
                                    }
                                });
                            }
                        }
                    }
                    waiting[i % WINDOW] = Some((result, series));
                };
                if turn + WINDOW < ids.len() {
                    let _ = ticket_tx.send(turn + WINDOW);
                }
                check_deadline(deadline)?;
                let flow = visit(turn, result?, &series)?;
                let _ = spare_tx.send(series);
                if flow.is_break() {
                    return Ok(flow);
                }
            }
            Ok(ControlFlow::Continue(()))
        };
        // Helpers stop once the tickets and the hand-over channel are
        // dropped, before the scope waits for them.
        run()
    })
}

#[cfg(test)]
mod tests {
    //! Groups large enough to start helpers, answered by the grid sweep
    //! as by the general sweep, bit for bit, and refused alike.

    use super::MIN_POINTS_FOR_HELPERS;
    use crate::model::{DataPoint, Value};
    use crate::query::memory::MemSource;
    use crate::query::{execute, QueryLimits, QueryRequest};

    /// 2023-11-14T22:13:20Z: not on a whole hour.
    const T: i64 = 1_700_000_000_000;
    const MINUTE: i64 = 60_000;

    /// 160 series over a day at 30, 45 or 60 s, none on a bucket start,
    /// with gaps, late starts and early ends, of integers and floats.
    fn source() -> (MemSource, usize) {
        let mut src = MemSource::new();
        let mut total = 0;
        for h in 0..160i64 {
            let step = [MINUTE, MINUTE / 2, MINUTE * 3 / 4][h as usize % 3];
            let points: Vec<DataPoint> = (h % 7 * 20..1500 - h % 5 * 30)
                .filter(|i| (i + h) % 97 > 3)
                .map(|i| DataPoint {
                    timestamp_ms: T + i * step + (i * h) % 1000 * 17,
                    value: match (h + i) % 3 {
                        0 => Value::Int((i * h) % 1001 - 500),
                        _ => Value::Float(((i * 31 + h) % 997) as f64 / 7.0),
                    },
                })
                .collect();
            total += points.len();
            src.add_points("m", &[("host", &format!("h{h:03}"))], points);
        }
        (src, total)
    }

    /// `body`'s answer by the general sweep and by the grid sweep, with
    /// `limits` otherwise.
    fn answers(src: &MemSource, body: &str, limits: &QueryLimits) -> [Result<String, String>; 2] {
        let req = QueryRequest::from_json(body.as_bytes()).unwrap();
        [0, limits.grid_max_slots].map(|grid_max_slots| {
            let limits = QueryLimits {
                grid_max_slots,
                ..limits.clone()
            };
            execute(src, &req, T + 10 * 86_400_000, &limits)
                .map(|r| {
                    assert_eq!(r.sweeps.grid, usize::from(grid_max_slots > 0), "{body}");
                    let mut out = String::new();
                    r.write_json(&mut out);
                    out
                })
                .map_err(|e| e.message())
        })
    }

    #[test]
    fn helpers_answer_as_the_general_sweep() {
        let (src, total) = source();
        assert!(total >= 2 * MIN_POINTS_FOR_HELPERS, "{total} points");
        for agg in ["sum", "avg", "zimsum", "mimmax", "dev"] {
            for ds in ["1m-avg", "1m-sum", "5m-max", "30s-min"] {
                let body = format!(
                    r#"{{"start":{},"end":{},"queries":[{{"aggregator":"{agg}","metric":"m","downsample":"{ds}"}}]}}"#,
                    T + 7 * MINUTE + 10,
                    T + 1400 * MINUTE,
                );
                let [general, grid] = answers(&src, &body, &QueryLimits::default());
                assert!(general.is_ok(), "{body}: {general:?}");
                assert_eq!(grid, general, "{body}");
            }
        }
    }

    #[test]
    fn helpers_keep_the_limits() {
        let (src, total) = source();
        let body = format!(
            r#"{{"start":{},"end":{},"queries":[{{"aggregator":"sum","metric":"m","downsample":"1m-avg"}}]}}"#,
            T,
            T + 1500 * MINUTE,
        );
        let few_points = QueryLimits {
            max_points: total / 2,
            ..QueryLimits::default()
        };
        let [general, grid] = answers(&src, &body, &few_points);
        assert!(
            general.as_ref().is_err_and(|e| e.contains("data points")),
            "{general:?}"
        );
        assert_eq!(grid, general);
        let late = QueryLimits {
            deadline: Some(std::time::Instant::now()),
            ..QueryLimits::default()
        };
        let [general, grid] = answers(&src, &body, &late);
        assert!(general.is_err());
        assert_eq!(grid, general);
    }
}
