//! `[auth]` end to end over real sockets: every endpoint with no token and
//! with each scope (401/403/2xx, table-driven), Bearer and Basic, the
//! challenge header, telnet `auth` and `write-networks`, deletes that need
//! admin and `allow-delete`, and a GET that never deletes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use base64::Engine;
use rtsd::config::{ServeArgs, Settings};
use rtsd::model::Value;
use serde_json::json;

use crate::support::*;

const T: i64 = 1_700_000_000;

/// One token per scope; the names double as the secrets' prefixes.
const TOKENS: &str = r#"
[[auth.token]]
name = "reader"
secret = "reader-secret"
scopes = ["read"]

[[auth.token]]
name = "writer"
secret = "writer-secret"
scopes = ["write"]

[[auth.token]]
name = "admin"
secret = "admin-secret"
scopes = ["admin"]
"#;

/// Settings from a real config file: `TOKENS` plus `extra` TOML.
fn auth_settings(extra: &str) -> rtsd::auth::Auth {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rtsd.toml");
    std::fs::write(&path, format!("{extra}\n{TOKENS}")).unwrap();
    let args = ServeArgs {
        config: Some(path),
        ..Default::default()
    };
    Settings::load(&args).expect("valid config").auth
}

async fn daemon(extra: &str, allow_delete: bool) -> TestDaemon {
    let auth = auth_settings(extra);
    TestDaemon::start_with(move |s| {
        s.auth = auth;
        s.allow_delete = allow_delete;
    })
    .await
}

fn bearer(secret: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {secret}"))
}

fn basic(name: &str, secret: &str) -> (&'static str, String) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{secret}"));
    ("Authorization", format!("Basic {encoded}"))
}

async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<(&'static str, String)>,
    body: &str,
) -> (u16, String) {
    let headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    http_with(addr, method, path, &headers, body.as_bytes()).await
}

/// The body of a GET with a bearer token.
async fn body_as(addr: SocketAddr, path: &str, secret: &str) -> String {
    call(addr, "GET", path, Some(bearer(secret)), "").await.1
}

/// The scope a row needs; `None` for the open endpoints.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Needs {
    Open,
    Read,
    Write,
    Admin,
}

/// Every endpoint, with a request that succeeds when allowed.
fn endpoints() -> Vec<(&'static str, String, String, Needs)> {
    use Needs::*;
    let q = format!("start={T}&end={}&m=sum:auth.m", T + 100);
    let query_body =
        json!({"start": T, "end": T + 100, "queries": [{"metric": "auth.m", "aggregator": "sum"}]});
    let delete_body = json!({"start": T, "end": T + 100, "delete": true, "queries": [{"metric": "gone.m", "aggregator": "sum"}]});
    let note = json!({"startTime": T, "description": "deploy"}).to_string();
    let notes = json!([{"startTime": T + 1, "description": "bulk"}]).to_string();
    let meta = json!([{"Metric": "auth.m", "Name": "unit", "Value": "bytes"}]).to_string();
    let put = json!({"metric": "auth.m", "timestamp": T + 50, "value": 1, "tags": {"h": "a"}});
    let s = String::new;
    vec![
        ("GET", "/api/version".into(), s(), Open),
        ("GET", "/api/v1/version".into(), s(), Open),
        ("GET", format!("/api/query?{q}"), s(), Read),
        ("POST", "/api/query".into(), query_body.to_string(), Read),
        ("GET", "/api/query/last?timeseries=auth.m".into(), s(), Read),
        ("GET", "/api/suggest?type=metrics&q=auth".into(), s(), Read),
        ("GET", "/api/search/lookup?m=auth.m".into(), s(), Read),
        ("GET", format!("/api/annotation?start_time={T}"), s(), Read),
        ("GET", "/api/stats".into(), s(), Read),
        ("GET", "/api/config".into(), s(), Read),
        ("GET", "/api/config/filters".into(), s(), Read),
        ("GET", "/api/aggregators".into(), s(), Read),
        ("GET", "/api/rtsd/stale".into(), s(), Read),
        ("GET", "/metrics".into(), s(), Read),
        ("GET", "/".into(), s(), Read),
        ("POST", "/api/put".into(), put.to_string(), Write),
        ("POST", "/api/metadata/put".into(), meta, Write),
        ("POST", "/api/annotation".into(), note.clone(), Write),
        ("PUT", "/api/annotation".into(), note.clone(), Write),
        ("POST", "/api/annotation/bulk".into(), notes, Write),
        ("DELETE", "/api/annotation".into(), note, Admin),
        (
            "DELETE",
            format!("/api/annotation/bulk?start_time={T}&global"),
            s(),
            Admin,
        ),
        (
            "DELETE",
            format!("/api/query?start={T}&m=sum:gone.m"),
            s(),
            Admin,
        ),
        ("POST", "/api/query".into(), delete_body.to_string(), Admin),
        ("GET", "/api/dropcaches".into(), s(), Admin),
        ("GET", "/api/uid/assign?metric=auth.new".into(), s(), Admin),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_with_every_scope() {
    let d = daemon("", true).await;
    // Data for the reads: a series and a global note, written by admin.
    let admin = || Some(bearer("admin-secret"));
    let line =
        format!("auth basic admin admin-secret\nput auth.m {T} 1 h=a\nput gone.m {T} 1 h=a\n");
    let reply = exchange(d.telnet(), line.as_bytes()).await;
    assert_eq!(String::from_utf8_lossy(&reply), "AUTH_SUCCESS.\n");
    d.wait_stored(2).await;
    let note = json!({"startTime": T, "description": "deploy"}).to_string();
    let (s, b) = call(d.http(), "POST", "/api/annotation", admin(), &note).await;
    assert_eq!(s, 200, "{b}");

    let tokens = [
        ("reader-secret", Needs::Read),
        ("writer-secret", Needs::Write),
        ("admin-secret", Needs::Admin),
    ];
    for (method, path, body, needs) in endpoints() {
        let (s, b) = call(d.http(), method, &path, None, &body).await;
        if needs == Needs::Open {
            assert_eq!(s, 200, "{method} {path} without a token: {b}");
        } else {
            assert_eq!(s, 401, "{method} {path} without a token: {b}");
            assert_eq!(
                b,
                r#"{"error":{"code":401,"message":"Unauthorized","details":"This endpoint needs a token: Authorization: Bearer <secret>, or Basic with the token's name and secret"}}"#
            );
        }
        for (secret, scope) in tokens {
            let allowed = needs == Needs::Open || scope == Needs::Admin || scope == needs;
            // The DELETE rows run again for each token; what they delete
            // may already be gone, which they answer alike.
            let (s, b) = call(d.http(), method, &path, Some(bearer(secret)), &body).await;
            // rtsd has no per-name UIDs: an allowed assign is answered in
            // OpenTSDB's 400 shape, with the reason per name.
            let answered = match path.starts_with("/api/uid/assign") {
                true => s == 400 && b.contains("metric_errors"),
                false => (200..300).contains(&s),
            };
            if allowed {
                assert!(answered, "{method} {path} as {scope:?}: {s} {b}");
            } else {
                assert_eq!(s, 403, "{method} {path} as {scope:?}: {b}");
                assert!(b.contains(r#""code":403,"message":"Forbidden""#), "{b}");
            }
        }
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_bearer_and_the_challenge() {
    let d = daemon("", false).await;
    let path = "/api/aggregators";
    let ok = |(s, b): (u16, String)| assert_eq!(s, 200, "{b}");
    let refused = |(s, b): (u16, String)| assert_eq!(s, 401, "{b}");
    ok(call(
        d.http(),
        "GET",
        path,
        Some(basic("reader", "reader-secret")),
        "",
    )
    .await);
    ok(call(d.http(), "GET", path, Some(bearer("reader-secret")), "").await);
    // The telnet port answers HTTP behind the same guard.
    refused(call(d.telnet(), "GET", path, None, "").await);
    ok(call(d.telnet(), "GET", path, Some(bearer("reader-secret")), "").await);
    // Wrong secret, secret of another name, unknown scheme, garbage.
    let wrong: [(&str, String); 5] = [
        basic("reader", "wrong"),
        basic("writer", "reader-secret"),
        ("Authorization", "Token reader-secret".into()),
        ("Authorization", "Basic %%%".into()),
        bearer(""),
    ];
    let wrong_count = wrong.len();
    for header in wrong {
        refused(call(d.http(), "GET", path, Some(header), "").await);
    }
    // Counted, as every 401 and 403 is (the telnet port's one included).
    let stats = body_as(d.http(), "/api/stats", "reader-secret").await;
    assert!(stats.contains(r#""tsd.rtsd.auth.refused""#), "{stats}");
    assert!(stats.contains(r#""protocol":"telnet""#), "{stats}");
    let counted = d.daemon.stats.auth_refused_http.load(Relaxed);
    assert_eq!(counted, 1 + wrong_count as u64);

    // The 401 names both schemes and never echoes what was sent.
    let header = [("Authorization", "Bearer not-a-token-42")];
    let raw = http_raw(d.http(), "GET", "/api/query", &header, b"").await;
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    let challenge =
        "www-authenticate: Bearer realm=\"rtsd\", Basic realm=\"rtsd\", charset=\"UTF-8\"";
    assert!(
        raw.to_ascii_lowercase()
            .contains(&challenge.to_ascii_lowercase()),
        "{raw}"
    );
    assert!(!raw.contains("not-a-token-42"), "{raw}");

    // /api/config says how many tokens, never which.
    let config = body_as(d.http(), "/api/config", "admin-secret").await;
    assert!(config.contains(r#""rtsd.auth":"on, 3 tokens""#), "{config}");
    assert!(!config.contains("secret"), "{config}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnet_put_needs_a_write_token() {
    let d = daemon("", false).await;
    let refused = "put: illegal argument: not authenticated\n";
    let text = format!(
        "put t.m {T} 1 h=a\nauth basic writer wrong\nauth nonsense\nput t.m {T} 2 h=a\n\
         auth basic reader reader-secret\nput t.m {T} 3 h=a\n\
         auth basic writer writer-secret\nput t.m {} 4 h=a\nversion\n",
        T + 1
    );
    let reply = String::from_utf8(exchange(d.telnet(), text.as_bytes()).await).unwrap();
    let expected =
        format!("{refused}AUTH_FAIL\nAUTH_FAIL\n{refused}AUTH_SUCCESS.\n{refused}AUTH_SUCCESS.\n");
    assert!(reply.starts_with(&expected), "{reply}");
    assert!(reply[expected.len()..].starts_with("rtsd "), "{reply}");
    d.wait_stored(1).await;
    let stats = d.daemon.stats.clone();
    assert_eq!(stats.rejected_count("not_authenticated"), 3);
    assert_eq!(stats.auth_refused_telnet.load(Relaxed), 2);
    // An admin token writes too; a fresh connection starts unauthenticated.
    let reply = exchange(
        d.telnet(),
        format!("auth basic admin admin-secret\nput t.m {} 5 h=a\n", T + 2).as_bytes(),
    )
    .await;
    assert_eq!(reply, b"AUTH_SUCCESS.\n");
    let reply = exchange(d.telnet(), format!("put t.m {} 6 h=a\n", T + 3).as_bytes()).await;
    assert_eq!(String::from_utf8_lossy(&reply), refused);
    d.wait_stored(2).await;
    let key = rtsd::model::SeriesKey::new("t.m", [("h", "a")]);
    let values: Vec<_> = d.points(&key).iter().map(|p| p.value).collect();
    assert_eq!(values, [Value::Int(4), Value::Int(5)]);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_networks_put_without_auth() {
    let inside = daemon("[auth]\nwrite-networks = [\"127.0.0.0/8\"]", false).await;
    let reply = exchange(inside.telnet(), format!("put w.m {T} 1 h=a\n").as_bytes()).await;
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    inside.wait_stored(1).await;
    // HTTP is not covered by write-networks: it can always send a token.
    let put = json!({"metric": "w.m", "timestamp": T, "value": 1, "tags": {"h": "a"}});
    let (s, _) = call(inside.http(), "POST", "/api/put", None, &put.to_string()).await;
    assert_eq!(s, 401);
    inside.stop().await;

    let outside = daemon(
        "[auth]\nwrite-networks = [\"10.0.0.0/8\", \"::1/128\"]",
        false,
    )
    .await;
    let reply = exchange(outside.telnet(), format!("put w.m {T} 1 h=a\n").as_bytes()).await;
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "put: illegal argument: not authenticated\n"
    );
    outside.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_need_admin_and_allow_delete_and_never_a_get() {
    // Without allow-delete even admin cannot delete annotations.
    let d = daemon("", false).await;
    let admin = || Some(bearer("admin-secret"));
    let note = json!({"startTime": T, "description": "keep"}).to_string();
    let (s, b) = call(d.http(), "POST", "/api/annotation", admin(), &note).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = call(d.http(), "DELETE", "/api/annotation", admin(), &note).await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("Deleting annotations is not enabled"), "{b}");
    let bulk = format!("/api/annotation/bulk?start_time={T}&global");
    let (s, _) = call(d.http(), "DELETE", &bulk, admin(), "").await;
    assert_eq!(s, 400);
    let (s, _) = call(
        d.http(),
        "DELETE",
        "/api/annotation",
        Some(bearer("writer-secret")),
        &note,
    )
    .await;
    assert_eq!(s, 403);
    let get = format!("/api/annotation?start_time={T}");
    let (s, b) = call(d.http(), "GET", &get, admin(), "").await;
    assert_eq!(s, 200, "still there: {b}");
    d.stop().await;

    // With allow-delete, a GET with `delete` is refused and deletes nothing.
    let d = daemon("", true).await;
    exchange(
        d.telnet(),
        format!("auth basic admin admin-secret\nput g.m {T} 1 h=a\n").as_bytes(),
    )
    .await;
    d.wait_stored(1).await;
    let path = format!("/api/query?start={T}&end={}&m=sum:g.m", T + 10);
    let (s, b) = call(d.http(), "GET", &format!("{path}&delete"), admin(), "").await;
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("A GET never deletes"), "{b}");
    assert_eq!(d.daemon.stats.delete_requests.load(Relaxed), 0);
    let (s, b) = call(d.http(), "GET", &path, admin(), "").await;
    assert_eq!(s, 200);
    assert!(b.contains(&format!("\"{T}\":1")), "still there: {b}");
    // A reader may query but not delete through a query body.
    let body = json!({"start": T, "end": T + 10, "delete": true, "queries": [{"metric": "g.m", "aggregator": "sum"}]});
    let (s, _) = call(
        d.http(),
        "POST",
        "/api/query",
        Some(bearer("reader-secret")),
        &body.to_string(),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = call(d.http(), "POST", "/api/query", admin(), &body.to_string()).await;
    assert_eq!(s, 200);
    assert_eq!(d.daemon.stats.delete_requests.load(Relaxed), 1);
    d.stop().await;
}
