//! `https://` providers against a local server with a self-signed certificate: refused when
//! the certificate is checked, measured with `insecure: true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use cutover_analysis::{PrometheusProvider, Provider, WebProvider};
use cutover_core::analysis::{Measured, ResultValue};
use cutover_core::api::{
    BasicAuth, Metric, MetricProvider, PrometheusAuth, PrometheusMetric, WebMetric,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// Serves `app` over TLS with a fresh self-signed certificate for 127.0.0.1.
async fn serve_tls(app: Router) -> SocketAddr {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to serve.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    addr
}

fn metric(provider: MetricProvider) -> Metric {
    serde_json::from_value::<Metric>(serde_json::json!({ "name": "tls", "provider": {} }))
        .map(|m| Metric { provider, ..m })
        .unwrap()
}

fn web(url: String, insecure: Option<bool>) -> Metric {
    metric(MetricProvider {
        web: Some(WebMetric {
            url,
            json_path: Some("{$.ok}".into()),
            insecure,
            ..WebMetric::default()
        }),
        ..MetricProvider::default()
    })
}

#[tokio::test]
async fn web_over_https_checks_the_certificate_unless_insecure() {
    let app = Router::new().route("/health", get(|| async { r#"{"ok": true}"# }));
    let url = format!("https://{}/health", serve_tls(app).await);
    let p = WebProvider::new();

    let measured = p.measure(&web(url.clone(), Some(true))).await.measured;
    assert_eq!(measured, Measured::Value(ResultValue::Bool(true)));

    for insecure in [None, Some(false)] {
        let Measured::Error(e) = p.measure(&web(url.clone(), insecure)).await.measured else {
            panic!("a self-signed certificate was accepted (insecure: {insecure:?})");
        };
        assert!(
            e.contains("certificate") || e.contains("Certificate"),
            "{e}"
        );
    }
}

#[tokio::test]
async fn prometheus_over_https_with_basic_auth_when_insecure() {
    let app = Router::new().route(
        "/api/v1/query",
        get(|headers: HeaderMap| async move {
            // "user:secret", as basic authentication sends it.
            let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
                == Some("Basic dXNlcjpzZWNyZXQ=");
            let value = if authorized { "0.99" } else { "0" };
            format!(
                r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1,"{value}"]}}]}}}}"#
            )
        }),
    );
    let address = format!("https://{}", serve_tls(app).await);
    let m = metric(MetricProvider {
        prometheus: Some(PrometheusMetric {
            address,
            query: "up".into(),
            insecure: Some(true),
            authentication: Some(PrometheusAuth {
                basic: Some(BasicAuth {
                    username: "user".into(),
                    password: "secret".into(),
                }),
                bearer_token: None,
            }),
            ..PrometheusMetric::default()
        }),
        ..MetricProvider::default()
    });
    let measured = PrometheusProvider::new().measure(&m).await.measured;
    assert_eq!(
        measured,
        Measured::Value(ResultValue::List(vec![ResultValue::Number(0.99)]))
    );
}
