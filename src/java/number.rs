//! Java's number parsers, as OpenTSDB runs them on text clients send.
//!
//! OpenTSDB parses `put` timestamps and query times with its own
//! `Tags.parseLong`, `put` values with either that or
//! `Double.parseDouble`, and HTTP parameters such as `max` and `limit`
//! with `Integer.parseInt`. The exception messages land verbatim in replies
//! (`put: invalid value: <message>`, `Invalid time: <text>. <message>`).
//! This module reproduces those parsers — the language each accepts, the
//! value it yields and the message it fails with — so rtsd accepts exactly
//! the numbers OpenTSDB accepts and words its rejections the same way.
//!
//! Strings here are Rust `&str`, i.e. what Java would see had it decoded the
//! text as UTF-8 (rtsd's deliberate difference from OpenTSDB's ISO-8859-1
//! telnet lines); lengths are counted in UTF-16 units, as `String.length()`
//! does.

use nom::{
    bytes::complete::{tag_no_case, take_while},
    character::complete::{char as one_char, digit1, hex_digit0, one_of},
    combinator::{eof, opt, recognize},
    sequence::{pair, tuple},
    IResult,
};

/// A `NumberFormatException` message from one of the two Java parsers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// `Tags.parseLong("")`.
    #[error("Empty string")]
    EmptyString,
    /// `Tags.parseLong("-")`.
    #[error("Just a sign, no value: {0}")]
    JustSign(String),
    /// More than 19 characters, or 20 with a sign.
    #[error("Value too long: {0}")]
    TooLong(String),
    /// The first character of `text` that is not a decimal digit.
    #[error("Invalid character '{ch}' in {text}")]
    InvalidCharacter { ch: char, text: String },
    /// Outside the range of a Java `long`.
    #[error("Overflow in {0}")]
    Overflow(String),
    /// `Double.parseDouble` rejected the (trimmed) text.
    #[error("For input string: \"{0}\"")]
    ForInputString(String),
    /// `Double.parseDouble` met a second `.` in the mantissa.
    #[error("multiple points")]
    MultiplePoints,
    /// `Double.parseDouble` of a string that is empty once trimmed.
    #[error("empty String")]
    EmptyDouble,
}

/// OpenTSDB's `Tags.parseLong`: an optional sign, then 1 to 19 decimal
/// digits, within the range of a Java `long`. Checks run in Java's order:
/// length first, then each character, then overflow.
pub fn parse_long(text: &str) -> Result<i64, NumberError> {
    match fast_long(text.as_bytes()) {
        Some(value) => Ok(value),
        None => exact_long(text),
    }
}

/// The common case: a sign and at most 18 ASCII digits, which cannot
/// overflow. Anything else takes the exact path.
fn fast_long(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(b - b'0');
    }
    Some(if negative { -value } else { value })
}

fn exact_long(s: &str) -> Result<i64, NumberError> {
    let len = java_length(s);
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return Err(NumberError::EmptyString);
    };
    let negative = first == '-';
    let digits = if first == '+' || first == '-' {
        if len == 1 {
            return Err(NumberError::JustSign(s.to_owned()));
        }
        if len > 20 {
            return Err(NumberError::TooLong(s.to_owned()));
        }
        chars
    } else {
        if len > 19 {
            return Err(NumberError::TooLong(s.to_owned()));
        }
        s.chars()
    };
    // At most 19 digits reach here, so the magnitude fits in a u64.
    let mut magnitude: u64 = 0;
    for ch in digits {
        let Some(digit) = ch.to_digit(10) else {
            return Err(NumberError::InvalidCharacter {
                ch,
                text: s.to_owned(),
            });
        };
        magnitude = magnitude * 10 + u64::from(digit);
    }
    let value = if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    };
    value.ok_or_else(|| NumberError::Overflow(s.to_owned()))
}

/// Java's `Integer.parseInt`: an optional sign and decimal digits within
/// the range of an `int`; `None` where Java throws. OpenTSDB parses HTTP
/// parameters such as `max`, `limit` and `back_scan` with it, and its
/// message never reaches a reply.
pub fn parse_int(text: &str) -> Option<i32> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `Tags.looksLikeInteger`: OpenTSDB sends a value without `.`, `e` or `E`
/// to `parseLong` and everything else to `Double.parseDouble`. That is why
/// `NaN`, `Infinity` and `0x1p3` are "invalid characters" while `0x1.8p1`
/// is a valid float.
pub fn looks_like_integer(text: &str) -> bool {
    !text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// Java's `Double.parseDouble`, correctly rounded like the JDK: decimal and
/// hexadecimal literals, an optional `f`/`F`/`d`/`D` suffix, `NaN` and
/// `Infinity`, and surrounding characters up to U+0020 trimmed away.
pub fn parse_double(text: &str) -> Result<f64, NumberError> {
    match fast_double(text) {
        Some(value) => Ok(value),
        None => exact_double(text),
    }
}

/// The common case: only digits, signs, points and exponent letters. Over
/// that alphabet Java's grammar and Rust's are the same language (Rust's
/// `inf`/`nan` need other letters), and both round to nearest, ties to
/// even; any failure takes the exact path for Java's message.
fn fast_double(text: &str) -> Option<f64> {
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    text.parse().ok()
}

fn exact_double(s: &str) -> Result<f64, NumberError> {
    let text = s.trim_matches(|c: char| c <= ' ');
    if text.is_empty() {
        return Err(NumberError::EmptyDouble);
    }
    let (negative, body) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let invalid = || NumberError::ForInputString(text.to_owned());
    let magnitude = if body.starts_with('N') {
        (body == "NaN").then_some(f64::NAN).ok_or_else(invalid)?
    } else if body.starts_with('I') {
        (body == "Infinity")
            .then_some(f64::INFINITY)
            .ok_or_else(invalid)?
    } else if body.starts_with("0x") || body.starts_with("0X") {
        return hexadecimal(text).ok_or_else(invalid);
    } else {
        return decimal(text, body);
    };
    Ok(if negative { -magnitude } else { magnitude })
}

/// `String.length()`: UTF-16 code units.
fn java_length(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.encode_utf16().count()
    }
}

/// The decimal branch of `parseDouble`. `text` is the trimmed input with
/// its sign, `body` the part after the sign.
fn decimal(text: &str, body: &str) -> Result<f64, NumberError> {
    let invalid = || NumberError::ForInputString(text.to_owned());
    // Java scans digits and points first and fails on the second point
    // before looking at anything else.
    let (rest, mantissa) = take_while::<_, _, ()>(|c: char| c.is_ascii_digit() || c == '.')(body)
        .map_err(|_| invalid())?;
    if mantissa.bytes().filter(|&b| b == b'.').count() > 1 {
        return Err(NumberError::MultiplePoints);
    }
    if !mantissa.bytes().any(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let (rest, _) = opt(exponent)(rest).map_err(|_| invalid())?;
    let (_, suffix) = type_suffix(rest).map_err(|_| invalid())?;
    let number = &text[..text.len() - usize::from(suffix.is_some())];
    // What passed the grammar above is also Rust's float grammar, and both
    // languages round to nearest, ties to even.
    number.parse::<f64>().map_err(|_| invalid())
}

fn exponent(input: &str) -> IResult<&str, &str> {
    recognize(tuple((one_of("eE"), opt(one_of("+-")), digit1)))(input)
}

/// Nothing, or exactly one Java type suffix, then the end.
fn type_suffix(input: &str) -> IResult<&str, Option<char>> {
    let (input, suffix) = opt(one_of("fFdD"))(input)?;
    let (input, _) = eof(input)?;
    Ok((input, suffix))
}

/// Java's hexadecimal literal, `[+-]?0[xX](h+\.?|h*\.h+)[pP][+-]?\d+[fFdD]?`,
/// matched against the whole trimmed text.
fn hexadecimal(text: &str) -> Option<f64> {
    let parsed: IResult<&str, _> = tuple((
        opt(one_of("+-")),
        tag_no_case("0x"),
        hex_digit0,
        opt(pair(one_char('.'), hex_digit0)),
        one_of("pP"),
        opt(one_of("+-")),
        digit1,
        type_suffix,
    ))(text);
    let (_, (sign, _, int, fraction, _, exp_sign, exp_digits, _)) = parsed.ok()?;
    let fraction = fraction.map_or("", |(_, f)| f);
    if int.is_empty() && fraction.is_empty() {
        return None;
    }
    // Beyond this the result is 0 or infinity anyway; saturating keeps the
    // exponent arithmetic below far from overflow.
    const EXP_LIMIT: i64 = 1 << 20;
    let exp = exp_digits.bytes().fold(0i64, |acc, b| {
        (acc * 10 + i64::from(b - b'0')).min(EXP_LIMIT)
    });
    let exp = if exp_sign == Some('-') { -exp } else { exp };
    let magnitude = hex_magnitude(int, fraction, exp);
    Some(if sign == Some('-') {
        -magnitude
    } else {
        magnitude
    })
}

/// `0x<int>.<fraction>p<exp>` rounded to the nearest double, ties to even,
/// through subnormals and up to infinity.
fn hex_magnitude(int: &str, fraction: &str, exp: i64) -> f64 {
    // Keep the leading 60+ significant bits; later digits only matter as a
    // "sticky" bit that breaks rounding ties.
    let mut mantissa: u64 = 0;
    let mut binary_exp = exp - 4 * fraction.len() as i64;
    let mut sticky = false;
    for digit in int
        .chars()
        .chain(fraction.chars())
        .filter_map(|c| c.to_digit(16))
    {
        if mantissa >> 60 == 0 {
            mantissa = mantissa << 4 | u64::from(digit);
        } else {
            sticky |= digit != 0;
            binary_exp += 4;
        }
    }
    if mantissa == 0 {
        return 0.0;
    }
    // Normalise to value = m · 2^e with m in [2^63, 2^64).
    let shift = mantissa.leading_zeros();
    let m = mantissa << shift;
    let top = binary_exp - i64::from(shift) + 63; // value in [2^top, 2^(top+1))
    if top > 1023 {
        return f64::INFINITY;
    }
    // Bits of m below the 53 a normal double keeps; more for subnormals.
    let dropped = 11 + (-1022 - top).max(0);
    if dropped > 65 {
        // Less than half the smallest subnormal.
        return 0.0;
    }
    let wide = u128::from(m);
    let mut kept = wide >> dropped;
    let remainder = wide & ((1u128 << dropped) - 1);
    let half = 1u128 << (dropped - 1);
    if remainder > half || (remainder == half && (sticky || kept & 1 == 1)) {
        kept += 1;
    }
    // `kept` carries the implicit bit, so a rounding carry into bit 53 (or
    // from the largest subnormal into the smallest normal) bumps the
    // exponent field by itself.
    let kept = kept as u64;
    let bits = if top < -1022 {
        kept
    } else {
        (((top + 1022) as u64) << 52) + kept
    };
    if bits >= f64::INFINITY.to_bits() {
        f64::INFINITY
    } else {
        f64::from_bits(bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long(s: &str) -> Result<i64, NumberError> {
        parse_long(s)
    }

    fn double(s: &str) -> Result<f64, NumberError> {
        parse_double(s)
    }

    fn long_err(s: &str) -> String {
        long(s).map_or_else(|e| e.to_string(), |v| format!("accepted {v}"))
    }

    fn double_err(s: &str) -> String {
        double(s).map_or_else(|e| e.to_string(), |v| format!("accepted {v}"))
    }

    #[test]
    fn parse_long_accepts_java_longs() {
        assert_eq!(long("42"), Ok(42));
        assert_eq!(long("+42"), Ok(42));
        assert_eq!(long("-42"), Ok(-42));
        assert_eq!(long("0042"), Ok(42));
        assert_eq!(long("-0"), Ok(0));
        assert_eq!(long("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(long("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(long("+9223372036854775807"), Ok(i64::MAX));
    }

    #[test]
    fn parse_long_messages_match_opentsdb() {
        assert_eq!(long_err(""), "Empty string");
        assert_eq!(long_err("-"), "Just a sign, no value: -");
        assert_eq!(long_err("+"), "Just a sign, no value: +");
        assert_eq!(
            long_err("12345678901234567890"),
            "Value too long: 12345678901234567890"
        );
        assert_eq!(
            long_err("+12345678901234567890"),
            "Value too long: +12345678901234567890"
        );
        assert_eq!(
            long_err("9223372036854775808"),
            "Overflow in 9223372036854775808"
        );
        assert_eq!(
            long_err("-9223372036854775809"),
            "Overflow in -9223372036854775809"
        );
        assert_eq!(
            long_err("9999999999999999999"),
            "Overflow in 9999999999999999999"
        );
        assert_eq!(long_err("NaN"), "Invalid character 'N' in NaN");
        assert_eq!(long_err("-nan"), "Invalid character 'n' in -nan");
        assert_eq!(long_err("+-5"), "Invalid character '-' in +-5");
        assert_eq!(long_err("0x1A"), "Invalid character 'x' in 0x1A");
        assert_eq!(long_err("42\t"), "Invalid character '\t' in 42\t");
        assert_eq!(long_err("4é"), "Invalid character 'é' in 4é");
        // The length check comes before the character check.
        assert_eq!(
            long_err("abcdefghijklmnopqrst"),
            "Value too long: abcdefghijklmnopqrst"
        );
    }

    /// The messages as query times quote them (`Invalid time: 1a. …`).
    #[test]
    fn java_long_parsing() {
        let parse_java_long = |s: &str| parse_long(s).map_err(|e| e.to_string());
        assert_eq!(parse_java_long("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_java_long("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(
            parse_java_long("9223372036854775808"),
            Err("Overflow in 9223372036854775808".into())
        );
        assert_eq!(
            parse_java_long("1a"),
            Err("Invalid character 'a' in 1a".into())
        );
        assert_eq!(parse_java_long("-"), Err("Just a sign, no value: -".into()));
    }

    #[test]
    fn parse_long_counts_length_in_utf16_units() {
        // 18 digits and one character outside the BMP: 19 chars, but 20
        // UTF-16 units, so Java's length check fires before the character
        // check.
        let text = "123456789012345678\u{1F600}";
        assert_eq!(long_err(text), format!("Value too long: {text}"));
        // With a sign, 21 units.
        let text = "+123456789012345678\u{1F600}";
        assert_eq!(long_err(text), format!("Value too long: {text}"));
    }

    #[test]
    fn java_int_rules() {
        let parse_java_int = parse_int;
        assert_eq!(parse_java_int("25"), Some(25));
        assert_eq!(parse_java_int("+7"), Some(7));
        assert_eq!(parse_java_int("-3"), Some(-3));
        assert_eq!(parse_java_int("2147483648"), None);
        assert_eq!(parse_java_int("1.5"), None);
        assert_eq!(parse_java_int(" 1"), None);
        assert_eq!(parse_java_int(""), None);
        assert_eq!(parse_java_int("+"), None);
    }

    #[test]
    fn fast_paths_agree_with_the_exact_parsers() {
        let longs = [
            "0",
            "-0",
            "+7",
            "42",
            "-123456789012345678",
            "999999999999999999",
            "0042",
        ];
        for text in longs {
            assert_eq!(
                fast_long(text.as_bytes()).map(Ok),
                Some(exact_long(text)),
                "{text}"
            );
        }
        let doubles = [
            "1.5",
            "-1.5",
            "+.5",
            "5.",
            "1e5",
            "1E-5",
            "1e+20",
            "0.1",
            "-0.0",
            "1e309",
            "123456789.987654321e-300",
        ];
        for text in doubles {
            assert_eq!(
                fast_double(text).map(Ok),
                Some(exact_double(text)),
                "{text}"
            );
        }
        for text in [
            "1.5.5", "1e", "e5", ".", "+-1", "1e5e5", "1.5f", "inf", "0x1p1",
        ] {
            assert_eq!(fast_double(text), None, "{text}");
        }
    }

    #[test]
    fn integer_or_float_is_decided_by_dot_and_e() {
        assert!(looks_like_integer("42"));
        assert!(looks_like_integer("NaN"));
        assert!(looks_like_integer("-Infinity"));
        assert!(looks_like_integer("0x1p3"));
        assert!(!looks_like_integer("1e3"));
        assert!(!looks_like_integer("0xEp1"));
        assert!(!looks_like_integer(".5"));
    }

    #[test]
    fn parse_double_accepts_every_java_form() {
        let cases: &[(&str, f64)] = &[
            ("42.5", 42.5),
            ("1.3E3", 1300.0),
            ("1e3", 1000.0),
            ("1e-05", 1e-5),
            ("1e+20", 1e20),
            (".5", 0.5),
            ("5.", 5.0),
            ("+.5e1", 5.0),
            ("1.e2", 100.0),
            ("1.5f", 1.5),
            ("1.5D", 1.5),
            ("1e3d", 1000.0),
            ("0x1.8p1", 3.0),
            ("-0x1.8p1", -3.0),
            ("0X.8P1", 1.0),
            ("0x1.p-1", 0.5),
            ("0xEp1", 28.0),
            ("0x1.8p1f", 3.0),
            ("1.5\t", 1.5),
            ("\u{1}1.5\r", 1.5),
            ("Infinity", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
            ("1e309", f64::INFINITY),
            ("-1e400", f64::NEG_INFINITY),
            ("1e-400", 0.0),
            ("1e99999999999999999999", f64::INFINITY),
            ("0.1", 0.1),
            ("000000000000000000000000000001.25", 1.25),
        ];
        for &(text, want) in cases {
            assert_eq!(double(text), Ok(want), "{text:?}");
        }
        assert!(double("NaN").is_ok_and(f64::is_nan));
        assert!(double("-0.0").is_ok_and(|d| d == 0.0 && d.is_sign_negative()));
    }

    #[test]
    fn parse_double_messages_match_java() {
        assert_eq!(double_err("1.5.5"), "multiple points");
        assert_eq!(double_err("..5"), "multiple points");
        assert_eq!(double_err("1.2.3e"), "multiple points");
        assert_eq!(double_err("1.2abc"), "For input string: \"1.2abc\"");
        assert_eq!(double_err("1e5.5"), "For input string: \"1e5.5\"");
        assert_eq!(double_err("1e"), "For input string: \"1e\"");
        assert_eq!(double_err("1e+"), "For input string: \"1e+\"");
        assert_eq!(double_err("."), "For input string: \".\"");
        assert_eq!(double_err("-"), "For input string: \"-\"");
        assert_eq!(double_err("1.5ff"), "For input string: \"1.5ff\"");
        assert_eq!(double_err("NaN."), "For input string: \"NaN.\"");
        assert_eq!(double_err("Infinity.0"), "For input string: \"Infinity.0\"");
        assert_eq!(double_err("inf.0"), "For input string: \"inf.0\"");
        assert_eq!(double_err("0x1.8"), "For input string: \"0x1.8\"");
        assert_eq!(double_err("0x.p1"), "For input string: \"0x.p1\"");
        assert_eq!(double_err("0x1.8.8p1"), "For input string: \"0x1.8.8p1\"");
        assert_eq!(double_err(" \t1.2x "), "For input string: \"1.2x\"");
        assert_eq!(double_err(" \t"), "empty String");
    }

    #[test]
    fn hex_floats_round_to_nearest_even() {
        assert_eq!(double("0x1p-1074"), Ok(f64::from_bits(1)));
        assert_eq!(double("0x1p-1075"), Ok(0.0));
        assert_eq!(double("0x1.0000000000001p-1075"), Ok(f64::from_bits(1)));
        assert_eq!(double("0x1.8p-1074"), Ok(f64::from_bits(2)));
        assert_eq!(double("0x1.fffffffffffffp1023"), Ok(f64::MAX));
        assert_eq!(double("0x1.fffffffffffff8p1023"), Ok(f64::INFINITY));
        assert_eq!(double("0x1p1024"), Ok(f64::INFINITY));
        assert_eq!(double("0x1.0000000000000800p0"), Ok(1.0));
        assert_eq!(double("0x1.0000000000000801p0"), Ok(1.0 + f64::EPSILON));
        assert_eq!(
            double("0x1.0000000000001800p0"),
            Ok(1.0 + 2.0 * f64::EPSILON)
        );
        assert_eq!(
            double("0x0.0000000000000000000000000001p0"),
            Ok(2f64.powi(-112))
        );
        assert_eq!(double("0x0p99999999999"), Ok(0.0));
        assert_eq!(double("0x1p-99999999999"), Ok(0.0));
        assert_eq!(double("0xfffffffffffffffffffp0"), Ok(2f64.powi(76)));
        assert_eq!(double("0x.000fffffffffffff8p-1010"), Ok(f64::MIN_POSITIVE));
    }
}
