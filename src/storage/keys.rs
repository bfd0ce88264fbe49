//! Every RocksDB key the store writes is built and parsed here, and nowhere
//! else, so the layouts documented in [`super::cf`] have one implementation.
//!
//! Integers are big-endian so that byte order is numeric order: a range scan
//! over `series id ‖ window start` walks one series in time order. Signed
//! timestamps have their sign bit flipped first, which keeps that true for
//! negative values too (the store never writes them, but a query range may
//! start before the epoch).

use crate::model::NameKind;

/// Bytes of a fixed-width integer in a key.
const U64_LEN: usize = 8;

/// Length of a block or rollup key: `series id ‖ window start`.
pub const SERIES_TIME_LEN: usize = 2 * U64_LEN;

/// `meta` key of the on-disk format version.
pub const META_FORMAT_VERSION: &[u8] = b"format_version";
/// `meta` key of the next series id to hand out.
pub const META_NEXT_SERIES_ID: &[u8] = b"next_series_id";
/// `meta` key of the seal watermark (see `log`).
pub const META_SEAL_WATERMARK: &[u8] = b"seal_watermark";

/// Order-preserving encoding of a signed timestamp.
pub fn timestamp(ts: i64) -> [u8; U64_LEN] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

fn parse_timestamp(bytes: [u8; U64_LEN]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// A big-endian `u64`: series ids (`series_by_id`) and log sequence numbers (`log`).
pub fn u64_key(n: u64) -> [u8; U64_LEN] {
    n.to_be_bytes()
}

pub fn parse_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// `series id ‖ window start`: the key of a sealed block and of a rollup.
pub fn series_time(id: u64, start_ms: i64) -> [u8; SERIES_TIME_LEN] {
    let mut key = [0u8; SERIES_TIME_LEN];
    key[..U64_LEN].copy_from_slice(&id.to_be_bytes());
    key[U64_LEN..].copy_from_slice(&timestamp(start_ms));
    key
}

pub fn parse_series_time(key: &[u8]) -> Option<(u64, i64)> {
    if key.len() != SERIES_TIME_LEN {
        return None;
    }
    let id = parse_u64(&key[..U64_LEN])?;
    let ts = parse_timestamp(key[U64_LEN..].try_into().ok()?);
    Some((id, ts))
}

fn name_kind_byte(kind: NameKind) -> u8 {
    match kind {
        NameKind::Metric => b'm',
        NameKind::TagKey => b'k',
        NameKind::TagValue => b'v',
    }
}

/// `kind ‖ name` in the `names` column family; with a partial name, the
/// prefix of every name of that kind starting with it.
pub fn name(kind: NameKind, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 1);
    key.push(name_kind_byte(kind));
    key.extend_from_slice(name.as_bytes());
    key
}

/// The name part of a `names` key.
pub fn name_of(key: &[u8]) -> &[u8] {
    key.get(1..).unwrap_or_default()
}

/// The smallest key greater than every key starting with `prefix`, for an
/// exclusive iterator bound; `None` when no such key exists (all 0xFF).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_sort_numerically_across_the_sign() {
        let ts = [i64::MIN, -3_600_000, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        let keys: Vec<_> = ts.iter().map(|&t| timestamp(t)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for &t in &ts {
            assert_eq!(parse_timestamp(timestamp(t)), t);
        }
    }

    #[test]
    fn series_time_layout_is_id_then_time() {
        let key = series_time(0x0102, 0);
        assert_eq!(key, [0, 0, 0, 0, 0, 0, 1, 2, 0x80, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse_series_time(&key), Some((0x0102, 0)));
        assert!(series_time(1, i64::MAX) < series_time(2, i64::MIN));
        assert_eq!(parse_series_time(&key[1..]), None);
    }

    #[test]
    fn names_and_prefix_end() {
        assert_eq!(name(NameKind::TagValue, "web01"), b"vweb01");
        assert_eq!(name_of(b"vweb01"), b"web01");
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }
}
