//! Jackson's scalar coercions, as serde `deserialize_with` helpers.
//!
//! OpenTSDB binds JSON bodies with Jackson, which accepts `"true"` for a
//! boolean, a number for a string (`"start":1356998400`) and a string for a
//! number. Clients rely on it (`"rate":"true"`, `"showTSUIDs":"true"`), so
//! the POST `/api/query` request types use these helpers, and the
//! annotation handlers read scalars with [`scalar_text`]. `null` is the
//! field's default throughout.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value as Json;

/// A JSON field bound to a Java `int` as Jackson binds it: a number or a
/// numeric string in range; absent or `null` is `default`.
pub(crate) fn int_field(v: Option<Json>, default: i32) -> Option<i32> {
    match v {
        None | Some(Json::Null) => Some(default),
        Some(Json::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Some(Json::String(s)) => super::number::parse_int(&s),
        Some(_) => None,
    }
}

/// A JSON scalar as the text Jackson would bind to a `String` field.
pub(crate) fn scalar_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A boolean from `true`, `"true"`, `"TRUE"`, `1`, ...
pub(crate) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Json::deserialize(d)? {
        Json::Null => Ok(false),
        Json::Bool(b) => Ok(b),
        Json::Number(n) => Ok(n.as_f64().is_some_and(|f| f != 0.0)),
        Json::String(s) if s.is_empty() || s.eq_ignore_ascii_case("false") => Ok(false),
        Json::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        other => Err(D::Error::custom(format!(
            "cannot read {other} as a boolean"
        ))),
    }
}

/// A boolean that defaults to true when absent or null.
pub(crate) fn flag_default_true<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Json::deserialize(d)? {
        Json::Null => Ok(true),
        other => flag(other).map_err(D::Error::custom),
    }
}

/// Text from a string, number or boolean.
pub(crate) fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Json::deserialize(d)? {
        Json::Null => Ok(None),
        v => scalar_text(&v)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("cannot read {v} as text"))),
    }
}

/// A long from a number or a numeric string.
pub(crate) fn long<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Json::deserialize(d)?;
    match &v {
        Json::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| D::Error::custom(format!("cannot read {v} as a long")))
}

/// An object of scalars as ordered `(key, text)` pairs.
pub(crate) fn text_pairs<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<(String, String)>>, D::Error> {
    match Json::deserialize(d)? {
        Json::Null => Ok(None),
        Json::Object(map) => map
            .into_iter()
            .map(|(k, v)| match scalar_text(&v) {
                Some(t) => Ok((k, t)),
                None => Err(D::Error::custom(format!(
                    "cannot read {v} as the value of {k}"
                ))),
            })
            .collect::<Result<_, _>>()
            .map(Some),
        other => Err(D::Error::custom(format!("expected an object, got {other}"))),
    }
}

/// A list of strings; a lone string counts as a list of one, as Jackson's
/// `ACCEPT_SINGLE_VALUE_AS_ARRAY` would have it.
pub(crate) fn opt_text_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    match Json::deserialize(d)? {
        Json::Null => Ok(None),
        Json::Array(items) => items
            .iter()
            .map(|v| {
                scalar_text(v).ok_or_else(|| D::Error::custom(format!("cannot read {v} as text")))
            })
            .collect::<Result<_, _>>()
            .map(Some),
        v => scalar_text(&v)
            .map(|t| Some(vec![t]))
            .ok_or_else(|| D::Error::custom(format!("cannot read {v} as a list"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Default)]
    #[serde(default)]
    struct T {
        #[serde(deserialize_with = "flag")]
        b: bool,
        #[serde(deserialize_with = "flag_default_true")]
        t: bool,
        #[serde(deserialize_with = "opt_text")]
        s: Option<String>,
        #[serde(deserialize_with = "long")]
        l: i64,
        #[serde(deserialize_with = "text_pairs")]
        m: Option<Vec<(String, String)>>,
        #[serde(deserialize_with = "opt_text_list")]
        v: Option<Vec<String>>,
    }

    fn t(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn coercions() {
        assert!(t(r#"{"b":"true"}"#).b);
        assert!(t(r#"{"b":"TRUE"}"#).b);
        assert!(t(r#"{"b":1}"#).b);
        assert!(!t(r#"{"b":"false"}"#).b);
        assert!(!t(r#"{"b":null}"#).b);
        assert!(serde_json::from_str::<T>(r#"{"b":"yes"}"#).is_err());
        assert!(!t(r#"{"t":false}"#).t);
        assert!(t(r#"{"t":null}"#).t);
        assert_eq!(t(r#"{"s":1356998400}"#).s.as_deref(), Some("1356998400"));
        assert_eq!(t(r#"{"s":"1h-ago"}"#).s.as_deref(), Some("1h-ago"));
        assert_eq!(t(r#"{"s":null}"#).s, None);
        assert_eq!(t(r#"{"l":"42"}"#).l, 42);
        assert_eq!(t(r#"{"l":42}"#).l, 42);
        assert_eq!(
            t(r#"{"m":{"host":"*","port":80}}"#).m.unwrap(),
            [
                ("host".to_string(), "*".to_string()),
                ("port".to_string(), "80".to_string())
            ]
        );
        assert_eq!(t(r#"{"v":"a"}"#).v.unwrap(), ["a"]);
        assert_eq!(t(r#"{"v":["a","b"]}"#).v.unwrap(), ["a", "b"]);
    }
}
