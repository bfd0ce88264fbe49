//! Bit-level I/O for the chunk codec: a writer that packs bits most
//! significant first into bytes, and a reader that takes them back out and
//! reports reading past the end instead of inventing bits.

/// Appends bits most significant first.
#[derive(Debug, Clone, Default)]
pub(super) struct BitWriter {
    buf: Vec<u8>,
    /// Pending bits, left-aligned: bit 63 is the oldest.
    acc: u64,
    /// Number of pending bits, always below 64.
    pending: u32,
}

/// The low `n` bits set, for `n <= 64`.
#[inline]
fn mask(n: u32) -> u64 {
    if n == 0 {
        0
    } else {
        u64::MAX >> (64 - n)
    }
}

impl BitWriter {
    /// Appends the low `n` bits of `v` (`n <= 64`; higher bits are ignored).
    #[inline]
    pub(super) fn write(&mut self, v: u64, n: u32) {
        if n == 0 {
            return;
        }
        let v = v & mask(n);
        let free = 64 - self.pending;
        if n < free {
            self.acc |= v << (free - n);
            self.pending += n;
        } else {
            let spill = n - free;
            self.acc |= v >> spill;
            if self.buf.len() == self.buf.capacity() {
                self.grow();
            }
            self.buf.extend_from_slice(&self.acc.to_be_bytes());
            self.acc = if spill == 0 { 0 } else { v << (64 - spill) };
            self.pending = spill;
        }
    }

    /// Writes code `i` of a unary prefix family whose longest code is `max`
    /// ones (`i` ones then a zero, or `max` ones), then a `width`-bit payload.
    #[inline]
    pub(super) fn write_code(&mut self, i: u32, max: u32, payload: u64, width: u32) {
        let (prefix, len) = if i == max {
            (mask(max), max)
        } else {
            (mask(i) << 1, i + 1)
        };
        if len + width <= 64 {
            self.write((prefix << width) | (payload & mask(width)), len + width);
        } else {
            self.write(prefix, len);
            self.write(payload, width);
        }
    }

    /// Heap bytes held.
    /// Grows the buffer by a quarter instead of doubling it. Head chunks
    /// are tens of thousands of buffers that stop growing when their hour
    /// ends; doubling left them a third empty on average, a quarter of the
    /// heap at 40,000 series. The extra reallocations are a few per window.
    #[cold]
    fn grow(&mut self) {
        let more = (self.buf.len() / 4).next_multiple_of(8).max(32);
        self.buf.reserve_exact(more);
    }

    pub(super) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Bytes [`append_to`](Self::append_to) adds.
    pub(super) fn byte_len(&self) -> usize {
        self.buf.len() + self.pending.div_ceil(8) as usize
    }

    /// Appends the bits written so far, zero-padded to a whole byte.
    pub(super) fn append_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buf);
        let tail = self.acc.to_be_bytes();
        out.extend_from_slice(&tail[..self.pending.div_ceil(8) as usize]);
    }
}

/// Reading past the end of the input. The chunk decoder turns it into a
/// [`ChunkError::Truncated`](super::ChunkError::Truncated) naming the point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OutOfBits;

/// Reads bits most significant first.
#[derive(Debug, Clone)]
pub(super) struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next byte to load into `acc`.
    pos: usize,
    /// Loaded bits, left-aligned. The bits below the first `avail` are zero
    /// or copies of the bits the next refill puts there, so OR-ing a refill
    /// in is safe; once the input is exhausted they are all zero.
    acc: u64,
    /// Number of loaded, unread bits, always below 64.
    avail: u32,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            pos: 0,
            acc: 0,
            avail: 0,
        }
    }

    /// Loads whole bytes until at least 56 bits are available or the input
    /// is exhausted.
    #[inline]
    fn refill(&mut self) {
        if let Some(word) = self
            .bytes
            .get(self.pos..)
            .and_then(<[u8]>::first_chunk::<8>)
        {
            self.acc |= u64::from_be_bytes(*word) >> self.avail;
            let take = (63 - self.avail) / 8;
            self.pos += take as usize;
            self.avail += take * 8;
            return;
        }
        while self.avail <= 55 {
            let Some(&b) = self.bytes.get(self.pos) else {
                break;
            };
            self.acc |= u64::from(b) << (56 - self.avail);
            self.avail += 8;
            self.pos += 1;
        }
    }

    /// Reads `n` bits, `1 <= n <= 64`. Always inlined: a packed chunk
    /// reads a value or two per point, and a call costs more than the read.
    #[inline(always)]
    pub(super) fn read(&mut self, n: u32) -> Result<u64, OutOfBits> {
        debug_assert!((1..=64).contains(&n));
        if n > 56 {
            return self.read_wide(n);
        }
        if self.avail < n {
            self.refill();
            if self.avail < n {
                return Err(OutOfBits);
            }
        }
        let v = self.acc >> (64 - n);
        self.acc <<= n;
        self.avail -= n;
        Ok(v)
    }

    /// [`read`](Self::read) of more bits than a refill guarantees, in two
    /// reads; rare, and kept out of line.
    #[inline(never)]
    fn read_wide(&mut self, n: u32) -> Result<u64, OutOfBits> {
        let hi = self.read(n - 32)?;
        Ok(hi << 32 | self.read(32)?)
    }

    /// Reads an `n`-bit two's complement number, `1 <= n <= 64`.
    #[inline]
    pub(super) fn read_signed(&mut self, n: u32) -> Result<i64, OutOfBits> {
        let shift = 64 - n;
        Ok(((self.read(n)? << shift) as i64) >> shift)
    }

    /// Reads a unary prefix of up to `max` ones (`max <= 56`) ended early by
    /// a zero, and returns the number of ones.
    #[inline]
    pub(super) fn read_unary(&mut self, max: u32) -> Result<u32, OutOfBits> {
        if self.avail < max {
            self.refill();
        }
        // Past the end the bits read as zeros, so a prefix cut off by the
        // end of input shows up as too long for `avail`.
        let ones = (!self.acc).leading_zeros().min(max);
        let len = if ones < max { ones + 1 } else { max };
        if len > self.avail {
            return Err(OutOfBits);
        }
        self.acc <<= len;
        self.avail -= len;
        Ok(ones)
    }

    /// Takes the next bit if it is a loaded zero, the commonest code of
    /// every field (a regular timestamp, an unchanged delta or value), for
    /// less work than [`read_unary`](Self::read_unary); false leaves it.
    #[inline(always)]
    pub(super) fn take_zero(&mut self) -> bool {
        if self.avail > 0 && (self.acc as i64) >= 0 {
            self.acc <<= 1;
            self.avail -= 1;
            true
        } else {
            false
        }
    }

    /// Whether the next two bits are loaded zeros.
    #[inline(always)]
    pub(super) fn two_zeros(&self) -> bool {
        self.avail >= 2 && self.acc >> 62 == 0
    }

    /// How many zero bits come next, as far as they are loaded (after
    /// loading what fits).
    #[inline(always)]
    pub(super) fn zero_run(&mut self) -> u32 {
        if self.avail < 56 {
            self.refill();
        }
        self.acc.leading_zeros().min(self.avail)
    }

    /// Drops `n` loaded bits, `n <= zero_run()`.
    #[inline(always)]
    pub(super) fn skip(&mut self, n: u32) {
        debug_assert!(n <= self.avail);
        self.acc = self.acc.checked_shl(n).unwrap_or(0);
        self.avail -= n;
    }

    /// Bits of input not read yet.
    pub(super) fn remaining(&self) -> usize {
        (self.bytes.len() - self.pos) * 8 + self.avail as usize
    }

    /// Whether the unread bits, fewer than 8, are all zero.
    pub(super) fn rest_is_padding(&mut self) -> bool {
        match self.remaining() {
            0 => true,
            n @ 1..=7 => self.read(n as u32) == Ok(0),
            _ => false,
        }
    }
}
