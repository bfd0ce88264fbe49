//! End-to-end tests of the engine through its public API, against an
//! in-memory [`Source`]: hand-computed cases (also replayed from
//! `protocol/queries/*.json`, which the HTTP tests run against the real
//! store), rollups against raw points, and limits.
//!
//! A test file, long because each case is a whole query and its expected
//! answer; the unit tests of each part stay beside their code.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use serde::Deserialize;

use crate::model::Value;
pub(crate) use crate::query::memory::MemSource;
use crate::query::source::Source;
use crate::query::{execute, QueryError, QueryLimits, QueryRequest};

/// 2013-01-01T00:00:00Z, on an hour.
const T0: i64 = 1_356_998_400;
const NOW: i64 = 1_700_000_000_000;

fn s(t: i64) -> i64 {
    t * 1000
}

fn ints(points: &[(i64, i64)]) -> Vec<(i64, Value)> {
    points.iter().map(|&(t, v)| (s(t), Value::Int(v))).collect()
}

fn run_with(src: &MemSource, body: &str, limits: &QueryLimits) -> Result<String, QueryError> {
    let req = QueryRequest::from_json(body.as_bytes())?;
    let resp = execute(src, &req, NOW, limits)?;
    let mut out = String::new();
    resp.write_json(&mut out);
    // What HTTP streams, chunk by chunk, must be the same bytes.
    assert_eq!(resp.into_json_chunks().collect::<String>(), out);
    Ok(out)
}

fn run(src: &MemSource, body: &str) -> String {
    run_with(src, body, &QueryLimits::default()).unwrap_or_else(|e| panic!("{body}: {e}"))
}

fn get(src: &MemSource, pairs: &[(&str, &str)]) -> Result<String, QueryError> {
    let params: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let req = QueryRequest::from_get_params(&params)?;
    let resp = execute(src, &req, NOW, &QueryLimits::default())?;
    let mut out = String::new();
    resp.write_json(&mut out);
    Ok(out)
}

/// A POST body over `[T0 + from, T0 + to]` with one sub-query.
fn body(from: i64, to: i64, sub: &str) -> String {
    format!(
        r#"{{"start":{},"end":{},"queries":[{sub}]}}"#,
        T0 + from,
        T0 + to
    )
}

fn dps(points: &[(i64, &str)]) -> String {
    let inner: Vec<String> = points
        .iter()
        .map(|(t, v)| format!("\"{}\":{v}", T0 + t))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// The docs' LERP example (the docs' own table is wrong; see the reference).
fn lerp_example() -> MemSource {
    let mut src = MemSource::new();
    src.add(
        "m",
        &[("host", "a")],
        &ints(&[(T0 + 10, 5), (T0 + 30, 15), (T0 + 50, 5)]),
    );
    src.add(
        "m",
        &[("host", "b")],
        &ints(&[(T0, 10), (T0 + 20, 20), (T0 + 40, 10), (T0 + 60, 20)]),
    );
    src
}

#[test]
fn lerp_docs_example() {
    let src = lerp_example();
    let cases: &[(&str, &[(i64, &str)])] = &[
        (
            "sum",
            &[
                (0, "10"),
                (10, "20"),
                (20, "30"),
                (30, "30"),
                (40, "20"),
                (50, "20"),
                (60, "20"),
            ],
        ),
        (
            "avg",
            &[
                (0, "10"),
                (10, "10"),
                (20, "15"),
                (30, "15"),
                (40, "10"),
                (50, "10"),
                (60, "20"),
            ],
        ),
        (
            "max",
            &[
                (0, "10"),
                (10, "15"),
                (20, "20"),
                (30, "15"),
                (40, "10"),
                (50, "15"),
                (60, "20"),
            ],
        ),
        (
            "count",
            &[
                (0, "1"),
                (10, "2"),
                (20, "2"),
                (30, "2"),
                (40, "2"),
                (50, "2"),
                (60, "1"),
            ],
        ),
        (
            "zimsum",
            &[
                (0, "10"),
                (10, "5"),
                (20, "20"),
                (30, "15"),
                (40, "10"),
                (50, "5"),
                (60, "20"),
            ],
        ),
        (
            "mimmin",
            &[
                (0, "10"),
                (10, "5"),
                (20, "20"),
                (30, "15"),
                (40, "10"),
                (50, "5"),
                (60, "20"),
            ],
        ),
        (
            "pfsum",
            &[
                (0, "10"),
                (10, "15"),
                (20, "25"),
                (30, "35"),
                (40, "25"),
                (50, "15"),
                (60, "20"),
            ],
        ),
    ];
    for &(agg, want) in cases {
        let got = run(
            &src,
            &body(0, 60, &format!(r#"{{"aggregator":"{agg}","metric":"m"}}"#)),
        );
        assert_eq!(
            got,
            format!(
                r#"[{{"metric":"m","tags":{{}},"aggregateTags":["host"],"dps":{}}}]"#,
                dps(want)
            ),
            "{agg}"
        );
    }
}

#[test]
fn ghost_lines_977_count_and_zimsum() {
    // Interleaved series: each is "between points" where the other has one.
    let mut src = MemSource::new();
    src.add(
        "g",
        &[("host", "a")],
        &ints(&[(T0, 1), (T0 + 20, 1), (T0 + 40, 1)]),
    );
    src.add(
        "g",
        &[("host", "b")],
        &ints(&[(T0 + 10, 2), (T0 + 30, 2), (T0 + 50, 2)]),
    );
    let cases: &[(&str, &[(i64, &str)])] = &[
        // Counted while between its own points, not before or after them.
        (
            "count",
            &[
                (0, "1"),
                (10, "2"),
                (20, "2"),
                (30, "2"),
                (40, "2"),
                (50, "1"),
            ],
        ),
        (
            "zimsum",
            &[
                (0, "1"),
                (10, "2"),
                (20, "1"),
                (30, "2"),
                (40, "1"),
                (50, "2"),
            ],
        ),
        (
            "sum",
            &[
                (0, "1"),
                (10, "3"),
                (20, "3"),
                (30, "3"),
                (40, "3"),
                (50, "2"),
            ],
        ),
    ];
    for &(agg, want) in cases {
        let got = run(
            &src,
            &body(0, 50, &format!(r#"{{"aggregator":"{agg}","metric":"g"}}"#)),
        );
        assert!(
            got.contains(&format!(r#""dps":{}"#, dps(want))),
            "{agg}: {got}"
        );
    }
}

#[test]
fn floating_point_where_integers_would_truncate() {
    let mut src = MemSource::new();
    src.add("x", &[("host", "a")], &ints(&[(T0, 1), (T0 + 30, 10)]));
    src.add("x", &[("host", "b")], &ints(&[(T0, 2), (T0 + 10, 2)]));
    let got = run(&src, &body(0, 30, r#"{"aggregator":"avg","metric":"x"}"#));
    // avg(1, 2) = 1.5; at +10 a is interpolated to 4 exactly; at +30 only a.
    assert!(
        got.contains(&dps(&[(0, "1.5"), (10, "3"), (30, "10")])),
        "{got}"
    );
    let got = run(&src, &body(0, 30, r#"{"aggregator":"dev","metric":"x"}"#));
    assert!(
        got.contains(&dps(&[
            (0, "0.7071067811865476"),
            (10, "1.4142135623730951"),
            (30, "0")
        ])),
        "{got}"
    );
    // A float anywhere involved makes the result a double.
    src.add(
        "y",
        &[("host", "a")],
        &[(s(T0), Value::Float(1.5)), (s(T0 + 10), Value::Int(2))],
    );
    src.add("y", &[("host", "b")], &ints(&[(T0 + 10, 1)]));
    let got = run(&src, &body(0, 10, r#"{"aggregator":"sum","metric":"y"}"#));
    assert!(got.contains(&dps(&[(0, "1.5"), (10, "3")])), "{got}");
}

#[test]
fn points_outside_the_range_feed_interpolation() {
    let mut src = MemSource::new();
    src.add("o", &[("host", "a")], &ints(&[(T0, 0), (T0 + 20, 20)]));
    src.add("o", &[("host", "b")], &ints(&[(T0 + 10, 1)]));
    let got = run(&src, &body(5, 15, r#"{"aggregator":"sum","metric":"o"}"#));
    assert_eq!(
        got,
        format!(
            r#"[{{"metric":"o","tags":{{}},"aggregateTags":["host"],"dps":{}}}]"#,
            dps(&[(10, "11")])
        )
    );
}

#[test]
fn series_with_data_only_around_the_range_has_empty_dps() {
    let mut src = MemSource::new();
    src.add("p", &[("host", "a")], &ints(&[(T0 + 100, 1)]));
    let got = run(
        &src,
        &body(200, 300, r#"{"aggregator":"sum","metric":"p"}"#),
    );
    assert_eq!(
        got,
        r#"[{"metric":"p","tags":{"host":"a"},"aggregateTags":[],"dps":{}}]"#
    );
    // No data in the read range at all: no result.
    let got = run(
        &src,
        &body(7200, 7300, r#"{"aggregator":"sum","metric":"p"}"#),
    );
    assert_eq!(got, "[]");
}

fn fill_source() -> MemSource {
    let mut src = MemSource::new();
    src.add(
        "f",
        &[("host", "a")],
        &ints(&[(T0, 1), (T0 + 60, 2), (T0 + 180, 4)]),
    );
    src.add("g", &[("host", "a")], &ints(&[(T0, 1), (T0 + 120, 3)]));
    src.add("g", &[("host", "b")], &ints(&[(T0 + 60, 2)]));
    src
}

#[test]
fn every_fill_policy() {
    let src = fill_source();
    let cases: &[(&str, &[(i64, &str)])] = &[
        ("1m-sum", &[(0, "1.0"), (60, "2.0"), (180, "4.0")]),
        ("1m-sum-none", &[(0, "1.0"), (60, "2.0"), (180, "4.0")]),
        (
            "1m-sum-zero",
            &[(0, "1.0"), (60, "2.0"), (120, "0.0"), (180, "4.0")],
        ),
        (
            "1m-sum-nan",
            &[(0, "1.0"), (60, "2.0"), (120, "null"), (180, "4.0")],
        ),
        (
            "1m-sum-null",
            &[(0, "1.0"), (60, "2.0"), (120, "null"), (180, "4.0")],
        ),
    ];
    for &(ds, want) in cases {
        let sub = format!(r#"{{"aggregator":"sum","metric":"f","downsample":"{ds}"}}"#);
        let got = run(&src, &body(0, 180, &sub));
        assert!(
            got.contains(&format!(r#""dps":{}"#, dps(want))),
            "{ds}: {got}"
        );
    }
    // Across series: a fill stops the interpolation.
    let sub = r#"{"aggregator":"sum","metric":"g","downsample":"1m-sum"}"#;
    assert!(run(&src, &body(0, 120, sub)).contains(&dps(&[(0, "1.0"), (60, "4.0"), (120, "3.0")])));
    let sub = r#"{"aggregator":"sum","metric":"g","downsample":"1m-sum-zero"}"#;
    assert!(run(&src, &body(0, 120, sub)).contains(&dps(&[(0, "1.0"), (60, "2.0"), (120, "3.0")])));
    let sub = r#"{"aggregator":"sum","metric":"g","downsample":"1m-sum-null"}"#;
    assert!(run(&src, &body(0, 120, sub)).contains(&dps(&[(0, "1.0"), (60, "2.0"), (120, "3.0")])));
}

#[test]
fn downsample_edges() {
    let mut src = MemSource::new();
    src.add(
        "e",
        &[("host", "a")],
        &ints(&[(T0, 1), (T0 + 30, 2), (T0 + 60, 4), (T0 + 90, 8)]),
    );
    let sub = r#"{"aggregator":"sum","metric":"e","downsample":"1m-sum"}"#;
    // The partial first bucket starts before `start` and is dropped.
    assert!(run(&src, &body(30, 90, sub)).contains(&dps(&[(60, "12.0")])));
    // The last bucket includes points past `end`.
    assert!(run(&src, &body(0, 60, sub)).contains(&dps(&[(0, "3.0"), (60, "12.0")])));
    // 0all: [start, end), reported at start.
    let sub = r#"{"aggregator":"sum","metric":"e","downsample":"0all-sum"}"#;
    assert!(run(&src, &body(30, 90, sub)).contains(&dps(&[(30, "6.0")])));
    let sub = r#"{"aggregator":"sum","metric":"e","downsample":"0all-count"}"#;
    assert!(run(&src, &body(30, 90, sub)).contains(&dps(&[(30, "2.0")])));
    let sub = r#"{"aggregator":"sum","metric":"e","downsample":"all-count-zero"}"#;
    assert!(run(&src, &body(30, 90, sub)).contains(&dps(&[(30, "2.0")])));
    // Across series, 0all results meet at `start`.
    src.add("e", &[("host", "b")], &ints(&[(T0 + 45, 100)]));
    let sub = r#"{"aggregator":"sum","metric":"e","downsample":"0all-sum"}"#;
    assert!(run(&src, &body(30, 90, sub)).contains(&dps(&[(30, "106.0")])));
}

#[test]
fn calendar_days_across_dst_in_a_timezone() {
    // Hourly ones from 2024-03-09 00:00 EST to 2024-03-12 00:00 EDT.
    let mut points = Vec::new();
    let mut t = 1_709_960_400_000;
    while t < 1_710_216_000_000 {
        points.push((t, Value::Int(1)));
        t += 3_600_000;
    }
    for rollups in [false, true] {
        let mut src = if rollups {
            MemSource::new().with_rollups()
        } else {
            MemSource::new()
        };
        src.add("d", &[("host", "a")], &points);
        let got = run(
            &src,
            r#"{"start":"2024/03/09","end":"2024/03/11-12:00","timezone":"America/New_York",
                "queries":[{"aggregator":"sum","metric":"d","downsample":"1dc-sum"}]}"#,
        );
        // 24 + 23 + 24 hours; keys at local midnight.
        assert_eq!(
            got,
            r#"[{"metric":"d","tags":{"host":"a"},"aggregateTags":[],"dps":{"1709960400":24.0,"1710046800":23.0,"1710129600":24.0}}]"#,
            "rollups={rollups}"
        );
        // Whole hours in New York: the engine asks for hourly rollups.
        assert!(src.rollup_reads.load(Relaxed) > 0);
        // The same days in UTC start at 00:00Z.
        let got = run(
            &src,
            r#"{"start":"2024/03/09","end":"2024/03/11-12:00",
                "queries":[{"aggregator":"sum","metric":"d","downsample":"1dc-sum"}]}"#,
        );
        assert!(
            got.ends_with(r#""dps":{"1709942400":19.0,"1710028800":24.0,"1710115200":24.0}}]"#),
            "{got}"
        );
        // useCalendar turns 1d into 1dc.
        let got = run(
            &src,
            r#"{"start":"2024/03/09","end":"2024/03/11-12:00","timezone":"America/New_York","useCalendar":true,
                "queries":[{"aggregator":"sum","metric":"d","downsample":"1d-sum"}]}"#,
        );
        assert!(got.contains(r#""1710046800":23.0"#), "{got}");
    }
}

fn counter_source() -> MemSource {
    let mut src = MemSource::new();
    src.add(
        "c",
        &[("host", "a")],
        &ints(&[(T0, 10), (T0 + 10, 30), (T0 + 20, 5), (T0 + 30, 25)]),
    );
    src
}

#[test]
fn rates_and_counter_options() {
    let src = counter_source();
    let start = (T0).to_string();
    let end = (T0 + 30).to_string();
    let cases: &[(&str, &[(i64, &str)])] = &[
        ("sum:rate:c", &[(10, "2.0"), (20, "-2.5"), (30, "2.0")]),
        (
            "sum:rate{counter}:c",
            &[(10, "2.0"), (20, "9.223372036854776E17"), (30, "2.0")],
        ),
        (
            "sum:rate{counter,100}:c",
            &[(10, "2.0"), (20, "7.5"), (30, "2.0")],
        ),
        (
            "sum:rate{counter,100,5}:c",
            &[(10, "2.0"), (20, "0.0"), (30, "2.0")],
        ),
        (
            "sum:rate{counter,100,10}:c",
            &[(10, "2.0"), (20, "7.5"), (30, "2.0")],
        ),
        ("sum:rate{dropcounter}:c", &[(10, "2.0"), (30, "2.0")]),
    ];
    for &(m, want) in cases {
        let got = get(&src, &[("start", &start), ("end", &end), ("m", m)]).unwrap();
        assert!(
            got.contains(&format!(r#""dps":{}"#, dps(want))),
            "{m}: {got}"
        );
    }
    // POST spelling.
    let sub = r#"{"aggregator":"sum","metric":"c","rate":"true",
                  "rateOptions":{"counter":true,"counterMax":100,"dropResets":true}}"#;
    assert!(run(&src, &body(0, 30, sub)).contains(&dps(&[(10, "2.0"), (30, "2.0")])));
}

#[test]
fn rates_across_series_use_the_previous_rate() {
    let mut src = MemSource::new();
    src.add(
        "r",
        &[("host", "a")],
        &ints(&[(T0, 0), (T0 + 10, 10), (T0 + 30, 30)]),
    );
    src.add("r", &[("host", "b")], &ints(&[(T0 + 5, 0), (T0 + 25, 100)]));
    // a: 1.0 @10, 1.0 @30. b: 5.0 @25. At 10 b has no rate yet: left out.
    // At 25 a is between its rates: its previous rate (1.0) counts.
    let got = run(
        &src,
        &body(0, 30, r#"{"aggregator":"sum","metric":"r","rate":true}"#),
    );
    assert!(
        got.contains(&dps(&[(10, "1.0"), (25, "6.0"), (30, "1.0")])),
        "{got}"
    );
    let got = run(
        &src,
        &body(0, 30, r#"{"aggregator":"zimsum","metric":"r","rate":true}"#),
    );
    assert!(
        got.contains(&dps(&[(10, "1.0"), (25, "6.0"), (30, "1.0")])),
        "{got}"
    );
}

fn filter_source() -> MemSource {
    let mut src = MemSource::new();
    src.add("f", &[("host", "web01"), ("dc", "lga")], &ints(&[(T0, 1)]));
    src.add("f", &[("host", "web02"), ("dc", "lga")], &ints(&[(T0, 2)]));
    src.add("f", &[("host", "Web03"), ("dc", "sjc")], &ints(&[(T0, 4)]));
    src.add("f", &[("dc", "lga")], &ints(&[(T0, 8)]));
    src.add(
        "f",
        &[("host", "db01"), ("dc", "sjc"), ("rack", "r1")],
        &ints(&[(T0, 16)]),
    );
    src
}

fn filtered(filters: &str, explicit: bool) -> String {
    body(
        0,
        10,
        &format!(
            r#"{{"aggregator":"sum","metric":"f","explicitTags":{explicit},"filters":[{filters}]}}"#
        ),
    )
}

fn f(t: &str, k: &str, expr: &str) -> String {
    format!(r#"{{"type":"{t}","tagk":"{k}","filter":"{expr}","groupBy":false}}"#)
}

#[test]
fn each_filter_type() {
    let src = filter_source();
    let one = |tags: &str, agg: &str, v: &str| {
        format!(
            r#"[{{"metric":"f","tags":{{{tags}}},"aggregateTags":[{agg}],"dps":{{"{T0}":{v}}}}}]"#
        )
    };
    let cases: Vec<(String, bool, String)> = vec![
        (
            f("literal_or", "host", "web01|web02"),
            false,
            one(r#""dc":"lga""#, r#""host""#, "3"),
        ),
        (
            f("iliteral_or", "host", "WEB01|web03"),
            false,
            one("", r#""dc","host""#, "5"),
        ),
        // not_* need the key: the series without `host` is out. `rack` is
        // on one series only and still counts as a common tag.
        (
            f("not_literal_or", "host", "web01"),
            false,
            one(r#""rack":"r1""#, r#""dc","host""#, "22"),
        ),
        (
            f("not_iliteral_or", "host", "WEB01|web02"),
            false,
            one(r#""dc":"sjc","rack":"r1""#, r#""host""#, "20"),
        ),
        (
            f("wildcard", "host", "web*"),
            false,
            one(r#""dc":"lga""#, r#""host""#, "3"),
        ),
        (
            f("iwildcard", "host", "web*"),
            false,
            one("", r#""dc","host""#, "7"),
        ),
        (
            f("regexp", "host", "eb0"),
            false,
            one("", r#""dc","host""#, "7"),
        ),
        (
            f("regexp", "host", "^web"),
            false,
            one(r#""dc":"lga""#, r#""host""#, "3"),
        ),
        // Filters on one key are ANDed.
        (
            format!(
                "{},{}",
                f("literal_or", "host", "web01|web02"),
                f("wildcard", "host", "*01")
            ),
            false,
            one(r#""dc":"lga","host":"web01""#, "", "1"),
        ),
        // Explicit tags: exactly the filtered keys.
        (
            f("wildcard", "dc", "*"),
            true,
            one(r#""dc":"lga""#, "", "8"),
        ),
        (
            format!(
                "{},{}",
                f("wildcard", "dc", "*"),
                f("wildcard", "host", "*")
            ),
            true,
            one("", r#""dc","host""#, "7"),
        ),
    ];
    for (filters, explicit, want) in cases {
        assert_eq!(run(&src, &filtered(&filters, explicit)), want, "{filters}");
    }
    // Nothing left after filtering: no result.
    assert_eq!(
        run(&src, &filtered(&f("iliteral_or", "host", "db01"), true)),
        "[]"
    );
}

#[test]
fn group_by() {
    let src = filter_source();
    let got = run(
        &src,
        &body(
            0,
            10,
            r#"{"aggregator":"sum","metric":"f","tags":{"host":"*"}}"#,
        ),
    );
    assert_eq!(
        got,
        format!(
            r#"[{{"metric":"f","tags":{{"dc":"sjc","host":"Web03"}},"aggregateTags":[],"dps":{{"{T0}":4}}}},{{"metric":"f","tags":{{"dc":"sjc","host":"db01","rack":"r1"}},"aggregateTags":[],"dps":{{"{T0}":16}}}},{{"metric":"f","tags":{{"dc":"lga","host":"web01"}},"aggregateTags":[],"dps":{{"{T0}":1}}}},{{"metric":"f","tags":{{"dc":"lga","host":"web02"}},"aggregateTags":[],"dps":{{"{T0}":2}}}}]"#
        )
    );
    let got = run(
        &src,
        &body(
            0,
            10,
            r#"{"aggregator":"sum","metric":"f","tags":{"dc":"lga|sjc"}}"#,
        ),
    );
    assert_eq!(
        got,
        format!(
            r#"[{{"metric":"f","tags":{{"dc":"lga"}},"aggregateTags":["host"],"dps":{{"{T0}":11}}}},{{"metric":"f","tags":{{"dc":"sjc","rack":"r1"}},"aggregateTags":["host"],"dps":{{"{T0}":20}}}}]"#
        )
    );
    // A JSON filter with groupBy groups too; GET braces the same way.
    let sub = r#"{"aggregator":"count","metric":"f","filters":[{"type":"wildcard","tagk":"dc","filter":"*","groupBy":true}]}"#;
    assert!(run(&src, &body(0, 10, sub))
        .contains(r#""tags":{"dc":"lga"},"aggregateTags":["host"],"dps":{"1356998400":3}"#));
    // The old syntax's `web*` ignores case: Web03 is in.
    let got = get(
        &src,
        &[
            ("start", "1356998400"),
            ("end", "1356998410"),
            ("m", "sum:f{dc=*}{host=web*}"),
        ],
    )
    .unwrap();
    assert_eq!(
        got,
        format!(
            r#"[{{"metric":"f","tags":{{"dc":"lga"}},"aggregateTags":["host"],"dps":{{"{T0}":3}}}},{{"metric":"f","tags":{{"dc":"sjc","host":"Web03"}},"aggregateTags":[],"dps":{{"{T0}":4}}}}]"#
        )
    );
    // `none`: every series on its own, in key order.
    let got = run(
        &src,
        &body(
            0,
            10,
            r#"{"aggregator":"none","metric":"f","tags":{"dc":"lga"}}"#,
        ),
    );
    assert_eq!(got.matches("\"metric\"").count(), 3, "{got}");
}

#[test]
fn unknown_names() {
    let src = filter_source();
    let err = |sub: &str| run_with(&src, &body(0, 10, sub), &QueryLimits::default()).unwrap_err();
    let e = err(r#"{"aggregator":"sum","metric":"nope"}"#);
    assert_eq!(
        (e.status(), e.message()),
        (400, "No such name for 'metrics': 'nope'".to_string())
    );
    assert_eq!(e.details(), Some(e.message()));
    let e = err(r#"{"aggregator":"sum","metric":"f","tags":{"zone":"*"}}"#);
    assert_eq!(e.message(), "No such name for 'tagk': 'zone'");
    let e = err(r#"{"aggregator":"sum","metric":"f","tags":{"host":"web01|web99"}}"#);
    assert_eq!(e.message(), "No such name for 'tagv': 'web99'");
    // Many values, as a dashboard lists every host: those the matched
    // series carry, those only other series carry, and the first unknown.
    let mut src = filter_source();
    src.add("g", &[("host", "g7")], &ints(&[(T0, 1)]));
    let many = |values: &str| {
        let sub = format!(r#"{{"aggregator":"sum","metric":"f","tags":{{"host":"{values}"}}}}"#);
        run_with(&src, &body(0, 10, &sub), &QueryLimits::default())
    };
    let known = "web01|web02|Web03|db01|lga|sjc|r1|g7|web01";
    assert!(many(known).is_ok());
    let e = many(&format!("{known}|x1|x2")).unwrap_err();
    assert_eq!(e.message(), "No such name for 'tagv': 'x1'");
    // Case-insensitive literals are not resolved.
    assert_eq!(
        run(&src, &filtered(&f("iliteral_or", "host", "web99"), false)),
        "[]"
    );
    // One unknown metric fails a multi-query request.
    let two = format!(
        r#"{{"start":{T0},"end":{},"queries":[{{"aggregator":"sum","metric":"f"}},{{"aggregator":"sum","metric":"nope"}}]}}"#,
        T0 + 10
    );
    assert_eq!(
        run_with(&src, &two, &QueryLimits::default())
            .unwrap_err()
            .status(),
        400
    );
}

#[test]
fn output_options() {
    let src = lerp_example();
    let two = format!(
        r#"{{"start":{T0},"end":{},"showQuery":true,"showTSUIDs":true,"msResolution":true,
            "queries":[{{"aggregator":"sum","metric":"m","tags":{{"host":"a"}}}},
                       {{"aggregator":"max","metric":"m","downsample":"1m-max"}}]}}"#,
        T0 + 20
    );
    assert_eq!(
        run(&src, &two),
        r#"[{"metric":"m","tags":{"host":"a"},"aggregateTags":[],"query":{"aggregator":"sum","metric":"m","tsuids":null,"downsample":null,"rate":false,"filters":[{"tagk":"host","filter":"a","group_by":true,"type":"literal_or"}],"percentiles":null,"index":0,"rateOptions":null,"filterTagKs":[],"explicitTags":false,"useFuzzyFilter":true,"preAggregate":false,"rollupUsage":null,"rollupTable":"raw","showHistogramBuckets":false,"useMultiGets":true,"tags":{"host":"literal_or(a)"},"histogramQuery":false},"tsuids":["0000000000000001"],"dps":{"1356998410000":5}},{"metric":"m","tags":{},"aggregateTags":["host"],"query":{"aggregator":"max","metric":"m","tsuids":null,"downsample":"1m-max","rate":false,"filters":[],"percentiles":null,"index":1,"rateOptions":null,"filterTagKs":[],"explicitTags":false,"useFuzzyFilter":true,"preAggregate":false,"rollupUsage":null,"rollupTable":"raw","showHistogramBuckets":false,"useMultiGets":true,"tags":{},"histogramQuery":false},"tsuids":["0000000000000001","0000000000000002"],"dps":{"1356998400000":20.0}}]"#
    );
    let params = [
        ("start", "1356998400"),
        ("end", "1356998420"),
        ("m", "sum:m"),
        ("arrays", "true"),
        ("show_stats", ""),
        ("show_summary", ""),
    ];
    assert_eq!(
        get(&src, &params).unwrap(),
        r#"[{"metric":"m","tags":{},"aggregateTags":["host"],"dps":[[1356998400,10],[1356998410,20],[1356998420,30]],"stats":{"emittedDPs":3,"queryIndex":0,"rawDPs":7,"series":2}},{"statsSummary":{"emittedDPs":3,"queries":1,"rawDPs":7,"series":2}}]"#
    );
}

#[test]
fn millisecond_points_merge_per_second_without_ms() {
    let mut src = MemSource::new();
    src.add(
        "ms",
        &[("host", "a")],
        &[
            (s(T0) + 100, Value::Int(1)),
            (s(T0) + 600, Value::Int(2)),
            (s(T0) + 1100, Value::Int(3)),
        ],
    );
    let got = run(&src, &body(0, 2, r#"{"aggregator":"sum","metric":"ms"}"#));
    assert!(got.contains(&dps(&[(0, "2"), (1, "3")])), "{got}");
    let q = format!(
        r#"{{"start":{T0},"end":{},"msResolution":true,"queries":[{{"aggregator":"sum","metric":"ms"}}]}}"#,
        T0 + 2
    );
    assert!(run(&src, &q).contains(r#"{"1356998400100":1,"1356998400600":2,"1356998401100":3}"#));
}

#[test]
fn limits() {
    let src = lerp_example();
    let q = body(0, 60, r#"{"aggregator":"sum","metric":"m"}"#);
    let limited = |limits: QueryLimits| run_with(&src, &q, &limits).unwrap_err();
    let e = limited(QueryLimits {
        max_series: 1,
        ..QueryLimits::default()
    });
    assert_eq!(e.status(), 413);
    assert!(e.message().contains("limit of 1 series"), "{e}");
    let e = limited(QueryLimits {
        max_points: 6,
        ..QueryLimits::default()
    });
    assert_eq!(e.status(), 413);
    assert!(e.message().contains("limit of 6 data points"), "{e}");
    let e = limited(QueryLimits {
        deadline: Some(Instant::now()),
        ..QueryLimits::default()
    });
    assert_eq!(
        (e.status(), e.message()),
        (503, "Query timeout exceeded".to_string())
    );
    // A fill over a huge number of buckets is refused before allocation.
    let q = body(
        0,
        60,
        r#"{"aggregator":"sum","metric":"m","downsample":"10ms-sum-zero"}"#,
    );
    let e = run_with(
        &src,
        &q,
        &QueryLimits {
            max_points: 100_000,
            ..QueryLimits::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.status(), 413);
    assert!(run_with(&src, &q, &QueryLimits::default()).is_ok());
}

/// Issue 9's bombs: the buckets a downsample would make, alone and times
/// the matched series, are refused before any name is resolved or point
/// read.
#[test]
fn bucket_limits() {
    let src = lerp_example();
    let q = |metric: &str, downsample: &str| {
        let sub =
            format!(r#"{{"aggregator":"sum","metric":"{metric}","downsample":"{downsample}"}}"#);
        body(0, 60, &sub)
    };
    let limits = |downsample: u64, query: u64| QueryLimits {
        max_downsample_buckets: downsample,
        max_query_buckets: query,
        ..QueryLimits::default()
    };
    // 60 s at 10 ms: 6,000 buckets, and one more at each end.
    let e = run_with(&src, &q("m", "10ms-sum-zero"), &limits(6001, u64::MAX)).unwrap_err();
    assert_eq!(e.status(), 400);
    assert_eq!(
        e.message(),
        "The downsample of sub-query 0 would make 6002 buckets over the time range, more than \
         the limit of 6001. Please use a longer downsample interval or a shorter time range."
    );
    assert_eq!(e.limit(), Some("downsample_buckets"));
    assert!(e.details().unwrap().contains("max-downsample-buckets"));
    // Before names: an unknown metric does not matter yet.
    let e = run_with(&src, &q("nope", "10ms-sum"), &limits(6001, u64::MAX)).unwrap_err();
    assert_eq!(e.limit(), Some("downsample_buckets"));
    assert!(run_with(&src, &q("m", "10ms-sum-zero"), &limits(6002, u64::MAX)).is_ok());
    assert!(run_with(&src, &q("m", "0all-sum"), &limits(1, 2)).is_ok());
    // Two series of 62 one-second buckets.
    let e = run_with(&src, &q("m", "1s-avg"), &limits(u64::MAX, 123)).unwrap_err();
    assert_eq!((e.status(), e.limit()), (413, Some("query_buckets")));
    assert!(e.message().contains("make 124 buckets"), "{e}");
    assert!(run_with(&src, &q("m", "1s-avg"), &limits(u64::MAX, 124)).is_ok());
    // Without a downsample no bucket is counted.
    let raw = body(0, 60, r#"{"aggregator":"sum","metric":"m"}"#);
    assert!(run_with(&src, &raw, &limits(0, 0)).is_ok());
}

/// Deterministic pseudo-random integers (a linear congruential generator).
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

fn rollup_sources() -> (MemSource, MemSource) {
    let mut raw = MemSource::new();
    let mut rolled = MemSource::new().with_rollups();
    let mut state = 7;
    let base = 1_709_856_000_000; // 2024-03-08T00:00Z
    for host in ["a", "b", "c"] {
        let mut points = Vec::new();
        let mut t = base + (lcg(&mut state) % 600_000) as i64;
        while t < base + 5 * 86_400_000 {
            points.push((t, Value::Int((lcg(&mut state) % 1000) as i64 - 300)));
            // Irregular steps with gaps of up to ~3 hours.
            t += 1
                + (lcg(&mut state) % 1_200_000) as i64
                    * if lcg(&mut state) % 50 == 0 { 10 } else { 1 };
        }
        raw.add("roll", &[("host", host)], &points);
        rolled.add("roll", &[("host", host)], &points);
    }
    (raw, rolled)
}

fn numbers(json: &str) -> Vec<(String, f64)> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut out = Vec::new();
    for (gi, group) in v.as_array().unwrap().iter().enumerate() {
        for (t, x) in group["dps"].as_object().unwrap() {
            out.push((format!("{gi}/{t}"), x.as_f64().unwrap_or(f64::NAN)));
        }
    }
    out
}

#[test]
fn rollups_give_the_raw_answers() {
    let (raw, rolled) = rollup_sources();
    let functions = [
        "sum", "count", "min", "max", "avg", "first", "last", "zimsum", "mimmin", "mimmax", "dev",
    ];
    let intervals = [
        "1h", "2h", "6h", "1d", "2d", "1dc", "1hc", "1w", "1wc", "1nc",
    ];
    let zones = [
        "",
        r#","timezone":"America/New_York""#,
        r#","timezone":"Asia/Kolkata""#,
    ];
    let mut rolled_up = 0;
    for zone in zones {
        for interval in intervals {
            for function in functions {
                for (fill, rate, agg) in [
                    ("", "", "sum"),
                    ("-zero", "", "avg"),
                    ("-nan", r#","rate":true"#, "max"),
                ] {
                    let q = format!(
                        r#"{{"start":"2024/03/08-05:17","end":"2024/03/12-13:05"{zone},
                            "queries":[{{"aggregator":"{agg}","metric":"roll","downsample":"{interval}-{function}{fill}"{rate},"tags":{{"host":"*"}}}},
                                       {{"aggregator":"{agg}","metric":"roll","downsample":"{interval}-{function}{fill}"{rate}}}]}}"#
                    );
                    let before = rolled.rollup_reads.load(Relaxed);
                    let (want, got) = (run(&raw, &q), run(&rolled, &q));
                    if rolled.rollup_reads.load(Relaxed) > before {
                        rolled_up += 1;
                    }
                    if function == "dev" {
                        let (w, g) = (numbers(&want), numbers(&got));
                        assert_eq!(w.len(), g.len(), "{q}");
                        for ((kw, a), (kg, b)) in w.iter().zip(&g) {
                            assert_eq!(kw, kg, "{q}");
                            let close = (a.is_nan() && b.is_nan())
                                || (a - b).abs() <= 1e-9 * a.abs().max(1.0);
                            assert!(close, "{q}: {kw} {a} vs {b}");
                        }
                    } else {
                        assert_eq!(want, got, "{q}");
                    }
                }
            }
        }
    }
    assert!(rolled_up > 500, "rollups used for {rolled_up} queries");
    // Intervals that cut hours, and functions rollups cannot answer, read points.
    let before = rolled.rollup_reads.load(Relaxed);
    for ds in ["30m-sum", "1h-p99", "1h-median", "0all-sum", "1dc-sum"] {
        let zone = if ds == "1dc-sum" {
            r#","timezone":"Asia/Kolkata""#
        } else {
            ""
        };
        let q = format!(
            r#"{{"start":"2024/03/08","end":"2024/03/10"{zone},"queries":[{{"aggregator":"sum","metric":"roll","downsample":"{ds}"}}]}}"#
        );
        assert_eq!(run(&raw, &q), run(&rolled, &q), "{ds}");
    }
    assert_eq!(rolled.rollup_reads.load(Relaxed), before);
    // ROLLUP_RAW keeps the engine on points.
    let q = r#"{"start":"2024/03/08","end":"2024/03/10","queries":[{"aggregator":"sum","metric":"roll","downsample":"1h-sum","rollupUsage":"ROLLUP_RAW"}]}"#;
    run(&rolled, q);
    assert_eq!(rolled.rollup_reads.load(Relaxed), before);
    // A store without rollups falls back to points.
    assert!(raw.rollup_reads.load(Relaxed) > 0 && raw.point_reads.load(Relaxed) > 0);
}

/// Replays `protocol/queries/*.json`, the cases the HTTP tests also run
/// through the real store. See the README there for the format.
#[test]
fn protocol_query_cases() {
    #[derive(Deserialize)]
    struct Case {
        name: String,
        series: Vec<CaseSeries>,
        request: CaseRequest,
        expect: Expect,
    }
    #[derive(Deserialize)]
    struct CaseSeries {
        metric: String,
        tags: BTreeMap<String, String>,
        points: Vec<(i64, serde_json::Number)>,
    }
    #[derive(Deserialize)]
    struct CaseRequest {
        get: Option<Vec<(String, String)>>,
        post: Option<serde_json::Value>,
        #[serde(default)]
        params: Vec<(String, String)>,
    }
    #[derive(Deserialize)]
    struct Expect {
        status: u16,
        body: Option<String>,
        message: Option<String>,
        details: Option<String>,
    }

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/protocol/queries");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut count = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let cases: Vec<Case> =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for case in cases {
            let mut src = MemSource::new();
            for series in &case.series {
                let tags: Vec<(&str, &str)> = series
                    .tags
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let points: Vec<(i64, Value)> = series
                    .points
                    .iter()
                    .map(|(t, v)| {
                        // OpenTSDB's rule: above 2^32 - 1 a timestamp is ms.
                        let ms = if *t > 4_294_967_295 { *t } else { t * 1000 };
                        let value = match v.as_i64() {
                            Some(i) => Value::Int(i),
                            None => Value::Float(v.as_f64().unwrap_or(f64::NAN)),
                        };
                        (ms, value)
                    })
                    .collect();
                src.add(&series.metric, &tags, &points);
            }
            let request = match (&case.request.get, &case.request.post) {
                (Some(params), _) => QueryRequest::from_get_params(params),
                (None, Some(body)) => {
                    QueryRequest::from_json(body.to_string().as_bytes()).map(|mut r| {
                        r.arrays = case.request.params.iter().any(|(k, _)| k == "arrays");
                        r
                    })
                }
                (None, None) => panic!("{}: no request", case.name),
            };
            // Refusing a delete is the HTTP layer's job (`allow-delete`);
            // tests/it/query_cases.rs checks those cases.
            if request.as_ref().is_ok_and(|r| r.delete) {
                continue;
            }
            let result = request.and_then(|r| execute(&src, &r, NOW, &QueryLimits::default()));
            match result {
                Ok(resp) => {
                    let mut out = String::new();
                    resp.write_json(&mut out);
                    assert_eq!(case.expect.status, 200, "{}: got {out}", case.name);
                    assert_eq!(Some(out), case.expect.body, "{}", case.name);
                }
                Err(e) => {
                    assert_eq!(e.status(), case.expect.status, "{}: {e}", case.name);
                    assert_eq!(Some(e.message()), case.expect.message, "{}", case.name);
                    if case.expect.details.is_some() {
                        assert_eq!(e.details(), case.expect.details, "{}", case.name);
                    }
                }
            }
            count += 1;
        }
    }
    assert!(count >= 20, "only {count} protocol cases");
}

/// `sum` of 1000 series with `1m-avg` over a day of 60 s points. Run with
/// `cargo test --release --lib bench_ -- --ignored --nocapture`.
#[test]
#[ignore]
// A timing harness run by hand; its figure is its output.
#[allow(clippy::print_stdout)]
fn bench_sum_of_1000_series_one_minute_avg_over_a_day() {
    let mut src = MemSource::new();
    let base = 1_704_067_200_000;
    for h in 0..1000 {
        let host = format!("h{h:04}");
        let points: Vec<(i64, Value)> = (0..1440)
            .map(|i| {
                (
                    base + i * 60_000 + h,
                    Value::Float((i * 7 + h) as f64 * 0.5),
                )
            })
            .collect();
        src.add("bench", &[("host", &host)], &points);
    }
    let q = format!(
        r#"{{"start":{},"end":{},"queries":[{{"aggregator":"sum","metric":"bench","downsample":"1m-avg"}}]}}"#,
        base,
        base + 86_400_000 - 1
    );
    let req = QueryRequest::from_json(q.as_bytes()).unwrap();
    // CPU time of this thread, so a busy machine does not skew the number.
    let cpu_ms = || {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        let ns: f64 = stat
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        ns / 1e6
    };
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = cpu_ms();
        let resp = execute(&src, &req, NOW, &QueryLimits::default()).unwrap();
        let mut out = String::new();
        resp.write_json(&mut out);
        best = best.min(cpu_ms() - t);
        assert_eq!(resp.results[0].dps.len(), 1440);
    }
    // What the in-memory store alone costs (copying the points out).
    let t = cpu_ms();
    let copied: usize = (1..=1000)
        .map(|id| src.points(id, base, base + 86_400_000).unwrap().len())
        .sum();
    let store = cpu_ms() - t;
    assert_eq!(copied, 1_440_000);
    println!("sum of 1000 series, 1m-avg, 1.44 M points: {best:.1} ms CPU (of which store copies {store:.1} ms)");
}

#[test]
fn tsuid_sub_queries_select_series_by_id() {
    let mut src = MemSource::new();
    src.add("m", &[("host", "a")], &ints(&[(T0, 1), (T0 + 10, 2)]));
    src.add("m", &[("host", "b")], &ints(&[(T0, 10), (T0 + 10, 20)]));
    src.add("other", &[("host", "a")], &ints(&[(T0, 5)]));
    let q = |tsuids: &str| {
        body(
            0,
            10,
            &format!(r#"{{"aggregator":"sum","tsuids":[{tsuids}]}}"#),
        )
    };
    assert_eq!(
        run(&src, &q(r#""0000000000000002""#)),
        format!(
            r#"[{{"metric":"m","tags":{{"host":"b"}},"aggregateTags":[],"dps":{{"{T0}":10,"{}":20}}}}]"#,
            T0 + 10
        )
    );
    assert_eq!(
        run(&src, &q(r#""0000000000000001","2""#)),
        format!(
            r#"[{{"metric":"m","tags":{{}},"aggregateTags":["host"],"dps":{{"{T0}":11,"{}":22}}}}]"#,
            T0 + 10
        )
    );
    let err = |t: &str| {
        run_with(&src, &q(t), &QueryLimits::default())
            .unwrap_err()
            .message()
    };
    assert_eq!(
        err(r#""0000000000000009""#),
        "No such TSUID: 0000000000000009"
    );
    assert_eq!(
        err(r#""1","3""#),
        "One or more TSUIDs did not share the same metric [m] [other]"
    );
}
