//! The CLI's client of the daemon's control API.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::server::{ApiFile, ApplyRequest, ErrorBody, SourceDto};
use super::view::{RolloutView, RunView};
use crate::ops::{ApplyReport, Operation};

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon for this state directory.
    #[error(
        "no cutover daemon for state directory {0}: start one with `cutover up -f FILE`, or pass --state-dir"
    )]
    NoDaemon(PathBuf),
    /// The daemon could not be reached.
    #[error(
        "cannot reach the cutover daemon at {address} ({source}); is `cutover up` still running?"
    )]
    Unreachable {
        /// Its address.
        address: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(String),
    /// The rollout or analysis run named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The operation has nothing to act on ("nothing to abort: rollout is Healthy").
    #[error("{0}")]
    NothingToDo(String),
}

/// A connection to a daemon.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// Reads `api.json` from the state directory.
    pub fn from_state_dir(dir: &Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(dir.join(super::API_FILE))
            .map_err(|_| ClientError::NoDaemon(dir.to_path_buf()))?;
        let file: ApiFile =
            serde_json::from_str(&text).map_err(|_| ClientError::NoDaemon(dir.to_path_buf()))?;
        Ok(Self {
            base: format!("http://{}", file.address),
            token: file.token,
            http: reqwest::Client::new(),
        })
    }

    /// One rollout.
    pub async fn rollout(&self, name: &str) -> Result<RolloutView, ClientError> {
        self.get(&format!("/v1/rollouts/{name}")).await
    }

    /// Every rollout.
    pub async fn rollouts(&self) -> Result<Vec<RolloutView>, ClientError> {
        self.get("/v1/rollouts").await
    }

    /// Applies manifest files (all or nothing).
    pub async fn apply(&self, files: Vec<(String, String)>) -> Result<ApplyReport, ClientError> {
        let body = ApplyRequest {
            sources: files
                .into_iter()
                .map(|(path, text)| SourceDto {
                    // The daemon resolves paths in the manifests (spec.migrations.source.dir)
                    // against the file's directory, and its working directory may differ.
                    path: std::fs::canonicalize(&path).map_or(path, |p| p.display().to_string()),
                    text,
                })
                .collect(),
        };
        // 409 from apply is a Service that cannot be bound, a refusal like any other.
        self.send(self.http.post(self.url("/v1/apply")).json(&body))
            .await
            .map_err(|e| match e {
                ClientError::NothingToDo(m) => ClientError::Refused(m),
                other => other,
            })
    }

    /// Runs an operation; returns the daemon's message.
    pub async fn operate(&self, name: &str, op: &Operation) -> Result<String, ClientError> {
        let answer: serde_json::Value = self
            .send(
                self.http
                    .post(self.url(&format!("/v1/rollouts/{name}/ops")))
                    .json(op),
            )
            .await?;
        Ok(answer["message"].as_str().unwrap_or_default().to_string())
    }

    /// One AnalysisRun with its measurements.
    pub async fn analysis_run(&self, name: &str) -> Result<RunView, ClientError> {
        self.get(&format!("/v1/analysisruns/{name}")).await
    }

    /// Terminates an AnalysisRun; returns the daemon's message.
    pub async fn terminate_run(&self, name: &str) -> Result<String, ClientError> {
        let answer: serde_json::Value = self
            .send(
                self.http
                    .post(self.url(&format!("/v1/analysisruns/{name}/terminate"))),
            )
            .await?;
        Ok(answer["message"].as_str().unwrap_or_default().to_string())
    }

    /// The router's metrics.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let response = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .map_err(|source| self.unreachable(source))?;
        response
            .text()
            .await
            .map_err(|source| self.unreachable(source))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.get(self.url(path))).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| self.unreachable(source))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| self.unreachable(source))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error)
                .unwrap_or_else(|_| format!("daemon answered {status}"));
            return Err(match status {
                reqwest::StatusCode::NOT_FOUND => ClientError::NotFound(message),
                reqwest::StatusCode::CONFLICT => ClientError::NothingToDo(message),
                _ => ClientError::Refused(message),
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Refused(format!("unreadable answer from the daemon: {e}")))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(&self, source: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            address: self.base.clone(),
            source,
        }
    }
}
