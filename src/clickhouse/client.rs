//! A small client for ClickHouse's HTTP interface: statements go as the
//! POST body, inserts put the statement in the `query` parameter and the
//! rows (RowBinary, optionally gzipped) in the body, and an error body
//! becomes a [`ClickHouseError::Server`] with ClickHouse's code.
//!
//! What 18.16 does here, checked against `clickhouse-server` 18.16.1:
//! errors come as a non-2xx status with a text body
//! `Code: 47, e.displayText() = DB::Exception: ..., e.what() = DB::Exception`
//! (current releases write `Code: 47. DB::Exception: ... (NAME) (version ...)`
//! and add an `X-ClickHouse-Exception-Code` header 18.16 lacks, so the body
//! is what is parsed); a gzipped request body is accepted with
//! `Content-Encoding: gzip` alone (`enable_http_compression` only governs
//! compressed answers); HTTP basic authentication works.

use std::io::Write as _;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Longest any one request may take, answer included. Generous: a big
/// insert into a busy server is slow but not broken.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How long an idle pooled connection is reused. The server closes idle
/// connections after its `keep_alive_timeout` (18.16.1 announces 10 s,
/// releases from 19.x to 23.10 default to 3 s); reusing one it is closing
/// fails the request, so the client lets go well before.
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    #[error("clickhouse url {url:?}: {reason}")]
    Url { url: String, reason: &'static str },
    #[error("clickhouse at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("clickhouse at {url}: reading the answer: {source}")]
    Body {
        url: String,
        #[source]
        source: hyper::Error,
    },
    #[error("clickhouse at {url} did not answer within {REQUEST_TIMEOUT:?}")]
    Timeout { url: String },
    /// An error ClickHouse reported, with its code (`60` is an unknown
    /// table, `81` an unknown database, `62` a syntax error).
    #[error("clickhouse error {code}: {message}")]
    Server { code: u32, message: String },
    /// A failure whose body is not a ClickHouse error (a proxy, say).
    #[error("clickhouse at {url} answered HTTP {status}: {body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },
    #[error("clickhouse answer: {0}")]
    Answer(String),
}

/// How an insert body travels (`[clickhouse] compression`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// Plain RowBinary: for a server on the same machine or a fast LAN,
    /// where gzip's CPU (on both ends) costs more than the bytes it saves.
    None,
    /// `Content-Encoding: gzip`, at flate2's fastest level: rows of
    /// points shrink several times over, for little CPU.
    Gzip,
}

/// A connection pool to one ClickHouse server. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port`, without a trailing slash.
    base: String,
    authorization: Option<HeaderValue>,
}

impl Client {
    /// A client for the server at `url` (`http://HOST:PORT`), as `user`
    /// with `password` when given (ClickHouse's `default` user otherwise).
    pub fn new(
        url: &str,
        user: Option<&str>,
        password: Option<&str>,
    ) -> Result<Client, ClickHouseError> {
        let bad = |reason| ClickHouseError::Url {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// is supported"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("give only http://HOST:PORT"));
        }
        let authorization = match (user, password) {
            (None, None) => None,
            (user, password) => {
                let pair = format!("{}:{}", user.unwrap_or("default"), password.unwrap_or(""));
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                let value = HeaderValue::from_str(&format!("Basic {encoded}"))
                    .map_err(|_| bad("user or password not valid in a header"))?;
                Some(value)
            }
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Ok(Client {
            http: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .pool_idle_timeout(IDLE_TIMEOUT)
                .build(connector),
            base: format!("http://{authority}"),
            authorization,
        })
    }

    /// The server's address as given, `http://host:port`.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Runs one statement and returns the answer's bytes (empty for DDL;
    /// for a `SELECT`, whatever its `FORMAT` says).
    pub async fn execute(&self, sql: &str) -> Result<Bytes, ClickHouseError> {
        let uri = format!("{}/", self.base);
        self.send(uri, Bytes::copy_from_slice(sql.as_bytes()), None)
            .await
    }

    /// Runs a `SELECT` and splits its `TabSeparated` answer into rows of
    /// unescaped fields; the statement must not name a format.
    pub async fn select_rows(&self, sql: &str) -> Result<Vec<Vec<String>>, ClickHouseError> {
        let answer = self.execute(&format!("{sql} FORMAT TabSeparated")).await?;
        let text = std::str::from_utf8(&answer)
            .map_err(|_| ClickHouseError::Answer("TabSeparated answer is not UTF-8".into()))?;
        Ok(text
            .lines()
            .map(|line| line.split('\t').map(unescape_tsv).collect())
            .collect())
    }

    /// Runs `statement` (`INSERT INTO t (cols) FORMAT RowBinary`) with
    /// `rows` as its data. Through a cluster's `Distributed` table the rows
    /// are on their shards when it returns (`insert_distributed_sync`, sent
    /// as a URL parameter: 18.16 has no `INSERT ... SETTINGS`), not queued
    /// on the server that took them: an acknowledged point is readable at
    /// once from any node, and while a shard is down inserts fail, so
    /// unshipped points stay in the node's spool, not in a queue on one
    /// ClickHouse server that may itself be lost. On plain tables the
    /// setting does nothing.
    pub async fn insert(
        &self,
        statement: &str,
        rows: Vec<u8>,
        compression: Compression,
    ) -> Result<(), ClickHouseError> {
        let params = [("query", statement), ("insert_distributed_sync", "1")];
        let query = serde_urlencoded::to_string(params)
            .map_err(|e| ClickHouseError::Answer(e.to_string()))?;
        let uri = format!("{}/?{query}", self.base);
        let (body, encoding) = match compression {
            Compression::None => (rows, None),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(
                    Vec::with_capacity(rows.len() / 4),
                    flate2::Compression::fast(),
                );
                // Writing into a Vec cannot fail.
                let gzipped = gz.write_all(&rows).and_then(|()| gz.finish());
                let gzipped = gzipped.map_err(|e| ClickHouseError::Answer(e.to_string()))?;
                (gzipped, Some(HeaderValue::from_static("gzip")))
            }
        };
        self.send(uri, Bytes::from(body), encoding).await.map(drop)
    }

    /// Runs a `SELECT` and hands its answer over as it arrives, for
    /// answers too big to hold whole. ClickHouse has said 200 before the
    /// first piece arrives, so an error it meets later comes as text
    /// appended to the rows: the reader must check what it decodes.
    pub async fn select_stream(&self, sql: &str) -> Result<Answer, ClickHouseError> {
        let uri = format!("{}/", self.base);
        let body = Bytes::copy_from_slice(sql.as_bytes());
        let body = tokio::time::timeout(REQUEST_TIMEOUT, self.open(uri, body, None))
            .await
            .map_err(|_| self.timeout())??;
        Ok(Answer {
            body,
            url: self.base.clone(),
        })
    }

    fn timeout(&self) -> ClickHouseError {
        ClickHouseError::Timeout {
            url: self.base.clone(),
        }
    }

    async fn send(
        &self,
        uri: String,
        body: Bytes,
        encoding: Option<HeaderValue>,
    ) -> Result<Bytes, ClickHouseError> {
        let exchange = async {
            let answer = self.open(uri, body, encoding).await?;
            collect(&self.base, answer).await
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| self.timeout())?
    }

    /// Sends a request; the answer's body when its status is a success,
    /// else the error its body describes.
    async fn open(
        &self,
        uri: String,
        body: Bytes,
        encoding: Option<HeaderValue>,
    ) -> Result<Incoming, ClickHouseError> {
        let mut request = Request::builder().method(Method::POST).uri(uri);
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        if let Some(encoding) = encoding {
            request = request.header(CONTENT_ENCODING, encoding);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|_| ClickHouseError::Url {
                url: self.base.clone(),
                reason: "does not make a request URI",
            })?;
        let response =
            self.http
                .request(request)
                .await
                .map_err(|source| ClickHouseError::Transport {
                    url: self.base.clone(),
                    source,
                })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response.into_body());
        }
        let bytes = collect(&self.base, response.into_body()).await?;
        let text = String::from_utf8_lossy(&bytes);
        Err(parse_error(&text).unwrap_or_else(|| ClickHouseError::Http {
            url: self.base.clone(),
            status: status.as_u16(),
            body: text.trim().chars().take(500).collect(),
        }))
    }
}

async fn collect(url: &str, body: Incoming) -> Result<Bytes, ClickHouseError> {
    Ok(body
        .collect()
        .await
        .map_err(|source| ClickHouseError::Body {
            url: url.to_owned(),
            source,
        })?
        .to_bytes())
}

/// An answer of [`Client::select_stream`], read as it arrives.
pub struct Answer {
    body: Incoming,
    url: String,
}

impl Answer {
    /// The next piece of the answer, `None` after the last. Each must
    /// arrive within the request timeout of asking for it, so a server
    /// that stalls is noticed while one that streams a long answer is not
    /// cut off.
    pub async fn next_piece(&mut self) -> Result<Option<Bytes>, ClickHouseError> {
        loop {
            let frame = tokio::time::timeout(REQUEST_TIMEOUT, self.body.frame())
                .await
                .map_err(|_| ClickHouseError::Timeout {
                    url: self.url.clone(),
                })?;
            let Some(frame) = frame else {
                return Ok(None);
            };
            let frame = frame.map_err(|source| ClickHouseError::Body {
                url: self.url.clone(),
                source,
            })?;
            // Trailers carry no rows.
            if let Ok(data) = frame.into_data() {
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// Reads a ClickHouse error body, in 18.16's form or the current one.
fn parse_error(body: &str) -> Option<ClickHouseError> {
    let rest = body.trim().strip_prefix("Code: ")?;
    let digits = rest.find(|c: char| !c.is_ascii_digit())?;
    let code = rest[..digits].parse().ok()?;
    let rest = &rest[digits..];
    let message = rest
        .strip_prefix(", e.displayText() = ")
        .or_else(|| rest.strip_prefix(". "))?;
    // 18.16 ends with `, e.what() = DB::NetException` and the like.
    let message = match message.rfind(", e.what() = DB::") {
        Some(at) => &message[..at],
        None => message,
    };
    // `DB::Exception: `, `DB::NetException: ` and the like.
    let message = match message.split_once(": ") {
        Some((class, rest)) if class.starts_with("DB::") && !class.contains(' ') => rest,
        _ => message,
    };
    Some(ClickHouseError::Server {
        code,
        message: message.to_owned(),
    })
}

/// Undoes TabSeparated's backslash escapes.
fn unescape_tsv(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_old_and_new_servers_parse() {
        let cases = [
            (
                "Code: 60, e.displayText() = DB::Exception: Table rtsd.points doesn't exist., e.what() = DB::Exception\n",
                60,
                "Table rtsd.points doesn't exist.",
            ),
            (
                "Code: 60. DB::Exception: Table rtsd.points does not exist. (UNKNOWN_TABLE) (version 23.8.1.1)\n",
                60,
                "Table rtsd.points does not exist. (UNKNOWN_TABLE) (version 23.8.1.1)",
            ),
            (
                "Code: 279, e.displayText() = DB::NetException: All connection tries failed. Log: \n\nThere is no table, e.what() = DB::NetException\n",
                279,
                "All connection tries failed. Log: \n\nThere is no table",
            ),
        ];
        for (body, code, message) in cases {
            match parse_error(body) {
                Some(ClickHouseError::Server {
                    code: c,
                    message: m,
                }) => {
                    assert_eq!((c, m.as_str()), (code, message))
                }
                other => panic!("{body:?} gave {other:?}"),
            }
        }
        assert!(parse_error("502 Bad Gateway").is_none());
    }

    #[test]
    fn tsv_fields_unescape() {
        assert_eq!(unescape_tsv(r"a\tb\\c\nd"), "a\tb\\c\nd");
        assert_eq!(unescape_tsv("plain"), "plain");
    }

    #[test]
    fn urls_other_than_plain_http_host_port_are_refused() {
        for url in [
            "https://h:8123",
            "h:8123",
            "http://h:8123/db",
            "http://h:8123/?x=1",
        ] {
            assert!(Client::new(url, None, None).is_err(), "{url}");
        }
        let ok = Client::new("http://127.0.0.1:8123/", Some("u"), Some("p")).expect("valid");
        assert_eq!(ok.url(), "http://127.0.0.1:8123");
    }
}
