//! The dashboard: a single page at `/` that browses metrics and charts them
//! through the public HTTP API (`/api/suggest`, `/api/search/lookup`,
//! `/api/query`, `/api/aggregators`), so it shows exactly what Grafana would.
//!
//! The page, its script and its stylesheet live in `src/http/dashboard/` and
//! are compiled into the binary with `include_str!`: nothing to build or
//! install beside rtsd. Each asset carries a weak `ETag` (a hash of its bytes
//! computed at compile time) and `Cache-Control: no-cache`, so browsers
//! revalidate with a cheap 304 and never keep an asset from an older rtsd
//! after an upgrade. The page runs under a Content-Security-Policy allowing
//! only its own script and stylesheet.

use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{allow, ApiError};

/// One embedded file and how it is served.
struct Asset {
    content_type: &'static str,
    body: &'static str,
    etag: &'static str,
}

/// Builds an [`Asset`] with its ETag computed from the file at compile
/// time; a macro because `concat!` cannot take a `const fn` result.
macro_rules! asset {
    ($file:literal, $content_type:literal) => {{
        const BODY: &str = include_str!(concat!("dashboard/", $file));
        const HASH: [u8; 16] = hex(fnv1a(BODY.as_bytes()));
        const TAG: [u8; 20] = weak_etag(HASH);
        Asset {
            content_type: $content_type,
            body: BODY,
            etag: match std::str::from_utf8(&TAG) {
                Ok(tag) => tag,
                Err(_) => panic!("etag is ascii"),
            },
        }
    }};
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");
const SCRIPT: Asset = asset!("app.js", "text/javascript; charset=utf-8");
const STYLE: Asset = asset!("app.css", "text/css; charset=utf-8");

/// What the page may load: its own script, stylesheet and API, and the
/// empty `data:` favicon that stops browsers asking for `/favicon.ico`.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

pub async fn index(method: Method, headers: HeaderMap) -> Result<Response, ApiError> {
    serve(&INDEX, &method, &headers)
}

pub async fn script(method: Method, headers: HeaderMap) -> Result<Response, ApiError> {
    serve(&SCRIPT, &method, &headers)
}

pub async fn style(method: Method, headers: HeaderMap) -> Result<Response, ApiError> {
    serve(&STYLE, &method, &headers)
}

/// Answers GET/HEAD with the asset, or 304 when the client's cached copy
/// (`If-None-Match`) is current; other methods get OpenTSDB's 405.
fn serve(asset: &Asset, method: &Method, headers: &HeaderMap) -> Result<Response, ApiError> {
    allow(method, &[Method::GET, Method::HEAD])?;
    let common = [
        (header::ETAG, HeaderValue::from_static(asset.etag)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
    ];
    if is_current(headers, asset.etag) {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    Ok((
        StatusCode::OK,
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response())
}

/// `If-None-Match` lists `etag` (compared weakly, as RFC 9110 asks for
/// this header) or is `*`.
fn is_current(headers: &HeaderMap, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(etag);
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == "*" || opaque(tag) == ours)
}

/// 64-bit FNV-1a: tiny, `const`, and plenty to tell asset versions apart.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

const fn hex(value: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = DIGITS[((value >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

/// `W/"<hex>"`: weak, because the compression layer may gzip the body and
/// a strong tag would then wrongly promise identical bytes.
const fn weak_etag(hex: [u8; 16]) -> [u8; 20] {
    let mut out = *b"W/\"0000000000000000\"";
    let mut i = 0;
    while i < 16 {
        out[3 + i] = hex[i];
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn header_of(resp: &Response, name: header::HeaderName) -> &str {
        resp.headers()[name].to_str().unwrap()
    }

    #[test]
    fn etags_are_weak_hashes_of_the_content() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(&hex(0x0123_4567_89ab_cdef), b"0123456789abcdef");
        let expected = format!("W/\"{:016x}\"", fnv1a(SCRIPT.body.as_bytes()));
        assert_eq!(SCRIPT.etag, expected);
        assert_ne!(SCRIPT.etag, STYLE.etag);
    }

    #[tokio::test]
    async fn assets_are_served_with_their_types() {
        let cases = [
            (index(Method::GET, HeaderMap::new()).await, &INDEX),
            (script(Method::GET, HeaderMap::new()).await, &SCRIPT),
            (style(Method::GET, HeaderMap::new()).await, &STYLE),
        ];
        for (resp, asset) in cases {
            let resp = resp.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(header_of(&resp, header::CONTENT_TYPE), asset.content_type);
            assert_eq!(header_of(&resp, header::CACHE_CONTROL), "no-cache");
            assert_eq!(header_of(&resp, header::ETAG), asset.etag);
            assert_eq!(body_of(resp).await, asset.body);
        }
        assert!(INDEX
            .body
            .contains(r#"<script src="/dashboard/app.js" defer>"#));
        assert!(INDEX.body.contains(r#"href="/dashboard/app.css""#));
    }

    #[tokio::test]
    async fn a_current_copy_gets_304() {
        let mut headers = HeaderMap::new();
        let strong = INDEX.etag.trim_start_matches("W/");
        let list = format!("\"other\", {strong}");
        headers.insert(header::IF_NONE_MATCH, list.parse().unwrap());
        let resp = index(Method::GET, headers).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header_of(&resp, header::ETAG), INDEX.etag);
        assert_eq!(body_of(resp).await, "");

        let mut stale = HeaderMap::new();
        stale.insert(header::IF_NONE_MATCH, "W/\"0\"".parse().unwrap());
        let resp = index(Method::GET, stale).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn other_methods_get_opentsdbs_405() {
        let err = index(Method::POST, HeaderMap::new()).await.unwrap_err();
        assert_eq!(err, ApiError::method_not_allowed(&Method::POST));
        assert!(index(Method::HEAD, HeaderMap::new()).await.is_ok());
    }
}
