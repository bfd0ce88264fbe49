//! Java's `String.split` on a single character: the parts between the
//! separators, with trailing empty parts dropped. OpenTSDB splits filter
//! alternatives (`web01|web02|`) and downsample specs (`1h-sum-`) this way.

/// `s.split(sep)` as Java does it: trailing empty parts are dropped, so
/// `"a|b|"` gives `["a", "b"]` and `"|"` gives nothing. One difference:
/// Java splits an empty `s` into one empty part, this into none; every
/// caller refuses empty text before splitting.
pub fn split(s: &str, sep: char) -> Vec<&str> {
    let mut parts: Vec<&str> = s.split(sep).collect();
    while parts.len() > 1 && parts.last() == Some(&"") {
        parts.pop();
    }
    if parts == [""] {
        parts.clear();
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_empty_parts_are_dropped() {
        assert_eq!(split("a|b", '|'), ["a", "b"]);
        assert_eq!(split("a|b||", '|'), ["a", "b"]);
        assert_eq!(split("|a", '|'), ["", "a"]);
        assert_eq!(split("a||b", '|'), ["a", "", "b"]);
        assert!(split("|", '|').is_empty());
        assert!(split("||", '|').is_empty());
    }
}
