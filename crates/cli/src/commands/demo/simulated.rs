//! `cutover demo --simulated`: a whole blue/green cycle through the decision core, in a
//! simulated world.
//!
//! It runs the seed scenario — a Rollout with active and preview Services, a reduced preview,
//! manual promotion and pre/post-promotion analysis — twice: once with a good version that is
//! promoted, once with a bad one whose post-promotion analysis fails and is rolled back by
//! itself. Every decision and action comes from `plan()`, the same core the single-host and
//! Kubernetes backends run; pods, Services and analysis results are simulated and the clock is
//! simulated too, so the demo takes no time and starts nothing.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use cutover_core::api::{AnalysisPhase, RolloutPhase};
use cutover_core::fixtures::RolloutBuilder;
use cutover_core::plan::{AnalysisKind, Decision, HoldReason, Plan, PostHold};
use cutover_core::sim::World;
use jiff::Timestamp;

const STEP: Duration = Duration::from_secs(1);

/// Runs the walkthrough and prints it. Returns 1 if the core did not reach the expected states
/// (which would be a bug worth reporting).
pub fn run() -> anyhow::Result<ExitCode> {
    let mut out = String::new();
    let ok = walkthrough(&mut out);
    print!("{out}");
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn walkthrough(out: &mut String) -> bool {
    let start: Timestamp = Timestamp::UNIX_EPOCH;
    let rollout = RolloutBuilder::new("my-app")
        .replicas(4)
        .preview_replica_count(2)
        .manual_promotion()
        .pre_analysis()
        .post_analysis()
        .scale_down_delay(30)
        .image("my-app:1.0.0")
        .build();
    let mut w = World::new(rollout, start);
    w.pod_ready_after = Duration::from_secs(5);
    w.serving_lag = Duration::from_millis(800);
    let mut demo = Demo { out, start };
    demo.say("cutover demo: the blue/green decision core in a simulated world (no processes are started, time is simulated)");
    demo.say("Rollout my-app: 4 replicas, preview at 2, manual promotion, pre/post-promotion analysis `success-rate`, scaleDownDelaySeconds 30");

    demo.chapter("1. initial deploy of my-app:1.0.0");
    demo.run_until(&mut w, |p| matches!(p.decision, Decision::Promoted(_)));
    demo.summary(&w);

    demo.chapter("2. set image my-app:1.1.0");
    w.set_image("my-app:1.1.0");
    demo.run_until(&mut w, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    demo.say("   (analysis measures the preview for a while …)");
    w.advance(Duration::from_secs(150));
    w.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Successful);
    demo.run_until(&mut w, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    demo.summary(&w);

    demo.chapter("3. promote my-app");
    w.promote(false);
    demo.run_until(&mut w, |p| {
        p.decision == Decision::PostPromotion(PostHold::AnalysisRunning)
    });
    w.advance(Duration::from_secs(150));
    w.finish_runs(AnalysisKind::PostPromotion, AnalysisPhase::Successful);
    demo.run_until(&mut w, |p| matches!(p.decision, Decision::Promoted(_)));
    demo.say("   (the old revision stays warm for 30s, then goes)");
    demo.run_until(&mut w, |p| {
        p.actions.is_empty() && p.requeue_after.is_none()
    });
    demo.summary(&w);
    let promoted = w.status().phase == Some(RolloutPhase::Healthy);

    demo.chapter("4. set image my-app:1.2.0 (bad: errors after the switch)");
    w.set_image("my-app:1.2.0");
    demo.run_until(&mut w, |p| {
        p.decision == Decision::Hold(HoldReason::PrePromotionAnalysisRunning)
    });
    w.finish_runs(AnalysisKind::PrePromotion, AnalysisPhase::Successful);
    demo.run_until(&mut w, |p| {
        p.decision == Decision::Hold(HoldReason::WaitingForPromotion)
    });
    w.promote(false);
    demo.run_until(&mut w, |p| {
        p.decision == Decision::PostPromotion(PostHold::AnalysisRunning)
    });
    demo.say("   (post-promotion analysis: success rate 0.71 < 0.95 → Failed)");
    w.advance(Duration::from_secs(60));
    w.finish_runs(AnalysisKind::PostPromotion, AnalysisPhase::Failed);
    demo.run_until(&mut w, |p| {
        matches!(
            p.decision,
            Decision::Aborted(cutover_core::plan::AbortState::Done)
        )
    });
    demo.summary(&w);
    let rolled_back = w.status().stable_rs == w.active.selector && w.status().abort;

    demo.chapter("done");
    demo.say(if promoted && rolled_back {
        "1.1.0 was promoted after its checks; 1.2.0 was switched back to 1.1.0 by its failing post-promotion analysis."
    } else {
        "the walkthrough did not reach the expected states: please report this"
    });
    promoted && rolled_back
}

struct Demo<'a> {
    out: &'a mut String,
    start: Timestamp,
}

impl Demo<'_> {
    fn say(&mut self, line: &str) {
        let _ = writeln!(self.out, "{line}");
    }

    fn chapter(&mut self, title: &str) {
        let _ = writeln!(self.out, "\n== {title}");
    }

    /// Reconciles once a simulated second until `done` holds, printing every plan that did
    /// something or changed the decision.
    fn run_until(&mut self, w: &mut World, done: impl Fn(&Plan) -> bool) {
        let mut last = String::new();
        for _ in 0..600 {
            let at = w.now;
            let plan = w.reconcile();
            let decision = plan.decision.to_string();
            if !plan.actions.is_empty() || decision != last {
                let secs = at.as_second() - self.start.as_second();
                let _ = writeln!(self.out, "[t+{secs:>4}s] {decision}");
                for action in &plan.actions {
                    let _ = writeln!(self.out, "            → {action}");
                }
                for event in &plan.events {
                    if event.reason.to_string() != "ScalingReplicaSet" {
                        let _ = writeln!(
                            self.out,
                            "            ⚑ {}: {}",
                            event.reason, event.message
                        );
                    }
                }
                last = decision;
            }
            if done(&plan) {
                return;
            }
            w.advance(STEP);
        }
        self.say("   (gave up waiting: the core did not reach the expected state)");
    }

    fn summary(&mut self, w: &World) {
        let s = w.status();
        let phase = s.phase.map_or("-".to_string(), |p| format!("{p:?}"));
        let _ = writeln!(
            self.out,
            "   status: {phase}{}",
            s.message.map(|m| format!(" — {m}")).unwrap_or_default()
        );
        let mut revisions: Vec<_> = w.revisions.iter().collect();
        revisions.sort_by_key(|(_, r)| std::cmp::Reverse(r.revision));
        for (hash, rev) in revisions {
            let mut roles = Vec::new();
            if s.stable_rs.as_deref() == Some(hash.as_str()) {
                roles.push("stable");
            }
            if w.active.selector.as_deref() == Some(hash.as_str()) {
                roles.push("active");
            }
            if w.preview.as_ref().and_then(|p| p.selector.as_deref()) == Some(hash.as_str()) {
                roles.push("preview");
            }
            let image = rev
                .template
                .spec
                .as_ref()
                .and_then(|p| p.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let _ = writeln!(
                self.out,
                "   revision {} {hash} {image:<14} pods {}/{} {}",
                rev.revision,
                rev.pods.len(),
                rev.desired,
                roles.join(",")
            );
        }
    }
}
