//! Writes a run's status: whole, with server-side apply on the `status` subresource under one
//! field manager, so fields the machine dropped (a message, a measurement past retention) go
//! away too. The runner reports synchronously; a writer task sends the newest status, retries
//! a failed write, and abandons the run when it is gone (404).

use std::time::Duration;

use cutover_core::api::{AnalysisPhase, AnalysisRun, AnalysisRunStatus};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::FIELD_MANAGER;
use crate::error::{Error, is_not_found};

/// Wait before writing again after a failed write.
const RETRY: Duration = Duration::from_secs(1);

async fn apply(
    api: &Api<AnalysisRun>,
    name: &str,
    status: &AnalysisRunStatus,
) -> Result<(), Error> {
    let body = json!({
        "apiVersion": AnalysisRun::api_version(&()),
        "kind": AnalysisRun::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
    .map_err(|e| Error::kube(format!("apply status of analysisrun {name}"), e))
}

/// Ends a run that cannot start in Error, with `message` saying why.
pub(super) async fn write_error(
    api: &Api<AnalysisRun>,
    name: &str,
    message: String,
) -> Result<(), Error> {
    let status = AnalysisRunStatus {
        phase: Some(AnalysisPhase::Error),
        message: Some(message),
        started_at: Some(Time(Timestamp::now())),
        ..AnalysisRunStatus::default()
    };
    match apply(api, name, &status).await {
        Err(Error::Kube { source, .. }) if is_not_found(&source) => Ok(()),
        other => other,
    }
}

/// A reporter for the runner and the task that writes what it reports. The task ends once the
/// reporter is dropped and the last status is stored, or when `abandon` is cancelled; it
/// cancels `abandon` itself when the run no longer exists.
pub(super) fn writer(
    api: Api<AnalysisRun>,
    name: String,
    abandon: CancellationToken,
) -> (impl Fn(&AnalysisRunStatus) + Send, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None::<AnalysisRunStatus>);
    let report = move |s: &AnalysisRunStatus| {
        tx.send_replace(Some(s.clone()));
    };
    (report, tokio::spawn(write_loop(api, name, rx, abandon)))
}

async fn write_loop(
    api: Api<AnalysisRun>,
    name: String,
    mut rx: watch::Receiver<Option<AnalysisRunStatus>>,
    abandon: CancellationToken,
) {
    let mut pending: Option<AnalysisRunStatus> = None;
    loop {
        // A newer status replaces one that failed to be written.
        if pending.is_none() || rx.has_changed().unwrap_or(false) {
            tokio::select! {
                () = abandon.cancelled() => return,
                changed = rx.changed(), if pending.is_none() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = std::future::ready(()), if pending.is_some() => {}
            }
            pending = rx.borrow_and_update().clone();
        }
        let Some(status) = &pending else { continue };
        match apply(&api, &name, status).await {
            Ok(()) => pending = None,
            Err(Error::Kube { source, .. }) if is_not_found(&source) => {
                tracing::info!(analysisrun = %name, "run deleted: measuring stops");
                abandon.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(analysisrun = %name, error = %e, "cannot write analysis status; retrying");
                tokio::select! {
                    () = abandon.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
        }
    }
}
