//! Property tests: random sequences of user actions, pod readiness changes, analysis outcomes,
//! migration outcomes and time passing, with the planner's invariants checked on every plan.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::t0;
use cutover_core::api::{AnalysisPhase, ContractMode, PauseReason};
use cutover_core::fixtures::RolloutBuilder;
use cutover_core::plan::{Action, AnalysisKind, MigrationCommand, Plan, ServiceRole, plan};
use cutover_core::sim::World;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Config {
    replicas: i32,
    preview_count: Option<i32>,
    manual: bool,
    auto_seconds: i32,
    pre: bool,
    post: bool,
    scale_down_delay: i32,
    revision_limit: Option<i32>,
    abort_delay: i32,
    history: i32,
    /// `spec.migrations`: bake seconds and contract mode.
    migrations: Option<(u64, ContractMode)>,
}

#[derive(Clone, Debug)]
enum Op {
    Tick(u8),
    SetImage(u8),
    Promote,
    PromoteFull,
    Abort,
    Retry,
    Undo(Option<u8>),
    Pause(bool),
    Analysis(AnalysisKind, AnalysisPhase),
    PodsUnready(bool),
    PodsReady,
    Replicas(i32),
    ServingLag(u8),
    /// A release that ships a migration: a new migration file and a new image.
    SetImageWithMigration(u8),
    /// The migration run in progress (or the next one) fails.
    FailMigration,
    /// The next pass's actions are carried out but its status write is lost.
    LoseStatusWrite,
}

fn config() -> impl Strategy<Value = Config> {
    (
        1..5i32,
        proptest::option::of(1..5i32),
        any::<bool>(),
        prop_oneof![Just(0), 1..40i32],
        any::<bool>(),
        any::<bool>(),
        0..60i32,
        proptest::option::of(0..3i32),
        0..60i32,
        1..5i32,
        proptest::option::of((
            0..300u64,
            prop_oneof![Just(ContractMode::Manual), Just(ContractMode::Auto)],
        )),
    )
        .prop_map(
            |(
                replicas,
                pc,
                manual,
                auto_seconds,
                pre,
                post,
                sdd,
                limit,
                ad,
                history,
                migrations,
            )| Config {
                replicas,
                preview_count: pc.map(|c| c.min(replicas)),
                manual,
                auto_seconds,
                pre,
                post,
                scale_down_delay: sdd,
                revision_limit: limit.map(|l| l.min(history)),
                abort_delay: ad,
                history,
                migrations,
            },
        )
}

fn phase() -> impl Strategy<Value = AnalysisPhase> {
    prop_oneof![
        4 => Just(AnalysisPhase::Successful),
        1 => Just(AnalysisPhase::Failed),
        1 => Just(AnalysisPhase::Error),
        1 => Just(AnalysisPhase::Inconclusive),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..90u8).prop_map(Op::Tick),
        3 => (0..4u8).prop_map(Op::SetImage),
        2 => Just(Op::Promote),
        1 => Just(Op::PromoteFull),
        1 => Just(Op::Abort),
        1 => Just(Op::Retry),
        1 => proptest::option::of(1..6u8).prop_map(Op::Undo),
        1 => any::<bool>().prop_map(Op::Pause),
        3 => (prop_oneof![Just(AnalysisKind::PrePromotion), Just(AnalysisKind::PostPromotion)], phase())
            .prop_map(|(k, p)| Op::Analysis(k, p)),
        1 => any::<bool>().prop_map(Op::PodsUnready),
        1 => Just(Op::PodsReady),
        1 => (1..5i32).prop_map(Op::Replicas),
        1 => (0..5u8).prop_map(Op::ServingLag),
        2 => (0..4u8).prop_map(Op::SetImageWithMigration),
        1 => Just(Op::FailMigration),
        2 => Just(Op::LoseStatusWrite),
    ]
}

fn build(c: &Config) -> World {
    let mut b = RolloutBuilder::new("app")
        .replicas(c.replicas)
        .scale_down_delay(c.scale_down_delay)
        .abort_scale_down_delay(c.abort_delay)
        .revision_history_limit(c.history);
    if let Some(n) = c.preview_count {
        b = b.preview_replica_count(n);
    }
    if c.manual {
        b = b.manual_promotion();
    }
    if c.auto_seconds > 0 {
        b = b.auto_promotion_seconds(c.auto_seconds);
    }
    if c.pre {
        b = b.pre_analysis();
    }
    if c.post {
        b = b.post_analysis();
    }
    if let Some(l) = c.revision_limit {
        b = b.scale_down_delay_revision_limit(l);
    }
    if let Some((bake, contract)) = c.migrations {
        b = b.migrations(bake, contract);
    }
    World::new(b.build(), t0())
}

/// What users did during each update, to judge whether a gate was passed legitimately.
#[derive(Clone, Debug, Default)]
struct Attempt {
    promoted: bool,
    promoted_after_switch: bool,
    full: bool,
    warm_at_start: bool,
    paused_at: Option<Timestamp>,
}

struct Checker {
    config: Config,
    attempts: BTreeMap<String, Attempt>,
    warm_before_change: Vec<String>,
    migrations_added: usize,
}

impl Checker {
    fn attempt(&mut self, hash: &str) -> &mut Attempt {
        self.attempts.entry(hash.to_string()).or_default()
    }

    /// Checks one plan against the world it was made from.
    fn check(&mut self, w: &World, p: &Plan) -> Result<(), TestCaseError> {
        let before = w.status();
        let observed = w.observe();
        let current = p.status.current_pod_hash.clone().unwrap_or_default();
        if before.current_pod_hash.as_deref() != Some(current.as_str()) {
            let warm = self.warm_before_change.contains(&current);
            self.attempts.insert(
                current.clone(),
                Attempt {
                    warm_at_start: warm,
                    ..Attempt::default()
                },
            );
        }
        if p.status.abort && !before.abort {
            let a = self.attempt(&current);
            a.promoted = false;
            a.full = false;
            a.paused_at = None;
        }
        if let Some(c) = p.status.pause_condition(PauseReason::BlueGreenPause) {
            self.attempt(&current)
                .paused_at
                .get_or_insert(c.start_time.0);
        }
        let stable_before = before.stable_rs.clone();
        let replicas = w.rollout.spec.replicas.unwrap_or(1);
        let rev = |h: &str| observed.revisions.iter().find(|r| r.hash == h).cloned();

        for action in &p.actions {
            match action {
                Action::SwitchService {
                    role: ServiceRole::Active,
                    to,
                    ..
                } => {
                    prop_assert!(
                        w.revisions.contains_key(to),
                        "switch to unknown revision {to}"
                    );
                    if stable_before.as_deref() == Some(to.as_str()) {
                        continue; // back to stable: abort or rollback, always allowed
                    }
                    prop_assert!(
                        !migrations_pending(&observed),
                        "switched to {to} while a migration is not backfilled"
                    );
                    let r = rev(to).expect("revision observed");
                    prop_assert!(
                        r.available >= replicas && r.desired >= replicas,
                        "switched to {to} with {}/{} available (replicas {replicas})",
                        r.available,
                        r.desired
                    );
                    if stable_before.is_none() {
                        continue; // initial deploy has no gates
                    }
                    let a = self.attempts.get(to).cloned().unwrap_or_default();
                    prop_assert!(
                        !p.status.blue_green.fast_rollback || a.warm_at_start,
                        "fast rollback to a revision that was not warm"
                    );
                    let skip = a.full || p.status.blue_green.fast_rollback;
                    if skip {
                        continue;
                    }
                    if self.config.pre {
                        let run = latest_run(w, AnalysisKind::PrePromotion, to, &before);
                        let ok = matches!(run, Some(AnalysisPhase::Successful))
                            || (run == Some(AnalysisPhase::Inconclusive) && a.promoted);
                        prop_assert!(
                            ok,
                            "pre-promotion gate skipped: run {run:?}, promoted {}",
                            a.promoted
                        );
                    }
                    if self.config.manual {
                        prop_assert!(a.promoted, "manual promotion gate skipped");
                    } else if self.config.auto_seconds > 0 {
                        let due = a.paused_at.map(|t| {
                            t + SignedDuration::from_secs(self.config.auto_seconds.into())
                        });
                        prop_assert!(
                            a.promoted || due.is_some_and(|d| w.now >= d),
                            "timed promotion before autoPromotionSeconds"
                        );
                    }
                }
                Action::ScaleRevision {
                    hash, replicas: n, ..
                } => {
                    let desired = rev(hash).map_or(0, |r| r.desired);
                    // Stable before and after this plan: it may not shrink while an update runs.
                    let still_stable = stable_before.as_deref() == Some(hash.as_str())
                        && p.status.stable_rs.as_deref() == Some(hash.as_str());
                    if still_stable && current != *hash {
                        prop_assert!(
                            *n >= desired,
                            "stable {hash} scaled from {desired} to {n} during an update"
                        );
                    }
                    if w.active.selector.as_deref() == Some(hash.as_str()) {
                        prop_assert!(
                            *n > 0,
                            "the revision the active Service selects was scaled to zero"
                        );
                    } else if *hash == current
                        && *n > desired
                        && stable_before.as_deref() != Some(hash.as_str())
                    {
                        // A new revision (not a return to stable) gets pods only once the
                        // schema it needs is there.
                        prop_assert!(
                            !migrations_pending(&observed),
                            "new revision {hash} scaled up while a migration is not backfilled"
                        );
                    }
                }
                Action::RunMigration(req) if req.command == MigrationCommand::Contract => {
                    let old_running = observed
                        .revisions
                        .iter()
                        .any(|r| r.hash != req.hash && (r.desired > 0 || r.replicas > 0));
                    prop_assert!(!old_running, "contract while an old revision runs");
                    prop_assert_eq!(stable_before.as_deref(), Some(req.hash.as_str()));
                    let active = observed.active_service.as_ref().expect("active");
                    prop_assert!(active.serves_only(&req.hash), "contract before the switch");
                    let ok = w.migrations.as_ref().is_some_and(|m| m.job.is_none());
                    prop_assert!(ok, "contract while another migration command runs");
                }
                _ => {}
            }
        }
        if let Some(switched) = switches(p) {
            self.attempt(&switched).promoted_after_switch = false;
        }
        // Stable moves only to the revision the active Service verifiably serves, after the
        // post-promotion gate.
        if p.status.stable_rs != stable_before
            && let (Some(_), Some(new)) = (&stable_before, &p.status.stable_rs)
        {
            let active = observed.active_service.as_ref().expect("active");
            prop_assert!(
                active.serves_only(new),
                "stable moved to {new} before the switch was verified"
            );
            let a = self.attempts.get(new).cloned().unwrap_or_default();
            let skip = a.full || before.blue_green.fast_rollback;
            if self.config.post && !skip {
                let run = latest_run(w, AnalysisKind::PostPromotion, new, &before);
                let ok = matches!(run, Some(AnalysisPhase::Successful))
                    || (run == Some(AnalysisPhase::Inconclusive) && a.promoted_after_switch);
                prop_assert!(ok, "post-promotion gate skipped: {run:?}");
            }
        }
        // Abort always returns active to stable.
        if p.status.abort
            && let Some(stable) = p.status.stable_rs.as_deref()
            && stable != current
        {
            let back = w.active.selector.as_deref() == Some(stable)
                || switches(p).as_deref() == Some(stable);
            prop_assert!(back, "aborted but active does not return to stable");
        }
        if w.active.selector.is_some() {
            prop_assert!(
                p.status.blue_green.active_selector.is_some(),
                "active selector emptied"
            );
        }
        Ok(())
    }
}

/// A migration still needs expand or backfill (or its run failed half-way).
fn migrations_pending(observed: &cutover_core::plan::Observed) -> bool {
    observed
        .migrations
        .as_ref()
        .is_some_and(|m| m.migrations.iter().any(|x| x.phase.needs_work()))
}

fn switches(p: &Plan) -> Option<String> {
    p.actions.iter().find_map(|a| match a {
        Action::SwitchService {
            role: ServiceRole::Active,
            to,
            ..
        } => Some(to.clone()),
        _ => None,
    })
}

fn latest_run(
    w: &World,
    kind: AnalysisKind,
    hash: &str,
    s: &cutover_core::api::RolloutStatus,
) -> Option<AnalysisPhase> {
    let aborted = s.aborted_at.as_ref().map(|t| t.0);
    w.runs
        .iter()
        .filter(|r| r.kind == kind && r.hash == hash && aborted.is_none_or(|a| r.created_at > a))
        .max_by_key(|r| r.created_at)
        .map(|r| r.phase)
}

fn step(w: &mut World, c: &mut Checker) -> Result<Plan, TestCaseError> {
    c.warm_before_change = w
        .revisions
        .iter()
        .filter(|(_, r)| r.deadline.is_some_and(|d| d > w.now))
        .map(|(h, _)| h.clone())
        .collect();
    let p = plan(&w.observe(), w.now);
    c.check(w, &p)?;
    w.apply(&p);
    // The status names what the active Service selects once the pass is carried out.
    let selected = w.active.selector.clone();
    if selected
        .as_ref()
        .is_some_and(|h| w.revisions.contains_key(h))
    {
        prop_assert_eq!(w.status().blue_green.active_selector, selected);
    }
    Ok(p)
}

fn apply_op(w: &mut World, c: &mut Checker, op: &Op) {
    let current = w.status().current_pod_hash.unwrap_or_default();
    match op {
        Op::Tick(s) => w.advance(Duration::from_secs((*s).into())),
        Op::SetImage(v) => w.set_image(&format!("app:v{v}")),
        Op::Promote => {
            w.promote(false);
            let a = c.attempt(&current);
            a.promoted = true;
            a.promoted_after_switch = true;
        }
        Op::PromoteFull => {
            w.promote(true);
            let a = c.attempt(&current);
            a.promoted = true;
            a.promoted_after_switch = true;
            a.full = true;
        }
        Op::Abort => w.abort(),
        Op::Retry => w.retry(),
        Op::Undo(n) => {
            w.undo(n.map(i64::from));
        }
        Op::Pause(p) => w.set_paused(*p),
        Op::Analysis(kind, phase) => w.finish_runs(*kind, *phase),
        Op::PodsUnready(stable) => {
            let target = if *stable {
                w.status().stable_rs.unwrap_or_default()
            } else {
                current
            };
            if let Some(r) = w.revisions.get_mut(&target) {
                for pod in &mut r.pods {
                    pod.unready = true;
                }
            }
        }
        Op::PodsReady => {
            for r in w.revisions.values_mut() {
                for pod in &mut r.pods {
                    pod.unready = false;
                }
            }
        }
        Op::Replicas(n) => w.rollout.spec.replicas = Some(*n),
        Op::ServingLag(s) => w.serving_lag = Duration::from_secs((*s).into()),
        Op::SetImageWithMigration(v) => {
            c.migrations_added += 1;
            w.add_migration(&format!("{:03}_change", c.migrations_added));
            w.set_image(&format!("app:m{v}"));
        }
        Op::FailMigration => w.fail_migration(),
        Op::LoseStatusWrite => {
            let p = plan(&w.observe(), w.now);
            w.apply_losing_status(&p);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_histories(cfg in config(), ops in proptest::collection::vec(op(), 1..40)) {
        let mut w = build(&cfg);
        let mut c = Checker { config: cfg, attempts: BTreeMap::new(), warm_before_change: Vec::new(), migrations_added: 0 };
        for _ in 0..10 {
            step(&mut w, &mut c)?;
            w.advance(Duration::from_secs(1));
        }
        for op in &ops {
            apply_op(&mut w, &mut c, op);
            for _ in 0..3 {
                step(&mut w, &mut c)?;
                w.advance(Duration::from_millis(700));
            }
        }
        // Let the world settle: pods healthy, analysis passing, humans promoting.
        for r in w.revisions.values_mut() {
            for pod in &mut r.pods { pod.unready = false; }
        }
        w.auto_analysis = Some((Duration::from_secs(5), AnalysisPhase::Successful));
        let mut converged = None;
        for _ in 0..400 {
            let p = step(&mut w, &mut c)?;
            if p.actions.is_empty() && p.requeue_after.is_none() {
                converged = Some(p);
                break;
            }
            if p.status.pause_condition(PauseReason::BlueGreenPause).is_some()
                || p.status.pause_condition(PauseReason::InconclusiveAnalysisRun).is_some()
            {
                apply_op(&mut w, &mut c, &Op::Promote);
            }
            w.advance(p.requeue_after.unwrap_or(Duration::from_secs(5)).clamp(Duration::from_millis(100), Duration::from_secs(30)));
        }
        let converged = converged.ok_or_else(|| TestCaseError::fail(format!("did not converge: {:#?}", w.events.iter().rev().take(10).collect::<Vec<_>>())))?;
        // Re-planning the converged world changes nothing.
        let again = plan(&w.observe(), w.now);
        prop_assert!(again.actions.is_empty(), "{:?}", again.actions);
        prop_assert_eq!(again.status, converged.status);
    }
}
