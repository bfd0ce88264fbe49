//! Fuzzes the `/api/put` JSON body: parsing, each point's checks under
//! several option sets, and the agreement with the telnet parser. The
//! invariants (no panic; refusals from an allow-list; an accepted point's
//! echo parses back to it and its telnet line stores the same sample) live
//! in `rtsd::http::fuzzing`, so the unit tests replay this target's corpus
//! on stable Rust. Run: `cargo +nightly fuzz run put_body`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rtsd::http::fuzzing::check_put_invariants(data);
});
