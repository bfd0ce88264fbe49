//! Fuzzes the `/api/query` JSON body from parsing through planning to an
//! answer from a small in-memory store. The invariants (no panic; parse
//! and validation errors are OpenTSDB's 400s; a plan's range is sane; a
//! query answers or fails with 400, 413 or 503 within tight limits, and
//! its answer is valid JSON) live in `rtsd::query::fuzzing`, so the unit
//! tests replay this target's corpus on stable Rust.
//! Run: `cargo +nightly fuzz run query_body`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rtsd::query::fuzzing::check_query_invariants(data);
});
