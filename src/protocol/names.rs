//! Which characters a metric name, tag key or tag value may contain
//! (OpenTSDB's `Tags.validateString`), and the UTF-8 view of a name.
//!
//! Allowed are `[A-Za-z0-9._/-]`, every Unicode letter (general category
//! `L`, i.e. `\p{L}`, which is what Java's `Character.isLetter` tests), and
//! the characters of the `allow_special_chars` option
//! (`tsd.core.tag.allow_specialchars` in OpenTSDB). Three characters are
//! never allowed, whatever the option says: NUL, because the series key uses
//! it as its separator; CR, which a line's end may or may not keep; and
//! U+FFFD, which stands for bytes that were not UTF-8.
//!
//! `char::is_alphabetic` was the other candidate for "letter"; it also
//! admits letter numbers (`Ⅻ`) and combining vowel signs that Java rejects,
//! so the exact category is used. Two deliberate widenings remain, both from
//! decoding UTF-8 by code point: letters outside the Basic Multilingual
//! Plane pass (Java tests each UTF-16 unit and rejects surrogates), and
//! letters added to Unicode after Java 8's 6.2 pass.

use std::cmp::Ordering;
use std::sync::LazyLock;

use regex_syntax::hir::{Class, HirKind};

use super::lexer::Word;

/// The ASCII part of the allowed set.
static ASCII_ALLOWED: [bool; 128] = {
    let mut table = [false; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'/' | b'-');
        b += 1;
    }
    table
};

/// The ranges of Unicode general category L, sorted. They come from the
/// Unicode tables of `regex-syntax` (already used by `regex`), so there is
/// no hand-copied table to go stale, and a lookup is a binary search.
static LETTER_RANGES: LazyLock<Vec<(char, char)>> = LazyLock::new(|| {
    // A constant pattern: it parses or the crate's own tests fail.
    let hir = regex_syntax::parse(r"\p{L}").expect("\\p{L} parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => class
            .ranges()
            .iter()
            .map(|r| (r.start(), r.end()))
            .collect(),
        // `\p{L}` is always a Unicode class; the tests pin known letters.
        _ => Vec::new(),
    }
});

/// The name as `&str` when every character is allowed; otherwise the first
/// character that is not (U+FFFD for bytes that are not UTF-8).
pub fn check<'a>(name: Word<'a>, special: &str) -> Result<&'a str, char> {
    let Some(text) = name.text() else {
        // U+FFFD marks the bad bytes and is never allowed, so it is found
        // unless an illegal character comes before it.
        return Err(
            first_illegal_char(&name.lossy(), special).unwrap_or(char::REPLACEMENT_CHARACTER)
        );
    };
    // Almost every name is plain ASCII from the allowed set: one table
    // lookup per byte.
    if text
        .bytes()
        .all(|b| b < 0x80 && ASCII_ALLOWED[usize::from(b)])
    {
        return Ok(text);
    }
    first_illegal_char(text, special).map_or(Ok(text), Err)
}

/// The first character of `name` that OpenTSDB's `Tags.validateString`
/// refuses, given the `allow_special_chars` option; `None` if all pass.
/// Also serves names that never went through a line (HTTP `/api/put`).
pub fn first_illegal_char(name: &str, special: &str) -> Option<char> {
    name.chars().find(|&c| !allowed(c, special))
}

/// Whether `c` may appear in a metric name, tag key or tag value.
fn allowed(c: char, special: &str) -> bool {
    if c.is_ascii() {
        if ASCII_ALLOWED[c as usize] {
            return true;
        }
    } else if is_letter(c) {
        return true;
    }
    !matches!(c, '\0' | '\r' | char::REPLACEMENT_CHARACTER) && special.contains(c)
}

fn is_letter(c: char) -> bool {
    LETTER_RANGES
        .binary_search_by(|&(start, end)| {
            if end < c {
                Ordering::Less
            } else if start > c {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &[u8], special: &str) -> Result<String, char> {
        super::check(Word::whole(name), special).map(str::to_owned)
    }

    #[test]
    fn ascii_set_matches_opentsdb() {
        assert_eq!(
            check(b"sys.cpu-user_0/total", ""),
            Ok("sys.cpu-user_0/total".into())
        );
        assert_eq!(check(b"a:b", ""), Err(':'));
        assert_eq!(check(b"a b", ""), Err(' '));
        assert_eq!(check(b"a=b", ""), Err('='));
        assert_eq!(check(b"a@b%c", ""), Err('@'));
        assert_eq!(check(b"tab\tx", ""), Err('\t'));
    }

    #[test]
    fn unicode_letters_are_allowed_and_other_symbols_are_not() {
        assert_eq!(check("café".as_bytes(), ""), Ok("café".into()));
        assert_eq!(check("日本".as_bytes(), ""), Ok("日本".into()));
        assert_eq!(check("Привет".as_bytes(), ""), Ok("Привет".into()));
        assert_eq!(check("ªº".as_bytes(), ""), Ok("ªº".into()));
        assert_eq!(check("a©b".as_bytes(), ""), Err('©'));
        assert_eq!(check("x€".as_bytes(), ""), Err('€'));
        // Letter numbers and combining marks are alphabetic, not letters.
        assert_eq!(check("Ⅻ".as_bytes(), ""), Err('Ⅻ'));
        assert_eq!(check("कि".as_bytes(), ""), Err('\u{93F}'));
        // Non-ASCII digits are not letters either.
        assert_eq!(check("٣".as_bytes(), ""), Err('٣'));
    }

    #[test]
    fn special_characters_extend_the_set_but_never_to_nul_cr_or_fffd() {
        assert_eq!(check(b"a:b@c", ":@"), Ok("a:b@c".into()));
        assert_eq!(check(b"a:b@c", ":"), Err('@'));
        assert_eq!(check("a€".as_bytes(), "€"), Ok("a€".into()));
        assert_eq!(check(b"a\0b", "\0"), Err('\0'));
        assert_eq!(check(b"a\rb", "\r"), Err('\r'));
        assert_eq!(check("a\u{FFFD}".as_bytes(), "\u{FFFD}"), Err('\u{FFFD}'));
    }

    #[test]
    fn first_illegal_char_takes_any_text() {
        assert_eq!(first_illegal_char("web01", ""), None);
        assert_eq!(first_illegal_char("", ""), None);
        assert_eq!(first_illegal_char("a b", ""), Some(' '));
        assert_eq!(first_illegal_char("a b", " "), None);
        assert_eq!(first_illegal_char("a=b", ""), Some('='));
        assert_eq!(first_illegal_char("ab\r", "\r"), Some('\r'));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_illegal_after_earlier_offenders() {
        assert_eq!(check(b"ab\xffc", ""), Err(char::REPLACEMENT_CHARACTER));
        assert_eq!(check(b"a:\xff", ""), Err(':'));
        assert_eq!(check(b"\xc3", ""), Err(char::REPLACEMENT_CHARACTER));
    }
}
