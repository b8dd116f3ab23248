//! `provider.job`: a Kubernetes Job is the measurement, with Argo Rollouts' semantics — the
//! Job's `Complete` condition makes it Successful, `Failed` makes it Failed, and the metric's
//! conditions are not evaluated.
//!
//! The Job is created from the metric's `metadata` and `spec`, named `<run>-<metric>-<n>`
//! (`n` counts the metric's measurements, so a restarted controller numbers on from the
//! stored status and finds a Job it had already created instead of starting another), owned
//! by the AnalysisRun (deleting the run deletes its Jobs) and labelled with the run and the
//! metric. A measurement that is dropped before its Job finished — the run was terminated or
//! ended early — deletes the Job (propagation Background); one dropped because the controller
//! stops keeps it for the next leader.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cutover_analysis::{BoxFuture, Outcome, Provider, RunControl};
use cutover_core::analysis::{Measured, Verdict};
use cutover_core::api::{AnalysisRun, AnalysisRunStatus, Metric};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::error::is_conflict;

/// Job label: the AnalysisRun the Job measures for.
pub const JOB_RUN_LABEL: &str = "cutover.dev/analysisrun";
/// Job label: the metric the Job measures.
pub const JOB_METRIC_LABEL: &str = "cutover.dev/metric";

/// Longest Kubernetes name that is also a valid label value (Job names are copied into the
/// `job-name` label of their pods).
const MAX_NAME: usize = 63;

/// Wait before watching a Job again after the watch failed.
const WATCH_RETRY: Duration = Duration::from_secs(1);

/// Runs the Jobs of one AnalysisRun.
pub struct JobProvider {
    jobs: Api<Job>,
    run: String,
    owner: OwnerReference,
    /// Measurements taken so far, by metric: the next Job's number is one more.
    taken: Mutex<HashMap<String, u32>>,
    abandon: CancellationToken,
}

impl JobProvider {
    /// The provider of `run`, numbering on from `status`; None when the run has no uid yet.
    pub fn for_run(
        client: Client,
        run: &AnalysisRun,
        status: &AnalysisRunStatus,
        control: &RunControl,
    ) -> Option<Self> {
        let owner = run.controller_owner_ref(&())?;
        let taken = status
            .metric_results
            .iter()
            .map(|r| {
                let n = r.count.saturating_add(r.error).max(0);
                (r.name.clone(), u32::try_from(n).unwrap_or(0))
            })
            .collect();
        Some(Self {
            jobs: Api::namespaced(client, &run.namespace()?),
            run: run.name_any(),
            owner,
            taken: Mutex::new(taken),
            abandon: control.abandon.clone(),
        })
    }

    fn next_number(&self, metric: &str) -> u32 {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        let n = taken.entry(metric.to_string()).or_insert(0);
        *n += 1;
        *n
    }

    async fn measure_job(&self, metric: &Metric, name: &str) -> Measured {
        let Some(job_metric) = &metric.provider.job else {
            return Measured::Error("not a job metric".into());
        };
        let meta = job_metric.metadata.clone().unwrap_or_default();
        let mut labels = meta.labels;
        labels.insert(JOB_RUN_LABEL.into(), dns_label(&self.run, ""));
        labels.insert(JOB_METRIC_LABEL.into(), dns_label(&metric.name, ""));
        let job = Job {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(labels),
                annotations: (!meta.annotations.is_empty()).then_some(meta.annotations),
                owner_references: Some(vec![self.owner.clone()]),
                ..ObjectMeta::default()
            },
            spec: Some(job_metric.spec.clone()),
            status: None,
        };
        match self.jobs.create(&PostParams::default(), &job).await {
            Ok(_) => {}
            // Created before a controller restart: watch that one.
            Err(e) if is_conflict(&e) => {}
            Err(e) => return Measured::Error(format!("cannot create job {name}: {e}")),
        }
        let mut cleanup = DeleteUnfinished {
            jobs: self.jobs.clone(),
            name: name.to_string(),
            abandon: self.abandon.clone(),
            armed: true,
        };
        let measured = loop {
            match await_condition(self.jobs.clone(), name, finished).await {
                Ok(Some(job)) => break verdict(&job),
                Ok(None) => {
                    break Measured::Error(format!("job {name} was deleted before it finished"));
                }
                Err(e) => {
                    tracing::debug!(job = name, error = %e, "watching job; retrying");
                    tokio::time::sleep(WATCH_RETRY).await;
                }
            }
        };
        cleanup.armed = false;
        measured
    }
}

impl Provider for JobProvider {
    fn measure<'a>(&'a self, metric: &'a Metric) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let n = self.next_number(&metric.name);
            let name = job_name(&self.run, &metric.name, n);
            let measured = self.measure_job(metric, &name).await;
            Outcome {
                measured,
                metadata: BTreeMap::from([("job-name".to_string(), name)]),
            }
        })
    }
}

/// Deletes a Job whose measurement was dropped before it finished, unless the run was
/// abandoned (the controller stops; the next one adopts the Job).
struct DeleteUnfinished {
    jobs: Api<Job>,
    name: String,
    abandon: CancellationToken,
    armed: bool,
}

impl Drop for DeleteUnfinished {
    fn drop(&mut self) {
        if !self.armed || self.abandon.is_cancelled() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (jobs, name) = (self.jobs.clone(), std::mem::take(&mut self.name));
        runtime.spawn(async move {
            if let Err(e) = jobs.delete(&name, &DeleteParams::background()).await {
                tracing::debug!(job = %name, error = %e, "deleting an unfinished job");
            }
        });
    }
}

fn condition<'a>(
    job: &'a Job,
    type_: &str,
) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

fn finished(job: Option<&Job>) -> bool {
    job.is_some_and(|j| condition(j, "Complete").is_some() || condition(j, "Failed").is_some())
}

fn verdict(job: &Job) -> Measured {
    if condition(job, "Complete").is_some() {
        return Measured::Verdict(Verdict::Successful, None);
    }
    let why = condition(job, "Failed")
        .map(|c| {
            let reason = c.reason.as_deref().unwrap_or("Failed");
            match c.message.as_deref() {
                Some(m) if !m.is_empty() => format!("{reason}: {m}"),
                _ => reason.to_string(),
            }
        })
        .unwrap_or_default();
    Measured::Verdict(
        Verdict::Failed,
        Some(format!("job {} failed ({why})", job.name_any())),
    )
}

/// `<run>-<metric>-<n>` as a DNS label: lower case, other characters as `-`, at most 63
/// characters — a longer name is cut and keeps a hash of the whole, so it stays unique.
pub fn job_name(run: &str, metric: &str, n: u32) -> String {
    dns_label(&format!("{run}-{metric}"), &format!("-{n}"))
}

/// `text` made a DNS label ending in `suffix`.
fn dns_label(text: &str, suffix: &str) -> String {
    let mut base: String = text
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    if base.len() + suffix.len() > MAX_NAME {
        let hash = format!("-{:08x}", fnv1a(text));
        base.truncate(MAX_NAME.saturating_sub(suffix.len() + hash.len()));
        base = format!("{}{hash}", base.trim_end_matches('-'));
    }
    let name = format!("{base}{suffix}");
    let name = name.trim_matches('-');
    if name.is_empty() {
        "x".into()
    } else {
        name.to_string()
    }
}

/// FNV-1a: a hash that is the same in every build, so a name is found again after an upgrade.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_dns_labels() {
        assert_eq!(
            job_name("app-abc-2-pre", "smoke", 3),
            "app-abc-2-pre-smoke-3"
        );
        assert_eq!(job_name("App_1", "Smoke.Test", 1), "app-1-smoke-test-1");
        let long = "r".repeat(80);
        let a = job_name(&long, "m", 12);
        let b = job_name(&long, "n", 12);
        assert!(a.len() <= MAX_NAME && a.ends_with("-12"), "{a}");
        assert_ne!(a, b);
        assert_eq!(a, job_name(&long, "m", 12));
    }
}
