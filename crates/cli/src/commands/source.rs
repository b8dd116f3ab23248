//! Where the verbs act, and how they read and change rollouts there: the single-host daemon of
//! a state directory, or a Kubernetes cluster.
//!
//! The choice is explicit: Kubernetes when `--kubeconfig`, `--context`, `-n/--namespace` or
//! `-A` is given, when `CUTOVER_BACKEND=kubernetes`, or when the binary runs as the kubectl
//! plugin `kubectl-cutover`; the single-host daemon otherwise.

use std::path::PathBuf;

use cutover_core::api::{AnalysisPhase, AnalysisRun, POD_TEMPLATE_HASH_LABEL};
use cutover_kube::ops::{self, OpError, Snapshot};
use cutover_kube::{ANALYSIS_KIND_LABEL, ROLLOUT_LABEL};
use cutover_local::api::{
    Client as LocalClient, ClientError, MetricSpecView, ReplicaView, RevisionView, RolloutView,
    RunView, ServiceView,
};
use cutover_local::ops::Operation;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

/// Environment variable that selects the backend (`kubernetes` or `local`).
pub const BACKEND_ENV: &str = "CUTOVER_BACKEND";

/// Kubernetes connection flags, as kubectl's.
#[derive(Clone, Debug, Default)]
pub struct KubeTarget {
    /// Kubeconfig file.
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context.
    pub context: Option<String>,
    /// Namespace (default: the context's, else `default`).
    pub namespace: Option<String>,
    /// Every namespace (`list` only).
    pub all_namespaces: bool,
}

/// The backend the verbs act on.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The single-host daemon of this state directory.
    Local(PathBuf),
    /// A Kubernetes cluster.
    Kube(KubeTarget),
}

impl Backend {
    /// Chooses the backend from the flags, the environment and the program name.
    pub fn choose(state_dir: PathBuf, kube: KubeTarget) -> Self {
        let flagged = kube.kubeconfig.is_some()
            || kube.context.is_some()
            || kube.namespace.is_some()
            || kube.all_namespaces;
        let by_env = std::env::var(BACKEND_ENV).is_ok_and(|v| v == "kubernetes" || v == "kube");
        let as_plugin = std::env::args_os()
            .next()
            .map(PathBuf::from)
            .and_then(|p| {
                p.file_name()
                    .map(|n| n.to_string_lossy().starts_with("kubectl-"))
            })
            .unwrap_or(false);
        if flagged || by_env || as_plugin {
            Backend::Kube(kube)
        } else {
            Backend::Local(state_dir)
        }
    }

    /// The state directory, for verbs that exist only on one host.
    pub fn local_only(&self, verb: &str, instead: &str) -> anyhow::Result<&PathBuf> {
        match self {
            Backend::Local(dir) => Ok(dir),
            Backend::Kube(_) => anyhow::bail!(
                "`cutover {verb}` is for the single-host backend; on Kubernetes use {instead}"
            ),
        }
    }
}

/// Why the backend did not do what was asked; each has its exit code (`super::exit`).
pub enum SourceError {
    /// The backend refused: a bad request (exit 1).
    Refused(String),
    /// The rollout or run named does not exist (exit 3).
    NotFound(String),
    /// Nothing to act on (exit 4).
    NothingToDo(String),
    /// Connection or server failure (exit 2, through `main`).
    Failed(anyhow::Error),
}

impl SourceError {
    /// The CLI's answer: the message on stderr and the exit code of its kind; a failure
    /// propagates.
    pub fn exit(self) -> anyhow::Result<std::process::ExitCode> {
        let (message, code) = match self {
            SourceError::Refused(m) => (m, super::exit::REFUSED),
            SourceError::NotFound(m) => (m, super::exit::NOT_FOUND),
            SourceError::NothingToDo(m) => (m, super::exit::NOTHING_TO_DO),
            SourceError::Failed(e) => return Err(e),
        };
        eprintln!("{message}");
        Ok(std::process::ExitCode::from(code))
    }
}

impl From<ClientError> for SourceError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Refused(m) => SourceError::Refused(m),
            ClientError::NotFound(m) => SourceError::NotFound(m),
            ClientError::NothingToDo(m) => SourceError::NothingToDo(m),
            other => SourceError::Failed(other.into()),
        }
    }
}

impl From<OpError> for SourceError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Refused(m) => SourceError::Refused(m),
            OpError::NotFound(m) => SourceError::NotFound(m),
            OpError::NothingToDo(m) => SourceError::NothingToDo(m),
            other => SourceError::Failed(other.into()),
        }
    }
}

/// A connection to the chosen backend.
pub enum Source {
    /// The daemon's API.
    Local(LocalClient),
    /// The Kubernetes API.
    Kube {
        /// Client.
        client: kube::Client,
        /// Namespace of the verbs.
        namespace: String,
        /// `list` over every namespace.
        all: bool,
    },
}

impl Source {
    /// Connects to the backend.
    pub async fn connect(backend: &Backend) -> anyhow::Result<Self> {
        match backend {
            Backend::Local(dir) => Ok(Source::Local(LocalClient::from_state_dir(dir)?)),
            Backend::Kube(k) => {
                let config = cutover_kube::RunConfig {
                    kubeconfig: k.kubeconfig.clone(),
                    context: k.context.clone(),
                    ..cutover_kube::RunConfig::default()
                };
                let client = cutover_kube::client(&config).await?;
                let namespace = k
                    .namespace
                    .clone()
                    .unwrap_or_else(|| client.default_namespace().to_string());
                Ok(Source::Kube {
                    client,
                    namespace,
                    all: k.all_namespaces,
                })
            }
        }
    }

    /// One rollout, with its revisions and Services.
    pub async fn rollout(&self, name: &str) -> Result<RolloutView, SourceError> {
        match self {
            Source::Local(c) => Ok(c.rollout(name).await?),
            Source::Kube {
                client, namespace, ..
            } => Ok(kube_view(
                client,
                namespace,
                ops::snapshot(client, namespace, name).await?,
            )
            .await),
        }
    }

    /// Every rollout.
    pub async fn rollouts(&self) -> Result<Vec<RolloutView>, SourceError> {
        match self {
            Source::Local(c) => Ok(c.rollouts().await?),
            Source::Kube {
                client,
                namespace,
                all,
            } => {
                let ns = (!*all).then_some(namespace.as_str());
                let mut views = Vec::new();
                for r in ops::list(client, ns).await? {
                    let rns = r.namespace().unwrap_or_else(|| namespace.clone());
                    let snapshot = ops::snapshot(client, &rns, &r.name_any()).await?;
                    views.push(kube_view(client, &rns, snapshot).await);
                }
                Ok(views)
            }
        }
    }

    /// Runs an operation; returns the message for the user.
    pub async fn operate(&self, name: &str, op: &Operation) -> Result<String, SourceError> {
        match self {
            Source::Local(c) => Ok(c.operate(name, op).await?),
            Source::Kube {
                client, namespace, ..
            } => Ok(ops::operate(client, namespace, name, op).await?),
        }
    }

    /// One AnalysisRun with its measurements.
    pub async fn analysis_run(&self, name: &str) -> Result<RunView, SourceError> {
        match self {
            Source::Local(c) => Ok(c.analysis_run(name).await?),
            Source::Kube {
                client, namespace, ..
            } => Ok(run_view(ops::analysis_run(client, namespace, name).await?)),
        }
    }

    /// Stops an AnalysisRun; returns the message for the user.
    pub async fn terminate_run(&self, name: &str) -> Result<String, SourceError> {
        match self {
            Source::Local(c) => Ok(c.terminate_run(name).await?),
            Source::Kube {
                client, namespace, ..
            } => Ok(ops::terminate_analysis_run(client, namespace, name).await?),
        }
    }
}

/// The display view of an AnalysisRun object: the same view the daemon serves, so one
/// renderer (and one JSON shape) serves both backends. Rollout, kind and revision come from
/// the labels the controller puts on the runs it creates; a run without status has not been
/// picked up by the measuring controller yet, hence Pending.
fn run_view(run: AnalysisRun) -> RunView {
    let label = |key: &str| run.labels().get(key).cloned().unwrap_or_default();
    RunView {
        name: run.name_any(),
        rollout: label(ROLLOUT_LABEL),
        kind: label(ANALYSIS_KIND_LABEL),
        hash: label(POD_TEMPLATE_HASH_LABEL),
        phase: format!(
            "{:?}",
            run.status
                .as_ref()
                .and_then(|s| s.phase)
                .unwrap_or(AnalysisPhase::Pending)
        ),
        message: run.status.as_ref().and_then(|s| s.message.clone()),
        created_at: run
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0),
        terminated: run.spec.terminate.unwrap_or(false),
        metrics: MetricSpecView::all(&run.spec),
        status: run.status,
    }
}

/// The view of a Kubernetes rollout, with its managed routes read from the cluster.
async fn kube_view(client: &kube::Client, namespace: &str, s: Snapshot) -> RolloutView {
    let routes = cutover_kube::traffic::summaries(client, namespace, &s.rollout, &s.services).await;
    let mut v = view(s);
    v.routes = routes;
    v
}

/// The display view of a Rollout on Kubernetes: ReplicaSets as revisions, pods as replicas
/// (oldest first, as Argo lists them). The Rollout loses its managedFields, as `kubectl get`
/// hides them.
pub(crate) fn view(s: Snapshot) -> RolloutView {
    let hash_of = |labels: &std::collections::BTreeMap<String, String>| {
        labels.get(POD_TEMPLATE_HASH_LABEL).cloned()
    };
    let mut revisions: Vec<RevisionView> = s
        .replica_sets
        .iter()
        .filter_map(|rs| {
            let hash = hash_of(rs.labels())?;
            let mut pods: Vec<&Pod> = s
                .pods
                .iter()
                .filter(|p| hash_of(p.labels()).as_ref() == Some(&hash))
                .collect();
            pods.sort_by_key(|p| (p.metadata.creation_timestamp.clone(), p.name_any()));
            Some(RevisionView {
                revision: ops::revision_of(rs).unwrap_or(0),
                images: rs
                    .spec
                    .as_ref()
                    .and_then(|sp| sp.template.as_ref())
                    .and_then(|t| t.spec.as_ref())
                    .map(|p| {
                        p.containers
                            .iter()
                            .filter_map(|c| c.image.clone())
                            .collect()
                    })
                    .unwrap_or_default(),
                desired: rs.spec.as_ref().and_then(|sp| sp.replicas).unwrap_or(0),
                deadline: rs
                    .annotations()
                    .get(cutover_kube::SCALE_DOWN_DEADLINE_ANNOTATION)
                    .and_then(|d| d.parse().ok()),
                created_at: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
                replicas: pods
                    .iter()
                    .enumerate()
                    .map(|(i, p)| replica(i, p))
                    .collect(),
                hash,
            })
        })
        .collect();
    revisions.sort_by_key(|r| std::cmp::Reverse(r.revision));
    let services = s
        .services
        .iter()
        .map(|svc| ServiceView {
            name: svc.name_any(),
            address: svc.spec.as_ref().and_then(|sp| sp.cluster_ip.clone()),
            selector: svc
                .spec
                .as_ref()
                .and_then(|sp| sp.selector.as_ref())
                .and_then(|sel| sel.get(POD_TEMPLATE_HASH_LABEL).cloned()),
            serving: Vec::new(),
            generation: 0,
        })
        .collect();
    let mut rollout = s.rollout;
    rollout.metadata.managed_fields = None;
    RolloutView {
        rollout,
        revisions,
        services,
        events: Vec::new(),
        runs: s.analysis_runs.into_iter().map(run_view).collect(),
        routes: Vec::new(),
    }
}

fn replica(index: usize, pod: &Pod) -> ReplicaView {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|st| st.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let restarts = status
        .and_then(|st| st.container_statuses.as_ref())
        .map_or(0, |cs| {
            cs.iter()
                .map(|c| c.restart_count.max(0).unsigned_abs())
                .sum()
        });
    ReplicaView {
        name: pod.name_any(),
        index: u32::try_from(index).unwrap_or(u32::MAX),
        pid: None,
        port: 0,
        phase: pod_status(pod),
        ready,
        restarts,
        created_at: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        last_exit: None,
        log_path: String::new(),
    }
}

/// What kubectl shows in a pod's STATUS: the phase, overridden by the reason a container waits
/// or ended (`CrashLoopBackOff`, `ExitCode:1`), `Terminating` once deleted.
fn pod_status(pod: &Pod) -> String {
    if pod.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    let status = pod.status.as_ref();
    let mut reason = status
        .and_then(|st| st.reason.clone().or_else(|| st.phase.clone()))
        .unwrap_or_else(|| "Pending".into());
    for c in status
        .and_then(|st| st.container_statuses.as_ref())
        .into_iter()
        .flatten()
    {
        let state = c.state.as_ref();
        if let Some(w) = state
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
        {
            reason = w;
        } else if let Some(t) = state.and_then(|s| s.terminated.as_ref()) {
            reason = t.reason.clone().unwrap_or_else(|| match t.signal {
                Some(signal) if signal != 0 => format!("Signal:{signal}"),
                _ => format!("ExitCode:{}", t.exit_code),
            });
        }
    }
    reason
}
