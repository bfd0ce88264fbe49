//! Fuzzes the telnet line parser with arbitrary bytes as one line. The
//! invariants (no panic; an accepted `put` round-trips through `to_line`;
//! a refusal has an allow-listed kind and is a single reply line) live in
//! `rtsd::protocol::fuzzing`, so the unit tests replay this target's corpus
//! on stable Rust. Run: `cargo +nightly fuzz run parse_line`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rtsd::protocol::fuzzing::check_parse_invariants(data);
});
