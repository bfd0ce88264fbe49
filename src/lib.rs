//! rtsd: an OpenTSDB-compatible time-series daemon on RocksDB.
//!
//! Data flows `server` (TCP, framing) → `protocol` (pure parser) → `queue`
//! (bounded, drop-oldest, mps limit) → `writer` (one thread) → `storage`
//! (RocksDB column families); `http` serves `/api/*` from `storage` through
//! the `query` engine.

pub mod activation;
pub mod config;
pub mod connection;
pub mod daemon;
pub mod http;
pub mod java;
pub mod model;
pub mod notify;
pub mod protocol;
pub mod query;
pub mod queue;
pub mod server;
pub mod stats;
pub mod storage;
pub mod tools;
pub mod writer;
