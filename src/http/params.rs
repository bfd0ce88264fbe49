//! Query-string parameters the way OpenTSDB's `HttpQuery` reads them.
//!
//! Flags are presence-based (`hasQueryStringParam`): `?details`,
//! `?details=false` and `?sync=no` all switch the flag on. A repeated
//! parameter's last value wins for single-valued reads; `m`, `tsuid`,
//! `timeseries` and friends are read with [`Params::all`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::ApiError;

/// A decoded query string: ordered pairs, repeated keys kept.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(raw: &str) -> Result<Params, ApiError> {
        serde_urlencoded::from_str(raw).map(Params).map_err(|e| {
            ApiError::bad_request("Unable to parse the query string").with_details(e.to_string())
        })
    }

    /// Whether the parameter appears at all, whatever its value.
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `getRequiredQueryStringParam`: present and not empty.
    pub fn required(&self, key: &str) -> Result<&str, ApiError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::missing_parameter(key))
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Params::parse(parts.uri.query().unwrap_or(""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_presence_based_and_the_last_value_wins() {
        let p = Params::parse("details=false&summary&m=a&m=b&max=1&max=2").unwrap();
        assert!(p.has("details") && p.has("summary") && !p.has("sync"));
        assert_eq!(p.get("max"), Some("2"));
        assert_eq!(p.all("m").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            p.required("summary").unwrap_err().message,
            "Missing parameter <code>summary</code>"
        );
        assert_eq!(Params::parse("q=a%20b+c").unwrap().get("q"), Some("a b c"));
    }
}
