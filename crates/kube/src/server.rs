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

/// The controller's exposition with the notification counters joined before its `# EOF`.
fn with_notifications(metrics: String, counters: Option<&cutover_notify::Counters>) -> String {
    let Some(counters) = counters else {
        return metrics;
    };
    let body = metrics.strip_suffix("# EOF\n").unwrap_or(&metrics);
    format!("{body}{}# EOF\n", counters.openmetrics())
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
                    with_notifications(h.metrics.encode(), h.notifications.as_deref()),
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
