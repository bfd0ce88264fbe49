//! Chunk codec: the compressed encoding of one series' points.
//!
//! The writer appends points to a [`ChunkEncoder`] per series (the in-memory
//! head chunk); queries read an open head through [`ChunkEncoder::to_bytes`];
//! a sealed chunk is stored as one RocksDB value by `storage` and read back
//! with [`decode`] (or [`decode_into`], into a reused buffer;
//! [`decode_doubles`] for readers that want timestamps and doubles apart)
//! or, when a range query may stop early, [`iter`]. Points in
//! a chunk are strictly increasing in time; out-of-order and duplicate
//! points are kept elsewhere by the caller ([`ChunkEncoder::push`] hands them
//! back).
//!
//! A chunk's first byte is its format version. The encoder writes version
//! 1, which grows a point at a time; [`encode`], which sees every point,
//! writes the packed version 2 instead when that is smaller (see
//! `packed`), as it is for most series collectors send. Both are read.
//!
//! The scheme follows Facebook's Gorilla paper (delta-of-delta timestamps,
//! XOR floats, bit-packed), adapted to millisecond timestamps, to integer
//! values that must stay integers, and to the decimal floats collectors
//! actually send (`12.5`, `0.37`): a float that is exactly `m / 10^s` for a
//! small `s` is stored as the integer `m`, like an integer value, which
//! costs 1–2 bytes per point where XOR needs 6–8.
//!
//! # On-disk format, version 1
//!
//! ```text
//! chunk   = version:u8 (1)  count:ULEB128  bits  padding
//! bits    = point × count, packed most significant bit first
//! padding = zero bits up to the next byte boundary; nothing may follow
//! point   = timestamp value
//! ```
//!
//! **Timestamps** (epoch milliseconds, strictly increasing). The first is 64
//! raw bits (two's complement). Each later one stores the delta of deltas
//! `dod = (t[i] - t[i-1]) - (t[i-1] - t[i-2])`, with the delta before the
//! second point taken as 0, all in wrapping 64-bit arithmetic so any pair of
//! `i64` timestamps fits:
//!
//! ```text
//! 0                        dod = 0         (a regular series: 1 bit)
//! 10    k:4 signed         dod = 1000·k    (seconds-resolution jitter)
//! 110   d:7 signed         dod = d
//! 1110  d:14 signed        dod = d
//! 11110 d:32 signed        dod = d
//! 11111 d:64               dod = d
//! ```
//!
//! **Values** are coded in one of three modes; every chunk starts in integer
//! mode with the previous value and previous delta both 0.
//!
//! - *Integer* mode holds `Value::Int`. *Decimal* mode `s` (0 ≤ s ≤ 13)
//!   holds a `Value::Float` that equals `m as f64 / 10^s` bit for bit, where
//!   `m` is an `i64` (IEEE division is correctly rounded, so the decoder's
//!   `m as f64 / 10^s` gives the same bits on every platform). Both code the integer (`m` for decimals) as a delta of
//!   deltas against the previous two integers of the mode, wrapping:
//!
//!   ```text
//!   0                            dod = 0
//!   10       d:5 signed          dod = d
//!   110      d:9 signed          dod = d
//!   1110     d:13 signed         dod = d
//!   11110    d:20 signed         dod = d
//!   111110   d:32 signed         dod = d
//!   1111110  d:64                dod = d
//!   1111111                      mode switch
//!   ```
//!
//! - *XOR* mode holds any other `Value::Float` (NaN included, bits kept as
//!   they are). `x` is the XOR of the value's bits with the previous float's:
//!
//!   ```text
//!   0                                     x = 0 (the same value)
//!   10  bits:w                            x = bits << t, using the current
//!                                         window (w meaningful bits after l
//!                                         leading zeros, t = 64 - l - w)
//!   11  l:6  w-1:6  bits:w                new window: l leading zeros, w bits
//!   11  111111  111111                    mode switch (l = 63, w = 64 can
//!                                         describe no XOR)
//!   ```
//!
//!   A `10` code before any window exists, or a window with `l + w > 64`,
//!   is corrupt.
//!
//! A *mode switch* is followed by a 4-bit selector — 0 integer, 1 XOR,
//! `2 + s` decimal `s` — naming a mode other than the current one, which
//! starts from a clean state (previous integer, delta and float bits 0, no
//! window), and then by the point's value coded in that mode (a second
//! switch there is corrupt).
//!
//! Which mode a float uses is the encoder's choice and not part of the
//! format: it stays in decimal mode while values fit the scale, and while in
//! XOR mode only checks every 8th value whether decimals fit again, so
//! random floats do not pay for the search on every point.

mod bits;
mod packed;

use self::bits::{BitReader, BitWriter, OutOfBits};
use crate::model::{DataPoint, Doubles, Value, MAX_EXACT_F64_INT, SECOND_MS};

/// The format version [`ChunkEncoder`] writes.
const VERSION: u8 = 1;

/// Decimal scales: `POW10[s]` is `10^s`, exact in an `f64`.
const POW10: [f64; 14] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13,
];

/// In XOR mode the encoder retries decimal scales once per this many floats.
const XOR_PROBE_EVERY: u32 = 8;

/// Length of the longest timestamp prefix, `11111` (a raw 64-bit dod).
const TS_RAW: u32 = 5;
/// Payload width of the `10` timestamp code, counted in whole seconds.
const TS_SECONDS_WIDTH: u32 = 4;
/// Payload widths of the timestamp codes `110`, `1110`, `11110`.
const TS_WIDTHS: [u32; 3] = [7, 14, 32];

/// Length of the longest integer prefix, `1111111` (the mode switch).
const INT_ESCAPE: u32 = 7;
/// Payload widths of the integer codes `10` … `111110`; `1111110` is raw.
const INT_WIDTHS: [u32; 5] = [5, 9, 13, 20, 32];
/// `11 111111 111111`: the XOR-mode switch.
const XOR_ESCAPE: u64 = 0x3FFF;

/// Why a chunk could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("empty chunk")]
    Empty,
    #[error("unknown chunk format version {0}")]
    UnknownVersion(u8),
    #[error("malformed point count in chunk header")]
    BadHeader,
    #[error("chunk declares {count} points but holds only {len} bytes")]
    CountTooLarge { count: u64, len: usize },
    #[error("chunk truncated in point {index}")]
    Truncated { index: usize },
    #[error("timestamp {timestamp} of point {index} is not after {previous}")]
    NotIncreasing {
        index: usize,
        previous: i64,
        timestamp: i64,
    },
    #[error("float code in point {index} reuses a window that does not exist")]
    NoWindow { index: usize },
    #[error("float window in point {index} is invalid: {leading} leading zeros and {width} bits")]
    BadWindow {
        index: usize,
        leading: u32,
        width: u32,
    },
    #[error("mode switch in point {index} to selector {selector}, the current mode")]
    SameMode { index: usize, selector: u8 },
    #[error("second mode switch in point {index}")]
    DoubleSwitch { index: usize },
    #[error("{bits} bits after the last point are not padding")]
    TrailingData { bits: usize },
    #[error("unknown value kind {0} in packed chunk")]
    UnknownKind(u8),
    #[error("packed integers with shape {0:#04x}, wider than 64 bits")]
    BadShape(u8),
}

/// An open chunk that points are appended to.
///
/// It keeps the encoded bits, not the points, so a head chunk costs about
/// what its sealed form does.
#[derive(Debug, Clone, Default)]
pub struct ChunkEncoder {
    bits: BitWriter,
    count: usize,
    first_ts: i64,
    last_ts: i64,
    /// `t[n-1] - t[n-2]`, wrapping; 0 before the second point.
    ts_delta: u64,
    values: ValueState,
    /// Floats coded in XOR mode since the last decimal probe.
    xor_run: u32,
}

impl ChunkEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a point whose timestamp is strictly greater than the last
    /// one; returns `Err(point)` otherwise (the caller keeps it aside).
    pub fn push(&mut self, p: DataPoint) -> Result<(), DataPoint> {
        let t = p.timestamp_ms;
        if self.count == 0 {
            self.bits.write(t as u64, 64);
            self.first_ts = t;
        } else {
            if t <= self.last_ts {
                return Err(p);
            }
            let delta = (t as u64).wrapping_sub(self.last_ts as u64);
            self.write_ts_dod(delta.wrapping_sub(self.ts_delta) as i64);
            self.ts_delta = delta;
        }
        self.last_ts = t;
        self.write_value(p.value);
        self.count += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn first_timestamp(&self) -> Option<i64> {
        (self.count > 0).then_some(self.first_ts)
    }

    pub fn last_timestamp(&self) -> Option<i64> {
        (self.count > 0).then_some(self.last_ts)
    }

    /// Heap bytes held, for memory accounting; the inline part is
    /// `size_of::<ChunkEncoder>()`.
    pub fn byte_size(&self) -> usize {
        self.bits.capacity()
    }

    /// The chunk so far, complete and decodable; the encoder stays open.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(11 + self.bits.byte_len());
        out.push(VERSION);
        write_uleb128(&mut out, self.count as u64);
        self.bits.append_to(&mut out);
        out
    }

    /// The complete chunk, in version 1 as [`to_bytes`](Self::to_bytes);
    /// [`encode`] the points to seal them.
    pub fn finish(self) -> Vec<u8> {
        self.to_bytes()
    }

    fn write_ts_dod(&mut self, dod: i64) {
        let w = &mut self.bits;
        if dod == 0 {
            w.write(0, 1);
            return;
        }
        if dod % SECOND_MS == 0 && fits(dod / SECOND_MS, TS_SECONDS_WIDTH) {
            w.write_code(1, TS_RAW, (dod / SECOND_MS) as u64, TS_SECONDS_WIDTH);
            return;
        }
        for (i, &width) in TS_WIDTHS.iter().enumerate() {
            if fits(dod, width) {
                w.write_code(i as u32 + 2, TS_RAW, dod as u64, width);
                return;
            }
        }
        w.write_code(TS_RAW, TS_RAW, dod as u64, 64);
    }

    fn write_value(&mut self, v: Value) {
        let f = match v {
            Value::Int(i) => {
                self.enter(Mode::Int);
                self.write_int(i);
                return;
            }
            Value::Float(f) => f,
        };
        if let Mode::Decimal(s) = self.values.mode {
            if let Some(m) = decimal_at(f, s) {
                self.write_int(m);
                return;
            }
        } else if self.values.mode == Mode::Xor {
            self.xor_run += 1;
            if self.xor_run < XOR_PROBE_EVERY {
                self.write_xor(f);
                return;
            }
            self.xor_run = 0;
        }
        match find_decimal(f) {
            Some((s, m)) => {
                self.enter(Mode::Decimal(s));
                self.write_int(m);
            }
            None => {
                self.enter(Mode::Xor);
                self.write_xor(f);
            }
        }
    }

    /// Switches to `mode` unless already there.
    fn enter(&mut self, mode: Mode) {
        let from = self.values.mode;
        if from == mode {
            return;
        }
        match from {
            Mode::Int | Mode::Decimal(_) => self.bits.write_code(INT_ESCAPE, INT_ESCAPE, 0, 0),
            Mode::Xor => self.bits.write(XOR_ESCAPE, 14),
        }
        self.bits.write(u64::from(mode.selector()), 4);
        self.values.reset(mode);
        self.xor_run = 0;
    }

    fn write_int(&mut self, v: i64) {
        let vs = &mut self.values;
        let delta = v.wrapping_sub(vs.prev);
        let dod = delta.wrapping_sub(vs.delta);
        vs.prev = v;
        vs.delta = delta;
        let w = &mut self.bits;
        if dod == 0 {
            w.write(0, 1);
            return;
        }
        for (i, &width) in INT_WIDTHS.iter().enumerate() {
            if fits(dod, width) {
                w.write_code(i as u32 + 1, INT_ESCAPE, dod as u64, width);
                return;
            }
        }
        w.write_code(INT_ESCAPE - 1, INT_ESCAPE, dod as u64, 64);
    }

    fn write_xor(&mut self, f: f64) {
        let bits = f.to_bits();
        let vs = &mut self.values;
        let x = bits ^ vs.prev_bits;
        vs.prev_bits = bits;
        let w = &mut self.bits;
        if x == 0 {
            w.write(0, 1);
            return;
        }
        let leading = x.leading_zeros();
        let trailing = x.trailing_zeros();
        let width = 64 - leading - trailing;
        if let Some(win) = vs.window {
            // Reuse the window unless a new one is smaller by more than
            // its 12-bit description.
            if leading >= win.leading && trailing >= win.trailing() && win.width <= width + 12 {
                w.write(0b10, 2);
                w.write(x >> win.trailing(), win.width);
                return;
            }
        }
        let header = (0b11 << 12) | (u64::from(leading) << 6) | u64::from(width - 1);
        w.write(header, 14);
        w.write(x >> trailing, width);
        vs.window = Some(Window { leading, width });
    }
}

/// Encodes `points`, which must be strictly increasing in time, in the
/// smaller of versions 1 and 2; in release builds a point that breaks the
/// order is left out.
pub fn encode(points: &[DataPoint]) -> Vec<u8> {
    let mut enc = ChunkEncoder::new();
    for &p in points {
        let pushed = enc.push(p);
        debug_assert!(pushed.is_ok(), "chunk points out of order at {p:?}");
    }
    let streamed = enc.finish();
    match packed::encode(points) {
        Some(packed) if packed.len() < streamed.len() => packed,
        _ => streamed,
    }
}

/// Decodes every point of a chunk.
pub fn decode(bytes: &[u8]) -> Result<Vec<DataPoint>, ChunkError> {
    let mut out = Vec::new();
    decode_into(bytes, &mut out)?;
    Ok(out)
}

/// Decodes every point of a chunk into `out`, replacing its contents, so
/// that one buffer serves many chunks. The same as collecting [`iter`],
/// in one loop.
pub fn decode_into(bytes: &[u8], out: &mut Vec<DataPoint>) -> Result<(), ChunkError> {
    decode_to(bytes, out)
}

/// [`decode_into`] with timestamps and values apart, each value a double
/// (an integer made one as `i as f64`, as every fold makes it). What
/// downsampling reads: a point takes 16 bytes, not 24, and nothing
/// downstream branches on its kind.
pub(crate) fn decode_doubles(bytes: &[u8], out: &mut Doubles) -> Result<(), ChunkError> {
    decode_to(bytes, out)
}

/// Where a chunk's points are decoded to.
trait Sink {
    fn clear(&mut self);
    fn len(&self) -> usize;
    fn reserve(&mut self, additional: usize);
    fn push(&mut self, timestamp_ms: i64, value: Value);
    /// Appends `n` points whose timestamps step from `time.0` by `time.1`
    /// and integers from `int.0` by `int.1`, each made a value by
    /// `value`, as one extend (sized once, no check a point). The caller
    /// ensures the timestamps do not wrap. Stepped by addition: without
    /// AVX-512 a vectorized `t + k × delta` multiplies in 32-bit halves,
    /// and cost more than it saved.
    fn extend_run(
        &mut self,
        n: usize,
        time: (i64, i64),
        int: (i64, i64),
        value: impl Fn(i64) -> Value,
    );
    fn truncate(&mut self, len: usize);
    /// Appends `count` points whose timestamps are the sequence `times`
    /// and values the sequence `values`, decimals at `scale` if given.
    fn unpack(
        &mut self,
        count: usize,
        times: &mut packed::Ints<'_>,
        values: &mut packed::Ints<'_>,
        scale: Option<f64>,
    );
    /// The first point from `from` on whose timestamp is not above the
    /// one before.
    fn not_increasing(&self, from: usize) -> Option<usize>;
    fn timestamp(&self, i: usize) -> i64;
}

impl Sink for Vec<DataPoint> {
    fn clear(&mut self) {
        Vec::clear(self)
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional)
    }
    #[inline(always)]
    fn push(&mut self, timestamp_ms: i64, value: Value) {
        Vec::push(
            self,
            DataPoint {
                timestamp_ms,
                value,
            },
        )
    }
    #[inline(always)]
    fn extend_run(
        &mut self,
        n: usize,
        (mut t, delta): (i64, i64),
        (mut v, step): (i64, i64),
        value: impl Fn(i64) -> Value,
    ) {
        self.extend((0..n).map(|_| {
            t = t.wrapping_add(delta);
            v = v.wrapping_add(step);
            DataPoint {
                timestamp_ms: t,
                value: value(v),
            }
        }))
    }
    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len)
    }
    #[inline(always)]
    fn unpack(
        &mut self,
        count: usize,
        times: &mut packed::Ints<'_>,
        values: &mut packed::Ints<'_>,
        scale: Option<f64>,
    ) {
        let start = self.len();
        let unset = DataPoint {
            timestamp_ms: 0,
            value: Value::Int(0),
        };
        self.resize(start + count, unset);
        let points = &mut self[start..];
        times.unpack(points, |p, t| p.timestamp_ms = t);
        match scale {
            None => values.unpack(points, |p, v| p.value = Value::Int(v)),
            Some(s) => values.unpack(points, |p, v| p.value = Value::Float(v as f64 / s)),
        }
    }
    fn not_increasing(&self, from: usize) -> Option<usize> {
        let i = self[from..]
            .windows(2)
            .position(|w| w[1].timestamp_ms <= w[0].timestamp_ms)?;
        Some(from + i + 1)
    }
    fn timestamp(&self, i: usize) -> i64 {
        self[i].timestamp_ms
    }
}

impl Sink for Doubles {
    fn clear(&mut self) {
        Doubles::clear(self)
    }
    fn len(&self) -> usize {
        Doubles::len(self)
    }
    fn reserve(&mut self, additional: usize) {
        self.ts.reserve(additional);
        self.vals.reserve(additional);
    }
    #[inline(always)]
    fn push(&mut self, timestamp_ms: i64, value: Value) {
        Doubles::push(self, timestamp_ms, value.as_f64())
    }
    #[inline(always)]
    fn extend_run(
        &mut self,
        n: usize,
        (mut t, delta): (i64, i64),
        (mut v, step): (i64, i64),
        value: impl Fn(i64) -> Value,
    ) {
        self.ts.extend((0..n).map(|_| {
            t = t.wrapping_add(delta);
            t
        }));
        self.vals.extend((0..n).map(|_| {
            v = v.wrapping_add(step);
            value(v).as_f64()
        }));
    }
    fn truncate(&mut self, len: usize) {
        self.ts.truncate(len);
        self.vals.truncate(len);
    }
    #[inline(always)]
    fn unpack(
        &mut self,
        count: usize,
        times: &mut packed::Ints<'_>,
        values: &mut packed::Ints<'_>,
        scale: Option<f64>,
    ) {
        let start = self.len();
        self.ts.resize(start + count, 0);
        self.vals.resize(start + count, 0.0);
        times.unpack(&mut self.ts[start..], |slot, t| *slot = t);
        let vals = &mut self.vals[start..];
        match scale {
            None => values.unpack(vals, |slot, v| *slot = v as f64),
            Some(s) => values.unpack(vals, |slot, v| *slot = v as f64 / s),
        }
    }
    fn not_increasing(&self, from: usize) -> Option<usize> {
        let i = self.ts[from..].windows(2).position(|w| w[1] <= w[0])?;
        Some(from + i + 1)
    }
    fn timestamp(&self, i: usize) -> i64 {
        self.ts[i]
    }
}

fn decode_to<S: Sink>(bytes: &[u8], out: &mut S) -> Result<(), ChunkError> {
    out.clear();
    // Each reader is built here, not taken out of a `ChunkIter`: moving
    // one cost a `memmove` a chunk, 3 % of query (b)'s profile.
    let (&version, rest) = bytes.split_first().ok_or(ChunkError::Empty)?;
    let mut it = match version {
        VERSION => bits_iter(bytes, rest)?,
        packed::VERSION => return packed::Iter::new(rest)?.decode_into(out),
        _ => return Err(ChunkError::UnknownVersion(version)),
    };
    out.reserve(it.count);
    while it.index < it.count {
        if it.index > 0 && it.bits.two_zeros() && it.read_zero_run(out) {
            continue;
        }
        let p = it.read_point()?;
        it.index += 1;
        out.push(p.timestamp_ms, p.value);
    }
    let bits = it.bits.remaining();
    if !it.bits.rest_is_padding() {
        return Err(ChunkError::TrailingData { bits });
    }
    Ok(())
}

/// Reads a chunk point by point. The header is checked here; a corrupt
/// point ends the iteration with one `Err`.
pub fn iter(bytes: &[u8]) -> Result<ChunkIter<'_>, ChunkError> {
    let (&version, rest) = bytes.split_first().ok_or(ChunkError::Empty)?;
    let inner = match version {
        VERSION => Inner::Bits(bits_iter(bytes, rest)?),
        packed::VERSION => Inner::Packed(packed::Iter::new(rest)?),
        _ => return Err(ChunkError::UnknownVersion(version)),
    };
    Ok(ChunkIter(inner))
}

/// Reads the body of a version 1 chunk, `rest` of `bytes`.
fn bits_iter<'a>(bytes: &[u8], rest: &'a [u8]) -> Result<BitsIter<'a>, ChunkError> {
    let (count, used) = read_uleb128(rest).ok_or(ChunkError::BadHeader)?;
    let body = &rest[used..];
    // The first point takes at least 65 bits, each later one at least 2.
    let bits = body.len() as u64 * 8;
    let max = if bits < 65 { 0 } else { 1 + (bits - 65) / 2 };
    let too_large = ChunkError::CountTooLarge {
        count,
        len: bytes.len(),
    };
    if count > max {
        return Err(too_large);
    }
    Ok(BitsIter {
        bits: BitReader::new(body),
        count: usize::try_from(count).map_err(|_| too_large)?,
        index: 0,
        prev_ts: 0,
        ts_delta: 0,
        values: ValueState::default(),
        done: false,
    })
}

/// Points of a chunk in time order, decoded lazily.
#[derive(Debug, Clone)]
pub struct ChunkIter<'a>(Inner<'a>);

#[derive(Debug, Clone)]
enum Inner<'a> {
    Bits(BitsIter<'a>),
    Packed(packed::Iter<'a>),
}

impl Iterator for ChunkIter<'_> {
    type Item = Result<DataPoint, ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            Inner::Bits(it) => it.next(),
            Inner::Packed(it) => it.next_point(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            Inner::Bits(it) => it.size_hint(),
            Inner::Packed(it) => (0, Some(it.remaining())),
        }
    }
}

/// A version 1 chunk's points.
#[derive(Debug, Clone)]
struct BitsIter<'a> {
    bits: BitReader<'a>,
    count: usize,
    index: usize,
    prev_ts: i64,
    ts_delta: u64,
    values: ValueState,
    done: bool,
}

impl Iterator for BitsIter<'_> {
    type Item = Result<DataPoint, ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.index == self.count {
            self.done = true;
            let bits = self.bits.remaining();
            return (!self.bits.rest_is_padding())
                .then_some(Err(ChunkError::TrailingData { bits }));
        }
        match self.read_point() {
            Ok(p) => {
                self.index += 1;
                Some(Ok(p))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            // Up to one trailing-data error after the points.
            let left = self.count - self.index;
            (0, Some(left + 1))
        }
    }
}

/// Pushes up to `run` points of a regular run onto `out`: timestamps
/// stepping by `delta` from `t`, integers by `step` from `v`, each made a
/// value by `value`, until a timestamp would not increase. Returns the
/// last timestamp and integer, and the points pushed.
#[inline(always)]
fn push_run(
    out: &mut impl Sink,
    run: usize,
    (t, delta): (i64, i64),
    (v, step): (i64, i64),
    value: impl Fn(i64) -> Value,
) -> (i64, i64, usize) {
    // A timestamp fails to increase where `t + k × delta` would pass
    // `i64::MAX` (wrapping), or at once if `delta` is not positive. Below
    // that bound the wrapping sums are exact.
    let n = match delta {
        ..=0 => 0,
        _ => {
            let room = (i64::MAX as u64).wrapping_sub(t as u64) / delta as u64;
            run.min(usize::try_from(room).unwrap_or(usize::MAX))
        }
    };
    out.extend_run(n, (t, delta), (v, step), value);
    let k = n as i64;
    (
        t.wrapping_add(k.wrapping_mul(delta)),
        v.wrapping_add(k.wrapping_mul(step)),
        n,
    )
}

impl BitsIter<'_> {
    /// Reads a run of points whose timestamp and value codes are both `0`
    /// (a regular timestamp and an unchanged delta, or in XOR mode an
    /// unchanged value: `00` per point, the commonest pair) as they are
    /// loaded, without decoding each code. False when the next point is
    /// not such a one, or would be out of order: `read_point` reads it then.
    #[inline(always)]
    fn read_zero_run(&mut self, out: &mut impl Sink) -> bool {
        let left = self.count - self.index;
        let run = ((self.bits.zero_run() / 2) as usize).min(left);
        if run == 0 {
            return false;
        }
        let (t, delta) = (self.prev_ts, self.ts_delta as i64);
        let vs = &mut self.values;
        // One loop per kind of value: with one for all, the compiler
        // divides every integer as if it were a decimal.
        let (t, n) = match vs.mode {
            Mode::Int => {
                let (t, v, n) = push_run(out, run, (t, delta), (vs.prev, vs.delta), Value::Int);
                vs.prev = v;
                (t, n)
            }
            Mode::Decimal(s) => {
                let p = POW10[usize::from(s)];
                let decimal = |v| Value::Float(v as f64 / p);
                let (t, v, n) = push_run(out, run, (t, delta), (vs.prev, vs.delta), decimal);
                vs.prev = v;
                (t, n)
            }
            Mode::Xor => {
                let value = Value::Float(f64::from_bits(vs.prev_bits));
                let (t, _, n) = push_run(out, run, (t, delta), (0, 0), |_| value);
                (t, n)
            }
        };
        self.prev_ts = t;
        self.index += n;
        self.bits.skip(2 * n as u32);
        n > 0
    }

    #[inline(always)]
    fn read_point(&mut self) -> Result<DataPoint, ChunkError> {
        let index = self.index;
        let truncated = |OutOfBits| ChunkError::Truncated { index };
        let r = &mut self.bits;
        let timestamp_ms = if index == 0 {
            r.read(64).map_err(truncated)? as i64
        } else {
            let dod = if r.take_zero() {
                0
            } else {
                match r.read_unary(TS_RAW).map_err(truncated)? {
                    0 => 0,
                    1 => r
                        .read_signed(TS_SECONDS_WIDTH)
                        .map_err(truncated)?
                        .wrapping_mul(SECOND_MS),
                    n @ 2..=4 => r
                        .read_signed(TS_WIDTHS[n as usize - 2])
                        .map_err(truncated)?,
                    _ => r.read(64).map_err(truncated)? as i64,
                }
            };
            let delta = self.ts_delta.wrapping_add(dod as u64);
            let t = self.prev_ts.wrapping_add(delta as i64);
            if t <= self.prev_ts {
                return Err(ChunkError::NotIncreasing {
                    index,
                    previous: self.prev_ts,
                    timestamp: t,
                });
            }
            self.ts_delta = delta;
            t
        };
        self.prev_ts = timestamp_ms;
        let value = self.values.read_value(r, index)?;
        Ok(DataPoint {
            timestamp_ms,
            value,
        })
    }
}

/// How values are currently coded; see the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Mode {
    #[default]
    Int,
    Decimal(u8),
    Xor,
}

impl Mode {
    fn selector(self) -> u8 {
        match self {
            Mode::Int => 0,
            Mode::Xor => 1,
            Mode::Decimal(s) => 2 + s,
        }
    }

    /// Every 4-bit selector names a mode.
    fn from_selector(sel: u8) -> Mode {
        match sel {
            0 => Mode::Int,
            1 => Mode::Xor,
            s => Mode::Decimal(s - 2),
        }
    }
}

/// The meaningful bits of the last new XOR window.
#[derive(Debug, Clone, Copy)]
struct Window {
    leading: u32,
    width: u32,
}

impl Window {
    fn trailing(self) -> u32 {
        64 - self.leading - self.width
    }
}

/// Value-coding state shared by the encoder and the decoder, which must
/// evolve it identically.
#[derive(Debug, Clone, Copy, Default)]
struct ValueState {
    mode: Mode,
    /// Integer and decimal modes: the last integer (or mantissa).
    prev: i64,
    /// Integer and decimal modes: the last delta, wrapping.
    delta: i64,
    /// XOR mode: the last float's bits.
    prev_bits: u64,
    /// XOR mode: the current window, `None` until the first new one.
    window: Option<Window>,
}

/// A decoded value code: a value, or a request to switch modes.
enum Code {
    Value(Value),
    Switch,
}

impl ValueState {
    fn reset(&mut self, mode: Mode) {
        *self = ValueState {
            mode,
            ..ValueState::default()
        };
    }

    #[inline(always)]
    fn read_value(&mut self, r: &mut BitReader<'_>, index: usize) -> Result<Value, ChunkError> {
        if let Code::Value(v) = self.read_code(r, index)? {
            return Ok(v);
        }
        let selector = r.read(4).map_err(|_| ChunkError::Truncated { index })? as u8;
        let mode = Mode::from_selector(selector);
        if mode == self.mode {
            return Err(ChunkError::SameMode { index, selector });
        }
        self.reset(mode);
        match self.read_code(r, index)? {
            Code::Value(v) => Ok(v),
            Code::Switch => Err(ChunkError::DoubleSwitch { index }),
        }
    }

    #[inline(always)]
    fn read_code(&mut self, r: &mut BitReader<'_>, index: usize) -> Result<Code, ChunkError> {
        let truncated = |OutOfBits| ChunkError::Truncated { index };
        let scale = match self.mode {
            Mode::Int => None,
            Mode::Decimal(s) => Some(s),
            Mode::Xor => return self.read_xor(r, index),
        };
        let dod = if r.take_zero() {
            0
        } else {
            match r.read_unary(INT_ESCAPE).map_err(truncated)? {
                0 => 0,
                n if n < INT_ESCAPE - 1 => r
                    .read_signed(INT_WIDTHS[n as usize - 1])
                    .map_err(truncated)?,
                n if n == INT_ESCAPE - 1 => r.read(64).map_err(truncated)? as i64,
                _ => return Ok(Code::Switch),
            }
        };
        self.delta = self.delta.wrapping_add(dod);
        self.prev = self.prev.wrapping_add(self.delta);
        Ok(Code::Value(match scale {
            None => Value::Int(self.prev),
            Some(s) => Value::Float(self.prev as f64 / POW10[usize::from(s)]),
        }))
    }

    fn read_xor(&mut self, r: &mut BitReader<'_>, index: usize) -> Result<Code, ChunkError> {
        let truncated = |OutOfBits| ChunkError::Truncated { index };
        if r.take_zero() {
            return Ok(Code::Value(Value::Float(f64::from_bits(self.prev_bits))));
        }
        let x = match r.read_unary(2).map_err(truncated)? {
            0 => 0,
            1 => {
                let win = self.window.ok_or(ChunkError::NoWindow { index })?;
                r.read(win.width).map_err(truncated)? << win.trailing()
            }
            _ => {
                let header = r.read(12).map_err(truncated)?;
                if header == XOR_ESCAPE & 0xFFF {
                    return Ok(Code::Switch);
                }
                let leading = (header >> 6) as u32;
                let width = (header & 0x3F) as u32 + 1;
                if leading + width > 64 {
                    return Err(ChunkError::BadWindow {
                        index,
                        leading,
                        width,
                    });
                }
                let win = Window { leading, width };
                self.window = Some(win);
                r.read(width).map_err(truncated)? << win.trailing()
            }
        };
        self.prev_bits ^= x;
        Ok(Code::Value(Value::Float(f64::from_bits(self.prev_bits))))
    }
}

/// `m` if `f == m as f64 / 10^s` bit for bit.
#[inline]
fn decimal_at(f: f64, s: u8) -> Option<i64> {
    let p = POW10[usize::from(s)];
    let m = nearest_mantissa(f * p)?;
    exact_decimal(f, m, p).then_some(m)
}

/// The smallest decimal scale that holds `f` exactly, with its mantissa.
fn find_decimal(f: f64) -> Option<(u8, i64)> {
    for (s, &p) in (0u8..).zip(POW10.iter()) {
        let x = f * p;
        // Too large here means too large at every larger scale.
        let m = nearest_mantissa(x)?;
        // The product of a true decimal and its scale lands within a few
        // ulps of the mantissa; skip the division for everything else.
        if (x - m as f64).abs() <= x.abs() * 1e-12 && exact_decimal(f, m, p) {
            return Some((s, m));
        }
    }
    None
}

/// The integer nearest `x` if its magnitude is below 2^53 (so the decoder's
/// `m as f64` is exact); `None` for larger values, NaN and infinities.
#[inline]
fn nearest_mantissa(x: f64) -> Option<i64> {
    // Round half away from zero without a libm call; a wrong guess only
    // fails `exact_decimal`.
    // Mantissas at or beyond 2^53 are not exact in an `f64`, so `m / 10^s`
    // would not be a faithful decimal.
    (x.abs() < MAX_EXACT_F64_INT).then(|| (x + 0.5f64.copysign(x)) as i64)
}

/// Whether the decoder's `m as f64 / p` gives back `f` bit for bit (which
/// also keeps -0.0 out of decimal mode).
#[inline]
fn exact_decimal(f: f64, m: i64, p: f64) -> bool {
    (m as f64 / p).to_bits() == f.to_bits()
}

/// Whether `v` fits in a `width`-bit two's complement field.
#[inline]
fn fits(v: i64, width: u32) -> bool {
    let shift = 64 - width;
    (v << shift) >> shift == v
}

fn write_uleb128(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `(value, bytes used)`, or `None` if truncated or longer than 64 bits.
fn read_uleb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let part = u64::from(b & 0x7F);
        if i == 9 && part > 1 {
            return None;
        }
        v |= part << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

#[doc(hidden)]
pub mod testkit;

#[cfg(test)]
mod tests;
