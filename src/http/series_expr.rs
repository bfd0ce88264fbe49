//! `metric{tagk=tagv,...}` expressions, parsed the two ways OpenTSDB's
//! `Tags.parseWithMetric` does:
//!
//! - [`parse_exact`] (the map form, used by `/api/query/last`'s
//!   `timeseries=`): a metric is required, every pair needs both sides, a
//!   repeated key with another value is an error;
//! - [`parse_lookup`] (the list form, used by `/api/search/lookup`'s
//!   `m=`): the metric may be missing (`{host=web01}`), and either side of
//!   a pair may be empty (`=web01`, `host=`), meaning "any".
//!
//! Error texts are OpenTSDB's `IllegalArgumentException` messages.

use crate::java::hashmap_order::java_map_string;

/// One side of a lookup pair: `None` or `*` match anything.
pub type Pattern = Option<String>;

/// A parsed lookup: the metric if any, and the tag patterns.
pub type LookupSpec = (Option<String>, Vec<(Pattern, Pattern)>);

/// Splits `metric{...}` into the metric and the text between the braces.
fn split_braces(text: &str) -> Result<(&str, Option<&str>), String> {
    let Some(curly) = text.find('{') else {
        return Ok((text, None));
    };
    let Some(inner) = text[curly + 1..].strip_suffix('}') else {
        return Err(format!("Missing '}}' at the end of: {text}"));
    };
    Ok((&text[..curly], (!inner.is_empty()).then_some(inner)))
}

fn wrap(tag: &str, msg: String) -> String {
    format!("When parsing tag '{tag}': {msg}")
}

/// The map form: `(metric, tags in first-seen order)`.
pub fn parse_exact(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let (metric, inner) = split_braces(text)?;
    let mut tags: Vec<(String, String)> = Vec::new();
    for tag in inner.map(|i| i.split(',')).into_iter().flatten() {
        let pair = tag.split('=').collect::<Vec<_>>();
        let [k, v] = pair[..] else {
            return Err(wrap(tag, format!("invalid tag: {tag}")));
        };
        if k.is_empty() || v.is_empty() {
            return Err(wrap(tag, format!("invalid tag: {tag}")));
        }
        match tags.iter().find(|(key, _)| key == k) {
            Some((_, old)) if old == v => {}
            Some(_) => {
                return Err(wrap(
                    tag,
                    format!("duplicate tag: {tag}, tags={}", map_text(&tags)),
                ))
            }
            None => tags.push((k.to_string(), v.to_string())),
        }
    }
    Ok((metric.to_string(), tags))
}

fn map_text(tags: &[(String, String)]) -> String {
    let pairs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    java_map_string(&pairs)
}

/// The list form: `(metric if any, (key, value) patterns)`.
pub fn parse_lookup(text: &str) -> Result<LookupSpec, String> {
    let (metric, inner) = split_braces(text)?;
    if inner.is_none() {
        if text.is_empty() {
            return Err("Metric string was empty".to_string());
        }
        if metric.is_empty() {
            return Err(format!("Missing metric and tags: {text}"));
        }
    }
    let mut tags = Vec::new();
    for tag in inner.map(|i| i.split(',')).into_iter().flatten() {
        tags.push(lookup_pair(tag).map_err(|msg| wrap(tag, msg))?);
    }
    Ok(((!metric.is_empty()).then(|| metric.to_string()), tags))
}

fn lookup_pair(tag: &str) -> Result<(Pattern, Pattern), String> {
    if tag.chars().count() < 2 {
        return Err("Missing tag pair".to_string());
    }
    if let Some(value) = tag.strip_prefix('=') {
        return Ok((None, Some(value.to_string())));
    }
    if let Some(key) = tag.strip_suffix('=') {
        return Ok((Some(key.to_string()), None));
    }
    match tag.split('=').collect::<Vec<_>>()[..] {
        [k, v] if !k.is_empty() && !v.is_empty() => Ok((Some(k.to_string()), Some(v.to_string()))),
        _ => Err(format!("invalid tag: {tag}")),
    }
}

/// Whether a pattern side matches anything.
pub fn is_wildcard(p: &Pattern) -> bool {
    p.as_deref().map_or(true, |s| s == "*")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn exact_form() {
        assert_eq!(
            parse_exact("sys.cpu").unwrap(),
            ("sys.cpu".to_string(), vec![])
        );
        assert_eq!(parse_exact("m{}").unwrap().1, vec![]);
        assert_eq!(
            parse_exact("m{host=a,dc=b,host=a}").unwrap().1,
            vec![
                ("host".to_string(), "a".to_string()),
                ("dc".to_string(), "b".to_string())
            ]
        );
        assert_eq!(
            parse_exact("m{host=a").unwrap_err(),
            "Missing '}' at the end of: m{host=a"
        );
        assert_eq!(
            parse_exact("m{host}").unwrap_err(),
            "When parsing tag 'host': invalid tag: host"
        );
        assert_eq!(
            parse_exact("m{a=1,a=2}").unwrap_err(),
            "When parsing tag 'a=2': duplicate tag: a=2, tags={a=1}"
        );
    }

    #[test]
    fn lookup_form() {
        assert_eq!(parse_lookup("m").unwrap(), (s("m"), vec![]));
        assert_eq!(
            parse_lookup("m{host=*,=web01,dc=}").unwrap(),
            (
                s("m"),
                vec![(s("host"), s("*")), (None, s("web01")), (s("dc"), None)]
            )
        );
        assert_eq!(
            parse_lookup("{host=a}").unwrap(),
            (None, vec![(s("host"), s("a"))])
        );
        assert_eq!(parse_lookup("").unwrap_err(), "Metric string was empty");
        assert_eq!(
            parse_lookup("{}").unwrap_err(),
            "Missing metric and tags: {}"
        );
        assert_eq!(
            parse_lookup("m{=}").unwrap_err(),
            "When parsing tag '=': Missing tag pair"
        );
        assert_eq!(
            parse_lookup("m{a=b=c}").unwrap_err(),
            "When parsing tag 'a=b=c': invalid tag: a=b=c"
        );
        assert!(is_wildcard(&None) && is_wildcard(&s("*")) && !is_wildcard(&s("a")));
    }
}
