//! Work every pass does after the flow: old revisions' scale-down, deadline clearing, history
//! pruning, ephemeral role metadata and restarts.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Action, Planner, RevisionRole, ScaleReason, ServiceRole};
use crate::api::{AnalysisPhase, DEFAULT_ANALYSIS_RUN_HISTORY_LIMIT};

pub(super) fn run(p: &mut Planner<'_>) {
    scale_down_old_revisions(p);
    clear_deadlines_of_kept_revisions(p);
    prune_revisions(p);
    prune_analysis_runs(p);
    role_metadata(p);
    restart(p);
}

impl Planner<'_> {
    /// The preview Service always selects the newest revision, unless the rollout is paused.
    pub(super) fn preview_service(&mut self) {
        let Some(preview) = self.observed.preview_service.as_ref() else {
            return;
        };
        if self.spec().is_paused() {
            return;
        }
        let current = self.current_hash.clone();
        self.status.blue_green.preview_selector = Some(current.clone());
        if preview.selector_hash.as_deref() != Some(current.as_str()) {
            self.actions.push(Action::SwitchService {
                role: ServiceRole::Preview,
                service: preview.name.clone(),
                from: preview.selector_hash.clone(),
                to: current,
            });
        }
    }

    /// Revisions something still points at: they are never scaled down here.
    fn protected(&self) -> BTreeSet<String> {
        let mut keep = BTreeSet::new();
        keep.insert(self.current_hash.clone());
        let candidates = [
            self.stable_hash().map(str::to_string),
            self.status.blue_green.active_selector.clone(),
            self.active().selector_hash.clone(),
            self.active_selector().map(str::to_string),
            self.observed
                .preview_service
                .as_ref()
                .and_then(|s| s.selector_hash.clone()),
        ];
        keep.extend(candidates.into_iter().flatten());
        keep.extend(self.active().serving.iter().cloned());
        keep
    }
}

/// Old revisions (not current, stable or selected) get `now + scaleDownDelaySeconds` and are
/// scaled to zero once it passes; beyond `scaleDownDelayRevisionLimit` they go at once. The
/// previous stable revision becomes "old" only when the new one is promoted, i.e. after the
/// verified switch and post-promotion analysis, so the delay starts at confirmation.
fn scale_down_old_revisions(p: &mut Planner<'_>) {
    let protected = p.protected();
    let delay = p.strategy().scale_down_delay_seconds();
    let limit = p.strategy().scale_down_delay_revision_limit;
    let mut old: Vec<_> = p
        .revisions
        .values()
        .filter(|r| !protected.contains(&r.hash) && r.desired > 0)
        .cloned()
        .collect();
    old.sort_by_key(|r| std::cmp::Reverse(r.revision));
    for (i, rev) in old.into_iter().enumerate() {
        if limit.is_some_and(|l| i as i64 >= i64::from(l.max(0))) {
            p.set_target(&rev.hash, 0, ScaleReason::RevisionLimitExceeded);
            continue;
        }
        if delay == 0 {
            p.set_target(&rev.hash, 0, ScaleReason::ScaleDownDeadlinePassed);
        } else {
            p.scale_down_after(&rev, delay, ScaleReason::ScaleDownDeadlinePassed);
        }
    }
}

/// Current and stable may carry a deadline from an earlier life (an undo to a warm revision):
/// it no longer applies. An aborted revision keeps the deadline the abort gave it.
fn clear_deadlines_of_kept_revisions(p: &mut Planner<'_>) {
    let mut keep: Vec<String> = p.stable_hash().map(str::to_string).into_iter().collect();
    if !p.status.abort {
        keep.push(p.current_hash.clone());
    }
    for hash in keep {
        let has_deadline = p
            .revisions
            .get(&hash)
            .is_some_and(|r| r.scale_down_deadline.is_some());
        let already = p
            .actions
            .iter()
            .any(|a| matches!(a, Action::SetScaleDownDeadline { hash: h, .. } if *h == hash));
        if has_deadline && !already {
            p.actions.push(Action::SetScaleDownDeadline {
                hash,
                deadline: None,
            });
        }
    }
}

/// Scaled-down revisions beyond `revisionHistoryLimit` are deleted, oldest first.
fn prune_revisions(p: &mut Planner<'_>) {
    let protected = p.protected();
    let limit = usize::try_from(p.spec().revision_history_limit()).unwrap_or(0);
    let mut idle: Vec<_> = p
        .revisions
        .values()
        .filter(|r| !protected.contains(&r.hash) && r.desired == 0 && r.replicas == 0)
        .filter(|r| !p.targets.contains_key(&r.hash))
        .map(|r| (r.revision, r.hash.clone()))
        .collect();
    idle.sort_by_key(|(rev, _)| std::cmp::Reverse(*rev));
    for (_, hash) in idle.into_iter().skip(limit) {
        p.actions.push(Action::DeleteRevision { hash });
    }
}

/// Finished AnalysisRuns beyond `spec.analysis` history limits are deleted, oldest first.
fn prune_analysis_runs(p: &mut Planner<'_>) {
    let history = p.spec().analysis.as_ref();
    let keep_ok = history
        .and_then(|h| h.successful_run_history_limit)
        .unwrap_or(DEFAULT_ANALYSIS_RUN_HISTORY_LIMIT);
    let keep_bad = history
        .and_then(|h| h.unsuccessful_run_history_limit)
        .unwrap_or(DEFAULT_ANALYSIS_RUN_HISTORY_LIMIT);
    let referenced: BTreeSet<&str> = [
        p.status
            .blue_green
            .pre_promotion_analysis_run_status
            .as_ref(),
        p.status
            .blue_green
            .post_promotion_analysis_run_status
            .as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|s| s.name.as_str())
    .collect();
    let mut finished: Vec<_> = p
        .observed
        .analysis_runs
        .iter()
        .filter(|r| r.phase.is_completed() && !referenced.contains(r.name.as_str()))
        .collect();
    finished.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    let (ok, bad): (Vec<_>, Vec<_>) = finished
        .into_iter()
        .partition(|r| r.phase == AnalysisPhase::Successful);
    let mut doomed = Vec::new();
    doomed.extend(ok.into_iter().skip(usize::try_from(keep_ok).unwrap_or(0)));
    doomed.extend(bad.into_iter().skip(usize::try_from(keep_bad).unwrap_or(0)));
    for run in doomed {
        p.actions.push(Action::DeleteAnalysisRun {
            name: run.name.clone(),
        });
    }
}

/// `activeMetadata` / `previewMetadata` follow the roles, as in Argo Rollouts: the revision
/// the active Service selects carries the active metadata, the current revision while it is
/// not active carries the preview metadata (with or without a preview Service), others
/// neither. A change of the metadata in the spec reaches running pods too: the plan compares
/// what it wants with what was last put on each revision.
fn role_metadata(p: &mut Planner<'_>) {
    let active = p.status.blue_green.active_selector.clone();
    let current = p.current_hash.clone();
    let hashes: Vec<String> = p.revisions.keys().cloned().collect();
    for hash in hashes {
        let role = if active.as_deref() == Some(hash.as_str()) {
            Some(RevisionRole::Active)
        } else if hash == current {
            Some(RevisionRole::Preview)
        } else {
            None
        };
        let metadata = role.and_then(|r| p.role_metadata(r)).cloned();
        // A role is recorded only with metadata to carry.
        let role = role.filter(|_| metadata.is_some());
        let rev = &p.revisions[&hash];
        if rev.role_metadata.is_none() && metadata.is_none() {
            continue;
        }
        if rev.role == role && rev.role_metadata == metadata {
            continue;
        }
        p.actions.push(Action::SetRevisionRole {
            hash,
            role,
            metadata,
            previous: rev.role_metadata.clone(),
        });
    }
}

/// `spec.restartAt`: pods started before it are restarted, one revision at a time (stable
/// first), at most `maxUnavailable` pods at once. Done when no pod predates it.
fn restart(p: &mut Planner<'_>) {
    let Some(at) = p.spec().restart_at.as_ref().map(|t| t.0) else {
        return;
    };
    if at > p.now {
        p.requeue_at(at);
        return;
    }
    if p.status.restarted_at.as_ref().map(|t| t.0) == Some(at) {
        return;
    }
    let stable = p.stable_hash().map(str::to_string);
    let mut order: Vec<_> = p.revisions.values().filter(|r| r.desired > 0).collect();
    order.sort_by_key(|r| {
        (
            stable.as_deref() != Some(r.hash.as_str()),
            std::cmp::Reverse(r.revision),
        )
    });
    let next = order
        .into_iter()
        .find(|r| r.oldest_pod_started_at.is_some_and(|t| t < at))
        .map(|r| (r.hash.clone(), r.desired));
    match next {
        Some((hash, desired)) => {
            let max_unavailable = max_unavailable(p.strategy().max_unavailable.as_ref(), desired);
            p.actions.push(Action::RestartPods {
                hash,
                before: at,
                max_unavailable,
            });
        }
        None => {
            p.status.restarted_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at))
        }
    }
}

/// `maxUnavailable` as a pod count: a number, or a percentage of the revision's pods rounded
/// down; at least one so a restart always advances. Unset: 25%.
fn max_unavailable(value: Option<&IntOrString>, pods: i32) -> i32 {
    let n = match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => percent_of(s, pods).unwrap_or(1),
        None => pods / 4,
    };
    n.max(1)
}

fn percent_of(text: &str, pods: i32) -> Option<i32> {
    let pct: i64 = text.trim().strip_suffix('%')?.trim().parse().ok()?;
    i32::try_from(i64::from(pods) * pct / 100).ok()
}
