//! The series a connection has put before, by the text that names them.
//!
//! A collector sends the same few series over and over, each line
//! spelling its metric and tags the same way. Checking those tags
//! (splitting, duplicate keys, allowed characters, sorting) and building
//! the series key is most of what a `put` costs, and it gives the same
//! answer every time for the same text. So once a line has parsed, its
//! metric word and the raw text after its value are remembered with the
//! key they gave; a later line with the same text reuses the key and only
//! its timestamp and value are checked ([`RawPut::point`]). Any failure
//! there sends the line through the full parse, so a refused line gets
//! the same reply either way.
//!
//! Bounded per connection, in series and in bytes of text; a full cache
//! takes no more. Every [`TRIAL`] lookups it checks that at least half of
//! them hit. A connection with more distinct series than fit (a relay, a
//! million series) fails that, and so does one whose series have moved
//! on: the cache is then dropped, and lines take the full parse without
//! looking here for [`REST`] lines before it fills again. Filling a cache
//! nothing will hit costs more than it saves: on the load bench's
//! million series, refilling a full cache over and over made the
//! connection threads take 80% more CPU.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use crate::model::{Sample, SeriesKey};

use super::put::RawPut;
use super::ParseOptions;

/// Series a cache holds at most.
const MAX_SERIES: usize = 32 * 1024;

/// Bytes of metric and tag text a cache holds at most; 128 bytes a series
/// at [`MAX_SERIES`], so only unusually long lines hit this bound first.
const MAX_TEXT_BYTES: usize = MAX_SERIES * 128;

/// Lookups between two checks that the cache pays.
const TRIAL: u32 = 64 * 1024;

/// Lines that skip the cache after a trial it failed.
const REST: u32 = 16 * TRIAL;

/// One connection's series, by their text.
#[derive(Default)]
pub struct SeriesCache {
    /// By hash of the text; when two texts share a hash, the first keeps
    /// the slot and the second always takes the full parse.
    entries: HashMap<u64, Entry, foldhash::fast::FixedState>,
    /// The text of every entry, back to back.
    text: Vec<u8>,
    hasher: foldhash::fast::RandomState,
    /// Lookups and hits in the current trial.
    lookups: u32,
    hits: u32,
    /// Lines still to skip the cache after a failed trial.
    resting: u32,
}

struct Entry {
    /// Where the metric starts in `text`; its tag text follows it.
    start: usize,
    metric_len: usize,
    tags_len: usize,
    key: SeriesKey,
}

impl SeriesCache {
    /// The sample of `line` (without `\n`) if it is a `put` of a series
    /// remembered here that passes every other check; `None` sends the
    /// line to [`super::parse_line`].
    pub fn put(&mut self, line: &[u8], opts: &ParseOptions) -> Option<Sample> {
        if self.resting > 0 {
            self.resting -= 1;
            return None;
        }
        let raw = RawPut::split(line)?;
        self.lookups += 1;
        if self.lookups == TRIAL {
            let paid = self.hits >= TRIAL / 2;
            (self.lookups, self.hits) = (0, 0);
            if !paid {
                self.entries = HashMap::default();
                self.text = Vec::new();
                self.resting = REST;
                return None;
            }
        }
        let entry = self.entries.get(&self.hash(&raw))?;
        let text = &self.text[entry.start..];
        let (metric, tags) = text.split_at(entry.metric_len);
        if metric != raw.metric || &tags[..entry.tags_len] != raw.tags {
            return None;
        }
        let sample = Sample {
            series: entry.key.clone(),
            point: raw.point(opts)?,
        };
        self.hits += 1;
        Some(sample)
    }

    /// Remembers that `line`, a `put` that parsed, is of series `key`.
    pub fn remember(&mut self, line: &[u8], key: &SeriesKey) {
        if self.resting > 0 || self.entries.len() >= MAX_SERIES {
            return;
        }
        let Some(raw) = RawPut::split(line) else {
            return;
        };
        if self.text.len() + raw.metric.len() + raw.tags.len() > MAX_TEXT_BYTES {
            return;
        }
        let hash = self.hash(&raw);
        if self.entries.contains_key(&hash) {
            return;
        }
        let start = self.text.len();
        self.text.extend_from_slice(raw.metric);
        self.text.extend_from_slice(raw.tags);
        self.entries.insert(
            hash,
            Entry {
                start,
                metric_len: raw.metric.len(),
                tags_len: raw.tags.len(),
                key: key.clone(),
            },
        );
    }

    fn hash(&self, raw: &RawPut<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(raw.metric);
        h.write_usize(raw.metric.len());
        h.write(raw.tags);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataPoint, Value};
    use crate::protocol::{parse_line, Command, LineError};

    /// What the connection does with a line: the cache first, then the
    /// full parse, remembering what it parsed.
    fn ingest(
        cache: &mut SeriesCache,
        line: &str,
        opts: &ParseOptions,
    ) -> Result<Sample, LineError> {
        if let Some(sample) = cache.put(line.as_bytes(), opts) {
            return Ok(sample);
        }
        match parse_line(line.as_bytes(), opts)? {
            Command::Put(put) => {
                let series = put.series_key();
                cache.remember(line.as_bytes(), &series);
                Ok(Sample {
                    series,
                    point: DataPoint {
                        timestamp_ms: put.timestamp_ms,
                        value: put.value,
                    },
                })
            }
            other => panic!("not a put: {other:?}"),
        }
    }

    fn full(line: &str, opts: &ParseOptions) -> Result<Sample, LineError> {
        ingest(&mut SeriesCache::default(), line, opts)
    }

    #[test]
    fn a_remembered_series_gives_what_the_full_parse_gives() {
        let opts = ParseOptions {
            max_future_ms: Some(86_400_000),
            ..ParseOptions::default()
        };
        let mut cache = SeriesCache::default();
        let first = "put sys.cpu 1700000000 1 host=a cpu=0";
        assert!(cache.put(first.as_bytes(), &opts).is_none());
        ingest(&mut cache, first, &opts).expect("parses");
        let lines = [
            "put sys.cpu 1700000010 2 host=a cpu=0",
            "put sys.cpu 1700000010.5 2.5 host=a cpu=0\r",
            "put sys.cpu 1700000020000 -7 host=a cpu=0",
            // Every non-tag check still refuses, with the full parse's reply.
            "put sys.cpu 0 1 host=a cpu=0",
            "put sys.cpu -5 1 host=a cpu=0",
            "put sys.cpu 17x 1 host=a cpu=0",
            "put sys.cpu 1700000000 1.2.3 host=a cpu=0",
            "put sys.cpu 1700000000 NaN host=a cpu=0",
            "put sys.cpu 1700000000 nan host=a cpu=0",
            "put sys.cpu 1700000000 99999999999999999999 host=a cpu=0",
            "put sys.cpu 99999999999999 1 host=a cpu=0",
            "put sys.cpu 9999999999999 1 host=a cpu=0",
            "put sys.cpu 17\u{e9} 1 host=a cpu=0",
            // Other text is another series, or an error of its own.
            "put sys.cpu 1700000000 1 cpu=0 host=a",
            "put sys.cpu 1700000000 1 host=a  cpu=0",
            "put sys.cpu 1700000000 1 host=a cpu=0 cpu=1",
            "put sys.cpu 1700000000 1 host=a",
            "put sys.cpux 1700000000 1 host=a cpu=0",
            "put sys.cpu 1700000000",
        ];
        for line in lines {
            assert_eq!(ingest(&mut cache, line, &opts), full(line, &opts), "{line}");
        }
        let hit = cache
            .put(lines[0].as_bytes(), &opts)
            .expect("a remembered series");
        assert_eq!(hit.point.value, Value::Int(2));
        assert_eq!(hit.series.to_string(), "sys.cpu{cpu=0,host=a}");
    }

    #[test]
    fn a_full_cache_takes_no_more() {
        let opts = ParseOptions::default();
        let mut cache = SeriesCache::default();
        let line = |i: usize| format!("put m 1700000000 1 host=h{i}");
        for i in 0..=MAX_SERIES {
            ingest(&mut cache, &line(i), &opts).expect("parses");
        }
        assert_eq!(cache.entries.len(), MAX_SERIES);
        assert!(cache.put(line(0).as_bytes(), &opts).is_some());
        assert!(cache.put(line(MAX_SERIES).as_bytes(), &opts).is_none());
    }

    #[test]
    fn a_cache_that_does_not_pay_rests_then_fills_again() {
        let opts = ParseOptions::default();
        let mut cache = SeriesCache::default();
        // Four times as many series as fit, round and round: a quarter hit.
        let line = |i: u32| format!("put m 1700000000 1 host=h{}", i % (4 * MAX_SERIES as u32));
        let mut i = 0;
        while cache.resting == 0 {
            ingest(&mut cache, &line(i), &opts).expect("parses");
            i += 1;
        }
        assert_eq!(i, TRIAL);
        assert!(cache.entries.is_empty());
        for _ in 1..REST {
            ingest(&mut cache, &line(i), &opts).expect("parses");
            i += 1;
        }
        assert!(cache.entries.is_empty());
        // The last line of the rest is remembered again.
        ingest(&mut cache, &line(i), &opts).expect("parses");
        assert!(cache.put(line(i).as_bytes(), &opts).is_some());
    }
}
