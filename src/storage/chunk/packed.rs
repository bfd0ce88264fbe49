//! Chunk format version 2, the packed form [`super::encode`] picks for a
//! sealed chunk when it is the smaller: every value an integer, or every
//! value a decimal at one common scale (VictoriaMetrics' scaled integers).
//!
//! Timestamps and values are each an integer sequence, coded as its deltas
//! (order 1) or deltas of deltas (order 2), whichever packs smaller, minus
//! their minimum and bit-packed at the width of the largest. Collectors'
//! steps are near uniform within a bound (a counter grows by up to its
//! peak rate, a gauge walks by up to its swing), so a common width costs
//! less than a bit a point over their entropy; version 1's prefix codes,
//! built for one point at a time, round a delta of deltas up to the next
//! of a few fixed widths and pay the prefix on top. The head keeps
//! version 1, which can grow a point at a time.
//!
//! ```text
//! chunk     = version:u8 (2)  count:ULEB128  kind:u8  ints(times)  ints(values)
//! kind      = 0: integers; 1 + s (s ≤ 13): decimals, value = m / 10^s
//! ints      = first:SLEB128
//!             [count ≥ 2: shape:u8  [order 2: delta:SLEB128]  base:SLEB128  residuals]
//! shape     = (order - 1) << 7 | width, 0 ≤ width ≤ 64
//! residuals = (count - order) × width bits, most significant first,
//!             zero-padded to a whole byte
//! ```
//!
//! `1 ≤ count ≤ 65536`. SLEB128 is the zigzag of an `i64` as ULEB128. The
//! `i`th step (delta, or change of delta) is `base + residual[i]`, and all
//! arithmetic wraps at 64 bits, so every `i64` sequence fits. Decoded
//! timestamps must be strictly increasing; nothing may follow the values.

use super::bits::{BitReader, BitWriter};
use super::{decimal_at, find_decimal, read_uleb128, write_uleb128, ChunkError, Sink, POW10};
use crate::model::{DataPoint, Value};
use crate::storage::log::{unzigzag, zigzag};

pub(super) const VERSION: u8 = 2;

/// More points stay in version 1. A hard cap, since a packed point may
/// take no bits at all: it bounds what a corrupt count can make the
/// decoder allocate (an hour of 10 ms points still fits).
const MAX_POINTS: usize = 1 << 16;

/// `points` in version 2, or `None` when the values are not all integers or
/// all decimals of one scale, or there are no points or too many.
pub(super) fn encode(points: &[DataPoint]) -> Option<Vec<u8>> {
    // Out-of-order points, which release builds of `super::encode` leave
    // out of version 1, would make a chunk that does not decode.
    let increasing = points
        .windows(2)
        .all(|w| w[0].timestamp_ms < w[1].timestamp_ms);
    if points.is_empty() || points.len() > MAX_POINTS || !increasing {
        return None;
    }
    let (kind, values) = scaled_integers(points)?;
    let times: Vec<i64> = points.iter().map(|p| p.timestamp_ms).collect();
    let mut out = Vec::with_capacity(16 + 2 * points.len());
    out.push(VERSION);
    write_uleb128(&mut out, points.len() as u64);
    out.push(kind);
    write_ints(&mut out, &times);
    write_ints(&mut out, &values);
    Some(out)
}

/// The kind byte and the integers of `points`' values: the values
/// themselves, or the mantissas at the largest scale any value needs.
fn scaled_integers(points: &[DataPoint]) -> Option<(u8, Vec<i64>)> {
    if let Value::Int(_) = points[0].value {
        let ints = points.iter().map(|p| match p.value {
            Value::Int(i) => Some(i),
            Value::Float(_) => None,
        });
        return Some((0, ints.collect::<Option<_>>()?));
    }
    let floats = || {
        points.iter().map(|p| match p.value {
            Value::Float(f) => Some(f),
            Value::Int(_) => None,
        })
    };
    let mut scale = 0;
    for f in floats() {
        let f = f?;
        if decimal_at(f, scale).is_none() {
            scale = scale.max(find_decimal(f)?.0);
        }
    }
    // A value may have fit a smaller scale only: its mantissa at this one
    // can reach 2^53.
    let mantissas = floats().map(|f| decimal_at(f?, scale));
    Some((1 + scale, mantissas.collect::<Option<_>>()?))
}

/// The minimum and the bit width of `steps` less that minimum; width 0
/// when there are none or all are equal.
fn frame(steps: impl Iterator<Item = i64> + Clone) -> (i64, u32) {
    let Some(min) = steps.clone().min() else {
        return (0, 0);
    };
    let spread = steps.map(|s| s.wrapping_sub(min) as u64).max().unwrap_or(0);
    (min, 64 - spread.leading_zeros())
}

fn write_ints(out: &mut Vec<u8>, xs: &[i64]) {
    write_sleb128(out, xs[0]);
    if xs.len() < 2 {
        return;
    }
    let deltas = || xs.windows(2).map(|w| w[1].wrapping_sub(w[0]));
    let dods = || {
        xs.windows(3)
            .map(|w| (w[2].wrapping_sub(w[1])).wrapping_sub(w[1].wrapping_sub(w[0])))
    };
    let first_delta = xs[1].wrapping_sub(xs[0]);
    let (base1, width1) = frame(deltas());
    let (base2, width2) = frame(dods());
    let cost1 = sleb128_len(base1) * 8 + (xs.len() - 1) * width1 as usize;
    let cost2 =
        (sleb128_len(first_delta) + sleb128_len(base2)) * 8 + (xs.len() - 2) * width2 as usize;
    let mut bits = BitWriter::default();
    if cost2 < cost1 {
        out.push(1 << 7 | width2 as u8);
        write_sleb128(out, first_delta);
        write_sleb128(out, base2);
        for d in dods() {
            bits.write(d.wrapping_sub(base2) as u64, width2);
        }
    } else {
        out.push(width1 as u8);
        write_sleb128(out, base1);
        for d in deltas() {
            bits.write(d.wrapping_sub(base1) as u64, width1);
        }
    }
    bits.append_to(out);
}

fn write_sleb128(out: &mut Vec<u8>, v: i64) {
    write_uleb128(out, zigzag(v));
}

fn sleb128_len(v: i64) -> usize {
    (64 - zigzag(v).leading_zeros()).div_ceil(7).max(1) as usize
}

/// Reads a SLEB128 off the front of `bytes`.
fn take_sleb128(bytes: &mut &[u8]) -> Result<i64, ChunkError> {
    let (z, used) = read_uleb128(bytes).ok_or(ChunkError::BadHeader)?;
    *bytes = &bytes[used..];
    Ok(unzigzag(z))
}

/// Points of a version 2 chunk, whose layout [`Iter::new`] has checked.
#[derive(Debug, Clone)]
pub(super) struct Iter<'a> {
    times: Ints<'a>,
    values: Ints<'a>,
    /// `None` for integers, else `10^s` for decimals of scale `s`.
    scale: Option<f64>,
    count: usize,
    index: usize,
    prev_ts: i64,
    done: bool,
}

impl<'a> Iter<'a> {
    /// `body` is the chunk after its version byte.
    pub(super) fn new(body: &'a [u8]) -> Result<Self, ChunkError> {
        let (count, used) = read_uleb128(body).ok_or(ChunkError::BadHeader)?;
        let mut rest = &body[used..];
        if count == 0 {
            return Err(ChunkError::BadHeader);
        }
        if count > MAX_POINTS as u64 {
            return Err(ChunkError::CountTooLarge {
                count,
                len: body.len() + 1,
            });
        }
        let count = count as usize;
        let (&kind, after) = rest.split_first().ok_or(ChunkError::BadHeader)?;
        rest = after;
        let scale = match kind {
            0 => None,
            k if usize::from(k) <= POW10.len() => Some(POW10[usize::from(k) - 1]),
            k => return Err(ChunkError::UnknownKind(k)),
        };
        let times = Ints::new(&mut rest, count)?;
        let values = Ints::new(&mut rest, count)?;
        if !rest.is_empty() {
            return Err(ChunkError::TrailingData {
                bits: rest.len() * 8,
            });
        }
        Ok(Iter {
            times,
            values,
            scale,
            count,
            index: 0,
            prev_ts: 0,
            done: false,
        })
    }

    pub(super) fn remaining(&self) -> usize {
        if self.done {
            0
        } else {
            self.count - self.index
        }
    }

    /// The next point; `None` after the last one or after an error.
    #[inline(always)]
    pub(super) fn next_point(&mut self) -> Option<Result<DataPoint, ChunkError>> {
        let scale = self.scale;
        self.next_with(|v| match scale {
            None => Value::Int(v),
            Some(p) => Value::Float(v as f64 / p),
        })
    }

    /// Appends every point to `out`, or those before the first out of
    /// order and that error. Each sequence is unpacked whole in a loop of
    /// its own, chosen once for its order and width, into places sized up
    /// front: point by point, with both sequences' branches and a push per
    /// point, decoding cost 3.8 ns a point, twice version 1's (1,440
    /// integer points in chunks of 60 as query (b) reads them). Integers
    /// and decimals each get a loop too: with one loop for both, the
    /// compiler divides for every point and picks the integer after.
    pub(super) fn decode_into(mut self, out: &mut impl Sink) -> Result<(), ChunkError> {
        let start = out.len();
        out.unpack(self.count, &mut self.times, &mut self.values, self.scale);
        let Some(at) = out.not_increasing(start) else {
            return Ok(());
        };
        let (previous, timestamp) = (out.timestamp(at - 1), out.timestamp(at));
        out.truncate(at);
        Err(ChunkError::NotIncreasing {
            index: at - start,
            previous,
            timestamp,
        })
    }

    /// The next point, its value made by `value` from the stored integer.
    #[inline(always)]
    fn next_with(&mut self, value: impl Fn(i64) -> Value) -> Option<Result<DataPoint, ChunkError>> {
        if self.done || self.index == self.count {
            self.done = true;
            return None;
        }
        let index = self.index;
        let timestamp_ms = self.times.next(index);
        if index > 0 && timestamp_ms <= self.prev_ts {
            self.done = true;
            return Some(Err(ChunkError::NotIncreasing {
                index,
                previous: self.prev_ts,
                timestamp: timestamp_ms,
            }));
        }
        self.prev_ts = timestamp_ms;
        let v = self.values.next(index);
        self.index += 1;
        Some(Ok(DataPoint {
            timestamp_ms,
            value: value(v),
        }))
    }
}

/// One packed integer sequence being read.
#[derive(Debug, Clone)]
pub(super) struct Ints<'a> {
    residuals: BitReader<'a>,
    order2: bool,
    width: u32,
    base: i64,
    prev: i64,
    delta: i64,
}

impl<'a> Ints<'a> {
    /// Takes a sequence of `count` integers off the front of `bytes`,
    /// checking that its residuals are all there and zero-padded, so that
    /// reading them cannot fail.
    fn new(bytes: &mut &'a [u8], count: usize) -> Result<Self, ChunkError> {
        let first = take_sleb128(bytes)?;
        let mut ints = Ints {
            residuals: BitReader::new(&[]),
            order2: false,
            width: 0,
            base: 0,
            prev: first,
            delta: 0,
        };
        if count < 2 {
            return Ok(ints);
        }
        let (&shape, rest) = bytes.split_first().ok_or(ChunkError::BadHeader)?;
        *bytes = rest;
        ints.order2 = shape >> 7 == 1;
        ints.width = u32::from(shape & 0x7F);
        if ints.width > 64 {
            return Err(ChunkError::BadShape(shape));
        }
        if ints.order2 {
            ints.delta = take_sleb128(bytes)?;
        }
        ints.base = take_sleb128(bytes)?;
        let order = 1 + usize::from(ints.order2);
        let bits = (count - order) * ints.width as usize;
        let len = bits.div_ceil(8);
        if bytes.len() < len {
            // The first point whose residual is cut off.
            let whole = bytes.len() * 8 / ints.width as usize;
            return Err(ChunkError::Truncated {
                index: order + whole,
            });
        }
        let (packed, rest) = bytes.split_at(len);
        let padding = len * 8 - bits;
        if padding > 0 && packed[len - 1] & ((1 << padding) - 1) != 0 {
            return Err(ChunkError::TrailingData { bits: padding });
        }
        *bytes = rest;
        ints.residuals = BitReader::new(packed);
        Ok(ints)
    }

    /// Sets every integer of the sequence, one per point of `points` (as
    /// many as the sequence holds), through `set`; for a sequence not yet
    /// read from.
    #[inline(always)]
    pub(super) fn unpack<T>(&mut self, points: &mut [T], set: impl Fn(&mut T, i64)) {
        let Some((first, rest)) = points.split_first_mut() else {
            return;
        };
        set(first, self.prev);
        let rest = match (self.order2, rest.split_first_mut()) {
            (true, Some((second, rest))) => {
                self.prev = self.prev.wrapping_add(self.delta);
                set(second, self.prev);
                rest
            }
            _ => rest,
        };
        let (base, mut prev, mut delta) = (self.base, self.prev, self.delta);
        match (self.width, self.order2) {
            (0, false) => rest.iter_mut().for_each(|p| {
                prev = prev.wrapping_add(base);
                set(p, prev);
            }),
            (0, true) => rest.iter_mut().for_each(|p| {
                delta = delta.wrapping_add(base);
                prev = prev.wrapping_add(delta);
                set(p, prev);
            }),
            // `new` checked that every residual is there.
            (w, false) => rest.iter_mut().for_each(|p| {
                let step = base.wrapping_add(self.residuals.read(w).unwrap_or(0) as i64);
                prev = prev.wrapping_add(step);
                set(p, prev);
            }),
            (w, true) => rest.iter_mut().for_each(|p| {
                let step = base.wrapping_add(self.residuals.read(w).unwrap_or(0) as i64);
                delta = delta.wrapping_add(step);
                prev = prev.wrapping_add(delta);
                set(p, prev);
            }),
        }
        (self.prev, self.delta) = (prev, delta);
    }

    /// The `index`th integer; called for 0, 1, 2, … in turn.
    #[inline(always)]
    fn next(&mut self, index: usize) -> i64 {
        if index == 0 {
            return self.prev;
        }
        if index == 1 && self.order2 {
            self.prev = self.prev.wrapping_add(self.delta);
            return self.prev;
        }
        // `new` checked that every residual is there.
        let residual = match self.width {
            0 => 0,
            w => self.residuals.read(w).unwrap_or(0),
        };
        let step = self.base.wrapping_add(residual as i64);
        if self.order2 {
            self.delta = self.delta.wrapping_add(step);
            self.prev = self.prev.wrapping_add(self.delta);
        } else {
            self.prev = self.prev.wrapping_add(step);
        }
        self.prev
    }
}
