//! Tag value filters (OpenTSDB's `TagVFilter` family) and the old `tags`
//! syntax that turns into them.
//!
//! Every filter names a tag key, and a series without that key never
//! matches, the `not_*` types included: OpenTSDB puts every filter's key in
//! its row-key regex. Filters on the same key are ANDed by the engine; a
//! key is a group-by key when any filter on it has `group_by` set.
//!
//! Where OpenTSDB's code has bugs, rtsd implements the documented intent:
//! `iwildcard` and the case-insensitive wildcards of the old syntax really
//! ignore case (OpenTSDB lower-cases only the pattern), and a wildcard is a
//! real glob (OpenTSDB's infix search can match pieces out of order or
//! overlapping). `not_literal_or` accepts one-character values, which
//! OpenTSDB rejects by accident.

use regex::Regex;

use crate::java::split::split;
use crate::query::source::TagSelect;

/// The registered filter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterType {
    LiteralOr,
    ILiteralOr,
    NotLiteralOr,
    NotILiteralOr,
    Wildcard,
    IWildcard,
    Regexp,
}

impl FilterType {
    const ALL: [FilterType; 7] = [
        FilterType::LiteralOr,
        FilterType::ILiteralOr,
        FilterType::NotLiteralOr,
        FilterType::NotILiteralOr,
        FilterType::Wildcard,
        FilterType::IWildcard,
        FilterType::Regexp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FilterType::LiteralOr => "literal_or",
            FilterType::ILiteralOr => "iliteral_or",
            FilterType::NotLiteralOr => "not_literal_or",
            FilterType::NotILiteralOr => "not_iliteral_or",
            FilterType::Wildcard => "wildcard",
            FilterType::IWildcard => "iwildcard",
            FilterType::Regexp => "regexp",
        }
    }

    /// Case-sensitive, as OpenTSDB's JSON lookup is.
    pub fn from_name(name: &str) -> Option<FilterType> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    fn description(self) -> (&'static str, &'static str) {
        match self {
            FilterType::LiteralOr => (
                "Matches series whose value for the tag key is one of the given exact, \
                 case sensitive values, separated by the | (pipe) character.",
                "host=literal_or(web01),  host=literal_or(web01|web02|web03)  \
                 {\"type\":\"literal_or\",\"tagk\":\"host\",\"filter\":\"web01|web02|web03\",\
                 \"groupBy\":false}",
            ),
            FilterType::ILiteralOr => (
                "Matches series whose value for the tag key is one of the given exact \
                 values, ignoring case, separated by the | (pipe) character.",
                "host=iliteral_or(web01),  host=iliteral_or(web01|web02|web03)  \
                 {\"type\":\"iliteral_or\",\"tagk\":\"host\",\"filter\":\"web01|web02|web03\",\
                 \"groupBy\":false}",
            ),
            FilterType::NotLiteralOr => (
                "Matches series that have the tag key with a value that is none of the \
                 given exact, case sensitive values, separated by the | (pipe) character.",
                "host=not_literal_or(web01),  host=not_literal_or(web01|web02|web03)  \
                 {\"type\":\"not_literal_or\",\"tagk\":\"host\",\"filter\":\"web01|web02|web03\",\
                 \"groupBy\":false}",
            ),
            FilterType::NotILiteralOr => (
                "Matches series that have the tag key with a value that is none of the \
                 given exact values, ignoring case, separated by the | (pipe) character.",
                "host=not_iliteral_or(web01),  host=not_iliteral_or(web01|web02|web03)  \
                 {\"type\":\"not_iliteral_or\",\"tagk\":\"host\",\"filter\":\"web01|web02|web03\",\
                 \"groupBy\":false}",
            ),
            FilterType::Wildcard => (
                "Glob matching of values with the * (asterisk) wildcard, case sensitive. \
                 At least one asterisk is required; several may be used, at the start, \
                 the end or inside the value. A lone asterisk matches every value of the \
                 tag key.",
                "host=wildcard(web*),  host=wildcard(web*.tsdb.net)  \
                 {\"type\":\"wildcard\",\"tagk\":\"host\",\"filter\":\"web*.tsdb.net\",\
                 \"groupBy\":false}",
            ),
            FilterType::IWildcard => (
                "Glob matching of values with the * (asterisk) wildcard, ignoring case. \
                 At least one asterisk is required; several may be used, at the start, \
                 the end or inside the value. A lone asterisk matches every value of the \
                 tag key.",
                "host=iwildcard(web*),  host=iwildcard(web*.tsdb.net)  \
                 {\"type\":\"iwildcard\",\"tagk\":\"host\",\"filter\":\"web*.tsdb.net\",\
                 \"groupBy\":false}",
            ),
            FilterType::Regexp => (
                "Regular expression matching of values; the expression may match \
                 anywhere in the value unless anchored with ^ and $. An invalid \
                 expression is an error. Curly braces {} do not survive the URL query \
                 syntax; use the JSON form for them.",
                "host=regexp(.*)  {\"type\":\"regexp\",\"tagk\":\"host\",\"filter\":\".*\",\
                 \"groupBy\":false}",
            ),
        }
    }
}

/// `(name, description, examples)` for `/api/config/filters`.
pub fn filter_descriptions() -> Vec<(&'static str, &'static str, &'static str)> {
    FilterType::ALL
        .into_iter()
        .map(|t| {
            let (description, examples) = t.description();
            (t.name(), description, examples)
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Matcher {
    /// Exact values; lower-cased when case-insensitive.
    Literals(Vec<String>),
    /// Any value except these.
    NotLiterals(Vec<String>),
    /// `None` for a lone `*`; else the pieces between asterisks.
    Glob(Option<Glob>),
    /// The expression and, when it is anchored at the start, the literal
    /// text every match begins with.
    Regex(Regex, String),
}

#[derive(Debug, Clone)]
struct Glob {
    pieces: Vec<String>,
    anchored_start: bool,
    anchored_end: bool,
}

impl Glob {
    fn new(pattern: &str) -> Option<Glob> {
        if pattern.chars().all(|c| c == '*') {
            return None;
        }
        Some(Glob {
            pieces: pattern
                .split('*')
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect(),
            anchored_start: !pattern.starts_with('*'),
            anchored_end: !pattern.ends_with('*'),
        })
    }

    fn matches(&self, value: &str) -> bool {
        let mut rest = value;
        let last = self.pieces.len() - 1;
        for (i, piece) in self.pieces.iter().enumerate() {
            if i == 0 && self.anchored_start {
                match rest.strip_prefix(piece.as_str()) {
                    Some(r) => rest = r,
                    None => return false,
                }
                if i == last && self.anchored_end {
                    return rest.is_empty();
                }
            } else if i == last && self.anchored_end {
                return rest.ends_with(piece.as_str());
            } else {
                match rest.find(piece.as_str()) {
                    Some(at) => rest = &rest[at + piece.len()..],
                    None => return false,
                }
            }
        }
        true
    }
}

/// The text every match of `pattern` begins with, if it matches only at
/// the start of a value (`^web0[1-4]` gives `web0`); else empty. The
/// filter searches anywhere in the value, so without `^` no prefix holds.
fn anchored_prefix(pattern: &str) -> String {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    use regex_syntax::hir::Look;
    let Ok(hir) = regex_syntax::parse(pattern) else {
        return String::new();
    };
    if !hir.properties().look_set_prefix().contains(Look::Start) {
        return String::new();
    }
    let prefixes = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let common = prefixes.longest_common_prefix().unwrap_or_default();
    // A prefix cut inside a UTF-8 sequence keeps its whole characters.
    match std::str::from_utf8(common) {
        Ok(text) => text.to_string(),
        Err(e) => String::from_utf8_lossy(&common[..e.valid_up_to()]).into_owned(),
    }
}

/// One compiled filter.
#[derive(Debug, Clone)]
pub struct TagFilter {
    pub filter_type: FilterType,
    pub tagk: String,
    /// The expression as the user wrote it, for the query echo.
    pub filter: String,
    pub group_by: bool,
    case_insensitive: bool,
    matcher: Matcher,
}

impl TagFilter {
    /// Builds a filter of a named type; errors are OpenTSDB's texts.
    pub fn new(type_name: &str, tagk: &str, filter: &str, group_by: bool) -> Result<Self, String> {
        if type_name.is_empty() {
            return Err("The filter type cannot be null or empty".into());
        }
        if tagk.is_empty() {
            return Err("The tagk cannot be null or empty".into());
        }
        let filter_type = FilterType::from_name(type_name)
            .ok_or_else(|| format!("Could not find a tag value filter of the type: {type_name}"))?;
        let case_insensitive = matches!(
            filter_type,
            FilterType::ILiteralOr | FilterType::NotILiteralOr | FilterType::IWildcard
        );
        Self::build(filter_type, tagk, filter, group_by, case_insensitive)
    }

    fn build(
        filter_type: FilterType,
        tagk: &str,
        filter: &str,
        group_by: bool,
        case_insensitive: bool,
    ) -> Result<Self, String> {
        if filter.is_empty() {
            return Err("Filter cannot be null or empty".into());
        }
        let fold = |s: &str| {
            if case_insensitive {
                s.to_lowercase()
            } else {
                s.to_string()
            }
        };
        let matcher = match filter_type {
            FilterType::LiteralOr | FilterType::ILiteralOr => {
                if filter == "|" {
                    return Err("Filter must contain more than just a pipe".into());
                }
                Matcher::Literals(split(filter, '|').into_iter().map(fold).collect())
            }
            FilterType::NotLiteralOr | FilterType::NotILiteralOr => {
                Matcher::NotLiterals(split(filter, '|').into_iter().map(fold).collect())
            }
            FilterType::Wildcard | FilterType::IWildcard => {
                if !filter.contains('*') {
                    return Err("Filter must contain an asterisk".into());
                }
                Matcher::Glob(Glob::new(&fold(filter)))
            }
            FilterType::Regexp => Matcher::Regex(
                Regex::new(filter)
                    .map_err(|e| format!("Invalid regular expression '{filter}': {e}"))?,
                anchored_prefix(filter),
            ),
        };
        Ok(TagFilter {
            filter_type,
            tagk: tagk.to_string(),
            filter: filter.to_string(),
            group_by,
            case_insensitive,
            matcher,
        })
    }

    /// The old `tagk=value` syntax (the `tags` map, the braces of `m=`):
    /// `*` and values with an asterisk are case-insensitive wildcards,
    /// `type(expr)` names a filter, anything else is `literal_or`.
    pub fn from_tag_value(tagk: &str, value: &str, group_by: bool) -> Result<Self, String> {
        if tagk.is_empty() {
            return Err("Tagk cannot be null or empty".into());
        }
        if value.is_empty() {
            return Err("Filter cannot be null or empty".into());
        }
        if let Some(paren) = value.find('(') {
            if !value.ends_with(')') {
                return Err(format!("Filter must end with a ')': {value}"));
            }
            let type_name = value[..paren].to_lowercase();
            return Self::new(
                &type_name,
                tagk,
                &value[paren + 1..value.len() - 1],
                group_by,
            );
        }
        if value.contains('*') {
            return Self::build(FilterType::Wildcard, tagk, value, group_by, true);
        }
        Self::build(FilterType::LiteralOr, tagk, value, group_by, false)
    }

    /// Whether a series whose value for `tagk` is `value` (or which lacks
    /// the key) passes.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let Some(value) = value else {
            return false;
        };
        let folded;
        let value = if self.case_insensitive {
            folded = value.to_lowercase();
            folded.as_str()
        } else {
            value
        };
        match &self.matcher {
            Matcher::Literals(l) => l.iter().any(|x| x == value),
            Matcher::NotLiterals(l) => !l.iter().any(|x| x == value),
            Matcher::Glob(None) => true,
            Matcher::Glob(Some(g)) => g.matches(value),
            Matcher::Regex(r, _) => r.is_match(value),
        }
    }

    /// The tag values this filter names exactly and case-sensitively; the
    /// engine checks that they exist, as OpenTSDB resolves their UIDs.
    pub fn literal_values(&self) -> &[String] {
        match (&self.matcher, self.filter_type) {
            (Matcher::Literals(l), FilterType::LiteralOr) => l,
            _ => &[],
        }
    }

    /// A prefix of every value this filter accepts (often empty).
    pub fn value_prefix(&self) -> &str {
        match &self.matcher {
            Matcher::Glob(Some(g)) if g.anchored_start && !self.case_insensitive => &g.pieces[0],
            Matcher::Regex(_, prefix) => prefix,
            _ => "",
        }
    }

    /// This filter as a store can use it to narrow a metric's series.
    pub fn select<'a>(&'a self, matches: &'a dyn Fn(&str) -> bool) -> TagSelect<'a> {
        let exact = self.literal_values();
        TagSelect {
            key: &self.tagk,
            exact: (!exact.is_empty()).then_some(exact),
            prefix: self.value_prefix(),
            matches,
        }
    }

    /// Same filter, ignoring `group_by` (OpenTSDB's `equals`).
    pub fn same_as(&self, other: &TagFilter) -> bool {
        self.filter_type == other.filter_type
            && self.tagk == other.tagk
            && self.filter == other.filter
            && self.case_insensitive == other.case_insensitive
    }
}

/// Adds `filter` to `filters`; with `group_by`, an identical existing filter
/// is marked group-by instead (OpenTSDB's `mapToFilters`).
pub fn push_filter(filters: &mut Vec<TagFilter>, filter: TagFilter) {
    if filter.group_by {
        if let Some(existing) = filters.iter_mut().find(|f| f.same_as(&filter)) {
            existing.group_by = true;
            return;
        }
    }
    filters.push(filter);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(t: &str, expr: &str) -> TagFilter {
        TagFilter::new(t, "host", expr, false).unwrap()
    }

    /// A filter type, its expression, and (tag value, expected match) checks.
    type MatchCase<'a> = (&'a str, &'a str, &'a [(Option<&'a str>, bool)]);

    /// What a store may skip: every value a filter accepts starts with its
    /// prefix, and literal filters name their values.
    #[test]
    fn prefixes_and_literals_for_stores() {
        let cases: &[(&str, &str, &str)] = &[
            ("wildcard", "web*", "web"),
            ("wildcard", "*web", ""),
            ("wildcard", "we*b*", "we"),
            ("iwildcard", "web*", ""),
            ("regexp", "^hc1234[0-9]*$", "hc1234"),
            ("regexp", "^web0[1-4]", "web0"),
            ("regexp", "^(web|wax)01", "w"),
            ("regexp", "web0[1-4]", ""),
            ("regexp", "(?m)^web", ""),
            ("regexp", "(?i)^web", ""),
            ("regexp", "^été.*", "été"),
            ("regexp", "^.*", ""),
            ("literal_or", "web01|web02", ""),
            ("not_literal_or", "web01", ""),
        ];
        for &(kind, expr, prefix) in cases {
            let f = TagFilter::new(kind, "host", expr, false).unwrap();
            assert_eq!(f.value_prefix(), prefix, "{kind}({expr})");
            let always = |_: &str| true;
            let select = f.select(&always);
            assert_eq!(select.prefix, prefix);
            let literal = kind == "literal_or";
            assert_eq!(select.exact.is_some(), literal, "{kind}({expr})");
        }
    }

    #[test]
    fn matching_table() {
        let cases: &[MatchCase] = &[
            (
                "literal_or",
                "web01|web02",
                &[
                    (Some("web01"), true),
                    (Some("web02"), true),
                    (Some("WEB01"), false),
                    (Some("web03"), false),
                    (None, false),
                ],
            ),
            (
                "iliteral_or",
                "Web01|web02",
                &[
                    (Some("WEB01"), true),
                    (Some("web02"), true),
                    (Some("web03"), false),
                    (None, false),
                ],
            ),
            (
                "not_literal_or",
                "web01|web02",
                &[
                    (Some("web01"), false),
                    (Some("web03"), true),
                    (Some("WEB01"), true),
                    // A series without the key never matches, not_* included.
                    (None, false),
                ],
            ),
            (
                "not_iliteral_or",
                "WEB01",
                &[(Some("web01"), false), (Some("web03"), true), (None, false)],
            ),
            (
                "wildcard",
                "web*",
                &[
                    (Some("web01"), true),
                    (Some("web"), true),
                    (Some("Web01"), false),
                    (Some("aweb"), false),
                    (None, false),
                ],
            ),
            (
                "wildcard",
                "*.lga",
                &[(Some("a.lga"), true), (Some("a.lgb"), false)],
            ),
            (
                "wildcard",
                "*b*",
                &[(Some("abc"), true), (Some("ac"), false)],
            ),
            (
                "wildcard",
                "a*c*e",
                &[
                    (Some("abcde"), true),
                    (Some("ace"), true),
                    (Some("aec"), false),
                    (Some("abcdef"), false),
                ],
            ),
            // Pieces must not overlap: "ab*ba" needs four characters.
            (
                "wildcard",
                "ab*ba",
                &[(Some("aba"), false), (Some("abba"), true)],
            ),
            ("wildcard", "*", &[(Some("anything"), true), (None, false)]),
            (
                "iwildcard",
                "WEB*",
                &[
                    (Some("web01"), true),
                    (Some("Web01"), true),
                    (Some("db"), false),
                ],
            ),
            // Unanchored like Java's find().
            (
                "regexp",
                "eb0",
                &[(Some("web01"), true), (Some("db01"), false), (None, false)],
            ),
            (
                "regexp",
                "^web0[12]$",
                &[(Some("web01"), true), (Some("web011"), false)],
            ),
        ];
        for &(t, expr, checks) in cases {
            let filter = f(t, expr);
            for &(value, want) in checks {
                assert_eq!(filter.matches(value), want, "{t}({expr}) on {value:?}");
            }
        }
    }

    #[test]
    fn construction_errors() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "nope",
                "host",
                "x",
                "Could not find a tag value filter of the type: nope",
            ),
            (
                "LITERAL_OR",
                "host",
                "x",
                "Could not find a tag value filter of the type: LITERAL_OR",
            ),
            ("", "host", "x", "The filter type cannot be null or empty"),
            ("literal_or", "", "x", "The tagk cannot be null or empty"),
            ("literal_or", "host", "", "Filter cannot be null or empty"),
            (
                "literal_or",
                "host",
                "|",
                "Filter must contain more than just a pipe",
            ),
            ("wildcard", "host", "web", "Filter must contain an asterisk"),
            ("regexp", "host", "", "Filter cannot be null or empty"),
        ];
        for &(t, k, expr, want) in cases {
            assert_eq!(
                TagFilter::new(t, k, expr, false).unwrap_err(),
                want,
                "{t} {k} {expr}"
            );
        }
        assert!(TagFilter::new("regexp", "host", "(", false)
            .unwrap_err()
            .starts_with("Invalid regular expression '(': "));
    }

    #[test]
    fn old_syntax_conversion() {
        let star = TagFilter::from_tag_value("host", "*", true).unwrap();
        assert_eq!(
            (star.filter_type, star.filter.as_str(), star.group_by),
            (FilterType::Wildcard, "*", true)
        );
        // `web*` is a wildcard that ignores case, though its type says wildcard.
        let web = TagFilter::from_tag_value("host", "web*", true).unwrap();
        assert_eq!(web.filter_type, FilterType::Wildcard);
        assert!(web.matches(Some("WEB01")));
        let lit = TagFilter::from_tag_value("host", "a|b", true).unwrap();
        assert_eq!(lit.filter_type, FilterType::LiteralOr);
        assert_eq!(lit.literal_values(), ["a", "b"]);
        let re = TagFilter::from_tag_value("host", "REGEXP(web.*)", false).unwrap();
        assert_eq!(
            (re.filter_type, re.filter.as_str()),
            (FilterType::Regexp, "web.*")
        );
        assert_eq!(
            TagFilter::from_tag_value("host", "regexp(web", false).unwrap_err(),
            "Filter must end with a ')': regexp(web"
        );
        assert!(TagFilter::from_tag_value("host", "iliteral_or(A)", false)
            .unwrap()
            .literal_values()
            .is_empty());
    }

    #[test]
    fn duplicate_group_by_filters_merge() {
        let mut filters = vec![TagFilter::from_tag_value("host", "a", false).unwrap()];
        push_filter(
            &mut filters,
            TagFilter::from_tag_value("host", "a", true).unwrap(),
        );
        assert_eq!(filters.len(), 1);
        assert!(filters[0].group_by);
        push_filter(
            &mut filters,
            TagFilter::from_tag_value("host", "b", true).unwrap(),
        );
        assert_eq!(filters.len(), 2);
    }

    #[test]
    fn descriptions_cover_every_type() {
        let names: Vec<&str> = filter_descriptions().iter().map(|d| d.0).collect();
        assert_eq!(
            names,
            [
                "literal_or",
                "iliteral_or",
                "not_literal_or",
                "not_iliteral_or",
                "wildcard",
                "iwildcard",
                "regexp"
            ]
        );
    }
}
