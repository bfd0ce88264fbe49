use proptest::prelude::*;

use super::bits::BitWriter;
use super::testkit::{check_codec_invariants, same_points, Shape, SplitMix as Rng};
use super::*;

fn int(t: i64, v: i64) -> DataPoint {
    DataPoint {
        timestamp_ms: t,
        value: Value::Int(v),
    }
}

fn float(t: i64, v: f64) -> DataPoint {
    DataPoint {
        timestamp_ms: t,
        value: Value::Float(v),
    }
}

fn assert_round_trip(points: &[DataPoint]) -> Vec<u8> {
    let bytes = encode(points);
    let back = decode(&bytes).expect("decodes");
    assert!(same_points(&back, points), "{back:?} != {points:?}");
    bytes
}

const T0: i64 = 1_700_000_000_000;

#[test]
fn golden_integer_chunk() {
    // ts0 raw; value 5 as dod 5 (`10 00101`); then ts dod 1000 (`10 0001`),
    // value dod -5 (`10 11011`); then ts dod 0 (`0`), value dod 1 (`10 00001`).
    let bytes = assert_round_trip(&[int(1000, 5), int(2000, 5), int(3000, 6)]);
    assert_eq!(
        bytes,
        [0x01, 0x03, 0, 0, 0, 0, 0, 0, 0x03, 0xE8, 0x8B, 0x0D, 0xB4, 0x10]
    );
}

#[test]
fn golden_float_chunk() {
    // 2.5 switches to decimal mode 1 (`1111111 0011`) as mantissa 25
    // (`110 000011001`); -0.0 is no decimal, so it switches to XOR mode
    // (`1111111 0001`) with a new window of 1 bit (`11 000000 000000 1`).
    let bytes = assert_round_trip(&[float(0, 2.5), float(1, -0.0)]);
    assert_eq!(
        bytes,
        [0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0xFE, 0x78, 0x33, 0x80, 0xFF, 0x1C, 0x00, 0x20]
    );
}

#[test]
fn empty_encoder() {
    let enc = ChunkEncoder::new();
    assert!(enc.is_empty());
    assert_eq!(enc.len(), 0);
    assert_eq!(enc.first_timestamp(), None);
    assert_eq!(enc.last_timestamp(), None);
    assert_eq!(enc.to_bytes(), [1, 0]);
    assert_eq!(enc.finish(), [1, 0]);
    assert_eq!(decode(&[1, 0]), Ok(vec![]));
    assert_eq!(encode(&[]), [1, 0]);
}

#[test]
fn push_hands_back_stale_points() {
    let mut enc = ChunkEncoder::new();
    assert_eq!(enc.push(int(100, 1)), Ok(()));
    assert_eq!(enc.push(int(100, 2)), Err(int(100, 2)));
    assert_eq!(enc.push(float(99, 3.5)), Err(float(99, 3.5)));
    assert_eq!(enc.push(int(101, 4)), Ok(()));
    assert_eq!(enc.len(), 2);
    assert_eq!(enc.first_timestamp(), Some(100));
    assert_eq!(enc.last_timestamp(), Some(101));
    assert_eq!(decode(&enc.finish()), Ok(vec![int(100, 1), int(101, 4)]));
}

#[test]
fn extreme_timestamps() {
    let ts = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
    assert_round_trip(&ts.map(|t| int(t, t)));
    // The largest possible gap, then a tiny one.
    assert_round_trip(&[int(i64::MIN, 0), int(i64::MAX - 1, 0), int(i64::MAX, 0)]);
    // Negative times at second resolution.
    assert_round_trip(
        &(0..100)
            .map(|i| int(-86_400_000 + i * 1000, i))
            .collect::<Vec<_>>(),
    );
}

#[test]
fn extreme_values() {
    let ints = [i64::MIN, i64::MAX, 0, i64::MIN, -1, i64::MAX, i64::MAX, 1];
    let points: Vec<_> = ints.iter().zip(0..).map(|(&v, t)| int(t, v)).collect();
    assert_round_trip(&points);

    let floats = [
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        f64::MIN_POSITIVE / 3.0,
        5e-324,
        -5e-324,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        f64::from_bits(0x7FF0_0000_0000_0001),
        f64::from_bits(0xFFF8_DEAD_BEEF_0001),
        1e300,
        9_007_199_254_740_993.0,
        0.1 + 0.2,
        -0.0,
    ];
    let points: Vec<_> = floats
        .iter()
        .zip(0..)
        .map(|(&v, t)| float(t * 7, v))
        .collect();
    assert_round_trip(&points);
}

#[test]
fn kinds_survive_mixing() {
    let points = [
        int(1, 1),
        float(2, 1.0),
        int(3, 1),
        float(4, 1.5),
        float(5, f64::NAN),
        float(6, 1.5),
        int(7, 2),
        float(8, 0.1),
        float(9, 0.123),
        float(10, 1.0 / 3.0),
        float(11, 0.5),
        int(12, -7),
    ];
    let back = decode(&assert_round_trip(&points)).expect("decodes");
    let kinds: Vec<bool> = back.iter().map(|p| p.value.is_int()).collect();
    assert_eq!(kinds, points.map(|p| p.value.is_int()));
}

#[test]
fn decimal_floats_are_exact() {
    let values = [
        0.1,
        0.2,
        0.3,
        12.5,
        99.99,
        -3.75,
        1e15,
        123_456.789,
        0.000_001,
        4.35,
        1e-13,
    ];
    let points: Vec<_> = values.iter().zip(0..).map(|(&v, t)| float(t, v)).collect();
    assert_round_trip(&points);
    for &v in &values {
        let (s, m) = find_decimal(v).expect("a short decimal");
        assert_eq!((m as f64 / POW10[usize::from(s)]).to_bits(), v.to_bits());
    }
    assert_eq!(find_decimal(0.1), Some((1, 1)));
    assert_eq!(find_decimal(30.0), Some((0, 30)));
    assert_eq!(find_decimal(-0.0), None);
    assert_eq!(find_decimal(0.1 + 0.2), None);
    assert_eq!(find_decimal(f64::NAN), None);
    assert_eq!(find_decimal(1e300), None);
}

#[test]
fn to_bytes_mid_stream_decodes_to_prefix() {
    let mut rng = Rng(7);
    let points: Vec<_> = (0..500)
        .map(|i| match rng.next_u64() % 3 {
            0 => int(T0 + i * 1000, (rng.next_u64() % 1000) as i64),
            1 => float(T0 + i * 1000, (rng.unit() * 1000.0).round() / 100.0),
            _ => float(T0 + i * 1000, rng.unit()),
        })
        .collect();
    let mut enc = ChunkEncoder::new();
    for (i, &p) in points.iter().enumerate() {
        enc.push(p).expect("in order");
        let prefix = decode(&enc.to_bytes()).expect("decodes");
        assert!(same_points(&prefix, &points[..=i]), "prefix of {}", i + 1);
    }
    assert!(enc.byte_size() >= enc.to_bytes().len() - 10);
    assert!(enc.byte_size() <= 2 * enc.to_bytes().len() + 8);
}

#[test]
fn iter_stops_early() {
    let points: Vec<_> = (0..100).map(|i| int(T0 + i * 10_000, i)).collect();
    let bytes = encode(&points);
    let first: Vec<_> = iter(&bytes)
        .expect("header")
        .map_while(Result::ok)
        .take_while(|p| p.timestamp_ms < T0 + 50_000)
        .collect();
    assert_eq!(first, points[..5]);
}

#[test]
fn every_truncation_fails() {
    let mut rng = Rng(3);
    let points: Vec<_> = (0..60)
        .map(|i| {
            let t = T0 + i * 997 + (rng.next_u64() % 5) as i64;
            if i % 5 == 0 {
                float(t, rng.unit())
            } else {
                int(t, (rng.next_u64() % 100) as i64)
            }
        })
        .collect();
    let bytes = assert_round_trip(&points);
    for len in 0..bytes.len() {
        assert!(
            decode(&bytes[..len]).is_err(),
            "{len} of {} bytes decoded",
            bytes.len()
        );
    }
    assert_eq!(
        decode(&bytes[..bytes.len() - 1]),
        Err(ChunkError::Truncated {
            index: points.len() - 1
        })
    );
}

/// A chunk with `count` points whose bits `build` writes.
fn crafted(count: u8, build: impl FnOnce(&mut BitWriter)) -> Vec<u8> {
    let mut w = BitWriter::default();
    build(&mut w);
    let mut out = vec![VERSION, count];
    w.append_to(&mut out);
    out
}

#[test]
fn corrupt_headers() {
    assert_eq!(decode(&[]), Err(ChunkError::Empty));
    assert_eq!(decode(&[2, 0]), Err(ChunkError::UnknownVersion(2)));
    assert_eq!(decode(&[1]), Err(ChunkError::BadHeader));
    assert_eq!(decode(&[1, 0x80]), Err(ChunkError::BadHeader));
    assert_eq!(
        decode(&[1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02]),
        Err(ChunkError::BadHeader)
    );
    // u64::MAX points claimed by 12 bytes.
    let huge = [
        1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0, 0,
    ];
    assert_eq!(
        decode(&huge),
        Err(ChunkError::CountTooLarge {
            count: u64::MAX,
            len: 13
        })
    );
    // 9 body bytes (72 bits) hold 4 points at most: 65 bits, then 2 each.
    assert_eq!(
        decode(&[1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(ChunkError::CountTooLarge { count: 5, len: 11 })
    );
    assert_eq!(
        decode(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        Ok(vec![int(0, 0)])
    );
}

#[test]
fn corrupt_trailing_data() {
    let mut bytes = encode(&[int(0, 0)]);
    assert_eq!(bytes.len(), 11);
    bytes.push(0);
    assert_eq!(decode(&bytes), Err(ChunkError::TrailingData { bits: 15 }));
    let mut bytes = encode(&[int(0, 0)]);
    bytes[10] |= 1;
    assert_eq!(decode(&bytes), Err(ChunkError::TrailingData { bits: 7 }));
    assert_eq!(
        decode(&[1, 0, 0]),
        Err(ChunkError::TrailingData { bits: 8 })
    );
}

#[test]
fn corrupt_points() {
    let ts0 = |w: &mut BitWriter| w.write(100, 64);
    // A repeated timestamp: delta 0 then dod 0.
    let same_ts = crafted(2, |w| {
        ts0(w);
        w.write(0, 1);
        w.write(0, 1);
        w.write(0, 1);
    });
    assert_eq!(
        decode(&same_ts),
        Err(ChunkError::NotIncreasing {
            index: 1,
            previous: 100,
            timestamp: 100
        })
    );
    let backwards = crafted(2, |w| {
        ts0(w);
        w.write(0, 1);
        w.write_code(2, 5, -1i64 as u64, 7);
        w.write(0, 1);
    });
    assert_eq!(
        decode(&backwards),
        Err(ChunkError::NotIncreasing {
            index: 1,
            previous: 100,
            timestamp: 99
        })
    );
    let to_xor = |w: &mut BitWriter| {
        ts0(w);
        w.write_code(7, 7, 0, 0);
        w.write(1, 4);
    };
    let no_window = crafted(1, |w| {
        to_xor(w);
        w.write(0b10, 2);
    });
    assert_eq!(decode(&no_window), Err(ChunkError::NoWindow { index: 0 }));
    let bad_window = crafted(1, |w| {
        to_xor(w);
        w.write(0b11, 2);
        w.write(60, 6);
        w.write(9, 6);
        w.write(0, 10);
    });
    assert_eq!(
        decode(&bad_window),
        Err(ChunkError::BadWindow {
            index: 0,
            leading: 60,
            width: 10
        })
    );
    let double_switch = crafted(1, |w| {
        to_xor(w);
        w.write(0x3FFF, 14);
    });
    assert_eq!(
        decode(&double_switch),
        Err(ChunkError::DoubleSwitch { index: 0 })
    );
    let same_mode = crafted(1, |w| {
        ts0(w);
        w.write_code(7, 7, 0, 0);
        w.write(0, 4);
        w.write(0, 1);
    });
    assert_eq!(
        decode(&same_mode),
        Err(ChunkError::SameMode {
            index: 0,
            selector: 0
        })
    );
}

/// Bytes per point of 1000 points, printed for the record.
fn bytes_per_point(name: &str, points: &[DataPoint]) -> f64 {
    let bytes = assert_round_trip(points);
    let per_point = bytes.len() as f64 / points.len() as f64;
    eprintln!("{name}: {per_point:.3} bytes/point");
    per_point
}

#[test]
fn compression_of_typical_series() {
    let limits = [1.3, 1.6, 3.0, 8.4];
    for (shape, limit) in Shape::ALL.into_iter().zip(limits) {
        assert!(bytes_per_point(shape.name(), &shape.sample(1000)) < limit);
    }
    let steady: Vec<_> = (0..1000).map(|i| int(T0 + i * 10_000, i * 50)).collect();
    assert!(bytes_per_point("steady counter", &steady) < 0.27);
    let jittery: Vec<_> = (0..1000)
        .map(|i| int(T0 + i * 10_000 + (i % 7 / 6) * 1000, 1))
        .collect();
    assert!(bytes_per_point("constant, 1 s jitter every 7th", &jittery) < 0.55);
}

#[test]
fn corpus_replays() {
    let files = crate::protocol::fuzzing::replay_corpus("chunk_codec", check_codec_invariants);
    assert!(files >= 3, "only {files} corpus files");
}

fn step() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        4 => Just(None),
        2 => Just(Some(10_000)),
        2 => (1u64..120).prop_map(|k| Some(k * 1000)),
        2 => (1u64..2000).prop_map(Some),
        1 => (1u64..u64::MAX / 2).prop_map(Some),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        (-1000i64..1000).prop_map(Value::Int),
        any::<u64>().prop_map(|b| Value::Float(f64::from_bits(b))),
        (-1_000_000i64..1_000_000, 0i32..8)
            .prop_map(|(m, s)| Value::Float(m as f64 / 10f64.powi(s))),
        prop::sample::select(vec![
            0.0,
            -0.0,
            5e-324,
            f64::MAX,
            f64::MIN,
            f64::NAN,
            f64::INFINITY
        ])
        .prop_map(Value::Float),
    ]
}

prop_compose! {
    fn series()(
        start in prop_oneof![any::<i64>(), -10_000_000_000i64..10_000_000_000],
        steps in prop::collection::vec((step(), value(), any::<bool>()), 0..300),
    ) -> Vec<DataPoint> {
        let (mut t, mut step, mut value) = (start, 1000u64, Value::Int(0));
        let mut points = Vec::with_capacity(steps.len());
        for (i, (s, v, keep)) in steps.into_iter().enumerate() {
            if i > 0 {
                step = s.unwrap_or(step);
                match t.checked_add_unsigned(step) {
                    Some(next) => t = next,
                    None => break,
                }
            }
            // Keep runs of repeated values, as real series have.
            if !keep {
                value = v;
            }
            points.push(DataPoint { timestamp_ms: t, value });
        }
        points
    }
}

proptest! {
    #[test]
    fn round_trips(points in series(), cut in any::<prop::sample::Index>()) {
        let bytes = encode(&points);
        let back = decode(&bytes).expect("decodes");
        prop_assert!(same_points(&back, &points));
        let iterated: Vec<_> = iter(&bytes).expect("header").collect::<Result<_, _>>().expect("points");
        prop_assert!(same_points(&iterated, &points));
        if !points.is_empty() {
            let k = cut.index(points.len());
            let mut enc = ChunkEncoder::new();
            for &p in &points[..=k] {
                prop_assert!(enc.push(p).is_ok());
            }
            let prefix = decode(&enc.to_bytes()).expect("prefix decodes");
            prop_assert!(same_points(&prefix, &points[..=k]));
        }
    }

    #[test]
    fn arbitrary_bytes_keep_invariants(data in prop::collection::vec(any::<u8>(), 0..600)) {
        check_codec_invariants(&data);
    }

    #[test]
    fn mutated_chunks_never_panic(points in series(), flips in prop::collection::vec(any::<prop::sample::Index>(), 1..4)) {
        let mut bytes = encode(&points);
        for f in flips {
            let bit = f.index(bytes.len() * 8);
            bytes[bit / 8] ^= 0x80 >> (bit % 8);
        }
        check_codec_invariants(&bytes);
    }
}

/// Runs of points coded `00` (regular timestamps, unchanged deltas or
/// values), which `decode_into` reads without decoding each code: in every
/// value mode, across mode switches, longer than the reader holds at once,
/// and ending exactly at the last point before the padding.
#[test]
fn regular_runs_decode_in_every_mode() {
    let mut points = Vec::new();
    let mut t = 1_700_000_000_000;
    for segment in 0..8 {
        for i in 0..(37 + segment * 29) {
            t += 10_000;
            let value = match segment % 4 {
                0 => Value::Int(3 * i - 100),
                1 => Value::Float((250 + 3 * i) as f64 / 100.0),
                2 => Value::Float(std::f64::consts::PI),
                _ => Value::Int(7),
            };
            points.push(DataPoint {
                timestamp_ms: t,
                value,
            });
        }
    }
    for n in [1, 2, 3, 33, 64, 65, points.len()] {
        let bytes = encode(&points[..n]);
        let mut out = vec![int(0, 0)];
        decode_into(&bytes, &mut out).expect("decodes");
        assert!(same_points(&out, &points[..n]), "{n} points");
        let iterated: Vec<_> = iter(&bytes)
            .expect("header")
            .collect::<Result<_, _>>()
            .expect("points");
        assert!(same_points(&iterated, &points[..n]));
    }
}

/// A run whose timestamps wrap past `i64::MAX` fails at the point that
/// wraps, as point-by-point decoding does.
#[test]
fn a_run_that_wraps_fails_where_it_wraps() {
    let start = i64::MAX - 100;
    let bytes = crafted(5, |w| {
        w.write(start as u64, 64);
        w.write(0, 1);
        // Delta 40: `110` and 7 bits, then an unchanged value.
        w.write(0b110, 3);
        w.write(40, 7);
        w.write(0, 1);
        // Points `00`; the second of them wraps.
        w.write(0, 6);
    });
    let want = Err(ChunkError::NotIncreasing {
        index: 3,
        previous: start + 80,
        timestamp: (start + 80).wrapping_add(40),
    });
    assert_eq!(decode(&bytes), want);
    let iterated: Result<Vec<DataPoint>, _> = iter(&bytes).and_then(|it| it.collect());
    assert_eq!(iterated, want);
}
