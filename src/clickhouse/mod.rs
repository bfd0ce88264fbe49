//! ClickHouse as rtsd's scale-out store: the HTTP client, the row format of
//! points, the versioned schema, a [`writer`] of series and points and the
//! read side the query engine runs on ([`source::ClickHouseSource`], a
//! `query::source::Source` whose answers are byte-identical to the
//! embedded store's) with the rest of the read side every endpoint uses
//! ([`backend::ClickHouseBackend`], the store's `crate::backend::Backend`:
//! suggest, lookup, last points, stale series, annotations, figures), and
//! the durable [`spool`] through which the ingest
//! thread's points reach ClickHouse (its `shipper` sends them in big
//! batches, replayed after outages and restarts, and applies retention
//! and range deletes after what was appended before them). [`settings`]
//! is the `[clickhouse]` table and [`serve`] opens all of it for `rtsd
//! serve --store clickhouse`.
//!
//! # Choices, and why
//!
//! * **Client**: hyper-util's legacy client over plain HTTP/1.1
//!   ([`client`]). hyper is already here for the server side, so the client
//!   costs two small crates; reqwest would bring its own TLS, cookie and
//!   redirect machinery rtsd does not need. The official `clickhouse` crate
//!   warns that servers before 22.6 read its RowBinary wrongly in rare
//!   cases, and 18.16 is the server Debian ships.
//! * **Series identity**: [`series_id`], the first 8 bytes of SHA-256 of
//!   the canonical series key, so every node computes the same id without
//!   asking anyone. The full key is stored beside it; rows of two keys with
//!   one id stay two rows (the key is part of the series table's sort key),
//!   so a collision is found by a query, never merged.
//! * **Values**: `is_int UInt8, int_value Int64, float_value Float64`
//!   ([`points`]). An integer keeps all 64 bits (an `f64` holds only 53) and
//!   a float keeps its IEEE bits, NaN included, so a point reads back as the
//!   same [`crate::model::Value`] the embedded store returns. The unused
//!   column of a row is 0, which compresses to almost nothing.
//! * **Duplicates**: at-least-once shipping re-inserts whole batches after
//!   a failure, and `insert_deduplicate` works only on replicated tables in
//!   18.16 (`insert_deduplication_token` came in 22.x), so points live in a
//!   `ReplacingMergeTree(version)` ordered by `(series, ts)`: of the rows of
//!   one point the highest `version` (assigned once, when rtsd accepts the
//!   point, and kept through replays) survives merges. Until a merge runs
//!   both rows are on disk, so reads keep the row of the highest version
//!   per point, as `FINAL` does (the query reads do it in rtsd, which on
//!   18.16 is several times faster, see [`source`]); the newest write
//!   winning is the embedded store's rule too.
//! * **Rollups** are tables rtsd fills (`rollup_1h`, `rollup_1d`), not
//!   materialized views: a view sees every inserted block, so a replayed
//!   batch would be counted twice and an overwritten point would be summed
//!   with its replacement. Each node's shipper computes them in Rust from
//!   the points read back with `FINAL`; a row's `version` is the sum of
//!   its points' versions, so reads use only rows that match the points
//!   there now (see [`rollups`]).
//! * **SQL**: only what 18.16 and current releases both accept: no `Map`
//!   (tags are two parallel arrays), no codecs, no table comments (the
//!   schema version lives in a table), timestamps as `Int64` milliseconds
//!   (`DateTime` ends in 2106, before OpenTSDB's last timestamp).

pub mod backend;
pub mod buckets;
pub mod client;
pub mod points;
pub mod rollups;
pub mod rowbinary;
pub mod schema;
pub mod serve;
pub mod settings;
pub mod source;
pub mod spool;
pub mod writer;

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::model::SeriesKey;

pub use backend::ClickHouseBackend;
pub use client::{ClickHouseError, Client, Compression};
pub use schema::{Layout, SchemaError, SCHEMA_VERSION};
pub use source::ClickHouseSource;
pub use writer::WriteError;

/// The global id of a series: SHA-256 of its canonical key bytes, first 8
/// bytes big-endian. Stable across nodes, builds and platforms.
pub fn series_id(key: &SeriesKey) -> u64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Most series ids one statement names. 18.16 parses at most 256 KiB of a
/// statement (`max_query_size`) and 50 000 AST elements
/// (`max_ast_elements`, which counts every element of an `IN` list); a
/// scan names each id twice at up to 21 bytes, so 4096 stay well inside
/// both.
const IDS_PER_STATEMENT: usize = 4096;

/// `ids` as a comma-separated list of SQL literals.
fn id_list(ids: &[u64]) -> String {
    let mut out = String::with_capacity(ids.len() * 21);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Writing into a String cannot fail.
        let _ = write!(out, "{id}");
    }
    out
}

/// `text` as a ClickHouse string literal: a name from a query must stay a
/// value whatever it holds, and 18.16 has no query parameters.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_names_cannot_end_their_literal() {
        assert_eq!(quoted("sys.cpu"), "'sys.cpu'");
        assert_eq!(quoted(r"a'b\c"), r"'a\'b\\c'");
        assert_eq!(quoted("x\0y"), r"'x\0y'");
        assert_eq!(id_list(&[1, u64::MAX]), "1,18446744073709551615");
    }
}
