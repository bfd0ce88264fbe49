//! Request bodies: read with a size limit, inflated when the client sent
//! `Content-Encoding: gzip` (scollector and telegraf always do) or
//! `deflate`, and parsed as JSON with OpenTSDB's error texts.
//!
//! The limit applies to the compressed bytes read off the socket and again
//! to the inflated bytes, so a small gzip bomb cannot expand past it either.
//! Every compressed body is inflated on the blocking pool: its cost is CPU
//! bounded only by that limit (32 MiB out of a few KiB in), so even a
//! small one must not hold an async worker that carries ingest, and one
//! hop to the pool is cheap next to the put it carries.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;

use super::{blocking, ApiError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Gzip,
    Deflate,
}

/// Reads the whole body, at most `limit` bytes once inflated.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let compression = compression(headers)?;
    let raw = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large(limit)),
        Err(e) => {
            return Err(ApiError::bad_request("Unable to read the request body")
                .with_details(e.to_string()))
        }
    };
    match compression {
        None => Ok(raw),
        Some(c) => blocking(move || inflate(c, &raw, limit)).await,
    }
}

fn compression(headers: &HeaderMap) -> Result<Option<Compression>, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    match text.to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(None),
        "gzip" | "x-gzip" => Ok(Some(Compression::Gzip)),
        "deflate" => Ok(Some(Compression::Deflate)),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Unsupported Content-Encoding: {text}"),
        )
        .with_details("Send the body uncompressed, or compressed with gzip or deflate")),
    }
}

fn inflate(compression: Compression, raw: &[u8], limit: usize) -> Result<Bytes, ApiError> {
    // One byte past the limit tells "too large" from "exactly the limit".
    let cap = limit as u64 + 1;
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4).min(limit));
    let read = match compression {
        // Multi-member: concatenated gzip streams are one valid body.
        Compression::Gzip => flate2::read::MultiGzDecoder::new(raw)
            .take(cap)
            .read_to_end(&mut out),
        Compression::Deflate => flate2::read::ZlibDecoder::new(raw)
            .take(cap)
            .read_to_end(&mut out),
    };
    match read {
        Ok(n) if n > limit => Err(too_large(limit)),
        Ok(_) => Ok(Bytes::from(out)),
        Err(e) => Err(
            ApiError::bad_request("Unable to decompress the request body")
                .with_details(e.to_string()),
        ),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large").with_details(format!(
        "The request body exceeds the limit of {limit} bytes"
    ))
}

/// Whether a body holds nothing but whitespace.
pub fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// OpenTSDB's answer to an empty body where JSON is required.
pub fn missing_content() -> ApiError {
    ApiError::bad_request("Missing message content")
        .with_details("Supply valid JSON formatted data in the body of your request")
}

/// Parses a JSON body into `T`; an empty body is OpenTSDB's "Missing
/// message content", a malformed one its "Unable to parse the given JSON".
pub fn json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    if is_blank(bytes) {
        return Err(missing_content());
    }
    serde_json::from_slice(bytes).map_err(ApiError::bad_json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn headers(encoding: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, encoding.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn gzip_bodies_are_inflated() {
        let body = Body::from(gzip(b"[1,2]"));
        let bytes = read(&headers("gzip"), body, 100).await.unwrap();
        assert_eq!(&bytes[..], b"[1,2]");
    }

    #[tokio::test]
    async fn the_limit_applies_before_and_after_inflating() {
        let err = read(&HeaderMap::new(), Body::from(vec![b'x'; 11]), 10)
            .await
            .unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        let exact = read(&HeaderMap::new(), Body::from(vec![b'x'; 10]), 10)
            .await
            .unwrap();
        assert_eq!(exact.len(), 10);
        let bomb = Body::from(gzip(&[b'0'; 1000]));
        let err = read(&headers("gzip"), bomb, 100).await.unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn bad_encodings_are_refused() {
        let err = read(&headers("br"), Body::from("x"), 10).await.unwrap_err();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let err = read(&headers("gzip"), Body::from("not gzip"), 10)
            .await
            .unwrap_err();
        assert_eq!(err.message, "Unable to decompress the request body");
    }

    #[test]
    fn json_errors_use_opentsdb_texts() {
        assert_eq!(
            json::<u32>(b"  ").unwrap_err().message,
            "Missing message content"
        );
        assert_eq!(
            json::<u32>(b"{").unwrap_err().message,
            "Unable to parse the given JSON"
        );
        assert_eq!(json::<u32>(b"7").unwrap(), 7);
    }
}
