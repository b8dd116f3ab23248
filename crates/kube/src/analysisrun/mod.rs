//! Measures AnalysisRuns on Kubernetes: a second controller, over AnalysisRun objects, next to
//! the Rollout controller (and like it, only while this instance leads).
//!
//! For each run that is not finished it starts exactly one measuring task per run uid: the
//! pure `cutover_core::analysis::RunMachine` driven by `cutover_analysis::run`, exactly as on
//! one host. The machine is built from the run's stored `status` when there is one, so a
//! restarted controller keeps the measurements already taken and its counts continue. Every
//! status the runner reports is written whole with server-side apply on the `status`
//! subresource under the field manager [`FIELD_MANAGER`]. `spec.terminate: true` cancels the
//! runner's terminate token; a deleted run abandons its task. Arguments are substituted here:
//! `value`, and `valueFrom.secretKeyRef` read from a Secret in the run's namespace (the creator
//! resolved `fieldRef` and `podTemplateHashValue` already); a missing argument or Secret ends
//! the run in Error, naming it, before any measurement.

mod job;
mod measurements;
mod prepare;
mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use cutover_analysis::{Providers, RunControl};
use cutover_core::api::AnalysisRun;
use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::error::Error;
pub use job::{JOB_METRIC_LABEL, JOB_RUN_LABEL, JobProvider, job_name};
pub use measurements::MeasurementMetrics;
use measurements::Timed;
use prepare::Prepared;

/// Field manager of the status writes of the measuring side.
pub const FIELD_MANAGER: &str = "cutover-analysis";

/// What the AnalysisRun reconciler shares: the client, the providers (their connection
/// pools serve every run), the measurement metrics and the measuring tasks, by run uid.
pub struct RunsContext {
    client: Client,
    providers: Providers,
    metrics: MeasurementMetrics,
    tasks: Mutex<HashMap<String, RunControl>>,
}

impl RunsContext {
    /// A context with no task running.
    pub fn new(client: Client, metrics: MeasurementMetrics) -> Self {
        Self {
            client,
            providers: Providers::default(),
            metrics,
            tasks: Mutex::default(),
        }
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunControl>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops a run's task without a final status (the run was deleted).
    fn abandon(&self, uid: &str) {
        if let Some(control) = self.tasks().remove(uid) {
            control.abandon.cancel();
        }
    }
}

impl Drop for RunsContext {
    /// The controller stopped (shutdown, lost leadership): its tasks stop without a final
    /// status, and the next leader resumes them from the stored one.
    fn drop(&mut self) {
        for control in self.tasks().values() {
            control.abandon.cancel();
        }
    }
}

/// Runs the AnalysisRun controller until `shutdown` completes.
pub async fn run(
    client: Client,
    api: Api<AnalysisRun>,
    metrics: MeasurementMetrics,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let ctx = Arc::new(RunsContext::new(client, metrics));
    // The Controller never reconciles an object that is gone, so deletions come from a watch
    // of their own.
    let deletions = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .for_each({
            let ctx = Arc::downgrade(&ctx);
            move |event| {
                if let (Ok(watcher::Event::Delete(run)), Some(ctx)) = (&event, ctx.upgrade())
                    && let Some(uid) = run.uid()
                {
                    ctx.abandon(&uid);
                }
                std::future::ready(())
            }
        });
    let controller = Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(analysisrun = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "analysisrun controller event"),
            }
        });
    tokio::select! {
        () = controller => {}
        () = deletions => {}
    }
}

/// Starts a task for a run that is not finished and has none, passes `spec.terminate` on.
pub async fn reconcile(run: Arc<AnalysisRun>, ctx: Arc<RunsContext>) -> Result<Action, Error> {
    let uid = run.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let ns = run
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    if run.metadata.deletion_timestamp.is_some() {
        ctx.abandon(&uid);
        return Ok(Action::await_change());
    }
    // A final phase is never left: no need to read the run again.
    if finished(&run) {
        return Ok(Action::await_change());
    }
    let terminate = run.spec.terminate == Some(true);
    if let Some(control) = ctx.tasks().get(&uid) {
        if terminate {
            control.terminate_because(&terminate_reason(&run));
        }
        return Ok(Action::await_change());
    }
    // Read the stored run, not the watch cache: a task that just ended wrote its final
    // status, and a cached copy from before it would start the run again.
    let api: Api<AnalysisRun> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(run) = api
        .get_opt(&run.name_any())
        .await
        .map_err(|e| Error::kube(format!("get analysisrun {ns}/{}", run.name_any()), e))?
    else {
        return Ok(Action::await_change());
    };
    if run.uid().as_deref() != Some(uid.as_str()) || finished(&run) {
        return Ok(Action::await_change());
    }
    match prepare::prepare(&ctx.client, &run).await? {
        Ok(prepared) => start(&ctx, &api, &run, uid, prepared),
        Err(message) => {
            tracing::info!(analysisrun = %run.name_any(), %message, "analysis cannot start");
            status::write_error(&api, &run.name_any(), message).await?;
        }
    }
    Ok(Action::await_change())
}

/// Why the run was terminated: cutover's reason, or a user's `terminate analysisrun`.
fn terminate_reason(run: &AnalysisRun) -> String {
    run.annotations()
        .get(crate::TERMINATE_REASON_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| "terminated on request".into())
}

fn finished(run: &AnalysisRun) -> bool {
    run.status
        .as_ref()
        .and_then(|s| s.phase)
        .is_some_and(|p| p.is_completed())
}

fn start(
    ctx: &Arc<RunsContext>,
    api: &Api<AnalysisRun>,
    run: &AnalysisRun,
    uid: String,
    prepared: Prepared,
) {
    let control = RunControl::default();
    if run.spec.terminate == Some(true) {
        control.terminate_because(&terminate_reason(run));
    }
    let name = run.name_any();
    {
        let mut tasks = ctx.tasks();
        if tasks.contains_key(&uid) {
            return;
        }
        tasks.insert(uid.clone(), control.clone());
    }
    tracing::info!(analysisrun = %name, resumed = prepared.resumed, "measuring analysis run");
    // Jobs are per run: named after it, owned by it, numbered on from its status.
    let job = JobProvider::for_run(ctx.client.clone(), run, prepared.machine.status(), &control);
    let providers = Providers {
        job: job.map(|j| Arc::new(j) as Arc<dyn cutover_analysis::Provider>),
        ..ctx.providers.clone()
    };
    let timed = Timed {
        inner: Arc::new(providers),
        metrics: ctx.metrics.clone(),
    };
    let (report, writer) = status::writer(api.clone(), name, control.abandon.clone());
    let weak: Weak<RunsContext> = Arc::downgrade(ctx);
    tokio::spawn(async move {
        cutover_analysis::run(
            prepared.machine,
            prepared.metrics,
            Arc::new(timed),
            control,
            move |s| report(s),
        )
        .await;
        // The final status is stored before the task leaves the map (see `reconcile`).
        let _ = writer.await;
        if let Some(ctx) = weak.upgrade() {
            ctx.tasks().remove(&uid);
        }
    });
}

/// Retries a failed reconcile after a second (the error is logged).
pub fn error_policy(run: Arc<AnalysisRun>, error: &Error, _ctx: Arc<RunsContext>) -> Action {
    tracing::warn!(analysisrun = %run.name_any(), %error, "analysisrun reconcile failed");
    Action::requeue(Duration::from_secs(1))
}
