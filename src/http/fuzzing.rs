//! Invariants of the `/api/put` body parser ([`parse_body`]) and its
//! per-point checks on arbitrary bytes, shared by the `put_body` fuzz
//! target (`fuzz/fuzz_targets/put_body.rs`) and a unit test that replays
//! its corpus (`fuzz/corpus/put_body/`) on stable Rust.
//!
//! A panic is a failure, and so is a broken invariant:
//! - a refused body is a 400 with one of OpenTSDB's whole-request messages;
//! - an accepted body has at least one point, and each point's `?details`
//!   echo is JSON that parses back to the same point;
//! - under each of the telnet fuzz target's option sets, a point is
//!   refused with an allow-listed kind and a one-line message, or accepted
//!   as a well-formed sample (in-range timestamp, finite value, distinct
//!   keys, at most `max_tags`) that the telnet parser, given the same
//!   point as a line, takes as the same sample: both sides store alike.

use axum::http::StatusCode;

use super::put_body::{parse_body, IncomingPoint};
use crate::model::Sample;
use crate::protocol::fuzzing::{check_put, option_sets};
use crate::protocol::{ParseOptions, Put, KINDS};

/// The whole-request refusals of `/api/put`.
const BODY_ERRORS: &[&str] = &[
    "Missing request content",
    "The JSON must start as an object or an array",
    "No datapoints found in content",
    "Unable to parse the given JSON",
];

/// Kinds only the HTTP checks give; the rest are the telnet parser's.
const HTTP_KINDS: &[&str] = &[
    "empty_metric",
    "invalid_timestamp",
    "empty_value",
    "missing_tags",
];

/// Checks every invariant for `data` as a body; panics on a violation.
pub fn check_put_invariants(data: &[u8]) {
    let points = match parse_body(data) {
        Ok(points) => points,
        Err(e) => {
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{e:?} for {data:?}");
            assert!(
                BODY_ERRORS.contains(&e.message.as_str()),
                "message {:?} for {data:?}",
                e.message
            );
            return;
        }
    };
    assert!(!points.is_empty(), "no points accepted from {data:?}");
    for point in &points {
        let echo = point.echo();
        match parse_body(echo.as_bytes()) {
            Ok(again) => assert_eq!(
                again,
                std::slice::from_ref(point),
                "round trip through {echo}"
            ),
            Err(e) => panic!("echo {echo} of {point:?} refused: {e:?}"),
        }
        for opts in option_sets() {
            check_point(point, &opts);
        }
    }
}

fn check_point(point: &IncomingPoint<'_>, opts: &ParseOptions) {
    let sample = match point.validate(opts) {
        Ok(sample) => sample,
        Err(r) => {
            assert!(
                HTTP_KINDS.contains(&r.kind)
                    || (r.kind != "line_too_long" && KINDS.contains(&r.kind)),
                "kind {:?} for {point:?}",
                r.kind
            );
            assert!(
                !r.message.is_empty() && !r.message.contains('\n'),
                "message {:?} for {point:?}",
                r.message
            );
            return;
        }
    };
    // The telnet side's invariants on the same point: it is well-formed
    // and its line parses back to it, so both sides store alike.
    let Sample { series, point: p } = &sample;
    let put = Put {
        metric: series.metric(),
        timestamp_ms: p.timestamp_ms,
        value: p.value,
        tags: series.tags().collect(),
    };
    check_put(&put, opts);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_and_its_mutants_replay() {
        let seeds =
            crate::protocol::fuzzing::replay_corpus_and_mutants("put_body", check_put_invariants);
        assert!(seeds >= 40, "only {seeds} corpus files");
    }
}
