//! Parser tables: the conformance vectors of `protocol/vectors/telnet.jsonl`,
//! one pinned reply per error variant, and the fuzz corpus replayed through
//! the fuzz target's invariants.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::*;
use crate::model::Value;

fn repo_path(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// One line of `telnet.jsonl`; the format is described in
/// `protocol/README.md`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    name: String,
    line: String,
    /// The raw bytes, for lines that are not UTF-8; `line` is then their
    /// lossy decoding, which draws the same reply.
    line_bytes: Option<Vec<u8>>,
    #[serde(default)]
    options: VectorOptions,
    expect: String,
    point: Option<PointSpec>,
    reply: Option<String>,
    command: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorOptions {
    max_tags: Option<usize>,
    require_tags: Option<bool>,
    allow_special_chars: Option<String>,
}

impl VectorOptions {
    fn parse_options(&self) -> ParseOptions {
        let defaults = ParseOptions::default();
        ParseOptions {
            max_tags: self.max_tags.unwrap_or(defaults.max_tags),
            require_tags: self.require_tags.unwrap_or(defaults.require_tags),
            allow_special_chars: self
                .allow_special_chars
                .clone()
                .unwrap_or(defaults.allow_special_chars),
            max_future_ms: defaults.max_future_ms,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PointSpec {
    metric: String,
    timestamp_ms: i64,
    value: serde_json::Number,
    int: bool,
    tags: BTreeMap<String, String>,
}

fn load_vectors() -> Vec<Vector> {
    let path = repo_path("protocol/vectors/telnet.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("telnet.jsonl line {}: {e}", i + 1))
        })
        .collect()
}

fn check_vector(v: &Vector) -> Result<(), String> {
    let bytes = match &v.line_bytes {
        Some(raw) => {
            if String::from_utf8_lossy(raw) != v.line {
                return Err("line is not the lossy decoding of line_bytes".into());
            }
            raw.as_slice()
        }
        None => v.line.as_bytes(),
    };
    let got = parse_line(bytes, &v.options.parse_options());
    match (v.expect.as_str(), &got) {
        ("store", Ok(Command::Put(put))) => {
            let spec = v.point.as_ref().ok_or("store vector without point")?;
            let want_value = if spec.int {
                Value::Int(spec.value.as_i64().ok_or("int value is not an i64")?)
            } else {
                Value::Float(spec.value.as_f64().ok_or("value is not a number")?)
            };
            let got_tags: BTreeMap<String, String> = put
                .tags
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let same = put.metric == spec.metric
                && put.timestamp_ms == spec.timestamp_ms
                && put.value == want_value
                && put.value.is_int() == spec.int
                && got_tags == spec.tags
                && got_tags.len() == put.tags.len();
            if same {
                Ok(())
            } else {
                Err(format!("stored {put:?}, want {spec:?}"))
            }
        }
        ("reply", Err(e)) => {
            let want = v.reply.as_deref().ok_or("reply vector without reply")?;
            if e.to_string() == want {
                Ok(())
            } else {
                Err(format!("replied {:?}, want {want:?}", e.to_string()))
            }
        }
        ("command", Ok(cmd)) => {
            let name = match cmd {
                Command::Version => "version",
                Command::Help => "help",
                Command::Stats => "stats",
                Command::DropCaches => "dropcaches",
                Command::Exit => "exit",
                Command::DieDieDie => "diediedie",
                Command::Put(_) => "put",
                Command::Auth(Some(_)) => "auth",
                Command::Auth(None) => "auth-malformed",
            };
            if Some(name) == v.command.as_deref() {
                Ok(())
            } else {
                Err(format!("command {name}, want {:?}", v.command))
            }
        }
        (expect, _) => Err(format!("expected {expect}, got {got:?}")),
    }
}

#[test]
fn conformance_vectors() {
    let vectors = load_vectors();
    assert!(vectors.len() >= 120, "only {} vectors", vectors.len());
    let mut names = std::collections::HashSet::new();
    let failures: Vec<String> = vectors
        .iter()
        .filter_map(|v| {
            if !names.insert(v.name.as_str()) {
                return Some(format!("{}: duplicate name", v.name));
            }
            check_vector(v).err().map(|e| format!("{}: {e}", v.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} failing vectors:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn vectors_satisfy_the_fuzz_invariants() {
    for v in load_vectors() {
        fuzzing::check_parse_invariants(v.line_bytes.as_deref().unwrap_or(v.line.as_bytes()));
    }
}

#[test]
fn fuzz_corpus_replays_cleanly() {
    let replayed = fuzzing::replay_corpus("parse_line", fuzzing::check_parse_invariants);
    assert!(replayed >= 120, "only {replayed} corpus files");
}

fn reply(line: &str) -> String {
    reply_with(line, &ParseOptions::default())
}

fn reply_with(line: &str, opts: &ParseOptions) -> String {
    match parse_line(line.as_bytes(), opts) {
        Ok(cmd) => panic!("{line:?} was accepted as {cmd:?}"),
        Err(e) => e.to_string(),
    }
}

/// One line per reply text rtsd can send for a refused line.
#[test]
fn every_reply_text_is_pinned() {
    let strict = ParseOptions {
        max_tags: 1,
        require_tags: true,
        ..ParseOptions::default()
    };
    let cases: &[(&str, &ParseOptions, &str)] = &[
        ("nope", &ParseOptions::default(), "unknown command: nope.  Try `help'."),
        ("put", &ParseOptions::default(), "put: illegal argument: not enough arguments (need least 4, got 0)"),
        ("put m x 1", &ParseOptions::default(), "put: invalid value: Invalid character 'x' in x"),
        ("put m 0 1", &ParseOptions::default(), "put: illegal argument: invalid timestamp: 0"),
        ("put m 1 1 k", &ParseOptions::default(), "put: illegal argument: invalid tag: k"),
        ("put m 1 1 k=a k=b", &ParseOptions::default(), "put: illegal argument: duplicate tag: k=b, tags={k=a}"),
        ("put m 1 x", &ParseOptions::default(), "put: invalid value: Invalid character 'x' in x"),
        ("put m 1 nan", &ParseOptions::default(), "put: invalid value: Invalid character 'n' in nan"),
        (
            "put m 1 1e999",
            &ParseOptions::default(),
            "put: illegal argument: value is NaN or Infinite: Infinity for metric=m timestamp=1",
        ),
        (
            "put m 99999999999999 1.5",
            &ParseOptions::default(),
            "put: illegal argument: bad timestamp=99999999999999 when trying to add value=[63, -64, 0, 0]/11 to metric=m, tags={}",
        ),
        ("put m 1 1", &strict, "put: illegal argument: Need at least one tag (metric=m, tags={})"),
        (
            "put m 1 1 a=1 b=2",
            &strict,
            "put: illegal argument: Too many tags: 2 maximum allowed: 1, tags: {a=1, b=2}",
        ),
        ("put m! 1 1", &ParseOptions::default(), "put: illegal argument: Invalid metric name (\"m!\"): illegal character: !"),
        (
            "put m 1 1 k!=v",
            &ParseOptions::default(),
            "put: illegal argument: Invalid tag name with value [v] (\"k!\"): illegal character: !",
        ),
        (
            "put m 1 1 k=v!",
            &ParseOptions::default(),
            "put: illegal argument: Invalid tag value with key [k] (\"v!\"): illegal character: !",
        ),
        ("rollup", &ParseOptions::default(), "rollup: illegal argument: not enough arguments (need least 7, got 0)"),
        ("rollup 1h-sum m 1 1 k=v", &ParseOptions::default(), "rollup: illegal argument: No rollup or aggregations were configured"),
        (
            "histogram",
            &ParseOptions::default(),
            "histogram: illegal argument: Histogram storage has not been enabled. Check the 'tsd.core.histograms.config' configuration.",
        ),
    ];
    for &(line, opts, want) in cases {
        assert_eq!(reply_with(line, opts), want, "{line:?}");
    }
    assert_eq!(
        line_too_long(262_144).to_string(),
        "line too long: maximum allowed: 262144"
    );
}

#[test]
fn constant_replies() {
    assert_eq!(
        HELP_REPLY,
        "available commands: stats dropcaches version exit help put rollup histogram \n"
    );
    assert_eq!(DROPCACHES_REPLY, "Caches dropped.\n");
    assert!(DIEDIEDIE_REPLY.starts_with("diediedie: refused"));
    for reply in [HELP_REPLY, DROPCACHES_REPLY, DIEDIEDIE_REPLY] {
        assert_eq!(reply.matches('\n').count(), 1, "{reply:?}");
        assert!(reply.ends_with('\n'), "{reply:?}");
    }
}

#[test]
fn kinds_label_every_reason() {
    let strict = ParseOptions {
        max_tags: 1,
        require_tags: true,
        ..ParseOptions::default()
    };
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("nope", "unknown_command", None),
        ("put m", "not_enough_arguments", Some("illegal_arguments")),
        ("put m x 1", "invalid_timestamp", Some("invalid_values")),
        ("put m -1 1", "invalid_timestamp", Some("illegal_arguments")),
        (
            "put m 99999999999999 1",
            "invalid_timestamp",
            Some("illegal_arguments"),
        ),
        ("put m 1 1 k", "invalid_tag", Some("illegal_arguments")),
        (
            "put m 1 1 k=a k=b",
            "duplicate_tag",
            Some("illegal_arguments"),
        ),
        ("put m 1 1.2.3", "invalid_value", Some("invalid_values")),
        ("put m 1 -nan", "nan_or_inf", Some("invalid_values")),
        ("put m 1 -Infinity", "nan_or_inf", Some("invalid_values")),
        ("put m 1 1e999", "nan_or_inf", Some("illegal_arguments")),
        ("put m 1 1", "missing_tags", Some("illegal_arguments")),
        (
            "put m 1 1 a=1 b=2",
            "too_many_tags",
            Some("illegal_arguments"),
        ),
        (
            "put m: 1 1 a=1",
            "illegal_character",
            Some("illegal_arguments"),
        ),
        (
            "rollup SUM m 1 1 a=1",
            "not_enabled",
            Some("illegal_arguments"),
        ),
        ("histogram", "not_enabled", Some("illegal_arguments")),
    ];
    for &(line, kind, rpc) in cases {
        let Err(e) = parse_line(line.as_bytes(), &strict) else {
            panic!("{line:?} was accepted");
        };
        assert_eq!(e.kind(), kind, "{line:?}");
        assert_eq!(e.rpc_error_type(), rpc, "{line:?}");
        assert!(KINDS.contains(&e.kind()));
    }
    let long = line_too_long(1024);
    assert_eq!(long.kind(), "line_too_long");
    assert_eq!(long.rpc_error_type(), None);
}

#[test]
fn typical_line_parses_to_borrowed_fields() {
    let line = b"put sys.cpu.user 1700000000 42.5 host=web01 cpu=0";
    let Ok(Command::Put(put)) = parse_line(line, &ParseOptions::default()) else {
        panic!("typical line refused");
    };
    assert_eq!(
        put,
        Put {
            metric: "sys.cpu.user",
            timestamp_ms: 1_700_000_000_000,
            value: Value::Float(42.5),
            tags: vec![("host", "web01"), ("cpu", "0")],
        }
    );
    assert_eq!(
        put.series_key().to_string(),
        "sys.cpu.user{cpu=0,host=web01}"
    );
    assert_eq!(
        put.to_line(),
        "put sys.cpu.user 1700000000 42.5 host=web01 cpu=0"
    );
}

#[test]
fn to_line_writes_canonical_timestamps_and_values() {
    let put = |timestamp_ms, value| Put {
        metric: "m",
        timestamp_ms,
        value,
        tags: vec![("k", "v")],
    };
    assert_eq!(
        put(1_700_000_000_000, Value::Int(-7)).to_line(),
        "put m 1700000000 -7 k=v"
    );
    assert_eq!(
        put(1_700_000_000_250, Value::Float(1e20)).to_line(),
        "put m 1700000000250 1e20 k=v"
    );
    assert_eq!(
        put(4_294_967_295_000, Value::Float(3.0)).to_line(),
        "put m 4294967295 3.0 k=v"
    );
    // A whole second past 2^32 - 1 seconds must be written in ms.
    assert_eq!(
        put(5_000_000_000_000, Value::Int(1)).to_line(),
        "put m 5000000000000 1 k=v"
    );
    // Below 2^32 ms, a non-whole second needs the fraction form.
    assert_eq!(
        put(1_500, Value::Float(-0.0)).to_line(),
        "put m 1.500 -0.0 k=v"
    );
    assert_eq!(
        put(9_999_999_999, Value::Float(1e-7)).to_line(),
        "put m 9999999999 1e-7 k=v"
    );
}

#[test]
fn many_tags_are_deduplicated_in_linear_time() {
    // Thousands of distinct tags must not cost quadratic time; the limit
    // check then refuses the line.
    let tags: String = (0..20_000).map(|i| format!(" k{i}=v")).collect();
    let line = format!("put m 1 1{tags} k7=v k7=w");
    let opts = ParseOptions {
        max_tags: 100_000,
        ..ParseOptions::default()
    };
    let e = reply_with(&line, &opts);
    assert!(
        e.starts_with("put: illegal argument: duplicate tag: k7=w, tags={"),
        "{}",
        &e[..80]
    );
    let line = format!("put m 1 1{tags}");
    let Ok(Command::Put(put)) = parse_line(line.as_bytes(), &opts) else {
        panic!("20000 tags refused");
    };
    assert_eq!(put.tags.len(), 20_000);
    assert!(reply(&line)
        .starts_with("put: illegal argument: Too many tags: 20000 maximum allowed: 8, tags: {"));
}

#[test]
fn a_reply_quotes_at_most_a_few_hundred_bytes_of_the_line() {
    let opts = ParseOptions::default();
    // A 64 KiB metric with an illegal character at its end, and a 64 KiB
    // unknown command word: both errors quote the whole word.
    let metric = format!("{}!", "é".repeat(32 * 1024));
    let put = format!("put {metric} 1700000000 1 host=a");
    let word = "x".repeat(64 * 1024);
    for line in [put.as_str(), word.as_str()] {
        let Err(e) = parse_line(line.as_bytes(), &opts) else {
            panic!("accepted");
        };
        let reply = e.reply();
        assert!(reply.len() <= MAX_REPLY_BYTES, "{}", reply.len());
        assert!(reply.ends_with("..."), "{reply}");
        assert!(e.to_string().starts_with(reply.trim_end_matches("...")));
    }
    // A short error is the Display text, whole.
    let Err(e) = parse_line(b"put m 1700000000 x host=a", &opts) else {
        panic!("accepted");
    };
    assert_eq!(e.reply(), e.to_string());
}

/// A line of a series the connection's cache knows skips the tag checks;
/// it must still get the parser's answer. Each vector's metric and tags
/// are first put with a valid timestamp and value, then the vector's own
/// line goes through the cache: what the cache stores, the parser stores.
#[test]
fn vectors_answer_the_same_through_a_cache_that_knows_their_series() {
    let mut hits = 0;
    for v in load_vectors() {
        let bytes = v
            .line_bytes
            .clone()
            .unwrap_or_else(|| v.line.clone().into_bytes());
        let opts = v.options.parse_options();
        let Some(raw) = put::RawPut::split(&bytes) else {
            continue;
        };
        let primer = [b"put ", raw.metric, b" 1700000000 1", raw.tags].concat();
        let Ok(Command::Put(known)) = parse_line(&primer, &opts) else {
            continue;
        };
        let mut cache = SeriesCache::default();
        cache.remember(&primer, &known.series_key());
        let Some(sample) = cache.put(&bytes, &opts) else {
            continue;
        };
        hits += 1;
        match parse_line(&bytes, &opts) {
            Ok(Command::Put(put)) => {
                assert_eq!(sample.series, put.series_key(), "{}", v.name);
                assert_eq!(sample.point.timestamp_ms, put.timestamp_ms, "{}", v.name);
                assert_eq!(sample.point.value, put.value, "{}", v.name);
            }
            other => panic!("{}: cached a point the parser answers {other:?}", v.name),
        }
    }
    assert!(hits >= 20, "only {hits} vectors went through the cache");
}
