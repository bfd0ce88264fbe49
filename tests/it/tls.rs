//! https on the HTTP port with a self-signed certificate made here: a
//! rustls client that trusts it gets answers (and the auth guard), a
//! plaintext client gets nothing, and bad certificate settings stop
//! startup with the file's name; SIGHUP loads a renewed certificate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rtsd::config::Settings;
use rtsd::daemon::Daemon;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::support::*;

/// A self-signed certificate for `localhost`, written as PEM files.
struct SelfSigned {
    dir: tempfile::TempDir,
    der: CertificateDer<'static>,
}

impl SelfSigned {
    fn new() -> SelfSigned {
        let dir = tempfile::tempdir().unwrap();
        let der = Self::write(dir.path());
        SelfSigned { dir, der }
    }

    /// A fresh certificate and key as `cert.pem` and `key.pem` in `dir`.
    fn write(dir: &std::path::Path) -> CertificateDer<'static> {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
            .expect("certificate generated");
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), made.key_pair.serialize_pem()).unwrap();
        made.cert.der().clone()
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// A client that trusts this certificate only.
    fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

/// Whether a TLS handshake with the server at `addr` succeeds.
async fn handshakes(tls: &TlsConnector, addr: SocketAddr) -> bool {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tls.connect(name, tcp).await.is_ok()
}

/// One HTTP/1.1 request over TLS; the whole reply, headers included.
async fn https(tls: &TlsConnector, addr: SocketAddr, path: &str, headers: &str) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut s = tls.connect(name, tcp).await.expect("tls handshake");
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A peer that closes without close_notify is an error for rustls; the
    // reply is complete by then.
    let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut raw))
        .await
        .expect("https reply");
    String::from_utf8(raw).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_self_signed_certificate() {
    let cert = SelfSigned::new();
    let token = "[[auth.token]]\nname = \"g\"\nsecret = \"tls-secret\"\nscopes = [\"read\"]\n";
    std::fs::write(cert.dir.path().join("rtsd.toml"), token).unwrap();
    let args = rtsd::config::ServeArgs {
        config: Some(cert.dir.path().join("rtsd.toml")),
        given: rtsd::config::Given {
            tls_cert: Some(cert.cert()),
            tls_key: Some(cert.key()),
            ..Default::default()
        },
        ..Default::default()
    };
    let loaded = Settings::load(&args).expect("valid settings");
    let d = TestDaemon::start_with(|s| {
        s.auth = loaded.auth;
        s.tls_cert = loaded.tls_cert;
        s.tls_key = loaded.tls_key;
    })
    .await;
    let tls = cert.connector();

    let reply = https(&tls, d.http(), "/api/version", "").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"version\""), "{reply}");
    let reply = https(&tls, d.http(), "/api/aggregators", "").await;
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    let auth = "Authorization: Bearer tls-secret\r\n";
    let reply = https(&tls, d.http(), "/api/aggregators", auth).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    // Plain HTTP on the https port: no answer, the connection is closed,
    // and https goes on.
    let mut plain = TcpStream::connect(d.http()).await.unwrap();
    plain
        .write_all(b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(DEADLINE, plain.read_to_end(&mut raw))
        .await
        .expect("closed");
    assert!(!String::from_utf8_lossy(&raw).contains("HTTP/1.1 200"));
    let reply = https(&tls, d.http(), "/api/version", "").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // The telnet port stays plain.
    let (s, _) = http(d.telnet(), "GET", "/api/version", b"").await;
    assert_eq!(s, 200);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_certificate_settings_stop_startup() {
    let cert = SelfSigned::new();
    let dir = tempfile::tempdir().unwrap();
    let start = |tls_cert: PathBuf, tls_key: PathBuf| {
        let mut s = loopback_settings(dir.path());
        s.tls_cert = Some(tls_cert);
        s.tls_key = Some(tls_key);
        async move { Daemon::start(s).await.err().map(|e| format!("{e:#}")) }
    };
    let missing = cert.dir.path().join("nope.pem");
    let err = start(missing.clone(), cert.key()).await.expect("refused");
    assert!(
        err.contains(&format!("tls-cert {}", missing.display())),
        "{err}"
    );
    // The key given as the certificate: no certificate in it.
    let err = start(cert.key(), cert.key()).await.expect("refused");
    assert!(err.contains("no certificate"), "{err}");
    // A key that is not the certificate's.
    let other = SelfSigned::new();
    let err = start(cert.cert(), other.key()).await.expect("refused");
    assert!(err.contains("does not fit"), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate() {
    let mut cert = SelfSigned::new();
    let data = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (cert.cert(), cert.key());
    let flags = [
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ];
    let d = Spawned::start_with(data.path(), &flags, &[]).await;
    let old = cert.connector();
    let reply = https(&old, d.http, "/api/version", "").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    // A renewed certificate in the same files, then SIGHUP.
    cert.der = SelfSigned::write(cert.dir.path());
    let new = cert.connector();
    d.signal("-HUP");
    let start = std::time::Instant::now();
    while !handshakes(&new, d.http).await {
        assert!(start.elapsed() < DEADLINE, "certificate not reloaded");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!handshakes(&old, d.http).await);
    let reply = https(&new, d.http, "/api/version", "").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    d.signal("-TERM");
    assert!(d.wait().await.success());
}

/// Issue 9: https connections were not counted against max-connections.
/// Now one limit covers the telnet port and the https port, handshake
/// included: over it, an https client is closed before its handshake and
/// counted as refused, like a plain one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_connections_count_against_max_connections() {
    let cert = SelfSigned::new();
    let d = TestDaemon::start_with(|s| {
        s.tls_cert = Some(cert.cert());
        s.tls_key = Some(cert.key());
        s.max_connections = 2;
    })
    .await;
    let tls = cert.connector();
    let stats = &d.daemon.stats;
    let open = || {
        stats
            .connections_open
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let refused = || {
        stats
            .connections_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    };

    let name = ServerName::try_from("localhost").unwrap();
    let tcp = TcpStream::connect(d.http()).await.unwrap();
    let held = tls.connect(name, tcp).await.expect("tls handshake");
    let _telnet = TcpStream::connect(d.telnet()).await.unwrap();
    poll(|| open() == 2).await;

    assert!(!handshakes(&tls, d.http()).await);
    assert_eq!(refused(), 1);
    let mut over = TcpStream::connect(d.telnet()).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(DEADLINE, over.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    assert_eq!(refused(), 2);

    // A slot given back serves https again.
    drop(held);
    poll(|| open() == 1).await;
    let reply = https(&tls, d.http(), "/api/version", "").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    d.stop().await;
}
