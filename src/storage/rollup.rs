//! Pre-aggregates: folding points into a [`RollupAgg`], combining hourly
//! aggregates into daily ones, and the rollup record format.
//!
//! The writer computes an hour's aggregate when it seals that hour's block
//! (a head window is exactly one rollup hour) and refolds the day from its
//! hours; the reader computes the same aggregates on the fly for hours that
//! still have unsealed data. Both go through [`RollupAgg::of_points`] and
//! [`fold`], so sealed and unsealed answers agree bit for bit.

use crate::model::{DataPoint, RollupAgg, Value};

/// Version byte leading every rollup record.
pub const RECORD_VERSION: u8 = 1;

/// `version ‖ count ‖ sum ‖ min ‖ max ‖ sum_sq ‖ first ‖ last`, where each
/// point is `ts (i64) ‖ kind (0 int, 1 float) ‖ 8 value bytes`.
const POINT_LEN: usize = 8 + 1 + 8;
const RECORD_LEN: usize = 1 + 5 * 8 + 2 * POINT_LEN;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RollupError {
    #[error("rollup record of {0} bytes, expected {RECORD_LEN}")]
    Length(usize),
    #[error("unknown rollup record version {0}")]
    Version(u8),
    #[error("unknown value kind {0} in rollup record")]
    ValueKind(u8),
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

fn put_point(out: &mut Vec<u8>, p: DataPoint) {
    out.extend_from_slice(&p.timestamp_ms.to_be_bytes());
    match p.value {
        Value::Int(i) => {
            out.push(0);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Float(f) => {
            out.push(1);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
    }
}

/// The rollup record of `agg` (its start lives in the key).
pub fn encode(agg: &RollupAgg) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_LEN);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&agg.count.to_be_bytes());
    for f in [agg.sum, agg.min, agg.max, agg.sum_sq] {
        out.extend_from_slice(&f.to_bits().to_be_bytes());
    }
    put_point(&mut out, agg.first);
    put_point(&mut out, agg.last);
    out
}

fn word(bytes: &[u8], at: usize) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    w
}

fn get_point(bytes: &[u8], at: usize) -> Result<DataPoint, RollupError> {
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

/// Reads a rollup record back; `start_ms` comes from its key.
pub fn decode(start_ms: i64, bytes: &[u8]) -> Result<RollupAgg, RollupError> {
    if bytes.len() != RECORD_LEN {
        return Err(RollupError::Length(bytes.len()));
    }
    if bytes[0] != RECORD_VERSION {
        return Err(RollupError::Version(bytes[0]));
    }
    let f = |i: usize| f64::from_bits(u64::from_be_bytes(word(bytes, 9 + 8 * i)));
    Ok(RollupAgg {
        start_ms,
        count: u64::from_be_bytes(word(bytes, 1)),
        sum: f(0),
        min: f(1),
        max: f(2),
        sum_sq: f(3),
        first: get_point(bytes, 41)?,
        last: get_point(bytes, 41 + POINT_LEN)?,
    })
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let agg = RollupAgg::of_points(
            7_200_000,
            &[
                p(7_200_001, Value::Int(-9)),
                p(7_200_002, Value::Float(0.25)),
            ],
        )
        .expect("points");
        let bytes = encode(&agg);
        assert_eq!(bytes.len(), RECORD_LEN);
        assert_eq!(bytes[0], RECORD_VERSION);
        assert_eq!(decode(7_200_000, &bytes), Ok(agg));
        assert_eq!(
            decode(0, &bytes[1..]),
            Err(RollupError::Length(RECORD_LEN - 1))
        );
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert_eq!(decode(0, &bad), Err(RollupError::Version(9)));
        let mut bad = bytes;
        bad[41 + 8] = 7;
        assert_eq!(decode(0, &bad), Err(RollupError::ValueKind(7)));
    }
}
