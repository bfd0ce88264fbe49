//! The timestamp word of a `put`: seconds or milliseconds by OpenTSDB's
//! 2^32 rule, plus rtsd's reading of `<seconds>.<fraction>`.
//!
//! OpenTSDB deletes every `.` and parses the rest as a long, so
//! `1356998400.5` becomes 13569984005 ms, in 1970. rtsd instead reads
//! `D.F` — `D` an optional `+` and 1–19 digits, `F` zero or more digits — as
//! `D` seconds plus the fraction `0.F` of a second, truncated to the
//! millisecond. If `D` is already a millisecond count (above 2^32 − 1), the
//! fraction is below a millisecond and is dropped. Every other word with a
//! dot goes OpenTSDB's way, dots deleted, so its errors read the same.

use crate::java::number::{self, NumberError};
use crate::model::{MAX_SECONDS, MAX_TIMESTAMP_MS};

/// A parsed timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// The number OpenTSDB would work with, as its messages print it:
    /// seconds or milliseconds, by the 2^32 rule. For `D.F` with `D` in
    /// seconds it is the millisecond count, a value OpenTSDB itself never
    /// sees.
    pub raw: i64,
    /// Epoch milliseconds; meaningful only once `raw` passed the checks.
    pub ms: i64,
}

impl Timestamp {
    fn from_raw(raw: i64) -> Self {
        Timestamp {
            raw,
            ms: crate::model::epoch_ms(raw),
        }
    }

    /// OpenTSDB's storage check, `ts < 0 || (ts is ms && ts > MAX_MILLIS)`
    /// (its `MAX_MILLIS` is [`MAX_TIMESTAMP_MS`]); anything above that is
    /// beyond seconds anyway. (Zero and
    /// negatives are refused earlier, as `invalid timestamp`.)
    pub fn out_of_range(self) -> bool {
        self.raw < 0 || self.raw > MAX_TIMESTAMP_MS
    }
}

/// Parses the timestamp word (as rtsd reads it, lossy UTF-8); errors are
/// OpenTSDB's `NumberFormatException` messages.
pub fn parse(word: &str) -> Result<Timestamp, NumberError> {
    let Some(dot) = word.bytes().position(|b| b == b'.') else {
        return number::parse_long(word).map(Timestamp::from_raw);
    };
    let (int, fraction) = (&word[..dot], &word[dot + 1..]);
    let seconds_and_fraction =
        !int.starts_with('-') && fraction.bytes().all(|b| b.is_ascii_digit());
    if seconds_and_fraction {
        if let Ok(whole) = number::parse_long(int) {
            if whole > MAX_SECONDS {
                return Ok(Timestamp::from_raw(whole));
            }
            let millis = fraction
                .bytes()
                .chain(std::iter::repeat(b'0'))
                .take(3)
                .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'));
            let ms = whole * 1000 + millis;
            return Ok(Timestamp { raw: ms, ms });
        }
    }
    number::parse_long(&word.replace('.', "")).map(Timestamp::from_raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(word: &str) -> i64 {
        parse(word).map(|t| t.ms).unwrap_or(i64::MIN)
    }

    #[test]
    fn integers_follow_the_2_pow_32_rule() {
        assert_eq!(ms("1700000000"), 1_700_000_000_000);
        assert_eq!(ms("4294967295"), 4_294_967_295_000);
        assert_eq!(ms("4294967296"), 4_294_967_296);
        assert_eq!(ms("1700000000123"), 1_700_000_000_123);
        assert_eq!(ms("+1700000000"), 1_700_000_000_000);
        assert_eq!(
            parse("9999999999999").map(Timestamp::out_of_range),
            Ok(false)
        );
        assert_eq!(
            parse("10000000000000").map(Timestamp::out_of_range),
            Ok(true)
        );
    }

    #[test]
    fn seconds_with_a_fraction_keep_milliseconds() {
        assert_eq!(ms("1356998400.5"), 1_356_998_400_500);
        assert_eq!(ms("1356998400.123"), 1_356_998_400_123);
        assert_eq!(ms("1356998400.123987"), 1_356_998_400_123);
        assert_eq!(ms("1356998400."), 1_356_998_400_000);
        assert_eq!(ms("+1356998400.05"), 1_356_998_400_050);
        assert_eq!(ms("0.5"), 500);
        assert_eq!(parse("1356998400.5").map(|t| t.raw), Ok(1_356_998_400_500));
        // Already milliseconds: the sub-millisecond fraction is dropped.
        assert_eq!(ms("1700000000123.9"), 1_700_000_000_123);
    }

    #[test]
    fn other_dotted_forms_delete_the_dots_like_opentsdb() {
        assert_eq!(ms("1.2.3"), 123_000);
        assert_eq!(ms(".5"), 5000);
        assert_eq!(parse("-5.5").map(|t| t.raw), Ok(-55));
        assert_eq!(
            parse(".").map_err(|e| e.to_string()),
            Err("Empty string".to_owned())
        );
        assert_eq!(
            parse("abc.5").map_err(|e| e.to_string()),
            Err("Invalid character 'a' in abc5".to_owned())
        );
        assert_eq!(
            parse("1.5e3").map_err(|e| e.to_string()),
            Err("Invalid character 'e' in 15e3".to_owned())
        );
        assert_eq!(
            parse("99999999999999999999.5").map_err(|e| e.to_string()),
            Err("Value too long: 999999999999999999995".to_owned())
        );
    }
}
