//! `/metrics`, `/healthz` and `/readyz` for the controller's pod.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::error::Error;
use crate::metrics::Metrics;

/// What the HTTP endpoints report.
#[derive(Clone)]
pub struct Health {
    /// The controller's metrics.
    pub metrics: Arc<Metrics>,
    /// Set once this instance leads and its watches run.
    pub ready: Arc<AtomicBool>,
    /// Notification counters, when notifications are configured.
    pub notifications: Option<Arc<cutover_notify::Counters>>,
}

impl Health {
    /// The controller's metrics, with the notification counters when they are configured.
    fn exposition(&self) -> String {
        let metrics = self.metrics.encode();
        match &self.notifications {
            Some(counters) => counters.join_to(&metrics),
            None => metrics,
        }
    }
}

/// Serves until the task is dropped.
pub async fn serve(addr: SocketAddr, health: Health) -> Result<(), Error> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    h.exposition(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                if h.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not leading yet")
                }
            }),
        )
        .with_state(health);
    let server_err = |source| Error::Server {
        addr: addr.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(server_err)?;
    axum::serve(listener, app).await.map_err(server_err)
}
