//! Java's `Double.toString`: the text of every double rtsd writes.
//!
//! OpenTSDB writes every double through Java's `Double.toString`, so clients
//! (Grafana, scripts diffing responses) see `30.0`, `0.1`, `1.0E7` and
//! `1.23456789E8`. The HTTP layer and the query serializers call
//! [`write_value`] / [`write_java_double`] to reproduce that text exactly.
//!
//! The digits come from Rust's shortest round-trip formatting (`{:e}`); this
//! module only rearranges them into Java's layout:
//!
//! - `1e-3 <= |v| < 1e7`: plain decimal with at least one fractional digit
//!   (`30.0`, `0.001`, `9999999.0`);
//! - otherwise "computerized scientific notation": one integer digit, at
//!   least one fractional digit, `E`, and the exponent with a `-` only when
//!   negative (`1.0E7`, `1.0E-4`, `4.9E-324`);
//! - zeros keep their sign (`0.0`, `-0.0`); NaN and infinities give `NaN`,
//!   `Infinity` and `-Infinity`, as Java does. Callers never put those in
//!   JSON (missing values become `null`), the text exists for completeness.
//!
//! We follow the JDK 19+ specification (JDK-4511638 fixed), which is
//! shortest-digits-closest-to-the-value, plus one rule Rust does not have:
//! when a single digit suffices, Java still picks the closest decimal of one
//! *or two* digits, so `Double.MIN_VALUE` is `4.9E-324`, not `5.0E-324`.
//! That can only change results for subnormals: a normal double has 53
//! significant bits, so a one-digit decimal that reads back as it is always
//! within 1e-15 of it relatively, far closer than any other two-digit
//! decimal. The Java 8 runtime OpenTSDB 2.4 usually runs on sometimes
//! printed longer, non-shortest strings (`9.999999999999999E22` for 1e23);
//! we do not reproduce that bug.

use std::fmt::Write as _;

use crate::model::Value;

/// Java's `Double.toString(v)`.
pub fn java_double(v: f64) -> String {
    let mut out = String::with_capacity(24);
    write_java_double(&mut out, v);
    out
}

/// Appends Java's `Double.toString(v)` to `out`.
pub fn write_java_double(out: &mut String, v: f64) {
    if !v.is_finite() {
        out.push_str(non_finite_text(v));
        return;
    }
    if v.is_sign_negative() {
        out.push('-');
    }
    let m = v.abs();
    if m == 0.0 {
        out.push_str("0.0");
        return;
    }
    let d = java_digits(m);
    let digits = &d.digits[..d.len];
    if (-3..7).contains(&d.exp) {
        write_plain(out, digits, d.exp);
    } else {
        write_scientific(out, digits, d.exp);
    }
}

/// `Double.toString` (or `Float.toString`) of a NaN or an infinity, the
/// only spellings those can have: `NaN`, `Infinity`, `-Infinity`.
pub fn non_finite_text(d: f64) -> &'static str {
    if d.is_nan() {
        "NaN"
    } else if d > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// Appends a stored value as OpenTSDB prints it: integers as JSON integers,
/// floats through [`write_java_double`].
pub fn write_value(out: &mut String, v: Value) {
    match v {
        Value::Int(i) => out.push_str(itoa::Buffer::new().format(i)),
        Value::Float(f) => write_java_double(out, f),
    }
}

/// The decimal Java chooses for a finite positive double: significant digits
/// `d1 d2 … dn` (no trailing zeros beyond the first) meaning
/// `d1.d2…dn × 10^exp`.
struct Decimal {
    /// ASCII digits; 17 is the most a shortest f64 representation needs.
    digits: [u8; 17],
    len: usize,
    exp: i32,
}

fn java_digits(m: f64) -> Decimal {
    if let Some(short) = short_decimal(m) {
        return short;
    }
    let shortest = scientific(m, None);
    if shortest.len != 1 || m >= f64::MIN_POSITIVE {
        return shortest;
    }
    // Java's one-or-two-digit rule: the closest two-digit decimal wins when
    // it still reads back as `m`. It is never farther from `m` than the
    // one-digit candidate (that one is a two-digit decimal ending in 0), but
    // it may fall outside the rounding interval on its narrow side.
    let two = scientific(m, Some(1));
    if two.len == 2 && reads_back(&two, m) {
        two
    } else {
        shortest
    }
}

/// Exact powers of ten, as doubles.
const POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The shortest decimal of `m` (finite, positive) when it has few digits
/// (most stored values: `42`, `99.9`, `0.25`), found without `{:e}`'s
/// formatting machinery: `n × 10^-k` for the least `k` at which `n =
/// round(m × 10^k)` reads back as `m` (`n / 10^k == m`: both are exact, so
/// the division rounds as parsing the decimal would). While `m × 10^k <
/// 2^50`, the product is off by at most 1/8 and the decimals that read
/// back as `m` span less than 1/4 of a unit, so `n` is the only candidate
/// with `k` fractional digits; one with fewer significant digits would
/// have been found at a smaller `k`. `None` otherwise (and for subnormals,
/// whose `n` is 0): [`scientific`] decides.
fn short_decimal(m: f64) -> Option<Decimal> {
    const SCALED_LIMIT: f64 = (1u64 << 50) as f64;
    for (k, &p) in POWERS_OF_TEN.iter().enumerate() {
        let scaled = m * p;
        if scaled >= SCALED_LIMIT {
            return None;
        }
        let n = scaled.round();
        if n == 0.0 || n / p != m {
            continue;
        }
        let mut buf = itoa::Buffer::new();
        let text = buf.format(n as u64).as_bytes();
        let mut d = Decimal {
            digits: [b'0'; 17],
            len: text.len(),
            // Fewer than 17 digits: `n < 2^50`.
            exp: text.len() as i32 - 1 - k as i32,
        };
        d.digits[..text.len()].copy_from_slice(text);
        while d.len > 1 && d.digits[d.len - 1] == b'0' {
            d.len -= 1;
        }
        return Some(d);
    }
    None
}

/// Formats `m` (finite, positive) with `{:e}` or `{:.p$e}` into a
/// [`Decimal`], dropping trailing zero digits.
fn scientific(m: f64, precision: Option<usize>) -> Decimal {
    let mut buf = StackBuf::default();
    // StackBuf holds the longest f64 rendering ("1.7976931348623157e308"),
    // and precision is at most 1, so this cannot fail.
    let _ = match precision {
        None => write!(buf, "{m:e}"),
        Some(p) => write!(buf, "{m:.p$e}"),
    };
    let text = &buf.bytes[..buf.len];
    let mut d = Decimal {
        digits: [b'0'; 17],
        len: 0,
        exp: 0,
    };
    let mut exp_text: &[u8] = &[];
    for (i, &b) in text.iter().enumerate() {
        match b {
            b'0'..=b'9' if d.len < d.digits.len() => {
                d.digits[d.len] = b;
                d.len += 1;
            }
            b'e' => {
                exp_text = &text[i + 1..];
                break;
            }
            _ => {}
        }
    }
    while d.len > 1 && d.digits[d.len - 1] == b'0' {
        d.len -= 1;
    }
    // `{:e}` always writes an exponent, e.g. `e7` or `e-324`.
    d.exp = std::str::from_utf8(exp_text)
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    d
}

/// Whether the decimal parses back to exactly `m`.
fn reads_back(d: &Decimal, m: f64) -> bool {
    let mut buf = StackBuf::default();
    for (i, &b) in d.digits[..d.len].iter().enumerate() {
        if i == 1 {
            buf.push(b'.');
        }
        buf.push(b);
    }
    let _ = write!(buf, "e{}", d.exp);
    std::str::from_utf8(&buf.bytes[..buf.len])
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        == Some(m)
}

/// `digits × 10^exp` as `int.frac`, with `-3 <= exp < 7`.
fn write_plain(out: &mut String, digits: &[u8], exp: i32) {
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        push_ascii(out, digits);
        return;
    }
    let int_len = exp as usize + 1;
    if digits.len() > int_len {
        push_ascii(out, &digits[..int_len]);
        out.push('.');
        push_ascii(out, &digits[int_len..]);
    } else {
        push_ascii(out, digits);
        for _ in digits.len()..int_len {
            out.push('0');
        }
        out.push_str(".0");
    }
}

/// `d.ddd E exp`, with at least one fractional digit.
fn write_scientific(out: &mut String, digits: &[u8], exp: i32) {
    push_ascii(out, &digits[..1]);
    out.push('.');
    if digits.len() > 1 {
        push_ascii(out, &digits[1..]);
    } else {
        out.push('0');
    }
    let _ = write!(out, "E{exp}");
}

fn push_ascii(out: &mut String, digits: &[u8]) {
    out.extend(digits.iter().map(|&b| char::from(b)));
}

/// A fixed buffer for `write!`, so formatting a double never allocates.
#[derive(Default)]
struct StackBuf {
    bytes: [u8; 32],
    len: usize,
}

impl StackBuf {
    fn push(&mut self, b: u8) {
        if self.len < self.bytes.len() {
            self.bytes[self.len] = b;
            self.len += 1;
        }
    }
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs of `Double.toString` on JDK 19+.
    const JAVA: &[(f64, &str)] = &[
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (1.0, "1.0"),
        (-1.0, "-1.0"),
        (30.0, "30.0"),
        (1.5, "1.5"),
        (0.1, "0.1"),
        (0.3, "0.3"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1.0 / 6.0, "0.16666666666666666"),
        (100.0, "100.0"),
        (42.5, "42.5"),
        (15.2, "15.2"),
        (15.2f32 as f64, "15.199999809265137"),
        (0.001, "0.001"),
        (0.002, "0.002"),
        (0.00123, "0.00123"),
        (0.000999, "9.99E-4"),
        (1.0e-4, "1.0E-4"),
        (1.2345e-5, "1.2345E-5"),
        (1234567.0, "1234567.0"),
        (1234567.125, "1234567.125"),
        (9999999.0, "9999999.0"),
        (9999999.999, "9999999.999"),
        (1.0e7, "1.0E7"),
        (-1.0e7, "-1.0E7"),
        (12345678.9, "1.23456789E7"),
        (123456789.0, "1.23456789E8"),
        (1.0e23, "1.0E23"),
        (1.0e39, "1.0E39"),
        (9.223372036854776e18, "9.223372036854776E18"),
        (f64::MAX, "1.7976931348623157E308"),
        (f64::MIN, "-1.7976931348623157E308"),
        (f64::MIN_POSITIVE, "2.2250738585072014E-308"),
        (4.9e-324, "4.9E-324"),
        (9.9e-324, "9.9E-324"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "Infinity"),
        (f64::NEG_INFINITY, "-Infinity"),
    ];

    /// The short path gives `{:e}`'s digits wherever it answers: on
    /// decimals of up to 16 digits at every scale, on their neighbours one
    /// ulp away, and on spread-out bit patterns.
    #[test]
    fn short_decimals_are_the_shortest_round_trip_digits() {
        let mut values = Vec::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 10_000_000_000_000_000) >> (x % 48);
            let v = digits as f64 / 10f64.powi((x >> 56) as i32 % 24 - 4);
            values.extend([
                v,
                f64::from_bits(v.to_bits().saturating_add(1)),
                f64::from_bits(v.to_bits().saturating_sub(1)),
            ]);
            values.push(f64::from_bits(x >> 1));
        }
        let mut short = 0;
        for m in values.into_iter().filter(|m| m.is_finite() && *m > 0.0) {
            if let Some(d) = short_decimal(m) {
                let want = scientific(m, None);
                let digits = |d: &Decimal| (d.digits[..d.len].to_vec(), d.exp);
                assert_eq!(digits(&d), digits(&want), "{m:e}");
                short += 1;
            }
        }
        assert!(short > 10_000, "{short}");
    }

    #[test]
    fn matches_java_double_to_string() {
        for &(v, want) in JAVA {
            assert_eq!(java_double(v), want, "formatting {v:e}");
        }
    }

    #[test]
    fn appends_without_clearing() {
        let mut out = String::from("[");
        write_java_double(&mut out, 2.5);
        out.push(',');
        write_value(&mut out, Value::Int(-42));
        out.push(',');
        write_value(&mut out, Value::Float(30.0));
        out.push(',');
        write_value(&mut out, Value::Int(i64::MIN));
        assert_eq!(out, "[2.5,-42,30.0,-9223372036854775808");
    }

    #[test]
    fn output_reads_back_exactly() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            // xorshift: cheap, deterministic coverage of all exponents.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            let s = java_double(v);
            let back: f64 = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(back.to_bits(), v.to_bits(), "{s}");
            assert!(s.contains('.'), "{s}");
        }
    }
}
