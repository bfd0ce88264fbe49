//! Invariants of [`parse_line`] on arbitrary bytes, shared by the
//! `parse_line` fuzz target (`fuzz/fuzz_targets/parse_line.rs`) and a unit
//! test that replays the committed corpus (`fuzz/corpus/parse_line/`), so
//! the corpus is exercised on stable Rust too.
//!
//! Every input is parsed under a few option sets (defaults, strict
//! OpenTSDB-like, permissive). A panic is a failure, and so is a broken
//! invariant:
//! - an accepted `put` is well-formed (positive in-range timestamp, finite
//!   value, distinct tag keys, at most `max_tags`) and its
//!   [`Put::to_line`] parses back to an equal `Put`;
//! - a refusal has a kind from the allow-list ([`KINDS`] minus
//!   `line_too_long`, which only the connection produces) and, for input
//!   without `\n`, is exactly one non-empty line.

use super::{parse_line, Command, ParseOptions, Put, KINDS};

/// Checks every invariant for `data` as one line; panics on a violation.
pub fn check_parse_invariants(data: &[u8]) {
    for opts in option_sets() {
        check_with(data, &opts);
    }
}

/// Defaults, strict OpenTSDB-like, and permissive: the option sets every
/// parser fuzz target checks under.
pub(crate) fn option_sets() -> [ParseOptions; 3] {
    [
        ParseOptions::default(),
        ParseOptions {
            max_tags: 2,
            require_tags: true,
            allow_special_chars: String::new(),
            max_future_ms: None,
        },
        ParseOptions {
            max_tags: 64,
            require_tags: false,
            allow_special_chars: ":@# \0\u{FFFD}=".to_owned(),
            max_future_ms: None,
        },
    ]
}

fn check_with(data: &[u8], opts: &ParseOptions) {
    match parse_line(data, opts) {
        Ok(Command::Put(put)) => check_put(&put, opts),
        Ok(_) => {}
        Err(error) => {
            let kind = error.kind();
            assert!(
                kind != "line_too_long" && KINDS.contains(&kind),
                "kind {kind:?} not allowed for {data:?}"
            );
            let reply = error.to_string();
            assert!(!reply.is_empty(), "empty reply for {data:?}");
            if !data.contains(&b'\n') {
                assert!(
                    !reply.contains('\n'),
                    "multi-line reply {reply:?} for {data:?}"
                );
            }
        }
    }
}

/// An accepted `put` is well-formed and its line parses back to it.
pub(crate) fn check_put(put: &Put<'_>, opts: &ParseOptions) {
    assert!(
        put.timestamp_ms > 0 && put.timestamp_ms <= crate::model::MAX_TIMESTAMP_MS,
        "timestamp {} out of range",
        put.timestamp_ms
    );
    assert!(
        put.value.as_f64().is_finite(),
        "non-finite value {:?}",
        put.value
    );
    assert!(!put.metric.is_empty(), "empty metric");
    assert!(
        put.tags.len() <= opts.max_tags,
        "{} tags over the limit",
        put.tags.len()
    );
    for (i, (k, v)) in put.tags.iter().enumerate() {
        assert!(!k.is_empty() && !v.is_empty(), "empty tag part in {put:?}");
        assert!(
            put.tags[..i].iter().all(|(other, _)| other != k),
            "repeated key {k:?}"
        );
    }
    let line = put.to_line();
    match parse_line(line.as_bytes(), opts) {
        Ok(Command::Put(again)) => assert_eq!(&again, put, "round trip through {line:?}"),
        other => panic!("{line:?} from {put:?} parsed as {other:?}"),
    }
    let key = put.series_key();
    assert_eq!(key.metric(), put.metric);
    assert_eq!(key.tags().count(), put.tags.len());
}

/// Runs `check` on every file of `fuzz/corpus/<target>/`, as the fuzz
/// target `target` would, and returns how many there were: the replay
/// test of every fuzz target.
#[cfg(test)]
pub(crate) fn replay_corpus(target: &str, check: impl Fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut replayed = 0;
    for entry in entries {
        let path = entry
            .map(|e| e.path())
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        check(&data);
        replayed += 1;
    }
    replayed
}

/// [`replay_corpus`], each file followed by some of the variants libFuzzer
/// would try first from it ([`mutants`]), so a JSON target's invariants
/// meet near-misses of every seed on stable Rust too.
#[cfg(test)]
pub(crate) fn replay_corpus_and_mutants(target: &str, check: fn(&[u8])) -> usize {
    replay_corpus(target, |seed| {
        check(seed);
        for mutant in mutants(seed, 24) {
            check(&mutant);
        }
    })
}

/// Variants of `data`: truncations, flipped and dropped bytes, and
/// JSON-ish tokens spliced in, picked by a fixed pseudo-random sequence
/// so every run tries the same ones.
#[cfg(test)]
fn mutants(data: &[u8], count: usize) -> Vec<Vec<u8>> {
    const TOKENS: &[&[u8]] = &[
        b"null",
        b"-1",
        b"1e400",
        b"9223372036854775808",
        b"\"\"",
        b"[]",
        b"{}",
        b"\"\\u0000\"",
        b"\"1dc-sum-zero\"",
        b"\"1ms-sum\"",
        b"\"*\"",
        b"\"\xc3\xa9\"",
        b",",
        b"\"",
    ];
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ data.len() as u64;
    let mut next = move |bound: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % bound.max(1) as u64) as usize
    };
    (0..count)
        .map(|_| {
            let mut m = data.to_vec();
            let at = next(m.len() + 1);
            match next(4) {
                0 => m.truncate(at),
                1 if at < m.len() => m[at] ^= 1 << next(8),
                2 if at < m.len() => {
                    m.remove(at);
                }
                _ => {
                    let token = TOKENS[next(TOKENS.len())];
                    m.splice(at..at, token.iter().copied());
                }
            }
            m
        })
        .collect()
}
