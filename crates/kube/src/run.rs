//! Wires the controller: client, discovery, leader election, watches and the HTTP endpoints.
//! Two controllers run while this instance leads: Rollouts ([`controller`]) and the measuring
//! of AnalysisRuns ([`analysisrun`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{FutureExt, StreamExt};
use kube::api::Api;
use kube::runtime::Controller;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, ResourceExt};

use crate::analysisrun;
use crate::cache::{Caches, Streams};
use crate::cached_rollout::CachedRollout;
use crate::controller::{self, Config, Context, DataPlaneApis};
use crate::error::Error;
use crate::events::EventPublisher;
use crate::lease::Leader;
pub use crate::lease::LeaseConfig;
use crate::metrics::Metrics;
use crate::server::{self, Health};

/// How to run the controller.
#[derive(Clone, Debug, Default)]
pub struct RunConfig {
    /// Kubeconfig file; unset: `KUBECONFIG`, `~/.kube/config`, then the in-cluster config.
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context; unset: the current one.
    pub context: Option<String>,
    /// Watch this namespace only; unset: all namespaces.
    pub namespace: Option<String>,
    /// Address of `/metrics`, `/healthz`, `/readyz`; unset: no HTTP server.
    pub metrics_addr: Option<SocketAddr>,
    /// Leader election; unset: this instance reconciles without a Lease.
    pub leader_election: Option<LeaseConfig>,
    /// Reconciler settings.
    pub reconciler: Config,
    /// Namespace of the `cutover-notifications` ConfigMap and Secret (the controller's own);
    /// unset: no notifications.
    pub notifications_namespace: Option<String>,
    /// How often they are read again; unset: every 30 s.
    pub notifications_reload: Option<std::time::Duration>,
}

/// Runs the controller until a termination signal, a lost Lease or a fatal error.
///
/// # Errors
/// No usable configuration, a failed discovery, a metrics address that cannot be bound, or
/// leadership lost to another instance.
pub async fn run_controller(config: RunConfig) -> Result<(), Error> {
    let client = client(&config).await?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    run_with_client(client, config, shutdown).await
}

/// Builds the API client from the kubeconfig or the in-cluster environment.
pub async fn client(config: &RunConfig) -> Result<Client, Error> {
    let options = kube::config::KubeConfigOptions {
        context: config.context.clone(),
        ..Default::default()
    };
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| Error::Config(e.to_string()))?
        }
        None if config.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
    };
    Client::try_from(kube_config).map_err(|e| Error::Config(e.to_string()))
}

/// Runs the controller on `client` until `shutdown` completes (tests run it in-process).
pub async fn run_with_client(
    client: Client,
    config: RunConfig,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    // Deliveries end with this controller (dropped with it); the outbox keeps them.
    let notifications = match &config.notifications_namespace {
        Some(ns) => {
            let every = config
                .notifications_reload
                .unwrap_or(crate::notifications::RELOAD_INTERVAL);
            Some(crate::notifications::start(client.clone(), ns.clone(), every).await)
        }
        None => None,
    };
    let server = config.metrics_addr.map(|addr| {
        tokio::spawn(server::serve(
            addr,
            Health {
                metrics: metrics.clone(),
                ready: ready.clone(),
                notifications: notifications
                    .as_ref()
                    .map(|n| n.notifier.counters().clone()),
            },
        ))
    });
    let result = async {
        let apis = DataPlaneApis::discover(&client).await?;
        ready.store(true, Ordering::Relaxed);
        let leader = match &config.leader_election {
            Some(lease) => Some(Leader::acquire(client.clone(), lease.clone()).await?),
            None => None,
        };
        // Only the leader delivers what an earlier controller left.
        if let Some(n) = &notifications
            && let Err(e) = crate::outbox::resume(&n.outbox, &n.notifier).await
        {
            tracing::error!(error = %e, "notifications: the outbox cannot be read; earlier deliveries are not resumed");
        }
        let events = EventPublisher::new(
            client.clone(),
            "cutover",
            config.leader_election.as_ref().map(|l| l.identity.clone()),
        );
        let (caches, writers) = Caches::new(&apis.endpoint_slices);
        let streams = writers.streams(&client, config.namespace.as_deref(), &apis.endpoint_slices);
        let ctx = Arc::new(
            Context::new(
                client.clone(),
                events,
                metrics.clone(),
                config.reconciler.clone(),
                apis,
                caches,
            )
            .with_notifications(notifications.as_ref()),
        );
        // Both controllers stop on the same signal.
        let shutdown = shutdown.boxed().shared();
        let analysis_runs = analysisrun::run(
            client.clone(),
            scoped(client.clone(), config.namespace.as_deref()),
            metrics.analysis.clone(),
            shutdown.clone(),
        );
        let rollouts = controller_future(ctx, streams, shutdown);
        let controller = futures::future::join(rollouts, analysis_runs).map(|_| ());
        match leader {
            Some(leader) => tokio::select! {
                () = controller => Ok(()),
                lost = leader.hold() => Err(lost),
            },
            None => {
                controller.await;
                Ok(())
            }
        }
    }
    .await;
    if let Some(server) = server {
        server.abort();
    }
    result
}

fn scoped<K>(client: Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}

/// The Rollouts in `ns` that `uses` says depend on an object (a Service, a ConfigMap).
fn rollouts_where(
    store: &Store<CachedRollout>,
    ns: Option<String>,
    uses: impl Fn(&CachedRollout) -> bool,
) -> Vec<ObjectRef<CachedRollout>> {
    store
        .state()
        .iter()
        .filter(|r| r.namespace() == ns && uses(r))
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

/// The Rollouts in `ns` whose active or preview Service is `service`.
fn rollouts_using(
    store: &Store<CachedRollout>,
    ns: Option<String>,
    service: &str,
) -> Vec<ObjectRef<CachedRollout>> {
    rollouts_where(store, ns, |r| r.refs.uses_service(service))
}

/// The Rollouts in `ns` whose migration files are in ConfigMap `config_map`.
fn rollouts_migrating_from(
    store: &Store<CachedRollout>,
    ns: Option<String>,
    config_map: &str,
) -> Vec<ObjectRef<CachedRollout>> {
    rollouts_where(store, ns, |r| {
        r.refs.migrations_config_map.as_deref() == Some(config_map)
    })
}

/// The Rollouts in `ns` that adopt Deployment `deployment`, or that scaled it and may have to
/// give its replicas back.
fn rollouts_adopting(
    store: &Store<CachedRollout>,
    ns: Option<String>,
    deployment: &k8s_openapi::api::apps::v1::Deployment,
) -> Vec<ObjectRef<CachedRollout>> {
    let name = deployment.name_any();
    let holder = deployment
        .annotations()
        .get(crate::workload::ADOPTED_BY_ANNOTATION);
    rollouts_where(store, ns, |r| {
        r.refs.workload.as_deref() == Some(name.as_str())
            || holder.is_some_and(|h| *h == r.name_any())
    })
}

async fn controller_future(
    ctx: Arc<Context>,
    streams: Streams,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let controller = Controller::for_stream(streams.rollouts, ctx.caches.rollouts.clone())
        .with_config(kube::runtime::controller::Config::default().concurrency(ctx.config.workers));
    let store = controller.store();
    let by_service = store.clone();
    let by_config_map = store.clone();
    let by_deployment = store.clone();
    controller
        .owns_stream(streams.replica_sets)
        .owns_stream(streams.runs)
        // A migration Job's progress, and new migration files, plan the Rollout again.
        .owns_stream(streams.jobs)
        .watches_stream(streams.config_maps, move |cm| {
            rollouts_migrating_from(&by_config_map, cm.namespace(), &cm.name_any())
        })
        // Pods trigger their Rollout too: a switch is confirmed from EndpointSlices whose
        // endpoints are matched to revisions through the pod cache.
        .watches_stream(streams.pods, |pod| {
            let rollout = pod.labels.get(crate::ROLLOUT_LABEL)?;
            Some(ObjectRef::new(rollout).within(&pod.namespace()?))
        })
        // A template change in an adopted Deployment starts an update.
        .watches_stream(streams.deployments, move |deployment| {
            rollouts_adopting(&by_deployment, deployment.namespace(), &deployment)
        })
        .watches_stream(streams.services, move |svc| {
            rollouts_using(&by_service, svc.namespace(), &svc.name_any())
        })
        .watches_stream_with(
            streams.slices,
            move |slice| {
                let service = slice.service.clone().unwrap_or_default();
                rollouts_using(&store, slice.namespace(), &service)
            },
            ctx.apis.endpoint_slices.clone(),
        )
        .graceful_shutdown_on(shutdown)
        .run(controller::reconcile, controller::error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(rollout = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "controller event"),
            }
        })
        .await;
}
