//! `cutover dashboard`: serves the dashboard (crates/dashboard) for the backend the other verbs
//! act on: the single-host daemon of the state directory, or Kubernetes with the user's
//! kubeconfig, namespace and rights. On Kubernetes the pages read what `get rollout` reads,
//! all rollouts of a namespace in a few list calls, plus the Rollout's Events; actions are the
//! verbs' own patches, so RBAC applies to them as it does to `cutover promote`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use cutover_core::api::AnalysisRun;
use cutover_dashboard::{Backend, DashboardError, Options, RolloutKey, TlsFiles, TokenSource};
use cutover_kube::ROLLOUT_LABEL;
use cutover_kube::ops::{self, OpError, Snapshot};
use cutover_local::api::RolloutView;
use cutover_local::ops::Operation;
use cutover_local::store::EventRow;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Pod, Service};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use tokio_util::sync::CancellationToken;

use super::source::{Backend as Target, KubeTarget, Source};

/// Flags of `cutover dashboard`.
#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// Address to listen on (port 0: any free port). Anything but loopback needs --tls-cert
    /// and --tls-key, or --insecure-bind.
    #[arg(long, default_value = cutover_dashboard::DEFAULT_ADDRESS, value_name = "HOST:PORT")]
    pub address: SocketAddr,
    /// Serve every page under this path (e.g. /cutover behind a reverse proxy).
    #[arg(long, default_value = "", value_name = "PATH")]
    pub root_path: String,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Listen on a non-loopback address without TLS (e.g. behind a proxy that terminates it).
    #[arg(long)]
    pub insecure_bind: bool,
    /// Keep the token in this file (created with a fresh token, mode 0600, when missing; an
    /// existing one must be readable by its owner only) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Show everything, change nothing: actions are refused.
    #[arg(long)]
    pub read_only: bool,
    /// A host name the dashboard is reached by (besides IP addresses and localhost), e.g.
    /// behind a proxy. Repeatable. Other names are refused (DNS rebinding).
    #[arg(long = "allowed-host", value_name = "HOST")]
    pub allowed_hosts: Vec<String>,
}

impl DashboardArgs {
    fn options(self) -> Options {
        Options {
            address: self.address,
            root_path: self.root_path,
            tls: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| TlsFiles { cert, key }),
            insecure_bind: self.insecure_bind,
            token: self
                .token_file
                .map_or(TokenSource::Generate, TokenSource::File),
            read_only: self.read_only,
            allowed_hosts: self.allowed_hosts,
            ..Options::default()
        }
    }
}

/// Serves until Ctrl-C or SIGTERM.
pub fn run(args: DashboardArgs, target: &Target) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let backend: Arc<dyn Backend> = match target {
            Target::Local(dir) => Arc::new(cutover_dashboard::LocalBackend::new(dir)?),
            Target::Kube(k) => Arc::new(KubeBackend::connect(k).await?),
        };
        let options = args.options();
        let stop = CancellationToken::new();
        let dashboard = cutover_dashboard::start(backend, options.clone(), stop.clone()).await?;
        // The URL is this verb's product: stdout, flushed at once for whoever waits for it.
        print!("{}", dashboard.announce(&options));
        use std::io::Write as _;
        std::io::stdout().flush()?;
        termination().await;
        stop.cancel();
        dashboard.finished().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on Ctrl-C or SIGTERM.
async fn termination() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Kubernetes through the user's kubeconfig: reads as `get rollout` and `list` read, writes
/// as the verbs write.
pub struct KubeBackend {
    client: kube::Client,
    namespace: String,
    all: bool,
    describe: String,
}

impl KubeBackend {
    /// Connects as the CLI verbs do (--kubeconfig, --context, -n, -A).
    pub async fn connect(target: &KubeTarget) -> anyhow::Result<Self> {
        let Source::Kube {
            client, namespace, ..
        } = Source::connect(&Target::Kube(target.clone())).await?
        else {
            anyhow::bail!("a Kubernetes target connected to another backend");
        };
        let describe = match (&target.context, target.all_namespaces) {
            (Some(c), true) => format!("Kubernetes, context {c}, all namespaces"),
            (Some(c), false) => format!("Kubernetes, context {c}, namespace {namespace}"),
            (None, true) => "Kubernetes, all namespaces".to_string(),
            (None, false) => format!("Kubernetes, namespace {namespace}"),
        };
        Ok(Self {
            client,
            namespace,
            all: target.all_namespaces,
            describe,
        })
    }

    /// Every rollout of the namespace (or all), with their ReplicaSets, pods, Services and
    /// runs, from one list call per kind instead of five per rollout.
    async fn list_views(&self) -> Result<Vec<RolloutView>, OpError> {
        let ns = (!self.all).then_some(self.namespace.as_str());
        let owned = ListParams::default().labels(ROLLOUT_LABEL);
        let rollouts = ops::list(&self.client, ns).await?;
        let replica_sets = grouped(list::<ReplicaSet>(&self.client, ns, &owned).await?);
        let pods = grouped(list::<Pod>(&self.client, ns, &owned).await?);
        let runs = grouped(list::<AnalysisRun>(&self.client, ns, &owned).await?);
        let services: BTreeMap<(String, String), Service> =
            list::<Service>(&self.client, ns, &ListParams::default())
                .await?
                .into_iter()
                .map(|s| ((s.namespace().unwrap_or_default(), s.name_any()), s))
                .collect();
        let mut views = Vec::with_capacity(rollouts.len());
        for rollout in rollouts {
            let key = (
                rollout
                    .namespace()
                    .unwrap_or_else(|| self.namespace.clone()),
                rollout.name_any(),
            );
            let bg = &rollout.spec.strategy.blue_green;
            let wanted: Vec<Service> = std::iter::once(&bg.active_service)
                .chain(bg.preview_service.iter())
                .filter_map(|name| services.get(&(key.0.clone(), name.clone())).cloned())
                .collect();
            let mut analysis_runs = runs.get(&key).cloned().unwrap_or_default();
            analysis_runs.sort_by_key(|r| (r.metadata.creation_timestamp.clone(), r.name_any()));
            views.push(super::source::view(Snapshot {
                rollout,
                replica_sets: replica_sets.get(&key).cloned().unwrap_or_default(),
                pods: pods.get(&key).cloned().unwrap_or_default(),
                services: wanted,
                analysis_runs,
            }));
        }
        Ok(views)
    }

    /// The Rollout's recent Events (those the controller recorded), oldest first. A user who
    /// may not list Events still sees the rest of the page.
    async fn events(&self, key: &RolloutKey) -> Vec<EventRow> {
        let fields = format!(
            "involvedObject.kind=Rollout,involvedObject.name={}",
            key.name
        );
        let Ok(list) = Api::<Event>::namespaced(self.client.clone(), &key.namespace)
            .list(&ListParams::default().fields(&fields))
            .await
        else {
            return Vec::new();
        };
        let mut rows: Vec<EventRow> = list
            .items
            .into_iter()
            .map(|e| EventRow {
                at: e
                    .last_timestamp
                    .map(|t| t.0)
                    .or(e.event_time.map(|t| t.0))
                    .or(e.first_timestamp.map(|t| t.0))
                    .or(e.metadata.creation_timestamp.map(|t| t.0))
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
                severity: e.type_.unwrap_or_else(|| "Normal".into()),
                reason: e.reason.unwrap_or_default(),
                message: e.message.unwrap_or_default(),
            })
            .collect();
        rows.sort_by_key(|r| r.at);
        let skip = rows.len().saturating_sub(30);
        rows.split_off(skip)
    }
}

async fn list<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    params: &ListParams,
) -> Result<Vec<K>, OpError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    api.list(params).await.map(|l| l.items).map_err(|source| {
        OpError::Api(cutover_kube::Error::Kube {
            what: format!("list {}", K::plural(&K::DynamicType::default())),
            source,
        })
    })
}

/// Objects by (namespace, rollout label).
fn grouped<K: kube::Resource>(items: Vec<K>) -> BTreeMap<(String, String), Vec<K>> {
    let mut map: BTreeMap<(String, String), Vec<K>> = BTreeMap::new();
    for item in items {
        if let Some(rollout) = item.labels().get(ROLLOUT_LABEL).cloned() {
            map.entry((item.namespace().unwrap_or_default(), rollout))
                .or_default()
                .push(item);
        }
    }
    map
}

/// The verbs' errors as the dashboard's: a Forbidden from the API server is shown as such
/// (the user's kubeconfig may not do this), not as an outage.
fn from_op(e: OpError) -> DashboardError {
    match e {
        OpError::Refused(m) => DashboardError::Refused(m),
        OpError::NotFound(m) => DashboardError::NotFound(m),
        OpError::NothingToDo(m) => DashboardError::NothingToDo(m),
        OpError::Api(cutover_kube::Error::Kube {
            what,
            source: kube::Error::Api(status),
        }) if status.code == 403 => DashboardError::Forbidden(format!(
            "forbidden by the Kubernetes API server ({what}): {}",
            status.message
        )),
        other => DashboardError::Unavailable(other.to_string()),
    }
}

impl Backend for KubeBackend {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn rollouts(&self) -> BoxFuture<'_, Result<Vec<RolloutView>, DashboardError>> {
        Box::pin(async move { self.list_views().await.map_err(from_op) })
    }

    fn rollout<'a>(
        &'a self,
        key: &'a RolloutKey,
    ) -> BoxFuture<'a, Result<RolloutView, DashboardError>> {
        Box::pin(async move {
            let snapshot = ops::snapshot(&self.client, &key.namespace, &key.name)
                .await
                .map_err(from_op)?;
            let mut view = super::source::view(snapshot);
            view.events = self.events(key).await;
            Ok(view)
        })
    }

    fn operate<'a>(
        &'a self,
        key: &'a RolloutKey,
        op: &'a Operation,
    ) -> BoxFuture<'a, Result<String, DashboardError>> {
        Box::pin(async move {
            ops::operate(&self.client, &key.namespace, &key.name, op)
                .await
                .map_err(from_op)
        })
    }
}
