//! Runs one AnalysisRun: the pure [`RunMachine`] decides what to measure and when; this loop
//! sleeps until then (tokio time), takes the measurements concurrently through a
//! [`Provider`], feeds them back, and reports every new status. It stops when the run is
//! finished or, on terminate, after the run ends as the machine decides (Successful unless a
//! metric already failed).

use std::sync::Arc;
use std::time::Duration;

use cutover_core::analysis::{Arrival, RunMachine};
use cutover_core::api::{AnalysisRunStatus, Metric};
use jiff::Timestamp;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Provider;

/// How a run is stopped from outside.
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    /// Cancelled: terminate the run (it reports its final status, then returns).
    pub terminate: CancellationToken,
    /// Cancelled: stop at once without a final status (daemon shutdown; the stored status
    /// stays Running and the run resumes on the next start).
    pub abandon: CancellationToken,
    /// Why the run is terminated, for its message; set before `terminate` is cancelled.
    pub reason: Arc<std::sync::OnceLock<String>>,
}

impl RunControl {
    /// Terminates the run, saying why.
    pub fn terminate_because(&self, reason: &str) {
        let _ = self.reason.set(reason.to_string());
        self.terminate.cancel();
    }
}

/// The longest the loop sleeps without a reason.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Runs the machine to its end. `metrics` are the run's metrics, by name; `report` receives
/// every status change. Returns the final status (None when abandoned).
pub async fn run(
    mut machine: RunMachine,
    metrics: Vec<Metric>,
    provider: Arc<dyn Provider>,
    control: RunControl,
    mut report: impl FnMut(&AnalysisRunStatus) + Send,
) -> Option<AnalysisRunStatus> {
    let metrics: Arc<Vec<Metric>> = Arc::new(metrics);
    let (tx, mut rx) = mpsc::unbounded_channel::<Arrival>();
    let mut tasks = JoinSet::new();
    let mut arrivals = Vec::new();
    let mut last: Option<AnalysisRunStatus> = None;
    let mut terminated = false;
    loop {
        if control.terminate.is_cancelled() && !terminated {
            terminated = true;
            // In-flight measurements are dropped: the run ends now.
            tasks.abort_all();
            arrivals.clear();
            machine.terminate_with(control.reason.get().cloned());
        }
        let step = machine.step(Timestamp::now(), std::mem::take(&mut arrivals));
        if last.as_ref() != Some(machine.status()) {
            report(machine.status());
            last = Some(machine.status().clone());
        }
        if step.done {
            tasks.abort_all();
            return last;
        }
        for name in step.due {
            let Some(metric) = metrics.iter().find(|m| m.name == name).cloned() else {
                continue;
            };
            let provider = Arc::clone(&provider);
            let tx = tx.clone();
            tasks.spawn(async move {
                let outcome = provider.measure(&metric).await;
                let _ = tx.send(Arrival {
                    metric: metric.name.clone(),
                    finished_at: Timestamp::now(),
                    outcome: outcome.measured,
                    metadata: outcome.metadata,
                });
            });
        }
        let wait = step.next_at.map_or(MAX_SLEEP, |at| {
            let ms = at.as_millisecond() - Timestamp::now().as_millisecond();
            Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0))
        });
        tokio::select! {
            () = control.abandon.cancelled() => {
                tasks.abort_all();
                return None;
            }
            () = control.terminate.cancelled(), if !terminated => {}
            Some(a) = rx.recv() => {
                arrivals.push(a);
                while let Ok(a) = rx.try_recv() {
                    arrivals.push(a);
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
}
