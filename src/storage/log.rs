//! The durability log that makes head chunks survive a crash.
//!
//! Every ingest batch becomes one record, appended to the journal (see
//! `journal`) once any series it created are committed, so replaying a
//! record always finds its series ids. Records are compact: per point a
//! varint `id << 2 | kind`, a zigzag varint delta from the previous point's
//! timestamp (collectors send a scrape's points with one timestamp, so this
//! is usually one byte), and the value. Integers are zigzag varints; a float
//! that is exactly `m / 10^s` (`s` < 8, what collectors print, like `12.5`)
//! is the varint `zigzag(m) << 3 | s`, 1–3 bytes where its bits take 8.
//!
//! A delete (`StoreWriter::delete`) is a record of its own: the time range
//! and the series ids, committed to the `log` family with the rewritten
//! blocks and rollups. Replaying it in sequence order removes the range
//! from what earlier records put back into the head, while later records'
//! points stay.
//!
//! Once every window a record touched is sealed, the writer deletes it. A
//! record can outlive some windows it touched (it also holds points of a
//! window still open), so replay skips points the [`Watermark`] says are
//! already in blocks; points it cannot rule out are replayed and merged
//! into their block again on the next seal, which is idempotent.
//!
//! The ClickHouse spool ([`crate::clickhouse::spool`]) reuses the points
//! record for its own records, its ids indexing a per-record series list.

use crate::model::{DataPoint, Value, MAX_EXACT_F64_INT};

use super::keys;

/// First byte of a record of points; also their format version.
pub const POINTS_RECORD: u8 = 1;
/// First byte of a delete record: `from ‖ to ‖ varint(id)*`, both
/// timestamps sign-flipped big-endian `i64`s.
pub const DELETE_RECORD: u8 = 2;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LogError {
    #[error("unknown log record kind {0}")]
    Kind(u8),
    #[error("log record is empty")]
    Empty,
    #[error("log record truncated at byte {0}")]
    Truncated(usize),
    #[error("varint longer than 10 bytes at byte {0}")]
    Varint(usize),
    #[error("unknown value kind {0}")]
    ValueKind(u64),
}

/// Value kinds, in the low two bits of a point's first varint.
const KIND_INT: u64 = 0;
const KIND_FLOAT: u64 = 1;
const KIND_DECIMAL: u64 = 2;

/// Decimal scales: `m / POW10[s]`; `s` takes three bits.
const POW10: [f64; 8] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7];

/// `(m, s)` with `m as f64 / 10^s` bit-identical to `f`, smallest `s`.
fn as_decimal(f: f64) -> Option<(i64, u64)> {
    for (s, &p) in POW10.iter().enumerate() {
        let m = (f * p).round();
        // Mantissas from 2^53 on are not exact in an `f64`.
        if !m.is_finite() || m.abs() >= MAX_EXACT_F64_INT {
            return None;
        }
        // Through `i64` as decode goes, which also rejects -0.0.
        let m = m as i64;
        if (m as f64 / p).to_bits() == f.to_bits() {
            return Some((m, s as u64));
        }
    }
    None
}

/// `f` as the decimal varint payload `zigzag(m) << 3 | s`, if it is
/// exactly `m / 10^s` (`s` < 8). Shared with rollup records.
pub(super) fn decimal_code(f: f64) -> Option<u64> {
    as_decimal(f).map(|(m, s)| zigzag(m) << 3 | s)
}

/// The float of a [`decimal_code`].
pub(super) fn from_decimal_code(v: u64) -> f64 {
    // `v & 7` < 8 = POW10.len().
    unzigzag(v >> 3) as f64 / POW10[(v & 7) as usize]
}

pub(super) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(super) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[inline]
pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Builds one record; reused across batches so its buffer is allocated once.
#[derive(Debug, Default)]
pub struct RecordEncoder {
    buf: Vec<u8>,
    prev_ts: i64,
}

impl RecordEncoder {
    /// Starts a new record, dropping the previous one.
    pub fn start(&mut self) {
        self.buf.clear();
        self.buf.push(POINTS_RECORD);
        self.prev_ts = 0;
    }

    /// Appends a point. `id` must be below 2^62 (the writer caps ids).
    #[inline]
    pub fn push(&mut self, id: u64, p: DataPoint) {
        let (kind, value) = match p.value {
            Value::Int(i) => (KIND_INT, zigzag(i)),
            Value::Float(f) => match decimal_code(f) {
                Some(code) => (KIND_DECIMAL, code),
                None => (KIND_FLOAT, f.to_bits()),
            },
        };
        put_varint(&mut self.buf, id << 2 | kind);
        // Wrapping keeps the encoding total; decode wraps back.
        let delta = p.timestamp_ms.wrapping_sub(self.prev_ts);
        put_varint(&mut self.buf, zigzag(delta));
        self.prev_ts = p.timestamp_ms;
        if kind == KIND_FLOAT {
            self.buf.extend_from_slice(&value.to_le_bytes());
        } else {
            put_varint(&mut self.buf, value);
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// A decoded log record.
pub enum Record<'a> {
    /// An ingest batch: its points in the order they were appended.
    Points(RecordIter<'a>),
    Delete(Delete),
}

/// Points of `ids` with timestamps in `[from, to]` were deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub from: i64,
    pub to: i64,
    pub ids: Vec<u64>,
}

impl Delete {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.ids.len() * 3);
        out.push(DELETE_RECORD);
        out.extend_from_slice(&keys::timestamp(self.from));
        out.extend_from_slice(&keys::timestamp(self.to));
        for &id in &self.ids {
            put_varint(&mut out, id);
        }
        out
    }

    fn decode(record: &[u8]) -> Result<Delete, LogError> {
        let from = timestamp_at(record, 1).ok_or(LogError::Truncated(1))?;
        let to = timestamp_at(record, 9).ok_or(LogError::Truncated(9))?;
        let mut at = 17;
        let mut ids = Vec::new();
        while at < record.len() {
            ids.push(read_varint(record, &mut at)?);
        }
        Ok(Delete { from, to, ids })
    }
}

/// The sign-flipped big-endian `i64` at `bytes[at..at + 8]`.
fn timestamp_at(bytes: &[u8], at: usize) -> Option<i64> {
    let raw = keys::parse_u64(bytes.get(at..at + 8)?)?;
    Some((raw ^ (1 << 63)) as i64)
}

/// Reads a record back; the points of an ingest record decode lazily.
pub fn decode(record: &[u8]) -> Result<Record<'_>, LogError> {
    match record.first() {
        None => Err(LogError::Empty),
        Some(&POINTS_RECORD) => Ok(Record::Points(RecordIter {
            record,
            at: 1,
            prev_ts: 0,
        })),
        Some(&DELETE_RECORD) => Delete::decode(record).map(Record::Delete),
        Some(&k) => Err(LogError::Kind(k)),
    }
}

/// Reads the LEB128 varint at `*at` and moves past it.
pub(super) fn read_varint(bytes: &[u8], at: &mut usize) -> Result<u64, LogError> {
    let start = *at;
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let Some(&b) = bytes.get(*at) else {
            return Err(LogError::Truncated(*at));
        };
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(LogError::Varint(start))
}

pub struct RecordIter<'a> {
    record: &'a [u8],
    at: usize,
    prev_ts: i64,
}

impl RecordIter<'_> {
    fn varint(&mut self) -> Result<u64, LogError> {
        read_varint(self.record, &mut self.at)
    }

    fn point(&mut self) -> Result<(u64, DataPoint), LogError> {
        let head = self.varint()?;
        let ts = self.prev_ts.wrapping_add(unzigzag(self.varint()?));
        self.prev_ts = ts;
        let value = match head & 3 {
            KIND_INT => Value::Int(unzigzag(self.varint()?)),
            KIND_FLOAT => {
                let bytes = self
                    .record
                    .get(self.at..self.at + 8)
                    .ok_or(LogError::Truncated(self.at))?;
                self.at += 8;
                let mut raw = [0u8; 8];
                raw.copy_from_slice(bytes);
                Value::Float(f64::from_bits(u64::from_le_bytes(raw)))
            }
            KIND_DECIMAL => Value::Float(from_decimal_code(self.varint()?)),
            k => return Err(LogError::ValueKind(k)),
        };
        let point = DataPoint {
            timestamp_ms: ts,
            value,
        };
        Ok((head >> 2, point))
    }
}

impl Iterator for RecordIter<'_> {
    type Item = Result<(u64, DataPoint), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.record.len() {
            return None;
        }
        let item = self.point();
        if item.is_err() {
            // Stop after the first error instead of decoding garbage.
            self.at = self.record.len();
        }
        Some(item)
    }
}

/// What the last complete time-based seal proved: every point of a record
/// below `seq` whose window starts before `before_start` is in a block.
/// Replay uses it to skip such points instead of merging them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    pub seq: u64,
    pub before_start: i64,
}

impl Watermark {
    const LEN: usize = 16;

    /// `seq (u64 BE) ‖ before_start (sign-flipped i64 BE)`.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&keys::u64_key(self.seq));
        out[8..].copy_from_slice(&keys::timestamp(self.before_start));
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Watermark> {
        if bytes.len() != Self::LEN {
            return None;
        }
        Some(Watermark {
            seq: keys::parse_u64(&bytes[..8])?,
            before_start: timestamp_at(bytes, 8)?,
        })
    }

    /// Whether the point of record `seq` in the window at `window_start` is
    /// already sealed.
    pub fn covers(&self, seq: u64, window_start: i64) -> bool {
        seq < self.seq && window_start < self.before_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points_of(record: &[u8]) -> RecordIter<'_> {
        match decode(record).expect("known kind") {
            Record::Points(points) => points,
            Record::Delete(d) => panic!("not a points record: {d:?}"),
        }
    }

    fn p(ts: i64, value: Value) -> DataPoint {
        DataPoint {
            timestamp_ms: ts,
            value,
        }
    }

    #[test]
    fn record_round_trips_in_order() {
        let points = [
            (1, p(1_700_000_000_000, Value::Int(42))),
            (1 << 40, p(1_700_000_000_000, Value::Float(-0.5))),
            (3, p(1_699_999_999_000, Value::Int(i64::MIN))),
            (4, p(0, Value::Float(f64::MAX))),
            (5, p(i64::MAX, Value::Int(i64::MAX))),
            (6, p(1, Value::Float(123.456))),
            (7, p(2, Value::Float(0.1 + 0.2))),
            (8, p(3, Value::Float(1e-9))),
            (9, p(4, Value::Float(-1e15))),
            (10, p(5, Value::Float(f64::INFINITY))),
            ((1 << 62) - 1, p(6, Value::Float(0.0))),
        ];
        let mut enc = RecordEncoder::default();
        enc.start();
        for &(id, pt) in &points {
            enc.push(id, pt);
        }
        let back: Result<Vec<_>, _> = points_of(enc.bytes()).collect();
        assert_eq!(back, Ok(points.to_vec()));
    }

    #[test]
    fn float_bits_survive_exactly() {
        let floats = [-0.0, f64::NAN, 0.1 + 0.2, 12.5];
        let mut enc = RecordEncoder::default();
        enc.start();
        for f in floats {
            enc.push(1, p(0, Value::Float(f)));
        }
        let bits: Vec<u64> = points_of(enc.bytes())
            .map(|item| match item.expect("decodes").1.value {
                Value::Float(f) => f.to_bits(),
                Value::Int(i) => panic!("float came back as integer {i}"),
            })
            .collect();
        assert_eq!(bits, floats.map(f64::to_bits));
    }

    #[test]
    fn a_scrape_costs_a_few_bytes_per_point() {
        let mut enc = RecordEncoder::default();
        enc.start();
        for id in 1..=30 {
            enc.push(id, p(1_700_000_000_000, Value::Int(id as i64)));
        }
        // A version byte, then one byte each for id, timestamp delta and
        // value, except the first timestamp, which takes 6.
        assert_eq!(enc.bytes().len(), 1 + 30 * 3 + 5);
        // Decimal floats take the bytes of their digits, not 8.
        let before = enc.bytes().len();
        enc.push(1, p(1_700_000_000_000, Value::Float(12.34)));
        enc.push(1, p(1_700_000_000_000, Value::Float(99.5)));
        assert_eq!(enc.bytes().len() - before, (1 + 1 + 3) + (1 + 1 + 2));
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert_eq!(decode(&[]).err(), Some(LogError::Empty));
        assert_eq!(decode(&[3]).err(), Some(LogError::Kind(3)));
        assert_eq!(
            decode(&[DELETE_RECORD, 0]).err(),
            Some(LogError::Truncated(1))
        );
        let mut enc = RecordEncoder::default();
        enc.start();
        enc.push(9, p(5, Value::Float(0.1 + 0.2)));
        let bytes = enc.bytes();
        let cut = &bytes[..bytes.len() - 1];
        let items: Vec<_> = points_of(cut).collect();
        assert_eq!(items, vec![Err(LogError::Truncated(3))]);
        let items: Vec<_> = points_of(&[1, 3, 0]).collect();
        assert_eq!(items, vec![Err(LogError::ValueKind(3))]);
        let items: Vec<_> = points_of(&[
            1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ])
        .collect();
        assert_eq!(items, vec![Err(LogError::Varint(1))]);
    }

    #[test]
    fn delete_record_round_trips() {
        for d in [
            Delete {
                from: 0,
                to: i64::MAX,
                ids: vec![1, 300, (1 << 62) - 1],
            },
            Delete {
                from: 1_700_000_000_000,
                to: 1_700_000_000_000,
                ids: vec![],
            },
        ] {
            let bytes = d.encode();
            assert_eq!(bytes[0], DELETE_RECORD);
            match decode(&bytes) {
                Ok(Record::Delete(back)) => assert_eq!(back, d),
                _ => panic!("not read back as a delete: {d:?}"),
            }
        }
        let mut cut = Delete {
            from: 5,
            to: 6,
            ids: vec![300],
        }
        .encode();
        cut.pop();
        assert_eq!(decode(&cut).err(), Some(LogError::Truncated(18)));
    }

    #[test]
    fn watermark_round_trips_and_covers() {
        let wm = Watermark {
            seq: 10,
            before_start: 7_200_000,
        };
        assert_eq!(Watermark::decode(&wm.encode()), Some(wm));
        assert!(wm.covers(9, 3_600_000));
        assert!(!wm.covers(10, 3_600_000));
        assert!(!wm.covers(9, 7_200_000));
        assert_eq!(Watermark::decode(&[0; 3]), None);
    }
}
