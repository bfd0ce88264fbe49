//! The two token grammars of the line protocol, in nom: a line is words
//! separated by runs of spaces, and a tag word is `key=value`.
//!
//! OpenTSDB splits on every single space, so `a  b` has an empty word in
//! the middle and a trailing space adds an empty last word. rtsd treats any
//! run of spaces — leading, inner or trailing — as one separator (collectd
//! and telegraf send such lines). Only the space character separates: a tab
//! stays inside its word, as in OpenTSDB.
//!
//! The line is checked for UTF-8 once; each [`Word`] then carries its text
//! as a slice of that check's result, so names and numbers need no UTF-8
//! pass of their own. Splitting on ASCII bytes (space, `=`) always cuts at
//! character boundaries.

use std::borrow::Cow;
use std::ops::Range;

use nom::{
    bytes::complete::{take_till1, take_while},
    character::complete::char as one_char,
    combinator::all_consuming,
    sequence::{preceded, separated_pair},
    IResult,
};

fn word(input: &[u8]) -> IResult<&[u8], &[u8]> {
    preceded(take_while(|b| b == b' '), take_till1(|b| b == b' '))(input)
}

/// A word (or part of one) of a line.
#[derive(Debug, Clone, Copy)]
pub struct Word<'a> {
    pub bytes: &'a [u8],
    /// The same bytes as text, when the whole line was UTF-8.
    line_text: Option<&'a str>,
}

impl<'a> Word<'a> {
    /// All of `bytes` as one word, spaces included.
    #[cfg(test)]
    pub fn whole(bytes: &'a [u8]) -> Self {
        Word {
            bytes,
            line_text: std::str::from_utf8(bytes).ok(),
        }
    }

    /// The word as text, or `None` if it is not UTF-8.
    pub fn text(self) -> Option<&'a str> {
        self.line_text
            .or_else(|| std::str::from_utf8(self.bytes).ok())
    }

    /// The word as text with every invalid sequence replaced by U+FFFD, as
    /// rtsd reads and quotes it.
    pub fn lossy(self) -> Cow<'a, str> {
        match self.text() {
            Some(text) => Cow::Borrowed(text),
            None => String::from_utf8_lossy(self.bytes),
        }
    }

    fn slice(self, range: Range<usize>) -> Word<'a> {
        Word {
            bytes: &self.bytes[range.clone()],
            line_text: self.line_text.and_then(|t| t.get(range)),
        }
    }
}

/// The words of a line, left to right, borrowed from it.
#[derive(Debug, Clone)]
pub struct Words<'a> {
    line: &'a [u8],
    rest: &'a [u8],
    line_text: Option<&'a str>,
}

impl<'a> Words<'a> {
    pub fn new(line: &'a [u8]) -> Self {
        Words {
            line,
            rest: line,
            line_text: std::str::from_utf8(line).ok(),
        }
    }

    /// The words of `line` without its UTF-8 check: each word is checked
    /// alone when its text is asked for, which is cheaper when only a few
    /// short words are.
    pub fn unchecked(line: &'a [u8]) -> Self {
        Words {
            line,
            rest: line,
            line_text: None,
        }
    }

    /// What follows the words taken so far, separating spaces included.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = Word<'a>;

    fn next(&mut self) -> Option<Word<'a>> {
        let (rest, bytes) = word(self.rest).ok()?;
        self.rest = rest;
        let end = self.line.len() - rest.len();
        let whole = Word {
            bytes: self.line,
            line_text: self.line_text,
        };
        Some(whole.slice(end - bytes.len()..end))
    }
}

/// `key=value` with both sides non-empty and exactly one `=`, the only
/// shape OpenTSDB's `Tags.parse` accepts (its split on `=` must give two
/// non-empty parts).
pub fn split_tag(word: Word<'_>) -> Option<(Word<'_>, Word<'_>)> {
    let part = || take_till1(|b| b == b'=');
    let pair: IResult<&[u8], (&[u8], &[u8])> =
        all_consuming(separated_pair(part(), one_char('='), part()))(word.bytes);
    let (_, (key, _)) = pair.ok()?;
    Some((
        word.slice(0..key.len()),
        word.slice(key.len() + 1..word.bytes.len()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &[u8]) -> Vec<String> {
        Words::new(line).map(|w| w.lossy().into_owned()).collect()
    }

    #[test]
    fn runs_of_spaces_separate_and_tabs_do_not() {
        assert_eq!(words(b"put m 1 2 a=b"), ["put", "m", "1", "2", "a=b"]);
        assert_eq!(words(b"  put   m  1 "), ["put", "m", "1"]);
        assert_eq!(words(b"a\tb c"), ["a\tb", "c"]);
        assert!(words(b"").is_empty());
        assert!(words(b"    ").is_empty());
    }

    #[test]
    fn words_carry_their_text_even_when_the_line_is_not_utf8() {
        let line = "put m=é x\u{FFFD}".as_bytes();
        let texts: Vec<Option<&str>> = Words::new(line).map(Word::text).collect();
        assert_eq!(texts, [Some("put"), Some("m=é"), Some("x\u{FFFD}")]);
        let line = b"put caf\xe9 ok";
        let texts: Vec<Option<&str>> = Words::new(line).map(Word::text).collect();
        assert_eq!(texts, [Some("put"), None, Some("ok")]);
        assert_eq!(words(line), ["put", "caf\u{FFFD}", "ok"]);
    }

    fn tag(word: &str) -> Option<(String, String)> {
        let w = Words::new(word.as_bytes()).next()?;
        split_tag(w).map(|(k, v)| (k.lossy().into_owned(), v.lossy().into_owned()))
    }

    #[test]
    fn tags_need_exactly_one_equals_and_two_non_empty_sides() {
        assert_eq!(tag("host=web01"), Some(("host".into(), "web01".into())));
        assert_eq!(tag("城市=北京"), Some(("城市".into(), "北京".into())));
        assert_eq!(tag("host="), None);
        assert_eq!(tag("=web01"), None);
        assert_eq!(tag("="), None);
        assert_eq!(tag("host"), None);
        assert_eq!(tag("host=a=b"), None);
        assert_eq!(tag("host==a"), None);
    }
}
