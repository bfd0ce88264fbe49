//! Pre-aggregates: folding points into a [`RollupAgg`], combining hourly
//! aggregates into daily ones, and the rollup record format.
//!
//! The writer computes an hour's aggregate when it seals that hour's block
//! (a head window is exactly one rollup hour) and refolds the day from its
//! hours; the reader computes the same aggregates on the fly for hours that
//! still have unsealed data. Both go through [`RollupAgg::of_points`] and
//! [`fold`], so sealed and unsealed answers agree bit for bit.

use crate::model::{DataPoint, RollupAgg, Value, SECOND_MS};

use super::log::{decimal_code, from_decimal_code, put_varint, read_varint, unzigzag, zigzag};

/// Version byte of the records this build writes (see [`encode`]).
pub const RECORD_VERSION: u8 = 3;

/// Version byte of the records of format 4 stores, still read: version 3
/// without [`SECONDS`] and with every integer absolute (anchored at 0).
const V2: u8 = 2;

/// Version byte of the fixed-width records of earlier builds, still read:
/// `0x01 ‖ count u64 ‖ sum ‖ min ‖ max ‖ sum_sq ‖ first ‖ last`, where each
/// point is `ts (i64) ‖ kind (0 int, 1 float) ‖ 8 value bytes`, all
/// big-endian.
const V1: u8 = 1;
const V1_POINT_LEN: usize = 8 + 1 + 8;
const V1_LEN: usize = 1 + 5 * 8 + 2 * V1_POINT_LEN;

/// How a version 2 or 3 record stores one number, two bits per field in its
/// flags. Each field takes the shortest code that gives its bits back.
const CODE_RAW: u16 = 0; // 8 bytes, little-endian IEEE-754
const CODE_INT: u16 = 1; // varint(zigzag(i - anchor)), the float is `i as f64`
const CODE_DECIMAL: u16 = 2; // a `log` decimal: varint(zigzag(m) << 3 | s)
/// For a point: an integer value, varint(zigzag(i)). For a statistic:
/// nothing stored, it equals what [`derive`] computes from the points.
const CODE_OTHER: u16 = 3;

/// Field order in the flags and in the record.
const FIRST: u32 = 0;
const LAST: u32 = 1;
const SUM: u32 = 2;
const MIN: u32 = 3;
const MAX: u32 = 4;
const SUM_SQ: u32 = 5;
/// Flag: the last point is the first one and is not stored.
const LAST_IS_FIRST: u16 = 1 << 12;
/// Flag (version 3): both timestamp deltas are stored in whole seconds.
const SECONDS: u16 = 1 << 13;
/// Every flag bit a version 2 record may set.
const KNOWN_FLAGS_V2: u16 = (1 << 13) - 1;
/// Every flag bit a version 3 record may set.
const KNOWN_FLAGS: u16 = (1 << 14) - 1;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RollupError {
    #[error("version 1 rollup record of {0} bytes, expected {V1_LEN}")]
    Length(usize),
    #[error("unknown rollup record version {0}")]
    Version(u8),
    #[error("unknown value kind {0} in rollup record")]
    ValueKind(u8),
    #[error("rollup record truncated")]
    Truncated,
    #[error("{0} bytes after the end of a rollup record")]
    Trailing(usize),
    #[error("unknown rollup record flags {0:#06x}")]
    Flags(u16),
}

/// Folds aggregates of consecutive, disjoint intervals (in time order) into
/// one for the interval starting at `start_ms`.
pub fn fold(start_ms: i64, parts: impl IntoIterator<Item = RollupAgg>) -> Option<RollupAgg> {
    let mut parts = parts.into_iter();
    let mut acc = parts.next()?;
    acc.start_ms = start_ms;
    for p in parts {
        acc.count += p.count;
        acc.sum += p.sum;
        acc.min = acc.min.min(p.min);
        acc.max = acc.max.max(p.max);
        acc.sum_sq += p.sum_sq;
        if p.first.timestamp_ms < acc.first.timestamp_ms {
            acc.first = p.first;
        }
        if p.last.timestamp_ms > acc.last.timestamp_ms {
            acc.last = p.last;
        }
    }
    Some(acc)
}

/// The statistic `field` as far as the points tell it, which is all of it
/// for a single point (sum, min and max are its value, sum_sq its square)
/// and min and max of a monotonic run (counters). Comparisons, not
/// `f64::min`, so that every platform derives the same bits.
fn derive(field: u32, first: f64, last: f64, sum: f64) -> f64 {
    match field {
        SUM => first,
        MIN if last < first => last,
        MAX if last > first => last,
        MIN | MAX => first,
        _ => sum * sum,
    }
}

/// Same time, same kind, same bits (`==` takes -0.0 for 0.0 and no NaN
/// for itself).
fn identical(a: DataPoint, b: DataPoint) -> bool {
    a.timestamp_ms == b.timestamp_ms
        && match (a.value, b.value) {
            (Value::Int(x), Value::Int(y)) => x == y,
            (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
            _ => false,
        }
}

/// What integers of `field` are stored relative to, given the first
/// point's value: an integer series' statistics lie near it (the sum near
/// `count` times it) where their absolute values take a byte or two more.
/// Version 2 records anchor everything at 0.
fn anchor(field: u32, first: Value, count: u64) -> i64 {
    let Value::Int(a) = first else {
        return 0;
    };
    match field {
        FIRST | SUM_SQ => 0,
        SUM => a.wrapping_mul(count as i64),
        _ => a,
    }
}

/// Appends `f` in its shortest exact code, integers relative to `anchor`,
/// and returns the code.
fn put_f64(out: &mut Vec<u8>, f: f64, anchor: i64) -> u16 {
    let i = f as i64;
    let int = ((i as f64).to_bits() == f.to_bits()).then(|| zigzag(i.wrapping_sub(anchor)));
    // A varint of more than 8 bytes is no shorter than the raw float.
    let fits = |v: &u64| *v < 1 << 56;
    if let Some(v) = int.filter(fits) {
        put_varint(out, v);
        return CODE_INT;
    }
    match decimal_code(f).filter(fits) {
        Some(v) => {
            put_varint(out, v);
            CODE_DECIMAL
        }
        None => {
            out.extend_from_slice(&f.to_bits().to_le_bytes());
            CODE_RAW
        }
    }
}

fn put_value(out: &mut Vec<u8>, v: Value, anchor: i64) -> u16 {
    match v {
        Value::Int(i) => {
            put_varint(out, zigzag(i.wrapping_sub(anchor)));
            CODE_OTHER
        }
        Value::Float(f) => put_f64(out, f, anchor),
    }
}

/// The rollup record of `agg` (its start lives in the key):
/// `0x03 ‖ flags u16 LE ‖ varint(count) ‖ first ‖ last ‖ sum ‖ min ‖ max ‖
/// sum_sq`. A point is varint(zigzag(ts − previous)), the previous being
/// the interval start for `first` and `first` for `last`, in seconds
/// under [`SECONDS`], then its value; `last` is left out under
/// [`LAST_IS_FIRST`]. Each value and statistic is in the code its two flag
/// bits name, an integer (a point's or a [`CODE_INT`]) as its difference
/// from its [`anchor`]; a derived statistic takes no bytes. A single point
/// takes 6 bytes, an hour of 10 s points about 25 (see the tests), instead
/// of the 75 of version 1; the most is 85.
pub fn encode(agg: &RollupAgg) -> Vec<u8> {
    let mut out = Vec::with_capacity(48);
    out.extend_from_slice(&[RECORD_VERSION, 0, 0]);
    put_varint(&mut out, agg.count);
    let last_is_first = identical(agg.first, agg.last);
    let since_start = agg.first.timestamp_ms.wrapping_sub(agg.start_ms);
    let since_first = agg.last.timestamp_ms.wrapping_sub(agg.first.timestamp_ms);
    let mut flags = 0u16;
    // A multiple of 1000 divides exactly, so the decoder's product is it.
    let unit = if since_start % SECOND_MS == 0 && since_first % SECOND_MS == 0 {
        flags |= SECONDS;
        SECOND_MS
    } else {
        1
    };
    let anchor = |field| anchor(field, agg.first.value, agg.count);
    let mut point = |out: &mut Vec<u8>, field: u32, p: DataPoint, delta: i64| {
        put_varint(out, zigzag(delta / unit));
        flags |= put_value(out, p.value, anchor(field)) << (2 * field);
    };
    point(&mut out, FIRST, agg.first, since_start);
    if !last_is_first {
        point(&mut out, LAST, agg.last, since_first);
    }
    let (first, last) = (agg.first.value.as_f64(), agg.last.value.as_f64());
    for (field, f) in [
        (SUM, agg.sum),
        (MIN, agg.min),
        (MAX, agg.max),
        (SUM_SQ, agg.sum_sq),
    ] {
        let code = if derive(field, first, last, agg.sum).to_bits() == f.to_bits() {
            CODE_OTHER
        } else {
            put_f64(&mut out, f, anchor(field))
        };
        flags |= code << (2 * field);
    }
    if last_is_first {
        flags |= LAST_IS_FIRST;
    }
    out[1..3].copy_from_slice(&flags.to_le_bytes());
    out
}

/// Reads a rollup record of either version back; `start_ms` comes from
/// its key.
pub fn decode(start_ms: i64, bytes: &[u8]) -> Result<RollupAgg, RollupError> {
    match bytes.first() {
        Some(&RECORD_VERSION) => decode_v2(start_ms, bytes, KNOWN_FLAGS),
        Some(&V2) => decode_v2(start_ms, bytes, KNOWN_FLAGS_V2),
        Some(&V1) => decode_v1(start_ms, bytes),
        Some(&v) => Err(RollupError::Version(v)),
        None => Err(RollupError::Truncated),
    }
}

/// A version 2 or 3 record being read.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    flags: u16,
    /// Version 3: the first point's value, which anchors integers.
    first: Value,
    count: u64,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, RollupError> {
        read_varint(self.bytes, &mut self.at).map_err(|_| RollupError::Truncated)
    }

    fn code(&self, field: u32) -> u16 {
        self.flags >> (2 * field) & 3
    }

    /// The difference from `field`'s anchor in a varint.
    fn int(&mut self, field: u32) -> Result<i64, RollupError> {
        let anchor = anchor(field, self.first, self.count);
        Ok(anchor.wrapping_add(unzigzag(self.varint()?)))
    }

    /// A number of `field` in `code`, which is not [`CODE_OTHER`].
    fn f64(&mut self, field: u32, code: u16) -> Result<f64, RollupError> {
        Ok(match code {
            CODE_INT => self.int(field)? as f64,
            CODE_DECIMAL => from_decimal_code(self.varint()?),
            _ => {
                if self.bytes.len() < self.at + 8 {
                    return Err(RollupError::Truncated);
                }
                self.at += 8;
                f64::from_bits(u64::from_le_bytes(word(self.bytes, self.at - 8)))
            }
        })
    }

    fn point(&mut self, field: u32, from: i64) -> Result<DataPoint, RollupError> {
        let unit = if self.flags & SECONDS != 0 {
            SECOND_MS
        } else {
            1
        };
        let timestamp_ms = from.wrapping_add(unzigzag(self.varint()?).wrapping_mul(unit));
        let value = match self.code(field) {
            CODE_OTHER => Value::Int(self.int(field)?),
            code => Value::Float(self.f64(field, code)?),
        };
        Ok(DataPoint {
            timestamp_ms,
            value,
        })
    }
}

/// Reads a version 2 or 3 record (the flags `known` tell which): they
/// differ only in what version 2 cannot set, [`SECONDS`] and the anchor.
fn decode_v2(start_ms: i64, bytes: &[u8], known: u16) -> Result<RollupAgg, RollupError> {
    let flags = bytes.get(1..3).ok_or(RollupError::Truncated)?;
    let flags = u16::from_le_bytes([flags[0], flags[1]]);
    if flags & !known != 0 {
        return Err(RollupError::Flags(flags));
    }
    let mut r = Reader {
        bytes,
        at: 3,
        flags,
        first: Value::Float(0.0),
        count: 0,
    };
    let count = r.varint()?;
    let first = r.point(FIRST, start_ms)?;
    if known == KNOWN_FLAGS {
        r.first = first.value;
        r.count = count;
    }
    let last = if flags & LAST_IS_FIRST != 0 {
        first
    } else {
        r.point(LAST, first.timestamp_ms)?
    };
    let (f, l) = (first.value.as_f64(), last.value.as_f64());
    let mut stat = |field: u32, sum: f64| match r.code(field) {
        CODE_OTHER => Ok(derive(field, f, l, sum)),
        code => r.f64(field, code),
    };
    let sum = stat(SUM, 0.0)?;
    let min = stat(MIN, sum)?;
    let max = stat(MAX, sum)?;
    let sum_sq = stat(SUM_SQ, sum)?;
    if r.at != bytes.len() {
        return Err(RollupError::Trailing(bytes.len() - r.at));
    }
    Ok(RollupAgg {
        start_ms,
        count,
        sum,
        min,
        max,
        sum_sq,
        first,
        last,
    })
}

fn word(bytes: &[u8], at: usize) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    w
}

fn get_v1_point(bytes: &[u8], at: usize) -> Result<DataPoint, RollupError> {
    let timestamp_ms = i64::from_be_bytes(word(bytes, at));
    let raw = word(bytes, at + 9);
    let value = match bytes[at + 8] {
        0 => Value::Int(i64::from_be_bytes(raw)),
        1 => Value::Float(f64::from_bits(u64::from_be_bytes(raw))),
        k => return Err(RollupError::ValueKind(k)),
    };
    Ok(DataPoint {
        timestamp_ms,
        value,
    })
}

fn decode_v1(start_ms: i64, bytes: &[u8]) -> Result<RollupAgg, RollupError> {
    if bytes.len() != V1_LEN {
        return Err(RollupError::Length(bytes.len()));
    }
    let f = |i: usize| f64::from_bits(u64::from_be_bytes(word(bytes, 9 + 8 * i)));
    Ok(RollupAgg {
        start_ms,
        count: u64::from_be_bytes(word(bytes, 1)),
        sum: f(0),
        min: f(1),
        max: f(2),
        sum_sq: f(3),
        first: get_v1_point(bytes, 41)?,
        last: get_v1_point(bytes, 41 + V1_POINT_LEN)?,
    })
}

#[cfg(test)]
/// The fixed-width record earlier builds wrote, for the tests that
/// this build still reads it.
pub(super) fn encode_v1(agg: &RollupAgg) -> Vec<u8> {
    let mut out = vec![V1];
    out.extend_from_slice(&agg.count.to_be_bytes());
    for f in [agg.sum, agg.min, agg.max, agg.sum_sq] {
        out.extend_from_slice(&f.to_bits().to_be_bytes());
    }
    for p in [agg.first, agg.last] {
        out.extend_from_slice(&p.timestamp_ms.to_be_bytes());
        let (kind, raw) = match p.value {
            Value::Int(i) => (0, i.to_be_bytes()),
            Value::Float(f) => (1, f.to_bits().to_be_bytes()),
        };
        out.push(kind);
        out.extend_from_slice(&raw);
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn p(ts: i64, value: Value) -> DataPoint {
        DataPoint {
            timestamp_ms: ts,
            value,
        }
    }

    #[test]
    fn aggregate_folds_every_statistic() {
        let pts = [
            p(10, Value::Int(3)),
            p(20, Value::Float(-1.5)),
            p(30, Value::Int(4)),
        ];
        let agg = RollupAgg::of_points(0, &pts).expect("points");
        assert_eq!(agg.count, 3);
        assert_eq!(agg.sum, 5.5);
        assert_eq!(agg.min, -1.5);
        assert_eq!(agg.max, 4.0);
        assert_eq!(agg.sum_sq, 9.0 + 2.25 + 16.0);
        assert_eq!(agg.first, pts[0]);
        assert_eq!(agg.last, pts[2]);
        assert_eq!(RollupAgg::of_points(0, &[]), None);
    }

    #[test]
    fn fold_of_parts_equals_aggregate_of_all() {
        let pts: Vec<_> = (0..10)
            .map(|i| p(i * 100, Value::Int(i * i - 20)))
            .collect();
        let whole = RollupAgg::of_points(0, &pts).expect("points");
        let parts = [
            RollupAgg::of_points(0, &pts[..4]),
            RollupAgg::of_points(400, &pts[4..]),
        ];
        assert_eq!(fold(0, parts.into_iter().flatten()), Some(whole));
    }

    /// Every field by its bits: `RollupAgg`'s `==` takes -0.0 for 0.0
    /// and no NaN for itself.
    fn bits(a: &RollupAgg) -> impl PartialEq + std::fmt::Debug {
        let point = |p: DataPoint| match p.value {
            Value::Int(i) => (p.timestamp_ms, 0, i as u64),
            Value::Float(f) => (p.timestamp_ms, 1, f.to_bits()),
        };
        let stats = [a.sum, a.min, a.max, a.sum_sq].map(f64::to_bits);
        (a.start_ms, a.count, stats, point(a.first), point(a.last))
    }

    fn round_trips(agg: &RollupAgg) -> Vec<u8> {
        let bytes = encode(agg);
        // Header 3, count 10, each point 10 + 10, each statistic 8.
        assert!(bytes.len() <= 85, "{} bytes", bytes.len());
        let back = decode(agg.start_ms, &bytes).expect("decodes");
        assert_eq!(bits(&back), bits(agg), "{agg:?} as {bytes:02x?}");
        bytes
    }

    #[test]
    fn typical_hours_take_a_few_dozen_bytes() {
        let hour = 7_200_000;
        let single = RollupAgg::of_points(hour, &[p(hour + 5_000, Value::Int(42))]);
        // Version, flags, count, ts, value: the statistics are derived.
        assert_eq!(round_trips(&single.expect("point")).len(), 6);

        let counter: Vec<_> = (0..360)
            .map(|i| p(hour + i * 10_000, Value::Int(1_000_000_000 + i * 4_321)))
            .collect();
        let agg = RollupAgg::of_points(hour, &counter).expect("points");
        // 3 header, 2 count, 1 + 5 first, 2 + 4 last (seconds, and 1551239
        // more than first), 5 sum (279223020 more than 360 firsts), 8 sum_sq
        // (past 2^56); min and max are first and last: not stored.
        assert_eq!(round_trips(&agg).len(), 30);

        let gauge: Vec<_> = (0..360)
            .map(|i| {
                p(
                    hour + i * 10_000,
                    Value::Float(((i * 37) % 1000) as f64 / 100.0),
                )
            })
            .collect();
        let agg = RollupAgg::of_points(hour, &gauge).expect("points");
        // Short first, last, min and max (integers or decimals), sum and
        // sum_sq raw, the last point's timestamp in seconds: 29 bytes.
        assert_eq!(round_trips(&agg).len(), 29);
    }

    /// The same two points in version 2, as format 4 stores hold them, and
    /// in version 3: timestamps in seconds, integers relative to the first
    /// value (the sum to twice it).
    #[test]
    fn golden_records() {
        let agg = RollupAgg::of_points(
            7_200_000,
            &[
                p(7_210_000, Value::Int(1000)),
                p(7_220_000, Value::Int(1500)),
            ],
        )
        .expect("points");
        let v2 = [
            0x02, 0xDF, 0x07, 0x02, 0xA0, 0x9C, 0x01, 0xD0, 0x0F, 0xA0, 0x9C, 0x01, 0xB8, 0x17,
            0x88, 0x27, 0xA0, 0xDD, 0x8C, 0x03,
        ];
        assert_eq!(decode(7_200_000, &v2), Ok(agg));
        let v3 = [
            0x03, 0xDF, 0x27, 0x02, 0x14, 0xD0, 0x0F, 0x14, 0xE8, 0x07, 0xE8, 0x07, 0xA0, 0xDD,
            0x8C, 0x03,
        ];
        assert_eq!(round_trips(&agg), v3);
        // Version 2 knows no seconds flag.
        let mut bad = v2;
        bad[2] |= 0x20;
        assert_eq!(decode(0, &bad), Err(RollupError::Flags(0x27DF)));
    }

    #[test]
    fn version_1_records_still_read() {
        let agg = RollupAgg::of_points(
            7_200_000,
            &[
                p(7_200_001, Value::Int(-9)),
                p(7_200_002, Value::Float(0.25)),
            ],
        )
        .expect("points");
        let v1 = encode_v1(&agg);
        assert_eq!(v1.len(), V1_LEN);
        assert_eq!(decode(7_200_000, &v1), Ok(agg));
        assert_eq!(
            decode(0, &v1[..V1_LEN - 1]),
            Err(RollupError::Length(V1_LEN - 1))
        );
        let mut bad = v1;
        bad[41 + 8] = 7;
        assert_eq!(decode(0, &bad), Err(RollupError::ValueKind(7)));
    }

    #[test]
    fn garbage_is_an_error() {
        let agg = RollupAgg::of_points(0, &[p(1, Value::Int(3)), p(2, Value::Float(0.5))]);
        let bytes = round_trips(&agg.expect("points"));
        assert_eq!(bytes[0], RECORD_VERSION);
        assert_eq!(decode(0, &[]), Err(RollupError::Truncated));
        assert_eq!(decode(0, &[9]), Err(RollupError::Version(9)));
        for cut in 1..bytes.len() {
            assert_eq!(
                decode(0, &bytes[..cut]),
                Err(RollupError::Truncated),
                "{cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode(0, &long), Err(RollupError::Trailing(1)));
        let mut bad = bytes;
        bad[2] |= 0x80;
        assert!(matches!(decode(0, &bad), Err(RollupError::Flags(_))));
    }

    fn float() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            // Signalling and payload-carrying NaNs, both signs.
            any::<u64>().prop_map(|m| f64::from_bits(0x7ff0_0000_0000_0001 | m)),
            Just(-0.0),
            Just(0.0),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MIN_POSITIVE),
            Just(f64::MAX),
            Just(i64::MIN as f64),
            Just(i64::MAX as f64),
            any::<i64>().prop_map(|i| i as f64),
            (any::<i32>(), 0..9u32).prop_map(|(m, s)| m as f64 / 10f64.powi(s as i32)),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<i64>().prop_map(Value::Int),
            prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), -1000..1000i64]
                .prop_map(Value::Int),
            float().prop_map(Value::Float),
        ]
    }

    fn time() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
            0..7_200_000i64
        ]
    }

    fn point() -> impl Strategy<Value = DataPoint> {
        (time(), value()).prop_map(|(ts, value)| p(ts, value))
    }

    fn agg() -> impl Strategy<Value = RollupAgg> {
        let stats = (float(), float(), float(), float());
        let count = prop_oneof![any::<u64>(), Just(1u64), Just(u64::MAX)];
        (time(), count, stats, point(), point(), any::<bool>()).prop_map(
            |(start_ms, count, (sum, min, max, sum_sq), first, last, single)| RollupAgg {
                start_ms,
                count,
                sum,
                min,
                max,
                sum_sq,
                first,
                last: if single { first } else { last },
            },
        )
    }

    /// Aggregates as the store folds them, so that the derived codes are
    /// taken too.
    fn folded() -> impl Strategy<Value = RollupAgg> {
        (time(), proptest::collection::vec(value(), 1..6)).prop_map(|(start, values)| {
            let points: Vec<_> = values
                .into_iter()
                .enumerate()
                .map(|(i, v)| p(start.wrapping_add(i as i64), v))
                .collect();
            RollupAgg::of_points(start, &points).expect("points")
        })
    }

    proptest! {
        #[test]
        fn any_aggregate_round_trips_bit_for_bit(agg in agg()) {
            round_trips(&agg);
        }

        #[test]
        fn folded_aggregates_round_trip_bit_for_bit(agg in folded()) {
            round_trips(&agg);
        }

        #[test]
        fn any_bytes_decode_without_panicking(rest in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut bytes = vec![RECORD_VERSION];
            bytes.extend(rest);
            let _ = decode(0, &bytes);
        }
    }
}
