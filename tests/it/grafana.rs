//! Grafana's OpenTSDB data source against rtsd, request for request
//! (clients.md §A6): the health check, the template-variable lookups, and
//! panel queries as the current backend plugin posts them (with and without
//! the "2.4" setting's `?arrays=true`) and as older frontends post them
//! (ms times, `showQuery`, results matched to targets by `query.index`,
//! `globalAnnotations`). Answers are decoded the way Grafana decodes them:
//! `dps` as a map of second strings to numbers, or as `[ts, value]` pairs;
//! annotations as `description` and `startTime` in seconds.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::json;

use crate::support::*;

/// Ten minutes of `sys.cpu.user`, one point every 10 s, for web01 (value
/// `i`) and web02 (value `i + 0.5`), all in dc=lga.
const BASE: i64 = 1_700_000_400; // a multiple of 60
const POINTS: i64 = 60;

async fn seeded() -> TestDaemon {
    let d = TestDaemon::start().await;
    let mut points = Vec::new();
    for i in 0..POINTS {
        points.push(
            json!({"metric": "sys.cpu.user", "timestamp": BASE + 10 * i, "value": i,
                           "tags": {"host": "web01", "dc": "lga"}}),
        );
        points.push(
            json!({"metric": "sys.cpu.user", "timestamp": BASE + 10 * i, "value": i as f64 + 0.5,
                           "tags": {"host": "web02", "dc": "lga"}}),
        );
    }
    let (s, b) = http(
        d.http(),
        "POST",
        "/api/put?sync",
        serde_json::to_string(&points).unwrap().as_bytes(),
    )
    .await;
    assert_eq!(s, 204, "{b}");
    d
}

/// `pkg/tsdb/opentsdb/types.go`'s response shape, `dps` as an object.
#[derive(Debug, Deserialize)]
struct MapResult {
    metric: String,
    tags: BTreeMap<String, String>,
    #[serde(rename = "aggregateTags")]
    aggregate_tags: Vec<String>,
    dps: BTreeMap<String, f64>,
}

/// The same with `?arrays=true`.
#[derive(Debug, Deserialize)]
struct ArrayResult {
    metric: String,
    tags: BTreeMap<String, String>,
    dps: Vec<(f64, f64)>,
}

/// An annotation as Grafana's annotation query reads it: the text and
/// `startTime`, which it multiplies by 1000.
#[derive(Debug, Deserialize, PartialEq)]
struct GrafanaNote {
    description: String,
    #[serde(rename = "startTime")]
    start_time: f64,
}

/// The fields of a result the older frontend's annotation query reads.
#[derive(Debug, Deserialize)]
struct AnnotatedResult {
    #[serde(default)]
    annotations: Vec<GrafanaNote>,
    #[serde(rename = "globalAnnotations", default)]
    global_annotations: Vec<GrafanaNote>,
}

/// What web01 and web02 average to per minute: six points of `i`, and of
/// `i + 0.5`.
fn minute_avgs(offset: f64) -> Vec<(i64, f64)> {
    (0..POINTS / 6)
        .map(|m| {
            let sum: f64 = (0..6).map(|k| (6 * m + k) as f64 + offset).sum();
            (BASE + 60 * m, sum / 6.0)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_passes_on_an_empty_store() {
    let d = TestDaemon::start().await;
    let (s, b) = http(d.http(), "GET", "/api/suggest?q=cpu&type=metrics", b"").await;
    assert_eq!((s, b.as_str()), (200, "[]"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_variables_resolve() {
    let d = seeded().await;
    let a = d.http();
    let list = |body: &str| serde_json::from_str::<Vec<String>>(body).unwrap();
    // metrics(sys), suggest_tagk(h), suggest_tagv(web) with lookupLimit 1000.
    let (s, b) = http(a, "GET", "/api/suggest?type=metrics&q=sys&max=1000", b"").await;
    assert_eq!((s, list(&b)), (200, vec!["sys.cpu.user".to_string()]));
    let (_, b) = http(a, "GET", "/api/suggest?type=tagk&q=h&max=1000", b"").await;
    assert_eq!(list(&b), ["host"]);
    let (_, b) = http(a, "GET", "/api/suggest?type=tagv&q=web&max=1000", b"").await;
    assert_eq!(list(&b), ["web01", "web02"]);

    #[derive(Deserialize)]
    struct Lookup {
        results: Vec<LookupResult>,
    }
    #[derive(Deserialize)]
    struct LookupResult {
        tags: BTreeMap<String, String>,
    }
    // tag_names(sys.cpu.user): the keys of every result's tags.
    let (s, b) = http(
        a,
        "GET",
        "/api/search/lookup?m=sys.cpu.user&limit=1000",
        b"",
    )
    .await;
    assert_eq!(s, 200);
    let keys: BTreeSet<String> = serde_json::from_str::<Lookup>(&b)
        .unwrap()
        .results
        .into_iter()
        .flat_map(|r| r.tags.into_keys())
        .collect();
    assert_eq!(keys, BTreeSet::from(["dc".to_string(), "host".to_string()]));
    // tag_values(sys.cpu.user, host) and tag_values(sys.cpu.user, host, dc=lga).
    for m in [
        "sys.cpu.user%7Bhost=*%7D",
        "sys.cpu.user%7Bhost=*,dc=lga%7D",
    ] {
        let (s, b) = http(
            a,
            "GET",
            &format!("/api/search/lookup?m={m}&limit=1000"),
            b"",
        )
        .await;
        assert_eq!(s, 200, "{b}");
        let values: BTreeSet<String> = serde_json::from_str::<Lookup>(&b)
            .unwrap()
            .results
            .into_iter()
            .filter_map(|mut r| r.tags.remove("host"))
            .collect();
        assert_eq!(
            values,
            BTreeSet::from(["web01".to_string(), "web02".to_string()]),
            "{m}"
        );
    }
    // The other resource proxies.
    let (_, b) = http(a, "GET", "/api/aggregators", b"").await;
    assert!(list(&b).contains(&"avg".to_string()));
    let (_, b) = http(a, "GET", "/api/config/filters", b"").await;
    let filters: BTreeMap<String, serde_json::Value> = serde_json::from_str(&b).unwrap();
    for f in ["literal_or", "wildcard", "regexp", "not_literal_or"] {
        assert!(filters.contains_key(f), "{f} in {b}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_query_with_dps_as_an_object() {
    let d = seeded().await;
    // One POST per panel query, unix seconds, downsample from the panel.
    let body = json!({"start": BASE, "end": BASE + 600, "queries": [{
        "metric": "sys.cpu.user", "aggregator": "sum", "downsample": "1m-avg",
        "tags": {"host": "*"}}]});
    let (s, b) = http(d.http(), "POST", "/api/query", body.to_string().as_bytes()).await;
    assert_eq!(s, 200, "{b}");
    let results: Vec<MapResult> = serde_json::from_str(&b).expect("Grafana decodes it");
    assert_eq!(results.len(), 2);
    for (host, offset) in [("web01", 0.0), ("web02", 0.5)] {
        let r = results
            .iter()
            .find(|r| r.tags["host"] == host)
            .expect("a group per host");
        assert_eq!(r.metric, "sys.cpu.user");
        assert_eq!(r.tags["dc"], "lga");
        assert!(r.aggregate_tags.is_empty());
        // Keys are seconds; Grafana reads them with time.Unix(ts, 0).
        let got: Vec<(i64, f64)> = r
            .dps
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), *v))
            .collect();
        let mut want = minute_avgs(offset);
        want.sort_by_key(|(t, _)| t.to_string());
        assert_eq!(got, want, "{host}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panel_query_with_arrays_for_version_2_4() {
    let d = seeded().await;
    let body = json!({"start": BASE, "end": BASE + 600, "queries": [{
        "metric": "sys.cpu.user", "aggregator": "sum", "downsample": "1m-avg",
        "filters": [{"type": "literal_or", "tagk": "host", "filter": "web02", "groupBy": false}],
        "explicitTags": false}]});
    let (s, b) = http(
        d.http(),
        "POST",
        "/api/query?arrays=true",
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let results: Vec<ArrayResult> = serde_json::from_str(&b).expect("Grafana decodes it");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].metric, "sys.cpu.user");
    assert_eq!(results[0].tags["host"], "web02");
    let got: Vec<(i64, f64)> = results[0].dps.iter().map(|&(t, v)| (t as i64, v)).collect();
    assert_eq!(got, minute_avgs(0.5));
    // The sum over both hosts, no grouping.
    let body = json!({"start": BASE, "end": BASE + 600, "queries": [{
        "metric": "sys.cpu.user", "aggregator": "sum", "downsample": "1m-avg"}]});
    let (_, b) = http(
        d.http(),
        "POST",
        "/api/query?arrays=true",
        body.to_string().as_bytes(),
    )
    .await;
    let results: Vec<ArrayResult> = serde_json::from_str(&b).unwrap();
    let want: Vec<(i64, f64)> = minute_avgs(0.0)
        .into_iter()
        .zip(minute_avgs(0.5))
        .map(|((t, a), (_, b))| (t, a + b))
        .collect();
    let got: Vec<(i64, f64)> = results[0].dps.iter().map(|&(t, v)| (t as i64, v)).collect();
    assert_eq!(got, want);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_frontend_matches_results_by_query_index() {
    let d = seeded().await;
    // A deploy on web01 and a global maintenance window, as a CI job and
    // an operator would post them; one more note falls outside the range.
    let (s, b) = http(
        d.http(),
        "GET",
        "/api/search/lookup?m=sys.cpu.user%7Bhost=web01%7D",
        b"",
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let lookup: serde_json::Value = serde_json::from_str(&b).unwrap();
    let web01 = lookup["results"][0]["tsuid"].as_str().unwrap().to_string();
    let notes = json!([
        {"tsuid": web01, "startTime": BASE + 60, "description": "deploy web01"},
        {"startTime": BASE + 120, "description": "maintenance", "notes": "rack 4"},
        {"startTime": BASE + 6000, "description": "later"}]);
    let (s, b) = http(
        d.http(),
        "POST",
        "/api/annotation/bulk",
        notes.to_string().as_bytes(),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    // v2.3 frontend: ms epochs, one POST for all targets, showQuery.
    let body = json!({"start": BASE * 1000, "end": (BASE + 600) * 1000, "msResolution": false,
        "globalAnnotations": true, "showQuery": true, "queries": [
            {"metric": "sys.cpu.user", "aggregator": "max", "tags": {"host": "web01"}},
            {"metric": "sys.cpu.user", "aggregator": "min", "downsample": "10m-max",
             "filters": [{"type": "wildcard", "tagk": "host", "filter": "*", "groupBy": true}]}]});
    let (s, b) = http(d.http(), "POST", "/api/query", body.to_string().as_bytes()).await;
    assert_eq!(s, 200, "{b}");
    let results: Vec<serde_json::Value> = serde_json::from_str(&b).unwrap();
    let indexes: Vec<u64> = results
        .iter()
        .map(|r| r["query"]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 1, 1]);
    assert_eq!(results[0]["query"]["aggregator"], "max");
    assert_eq!(
        results[0]["dps"].as_object().unwrap().len(),
        POINTS as usize
    );
    assert_eq!(
        results[0]["dps"][(BASE + 10).to_string()].as_f64(),
        Some(1.0)
    );
    // Per host, the ten-minute maximum.
    let mut maxima: Vec<(String, f64)> = results[1..]
        .iter()
        .map(|r| {
            let dps = r["dps"].as_object().unwrap();
            assert_eq!(dps.len(), 1);
            (
                r["tags"]["host"].as_str().unwrap().to_string(),
                dps[&BASE.to_string()].as_f64().unwrap(),
            )
        })
        .collect();
    maxima.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        maxima,
        [("web01".to_string(), 59.0), ("web02".to_string(), 59.5)]
    );
    // Grafana's annotation query: `annotations` of the first result, or
    // `globalAnnotations`, each at `startTime * 1000` ms.
    let annotated: Vec<AnnotatedResult> = serde_json::from_str(&b).expect("Grafana decodes it");
    let note = |description: &str, t: i64| GrafanaNote {
        description: description.into(),
        start_time: t as f64,
    };
    assert_eq!(annotated[0].annotations, [note("deploy web01", BASE + 60)]);
    for r in &annotated {
        assert_eq!(r.global_annotations, [note("maintenance", BASE + 120)]);
    }
    let per_host: Vec<(&str, usize)> = results[1..]
        .iter()
        .zip(&annotated[1..])
        .map(|(r, a)| (r["tags"]["host"].as_str().unwrap(), a.annotations.len()))
        .collect();
    assert!(per_host.contains(&("web01", 1)) && per_host.contains(&("web02", 0)));
    d.stop().await;
}
