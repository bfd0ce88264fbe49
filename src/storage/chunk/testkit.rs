//! Support for the codec's tests, fuzz target and benchmark, public (but
//! hidden) so `fuzz/` and `benches/` can reach it: the invariant checker the
//! `chunk_codec` fuzz target runs and the unit tests replay over its corpus
//! on stable Rust, and the sample series both tests and benches measure.

use super::{decode, decode_doubles, decode_into, encode, iter, ChunkEncoder};
use crate::model::{DataPoint, Doubles, Value};

/// Panics if the codec breaks an invariant on `data`:
///
/// - as a chunk, `data` decodes or fails without panicking, [`iter`]
///   agrees with [`decode`], `decode_doubles` keeps what `decode_into`
///   keeps (as doubles) and fails alike, and decoded points are strictly
///   increasing and survive a re-encode;
/// - read as a point sequence ([`points_from_bytes`]), the points
///   survive encode → decode bit for bit in both formats (the encoder's
///   and [`encode`]'s, never the larger), [`ChunkEncoder::to_bytes`]
///   gives every prefix, out-of-order pushes are handed back untouched,
///   and the chunk minus its last byte fails to decode.
pub fn check_codec_invariants(data: &[u8]) {
    check_decode(data);
    check_round_trip(&points_from_bytes(data));
}

/// `decode_doubles` against `decode_into`: the same result, and the same
/// points kept (all of them, or those before a failure), bit for bit as
/// doubles.
pub(super) fn check_doubles(data: &[u8]) {
    let (mut points, mut doubles) = (Vec::new(), Doubles::default());
    let want = decode_into(data, &mut points);
    assert_eq!(decode_doubles(data, &mut doubles), want);
    let ts: Vec<i64> = points.iter().map(|p| p.timestamp_ms).collect();
    assert_eq!(doubles.ts, ts);
    let bits = |v: &mut dyn Iterator<Item = f64>| v.map(f64::to_bits).collect::<Vec<_>>();
    assert_eq!(
        bits(&mut doubles.vals.iter().copied()),
        bits(&mut points.iter().map(|p| p.value.as_f64()))
    );
}

fn check_decode(data: &[u8]) {
    check_doubles(data);
    let decoded = decode(data);
    let iterated: Result<Vec<DataPoint>, _> = iter(data).and_then(|it| it.collect());
    match (&decoded, &iterated) {
        (Ok(a), Ok(b)) => assert!(same_points(a, b), "iter and decode disagree"),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("iter gave {iterated:?}, decode gave {decoded:?}"),
    }
    if let Ok(points) = decoded {
        assert!(points
            .windows(2)
            .all(|w| w[0].timestamp_ms < w[1].timestamp_ms));
        let again = decode(&encode(&points)).expect("re-encoded chunk decodes");
        assert!(same_points(&points, &again), "re-encode changed the points");
    }
}

fn check_round_trip(points: &[DataPoint]) {
    let mut enc = ChunkEncoder::new();
    for (i, &p) in points.iter().enumerate() {
        if let Some(last) = enc.last_timestamp() {
            let stale = DataPoint {
                timestamp_ms: last,
                value: p.value,
            };
            match enc.push(stale) {
                Err(back) => assert!(same_points(&[back], &[stale])),
                Ok(()) => panic!("accepted {stale:?} at the last timestamp"),
            }
            assert_eq!(enc.len(), i);
        }
        assert!(
            enc.push(p).is_ok(),
            "push {p:?} after {:?}",
            enc.last_timestamp()
        );
        if i % 61 == 7 {
            let prefix = decode(&enc.to_bytes()).expect("head chunk decodes");
            assert!(
                same_points(&prefix, &points[..=i]),
                "prefix of {} points differs",
                i + 1
            );
        }
    }
    assert_eq!(
        enc.first_timestamp(),
        points.first().map(|p| p.timestamp_ms)
    );
    assert_eq!(enc.last_timestamp(), points.last().map(|p| p.timestamp_ms));
    let streamed = enc.finish();
    let sealed = encode(points);
    assert!(
        sealed.len() <= streamed.len(),
        "encode chose the larger form"
    );
    for bytes in [streamed, sealed] {
        let decoded = decode(&bytes).expect("encoded chunk decodes");
        assert!(
            same_points(&decoded, points),
            "round trip of version {} changed the points",
            bytes[0]
        );
        if !points.is_empty() {
            assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        }
    }
}

/// Equality with floats compared by bits, so NaN and -0.0 count.
pub fn same_points(a: &[DataPoint], b: &[DataPoint]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.timestamp_ms == y.timestamp_ms
                && match (x.value, y.value) {
                    (Value::Int(i), Value::Int(j)) => i == j,
                    (Value::Float(f), Value::Float(g)) => f.to_bits() == g.to_bits(),
                    _ => false,
                }
        })
}

/// Reads `data` as a strictly increasing point sequence: 8 bytes of
/// first timestamp, then per point an op byte whose low 3 bits pick the
/// time step and next 3 bits the value, each followed by its operands.
/// Missing bytes read as zero; the sequence ends with the data or when
/// time would overflow.
pub fn points_from_bytes(data: &[u8]) -> Vec<DataPoint> {
    const SPECIAL: [f64; 8] = [
        -0.0,
        f64::MIN_POSITIVE,
        5e-324,
        f64::MAX,
        f64::MIN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    let mut r = Bytes(data);
    let mut t = i64::from_be_bytes(r.take());
    let mut step: u64 = 10_000;
    let mut value = Value::Int(0);
    let mut points = Vec::new();
    while !r.0.is_empty() && points.len() < 100_000 {
        let op = r.take::<1>()[0];
        if !points.is_empty() {
            step = match op & 7 {
                0 | 7 => step,
                1 => step.wrapping_add_signed(1000 * i64::from(r.take::<1>()[0] as i8)),
                2 => 1 + u64::from(r.take::<1>()[0]),
                3 => 1 + u64::from(u16::from_be_bytes(r.take())),
                4 => 1 + u64::from(u32::from_be_bytes(r.take())),
                5 => u64::from_be_bytes(r.take()),
                _ => 1000 * (1 + u64::from(r.take::<1>()[0])),
            };
            match t.checked_add_unsigned(step) {
                Some(next) if step > 0 => t = next,
                _ => break,
            }
        }
        value = match (op >> 3) & 7 {
            0 => value,
            1 => Value::Int(as_int(value).wrapping_add(i64::from(r.take::<1>()[0] as i8))),
            2 => Value::Int(i64::from_be_bytes(r.take())),
            3 => Value::Float(f64::from_bits(u64::from_be_bytes(r.take()))),
            4 => {
                let [s] = r.take::<1>();
                let m = i32::from_be_bytes(r.take());
                Value::Float(f64::from(m) / 10f64.powi(i32::from(s % 16)))
            }
            5 => Value::Float(value.as_f64() + f64::from(r.take::<1>()[0] as i8) / 8.0),
            6 => Value::Int(i64::from(i16::from_be_bytes(r.take()))),
            _ => Value::Float(SPECIAL[usize::from(r.take::<1>()[0] % 8)]),
        };
        points.push(DataPoint {
            timestamp_ms: t,
            value,
        });
    }
    points
}

fn as_int(v: Value) -> i64 {
    match v {
        Value::Int(i) => i,
        Value::Float(f) => f as i64,
    }
}

/// A byte cursor that pads with zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
}

/// Series shapes used to measure size and speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// An integer counter sampled every 10 s, growing by 180–219 a step.
    Counter,
    /// A float gauge every 10 s with one decimal, `(rand*100).round()/10`.
    Gauge1dp,
    /// A float gauge every 10 s with two decimals, `(rand*10000).round()/100`.
    Gauge2dp,
    /// Uniformly random full-precision floats in `[0, 1e6)` every 10 s.
    RandomF64,
}

impl Shape {
    pub const ALL: [Shape; 4] = [
        Shape::Counter,
        Shape::Gauge1dp,
        Shape::Gauge2dp,
        Shape::RandomF64,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Counter => "counter",
            Shape::Gauge1dp => "gauge_1dp",
            Shape::Gauge2dp => "gauge_2dp",
            Shape::RandomF64 => "random_f64",
        }
    }

    /// `n` points from 2023-11-14, the same on every call.
    pub fn sample(self, n: usize) -> Vec<DataPoint> {
        let mut rng = SplitMix(42);
        let mut counter = 1_000_000i64;
        (0..n as i64)
            .map(|i| {
                let value = match self {
                    Shape::Counter => {
                        counter += 180 + (rng.next_u64() % 40) as i64;
                        Value::Int(counter)
                    }
                    Shape::Gauge1dp => Value::Float((rng.unit() * 100.0).round() / 10.0),
                    Shape::Gauge2dp => Value::Float((rng.unit() * 10_000.0).round() / 100.0),
                    Shape::RandomF64 => Value::Float(rng.unit() * 1e6),
                };
                DataPoint {
                    timestamp_ms: 1_700_000_000_000 + i * 10_000,
                    value,
                }
            })
            .collect()
    }
}

/// splitmix64, a small deterministic generator.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
