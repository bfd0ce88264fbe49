//! ClickHouse's RowBinary format, for the column types rtsd's rows use:
//! fixed-width integers and floats little-endian, one after another, row
//! after row, with no framing.

/// Writes RowBinary fields into a buffer.
pub trait PutRow {
    fn put_u8(&mut self, v: u8);
    fn put_u64(&mut self, v: u64);
    fn put_i64(&mut self, v: i64);
    /// The IEEE bits as they are, NaN payloads included.
    fn put_f64(&mut self, v: f64);
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
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RowError {
    #[error("RowBinary answer ends inside a row at byte {at}")]
    Truncated { at: usize },
    #[error("RowBinary answer holds {value} at byte {at} where a 0 or 1 flag belongs")]
    Flag { at: usize, value: u8 },
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
}
