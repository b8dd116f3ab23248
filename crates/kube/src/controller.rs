//! The reconciler, in kube-rs controller-rs's layout: `reconcile` (span, metrics, finalizer) →
//! `apply` (observe → `plan()` → execute → status → events) or `cleanup` (give the Services their
//! selectors back). `error_policy` is separate and backs off per object.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cutover_core::api::{
    ConditionStatus, ConditionType, POD_TEMPLATE_HASH_LABEL, Rollout, RolloutCondition,
    RolloutPhase,
};
use cutover_core::plan::{EventSeverity, Plan, plan};
use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::core::ApiResource;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::cache::Caches;
use crate::cached_rollout::CachedRollout;
use crate::error::{Error, is_conflict, is_not_found};
use crate::events::{EventNote, EventPublisher, EventType};
use crate::execute::Executor;
use crate::expect::{EXPECTATION_TIMEOUT, Expectations, Kind, Want};
use crate::metrics::Metrics;
use crate::{FINALIZER, MANAGED_BY_ANNOTATION};

/// Settings of the reconciler.
#[derive(Clone, Debug)]
pub struct Config {
    /// Plan again after this long when the plan names no timer: a safety net for missed
    /// watch events, not the mechanism (watches wake the controller).
    pub resync: Duration,
    /// First retry delay after an error; doubles per consecutive failure of the same object.
    pub error_backoff: Duration,
    /// Upper bound of the retry delay.
    pub max_error_backoff: Duration,
    /// Rollouts reconciled at once. Each in-flight reconcile may hold an API connection with
    /// its TLS and read buffers, so this bounds memory as much as API load.
    pub workers: u16,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(300),
            error_backoff: Duration::from_millis(500),
            max_error_backoff: Duration::from_secs(60),
            workers: 16,
        }
    }
}

/// Versions of the APIs the controller needs that differ between Kubernetes releases, found by
/// discovery at start: EndpointSlices are `discovery.k8s.io/v1` from 1.21 (v1beta1 before),
/// evictions `policy/v1` from 1.22 (v1beta1 before).
#[derive(Clone, Debug)]
pub struct DataPlaneApis {
    /// The EndpointSlice resource to read.
    pub endpoint_slices: ApiResource,
    /// `apiVersion` of Eviction bodies.
    pub eviction_version: String,
}

impl DataPlaneApis {
    /// The newest versions (Kubernetes ≥ 1.22).
    pub fn current() -> Self {
        Self {
            endpoint_slices: endpoint_slice_resource("v1"),
            eviction_version: "policy/v1".into(),
        }
    }

    /// Asks the server which versions it serves; falls back to v1beta1 on old servers.
    pub async fn discover(client: &Client) -> Result<Self, Error> {
        let served = |gv: &'static str| {
            let client = client.clone();
            async move {
                match client.list_api_group_resources(gv).await {
                    Ok(list) => Ok(list),
                    Err(e) if is_not_found(&e) => Err(None),
                    Err(e) => Err(Some(Error::kube(format!("discover {gv}"), e))),
                }
            }
        };
        let slices = match served("discovery.k8s.io/v1").await {
            Ok(list) if list.resources.iter().any(|r| r.name == "endpointslices") => "v1",
            Ok(_) | Err(None) => "v1beta1",
            Err(Some(e)) => return Err(e),
        };
        let eviction_version = match served("policy/v1").await {
            Ok(_) => "policy/v1",
            Err(None) => "policy/v1beta1",
            Err(Some(e)) => return Err(e),
        };
        tracing::info!(endpointslices = %format!("discovery.k8s.io/{slices}"), eviction = eviction_version, "API versions");
        Ok(Self {
            endpoint_slices: endpoint_slice_resource(slices),
            eviction_version: eviction_version.into(),
        })
    }
}

fn endpoint_slice_resource(version: &str) -> ApiResource {
    ApiResource {
        group: "discovery.k8s.io".into(),
        version: version.into(),
        api_version: format!("discovery.k8s.io/{version}"),
        kind: "EndpointSlice".into(),
        plural: "endpointslices".into(),
    }
}

/// Everything a reconcile needs: the single injection point (tests build one on a mock client).
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Kubernetes Events for the plan's transitions.
    pub events: EventPublisher,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Reconciler settings.
    pub config: Config,
    /// Version-dependent APIs.
    pub apis: DataPlaneApis,
    /// The watch caches a reconcile reads.
    pub caches: Caches,
    /// Writes the caches must show before a Rollout is planned again.
    pub expectations: Expectations,
    /// Consecutive failures per object, for the error backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Where transitions are announced, and where each notification waits until delivered,
    /// when notifications are configured.
    pub notifications: Option<(cutover_notify::Notifier, crate::outbox::Outbox)>,
}

impl Context {
    /// A context for `client` reading `caches`.
    pub fn new(
        client: Client,
        events: EventPublisher,
        metrics: Arc<Metrics>,
        config: Config,
        apis: DataPlaneApis,
        caches: Caches,
    ) -> Self {
        Self {
            client,
            events,
            metrics,
            config,
            apis,
            caches,
            expectations: Expectations::default(),
            failures: Mutex::default(),
            notifications: None,
        }
    }

    /// The context announcing transitions through `notifications`.
    pub fn with_notifications(
        mut self,
        notifications: Option<&crate::notifications::Notifications>,
    ) -> Self {
        self.notifications = notifications.map(|n| (n.notifier.clone(), n.outbox.clone()));
        self
    }

    fn note_success(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }
}

/// Reconciles one Rollout: metrics, then the finalizer helper dispatching to apply or cleanup.
/// The cached Rollout's spec and status are parsed back here, once per reconcile.
pub async fn reconcile(cached: Arc<CachedRollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile_timer();
    let rollout = Arc::new(cached.expand().map_err(|source| Error::Json {
        what: "the cached Rollout",
        source,
    })?);
    let ns = rollout
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    let key = format!("{ns}/{}", rollout.name_any());
    let api: Api<Rollout> = Api::namespaced(ctx.client.clone(), &ns);
    let action = finalizer(&api, FINALIZER, rollout, |event| async {
        match event {
            Finalizer::Apply(r) => apply(&r, &ctx).await,
            Finalizer::Cleanup(r) => cleanup(&r, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.note_success(&key);
    Ok(action)
}

/// Retries a failed object with exponential backoff, so one broken Rollout neither spins nor
/// waits five minutes after a transient conflict.
pub fn error_policy(rollout: Arc<CachedRollout>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!(
        "{}/{}",
        rollout.namespace().unwrap_or_default(),
        rollout.name_any()
    );
    let n = match ctx.failures.lock() {
        Ok(mut f) => {
            let n = f.entry(key.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        }
        Err(_) => 1,
    };
    ctx.metrics.failure(error.kind());
    tracing::warn!(rollout = %key, attempt = n, error = %error, "reconcile failed");
    let factor = 2u32.saturating_pow(n.saturating_sub(1).min(16));
    Action::requeue(
        ctx.config
            .error_backoff
            .saturating_mul(factor)
            .min(ctx.config.max_error_backoff),
    )
}

/// How often a reconcile that found a cache still listing looks again.
const CACHES_LISTING_POLL: Duration = Duration::from_millis(200);

/// Observe → plan → execute → status → events.
async fn apply(rollout: &Rollout, ctx: &Context) -> Result<Action, Error> {
    let ns = rollout
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    let name = rollout.name_any();
    let key = format!("{ns}/{name}");
    // Every cache holds its first list before anything is planned. Checked, not awaited: a
    // reconcile awaiting `Store::wait_until_ready` beside another one was seen never to
    // resume once the store was ready (the other one did), which left a new Rollout
    // unplanned, every later trigger held behind its reconcile.
    match ctx.caches.ready().now_or_never() {
        Some(true) => {}
        Some(false) => return Err(Error::CacheClosed),
        None => {
            tracing::debug!(rollout = %key, "caches still listing");
            return Ok(Action::requeue(CACHES_LISTING_POLL));
        }
    }
    // Plan on the cached Rollout and objects only once the caches show our own last writes
    // (the Rollout's status included): a copy that predates them would repeat actions and
    // step the status back. The watch event that brings the write wakes this Rollout again;
    // the requeue is only the safety net.
    if let Some(unmet) = ctx.expectations.unmet(&key, &ctx.caches) {
        tracing::debug!(rollout = %key, waiting_for = %unmet, "cache behind our last write");
        return Ok(Action::requeue(EXPECTATION_TIMEOUT));
    }
    // With `workloadRef` the template is the referenced Deployment's, read fresh: the
    // planner sees a Rollout like any other.
    let (resolved, adopted) = crate::workload::resolve(&ctx.client, rollout, &ns).await?;
    let rollout: &Rollout = &resolved;
    // Observation and planning make no API call: this is the controller's own work, timed
    // apart from the round trips.
    let local = ctx.metrics.local_timer();
    let mut world = crate::observe::observe(&ctx.caches, rollout, &ns);
    drop(local);
    // Mesh and gateway routes are read from the API (they are few, and their CRDs may not be
    // installed where no Rollout uses them): what they serve joins what the active Service's
    // EndpointSlices serve, so a switch is verified only when both carry the new revision.
    let selectors = crate::traffic::cached_selectors(world.services.values().map(AsRef::as_ref));
    let routes = crate::traffic::observe(&ctx.client, &ns, rollout, &selectors).await;
    if let (Ok(Some(r)), Some(active)) = (&routes, world.observed.active_service.as_mut()) {
        active.serving.extend(r.serving.iter().cloned());
        active.serving.sort();
        active.serving.dedup();
    }
    let local = ctx.metrics.local_timer();
    let now = jiff::Timestamp::now();
    let plan = plan(&world.observed, now);
    drop(local);
    let routes = match routes {
        Ok(r) => r,
        Err(e) => return Err(refused(ctx, rollout, &ns, &plan, e).await),
    };
    tracing::debug!(rollout = %key, decision = ?plan.decision, requeue = ?plan.requeue_after, "planned");
    for action in &plan.actions {
        tracing::info!(rollout = %key, "{action}");
    }
    let exec = Executor {
        ctx,
        rollout,
        ns: &ns,
        world: &world,
    };
    for action in &plan.actions {
        if let Err(e) = exec.execute(action).await {
            return Err(refused(ctx, rollout, &ns, &plan, e).await);
        }
    }
    // Routes are read, not watched: while a written change is not yet taken by the mesh or
    // gateway, nothing would wake this Rollout when it is, so poll until it is.
    let mut route_poll = false;
    if let Some(observed) = &routes {
        let mut planned = rollout.clone();
        planned.status = Some(plan.status.clone());
        let written = crate::traffic::write(&ctx.client, &planned, &world, observed).await;
        route_poll = matches!(written, Ok(true)) || observed.unverified();
        let result = match (written, &observed.refused) {
            (Ok(false), Some(why)) => Err(Error::Route(why.clone())),
            (Ok(_), _) => Ok(()),
            (Err(e), _) => Err(e),
        };
        if let Err(e) = result {
            return Err(refused(ctx, rollout, &ns, &plan, e).await);
        }
    }
    // Everything the plan asked for was accepted: a refusal reported earlier is over.
    let mut plan = plan;
    plan.status
        .conditions
        .retain(|c| c.type_ != ConditionType::ReplicaFailure);
    let written = write_status(ctx, rollout, &ns, &plan).await?;
    if written != StatusWrite::Unchanged {
        ctx.expectations.expect(
            &key,
            Kind::Rollout,
            &ns,
            &name,
            Want::ChangedFrom(rollout.resource_version()),
        );
    }
    if written == StatusWrite::Conflict {
        // The Rollout changed while we planned (a user's promote or abort on the status, most
        // likely): plan again once the cache holds what is stored now, instead of overwriting it.
        return Ok(Action::requeue(EXPECTATION_TIMEOUT));
    }
    publish_events(ctx, rollout, &plan, true).await;
    if let Some(deployment) = &adopted {
        crate::workload::scale(
            &ctx.client,
            rollout,
            &ns,
            deployment,
            &plan.status,
            &world.observed,
        )
        .await?;
    }
    crate::workload::release_unreferenced(&ctx.client, &ctx.caches, rollout, &ns).await?;
    ctx.metrics
        .observe_plan(&ns, &name, rollout.status.as_ref(), &plan);
    let mut requeue = plan
        .requeue_after
        .map_or(ctx.config.resync, |d| d.max(Duration::from_millis(100)));
    if route_poll {
        requeue = requeue.min(crate::traffic::ROUTE_POLL);
    }
    Ok(Action::requeue(requeue))
}

/// Reports `e` in the rollout's status when it is a refusal, and hands it back.
async fn refused(ctx: &Context, rollout: &Rollout, ns: &str, plan: &Plan, e: Error) -> Error {
    if let Some(refusal) = e.refusal() {
        report_refusal(ctx, rollout, ns, plan, &refusal).await;
    }
    e
}

/// The API server refused one of the plan's writes, or a managed route is unusable or refused: the rollout says so in its status (phase
/// Degraded, a `ReplicaFailure` condition with the API server's words) and in a Warning event,
/// instead of a stale message while the reconcile backs off and retries.
async fn report_refusal(ctx: &Context, rollout: &Rollout, ns: &str, plan: &Plan, refusal: &str) {
    let mut refused = plan.clone();
    let s = &mut refused.status;
    let message = refusal.to_string();
    s.phase = Some(RolloutPhase::Degraded);
    s.message = Some(message.clone());
    let since = rollout
        .status
        .as_ref()
        .and_then(|st| st.condition(ConditionType::ReplicaFailure))
        .filter(|c| c.message.as_deref() == Some(message.as_str()))
        .and_then(|c| c.last_transition_time.clone());
    // The same refusal comes back on every retry of the reconcile; it is announced once.
    let new_refusal = since.is_none();
    s.conditions
        .retain(|c| c.type_ != ConditionType::ReplicaFailure);
    s.conditions.push(RolloutCondition {
        type_: ConditionType::ReplicaFailure,
        status: ConditionStatus::True,
        reason: "ApiServerRefused".into(),
        message: Some(message.clone()),
        last_transition_time: since.or_else(|| Some(Time(jiff::Timestamp::now()))),
        last_update_time: None,
    });
    refused.events = vec![cutover_core::plan::Event {
        severity: EventSeverity::Warning,
        reason: cutover_core::plan::EventReason::ApiServerRefused,
        message,
    }];
    if let Err(e) = write_status(ctx, rollout, ns, &refused).await {
        tracing::warn!(rollout = %rollout.name_any(), error = %e, "writing the refusal to status failed");
    }
    publish_events(ctx, rollout, &refused, new_refusal).await;
}

/// What became of a status write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StatusWrite {
    /// The plan's status was the stored one: nothing written.
    Unchanged,
    /// Written.
    Written,
    /// Refused: the Rollout changed since it was observed.
    Conflict,
}

/// Writes the plan's status whole with server-side apply on the status subresource, on the
/// condition that the Rollout is still the one observed (its resourceVersion): a forced apply
/// would otherwise silently undo a user's status patch made meanwhile.
async fn write_status(
    ctx: &Context,
    rollout: &Rollout,
    ns: &str,
    plan: &Plan,
) -> Result<StatusWrite, Error> {
    if rollout.status.as_ref() == Some(&plan.status) {
        return Ok(StatusWrite::Unchanged);
    }
    let mut status = serde_json::to_value(&plan.status).map_err(|source| Error::Json {
        what: "rollout status",
        source,
    })?;
    // Fields users set through status (abort, promote --full, cleared pauses) are written even
    // when false or empty, so that this manager takes them over and a cleared value sticks
    // instead of the user's earlier `true` surviving under the user's ownership.
    if let Some(map) = status.as_object_mut() {
        for (key, empty) in [
            ("abort", json!(false)),
            ("promoteFull", json!(false)),
            ("controllerPause", json!(false)),
            ("pauseConditions", json!([])),
        ] {
            map.entry(key).or_insert(empty);
        }
    }
    let body = json!({
        "apiVersion": cutover_core::api::API_VERSION,
        "kind": "Rollout",
        "metadata": { "resourceVersion": rollout.resource_version() },
        "status": status,
    });
    let api: Api<Rollout> = Api::namespaced(ctx.client.clone(), ns);
    let name = rollout.name_any();
    match api
        .patch_status(
            &name,
            &PatchParams::apply(crate::FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        Ok(_) => Ok(StatusWrite::Written),
        Err(e) if is_conflict(&e) => Ok(StatusWrite::Conflict),
        Err(e) => Err(Error::kube(
            format!("apply status of rollout {ns}/{name}"),
            e,
        )),
    }
}

/// Publishes the plan's events. A failed event is logged, not retried: it must not hold up the
/// rollout, and the next plan would not repeat it anyway. With `announce` they are also queued
/// as notifications.
async fn publish_events(ctx: &Context, rollout: &Rollout, plan: &Plan, announce: bool) {
    if plan.events.is_empty() {
        return;
    }
    let reference = rollout.object_ref(&());
    for event in &plan.events {
        let note = EventNote {
            type_: match event.severity {
                EventSeverity::Normal => EventType::Normal,
                EventSeverity::Warning => EventType::Warning,
            },
            reason: event.reason.to_string(),
            note: event.message.clone(),
            // Distinct transitions ("updated to revision 3 (fast rollback)") stay told apart by
            // tools that group events by reason and action, so the action carries the message.
            action: event.message.clone(),
        };
        if let Err(e) = ctx.events.publish(&note, &reference).await {
            tracing::warn!(rollout = %rollout.name_any(), error = %e, "publishing event failed");
        }
    }
    // Stored and queued after the status write was accepted; delivery runs on its own.
    if announce && let Some((notifier, outbox)) = &ctx.notifications {
        let facts = cutover_notify::RolloutFacts::of(rollout, &plan.status);
        let jobs = notifier.jobs(&facts, &plan.events, jiff::Timestamp::now());
        crate::outbox::announce(outbox, notifier, jobs).await;
    }
}

/// The Rollout is being deleted: give an adopted Deployment its replicas back, and remove our
/// selector key and managed-by annotation from both Services so they select all the app's pods
/// again. Works whether or not `apply` ever ran.
async fn cleanup(rollout: &Rollout, ctx: &Context) -> Result<Action, Error> {
    let ns = rollout
        .namespace()
        .ok_or(Error::MissingField("namespace"))?;
    // An adopted Deployment gets its replicas back first, so its pods are starting before
    // the Rollout's go.
    crate::workload::release_all(&ctx.client, &ctx.caches, rollout, &ns).await?;
    // Routes first: all traffic back on the stable revision before the Services select all
    // of the app's pods again.
    crate::traffic::restore(&ctx.client, &ns, rollout).await?;
    let bg = &rollout.spec.strategy.blue_green;
    let services = std::iter::once(bg.active_service.as_str()).chain(bg.preview_service.as_deref());
    let api: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(ctx.client.clone(), &ns);
    for service in services.filter(|s| !s.is_empty()) {
        let svc = match api.get_opt(service).await {
            Ok(Some(svc)) => svc,
            Ok(None) => continue,
            Err(e) => return Err(Error::kube(format!("get service {ns}/{service}"), e)),
        };
        // Leave a Service alone that another Rollout took over.
        let owner = svc.annotations().get(MANAGED_BY_ANNOTATION);
        if owner.is_some_and(|o| *o != rollout.name_any()) {
            continue;
        }
        let patch = json!({
            "metadata": { "annotations": { MANAGED_BY_ANNOTATION: null, crate::SELECTOR_ANNOTATION: null } },
            "spec": { "selector": { POD_TEMPLATE_HASH_LABEL: null } },
        });
        match api
            .patch(service, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::info!(service = %format!("{ns}/{service}"), "selector restored"),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(Error::kube(format!("restore service {ns}/{service}"), e)),
        }
    }
    ctx.metrics.forget(&ns, &rollout.name_any());
    ctx.expectations
        .forget(&format!("{ns}/{}", rollout.name_any()));
    Ok(Action::await_change())
}
