//! Builds the planner's `Observed` snapshot of one rollout from the state store, the process
//! supervisor and the router.

use std::time::Duration;

use cutover_core::api::{AnalysisPhase, Rollout};
use cutover_core::plan::{
    AnalysisKind, Observed, ObservedAnalysisRun, ObservedRevision, ObservedService, RevisionRole,
};
use jiff::Timestamp;

use super::Engine;
use crate::store::{RevisionRow, RunRow, StoreError, Tx};
use crate::supervisor::{ReplicaPhase, ReplicaStatus};

impl Engine {
    /// The snapshot `plan()` decides on. Facts only: nothing computed by an earlier pass.
    pub(crate) fn observe(
        &self,
        tx: &Tx<'_>,
        rollout: &Rollout,
        now: Timestamp,
    ) -> Result<Observed, StoreError> {
        let name = rollout.metadata.name.clone().unwrap_or_default();
        let min_ready = Duration::from_secs(rollout.spec.min_ready_seconds().unsigned_abs().into());
        let revisions = tx
            .revisions(&name)?
            .iter()
            .map(|row| {
                let replicas = self.supervisor.observe(&name, &row.hash);
                observe_revision(row, &replicas, min_ready, now)
            })
            .collect();
        let bg = &rollout.spec.strategy.blue_green;
        let services = tx.services()?;
        let service = |service_name: &str| -> Result<Option<ObservedService>, StoreError> {
            let exists = services
                .iter()
                .any(|s| s.metadata.name.as_deref() == Some(service_name));
            if !exists {
                return Ok(None);
            }
            let serving = self
                .router
                .service(service_name)
                .map(|h| h.serving())
                .unwrap_or_default();
            let selector_hash = tx.selector(service_name)?;
            Ok(Some(ObservedService {
                name: service_name.to_string(),
                // Only the daemon writes selectors on one host: what is stored is what it set.
                recorded_selector: selector_hash.clone(),
                selector_hash,
                serving,
            }))
        };
        let active_service = service(&bg.active_service)?;
        let preview_service = match &bg.preview_service {
            Some(p) => service(p)?,
            None => None,
        };
        let analysis_runs = tx.runs(&name)?.iter().filter_map(observe_run).collect();
        let migrations = self.observe_migrations(tx, rollout)?;
        Ok(Observed {
            rollout: rollout.clone(),
            revisions,
            active_service,
            preview_service,
            analysis_runs,
            migrations,
        })
    }
}

fn observe_revision(
    row: &RevisionRow,
    replicas: &[ReplicaStatus],
    min_ready: Duration,
    now: Timestamp,
) -> ObservedRevision {
    let live: Vec<&ReplicaStatus> = replicas
        .iter()
        .filter(|r| !matches!(r.phase, ReplicaPhase::Stopped | ReplicaPhase::Terminating))
        .collect();
    let ready = live.iter().filter(|r| r.ready).count();
    let available = live
        .iter()
        .filter(|r| r.ready && is_available(r.ready_since, min_ready, now))
        .count();
    ObservedRevision {
        hash: row.hash.clone(),
        revision: row.revision,
        created_revision: row.created_revision,
        desired: row.desired,
        replicas: count(live.len()),
        ready: count(ready),
        available: count(available),
        scale_down_deadline: row.deadline,
        oldest_pod_started_at: live.iter().filter_map(|r| r.started_at).min(),
        role: row.role.as_deref().and_then(|r| match r {
            "Active" => Some(RevisionRole::Active),
            "Preview" => Some(RevisionRole::Preview),
            _ => None,
        }),
        role_metadata: row
            .role_metadata
            .as_deref()
            .and_then(|m| serde_json::from_str(m).ok()),
        unavailable_reason: crash_loop(&live),
    }
}

/// A replica whose process keeps ending: how it ended, how often, and the last line it
/// logged — what tells a crash loop from a slow start.
fn crash_loop(live: &[&ReplicaStatus]) -> Option<String> {
    let r = live
        .iter()
        .find(|r| matches!(r.phase, ReplicaPhase::CrashLoopBackOff { .. }))?;
    let mut text = format!(
        "replica {} is crash-looping: {} ({} restarts)",
        r.index,
        r.last_exit.as_deref().unwrap_or("ended"),
        r.restarts
    );
    if let Some(line) = last_log_line(&r.log_path) {
        text.push_str(&format!("; last log line: {line}"));
    }
    Some(text)
}

/// The last non-empty line of a log file, read from its end (logs can be large).
fn last_log_line(path: &std::path::Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 4096;
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL))).ok()?;
    let mut tail = Vec::new();
    file.take(TAIL).read_to_end(&mut tail).ok()?;
    let text = String::from_utf8_lossy(&tail);
    let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(line.chars().take(300).collect())
}

/// Ready for at least `minReadySeconds`.
fn is_available(ready_since: Option<Timestamp>, min_ready: Duration, now: Timestamp) -> bool {
    if min_ready.is_zero() {
        return true;
    }
    ready_since.is_some_and(|since| {
        let ms = now.as_millisecond() - since.as_millisecond();
        u128::try_from(ms).is_ok_and(|ms| ms >= min_ready.as_millis())
    })
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn observe_run(run: &RunRow) -> Option<ObservedAnalysisRun> {
    let kind = match run.kind.as_str() {
        "pre" => AnalysisKind::PrePromotion,
        "post" => AnalysisKind::PostPromotion,
        _ => return None,
    };
    let phase = match run.phase.as_str() {
        "Pending" => AnalysisPhase::Pending,
        "Running" => AnalysisPhase::Running,
        "Successful" => AnalysisPhase::Successful,
        "Failed" => AnalysisPhase::Failed,
        "Inconclusive" => AnalysisPhase::Inconclusive,
        _ => AnalysisPhase::Error,
    };
    Some(ObservedAnalysisRun {
        name: run.name.clone(),
        kind,
        hash: run.hash.clone(),
        phase,
        message: run.message.clone(),
        created_at: run.created_at,
        terminated: run.terminated,
        revision: run.revision,
    })
}
