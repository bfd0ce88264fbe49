//! Head chunks: the unsealed points of every series, compressed in memory.
//!
//! Each (series, window) with unsealed data has an open [`Window`]: a
//! [`ChunkEncoder`] for points that arrive in time order, plus a plain list
//! of the points that do not (out of order or repeated timestamps). Windows
//! are one hour, aligned to epoch hours, because rollup hours are too: when
//! a window seals, its block holds exactly one rollup hour, so the hour's
//! aggregate comes from the block being written without reading neighbours,
//! and an hour with unsealed data is always answered from one window.
//!
//! Last write wins without per-point sequence numbers: a point lands in the
//! late list only when the encoder already holds a point at or after its
//! timestamp, so for equal timestamps the late list is newer than the
//! encoder, and within the late list arrival order is age order. A window
//! that reopens after its hour was sealed is likewise newer than the block.
//!
//! The head is shared with readers behind one `RwLock`: the writer takes it
//! once per ingest batch, readers copy a series' windows out and let go.
//! Memory is accounted per window so the writer can seal early under pressure.

use std::collections::BTreeMap;

use crate::model::DataPoint;

use super::chunk::{self, ChunkEncoder, ChunkError};

/// Length of a head window and of a sealed block: an hour, in ms.
pub const WINDOW_MS: i64 = crate::model::HOUR_MS;

/// Start of the window holding `ts`.
pub fn window_start(ts: i64) -> i64 {
    ts.div_euclid(WINDOW_MS) * WINDOW_MS
}

/// Approximate fixed cost of an open window besides its chunk bytes: the
/// struct itself and its entries in the two bookkeeping maps.
const WINDOW_OVERHEAD: usize = std::mem::size_of::<Window>() + 64;

/// The unsealed points of one series in one window.
pub struct Window {
    start: i64,
    chunk: ChunkEncoder,
    late: Vec<DataPoint>,
    /// The lowest log sequence number holding a point of this window: the
    /// log must keep that record until this window is sealed.
    min_seq: u64,
}

impl Window {
    fn new(start: i64, min_seq: u64) -> Window {
        Window {
            start,
            chunk: ChunkEncoder::new(),
            late: Vec::new(),
            min_seq,
        }
    }

    fn bytes(&self) -> usize {
        WINDOW_OVERHEAD
            + self.chunk.byte_size()
            + self.late.capacity() * std::mem::size_of::<DataPoint>()
    }

    fn len(&self) -> usize {
        self.chunk.len() + self.late.len()
    }

    pub fn start(&self) -> i64 {
        self.start
    }

    /// Whether the window holds a point at or after `ts`.
    pub fn has_point_since(&self, ts: i64) -> bool {
        self.chunk.last_timestamp().is_some_and(|t| t >= ts)
            || self.late.iter().any(|p| p.timestamp_ms >= ts)
    }

    /// The encoded chunk, if it alone is the window's content (no late
    /// points to merge in); sealing then decodes it instead of merging.
    pub fn in_order_chunk(&self) -> Option<Vec<u8>> {
        self.late.is_empty().then(|| self.chunk.to_bytes())
    }

    /// A copy that outlives the head lock.
    pub fn snapshot(&self) -> WindowSnapshot {
        WindowSnapshot {
            start: self.start,
            chunk: self.chunk.to_bytes(),
            late: self.late.clone(),
        }
    }
}

/// A window copied out of the head, for a reader or for sealing.
#[derive(Debug, Clone)]
pub struct WindowSnapshot {
    pub start: i64,
    chunk: Vec<u8>,
    late: Vec<DataPoint>,
}

impl WindowSnapshot {
    /// The window's points laid over `block` (the sealed chunk of the same
    /// window, older than anything in the head): sorted, one per timestamp,
    /// the newest write winning.
    pub fn merge_over(&self, block: Option<&[u8]>) -> Result<Vec<DataPoint>, ChunkError> {
        let mut points = match block {
            Some(b) => chunk::decode(b)?,
            None => Vec::new(),
        };
        points.extend(chunk::decode(&self.chunk)?);
        points.extend_from_slice(&self.late);
        Ok(newest_wins(points))
    }
}

/// Sorts points given oldest write first and keeps the last write of each
/// timestamp.
fn newest_wins(mut points: Vec<DataPoint>) -> Vec<DataPoint> {
    // Stable: equal timestamps keep their write order.
    points.sort_by_key(|p| p.timestamp_ms);
    let mut out: Vec<DataPoint> = Vec::with_capacity(points.len());
    for p in points {
        match out.last_mut() {
            Some(last) if last.timestamp_ms == p.timestamp_ms => *last = p,
            _ => out.push(p),
        }
    }
    out
}

/// Every open window, by series.
#[derive(Default)]
pub struct Head {
    /// Windows of series id `i + 1` at index `i`, sorted by start; usually
    /// one, two around an hour boundary.
    series: Vec<Vec<Window>>,
    /// Open windows per window start, for "is anything due" in O(1).
    starts: BTreeMap<i64, usize>,
    /// Open windows per `min_seq`, for the oldest log record still needed.
    seqs: BTreeMap<u64, usize>,
    bytes: usize,
    points: usize,
    windows: usize,
}

fn count_up<K: Ord>(map: &mut BTreeMap<K, usize>, key: K) {
    *map.entry(key).or_insert(0) += 1;
}

fn count_down<K: Ord>(map: &mut BTreeMap<K, usize>, key: K) {
    if let std::collections::btree_map::Entry::Occupied(mut e) = map.entry(key) {
        *e.get_mut() -= 1;
        if *e.get() == 0 {
            e.remove();
        }
    }
}

/// Series ids start at 1.
fn slot(id: u64) -> usize {
    id.saturating_sub(1) as usize
}

impl Head {
    /// Adds a point of series `id` (>= 1) that log record `seq` holds.
    #[inline]
    pub fn push(&mut self, id: u64, p: DataPoint, seq: u64) {
        let slot = slot(id);
        if slot >= self.series.len() {
            self.series.resize_with(slot + 1, Vec::new);
        }
        let windows = &mut self.series[slot];
        let start = window_start(p.timestamp_ms);
        let at = match windows.last() {
            Some(w) if w.start == start => windows.len() - 1,
            _ => match windows.binary_search_by_key(&start, |w| w.start) {
                Ok(i) => i,
                Err(i) => {
                    let w = Window::new(start, seq);
                    self.bytes += w.bytes();
                    self.windows += 1;
                    count_up(&mut self.starts, start);
                    count_up(&mut self.seqs, seq);
                    // A series has one open window most of the time and
                    // two around an hour boundary; a `Vec`'s first growth
                    // makes room for four (640 bytes a series, 640 MB at
                    // a million series).
                    windows.reserve_exact(1);
                    windows.insert(i, w);
                    i
                }
            },
        };
        let w = &mut windows[at];
        let before = w.bytes();
        if let Err(p) = w.chunk.push(p) {
            w.late.push(p);
        }
        self.bytes = self.bytes + w.bytes() - before;
        self.points += 1;
    }

    /// Removes a sealed window; false if it was not open.
    pub fn remove(&mut self, id: u64, start: i64) -> bool {
        let Some(windows) = self.series.get_mut(slot(id)) else {
            return false;
        };
        let Ok(i) = windows.binary_search_by_key(&start, |w| w.start) else {
            return false;
        };
        let w = windows.remove(i);
        self.bytes -= w.bytes();
        self.points -= w.len();
        self.windows -= 1;
        count_down(&mut self.starts, w.start);
        count_down(&mut self.seqs, w.min_seq);
        true
    }

    /// Drops the points of `id` with timestamps in `[from, to]`. A window
    /// that keeps some is rebuilt from them with its `min_seq`, since the
    /// log records holding the rest are still needed; one left empty goes.
    pub fn delete(&mut self, id: u64, from: i64, to: i64) -> Result<(), ChunkError> {
        let doomed = |p: &DataPoint| (from..=to).contains(&p.timestamp_ms);
        let touched = window_start(from)..=window_start(to);
        for start in self.starts_of(id) {
            if !touched.contains(&start) {
                continue;
            }
            let Some(w) = self.window(id, start) else {
                continue;
            };
            let points = w.snapshot().merge_over(None)?;
            if !points.iter().any(doomed) {
                continue;
            }
            let min_seq = w.min_seq;
            self.remove(id, start);
            for p in points.into_iter().filter(|p| !doomed(p)) {
                self.push(id, p, min_seq);
            }
        }
        Ok(())
    }

    pub fn window(&self, id: u64, start: i64) -> Option<&Window> {
        let windows = self.series.get(slot(id))?;
        let i = windows.binary_search_by_key(&start, |w| w.start).ok()?;
        windows.get(i)
    }

    /// Copies of the windows of `id` starting in `[from, to]`.
    pub fn snapshot(&self, id: u64, from: i64, to: i64) -> Vec<WindowSnapshot> {
        let Some(windows) = self.series.get(slot(id)) else {
            return Vec::new();
        };
        windows
            .iter()
            .filter(|w| (from..=to).contains(&w.start))
            .map(Window::snapshot)
            .collect()
    }

    /// The newest open window of `id`.
    pub fn newest(&self, id: u64) -> Option<&Window> {
        self.series.get(slot(id))?.last()
    }

    /// Starts of the open windows of `id`, oldest first.
    pub fn starts_of(&self, id: u64) -> Vec<i64> {
        self.series
            .get(slot(id))
            .map_or_else(Vec::new, |ws| ws.iter().map(|w| w.start).collect())
    }

    /// Start of the oldest open window of any series.
    pub fn oldest_start(&self) -> Option<i64> {
        self.starts.keys().next().copied()
    }

    /// The oldest log sequence number an open window still needs.
    pub fn min_seq(&self) -> Option<u64> {
        self.seqs.keys().next().copied()
    }

    fn all_windows(&self) -> impl Iterator<Item = (u64, &Window)> {
        self.series
            .iter()
            .enumerate()
            .flat_map(|(i, ws)| ws.iter().map(move |w| (i as u64 + 1, w)))
    }

    /// Whether any window starts before `before` or after `after`.
    pub fn any_outside(&self, before: i64, after: i64) -> bool {
        let first = self.starts.keys().next();
        let last = self.starts.keys().next_back();
        first.is_some_and(|&s| s < before) || last.is_some_and(|&s| s > after)
    }

    /// `(id, start)` of up to `max` windows starting before `before` or
    /// after `after`, sorted.
    pub fn outside(&self, before: i64, after: i64, max: usize) -> Vec<(u64, i64)> {
        if !self.any_outside(before, after) {
            return Vec::new();
        }
        self.all_windows()
            .filter(|(_, w)| w.start < before || w.start > after)
            .map(|(id, w)| (id, w.start))
            .take(max)
            .collect()
    }

    /// `(id, start)` of the oldest windows that together hold at least
    /// `bytes` of memory (all of them if they hold less), at most `max`.
    /// Among windows of one hour, those holding the oldest log records go
    /// first, so sealing them lets the log shrink too.
    pub fn oldest_holding(&self, bytes: usize, max: usize) -> Vec<(u64, i64)> {
        let mut all: Vec<(i64, u64, u64, usize)> = self
            .all_windows()
            .map(|(id, w)| (w.start, w.min_seq, id, w.bytes()))
            .collect();
        all.sort_unstable();
        let mut freed = 0;
        all.into_iter()
            .take_while(|&(.., b)| {
                let more = freed < bytes;
                freed += b;
                more
            })
            .take(max)
            .map(|(start, _, id, _)| (id, start))
            .collect()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn points(&self) -> usize {
        self.points
    }

    pub fn windows(&self) -> usize {
        self.windows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    fn p(ts: i64, v: i64) -> DataPoint {
        DataPoint {
            timestamp_ms: ts,
            value: Value::Int(v),
        }
    }

    fn points(head: &Head, id: u64) -> Vec<DataPoint> {
        head.snapshot(id, i64::MIN, i64::MAX)
            .iter()
            .flat_map(|w| w.merge_over(None).expect("decodes"))
            .collect()
    }

    #[test]
    fn windows_split_on_epoch_hours() {
        assert_eq!(window_start(WINDOW_MS - 1), 0);
        assert_eq!(window_start(WINDOW_MS), WINDOW_MS);
        assert_eq!(window_start(-1), -WINDOW_MS);
        let mut head = Head::default();
        head.push(1, p(WINDOW_MS + 5, 1), 0);
        head.push(1, p(5, 2), 1);
        head.push(2, p(7, 3), 1);
        assert_eq!(head.windows(), 3);
        assert_eq!(head.points(), 3);
        assert_eq!(head.oldest_start(), Some(0));
        assert_eq!(head.newest(1).map(Window::start), Some(WINDOW_MS));
        assert_eq!(head.starts_of(1), vec![0, WINDOW_MS]);
        assert_eq!(points(&head, 1), vec![p(5, 2), p(WINDOW_MS + 5, 1)]);
        assert_eq!(head.outside(WINDOW_MS, WINDOW_MS, 10), vec![(1, 0), (2, 0)]);
        assert_eq!(head.outside(WINDOW_MS, WINDOW_MS, 1), vec![(1, 0)]);
        assert_eq!(head.outside(0, 0, 10), vec![(1, WINDOW_MS)]);
        assert!(!head.any_outside(0, WINDOW_MS));
        assert_eq!(head.outside(0, WINDOW_MS, 10), vec![]);
    }

    #[test]
    fn the_newest_write_of_a_timestamp_wins() {
        let mut head = Head::default();
        for (ts, v) in [(10, 1), (20, 2), (10, 3), (30, 4), (20, 5), (10, 6), (5, 7)] {
            head.push(1, p(ts, v), 0);
        }
        assert_eq!(
            points(&head, 1),
            vec![p(5, 7), p(10, 6), p(20, 5), p(30, 4)]
        );
        let w = head.window(1, 0).expect("open");
        assert!(w.in_order_chunk().is_none());
        let block = chunk::encode(&[p(1, 100), p(10, 100), p(40, 100)]);
        let merged = w.snapshot().merge_over(Some(&block)).expect("decodes");
        assert_eq!(
            merged,
            vec![p(1, 100), p(5, 7), p(10, 6), p(20, 5), p(30, 4), p(40, 100)]
        );
    }

    #[test]
    fn delete_rebuilds_windows_and_keeps_their_log_floor() {
        let mut head = Head::default();
        for (ts, v) in [(10, 1), (20, 2), (10, 3), (30, 4)] {
            head.push(1, p(ts, v), 7);
        }
        head.push(1, p(WINDOW_MS + 1, 5), 8);
        head.push(2, p(20, 6), 9);
        head.delete(1, 10, 20).expect("decodes");
        assert_eq!(points(&head, 1), vec![p(30, 4), p(WINDOW_MS + 1, 5)]);
        assert_eq!(points(&head, 2), vec![p(20, 6)], "other series untouched");
        assert_eq!((head.points(), head.windows()), (3, 3));
        assert_eq!(head.min_seq(), Some(7));
        head.delete(1, 0, WINDOW_MS - 1).expect("decodes");
        assert_eq!(head.starts_of(1), vec![WINDOW_MS], "emptied window gone");
        assert_eq!(head.min_seq(), Some(8));
        head.delete(3, 0, i64::MAX)
            .expect("unknown series is a no-op");
        head.delete(2, 21, 40).expect("nothing in range");
        assert_eq!(points(&head, 2), vec![p(20, 6)]);
    }

    #[test]
    fn bookkeeping_follows_removal() {
        let mut head = Head::default();
        head.push(1, p(0, 1), 3);
        head.push(1, p(WINDOW_MS, 1), 4);
        head.push(2, p(WINDOW_MS, 1), 5);
        assert_eq!(head.min_seq(), Some(3));
        assert!(head.bytes() > 3 * WINDOW_OVERHEAD);
        assert!(head.remove(1, 0));
        assert!(!head.remove(1, 0));
        assert_eq!(head.min_seq(), Some(4));
        assert_eq!(head.oldest_start(), Some(WINDOW_MS));
        assert_eq!(head.oldest_holding(1, 10), vec![(1, WINDOW_MS)]);
        assert_eq!(head.oldest_holding(usize::MAX, 10).len(), 2);
        assert_eq!(head.oldest_holding(usize::MAX, 1).len(), 1);
        assert!(head.remove(1, WINDOW_MS));
        assert!(head.remove(2, WINDOW_MS));
        assert_eq!((head.bytes(), head.points(), head.windows()), (0, 0, 0));
        assert_eq!(head.min_seq(), None);
    }
}
