//! How many replicas a Deployment adopted through `spec.workloadRef` keeps, given how far the
//! Rollout that took it over has come. Pure, so each `scaleDown` mode is a table test; the
//! Kubernetes adapter writes the number.

use crate::api::{RolloutPhase, RolloutStatus, WorkloadScaleDown};

/// What the scale of the adopted Deployment depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadProgress {
    /// `workloadRef.scaleDown`.
    pub mode: WorkloadScaleDown,
    /// The Deployment's replicas before the Rollout took it over.
    pub original: i32,
    /// The Rollout has served from a fully available revision at least once (it has a stable
    /// revision, or it is Healthy now): the migration is done and the Deployment's pods are
    /// no longer needed, whatever later updates do.
    pub migrated: bool,
    /// The Rollout is Degraded (aborted, invalid, past its deadline).
    pub degraded: bool,
    /// Available pods of the Rollout's current revision (during the first rollout these are
    /// not yet behind the active Service, so the status's count of active pods is still 0).
    pub available: i32,
}

impl WorkloadProgress {
    /// The progress a Rollout's planned status shows, for a Deployment that had `original`
    /// replicas, with `current_available` pods of the current revision available.
    pub fn from_status(
        mode: WorkloadScaleDown,
        original: i32,
        status: &RolloutStatus,
        current_available: i32,
    ) -> Self {
        Self {
            mode,
            original,
            migrated: status.stable_rs.is_some() || status.phase == Some(RolloutPhase::Healthy),
            degraded: status.phase == Some(RolloutPhase::Degraded),
            available: current_available,
        }
    }
}

/// The replicas the adopted Deployment should run now.
///
/// - `never`: its own replicas, always.
/// - `onsuccess`: its own replicas until the Rollout is Healthy, then zero.
/// - `progressively`: one pod fewer for each available pod of the Rollout; back to its own
///   replicas if the Rollout fails before it ever was Healthy; zero once it was.
pub fn deployment_replicas(progress: WorkloadProgress) -> i32 {
    let original = progress.original.max(0);
    match progress.mode {
        WorkloadScaleDown::Never => original,
        _ if progress.migrated => 0,
        WorkloadScaleDown::OnSuccess => original,
        WorkloadScaleDown::Progressively if progress.degraded => original,
        WorkloadScaleDown::Progressively => {
            original.saturating_sub(progress.available.max(0)).max(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(mode: WorkloadScaleDown, migrated: bool, degraded: bool, available: i32) -> i32 {
        deployment_replicas(WorkloadProgress {
            mode,
            original: 3,
            migrated,
            degraded,
            available,
        })
    }

    #[test]
    fn never_keeps_the_deployments_replicas_in_every_state() {
        for (migrated, degraded, available) in
            [(false, false, 0), (true, false, 3), (false, true, 1)]
        {
            assert_eq!(
                progress(WorkloadScaleDown::Never, migrated, degraded, available),
                3
            );
        }
    }

    #[test]
    fn onsuccess_scales_to_zero_only_once_the_rollout_was_healthy() {
        assert_eq!(progress(WorkloadScaleDown::OnSuccess, false, false, 0), 3);
        assert_eq!(progress(WorkloadScaleDown::OnSuccess, false, false, 2), 3);
        assert_eq!(progress(WorkloadScaleDown::OnSuccess, false, true, 2), 3);
        assert_eq!(progress(WorkloadScaleDown::OnSuccess, true, false, 3), 0);
        // A later update that fails does not bring the Deployment back: the migration is done.
        assert_eq!(progress(WorkloadScaleDown::OnSuccess, true, true, 3), 0);
    }

    #[test]
    fn progressively_follows_the_rollouts_available_pods() {
        let steps: Vec<i32> = (0..=4)
            .map(|available| progress(WorkloadScaleDown::Progressively, false, false, available))
            .collect();
        assert_eq!(steps, vec![3, 2, 1, 0, 0]);
        assert_eq!(
            progress(WorkloadScaleDown::Progressively, true, false, 3),
            0
        );
    }

    #[test]
    fn progressively_scales_back_up_when_the_first_rollout_fails() {
        assert_eq!(
            progress(WorkloadScaleDown::Progressively, false, true, 2),
            3
        );
        assert_eq!(progress(WorkloadScaleDown::Progressively, true, true, 2), 0);
    }

    #[test]
    fn the_planned_status_gives_the_progress() {
        let mut status = RolloutStatus {
            phase: Some(RolloutPhase::Progressing),
            ..RolloutStatus::default()
        };
        let p = WorkloadProgress::from_status(WorkloadScaleDown::Progressively, 3, &status, 1);
        assert!(!p.migrated && !p.degraded);
        assert_eq!(deployment_replicas(p), 2);
        status.phase = Some(RolloutPhase::Healthy);
        let p = WorkloadProgress::from_status(WorkloadScaleDown::OnSuccess, 3, &status, 3);
        assert_eq!(deployment_replicas(p), 0);
    }
}
