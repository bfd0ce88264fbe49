//! https on the HTTP port: rustls with the PEM certificate chain and key
//! named by `tls-cert` and `tls-key`, so Grafana and HTTP collectors can
//! send tokens without exposing them on the wire.
//!
//! The accept loop here replaces the plain HTTP server when TLS is on: each
//! connection gets a bounded handshake, then the same router through
//! [`crate::http::serve_connection`]. ALPN offers HTTP/2 and HTTP/1.1. The
//! telnet port stays plain: collectors speak cleartext there, and its HTTP
//! requests are answered as before. SIGHUP reloads the files, so a renewed
//! certificate (certbot, cert-manager) takes effect without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// A client that has not finished its handshake by then is dropped, so a
/// stalled connection cannot hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the certificate chain and the private key (PKCS#8, PKCS#1 or
/// SEC1) and builds the acceptor. Errors name the file, never its content.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("reading tls-cert {}", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "tls-cert {}: no certificate in the file",
        cert.display()
    );
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("reading tls-key {}", key.display()))?;
    // The crypto provider is *ring*, the one rustls is built with here.
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .with_context(|| {
            format!(
                "tls-key {} does not fit tls-cert {}",
                key.display(),
                cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves https on `listener` until shutdown, then waits for the
/// connections to finish their requests. On SIGHUP the files are read
/// again: new connections get the new certificate, open ones keep theirs,
/// and a file that does not load leaves the old one in place.
pub async fn serve(
    listener: TcpListener,
    files: (PathBuf, PathBuf),
    mut acceptor: TlsAcceptor,
    app: axum::Router,
    rules: crate::http::ConnectionRules,
) {
    let shutdown = rules.shutdown.clone();
    let tracker = TaskTracker::new();
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: certificates load at startup only");
            None
        }
    };
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = async { hangup.as_mut()?.recv().await } => {
                match self::acceptor(&files.0, &files.1) {
                    Ok(reloaded) => {
                        acceptor = reloaded;
                        tracing::info!(cert = %files.0.display(), "tls certificate reloaded");
                    }
                    Err(e) => tracing::error!(error = %format!("{e:#}"), "tls reload failed; keeping the loaded certificate"),
                }
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "https accept failed");
                    continue;
                }
            },
        };
        let (acceptor, app, rules) = (acceptor.clone(), app.clone(), rules.clone());
        let span = tracing::debug_span!("https", %peer);
        tracker.spawn(
            async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => crate::http::serve_connection(tls, app, rules).await,
                    Ok(Err(e)) => tracing::debug!(error = %e, "tls handshake failed"),
                    Err(_) => tracing::debug!("tls handshake timed out"),
                }
            }
            .instrument(span),
        );
    }
    tracker.close();
    tracker.wait().await;
}
