//! Invariants of the `/api/query` JSON body on arbitrary bytes, from
//! parsing through planning to an answer, shared by the `query_body` fuzz
//! target (`fuzz/fuzz_targets/query_body.rs`) and a unit test that replays
//! its corpus (`fuzz/corpus/query_body/`) on stable Rust.
//!
//! A panic is a failure, and so is a broken invariant:
//! - a body that does not parse is OpenTSDB's 400 `Unable to parse the
//!   given JSON`, with the parser's reason as `details`;
//! - a parsed request is planned, or refused with a 400 whose `details`
//!   describe the query (OpenTSDB's `TSQuery.toString()`);
//! - a plan has `0 <= start < end <= MAX_TIMESTAMP_MS`, one sub-plan per
//!   sub-query in order, and buckets counted for exactly the downsampled
//!   ones;
//! - run against a small in-memory store under tight limits, the query
//!   answers or fails with a client's status (400, 413) or the deadline's
//!   (503), never a 500, and within the limits; an answer's JSON, in both
//!   the object and the array form and in chunks, is an array holding
//!   one object per result group (and the summary when asked for).

use std::time::{Duration, Instant};

use crate::model::{DataPoint, Value, MAX_TIMESTAMP_MS};
use crate::query::memory::MemSource;
use crate::query::{execute, QueryLimits, QueryRequest};

/// "Now" for relative times: fixed, so a run is reproducible.
const NOW_MS: i64 = 1_700_000_000_000;

/// Checks every invariant for `data` as a body; panics on a violation.
pub fn check_query_invariants(data: &[u8]) {
    let request = match QueryRequest::from_json(data) {
        Ok(r) => r,
        Err(e) => {
            assert_eq!(
                (e.status(), e.message().as_str()),
                (400, "Unable to parse the given JSON"),
                "{data:?}"
            );
            assert!(e.details().is_some(), "no reason for {data:?}");
            return;
        }
    };
    let plan = match request.plan(NOW_MS) {
        Ok(plan) => plan,
        Err(e) => {
            assert_eq!(e.status(), 400, "{e} for {request:?}");
            assert_eq!(e.details(), Some(request.describe()), "{e}");
            return;
        }
    };
    assert!(
        0 <= plan.start_ms && plan.start_ms < plan.end_ms && plan.end_ms <= MAX_TIMESTAMP_MS,
        "range {}..{} of {request:?}",
        plan.start_ms,
        plan.end_ms
    );
    let queries = request.queries.as_deref().unwrap_or_default();
    assert_eq!(plan.subs.len(), queries.len());
    for (i, sub) in plan.subs.iter().enumerate() {
        assert_eq!(sub.index, i);
        assert_eq!(sub.buckets > 0, sub.downsample.is_some(), "{sub:?}");
    }
    let limits = QueryLimits {
        max_series: 8,
        max_points: 100_000,
        max_downsample_buckets: 100_000,
        max_query_buckets: 200_000,
        // Only a safety net: the limits above keep every query short.
        deadline: Some(Instant::now() + Duration::from_secs(10)),
        ..QueryLimits::default()
    };
    let answer = match execute(&store(), &request, NOW_MS, &limits) {
        Ok(answer) => answer,
        Err(e) => {
            assert!(
                matches!(e.status(), 400 | 413 | 503),
                "{} {e} for {request:?}",
                e.status()
            );
            return;
        }
    };
    let series: usize = answer.results.iter().map(|g| g.stats.series).sum();
    assert!(series <= limits.max_series, "{series} series");
    let groups = answer.results.len() + usize::from(request.show_summary);
    for arrays in [false, true] {
        let mut answer = answer.clone();
        answer.arrays = arrays;
        let mut text = String::new();
        answer.write_json(&mut text);
        let json: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{e} in the answer {text} to {request:?}"));
        let objects = json.as_array().map(Vec::len);
        assert_eq!(objects, Some(groups), "{text}");
        assert_eq!(answer.into_json_chunks().collect::<String>(), text);
    }
}

/// Six metrics the conformance vectors use (`m`, `f`, `g`, `c`, `e`, `d`), each with
/// series that group and filter differently, and integer and float points
/// around 2013-01-01; rollups too, so both read paths run.
fn store() -> MemSource {
    const T0: i64 = 1_356_998_400_000;
    let mut src = MemSource::new().with_rollups();
    let tag_sets: [&[(&str, &str)]; 3] = [
        &[("host", "a"), ("dc", "lga")],
        &[("host", "b"), ("dc", "sjc")],
        &[("host", "web01"), ("dc", "lga"), ("rack", "r1")],
    ];
    for (m, metric) in ["m", "f", "g", "c", "e", "d"].into_iter().enumerate() {
        for (s, tags) in tag_sets.iter().enumerate() {
            let points = (0..8)
                .map(|i| DataPoint {
                    timestamp_ms: T0 + i * 15_000 * (s as i64 + 1),
                    value: match (i + m as i64) % 3 {
                        0 => Value::Int(i * 7 - 20),
                        1 => Value::Float(i as f64 * 1.5),
                        _ => Value::Int(i64::MAX - i),
                    },
                })
                .collect();
            src.add_points(metric, tags, points);
        }
    }
    src
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_and_its_mutants_replay() {
        let seeds = crate::protocol::fuzzing::replay_corpus_and_mutants(
            "query_body",
            check_query_invariants,
        );
        assert!(seeds >= 100, "only {seeds} corpus files");
    }
}
