//! The HTTP client of the `web` and `prometheus` providers: HTTP/1.1 over plain TCP or TLS
//! (rustls with the ring provider; certificates checked against the platform's roots), and a
//! second client for metrics marked `insecure: true`, which skips certificate verification as
//! Argo Rollouts' `insecure` does.
//!
//! Built on hyper-util rather than reqwest: reqwest's rustls feature, once on in the
//! workspace, makes every `reqwest::Client::new()` of the other crates demand a process-wide
//! crypto provider; here the provider is chosen per client and nothing global changes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// A request body.
pub type Body = Full<Bytes>;

type Inner = Client<HttpsConnector<HttpConnector>, Body>;

/// Why a request got no answer.
#[derive(Debug)]
pub enum SendError {
    /// No answer within the timeout.
    Timeout,
    /// The request or the connection failed (refused, TLS, reset…): the error chain.
    Failed(String),
}

/// HTTP/HTTPS clients with and without certificate verification.
#[derive(Clone)]
pub struct HttpClient {
    verified: Result<Inner, String>,
    insecure: Result<Inner, String>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// Clients with their own connection pools. When the platform's certificate store cannot
    /// be used, verified `https://` requests fail with that reason; the others still work.
    pub fn new() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verified = rustls_platform_verifier::Verifier::new(provider.clone())
            .map_err(|e| format!("no TLS certificate store: {e}"))
            .and_then(|v| tls_config(&provider, Arc::new(v)))
            .map(client);
        let skip = Arc::new(NoVerification(provider.signature_verification_algorithms));
        let insecure = tls_config(&provider, skip).map(client);
        Self { verified, insecure }
    }

    /// Sends `req` and reads the whole answer, both within `timeout`. `insecure` skips the
    /// server certificate's verification.
    pub async fn send(
        &self,
        req: http::Request<Body>,
        insecure: bool,
        timeout: Duration,
    ) -> Result<(http::StatusCode, String), SendError> {
        let client = if insecure {
            &self.insecure
        } else {
            &self.verified
        };
        let client = client.as_ref().map_err(|e| SendError::Failed(e.clone()))?;
        let exchange = async {
            let resp = client
                .request(req)
                .await
                .map_err(|e| SendError::Failed(error_chain(&e)))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| SendError::Failed(format!("reading the answer: {}", error_chain(&e))))?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(SendError::Timeout))
    }
}

fn tls_config(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<ClientConfig, String> {
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn client(config: ClientConfig) -> Inner {
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// An error and its sources, `: `-separated (hyper's own message is only "client error").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `insecure: true`: any certificate is accepted; handshake signatures are still checked, so
/// the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
