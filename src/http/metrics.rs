//! `GET /metrics`: rtsd's own health in Prometheus' text exposition format
//! (version 0.0.4), on the HTTP port.
//!
//! The numbers are the ones `/api/stats` shows ([`Stats::snapshot`] and
//! [`storage_lines`]), renamed the Prometheus way by [`FAMILIES`]: a
//! `rtsd_` prefix, `_total` on counters, OpenTSDB's tags as labels
//! (`tsd.rtsd.points.dropped reason=queue_full` becomes
//! `rtsd_points_dropped_total{reason="queue_full"}`). A stat the table does
//! not know yet is still exported, `untyped`, under a name derived from
//! its OpenTSDB one, so a new counter is never silently missing. Added on
//! top: the `/api/query` latency histogram, the count of stale series (see
//! [`super::stale`]) for the configured period, and a build-info gauge.
//!
//! The endpoint does not pass the read gate: a scrape must still succeed
//! when queries are being shed, which is when an operator needs it most.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::stale;
use super::{allow, blocking, ApiError, AppState};
use crate::stats::{storage_lines, HistogramSnapshot, StatLine, Stats};
use crate::storage::StoreReader;

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One Prometheus metric family fed by the stat lines named `stat` (and,
/// if `select` is set, carrying that tag, which is then not a label).
struct Family {
    stat: &'static str,
    select: Option<(&'static str, &'static str)>,
    name: &'static str,
    kind: Kind,
    help: &'static str,
}

const fn family(
    stat: &'static str,
    select: Option<(&'static str, &'static str)>,
    name: &'static str,
    kind: Kind,
    help: &'static str,
) -> Family {
    Family {
        stat,
        select,
        name,
        kind,
        help,
    }
}

/// Every stat `/api/stats` reports, in exposition order.
#[rustfmt::skip]
const FAMILIES: &[Family] = {
    use Kind::{Counter, Gauge};
    &[
        family("tsd.connectionmgr.connections", Some(("type", "open")), "rtsd_connections_open", Gauge,
            "Connections open now, both ports."),
        family("tsd.connectionmgr.connections", Some(("type", "total")), "rtsd_connections_accepted_total", Counter,
            "Connections accepted, both ports."),
        family("tsd.connectionmgr.exceptions", Some(("type", "refused")), "rtsd_connections_refused_total", Counter,
            "Connections closed at once because max-connections were open (both ports count)."),
        family("tsd.rpc.received", Some(("type", "telnet_lines")), "rtsd_telnet_lines_total", Counter,
            "Lines read on the telnet port, of any kind."),
        family("tsd.rpc.received", Some(("type", "put")), "rtsd_telnet_puts_total", Counter,
            "Points parsed from telnet put lines."),
        family("tsd.rtsd.points.received", None, "rtsd_points_received_total", Counter,
            "Points accepted, by protocol."),
        family("tsd.rtsd.points.rejected", None, "rtsd_points_rejected_total", Counter,
            "Lines and points refused, by parser error."),
        family("tsd.rtsd.points.dropped", None, "rtsd_points_dropped_total", Counter,
            "Accepted points that never reached the store, by reason."),
        family("tsd.rtsd.queue.pushed", None, "rtsd_queue_pushed_points_total", Counter,
            "Points put on the ingest queue."),
        family("tsd.rtsd.queue.popped", None, "rtsd_queue_popped_points_total", Counter,
            "Points taken off the ingest queue by the writer."),
        family("tsd.rtsd.queue.depth", None, "rtsd_queue_depth", Gauge,
            "What the ingest queue holds now, in points (its bound) and in batches."),
        family("tsd.rtsd.points.stored", None, "rtsd_points_stored_total", Counter,
            "Points committed to the store."),
        family("tsd.rtsd.batches.committed", None, "rtsd_batches_committed_total", Counter,
            "Write batches committed to RocksDB."),
        family("tsd.rtsd.series.created", None, "rtsd_series_created_total", Counter,
            "Series created."),
        family("tsd.rtsd.chunks.sealed", None, "rtsd_chunks_sealed_total", Counter,
            "Head chunks sealed into blocks."),
        family("tsd.rtsd.deletes", None, "rtsd_delete_requests_total", Counter,
            "Delete requests (/api/query with delete) carried out."),
        family("tsd.rtsd.points.deleted", None, "rtsd_points_deleted_total", Counter,
            "Points removed by delete requests."),
        family("tsd.rpc.errors", Some(("type", "storage_errors")), "rtsd_store_errors_total", Counter,
            "Commits RocksDB refused, each retry counted."),
        family("tsd.rpc.errors", Some(("type", "socket_writes_blocked")), "rtsd_replies_dropped_total", Counter,
            "Error replies not sent because the client does not read its socket."),
        family("tsd.rtsd.store.writable", None, "rtsd_store_writable", Gauge,
            "1 while commits succeed, 0 from a failed commit (disk full, I/O error) until one succeeds."),
        family("tsd.http.requests", None, "rtsd_http_requests_total", Counter,
            "HTTP requests on either port."),
        family("tsd.http.query.received", None, "rtsd_queries_total", Counter,
            "Requests to /api/query."),
        family("tsd.rtsd.storage.series", None, "rtsd_storage_series", Gauge,
            "Series in the store."),
        family("tsd.rtsd.storage.head.chunks", None, "rtsd_storage_head_chunks", Gauge,
            "Unsealed in-memory chunks."),
        family("tsd.rtsd.storage.head.points", None, "rtsd_storage_head_points", Gauge,
            "Points in unsealed in-memory chunks."),
        family("tsd.rtsd.storage.head.bytes", None, "rtsd_storage_head_bytes", Gauge,
            "Bytes of unsealed in-memory chunks."),
        family("tsd.rtsd.storage.blocks.sealed", None, "rtsd_storage_blocks_sealed_total", Counter,
            "Blocks written since the store was opened."),
        family("tsd.rtsd.storage.log.records", None, "rtsd_storage_log_records", Gauge,
            "Head log records not yet deleted."),
        family("tsd.rtsd.storage.partitions", None, "rtsd_storage_partitions", Gauge,
            "Day partitions holding blocks."),
        family("tsd.rtsd.storage.disk.bytes", None, "rtsd_storage_disk_bytes", Gauge,
            "Bytes on disk: live SST files of every column family plus the WAL."),
        family("tsd.rtsd.storage.wal.bytes", None, "rtsd_storage_wal_bytes", Gauge,
            "Bytes of RocksDB's write-ahead log."),
        family("tsd.rtsd.storage.cf.bytes", None, "rtsd_storage_column_family_bytes", Gauge,
            "Bytes per RocksDB column family: live SST files plus memtables."),
    ]
};

pub async fn metrics(
    method: Method,
    State(state): State<Arc<AppState>>,
) -> Result<Response, ApiError> {
    allow(&method, &[Method::GET])?;
    let body = blocking(move || {
        render(
            &state.stats,
            &state.store,
            state.settings.stale_after_secs,
            crate::model::now_ms(),
        )
    })
    .await?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response())
}

/// The whole exposition at `now_ms`.
fn render(
    stats: &Stats,
    store: &StoreReader,
    stale_after_secs: u64,
    now_ms: i64,
) -> Result<String, ApiError> {
    let cutoff = i64::try_from(stale_after_secs.saturating_mul(1000))
        .map_or(i64::MIN, |period| now_ms.saturating_sub(period));
    let stale = stale::find(store, None, cutoff)?.len();
    let mut lines = stats.snapshot();
    lines.extend(storage_lines(store));
    let mut out = String::new();
    write_stats(&mut out, &lines);
    write_histogram(
        &mut out,
        "rtsd_query_duration_seconds",
        "Time to answer /api/query requests, failed ones included.",
        &stats.query_latency.snapshot(),
    );
    header_lines(
        &mut out,
        "rtsd_stale_series",
        Kind::Gauge,
        "Series without a new point for the labelled period (stale-after-secs).",
    );
    let period = stale::period_label(stale_after_secs);
    sample(
        &mut out,
        "rtsd_stale_series",
        &[("older_than", &period)],
        stale,
    );
    header_lines(
        &mut out,
        "rtsd_build_info",
        Kind::Gauge,
        "The running rtsd's version.",
    );
    sample(
        &mut out,
        "rtsd_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    Ok(out)
}

/// Writes every stat line under its family; lines of no family go last,
/// `untyped`, under a derived name.
fn write_stats(out: &mut String, lines: &[StatLine]) {
    let mut used = vec![false; lines.len()];
    for f in FAMILIES {
        header_lines(out, f.name, f.kind, f.help);
        for (line, used) in lines.iter().zip(used.iter_mut()) {
            let selected = f.select.map_or(true, |(k, v)| {
                line.tags.iter().any(|(tk, tv)| *tk == k && tv == v)
            });
            if line.metric != f.stat || !selected {
                continue;
            }
            *used = true;
            let labels: Vec<(&str, &str)> = line
                .tags
                .iter()
                .filter(|(k, _)| f.select.map_or(true, |(sk, _)| sk != *k))
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            sample(out, f.name, &labels, line.value);
        }
    }
    let mut unknown: BTreeMap<String, Vec<&StatLine>> = BTreeMap::new();
    for (line, _) in lines.iter().zip(&used).filter(|(_, used)| !**used) {
        unknown
            .entry(derived_name(&line.metric))
            .or_default()
            .push(line);
    }
    for (name, lines) in unknown {
        let _ = writeln!(
            out,
            "# HELP {name} OpenTSDB-style stat {}.",
            lines[0].metric
        );
        let _ = writeln!(out, "# TYPE {name} untyped");
        for line in lines {
            let labels: Vec<(&str, &str)> =
                line.tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
            sample(out, &name, &labels, line.value);
        }
    }
}

/// `tsd.rtsd.foo.bar` → `rtsd_foo_bar`, `tsd.foo-bar` → `rtsd_foo_bar`.
fn derived_name(stat: &str) -> String {
    let base = stat
        .strip_prefix("tsd.rtsd.")
        .or_else(|| stat.strip_prefix("tsd."))
        .unwrap_or(stat);
    let mut name = String::from("rtsd_");
    name.extend(
        base.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
    );
    name
}

fn write_histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    let bucket = format!("{name}_bucket");
    for (bound, count) in &h.cumulative {
        let le = if bound.is_infinite() {
            "+Inf".to_string()
        } else {
            bound.to_string()
        };
        sample(out, &bucket, &[("le", &le)], count);
    }
    sample(out, &format!("{name}_sum"), &[], h.sum_seconds);
    sample(out, &format!("{name}_count"), &[], h.count);
}

fn header_lines(out: &mut String, name: &str, kind: Kind, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {}", kind.name());
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::DropReason;

    #[test]
    fn every_current_stat_has_a_family() {
        let stats = Stats::default();
        stats.rejected("invalid_value");
        let mut out = String::new();
        write_stats(&mut out, &stats.snapshot());
        assert!(!out.contains("untyped"), "{out}");
        let names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "family names repeat");
    }

    #[test]
    fn stats_become_labelled_counters_and_gauges() {
        let stats = Stats::default();
        stats.dropped(DropReason::QueueFull, 7);
        stats
            .connections_open
            .store(3, std::sync::atomic::Ordering::Relaxed);
        let mut out = String::new();
        write_stats(&mut out, &stats.snapshot());
        assert!(out.contains(
            "# HELP rtsd_points_dropped_total Accepted points that never reached the store, by reason.\n\
             # TYPE rtsd_points_dropped_total counter\n\
             rtsd_points_dropped_total{reason=\"queue_full\"} 7\n\
             rtsd_points_dropped_total{reason=\"rate_limited\"} 0\n"
        ), "{out}");
        assert!(
            out.contains("# TYPE rtsd_connections_open gauge\nrtsd_connections_open 3\n"),
            "{out}"
        );
    }

    #[test]
    fn unknown_stats_are_exported_untyped() {
        let line = StatLine {
            metric: "tsd.rtsd.new.thing".to_string(),
            value: 5,
            tags: vec![("kind", "a\"b".to_string())],
        };
        let mut out = String::new();
        write_stats(&mut out, &[line]);
        assert!(
            out.ends_with(
                "# HELP rtsd_new_thing OpenTSDB-style stat tsd.rtsd.new.thing.\n\
             # TYPE rtsd_new_thing untyped\n\
             rtsd_new_thing{kind=\"a\\\"b\"} 5\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn histograms_have_cumulative_buckets_sum_and_count() {
        let h = crate::stats::Histogram::default();
        h.observe(std::time::Duration::from_millis(2));
        let mut out = String::new();
        write_histogram(&mut out, "q_seconds", "Help.", &h.snapshot());
        assert!(
            out.starts_with(
                "# HELP q_seconds Help.\n# TYPE q_seconds histogram\n\
             q_seconds_bucket{le=\"0.001\"} 0\nq_seconds_bucket{le=\"0.005\"} 1\n"
            ),
            "{out}"
        );
        assert!(
            out.ends_with(
                "q_seconds_bucket{le=\"30\"} 1\nq_seconds_bucket{le=\"+Inf\"} 1\n\
             q_seconds_sum 0.002\nq_seconds_count 1\n"
            ),
            "{out}"
        );
    }
}
