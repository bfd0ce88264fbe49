//! rtsd: an OpenTSDB-compatible time-series daemon on RocksDB.
//!
//! The path of a point, top to bottom:
//!
//! ```text
//! server      TCP :4242 accept loop, connection limit, HTTP-or-telnet by first byte
//! connection  one telnet connection: framing (whole lines, max length), bounded replies
//! protocol    the pure line parser: bytes → Command or reply-ready error
//! http        /api/* on :4243 (and HTTP arriving on :4242); /api/put feeds the queue too
//! queue       bounded ingest queue: drop-oldest or block, counted
//! ingest      the ingest thread: gathers batches into commits, --mps, sealing, retention,
//!             through `Sink`, the write side both stores implement
//! storage     RocksDB column families: series index, log, head chunks, blocks, rollups
//! query       the /api/query engine over storage's `Source` trait, no I/O of its own
//! ```
//!
//! Around that path:
//! - `daemon` wires the parts together and owns startup and shutdown;
//!   `main` only parses flags and waits for a signal.
//! - `auth` holds the `[auth]` tokens and decides who may read, write or
//!   delete, on both ports.
//! - `cardinality` refuses points of new series beyond `max-series` and
//!   `max-new-series-per-minute`, on both ports, before they are queued.
//! - `health` says whether the store is writable and the writer alive
//!   (`GET /health`, `/api/put`'s 503).
//! - `config` turns flags and the TOML file into validated settings.
//! - `stats` counts what happens to every point and connection; `/api/stats`,
//!   telnet `stats` and `/metrics` read it, with the store's disk usage and
//!   stale series from the latest `survey`.
//! - `model` holds the types every layer shares (value, point, series key,
//!   series metadata).
//! - `java` reproduces the Java/Jackson behaviours OpenTSDB's answers and
//!   errors depend on (number text, HashMap order, lenient parsing).
//! - `activation` and `notify` speak systemd's socket-activation and
//!   notification protocols.
//! - `tls` serves the HTTP port over https when `tls-cert` and `tls-key`
//!   are set.
//! - `tools` are the offline `import` and `export` commands and
//!   `clickhouse-schema`.
//! - `clickhouse` is the ClickHouse store: an HTTP client, the rows of
//!   points, the versioned schema, a writer, the durable spool and
//!   shipper the ingest thread feeds through `ingest::Sink`, and the read
//!   side every endpoint uses (`backend::Backend`) over it: what
//!   `serve --store clickhouse` runs on.
//! - `backend` is the read side both stores serve to the HTTP and telnet
//!   handlers: the query engine's `Source` plus suggest, lookup, last
//!   points, stale series, annotations and the store's figures.

pub mod activation;
pub mod auth;
pub mod backend;
pub mod cardinality;
pub mod clickhouse;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod health;
pub mod http;
pub mod ingest;
pub mod java;
pub mod model;
pub mod notify;
pub mod protocol;
pub mod query;
pub mod queue;
pub mod server;
pub mod stats;
pub mod storage;
pub mod survey;
pub mod tls;
pub mod tools;
