//! https on the HTTP port: rustls with the PEM certificate chain and key
//! named by `tls-cert` and `tls-key`, so Grafana and HTTP collectors can
//! send tokens without exposing them on the wire.
//!
//! When TLS is on, the HTTP port's accept loop
//! ([`crate::server::https_accept_loop`]) hands each connection to an
//! [`Acceptor`]: a bounded handshake, then the same router through
//! [`crate::http::serve_connection`]. A connection holds its
//! `max-connections` slot from accept on, handshake included, as plain
//! HTTP does. ALPN offers HTTP/2 and HTTP/1.1. The
//! telnet port stays plain: collectors speak cleartext there, and its HTTP
//! requests are answered as before. SIGHUP reloads the files, so a renewed
//! certificate (certbot, cert-manager) takes effect without a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

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

/// The acceptor in use and the files it came from; SIGHUP replaces it.
pub struct Acceptor {
    files: (PathBuf, PathBuf),
    current: parking_lot::RwLock<TlsAcceptor>,
    /// Taken by [`Acceptor::reload_on_hangup`].
    hangup: parking_lot::Mutex<Option<Signal>>,
}

impl Acceptor {
    /// Loads the files and installs the SIGHUP handler, so a SIGHUP sent
    /// once the daemon is ready reloads rather than meets the default
    /// action, which ends the process. Must run inside the runtime.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Acceptor> {
        let hangup = signal(SignalKind::hangup())
            .inspect_err(|e| {
                tracing::warn!(error = %e, "no SIGHUP handler: certificates load at startup only")
            })
            .ok();
        Ok(Acceptor {
            current: parking_lot::RwLock::new(acceptor(cert, key)?),
            files: (cert.to_owned(), key.to_owned()),
            hangup: parking_lot::Mutex::new(hangup),
        })
    }

    /// Reads the files again on every SIGHUP until shutdown: new
    /// connections get the new certificate, open ones keep theirs, and a
    /// file that does not load leaves the old one in place.
    pub async fn reload_on_hangup(&self, shutdown: CancellationToken) {
        let Some(mut hangup) = self.hangup.lock().take() else {
            return;
        };
        let (cert, key) = (&self.files.0, &self.files.1);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = hangup.recv() => if got.is_none() { return },
            }
            match acceptor(cert, key) {
                Ok(reloaded) => {
                    *self.current.write() = reloaded;
                    tracing::info!(cert = %cert.display(), "tls certificate reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "tls reload failed; keeping the loaded certificate")
                }
            }
        }
    }

    /// Serves one accepted connection: the handshake, bounded in time,
    /// then the router until the client closes or shutdown.
    pub async fn serve_connection(
        &self,
        stream: TcpStream,
        app: axum::Router,
        rules: crate::http::ConnectionRules,
    ) {
        let acceptor = self.current.read().clone();
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => crate::http::serve_connection(tls, app, rules).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "tls handshake failed"),
            Err(_) => tracing::debug!("tls handshake timed out"),
        }
    }
}
