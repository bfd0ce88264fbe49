//! `put <metric> <timestamp> <value> [<tagk>=<tagv> ...]`: the data line,
//! checked in OpenTSDB 2.4's exact order so that the first failure — and
//! so the reply — is the one OpenTSDB gives. `rollup` shares the checks up
//! to the point where OpenTSDB looks for its rollup configuration.
//!
//! The order (`PutDataPointRpc.importDataPoint`, `TSDB.addPoint*`,
//! `IncomingDataPoints.checkMetricAndTags`):
//!
//! 1. enough words;
//! 2. timestamp is a Java long (after rtsd's `<sec>.<frac>` reading);
//! 3. timestamp > 0;
//! 4. each tag word is `key=value`, and no key repeats with another value;
//! 5. value is a Java long (no `.`/`e`/`E`) or a Java double;
//! 6. a double is neither NaN nor infinite;
//! 7. timestamp within 13-digit milliseconds;
//! 8. tag count (at least one only with `require_tags`; at most `max_tags`);
//! 9. metric characters;
//! 10. tag characters, tag by tag in Java `HashMap` order, key before value;
//! 11. rtsd's own: not further ahead of now than `max_future_ms`.
//!
//! OpenTSDB's `empty metric name` and `empty value` checks cannot fire:
//! rtsd never produces empty words.

use std::collections::HashMap;
use std::fmt::Write as _;

use smallvec::SmallVec;

use super::error::{NameRole, PutError};
use super::lexer::{split_tag, Word, Words};
use super::names;
use super::timestamp::{self, Timestamp};
use super::ParseOptions;
use crate::java::double_text::non_finite_text;
use crate::java::hashmap_order;
use crate::java::number;
use crate::model::{DataPoint, SeriesKey, Value, MAX_SECONDS};

/// A data point as the `put` line gave it, borrowing its names from the
/// line.
#[derive(Debug, Clone, PartialEq)]
pub struct Put<'a> {
    pub metric: &'a str,
    /// Epoch milliseconds (seconds were multiplied by 1000).
    pub timestamp_ms: i64,
    pub value: Value,
    /// Tags in the order of the line, a repeated identical tag kept once.
    pub tags: Vec<(&'a str, &'a str)>,
}

impl Put<'_> {
    /// The canonical series identity (metric and sorted tags).
    pub fn series_key(&self) -> SeriesKey {
        SeriesKey::new(self.metric, self.tags.iter().copied())
    }

    /// The canonical `put` line for this point (without `\n`). Parsed with
    /// the options that produced this `Put`, it gives an equal `Put`.
    ///
    /// The timestamp is written in seconds when it is a whole second OpenTSDB
    /// reads as seconds, in milliseconds when OpenTSDB reads the number as
    /// milliseconds, and as `<seconds>.<millis>` otherwise. A float always
    /// carries a `.` or an exponent, so it does not come back as an integer.
    pub fn to_line(&self) -> String {
        let mut line = String::with_capacity(64);
        line.push_str("put ");
        line.push_str(self.metric);
        let ms = self.timestamp_ms;
        let seconds = ms.div_euclid(1000);
        let millis = ms.rem_euclid(1000);
        // Writing to a String cannot fail.
        let _ = if millis == 0 && seconds <= MAX_SECONDS {
            write!(line, " {seconds}")
        } else if ms > MAX_SECONDS {
            write!(line, " {ms}")
        } else {
            write!(line, " {seconds}.{millis:03}")
        };
        let _ = match self.value {
            Value::Int(v) => write!(line, " {v}"),
            Value::Float(v) => write!(line, " {v:?}"),
        };
        for (k, v) in &self.tags {
            line.push(' ');
            line.push_str(k);
            line.push('=');
            line.push_str(v);
        }
        line
    }
}

/// Parses the words after `put`.
pub fn parse_put<'a>(mut words: Words<'a>, opts: &ParseOptions) -> Result<Put<'a>, PutError> {
    let not_enough = |got| PutError::NotEnoughArguments { need: 4, got };
    let metric = words.next().ok_or_else(|| not_enough(0))?;
    let ts_word = words.next().ok_or_else(|| not_enough(1))?;
    let value_word = words.next().ok_or_else(|| not_enough(2))?;
    // The tag list stays in this frame: it is large, and moving it through
    // return values costs more than the rest of a typical parse.
    let mut tags = TagList::default();
    let point = Point::parse(metric, ts_word, value_word, words, &mut tags)?;
    point.into_put(&tags, opts)
}

/// Parses the words after `rollup`. Every rollup is refused, but with the
/// error OpenTSDB gives first: its argument and number checks run before
/// it finds no rollup configuration. (Without a configuration, OpenTSDB
/// walks further for a pre-aggregate spec such as `SUM` and fails deeper
/// in storage; rtsd gives the not-configured reply for every spec.)
pub fn reject_rollup(mut words: Words<'_>) -> PutError {
    let args: SmallVec<[Word<'_>; 5]> = words.by_ref().take(5).collect();
    let &[_spec, metric, ts_word, value_word, first_tag] = args.as_slice() else {
        return PutError::NotEnoughArguments {
            need: 7,
            got: args.len(),
        };
    };
    let tag_words = std::iter::once(first_tag).chain(words);
    match Point::parse(
        metric,
        ts_word,
        value_word,
        tag_words,
        &mut TagList::default(),
    ) {
        Err(error) => error,
        Ok(_) => PutError::RollupNotConfigured,
    }
}

/// A line that passed the syntactic checks (steps 2–6), its tags in the
/// caller's [`TagList`].
struct Point<'a> {
    metric: Word<'a>,
    timestamp: Timestamp,
    value: Value,
}

impl<'a> Point<'a> {
    fn parse(
        metric: Word<'a>,
        ts_word: Word<'a>,
        value_word: Word<'a>,
        tag_words: impl Iterator<Item = Word<'a>>,
        tags: &mut TagList<'a>,
    ) -> Result<Self, PutError> {
        let timestamp = parse_timestamp(ts_word)?;
        for word in tag_words {
            tags.insert(word)?;
        }
        let value = parse_value(&value_word.lossy(), metric, timestamp)?;
        Ok(Point {
            metric,
            timestamp,
            value,
        })
    }

    /// Steps 7–11.
    fn into_put(self, tags: &TagList<'a>, opts: &ParseOptions) -> Result<Put<'a>, PutError> {
        if self.timestamp.out_of_range() {
            return Err(PutError::TimestampOutOfRange {
                timestamp: self.timestamp.raw,
                value: stored_value_text(self.value),
                metric: lossy(self.metric),
                tags: tags.to_java_string(),
            });
        }
        if tags.pairs.is_empty() && opts.require_tags {
            return Err(PutError::MissingTags {
                metric: lossy(self.metric),
            });
        }
        if tags.pairs.len() > opts.max_tags {
            return Err(PutError::TooManyTags {
                count: tags.pairs.len(),
                max: opts.max_tags,
                tags: tags.to_java_string(),
            });
        }
        let metric = names::check(self.metric, &opts.allow_special_chars).map_err(|ch| {
            PutError::IllegalCharacter {
                what: NameRole::Metric,
                name: lossy(self.metric),
                ch,
            }
        })?;
        let tags = tags.validate(&opts.allow_special_chars)?;
        if too_far_ahead(self.timestamp, opts) {
            return Err(PutError::TooFarInFuture(self.timestamp.raw));
        }
        Ok(Put {
            metric,
            timestamp_ms: self.timestamp.ms,
            value: self.value,
            tags,
        })
    }
}

/// Steps 2–3: the timestamp word as a number, and above zero.
fn parse_timestamp(word: Word<'_>) -> Result<Timestamp, PutError> {
    let timestamp = timestamp::parse(&word.lossy()).map_err(PutError::TimestampText)?;
    if timestamp.raw <= 0 {
        return Err(PutError::NonPositiveTimestamp(timestamp.raw));
    }
    Ok(timestamp)
}

/// Step 11.
fn too_far_ahead(timestamp: Timestamp, opts: &ParseOptions) -> bool {
    opts.max_future_ms
        .is_some_and(|max| crate::model::beyond_now(timestamp.ms, max))
}

/// A `put` line cut into its words, its tags left as the raw text after
/// the value: what a line of a series seen before needs checked.
pub struct RawPut<'a> {
    pub metric: &'a [u8],
    /// Everything after the value word, separating spaces included.
    pub tags: &'a [u8],
    metric_word: Word<'a>,
    ts: Word<'a>,
    value: Word<'a>,
}

impl<'a> RawPut<'a> {
    /// The parts of `line` (without `\n`) if it is a `put` with at least
    /// a metric, a timestamp and a value; nothing is checked.
    pub fn split(line: &'a [u8]) -> Option<RawPut<'a>> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut words = Words::unchecked(line);
        if words.next()?.bytes != b"put" {
            return None;
        }
        let (metric_word, ts, value) = (words.next()?, words.next()?, words.next()?);
        Some(RawPut {
            metric: metric_word.bytes,
            tags: words.rest(),
            metric_word,
            ts,
            value,
        })
    }

    /// The point, if the line passes every check that does not look at
    /// its metric or tags (steps 2, 3, 5, 6, 7 and 11); `None` otherwise,
    /// and then only [`parse_put`] knows which error OpenTSDB would give.
    /// For a line whose metric and tag text once parsed, this is
    /// `parse_put`'s answer: those checks depend on that text alone.
    pub fn point(&self, opts: &ParseOptions) -> Option<DataPoint> {
        let timestamp = parse_timestamp(self.ts).ok()?;
        let value = parse_value(&self.value.lossy(), self.metric_word, timestamp).ok()?;
        if timestamp.out_of_range() || too_far_ahead(timestamp, opts) {
            return None;
        }
        Some(DataPoint {
            timestamp_ms: timestamp.ms,
            value,
        })
    }
}

/// Steps 5–6: OpenTSDB's integer/float split and its NaN/infinity check.
fn parse_value(text: &str, metric: Word<'_>, timestamp: Timestamp) -> Result<Value, PutError> {
    if number::looks_like_integer(text) {
        return number::parse_long(text).map(Value::Int).map_err(|e| {
            if is_non_finite_token(text) {
                PutError::NonFiniteToken(e)
            } else {
                PutError::InvalidValue(e)
            }
        });
    }
    let d = number::parse_double(text).map_err(PutError::InvalidValue)?;
    if !d.is_finite() {
        return Err(PutError::NanOrInfinite {
            value: non_finite_text(d),
            metric: lossy(metric),
            timestamp: timestamp.raw,
        });
    }
    Ok(Value::Float(d))
}

/// `nan`, `-NaN`, `inf`, `+Infinity` and the like, which collectd and other
/// C printf users send for non-finite values.
fn is_non_finite_token(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    ["nan", "inf", "infinity"]
        .iter()
        .any(|t| unsigned.eq_ignore_ascii_case(t))
}

/// `(float) d == d`: OpenTSDB stores such a value on 4 bytes (2.4's
/// `Tags.fitsInFloat`). Only the `bad timestamp` reply shows the difference.
fn fits_in_float(d: f64) -> bool {
    f64::from(d as f32) == d
}

/// The `value=[…]/flags` text of OpenTSDB's `bad timestamp` message: the
/// bytes it would have stored (`Arrays.toString`, signed) and their flags.
/// Integers take the smallest of 1, 2, 4 or 8 bytes; floats take 4 bytes
/// when exact as float32 (flags `0x8|3`), else 8 (flags `0x8|7`).
fn stored_value_text(value: Value) -> String {
    let (bytes, flags): (Vec<u8>, u8) = match value {
        Value::Int(v) => {
            let bytes = if let Ok(b) = i8::try_from(v) {
                b.to_be_bytes().to_vec()
            } else if let Ok(s) = i16::try_from(v) {
                s.to_be_bytes().to_vec()
            } else if let Ok(i) = i32::try_from(v) {
                i.to_be_bytes().to_vec()
            } else {
                v.to_be_bytes().to_vec()
            };
            let flags = (bytes.len() - 1) as u8;
            (bytes, flags)
        }
        Value::Float(f) if fits_in_float(f) => ((f as f32).to_bits().to_be_bytes().to_vec(), 0xB),
        Value::Float(f) => (f.to_bits().to_be_bytes().to_vec(), 0xF),
    };
    let items: Vec<String> = bytes.iter().map(|&b| (b as i8).to_string()).collect();
    format!("[{}]/{flags}", items.join(", "))
}

/// A word as quoted in a reply.
fn lossy(word: Word<'_>) -> String {
    word.lossy().into_owned()
}

/// The tags seen so far, in insertion order with distinct keys: the
/// contents of OpenTSDB's tag `HashMap`.
#[derive(Default)]
struct TagList<'a> {
    /// Eight inline slots cover OpenTSDB's default limit without touching
    /// the heap.
    pairs: SmallVec<[(Word<'a>, Word<'a>); 8]>,
    /// Key positions, built only for lines with many tags so that a hostile
    /// line of thousands of tags costs linear, not quadratic, time.
    index: Option<HashMap<&'a [u8], usize>>,
}

impl<'a> TagList<'a> {
    /// Above this many tags, duplicate lookups go through `index`.
    const LINEAR_SCAN_MAX: usize = 32;

    /// OpenTSDB's `Tags.parse` of one tag word into the map.
    fn insert(&mut self, word: Word<'a>) -> Result<(), PutError> {
        let (key, value) =
            split_tag(word).ok_or_else(|| PutError::InvalidTag { word: lossy(word) })?;
        if let Some(i) = self.position(key.bytes) {
            if self.pairs[i].1.bytes == value.bytes {
                return Ok(());
            }
            return Err(PutError::DuplicateTag {
                word: lossy(word),
                tags: self.to_java_string(),
            });
        }
        if let Some(index) = &mut self.index {
            index.insert(key.bytes, self.pairs.len());
        }
        self.pairs.push((key, value));
        if self.index.is_none() && self.pairs.len() > Self::LINEAR_SCAN_MAX {
            self.index = Some(
                self.pairs
                    .iter()
                    .enumerate()
                    .map(|(i, &(k, _))| (k.bytes, i))
                    .collect(),
            );
        }
        Ok(())
    }

    fn position(&self, key: &[u8]) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.pairs.iter().position(|&(k, _)| k.bytes == key),
        }
    }

    fn lossy_pairs(&self) -> Vec<(String, String)> {
        self.pairs
            .iter()
            .map(|&(k, v)| (lossy(k), lossy(v)))
            .collect()
    }

    fn to_java_string(&self) -> String {
        hashmap_order::java_map_string(&self.lossy_pairs())
    }

    /// Step 10: every key and value in the allowed set. The names come back
    /// as `&str`, in line order.
    fn validate(&self, special: &str) -> Result<Vec<(&'a str, &'a str)>, PutError> {
        let mut tags = Vec::with_capacity(self.pairs.len());
        for (i, &pair) in self.pairs.iter().enumerate() {
            match check_tag(pair, special) {
                Ok(tag) => tags.push(tag),
                Err(error) => return Err(self.first_in_java_order(i, error, special)),
            }
        }
        Ok(tags)
    }

    /// OpenTSDB reports the first offending tag in `HashMap` order, which
    /// may come before `found`, the first offender in line order.
    fn first_in_java_order(&self, found: usize, error: PutError, special: &str) -> PutError {
        let keys: Vec<String> = self.pairs.iter().map(|&(k, _)| lossy(k)).collect();
        hashmap_order::iteration_order(&keys)
            .into_iter()
            .take_while(|&i| i != found)
            .find_map(|i| check_tag(self.pairs[i], special).err())
            .unwrap_or(error)
    }
}

/// One tag's characters, the key checked before the value as OpenTSDB does.
fn check_tag<'a>(
    (key, value): (Word<'a>, Word<'a>),
    special: &str,
) -> Result<(&'a str, &'a str), PutError> {
    let checked_key = names::check(key, special).map_err(|ch| PutError::IllegalCharacter {
        what: NameRole::TagKey {
            value: lossy(value),
        },
        name: lossy(key),
        ch,
    })?;
    let checked_value = names::check(value, special).map_err(|ch| PutError::IllegalCharacter {
        what: NameRole::TagValue { key: lossy(key) },
        name: lossy(value),
        ch,
    })?;
    Ok((checked_key, checked_value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float32_fit_and_stored_bytes() {
        assert!(fits_in_float(42.5));
        assert!(fits_in_float(f64::INFINITY));
        assert!(!fits_in_float(0.1));
        assert!(!fits_in_float(1e39));
        assert_eq!(stored_value_text(Value::Int(42)), "[42]/0");
        assert_eq!(stored_value_text(Value::Int(-1)), "[-1]/0");
        assert_eq!(stored_value_text(Value::Int(300)), "[1, 44]/1");
        assert_eq!(stored_value_text(Value::Int(70000)), "[0, 1, 17, 112]/3");
        assert_eq!(
            stored_value_text(Value::Int(i64::MAX)),
            "[127, -1, -1, -1, -1, -1, -1, -1]/7"
        );
        assert_eq!(stored_value_text(Value::Float(42.5)), "[66, 42, 0, 0]/11");
        assert_eq!(
            stored_value_text(Value::Float(0.1)),
            "[63, -71, -103, -103, -103, -103, -103, -102]/15"
        );
    }
}
