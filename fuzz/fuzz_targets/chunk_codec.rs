//! Fuzzes the chunk codec. Each input is used twice: as chunk bytes, which
//! must decode or fail cleanly (never panic, loop or over-allocate), and as
//! a recipe for a point sequence, which must survive encode → decode bit for
//! bit. The invariants live in `rtsd::storage::chunk::testkit`, so the unit
//! tests replay this target's corpus on stable Rust.
//! Run: `cargo +nightly fuzz run chunk_codec`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    rtsd::storage::chunk::testkit::check_codec_invariants(data);
});
