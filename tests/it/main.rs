//! End-to-end tests over real sockets against a real RocksDB in a temp dir.
//! One test binary, one module per area.

mod annotations;
mod auth;
mod cardinality;
mod clickhouse;
mod clickhouse_backend;
#[path = "../clickhouse/server_files.rs"]
mod clickhouse_files;
mod clickhouse_retention;
mod clickhouse_serve;
mod clickhouse_source;
mod clickhouse_spool;
mod clickhouse_support;
mod clients;
mod collectd;
mod dashboard;
mod delete;
mod durability;
mod faults;
mod grafana;
mod http_api;
mod ingest_queue;
mod lifecycle;
mod limits;
#[path = "../common/ports.rs"]
mod ports;
mod query_cases;
mod service;
mod support;
mod telnet;
mod tls;
