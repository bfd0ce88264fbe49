//! The data model every subsystem shares: a value, a point, a series key.
//!
//! The parser produces these, the ingest queue carries them, the store keeps
//! them and the query engine reads them back. Nothing here does I/O.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use smallvec::SmallVec;

/// One second in the model's unit, milliseconds.
pub const SECOND_MS: i64 = 1000;
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// A UTC day (no leap seconds, as epoch time has none).
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Largest epoch OpenTSDB reads as seconds (`Const.SECOND_MASK`, 2^32 - 1);
/// a larger one is milliseconds.
pub const MAX_SECONDS: i64 = 0xFFFF_FFFF;

/// Latest timestamp a point may carry (OpenTSDB's limit, year 2286); the
/// earliest is 0.
pub const MAX_TIMESTAMP_MS: i64 = 9_999_999_999_999;

/// 2^53: every integer up to this magnitude is exactly an `f64`.
pub const MAX_EXACT_F64_INT: f64 = 9_007_199_254_740_992.0;

/// OpenTSDB's reading of an epoch: seconds when it fits in 32 bits
/// (`Const.SECOND_MASK`), else milliseconds.
pub fn epoch_ms(t: i64) -> i64 {
    if (0..=MAX_SECONDS).contains(&t) {
        t * SECOND_MS
    } else {
        t
    }
}

/// Wall-clock time in the model's unit, epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Whether `ts_ms` lies more than `ahead_ms` beyond now. Every `put` asks
/// this, and a clock read costs about as much as the rest of the check, so
/// the clock is read only for a timestamp past the latest reading plus
/// `ahead_ms`; collectors' timestamps (about now) never are. The wall clock
/// does not run backwards in normal operation; if it is stepped back, the
/// check is lenient by the step until the clock catches up.
pub fn beyond_now(ts_ms: i64, ahead_ms: i64) -> bool {
    static LATEST_NOW: AtomicI64 = AtomicI64::new(i64::MIN);
    if ts_ms <= LATEST_NOW.load(Relaxed).saturating_add(ahead_ms) {
        return false;
    }
    let now = now_ms();
    LATEST_NOW.fetch_max(now, Relaxed);
    ts_ms > now.saturating_add(ahead_ms)
}

/// A stored value. Integers stay integers end to end, because OpenTSDB
/// returns `42` for an integer put and `42.0` only for a float one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
}

impl Value {
    pub fn as_f64(self) -> f64 {
        match self {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
        }
    }

    pub fn is_int(self) -> bool {
        matches!(self, Value::Int(_))
    }
}

/// One observation of one series, at millisecond resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataPoint {
    pub timestamp_ms: i64,
    pub value: Value,
}

/// A series as timestamps and doubles apart: raw points read for
/// downsampling (an integer made a double, as every fold does), bucket
/// starts and their values, or rate times and rates.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Doubles {
    pub ts: Vec<i64>,
    pub vals: Vec<f64>,
}

impl Doubles {
    pub(crate) fn clear(&mut self) {
        self.ts.clear();
        self.vals.clear();
    }

    pub(crate) fn push(&mut self, ts: i64, v: f64) {
        self.ts.push(ts);
        self.vals.push(v);
    }

    pub(crate) fn len(&self) -> usize {
        self.ts.len()
    }

    pub(crate) fn extend_points(&mut self, points: &[DataPoint]) {
        self.ts.extend(points.iter().map(|p| p.timestamp_ms));
        self.vals.extend(points.iter().map(|p| p.value.as_f64()));
    }
}

/// The canonical identity of a series: the metric and its tags sorted by key.
///
/// Encoded as `metric (0x00 tagk 0x00 tagv)*` with tags in byte order of
/// their keys. NUL can never appear in a valid name, so the encoding is
/// unambiguous and byte equality is series equality.
///
/// Shared, not copied: a connection hands the same key to every point of
/// a series it has seen before (see [`crate::protocol::SeriesCache`]), and
/// the writer's id map and the series index hold one allocation between
/// them.
#[derive(Clone)]
pub struct SeriesKey(Arc<KeyData>);

struct KeyData {
    bytes: Box<[u8]>,
    /// The id a store's writer gave the series, tagged with that writer
    /// ([`IdTag`]); 0 before any did. Shared by every clone, so the
    /// writer resolves the points of a series a connection knows without
    /// hashing the key.
    id: AtomicU64,
}

/// Bits of [`KeyData::id`] below the writer's tag.
const ID_BITS: u32 = 48;
const ID_MASK: u64 = (1 << ID_BITS) - 1;

/// A writer's mark on the ids it caches in keys, so that a key appended
/// to two stores (tests, tools) never gives one store the other's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdTag(u64);

impl IdTag {
    /// A tag no one else in this process has; `None` once 2^16 - 1 are
    /// out, and that writer then resolves every key by its map.
    pub fn unique() -> Option<IdTag> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let tag = NEXT.fetch_add(1, Relaxed);
        (tag < 1 << (64 - ID_BITS)).then_some(IdTag(tag))
    }
}

impl PartialEq for SeriesKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.bytes == other.0.bytes
    }
}

impl Eq for SeriesKey {}

impl std::hash::Hash for SeriesKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.bytes.hash(state);
    }
}

impl PartialOrd for SeriesKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SeriesKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.bytes.cmp(&other.0.bytes)
    }
}

impl SeriesKey {
    /// Builds the canonical key; `tags` need not be sorted and must not
    /// repeat a key (the parser already rejects or folds duplicates).
    pub fn new<'a>(metric: &str, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut tags: Vec<(&str, &str)> = tags.into_iter().collect();
        tags.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let len = metric.len()
            + tags
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>();
        // Assembled on the stack, so the bytes cost one allocation.
        let mut buf: SmallVec<[u8; 128]> = SmallVec::with_capacity(len);
        buf.extend_from_slice(metric.as_bytes());
        for (k, v) in tags {
            buf.push(0);
            buf.extend_from_slice(k.as_bytes());
            buf.push(0);
            buf.extend_from_slice(v.as_bytes());
        }
        SeriesKey::wrap(buf[..].into())
    }

    fn wrap(bytes: Box<[u8]>) -> Self {
        SeriesKey(Arc::new(KeyData {
            bytes,
            id: AtomicU64::new(0),
        }))
    }

    /// The id the writer tagged `tag` cached in this key, if it did.
    pub fn cached_id(&self, tag: IdTag) -> Option<u64> {
        let v = self.0.id.load(Relaxed);
        (v >> ID_BITS == tag.0).then_some(v & ID_MASK)
    }

    /// Caches `id`, which the writer tagged `tag` gave this series for
    /// good; an id too large for the cache is not cached.
    pub fn cache_id(&self, tag: IdTag, id: u64) {
        if id <= ID_MASK {
            self.0.id.store(tag.0 << ID_BITS | id, Relaxed);
        }
    }

    /// Wraps bytes read back from the store; `None` if they are not a
    /// well-formed key (not UTF-8, or an odd number of tag parts).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        if text.split('\0').count() % 2 != 1 {
            return None;
        }
        Some(SeriesKey::wrap(bytes.into()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0.bytes
    }

    pub fn metric(&self) -> &str {
        self.parts().next().unwrap_or("")
    }

    /// Tag pairs in key order.
    pub fn tags(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut parts = self.parts().skip(1);
        std::iter::from_fn(move || Some((parts.next()?, parts.next()?)))
    }

    fn parts(&self) -> std::str::Split<'_, char> {
        // Constructed only from &str parts or validated in from_bytes.
        std::str::from_utf8(&self.0.bytes).unwrap_or("").split('\0')
    }
}

impl fmt::Display for SeriesKey {
    /// `metric{k=v,k2=v2}`, the form OpenTSDB users read in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.metric())?;
        f.write_str("{")?;
        for (i, (k, v)) in self.tags().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeriesKey({self})")
    }
}

/// A point on its way from a connection to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub series: SeriesKey,
    pub point: DataPoint,
}

/// Pre-aggregates of one series over one rollup interval (an hour or a
/// day), enough to answer sum, count, min, max, avg, dev, first and last
/// without reading raw points. Values are folded as `f64`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollupAgg {
    /// Start of the interval, inclusive, epoch ms.
    pub start_ms: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    /// Sum of squares, for `dev`.
    pub sum_sq: f64,
    /// The earliest point in the interval.
    pub first: DataPoint,
    /// The latest point in the interval.
    pub last: DataPoint,
}

impl RollupAgg {
    /// Aggregates of `points` (sorted by time) for the interval starting
    /// at `start_ms`; `None` when there are no points. Sealed hours, hours
    /// still in the head and test sources all fold through here, so their
    /// answers agree bit for bit.
    pub fn of_points(start_ms: i64, points: &[DataPoint]) -> Option<RollupAgg> {
        let (&first, rest) = points.split_first()?;
        let v = first.value.as_f64();
        let mut agg = RollupAgg {
            start_ms,
            count: 1,
            sum: v,
            min: v,
            max: v,
            sum_sq: v * v,
            first,
            last: first,
        };
        for p in rest {
            let v = p.value.as_f64();
            agg.count += 1;
            agg.sum += v;
            agg.min = agg.min.min(v);
            agg.max = agg.max.max(v);
            agg.sum_sq += v * v;
            agg.last = *p;
        }
        Some(agg)
    }
}

/// A series known to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesMeta {
    pub id: u64,
    pub key: SeriesKey,
}

/// The pre-aggregated resolutions the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RollupResolution {
    /// Aligned to epoch hours.
    Hour,
    /// Aligned to UTC days.
    Day,
}

/// Kinds of names, as OpenTSDB's UID tables know them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    Metric,
    TagKey,
    TagValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_now_refuses_only_past_the_limit_whatever_was_asked_before() {
        let (now, day) = (now_ms(), 86_400_000);
        // Far-future first, so the cached reading does not help it.
        assert!(beyond_now(now + 2 * day, day));
        assert!(!beyond_now(now, day));
        assert!(!beyond_now(now + day - 60_000, day));
        assert!(beyond_now(now + day + 60_000, day));
        assert!(beyond_now(i64::MAX, day));
        assert!(!beyond_now(0, day));
    }

    #[test]
    fn key_sorts_tags_and_round_trips() {
        let k = SeriesKey::new("sys.cpu", [("host", "a"), ("dc", "lga")]);
        assert_eq!(k.metric(), "sys.cpu");
        assert_eq!(
            k.tags().collect::<Vec<_>>(),
            vec![("dc", "lga"), ("host", "a")]
        );
        assert_eq!(k.to_string(), "sys.cpu{dc=lga,host=a}");
        assert_eq!(SeriesKey::from_bytes(k.as_bytes()), Some(k.clone()));
        assert_eq!(SeriesKey::new("m", []).tags().count(), 0);
        assert!(SeriesKey::from_bytes(b"m\0k").is_none());
    }
}
