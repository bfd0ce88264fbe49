//! Property tests: generated valid `put` lines parse to the point they were
//! built from and survive `to_line` → `parse_line`; arbitrary and
//! near-valid lines keep the fuzz invariants.

use proptest::prelude::*;

use super::fuzzing::check_parse_invariants;
use super::*;
use crate::model::Value;

/// A name from the allowed set, ASCII or not.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9._/-]{1,16}",
        1 => "[a-zéüßЯжλ北京温度]{1,6}",
    ]
}

/// Timestamp text and the milliseconds it means.
fn timestamp() -> impl Strategy<Value = (String, i64)> {
    prop_oneof![
        (1i64..=0xFFFF_FFFF).prop_map(|s| (s.to_string(), s * 1000)),
        (0x1_0000_0000i64..=9_999_999_999_999).prop_map(|ms| (ms.to_string(), ms)),
        (1i64..=0xFFFF_FFFF, "[0-9]{0,6}").prop_map(|(s, frac)| {
            let millis = format!("{frac:0<3}")[..3].parse::<i64>().unwrap_or(0);
            (format!("{s}.{frac}"), s * 1000 + millis)
        }),
    ]
}

/// Value text in one of the spellings Java accepts, and its value.
fn value() -> impl Strategy<Value = (String, Value)> {
    let int = any::<i64>().prop_flat_map(|v| {
        let plain = v.to_string();
        let plus = if v >= 0 {
            format!("+{v}")
        } else {
            plain.clone()
        };
        prop_oneof![Just(plain), Just(plus)].prop_map(move |text| (text, Value::Int(v)))
    });
    let float = any::<f64>()
        .prop_filter("finite", |f| f.is_finite())
        .prop_flat_map(|f| {
            prop_oneof![
                Just(format!("{f:?}")),
                Just(format!("{f:e}")),
                Just(format!("{f:E}d")),
                Just(format!("{f:?}f"))
            ]
            .prop_map(move |text| (text, Value::Float(f)))
        });
    prop_oneof![int, float]
}

/// Distinct-key tags, at most `max`.
fn tags(max: usize) -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((name(), name()), 0..=max).prop_map(|mut tags| {
        let mut seen = std::collections::HashSet::new();
        tags.retain(|(k, _)| seen.insert(k.clone()));
        tags
    })
}

fn spaces(min: usize) -> impl Strategy<Value = String> {
    (min..=min + 2).prop_map(|n| " ".repeat(n))
}

/// A valid line with lenient spacing, and the point it must produce.
fn put_line() -> impl Strategy<Value = (String, String, i64, Value, Vec<(String, String)>)> {
    (
        name(),
        timestamp(),
        value(),
        tags(8),
        proptest::collection::vec(spaces(1), 12),
        spaces(0),
        spaces(0),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(metric, (ts_text, ms), (value_text, value), tags, gaps, lead, trail, repeat, cr)| {
                let mut words = vec![metric.clone(), ts_text, value_text];
                words.extend(tags.iter().map(|(k, v)| format!("{k}={v}")));
                if repeat {
                    // An identical repeated tag is folded into the first.
                    if let Some((k, v)) = tags.first() {
                        words.push(format!("{k}={v}"));
                    }
                }
                let mut line = format!("{lead}put");
                for (word, gap) in words.iter().zip(gaps.iter().cycle()) {
                    line.push_str(gap);
                    line.push_str(word);
                }
                line.push_str(&trail);
                if cr {
                    line.push('\r');
                }
                (line, metric, ms, value, tags)
            },
        )
}

/// Tokens that sit on the edges of the grammar, for near-valid lines.
fn tricky_word() -> impl Strategy<Value = String> {
    prop_oneof![
        name(),
        Just("put".to_owned()),
        Just("=".to_owned()),
        Just("a=b=c".to_owned()),
        Just("1e309".to_owned()),
        Just("-nan".to_owned()),
        Just("0x1.8p1".to_owned()),
        Just("1.5.5".to_owned()),
        Just("1356998400.5".to_owned()),
        Just("99999999999999".to_owned()),
        Just("9223372036854775808".to_owned()),
        Just("é:ü".to_owned()),
        "[0-9.eE+-]{1,22}",
        "[a-z]{1,3}=[a-z:@]{1,3}",
        "\\PC{1,6}",
    ]
}

proptest! {
    #[test]
    fn valid_lines_parse_to_their_point_and_round_trip(
        (line, metric, ms, value, tags) in put_line()
    ) {
        let opts = ParseOptions::default();
        let parsed = parse_line(line.as_bytes(), &opts);
        let Ok(Command::Put(put)) = parsed else {
            return Err(TestCaseError::fail(format!("{line:?} gave {parsed:?}")));
        };
        prop_assert_eq!(put.metric, metric.as_str());
        prop_assert_eq!(put.timestamp_ms, ms);
        prop_assert_eq!(put.value, value);
        prop_assert_eq!(put.value.is_int(), value.is_int());
        let want_tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        prop_assert_eq!(&put.tags, &want_tags);
        let again = put.to_line();
        prop_assert_eq!(parse_line(again.as_bytes(), &opts), Ok(Command::Put(put.clone())));
    }

    #[test]
    fn arbitrary_bytes_keep_the_invariants(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_parse_invariants(&data);
    }

    #[test]
    fn near_valid_lines_keep_the_invariants(
        command in prop_oneof![Just("put"), Just("rollup"), Just("put"), Just("histogram")],
        words in proptest::collection::vec(tricky_word(), 0..12),
        cr in any::<bool>(),
    ) {
        let mut line = format!("{command} {}", words.join(" "));
        if cr {
            line.push('\r');
        }
        check_parse_invariants(line.as_bytes());
    }
}
