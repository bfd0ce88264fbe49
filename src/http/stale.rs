//! Stale series: series whose newest point is older than a period, the
//! usual sign of a collector or host that stopped reporting.
//!
//! `GET /api/rtsd/stale?older_than=1h[&metric=m][&limit=N]` lists them,
//! oldest first, as `[{"metric","tags","tsuid","lastTimestamp"}]` with the
//! timestamp in milliseconds (as `/api/query/last` gives it). `older_than`
//! takes OpenTSDB's duration syntax and defaults to the `stale-after-secs`
//! setting, which also sets the period of the `rtsd_stale_series` gauge that
//! [`super::metrics`] exports, counted by [`crate::survey`] with the same
//! [`StoreReader::stale_series`](crate::storage::StoreReader::stale_series).
//! The scan runs on the blocking pool.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Serialize;

use super::params::Params;
use super::{allow, blocking, json_reply, tsuid, ApiError, AppState, TagsJson};
use crate::query::time::parse_duration;
use crate::storage::StaleSeries;

/// Results listed when the request gives no `limit`.
const DEFAULT_LIMIT: usize = 1000;

pub async fn stale(
    method: Method,
    State(state): State<Arc<AppState>>,
    params: Params,
) -> Result<Response, ApiError> {
    allow(&method, &[Method::GET])?;
    let period_ms = match params.get("older_than") {
        Some(text) => parse_duration(text)?,
        None => state.settings.stale_after_ms(),
    };
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse()
            .ok()
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| {
                ApiError::bad_request(format!("limit: {text:?} is not a positive integer"))
            })?,
    };
    let metric = params
        .get("metric")
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let cutoff = crate::model::now_ms().saturating_sub(period_ms);
    let permit = state.reads.enter().await?;
    let body = blocking(move || {
        let _permit = permit;
        let mut found = state.store.stale_series(metric.as_deref(), cutoff)?;
        found.truncate(limit);
        Ok(render(&found))
    })
    .await?;
    Ok(json_reply(StatusCode::OK, body))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Entry<'a> {
    metric: &'a str,
    tags: TagsJson<'a>,
    tsuid: String,
    last_timestamp: Option<i64>,
}

fn render(found: &[StaleSeries]) -> String {
    let entries: Vec<Entry> = found
        .iter()
        .map(|s| Entry {
            metric: s.meta.key.metric(),
            tags: TagsJson(s.meta.key.tags().collect()),
            tsuid: tsuid(s.meta.id),
            last_timestamp: s.last_ms,
        })
        .collect();
    // Serialising strings, integers and maps of strings cannot fail.
    serde_json::to_string(&entries).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SeriesKey, SeriesMeta};

    #[test]
    fn entries_carry_metric_tags_tsuid_and_timestamp() {
        let found = [StaleSeries {
            meta: SeriesMeta {
                id: 42,
                key: SeriesKey::new("sys.cpu", [("host", "a")]),
            },
            last_ms: Some(1_700_000_000_000),
        }];
        assert_eq!(
            render(&found),
            r#"[{"metric":"sys.cpu","tags":{"host":"a"},"tsuid":"000000000000002A","lastTimestamp":1700000000000}]"#
        );
    }
}
