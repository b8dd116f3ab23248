//! `status.duration`: when the current update started and ended, and how long it waited for a
//! human. An update starts when the pod template changes (see `begin_update_if_template_changed`);
//! it ends promoted (the revision becomes stable) or aborted; a retry reopens it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use super::Planner;
use crate::api::{PauseReason, UpdateCompletion};

pub(super) fn update(p: &mut Planner<'_>) {
    let now = p.now;
    let waiting_for_human = manual_pause(p);
    let promoted = p.status.stable_rs.as_deref() == Some(p.current_hash.as_str());
    let aborted = p.status.abort;
    let Some(d) = p.status.duration.as_mut() else {
        return;
    };
    if d.completion == Some(UpdateCompletion::Aborted) && !aborted && !promoted {
        // Retried: the update goes on.
        d.completion = None;
        d.finished_at = None;
        d.seconds = None;
    }
    let finished = d.completion.is_some();
    match (waiting_for_human && !finished, d.paused_at.as_ref()) {
        (true, None) => d.paused_at = Some(MicroTime(now)),
        (false, Some(at)) => {
            d.paused_seconds += seconds_between(at.0, now);
            d.paused_at = None;
        }
        _ => {}
    }
    if finished {
        return;
    }
    let completion = if promoted {
        UpdateCompletion::Promoted
    } else if aborted {
        UpdateCompletion::Aborted
    } else {
        return;
    };
    d.completion = Some(completion);
    d.finished_at = Some(MicroTime(now));
    d.seconds = Some(seconds_between(d.started_at.0, now));
}

/// The update waits for a human: `spec.paused`, a promotion pause without a timer, or an
/// inconclusive analysis.
fn manual_pause(p: &Planner<'_>) -> bool {
    if p.spec().is_paused() {
        return true;
    }
    let timed = p.strategy().auto_promotion_enabled();
    p.status.pause_conditions.iter().any(|c| match c.reason {
        PauseReason::BlueGreenPause => !timed,
        PauseReason::InconclusiveAnalysisRun => true,
    })
}

fn seconds_between(from: jiff::Timestamp, to: jiff::Timestamp) -> f64 {
    (to.as_millisecond() - from.as_millisecond()).max(0) as f64 / 1000.0
}
