//! Checking an `/api/put` point (and a name given to `/api/uid/assign`):
//! the telnet parser as the HTTP layer's validator.
//!
//! OpenTSDB runs an `/api/put` point through the same `addPoint` checks as
//! a telnet `put`, so rtsd does too: [`check_point`] writes the point as a
//! `put` line and hands it to [`protocol::parse_line`], which applies the
//! checks in OpenTSDB's order with OpenTSDB's texts (value syntax, NaN and
//! infinity, timestamp range, tag count, allowed characters in `HashMap`
//! order). Names that a line cannot carry are checked with the protocol
//! module's character table directly ([`first_illegal`]).
//!
//! A line cannot carry a space or a CR inside a word, nor `=` or an empty
//! side inside a tag: callers reject such names first (with
//! [`first_illegal`], which handles them).

use crate::model::{DataPoint, Sample};
use crate::protocol::{self, Command, LineError, NameRole, ParseOptions, PutError};

/// Characters that end a word of a `put` line (a CR only at the end of the
/// line, but it is never a legal name character, so refusing it anywhere
/// costs nothing).
pub fn breaks_word(c: char) -> bool {
    c == ' ' || c == '\r'
}

/// Whether `name` can travel as a tag key or value of a line.
pub fn fits_tag(name: &str) -> bool {
    !name.is_empty() && !name.contains(|c| breaks_word(c) || c == '=')
}

/// Runs OpenTSDB's checks on a point whose fields [`fits_tag`] (tags) or
/// contain no [`breaks_word`] character (metric, value).
pub fn check_point(
    metric: &str,
    timestamp: i64,
    value: &str,
    tags: &[(&str, &str)],
    opts: &ParseOptions,
) -> Result<Sample, PutError> {
    let mut line = format!("put {metric} {timestamp} {value}");
    for (k, v) in tags {
        line.push(' ');
        line.push_str(k);
        line.push('=');
        line.push_str(v);
    }
    match protocol::parse_line(line.as_bytes(), opts) {
        Ok(Command::Put(put)) => Ok(Sample {
            series: put.series_key(),
            point: DataPoint {
                timestamp_ms: put.timestamp_ms,
                value: put.value,
            },
        }),
        Err(LineError::Rejected { error, .. }) => Err(error),
        // `parse_line` answers a line starting with `put ` with a put or a
        // rejected put, whatever follows.
        other => unreachable!("parse_line answered a put line with {other:?}"),
    }
}

/// The first character of `name` OpenTSDB's `Tags.validateString` refuses
/// (with `opts.allow_special_chars`), or `None` if every one is allowed.
pub fn first_illegal(name: &str, opts: &ParseOptions) -> Option<char> {
    protocol::first_illegal_char(name, &opts.allow_special_chars)
}

/// OpenTSDB's message for a name with an illegal character, or for an
/// empty tag key or value (`Tags.validateString`), without the reply's
/// `illegal argument: ` prefix.
pub fn name_error(what: NameRole, name: &str, opts: &ParseOptions) -> Option<String> {
    if name.is_empty() {
        return Some(format!("Invalid {what}: empty string"));
    }
    let ch = first_illegal(name, opts)?;
    let error = PutError::IllegalCharacter {
        what,
        name: name.to_string(),
        ch,
    };
    Some(message(&error))
}

/// A [`PutError`]'s text as OpenTSDB's HTTP put reports it: the message
/// of the `IllegalArgumentException`, without the telnet reply's class.
pub fn message(error: &PutError) -> String {
    let text = error.to_string();
    match text.strip_prefix("illegal argument: ") {
        Some(msg) => msg.to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SeriesKey, Value};

    #[test]
    fn points_go_through_the_telnet_checks() {
        let opts = ParseOptions::default();
        let s = check_point("sys.cpu", 1_700_000_000, "42", &[("host", "a")], &opts).unwrap();
        assert_eq!(s.series, SeriesKey::new("sys.cpu", [("host", "a")]));
        assert_eq!(
            s.point,
            DataPoint {
                timestamp_ms: 1_700_000_000_000,
                value: Value::Int(42)
            }
        );
        let s = check_point("m", 1_700_000_000_123, "1.5", &[], &opts).unwrap();
        assert_eq!(
            s.point,
            DataPoint {
                timestamp_ms: 1_700_000_000_123,
                value: Value::Float(1.5)
            }
        );
        let e = check_point("m", 1, "1e309", &[("h", "a")], &opts).unwrap_err();
        assert_eq!(
            message(&e),
            "value is NaN or Infinite: Infinity for metric=m timestamp=1"
        );
        let e = check_point("a:b", 1, "1", &[], &opts).unwrap_err();
        assert_eq!(
            message(&e),
            "Invalid metric name (\"a:b\"): illegal character: :"
        );
    }

    #[test]
    fn illegal_characters_are_found_even_where_a_line_cannot_carry_them() {
        let opts = ParseOptions::default();
        assert_eq!(first_illegal("web01", &opts), None);
        assert_eq!(first_illegal("a b", &opts), Some(' '));
        assert_eq!(first_illegal("a=b", &opts), Some('='));
        assert_eq!(first_illegal("a:b c", &opts), Some(':'));
        assert_eq!(first_illegal("ab\r", &opts), Some('\r'));
        assert_eq!(
            name_error(NameRole::TagValue { key: "host".into() }, "a b", &opts).as_deref(),
            Some("Invalid tag value with key [host] (\"a b\"): illegal character:  ")
        );
        assert_eq!(
            name_error(NameRole::TagKey { value: "x".into() }, "", &opts).as_deref(),
            Some("Invalid tag name with value [x]: empty string")
        );
    }
}
