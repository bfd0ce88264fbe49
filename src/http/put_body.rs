//! The body of `/api/put`: one JSON object or an array of them, read the
//! way OpenTSDB's Jackson binding of `IncomingDataPoint` reads it, and each
//! point validated the way `PutDataPointRpc` does.
//!
//! Binding: `metric`, `value` and tag values are Java strings, so a JSON
//! number or boolean becomes its literal text (`"value":42.50` is parsed
//! from `42.50`: integers stay integers, exactly like telnet); `timestamp`
//! is a Java long (a fractional number is truncated, a numeric string
//! parsed, `null` is 0); unknown fields are ignored; a field of the wrong
//! JSON type fails the whole body, and so does a bare `NaN` token (Jackson
//! takes it, but it is not JSON). Duplicate tag keys: the last one wins, as
//! in a `HashMap`. `tsuid` is ignored, as OpenTSDB's put ignores it.
//!
//! Validation, first failure wins: `Metric name was empty`, `Invalid
//! timestamp` (≤ 0), `Empty value`, `Missing tags` (only with
//! `require_tags`: rtsd accepts untagged points like its telnet side),
//! then the telnet checks through [`super::put_check`] — a value that is not a
//! number gives `Unable to parse value to a number`, every other failure
//! its `IllegalArgumentException` text (`Too many tags: …`, `Invalid
//! metric name (…)`, `value is NaN or Infinite: …`, `bad timestamp=…`).
//! A name holding a space or CR, or a tag side holding `=` or empty, cannot
//! travel in a line and is refused with its character error before the
//! telnet checks; OpenTSDB would find it last, so only a point with several
//! faults can be reported differently.

use std::borrow::Cow;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::put_check::{self, breaks_word, fits_tag};
use super::{ApiError, TagsJson};
use crate::model::Sample;
use crate::protocol::{NameRole, ParseOptions, PutError, SeriesLimit};

/// One point of the body, fields coerced to their Java types.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingPoint<'a> {
    pub metric: Option<Cow<'a, str>>,
    pub timestamp: i64,
    pub value: Option<Cow<'a, str>>,
    /// In body order, distinct keys.
    pub tags: Option<Vec<(Cow<'a, str>, Cow<'a, str>)>>,
}

/// Why one point was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The `error` text of `?details`.
    pub message: String,
    /// The stats label it is counted under.
    pub kind: &'static str,
}

impl Rejection {
    fn new(message: impl Into<String>, kind: &'static str) -> Self {
        Rejection {
            message: message.into(),
            kind,
        }
    }
}

/// Parses a whole body; errors are OpenTSDB's whole-request 400s.
pub fn parse_body(bytes: &[u8]) -> Result<Vec<IncomingPoint<'_>>, ApiError> {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Err(ApiError::bad_request("Missing request content"));
    };
    let raw: Vec<RawPoint<'_>> = match bytes[start] {
        b'{' => vec![serde_json::from_slice(bytes).map_err(ApiError::bad_json)?],
        b'[' => serde_json::from_slice(bytes).map_err(ApiError::bad_json)?,
        _ => {
            return Err(ApiError::bad_request(
                "The JSON must start as an object or an array",
            ))
        }
    };
    if raw.is_empty() {
        return Err(ApiError::bad_request("No datapoints found in content"));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, p)| {
            p.coerce()
                .map_err(|e| ApiError::bad_json(format!("data point {i}: {e}")))
        })
        .collect()
}

/// A point as it appears in JSON, before coercion.
#[derive(Deserialize)]
struct RawPoint<'a> {
    #[serde(borrow, default)]
    metric: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tags: Option<RawTags<'a>>,
}

impl<'a> RawPoint<'a> {
    fn coerce(self) -> Result<IncomingPoint<'a>, String> {
        let field = |name: &str, raw: Option<&'a RawValue>| match raw {
            None => Ok(None),
            Some(r) => text(r).map_err(|e| format!("field {name:?}: {e}")),
        };
        let tags = match self.tags {
            None => None,
            Some(RawTags(pairs)) => {
                let mut out: Vec<(Cow<'a, str>, Cow<'a, str>)> = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let v = text(v)
                        .map_err(|e| format!("tag {k:?}: {e}"))?
                        // A null value reads as an empty one, refused as such.
                        .unwrap_or_default();
                    match out.iter_mut().find(|(key, _)| *key == k) {
                        Some(slot) => slot.1 = v,
                        None => out.push((k, v)),
                    }
                }
                Some(out)
            }
        };
        Ok(IncomingPoint {
            metric: field("metric", self.metric)?,
            timestamp: match self.timestamp {
                None => 0,
                Some(r) => timestamp(r).map_err(|e| format!("field \"timestamp\": {e}"))?,
            },
            value: field("value", self.value)?,
            tags,
        })
    }
}

/// A JSON scalar as the Java string Jackson makes of it; `null` is `None`.
fn text(raw: &RawValue) -> Result<Option<Cow<'_, str>>, String> {
    let s = raw.get();
    match s.as_bytes().first() {
        Some(b'"') => {
            // Borrow unless escapes force a copy.
            match serde_json::from_str::<&str>(s) {
                Ok(t) => Ok(Some(Cow::Borrowed(t))),
                Err(_) => serde_json::from_str::<String>(s)
                    .map(|t| Some(Cow::Owned(t)))
                    .map_err(|e| e.to_string()),
            }
        }
        Some(b'n') => Ok(None),
        Some(b'{' | b'[') | None => Err(format!("expected a string or a number, found {s}")),
        // Numbers and booleans: their literal text.
        Some(_) => Ok(Some(Cow::Borrowed(s))),
    }
}

/// Jackson's reading of a JSON value as a Java `long`.
fn timestamp(raw: &RawValue) -> Result<i64, String> {
    let s = raw.get();
    let out_of_range = || format!("{s} is out of range of a long");
    match s.as_bytes().first() {
        Some(b'n') => Ok(0),
        Some(b'"') => {
            let t: String = serde_json::from_str(s).map_err(|e| e.to_string())?;
            let t = t.trim();
            if t.is_empty() {
                Ok(0)
            } else {
                t.parse()
                    .map_err(|_| format!("{s} is not a valid long value"))
            }
        }
        Some(b'-' | b'0'..=b'9') if s.contains(['.', 'e', 'E']) => {
            let f: f64 = s.parse().map_err(|_| out_of_range())?;
            // Truncated toward zero, as Jackson coerces a float to a long.
            if f.is_finite() && f.abs() < 9.2e18 {
                Ok(f as i64)
            } else {
                Err(out_of_range())
            }
        }
        Some(b'-' | b'0'..=b'9') => s.parse().map_err(|_| out_of_range()),
        _ => Err(format!("expected a number, found {s}")),
    }
}

/// The `tags` object, keys in body order.
struct RawTags<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for RawTags<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TagsVisitor;
        impl<'de> Visitor<'de> for TagsVisitor {
            type Value = RawTags<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of tag names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut pairs = Vec::new();
                while let Some(Key(k)) = map.next_key()? {
                    pairs.push((k, map.next_value()?));
                }
                Ok(RawTags(pairs))
            }
        }
        d.deserialize_map(TagsVisitor)
    }
}

/// An object key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl IncomingPoint<'_> {
    /// OpenTSDB's per-point checks; a valid point becomes a sample.
    pub fn validate(&self, opts: &ParseOptions) -> Result<Sample, Rejection> {
        let metric = self.metric.as_deref().unwrap_or("");
        if metric.is_empty() {
            return Err(Rejection::new("Metric name was empty", "empty_metric"));
        }
        if self.timestamp <= 0 {
            return Err(Rejection::new("Invalid timestamp", "invalid_timestamp"));
        }
        let value = self.value.as_deref().unwrap_or("");
        if value.is_empty() {
            return Err(Rejection::new("Empty value", "empty_value"));
        }
        let tags: Vec<(&str, &str)> = self
            .tags
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        if tags.is_empty() && opts.require_tags {
            return Err(Rejection::new("Missing tags", "missing_tags"));
        }
        let value = line_value(value).ok_or_else(unparsable)?;
        if let Some(message) = untravelled_name(metric, &tags, opts) {
            return Err(Rejection::new(message, "illegal_character"));
        }
        put_check::check_point(metric, self.timestamp, value, &tags, opts).map_err(|e| {
            let kind = kind_of(&e);
            match e {
                // OpenTSDB's `NumberFormatException`s.
                PutError::InvalidValue(_)
                | PutError::NonFiniteToken(_)
                | PutError::TimestampText(_) => Rejection {
                    kind,
                    ..unparsable()
                },
                other => Rejection::new(put_check::message(&other), kind),
            }
        })
    }

    /// The `datapoint` of a `?details` error: OpenTSDB's serialisation of
    /// the point it parsed, nulls left out.
    pub fn echo(&self) -> String {
        #[derive(Serialize)]
        struct Echo<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            metric: Option<&'a str>,
            timestamp: i64,
            #[serde(skip_serializing_if = "Option::is_none")]
            value: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            tags: Option<TagsJson<'a>>,
        }
        let echo = Echo {
            metric: self.metric.as_deref(),
            timestamp: self.timestamp,
            value: self.value.as_deref(),
            tags: self
                .tags
                .as_ref()
                .map(|t| TagsJson(t.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect())),
        };
        // Strings and integers only: serialising cannot fail.
        serde_json::to_string(&echo).unwrap_or_default()
    }
}

impl Rejection {
    /// A point of a new series that a cardinality limit refuses.
    pub fn too_many_series(limit: SeriesLimit) -> Rejection {
        let e = PutError::TooManySeries(limit);
        Rejection::new(put_check::message(&e), kind_of(&e))
    }
}

fn unparsable() -> Rejection {
    Rejection::new("Unable to parse value to a number", "invalid_value")
}

/// The stats label of a telnet check failure, the one the telnet side
/// counts it under.
fn kind_of(e: &PutError) -> &'static str {
    crate::protocol::LineError::Rejected {
        command: crate::protocol::DataCommand::Put,
        error: e.clone(),
    }
    .kind()
}

/// The value as the line must carry it. OpenTSDB's `Double.parseDouble`
/// trims whitespace (characters up to U+0020) around a float, which a line
/// word cannot hold; `Tags.parseLong` refuses any. `None`: unparsable.
fn line_value(value: &str) -> Option<&str> {
    if !value.contains(breaks_word) {
        return Some(value);
    }
    let looks_like_integer = !value.contains(['.', 'e', 'E']);
    let trimmed = value.trim_matches(|c: char| c <= ' ');
    (!looks_like_integer && !trimmed.is_empty() && !trimmed.contains(breaks_word))
        .then_some(trimmed)
}

/// The character error of the first name a line cannot carry, checked
/// metric first, then each tag key before its value.
fn untravelled_name(metric: &str, tags: &[(&str, &str)], opts: &ParseOptions) -> Option<String> {
    if metric.contains(breaks_word) {
        return put_check::name_error(NameRole::Metric, metric, opts);
    }
    tags.iter().find_map(|&(k, v)| {
        let key_error = if fits_tag(k) {
            None
        } else {
            let role = NameRole::TagKey {
                value: v.to_string(),
            };
            put_check::name_error(role, k, opts)
        };
        key_error.or_else(|| {
            let role = NameRole::TagValue { key: k.to_string() };
            (!fits_tag(v))
                .then(|| put_check::name_error(role, v, opts))
                .flatten()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataPoint, SeriesKey, Value};

    fn one(json: &str) -> IncomingPoint<'_> {
        let mut v = parse_body(json.as_bytes()).unwrap();
        assert_eq!(v.len(), 1);
        v.remove(0)
    }

    fn check(json: &str) -> Result<Sample, Rejection> {
        one(json).validate(&ParseOptions::default())
    }

    fn error(json: &str) -> String {
        check(json).unwrap_err().message
    }

    #[test]
    fn whole_body_errors() {
        let msg = |b: &str| parse_body(b.as_bytes()).unwrap_err().message;
        assert_eq!(msg(""), "Missing request content");
        assert_eq!(msg(" \n"), "Missing request content");
        assert_eq!(msg("[]"), "No datapoints found in content");
        assert_eq!(
            msg("put m 1 1"),
            "The JSON must start as an object or an array"
        );
        assert_eq!(msg("[{"), "Unable to parse the given JSON");
        assert_eq!(msg(r#"{"metric":{}}"#), "Unable to parse the given JSON");
        assert_eq!(msg(r#"{"tags":"host"}"#), "Unable to parse the given JSON");
        assert_eq!(
            msg(r#"{"timestamp":"soon"}"#),
            "Unable to parse the given JSON"
        );
    }

    #[test]
    fn telegraf_body_with_newlines_parses() {
        let body = "[{\"metric\":\"a\",\"timestamp\":1,\"value\":1,\"tags\":{\"h\":\"x\"}}\n,{\"metric\":\"b\",\"timestamp\":2,\"value\":2.5,\"tags\":{}}\n]\n";
        let points = parse_body(body.as_bytes()).unwrap();
        assert_eq!(points.len(), 2);
        assert_eq!(points[1].value.as_deref(), Some("2.5"));
    }

    #[test]
    fn scalars_are_coerced_like_jackson() {
        let p = one(
            r#"{"metric":"m","timestamp":"1700000000","value":42.50,"tags":{"cpu":0,"h":"a\u0062"},"x":[1]}"#,
        );
        assert_eq!(p.timestamp, 1_700_000_000);
        assert_eq!(p.value.as_deref(), Some("42.50"));
        let tags = p.tags.clone().unwrap();
        assert_eq!(tags[0], (Cow::Borrowed("cpu"), Cow::Borrowed("0")));
        assert_eq!(tags[1].1, "ab");
        assert_eq!(one(r#"{"timestamp":1.7e9}"#).timestamp, 1_700_000_000);
        assert_eq!(one(r#"{"timestamp":null}"#).timestamp, 0);
        assert_eq!(one(r#"{"value":true}"#).value.as_deref(), Some("true"));
        let dup = one(r#"{"tags":{"h":"a","h":"b"}}"#).tags.unwrap();
        assert_eq!(dup, vec![(Cow::Borrowed("h"), Cow::Borrowed("b"))]);
    }

    #[test]
    fn valid_points_become_samples_and_ints_stay_ints() {
        let s =
            check(r#"{"metric":"sys.cpu","timestamp":1700000000,"value":42,"tags":{"host":"a"}}"#)
                .unwrap();
        assert_eq!(s.series, SeriesKey::new("sys.cpu", [("host", "a")]));
        assert_eq!(
            s.point,
            DataPoint {
                timestamp_ms: 1_700_000_000_000,
                value: Value::Int(42)
            }
        );
        let s = check(r#"{"metric":"m","timestamp":1700000000123,"value":"1.5"}"#).unwrap();
        assert_eq!(
            s.point,
            DataPoint {
                timestamp_ms: 1_700_000_000_123,
                value: Value::Float(1.5)
            }
        );
        let s = check(r#"{"metric":"m","timestamp":1,"value":" 2.5 "}"#).unwrap();
        assert_eq!(s.point.value, Value::Float(2.5));
    }

    #[test]
    fn per_point_errors_use_opentsdb_texts_in_order() {
        assert_eq!(
            error(r#"{"timestamp":1,"value":1}"#),
            "Metric name was empty"
        );
        assert_eq!(
            error(r#"{"metric":"","timestamp":1,"value":1}"#),
            "Metric name was empty"
        );
        assert_eq!(error(r#"{"metric":"m","value":1}"#), "Invalid timestamp");
        assert_eq!(
            error(r#"{"metric":"m","timestamp":-5,"value":1}"#),
            "Invalid timestamp"
        );
        assert_eq!(
            error(r#"{"metric":"m","timestamp":1,"value":""}"#),
            "Empty value"
        );
        assert_eq!(error(r#"{"metric":"m","timestamp":1}"#), "Empty value");
        for bad in ["abc", "NaN", "1 2", "18446744073709551615", "1.5.5", "true"] {
            let body = format!(r#"{{"metric":"m","timestamp":1,"value":"{bad}"}}"#);
            assert_eq!(error(&body), "Unable to parse value to a number", "{bad}");
        }
        assert_eq!(
            error(r#"{"metric":"m","timestamp":1,"value":1e309}"#),
            "value is NaN or Infinite: Infinity for metric=m timestamp=1"
        );
        assert_eq!(
            error(r#"{"metric":"m","timestamp":99999999999999,"value":1}"#),
            "bad timestamp=99999999999999 when trying to add value=[1]/0 to metric=m, tags={}"
        );
        let nine = r#"{"a":"1","b":"1","c":"1","d":"1","e":"1","f":"1","g":"1","h":"1","i":"1"}"#;
        assert_eq!(
            error(&format!(r#"{{"metric":"m","timestamp":1,"value":1,"tags":{nine}}}"#)),
            "Too many tags: 9 maximum allowed: 8, tags: {a=1, b=1, c=1, d=1, e=1, f=1, g=1, h=1, i=1}"
        );
        assert_eq!(
            error(r#"{"metric":"a:b","timestamp":1,"value":1}"#),
            "Invalid metric name (\"a:b\"): illegal character: :"
        );
        assert_eq!(
            error(r#"{"metric":"a b","timestamp":1,"value":1}"#),
            "Invalid metric name (\"a b\"): illegal character:  "
        );
        assert_eq!(
            error(r#"{"metric":"m","timestamp":1,"value":1,"tags":{"host":"a=b"}}"#),
            "Invalid tag value with key [host] (\"a=b\"): illegal character: ="
        );
        assert_eq!(
            error(r#"{"metric":"m","timestamp":1,"value":1,"tags":{"host":""}}"#),
            "Invalid tag value with key [host]: empty string"
        );
    }

    #[test]
    fn tags_are_optional_unless_required() {
        assert!(check(r#"{"metric":"m","timestamp":1,"value":1}"#).is_ok());
        let strict = ParseOptions {
            require_tags: true,
            ..ParseOptions::default()
        };
        let r = one(r#"{"metric":"m","timestamp":1,"value":1,"tags":{}}"#).validate(&strict);
        assert_eq!(
            r.unwrap_err(),
            Rejection::new("Missing tags", "missing_tags")
        );
    }

    #[test]
    fn details_echo_the_parsed_point() {
        let p = one(r#"{"metric":"m","timestamp":5,"value":42.50,"tags":{"b":"1","a":"2"}}"#);
        assert_eq!(
            p.echo(),
            r#"{"metric":"m","timestamp":5,"value":"42.50","tags":{"b":"1","a":"2"}}"#
        );
        assert_eq!(
            one(r#"{"value":1}"#).echo(),
            r#"{"timestamp":0,"value":"1"}"#
        );
    }
}
