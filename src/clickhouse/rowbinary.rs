//! ClickHouse's RowBinary format, for the column types rtsd's rows use:
//! fixed-width integers and floats little-endian, a `String` as its length
//! (LEB128) and its bytes, an `Array` as its length and its elements, one
//! field after another, row after row, with no framing.

use crate::model::{DataPoint, Value};

/// Writes RowBinary fields into a buffer.
pub trait PutRow {
    fn put_u8(&mut self, v: u8);
    fn put_u64(&mut self, v: u64);
    fn put_i64(&mut self, v: i64);
    /// The IEEE bits as they are, NaN payloads included.
    fn put_f64(&mut self, v: f64);
    /// A `String`: any bytes, not only UTF-8.
    fn put_bytes(&mut self, v: &[u8]);
    /// An `Array(String)`.
    fn put_strings(&mut self, v: &[&str]);
}

impl PutRow for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_f64(&mut self, v: f64) {
        self.put_u64(v.to_bits());
    }
    fn put_bytes(&mut self, v: &[u8]) {
        put_len(self, v.len());
        self.extend_from_slice(v);
    }
    fn put_strings(&mut self, v: &[&str]) {
        put_len(self, v.len());
        for s in v {
            self.put_bytes(s.as_bytes());
        }
    }
}

/// A length as LEB128: seven bits a byte, low bits first, the high bit set
/// on every byte but the last.
fn put_len(out: &mut Vec<u8>, len: usize) {
    let mut rest = len as u64;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RowError {
    #[error("RowBinary answer ends inside a row at byte {at}")]
    Truncated { at: usize },
    #[error("RowBinary answer holds {value} at byte {at} where a 0 or 1 flag belongs")]
    Flag { at: usize, value: u8 },
    #[error("RowBinary answer holds a length that does not fit in 64 bits at byte {at}")]
    Length { at: usize },
}

/// Reads RowBinary fields off an answer, in order.
pub struct RowReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> RowReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        RowReader { bytes, at: 0 }
    }

    /// Whether every row has been read.
    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// Where the next field starts.
    pub fn position(&self) -> usize {
        self.at
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], RowError> {
        let field = self
            .bytes
            .get(self.at..self.at + N)
            .ok_or(RowError::Truncated { at: self.at })?;
        self.at += N;
        let mut out = [0u8; N];
        out.copy_from_slice(field);
        Ok(out)
    }

    /// A `UInt8` that must be 0 or 1.
    pub fn flag(&mut self) -> Result<bool, RowError> {
        let at = self.at;
        match self.take::<1>()?[0] {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(RowError::Flag { at, value }),
        }
    }

    pub fn u64(&mut self) -> Result<u64, RowError> {
        self.take().map(u64::from_le_bytes)
    }

    pub fn i64(&mut self) -> Result<i64, RowError> {
        self.take().map(i64::from_le_bytes)
    }

    pub fn f64(&mut self) -> Result<f64, RowError> {
        self.u64().map(f64::from_bits)
    }

    /// A point as the points and rollup tables hold one: `ts Int64,
    /// is_int UInt8, int_value Int64, float_value Float64`, the flag
    /// saying which of the two values it is.
    pub fn point(&mut self) -> Result<DataPoint, RowError> {
        let timestamp_ms = self.i64()?;
        let is_int = self.flag()?;
        let (int_value, float_value) = (self.i64()?, self.f64()?);
        let value = match is_int {
            true => Value::Int(int_value),
            false => Value::Float(float_value),
        };
        Ok(DataPoint {
            timestamp_ms,
            value,
        })
    }

    /// A `String`'s bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], RowError> {
        let start = self.at;
        let mut len = 0u64;
        for shift in (0..64).step_by(7) {
            let [byte] = self.take::<1>()?;
            len |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                let field = usize::try_from(len)
                    .ok()
                    .and_then(|len| self.bytes.get(self.at..self.at.checked_add(len)?))
                    .ok_or(RowError::Truncated { at: start })?;
                self.at += field.len();
                return Ok(field);
            }
        }
        Err(RowError::Length { at: start })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_truncation_is_reported() {
        let mut buf = Vec::new();
        buf.put_u8(1);
        buf.put_u64(u64::MAX - 1);
        buf.put_i64(i64::MIN);
        buf.put_f64(-0.0);
        let mut r = RowReader::new(&buf);
        assert_eq!(r.flag(), Ok(true));
        assert_eq!(r.u64(), Ok(u64::MAX - 1));
        assert_eq!(r.i64(), Ok(i64::MIN));
        assert_eq!(r.f64().map(f64::to_bits), Ok((-0.0f64).to_bits()));
        assert!(r.is_done());
        assert_eq!(r.u64(), Err(RowError::Truncated { at: 25 }));
        assert_eq!(
            RowReader::new(&[2]).flag(),
            Err(RowError::Flag { at: 0, value: 2 })
        );
    }

    #[test]
    fn strings_carry_their_length_and_arrays_their_count() {
        let long = vec![b'x'; 300];
        let mut buf = Vec::new();
        buf.put_bytes(b"m\0host\0a");
        buf.put_bytes(&long);
        // 300 is 0b10_0101100: two LEB128 bytes, low seven bits first.
        assert_eq!(buf[9..11], [0xac, 0x02]);
        let mut r = RowReader::new(&buf);
        assert_eq!(r.bytes(), Ok(&b"m\0host\0a"[..]));
        assert_eq!(r.bytes(), Ok(&long[..]));
        assert!(r.is_done());
        assert_eq!(
            RowReader::new(&[5, b'a']).bytes(),
            Err(RowError::Truncated { at: 0 })
        );
        assert_eq!(
            RowReader::new(&[0xff; 11]).bytes(),
            Err(RowError::Length { at: 0 })
        );

        let mut array = Vec::new();
        array.put_strings(&["dc", ""]);
        assert_eq!(array, [2, 2, b'd', b'c', 0]);
    }
}
