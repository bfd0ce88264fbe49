//! The dashboard at `/` in a real browser: Debian's Chromium, headless,
//! loads the page from a [`TestDaemon`] holding series written over telnet
//! a moment ago, and the test reads the DOM the page's script built (the
//! chart element's `data-state`/`data-points`, the polylines, the metric
//! list) and takes a screenshot, kept as a build artifact for a human to
//! look at. Chromium comes from `.ci/deps`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

use regex::Regex;

use crate::support::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Minutes of data per series, one point per minute, so a `1m-avg` query
/// over the last hour gives exactly this many points per series.
const MINUTES: u64 = 30;

/// Writes `cpu.user` for web01 and web02, `mem.free` for web01 and
/// `net.bytes.in` for web01/eth0, at minute boundaries ending now.
async fn seed(d: &TestDaemon) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let last = now / 60 * 60;
    let mut lines = String::new();
    for i in 0..MINUTES {
        let t = last - i * 60;
        lines.push_str(&format!("put sys.cpu.user {t} {} host=web01\n", 10 + i % 7));
        lines.push_str(&format!("put sys.cpu.user {t} {} host=web02\n", 20 + i));
        lines.push_str(&format!(
            "put sys.mem.free {t} {} host=web01\n",
            1000 + 3 * i
        ));
        lines.push_str(&format!(
            "put net.bytes.in {t} {} host=web01 iface=eth0\n",
            5000 * i
        ));
    }
    assert_eq!(exchange(d.telnet(), lines.as_bytes()).await, b"");
    d.wait_stored(4 * MINUTES).await;
}

/// Runs headless Chromium on `url` with `extra` flags; fails the test with
/// Chromium's stderr if it does not exit cleanly.
async fn chromium(profile: &Path, url: &str, extra: &[&str]) -> Output {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing; run .ci/deps to install it"
    );
    let run = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(2 * DEADLINE, run)
        .await
        .expect("chromium finishes")
        .expect("chromium starts");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The start tag of the element with `id`.
fn start_tag<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!(" id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in {dom}"));
    let open = dom[..at].rfind('<').unwrap();
    let close = at + dom[at..].find('>').unwrap();
    &dom[open..=close]
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    Some(&tag[from..from + tag[from..].find('"')?])
}

/// `$CARGO_TARGET_DIR/test-artifacts`, or `target/test-artifacts` in the
/// crate when the variable is unset.
fn artifacts_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-artifacts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_charts_ingested_series_in_chromium() {
    let d = TestDaemon::start().await;
    seed(&d).await;
    let profile = tempfile::tempdir().unwrap();
    // The view a shared link would carry: cpu.user, one line per host.
    let url = format!(
        "http://{}/#m=sys.cpu.user&agg=sum&ds=1m-avg&start=1h-ago&tag=host%3D*",
        d.http()
    );

    // The page fetches the chart and each sparkline after it loads (the
    // sparklines once an IntersectionObserver sees them); on a loaded
    // machine headless Chromium can dump the DOM before the last answer
    // lands, so it is dumped again until nothing is pending (bounded).
    let start = std::time::Instant::now();
    let dom = loop {
        let out = chromium(profile.path(), &url, &["--dump-dom"]).await;
        let dom = String::from_utf8(out.stdout).unwrap();
        let pending = ["\"pending\"", "\"loading\""]
            .iter()
            .any(|state| dom.contains(&format!("data-state={state}")));
        if !pending || start.elapsed() > DEADLINE {
            break dom;
        }
    };

    let chart = start_tag(&dom, "chart");
    assert_eq!(attr(chart, "data-state"), Some("ready"), "{dom}");
    assert_eq!(attr(chart, "data-series"), Some("2"));
    let total = 2 * MINUTES;
    assert_eq!(attr(chart, "data-points"), Some(total.to_string().as_str()));
    let polyline =
        Regex::new(r#"<polyline class="series" [^>]*data-points="(\d+)" points="([^"]*)""#)
            .unwrap();
    let lines: Vec<(usize, usize)> = polyline
        .captures_iter(&dom)
        .map(|c| (c[1].parse().unwrap(), c[2].split_whitespace().count()))
        .collect();
    assert_eq!(lines, vec![(MINUTES as usize, MINUTES as usize); 2]);
    assert!(dom.contains(r#"<span class="label">sys.cpu.user{host=web01}</span>"#));
    assert!(dom.contains(r#"<span class="label">sys.cpu.user{host=web02}</span>"#));
    assert_eq!(attr(start_tag(&dom, "error"), "hidden"), Some(""));
    // The header names rtsd's own release, not only the API level.
    let version = format!(
        r#"<span id="version">rtsd {} (OpenTSDB API 2.4.1)</span>"#,
        env!("CARGO_PKG_VERSION")
    );
    assert!(dom.contains(&version), "{dom}");
    // The filter select for `host` came from the lookup and shows `*`.
    assert!(dom.contains(r#"<option value="*">each (group by)</option>"#));

    // Every metric is listed, sorted, each with a sparkline of its last hour
    // (summed over its series: one point a minute).
    let list = start_tag(&dom, "metric-list");
    assert_eq!(attr(list, "data-state"), Some("ready"));
    assert_eq!(attr(list, "data-count"), Some("3"));
    let item = Regex::new(
        r#"<li data-metric="([^"]+)"[^>]*>.*?<svg class="spark"[^>]*data-state="(\w+)" data-points="(\d+)""#,
    )
    .unwrap();
    let items: Vec<(String, String, String)> = item
        .captures_iter(&dom)
        .map(|c| (c[1].to_string(), c[2].to_string(), c[3].to_string()))
        .collect();
    let expect = |m: &str| (m.to_string(), "ready".to_string(), MINUTES.to_string());
    assert_eq!(
        items,
        vec![
            expect("net.bytes.in"),
            expect("sys.cpu.user"),
            expect("sys.mem.free")
        ]
    );

    let dir = artifacts_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    chromium(profile.path(), &url, &[&shot, "--window-size=1280,800"]).await;
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let dim = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((dim(16), dim(20)), (1280, 800));
    // A blank or error page compresses to a few kilobytes; text, sparklines
    // and a chart do not.
    assert!(
        bytes.len() > 20_000,
        "screenshot only {} bytes",
        bytes.len()
    );
}

/// A GET's whole reply, headers included.
async fn get_raw(addr: SocketAddr, path: &str) -> String {
    String::from_utf8(http_raw(addr, "GET", path, &[], b"").await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_assets_are_served_with_types_and_caching() {
    let d = TestDaemon::start().await;
    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "<title>rtsd</title>"),
        (
            "/dashboard/app.js",
            "text/javascript; charset=utf-8",
            "\"use strict\";",
        ),
        ("/dashboard/app.css", "text/css; charset=utf-8", "#chart"),
    ] {
        let raw = get_raw(d.http(), path).await;
        let (head, body) = raw.split_once("\r\n\r\n").expect("http header end");
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{path}: {head}");
        assert!(
            head.contains(&format!("\r\ncontent-type: {content_type}\r\n")),
            "{head}"
        );
        assert!(head.contains("\r\ncache-control: no-cache\r\n"), "{head}");
        assert!(head.contains("\r\netag: w/\""), "{head}");
        assert!(body.contains(needle), "{path}");
    }
    // The API keeps answering unknown paths with OpenTSDB's 404.
    assert_eq!(
        http(d.http(), "GET", "/dashboard/nothing.js", b"").await,
        (
            404,
            r#"{"error":{"code":404,"message":"Endpoint not found"}}"#.to_string()
        )
    );
}
