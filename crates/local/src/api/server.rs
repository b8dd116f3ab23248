//! The control API server (axum). Every route but `/metrics` and `/v1/health` needs the bearer
//! token from `api.json`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cutover_manifest::Source;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::ops::{self, OpError, Operation};

/// Contents of `<state-dir>/api.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiFile {
    /// Where the API listens.
    pub address: SocketAddr,
    /// The bearer token.
    pub token: String,
    /// The daemon's process id.
    pub pid: u32,
}

impl ApiFile {
    /// Writes the file readable by its owner only, atomically (temp file + rename).
    pub fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        crate::dataplane::write_private(
            &state_dir.join(super::API_FILE),
            &serde_json::to_vec_pretty(self).unwrap_or_default(),
        )
    }
}

#[derive(Clone)]
struct AppState {
    engine: Arc<Engine>,
    token: Arc<String>,
}

/// A request to apply manifests.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// The files, as read by the CLI.
    pub sources: Vec<SourceDto>,
}

/// One manifest file.
#[derive(Debug, Serialize, Deserialize)]
pub struct SourceDto {
    /// Path shown in diagnostics.
    pub path: String,
    /// Its text.
    pub text: String,
}

/// An error answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub error: String,
}

/// Serves the API on `listener` until `shutdown`.
pub async fn serve(
    engine: Arc<Engine>,
    listener: TcpListener,
    token: String,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = AppState {
        engine,
        token: Arc::new(token),
    };
    let protected = Router::new()
        .route("/v1/rollouts", get(list))
        .route("/v1/rollouts/{name}", get(one))
        .route("/v1/rollouts/{name}/ops", post(operate))
        .route("/v1/apply", post(apply))
        .route("/v1/analysisruns/{name}", get(analysis_run))
        .route("/v1/analysisruns/{name}/terminate", post(terminate_run))
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/health", get(|| async { "ok" }))
        .merge(protected)
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let expected = format!("Bearer {}", state.token);
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given != Some(expected.as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: the CLI reads it from the state directory's api.json".into(),
        );
    }
    next.run(request).await
}

async fn list(State(state): State<AppState>) -> Response {
    let names = match state.engine.store().read(|tx| tx.rollouts()) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut views = Vec::new();
    for r in names {
        let name = r.metadata.name.unwrap_or_default();
        match state.engine.view(&name) {
            Ok(Some(v)) => views.push(v),
            Ok(None) => {}
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
    Json(views).into_response()
}

async fn one(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    match state.engine.view(&name) {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("rollout {name:?} not found: `cutover list rollouts` shows the applied ones"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn apply(State(state): State<AppState>, Json(req): Json<ApplyRequest>) -> Response {
    let sources: Vec<Source> = req
        .sources
        .into_iter()
        .map(|s| Source::new(s.path, s.text))
        .collect();
    let report = match ops::apply(state.engine.store(), &sources) {
        Ok(report) => report,
        Err(e) => return op_error(e),
    };
    if let Err(e) = state.engine.bind_services().await {
        return error(StatusCode::CONFLICT, e.to_string());
    }
    state.engine.wake();
    Json(report).into_response()
}

async fn operate(
    State(state): State<AppState>,
    UrlPath(name): UrlPath<String>,
    Json(op): Json<Operation>,
) -> Response {
    match ops::operate(state.engine.store(), &name, &op) {
        Ok(message) => {
            state.engine.wake();
            Json(serde_json::json!({ "message": message })).into_response()
        }
        Err(e) => op_error(e),
    }
}

async fn analysis_run(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    match state.engine.run_view(&name) {
        Ok(Some(v)) => Json(v).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!(
                "analysis run {name:?} not found: `cutover get rollout NAME` lists a rollout's runs"
            ),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn terminate_run(State(state): State<AppState>, UrlPath(name): UrlPath<String>) -> Response {
    let rollout = match state.engine.run_view(&name) {
        Ok(Some(v)) => v.rollout,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "analysis run {name:?} not found: `cutover get rollout NAME` lists a rollout's runs"
                ),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    match state.engine.terminate_run(&rollout, &name) {
        Ok(_) => Json(serde_json::json!({ "message": format!("analysisrun '{name}' terminated") }))
            .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let router = state.engine.router().metrics_text().await;
    let body = match state.engine.notification_counters() {
        Some(counters) => counters.join_to(&router),
        None => router,
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Every error answer is made here: a status and a message saying what to do.
fn op_error(e: OpError) -> Response {
    match e {
        OpError::Invalid(_) | OpError::Refused(_) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        // The request is understood but the rollout's state leaves nothing to do.
        OpError::NothingToDo(_) => error(StatusCode::CONFLICT, e.to_string()),
        OpError::Store(crate::store::StoreError::NotFound(_)) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        OpError::Store(_) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}
