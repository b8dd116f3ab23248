//! The single-host controller loop: observe (state store, supervised processes, router) →
//! `plan()` → execute → persist, for every rollout, whenever something changes or a timer is
//! due.

mod analysis;
mod execute;
mod migrations;
mod observe;
mod outbox;
mod routes;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use cutover_core::api::SwitchStatus;
use cutover_core::plan::plan;
use jiff::Timestamp;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::dataplane::DataPlane;
use crate::store::{Store, StoreError};
use crate::supervisor::{ReplicaRecord, RevisionSpec, Supervisor};

/// The longest the loop sleeps without a reason: it refreshes what the router serves.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Settings of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Address the Services' listeners bind to.
    pub bind_address: IpAddr,
    /// Where the transitions of each pass are announced, when notifications are configured.
    pub notifier: Option<cutover_notify::Notifier>,
}

/// What one rollout's pass did, for the work done after its transaction committed.
struct PassOutcome {
    plan: cutover_core::plan::Plan,
    /// The switch as it stood before the pass.
    before: Option<SwitchStatus>,
    /// The active Service's name.
    active: String,
    /// Notifications that found the outbox full, counted as dropped once the pass commits.
    dropped: Vec<cutover_notify::Job>,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A Service's listener could not be bound.
    #[error(
        "service {service}: cannot listen on {addr}: {reason} (is another process using the port?)"
    )]
    Bind {
        /// Service name.
        service: String,
        /// Address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
}

/// The engine: one per daemon.
pub struct Engine {
    pub(crate) store: Arc<Store>,
    pub(crate) supervisor: Supervisor,
    pub(crate) router: DataPlane,
    pub(crate) config: EngineConfig,
    /// The route tables sent to the data plane.
    pub(crate) routes: routes::RouteMemory,
    pub(crate) wake: Arc<Notify>,
    /// Wakes the outbox feeder after a pass stored notifications.
    outbox_wake: Arc<Notify>,
    /// AnalysisRun runners of this daemon.
    pub(crate) runners: analysis::Runners,
    /// Migration workers, one per rollout with `spec.migrations`.
    pub(crate) migrations: migrations::MigrationWorkers,
}

impl Engine {
    /// An engine over a store, a supervisor and a data plane.
    pub fn new(
        store: Arc<Store>,
        supervisor: Supervisor,
        router: DataPlane,
        config: EngineConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            supervisor,
            router,
            config,
            routes: routes::RouteMemory::default(),
            wake: Arc::new(Notify::new()),
            outbox_wake: Arc::new(Notify::new()),
            runners: analysis::Runners::default(),
            migrations: migrations::MigrationWorkers::default(),
        })
    }

    /// The state store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The data plane.
    pub fn router(&self) -> &DataPlane {
        &self.router
    }

    /// The supervisor.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// Terminates a running AnalysisRun (`cutover terminate analysisrun`): its runner stops
    /// and the run ends Successful unless a metric already failed.
    pub fn terminate_run(&self, rollout: &str, run: &str) -> Result<bool, StoreError> {
        let found = self.store.write(|tx| -> Result<bool, StoreError> {
            let Some(mut row) = tx.runs(rollout)?.into_iter().find(|r| r.name == run) else {
                return Ok(false);
            };
            row.terminated = true;
            tx.put_run(rollout, &row)?;
            Ok(true)
        })?;
        if found {
            self.terminate_analysis(run, "terminated on request");
            self.wake();
        }
        Ok(found)
    }

    /// The notification counters, when notifications are configured.
    pub fn notification_counters(&self) -> Option<std::sync::Arc<cutover_notify::Counters>> {
        self.config.notifier.as_ref().map(|n| n.counters().clone())
    }

    /// Asks the loop to run a pass now (after an apply or a user operation).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Brings the world back after a (re)start: the processes that survived re-adopted and the
    /// missing ones started, then a listener for every stored Service with its table restored
    /// from the stored selections and replicas installed before it accepts — so the active
    /// revision does not move and no request meets an empty table.
    pub async fn start(&self) -> Result<(), EngineError> {
        let rollouts = self.store.read(|tx| tx.rollouts())?;
        for rollout in rollouts {
            let name = rollout.metadata.name.clone().unwrap_or_default();
            let revisions = self.store.read(|tx| tx.revisions(&name))?;
            for row in revisions {
                let spec = RevisionSpec {
                    rollout: name.clone(),
                    hash: row.hash.clone(),
                    revision: row.revision,
                    template: row.template.clone(),
                };
                let records: Vec<ReplicaRecord> = self
                    .store
                    .read(|tx| tx.replica_records(&name, &row.hash))?
                    .and_then(|json| serde_json::from_str(&json).ok())
                    .unwrap_or_default();
                if !records.is_empty() {
                    self.supervisor.adopt(&spec, &records);
                }
                if row.desired > 0
                    && let Err(e) = self
                        .supervisor
                        .scale(&spec, u32::try_from(row.desired).unwrap_or(0))
                {
                    tracing::warn!(rollout = %name, hash = %row.hash, error = %e, "cannot start replicas");
                }
            }
        }
        self.restore_routes().await?;
        self.bind_services().await?;
        self.store.read(|tx| self.install_routes(tx))?;
        Ok(())
    }

    /// Runs passes until `shutdown` is cancelled.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut changes = self.supervisor.changes();
        if let Some(notifier) = &self.config.notifier {
            tokio::spawn(outbox::feed(
                self.store.clone(),
                notifier.clone(),
                self.outbox_wake.clone(),
                shutdown.clone(),
            ));
        }
        if let Err(e) = self.resume_runs() {
            tracing::error!(error = %e, "cannot resume analysis runs");
        }
        loop {
            let result = self.pass();
            self.start_pending_runs();
            let next = match result {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "controller pass failed; retrying");
                    Some(IDLE_POLL)
                }
            };
            let wait = next.unwrap_or(IDLE_POLL).min(IDLE_POLL);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                _ = changes.changed() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One pass over every rollout. Returns when the next timer is due.
    pub fn pass(&self) -> Result<Option<Duration>, StoreError> {
        let now = Timestamp::now();
        let names: Vec<String> = self
            .store
            .read(|tx| tx.rollouts())?
            .into_iter()
            .filter_map(|r| r.metadata.name)
            .collect();
        let mut next: Option<Duration> = None;
        for name in names {
            // One rollout's bug must not stop the others (nor the loop): a panic while planning
            // or executing it rolls its transaction back and marks it Degraded.
            let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.pass_one(&name, now)
            }));
            let outcome = match attempt {
                Ok(outcome) => outcome?,
                Err(panic) => {
                    self.degrade_after_panic(&name, &panic_message(panic.as_ref()), now)?;
                    next = Some(IDLE_POLL);
                    continue;
                }
            };
            let Some(PassOutcome {
                plan,
                before,
                active,
                dropped,
            }) = outcome
            else {
                continue;
            };
            // The pass's notifications committed with it (a rolled-back pass made no
            // transition and stored none); the feeder hands them to delivery, never waiting.
            if let Some(notifier) = &self.config.notifier
                && !plan.events.is_empty()
            {
                for job in &dropped {
                    notifier.count_dropped(job);
                }
                self.outbox_wake.notify_one();
            }
            // A switch confirmed in this pass: export its latency.
            if let Some(switch) = &plan.status.blue_green.switch
                && let Some(seconds) = switch.seconds
                && before
                    .is_none_or(|b| b.verified_at.is_none() || b.started_at != switch.started_at)
            {
                self.router.record_switch(&active, seconds);
            }
            if let Some(after) = plan.requeue_after {
                next = Some(next.map_or(after, |n| n.min(after)));
            }
        }
        self.store.read(|tx| self.install_routes(tx))?;
        Ok(next)
    }

    /// Observe → plan → execute → persist for one rollout, in one transaction.
    fn pass_one(&self, name: &str, now: Timestamp) -> Result<Option<PassOutcome>, StoreError> {
        self.store.write(|tx| -> Result<_, StoreError> {
            let Some(rollout) = tx.rollout(name)? else {
                return Ok(None);
            };
            fault::panic_if_asked(name);
            let observed = self.observe(tx, &rollout, now)?;
            let plan = plan(&observed, now);
            self.execute(tx, &rollout, &plan, now)?;
            self.save_replica_records(tx, name)?;
            let before = rollout
                .status
                .as_ref()
                .and_then(|s| s.blue_green.switch.clone());
            let mut dropped = Vec::new();
            if let Some(notifier) = &self.config.notifier
                && !plan.events.is_empty()
            {
                let facts = cutover_notify::RolloutFacts::of(&rollout, &plan.status);
                let jobs = notifier.jobs(&facts, &plan.events, now);
                dropped = outbox::store_jobs(tx, notifier.queue_size(), jobs)?;
            }
            Ok(Some(PassOutcome {
                active: rollout.spec.strategy.blue_green.active_service.clone(),
                plan,
                before,
                dropped,
            }))
        })
    }

    /// Records a panic in a rollout's pass: phase Degraded with what happened, and one
    /// Warning event per distinct failure. The rollout's world is left as it was.
    fn degrade_after_panic(
        &self,
        name: &str,
        what: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        tracing::error!(rollout = %name, "internal error while planning: {what}");
        let message = format!(
            "InternalError: cutover failed while planning this rollout ({what}); nothing was changed and other rollouts are not affected; please report it"
        );
        self.store.write(|tx| -> Result<(), StoreError> {
            let Some(rollout) = tx.rollout(name)? else {
                return Ok(());
            };
            let mut status = rollout.status.clone().unwrap_or_default();
            if status.message.as_deref() == Some(message.as_str()) {
                return Ok(());
            }
            status.phase = Some(cutover_core::api::RolloutPhase::Degraded);
            status.message = Some(message.clone());
            tx.put_status(name, &status)?;
            tx.add_events(
                name,
                &[crate::store::EventRow {
                    at: now,
                    severity: "Warning".into(),
                    reason: "InternalError".into(),
                    message,
                }],
            )
        })
    }

    fn save_replica_records(
        &self,
        tx: &crate::store::Tx<'_>,
        rollout: &str,
    ) -> Result<(), StoreError> {
        for (hash, replicas) in self.supervisor.revisions(rollout) {
            let records: Vec<ReplicaRecord> = replicas.iter().filter_map(|r| r.record()).collect();
            let json = serde_json::to_string(&records).unwrap_or_default();
            tx.set_replica_records(rollout, &hash, &json)?;
        }
        Ok(())
    }
}

/// The text of a panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Fault injection for the reliability tests, in debug builds only: a pass over the rollout
/// named by `CUTOVER_FAULT_PANIC_IN_PLAN` panics, as a bug in the planner would.
mod fault {
    #[cfg(debug_assertions)]
    pub(super) fn panic_if_asked(rollout: &str) {
        if std::env::var("CUTOVER_FAULT_PANIC_IN_PLAN").as_deref() == Ok(rollout) {
            panic!("injected fault for rollout {rollout}");
        }
    }

    #[cfg(not(debug_assertions))]
    pub(super) fn panic_if_asked(_rollout: &str) {}
}
