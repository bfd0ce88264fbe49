use proptest::prelude::*;

use super::bits::BitWriter;
use super::testkit::{check_codec_invariants, check_doubles, same_points, Shape, SplitMix as Rng};
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

/// `points` as the encoder writes them: version 1, whatever is smaller.
fn streamed(points: &[DataPoint]) -> Vec<u8> {
    let mut enc = ChunkEncoder::new();
    for &p in points {
        enc.push(p).expect("in order");
    }
    enc.finish()
}

/// Version 1 bytes, also what every chunk of a format 4 store is: they
/// must keep decoding to the same points.
#[test]
fn golden_integer_chunk() {
    // ts0 raw; value 5 as dod 5 (`10 00101`); then ts dod 1000 (`10 0001`),
    // value dod -5 (`10 11011`); then ts dod 0 (`0`), value dod 1 (`10 00001`).
    let points = [int(1000, 5), int(2000, 5), int(3000, 6)];
    let v1 = [
        0x01, 0x03, 0, 0, 0, 0, 0, 0, 0x03, 0xE8, 0x8B, 0x0D, 0xB4, 0x10,
    ];
    assert_eq!(streamed(&points), v1);
    assert!(same_points(&decode(&v1).expect("decodes"), &points));
    // Packed: kind 0; times 1000 (SLEB `D0 0F`), order 1 width 0 (`00`),
    // base 1000; values 5 (`0A`), order 1 width 1 (`01`), base 0, then
    // residuals 0 and 1 (`01` padded).
    let bytes = assert_round_trip(&points);
    assert_eq!(
        bytes,
        [0x02, 0x03, 0x00, 0xD0, 0x0F, 0x00, 0xD0, 0x0F, 0x0A, 0x01, 0x00, 0x40]
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
fn golden_packed_decimal_chunk() {
    // 2.5, 0.37 and 12 share scale 2 (kind 3). Times 0 (`00`), order 1
    // width 0 (`00`), base 10 (`14`). Mantissas 250 (`F4 03`), 37, 1200:
    // order 2 (`80`) from delta -213 (`A9 03`) with base 1376 (`C0 15`)
    // needs no residual bits, where order 1 would take 2 × 11.
    let points = [float(0, 2.5), float(10, 0.37), float(20, 12.0)];
    let bytes = assert_round_trip(&points);
    assert_eq!(
        bytes,
        [0x02, 0x03, 0x03, 0x00, 0x00, 0x14, 0xF4, 0x03, 0x80, 0xA9, 0x03, 0xC0, 0x15]
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
    assert_eq!(decode(&[3, 0]), Err(ChunkError::UnknownVersion(3)));
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
    let mut bytes = streamed(&[int(0, 0)]);
    assert_eq!(bytes.len(), 11);
    bytes.push(0);
    assert_eq!(decode(&bytes), Err(ChunkError::TrailingData { bits: 15 }));
    let mut bytes = streamed(&[int(0, 0)]);
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

/// Series of one value kind, which `encode` packs: integers of any size
/// or step, or decimals of mixed scales.
fn one_kind_series() -> impl Strategy<Value = Vec<DataPoint>> {
    let ints = prop_oneof![
        any::<i64>(),
        -10_000i64..10_000,
        Just(i64::MIN),
        Just(i64::MAX),
    ];
    let decimals =
        (-100_000_000i64..100_000_000, 0i32..14).prop_map(|(m, s)| m as f64 / 10f64.powi(s));
    let values = prop_oneof![
        prop::collection::vec(ints.prop_map(Value::Int), 1..200),
        prop::collection::vec(decimals.prop_map(Value::Float), 1..200),
        (any::<i64>(), -50_000i64..50_000, 1..200usize).prop_map(|(v, step, n)| {
            (0..n as i64)
                .map(|i| Value::Int(v.wrapping_add(i * step)))
                .collect()
        }),
    ];
    (series(), values).prop_map(|(shape, values)| {
        shape
            .iter()
            .zip(values)
            .map(|(p, value)| DataPoint {
                timestamp_ms: p.timestamp_ms,
                value,
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn one_kind_round_trips(points in one_kind_series()) {
        let bytes = encode(&points);
        prop_assert!(same_points(&decode(&bytes).expect("decodes"), &points));
        let iterated: Vec<_> = iter(&bytes).expect("header").collect::<Result<_, _>>().expect("points");
        prop_assert!(same_points(&iterated, &points));
        if let Some(packed) = packed::encode(&points) {
            prop_assert!(same_points(&decode(&packed).expect("packed decodes"), &points));
        }
    }

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

/// The packed form takes what version 1 cannot beat: values of one kind
/// (integers, or decimals at a common scale) and no more points than it
/// may hold.
#[test]
fn packed_only_for_values_of_one_kind() {
    let version = |points: &[DataPoint]| assert_round_trip(points)[0];
    let ints: Vec<_> = (0..50)
        .map(|i| int(T0 + i * 10_000, i * i * 7919))
        .collect();
    assert_eq!(version(&ints), 2);
    let mut mixed = ints.clone();
    mixed[20] = float(mixed[20].timestamp_ms, 3.0);
    assert_eq!(version(&mixed), 1);
    let decimals: Vec<_> = (0..50)
        .map(|i| float(T0 + i * 10_000, [0.5, 12.25, 3.0, 99.9][i as usize % 4]))
        .collect();
    assert_eq!(version(&decimals), 2);
    // -0.0, NaN payloads, infinities and 2^53 at scale 1 are no decimals
    // of a common scale.
    let big = MAX_EXACT_F64_INT / 2.0;
    for odd in [
        -0.0,
        f64::from_bits(0x7FF8_0000_DEAD_BEEF),
        f64::INFINITY,
        big,
    ] {
        let mut points = decimals.clone();
        points[7] = float(points[7].timestamp_ms, odd);
        assert_eq!(version(&points), 1, "{odd}");
    }
    let many: Vec<_> = (0..70_000).map(|i| int(T0 + i, i % 3 * 1000)).collect();
    assert_eq!(version(&many), 1);
}

/// Steps that wrap at 64 bits, extreme integers and timestamps, and
/// widths up to 64 round-trip in the packed form.
#[test]
fn packed_extremes() {
    for values in [
        vec![i64::MIN, i64::MAX, 0, i64::MIN, -1, i64::MAX],
        vec![i64::MAX; 5],
        vec![i64::MIN, i64::MIN + 1],
        vec![42],
    ] {
        for times in [
            vec![i64::MIN, -1, 0, 1, i64::MAX - 1, i64::MAX],
            vec![i64::MIN, i64::MIN + 1, i64::MIN + 3, i64::MIN + 6, 0, 1],
            vec![
                T0,
                T0 + 10_000,
                T0 + 20_000,
                T0 + 29_999,
                T0 + 40_000,
                T0 + 50_001,
            ],
        ] {
            let points: Vec<_> = times
                .iter()
                .zip(&values)
                .map(|(&t, &v)| int(t, v))
                .collect();
            assert_eq!(
                decode(&packed::encode(&points).expect("packs")),
                Ok(points.clone())
            );
            assert_round_trip(&points);
        }
    }
}

/// Every cut of a packed chunk fails, and so does every damaged header.
#[test]
fn corrupt_packed_chunks() {
    let points: Vec<_> = (0..40)
        .map(|i| float(T0 + i * 10_000 + i % 3, (i * 37 % 101) as f64 / 10.0))
        .collect();
    let bytes = assert_round_trip(&points);
    assert_eq!(bytes[0], 2);
    for len in 0..bytes.len() {
        assert!(
            decode(&bytes[..len]).is_err(),
            "{len} of {} bytes decoded",
            bytes.len()
        );
    }
    // The header as in `golden_integer_chunk`, the values' residuals
    // varied.
    let chunk = |tail: &[u8]| {
        let mut c = vec![0x02, 0x03, 0x00, 0xD0, 0x0F, 0x00, 0xD0, 0x0F];
        c.extend_from_slice(tail);
        decode(&c)
    };
    assert_eq!(
        chunk(&[0x0A, 0x01, 0x00, 0x40]),
        Ok(vec![int(1000, 5), int(2000, 5), int(3000, 6)])
    );
    assert_eq!(
        chunk(&[0x0A, 0x01, 0x00, 0x41]),
        Err(ChunkError::TrailingData { bits: 6 })
    );
    assert_eq!(
        chunk(&[0x0A, 0x01, 0x00, 0x40, 0x00]),
        Err(ChunkError::TrailingData { bits: 8 })
    );
    assert_eq!(
        chunk(&[0x0A, 0x41, 0x00, 0x40]),
        Err(ChunkError::BadShape(0x41))
    );
    assert_eq!(
        chunk(&[0x0A, 0x09, 0x00, 0xFF]),
        Err(ChunkError::Truncated { index: 1 })
    );
    assert_eq!(
        chunk(&[0x0A, 0x09, 0x00]),
        Err(ChunkError::Truncated { index: 1 })
    );
    assert_eq!(chunk(&[0x0A, 0x01, 0x80]), Err(ChunkError::BadHeader));
    assert_eq!(decode(&[2, 0, 0, 0]), Err(ChunkError::BadHeader));
    assert_eq!(
        decode(&[2, 0x81, 0x80, 0x04, 0, 0]),
        Err(ChunkError::CountTooLarge {
            count: 65537,
            len: 6
        })
    );
    assert_eq!(decode(&[2, 1, 15, 0, 0]), Err(ChunkError::UnknownKind(15)));
    assert_eq!(decode(&[2, 1, 14, 0, 0x14]), Ok(vec![float(0, 1e-12)]));
    // Times 100 then a step of 0: the second point repeats the first.
    assert_eq!(
        decode(&[2, 2, 0, 0xC8, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00]),
        Err(ChunkError::NotIncreasing {
            index: 1,
            previous: 100,
            timestamp: 100
        })
    );
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
        check_doubles(&bytes);
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
    check_doubles(&bytes);
}

/// A packed chunk whose timestamps fall back at the fourth point: the
/// whole-sequence decode keeps the three before it and fails there, as
/// reading point by point does.
#[test]
fn packed_decode_stops_where_time_goes_back() {
    // Times from 100 by steps -5 + (15, 15, 0), 8 bits each; values from
    // 7 by steps of 1, no residual bits.
    let bytes = [2, 4, 0, 0xC8, 0x01, 0x08, 0x09, 15, 15, 0, 0x0E, 0x00, 0x02];
    let error = ChunkError::NotIncreasing {
        index: 3,
        previous: 120,
        timestamp: 115,
    };
    let mut out = vec![int(1, 1)];
    assert_eq!(decode_into(&bytes, &mut out), Err(error.clone()));
    assert_eq!(out, vec![int(100, 7), int(110, 8), int(120, 9)]);
    check_doubles(&bytes);
    let mut it = iter(&bytes).expect("header");
    let read: Vec<DataPoint> = it.by_ref().map_while(Result::ok).collect();
    assert_eq!(read, out);
    let iterated: Result<Vec<DataPoint>, _> = iter(&bytes).and_then(|it| it.collect());
    assert_eq!(iterated, Err(error));
}
