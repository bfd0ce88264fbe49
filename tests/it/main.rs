//! End-to-end tests over real sockets against a real RocksDB in a temp dir.
//! One test binary, one module per area.

mod clients;
mod durability;
mod grafana;
mod http_api;
mod ingest_queue;
mod support;
mod telnet;
