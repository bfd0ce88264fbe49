//! `GET /metrics`: rtsd's own health in Prometheus' text exposition format
//! (version 0.0.4), on the HTTP port.
//!
//! The numbers are the ones `/api/stats` shows, read from the same table,
//! [`FAMILIES`], under its Prometheus names: a `rtsd_` prefix, `_total` on
//! counters, OpenTSDB's tags as labels (`tsd.rtsd.points.dropped
//! reason=queue_full` becomes `rtsd_points_dropped_total{reason="queue_full"}`).
//! Added on top: the `/api/query` latency histogram, the count of stale
//! series (see [`super::stale`]) for the configured period, and a
//! build-info gauge. Disk usage and stale series come from the latest
//! [`crate::survey`], so a scrape reads no column family and no series: it
//! costs the same whatever the store holds, and those figures are up to
//! `stats-refresh-secs` (or one scrape interval) old. A stale count the
//! store failed to give is left out rather than failing the scrape.
//!
//! The endpoint does not pass the read gate: a scrape must still succeed
//! when queries are being shed, which is when an operator needs it most.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{allow, blocking, ApiError, AppState};
use crate::query::time::duration_text;
use crate::stats::{HistogramSnapshot, Kind, Stats, Tag, FAMILIES};
use crate::storage::StorageStats;

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(
    method: Method,
    State(state): State<Arc<AppState>>,
) -> Result<Response, ApiError> {
    allow(&method, &[Method::GET])?;
    let findings = state.survey.findings().await;
    let body = blocking(move || {
        let store = state.survey.storage_stats(&findings);
        let stale_after_ms = state.settings.stale_after_ms();
        Ok(render(
            &state.stats,
            &store,
            findings.stale_series,
            stale_after_ms,
        ))
    })
    .await?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response())
}

/// The whole exposition.
fn render(
    stats: &Stats,
    store: &StorageStats,
    stale_series: Option<usize>,
    stale_after_ms: i64,
) -> String {
    let mut out = String::new();
    write_stats(&mut out, stats, store);
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
    if let Some(stale) = stale_series {
        let period = duration_text(stale_after_ms);
        sample(
            &mut out,
            "rtsd_stale_series",
            &[("older_than", &period)],
            stale,
        );
    }
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
    out
}

/// Writes every family of the table with its samples.
fn write_stats(out: &mut String, stats: &Stats, store: &StorageStats) {
    for f in FAMILIES {
        header_lines(out, f.name, f.kind, f.help);
        for (label, value) in f.readings(stats, store) {
            match (f.tag, label) {
                (Tag::Label(k), Some(v)) => sample(out, f.name, &[(k, &v)], value),
                _ => sample(out, f.name, &[], value),
            }
        }
    }
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
    fn family_names_are_unique() {
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
        write_stats(&mut out, &stats, &StorageStats::default());
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
