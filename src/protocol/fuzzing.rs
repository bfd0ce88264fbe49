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

fn option_sets() -> [ParseOptions; 3] {
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

fn check_put(put: &Put<'_>, opts: &ParseOptions) {
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
