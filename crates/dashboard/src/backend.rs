//! Where the dashboard reads rollouts and sends operations: the same calls the CLI verbs make
//! (`list`, `get rollout`, `promote`, …), behind one trait so that the pages never know which
//! backend they show. The single-host implementation lives here (it is the daemon's client);
//! the Kubernetes one lives with the CLI, beside the kubeconfig handling it shares.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cutover_core::ops::Operation;
use cutover_local::api::{Client, ClientError, RolloutView};
use futures::future::BoxFuture;

use crate::DashboardError;

/// Namespace shown for rollouts without one (the single host has a single namespace).
pub const DEFAULT_NAMESPACE: &str = "default";

/// A rollout's address: namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RolloutKey {
    /// Namespace (`default` on one host).
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl RolloutKey {
    /// The key of a view's rollout.
    pub fn of(view: &RolloutView) -> Self {
        Self {
            namespace: view
                .rollout
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string()),
            name: view.rollout.metadata.name.clone().unwrap_or_default(),
        }
    }
}

/// A source of rollout views and a sink of operations.
pub trait Backend: Send + Sync + 'static {
    /// One line saying what the dashboard shows ("single host, state /var/lib/cutover").
    fn describe(&self) -> String;

    /// Every rollout the dashboard lists.
    fn rollouts(&self) -> BoxFuture<'_, Result<Vec<RolloutView>, DashboardError>>;

    /// One rollout with its revisions, Services, runs and events.
    fn rollout<'a>(
        &'a self,
        key: &'a RolloutKey,
    ) -> BoxFuture<'a, Result<RolloutView, DashboardError>>;

    /// Applies an operation as the CLI verb does; returns the backend's message.
    fn operate<'a>(
        &'a self,
        key: &'a RolloutKey,
        op: &'a Operation,
    ) -> BoxFuture<'a, Result<String, DashboardError>>;
}

/// The single-host daemon of a state directory, through its control API.
///
/// `api.json` is read again whenever it changes, so a dashboard left running follows a daemon
/// that restarted (new port, new token) instead of showing a dead address.
pub struct LocalBackend {
    state_dir: PathBuf,
    client: Mutex<Option<(String, Arc<Client>)>>,
}

impl LocalBackend {
    /// A backend for the daemon of `state_dir`. Fails, saying how to start one, when no daemon
    /// runs there now.
    pub fn new(state_dir: &Path) -> Result<Self, DashboardError> {
        let backend = Self {
            state_dir: state_dir.to_path_buf(),
            client: Mutex::new(None),
        };
        backend.client()?;
        Ok(backend)
    }

    /// The client of the daemon named by `api.json` now.
    fn client(&self) -> Result<Arc<Client>, DashboardError> {
        let file = self.state_dir.join(cutover_local::api::API_FILE);
        let text = std::fs::read_to_string(&file).map_err(|_| {
            DashboardError::Unavailable(ClientError::NoDaemon(self.state_dir.clone()).to_string())
        })?;
        let mut cached = self
            .client
            .lock()
            .map_err(|_| DashboardError::Unavailable("client cache poisoned".into()))?;
        if let Some((seen, client)) = cached.as_ref()
            && *seen == text
        {
            return Ok(client.clone());
        }
        let client = Arc::new(Client::from_state_dir(&self.state_dir).map_err(from_client)?);
        *cached = Some((text, client.clone()));
        Ok(client)
    }
}

/// The daemon's answers, as the dashboard's errors (the same kinds the CLI's exit codes tell
/// apart).
fn from_client(e: ClientError) -> DashboardError {
    match e {
        ClientError::Refused(m) => DashboardError::Refused(m),
        ClientError::NotFound(m) => DashboardError::NotFound(m),
        ClientError::NothingToDo(m) => DashboardError::NothingToDo(m),
        other @ (ClientError::NoDaemon(_) | ClientError::Unreachable { .. }) => {
            DashboardError::Unavailable(other.to_string())
        }
    }
}

impl Backend for LocalBackend {
    fn describe(&self) -> String {
        format!("single host, state {}", self.state_dir.display())
    }

    fn rollouts(&self) -> BoxFuture<'_, Result<Vec<RolloutView>, DashboardError>> {
        Box::pin(async move { self.client()?.rollouts().await.map_err(from_client) })
    }

    fn rollout<'a>(
        &'a self,
        key: &'a RolloutKey,
    ) -> BoxFuture<'a, Result<RolloutView, DashboardError>> {
        Box::pin(async move {
            if key.namespace != DEFAULT_NAMESPACE {
                return Err(not_on_one_host(key));
            }
            self.client()?.rollout(&key.name).await.map_err(from_client)
        })
    }

    fn operate<'a>(
        &'a self,
        key: &'a RolloutKey,
        op: &'a Operation,
    ) -> BoxFuture<'a, Result<String, DashboardError>> {
        Box::pin(async move {
            if key.namespace != DEFAULT_NAMESPACE {
                return Err(not_on_one_host(key));
            }
            self.client()?
                .operate(&key.name, op)
                .await
                .map_err(from_client)
        })
    }
}

fn not_on_one_host(key: &RolloutKey) -> DashboardError {
    DashboardError::NotFound(format!(
        "rollout {}/{}: not found (the single host has only the namespace `{DEFAULT_NAMESPACE}`)",
        key.namespace, key.name
    ))
}
