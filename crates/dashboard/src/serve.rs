//! Listening: plain HTTP on loopback, HTTPS (rustls) when a certificate is given; HTTP/1.1 and
//! HTTP/2 on each connection; on shutdown, live streams end and connections close gracefully.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;

use crate::DashboardError;
use crate::options::TlsFiles;

/// A TLS acceptor from PEM files; errors name the file and say what it should hold.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, DashboardError> {
    let tls_err = |what, path: &Path, message: String| DashboardError::Tls {
        what,
        path: path.to_path_buf(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            tls_err(
                "certificate",
                &files.cert,
                format!("{e}; give a PEM file with the certificate chain (--tls-cert)"),
            )
        })?;
    if certs.is_empty() {
        return Err(tls_err(
            "certificate",
            &files.cert,
            "holds no CERTIFICATE block; give a PEM certificate chain (--tls-cert)".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        tls_err(
            "key",
            &files.key,
            format!("{e}; give the PEM private key of the certificate (--tls-key)"),
        )
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| {
            tls_err(
                "key",
                &files.key,
                format!("does not fit the certificate {}: {e}", files.cert.display()),
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Binds the address (before anything is printed, so a taken port fails at once).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, DashboardError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| DashboardError::Bind { address, source })
}

/// Serves `app` on `listener` until `shutdown`; connections in flight get a few seconds to end.
pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    shutdown: CancellationToken,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("dashboard: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        match &tls {
            None => {
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    // A failed handshake (a plain-HTTP client, a bad certificate) concerns only
                    // that connection.
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await
                    else {
                        return;
                    };
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}
