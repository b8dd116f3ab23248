//! Helpers shared by the planner's tests: a world settled at its initial deploy, and shortcuts.
#![allow(dead_code)]

use std::time::Duration;

use cutover_core::api::RolloutPhase;
use cutover_core::fixtures::RolloutBuilder;
use cutover_core::plan::{Action, Plan, ServiceRole};
use cutover_core::sim::World;
use jiff::Timestamp;

pub const SECOND: Duration = Duration::from_secs(1);

pub fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().expect("valid timestamp")
}

/// A world whose first revision (`<name>:v1`) is deployed and stable.
pub fn deployed(builder: RolloutBuilder) -> World {
    let mut w = World::new(builder.build(), t0());
    w.settle(SECOND, 100);
    assert_eq!(
        w.status().phase,
        Some(RolloutPhase::Healthy),
        "{:?}",
        w.events
    );
    w
}

/// Reconciles and advances one second at a time until the plan's decision matches, at most
/// `passes` times; returns that plan.
pub fn until(w: &mut World, passes: usize, done: impl Fn(&Plan) -> bool) -> Plan {
    for _ in 0..passes {
        let plan = w.reconcile();
        if done(&plan) {
            return plan;
        }
        w.advance(SECOND);
    }
    panic!("not reached in {passes} passes; events: {:#?}", w.events);
}

pub fn switches_active(plan: &Plan) -> Option<&str> {
    plan.actions.iter().find_map(|a| match a {
        Action::SwitchService {
            role: ServiceRole::Active,
            to,
            ..
        } => Some(to.as_str()),
        _ => None,
    })
}

pub fn current_hash(w: &World) -> String {
    w.status().current_pod_hash.unwrap_or_default()
}

pub fn stable_hash(w: &World) -> String {
    w.status().stable_rs.unwrap_or_default()
}

pub fn desired(w: &World, hash: &str) -> i32 {
    w.revisions.get(hash).map_or(-1, |r| r.desired)
}
