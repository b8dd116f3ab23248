//! Which revisions each Service routes to, derived from a rollout's status: one function that
//! the single-host router and the Kubernetes traffic adapters (Istio, Gateway API) share, so both
//! backends route alike.

use crate::api::{HeaderRoute, Rollout};

mod split;

pub use split::{Split, service_split, subset_split};

/// The routes of a rollout's Services.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficPlan {
    /// The active Service.
    pub active: ServiceRoutes,
    /// The preview Service, when the strategy names one.
    pub preview: Option<ServiceRoutes>,
}

/// Routes of one Service.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ServiceRoutes {
    /// Service name.
    pub service: String,
    /// Revisions for requests no header route takes, with weights (0-100). Empty: no revision
    /// yet (the Service answers 503).
    pub weights: Vec<(String, u32)>,
    /// Header routes, each to a revision.
    pub header_routes: Vec<(HeaderRoute, String)>,
    /// Mirror a share (0-100) of requests to a revision.
    pub mirror: Option<(String, f64)>,
}

/// Derives the routes from the Rollout's stored status. `preview_available` says whether the
/// preview revision has all its pods available (a weighted share or mirror only starts then).
///
/// Rules: the active Service selects `status.blueGreen.activeSelector`; while an update waits
/// for promotion (current differs from active, not aborted) the `trafficRouting` rules send
/// header matches, a weighted share and a mirrored copy to the current revision. The preview
/// Service selects `status.blueGreen.previewSelector`.
pub fn routes(rollout: &Rollout, preview_available: bool) -> TrafficPlan {
    let bg = &rollout.spec.strategy.blue_green;
    let status = rollout.status.clone().unwrap_or_default();
    let active_hash = status.blue_green.active_selector.clone();
    let current = status.current_pod_hash.clone();
    let mut active = ServiceRoutes {
        service: bg.active_service.clone(),
        ..ServiceRoutes::default()
    };
    if let Some(hash) = &active_hash {
        active.weights.push((hash.clone(), 100));
    }
    let update_waiting = !status.abort
        && current.is_some()
        && active_hash.is_some()
        && current != active_hash
        && !rollout.spec.is_paused();
    if let (true, Some(rules), Some(preview)) = (update_waiting, &bg.traffic_routing, &current) {
        active.header_routes = rules
            .header_routes
            .iter()
            .map(|r| (r.clone(), preview.clone()))
            .collect();
        if preview_available {
            let share = rules
                .preview_weight
                .unwrap_or(0)
                .clamp(0, 100)
                .unsigned_abs();
            if share > 0 {
                active.weights = vec![
                    (active_hash.clone().unwrap_or_default(), 100 - share),
                    (preview.clone(), share),
                ];
            }
            if let Some(m) = &rules.mirror {
                active.mirror = Some((
                    preview.clone(),
                    m.percent.unwrap_or(100.0).clamp(0.0, 100.0),
                ));
            }
        }
    }
    let preview = bg.preview_service.as_ref().map(|name| ServiceRoutes {
        service: name.clone(),
        weights: status
            .blue_green
            .preview_selector
            .iter()
            .map(|h| (h.clone(), 100))
            .collect(),
        ..ServiceRoutes::default()
    });
    TrafficPlan { active, preview }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{MirrorRoute, TrafficRouting};
    use crate::fixtures::RolloutBuilder;

    fn rollout(rules: Option<TrafficRouting>, active: &str, current: &str, abort: bool) -> Rollout {
        let mut r = RolloutBuilder::new("app").build();
        r.spec.strategy.blue_green.traffic_routing = rules;
        let mut s = crate::api::RolloutStatus::default();
        s.blue_green.active_selector = Some(active.into());
        s.blue_green.preview_selector = Some(current.into());
        s.current_pod_hash = Some(current.into());
        s.abort = abort;
        r.status = Some(s);
        r
    }

    fn rules() -> TrafficRouting {
        TrafficRouting {
            header_routes: vec![HeaderRoute {
                header: "x-canary".into(),
                exact: Some("true".into()),
                ..HeaderRoute::default()
            }],
            preview_weight: Some(10),
            mirror: Some(MirrorRoute {
                percent: Some(50.0),
            }),
            ..TrafficRouting::default()
        }
    }

    #[test]
    fn steady_state_routes_everything_to_active() {
        let plan = routes(&rollout(Some(rules()), "a", "a", false), true);
        assert_eq!(plan.active.weights, vec![("a".to_string(), 100)]);
        assert!(plan.active.header_routes.is_empty() && plan.active.mirror.is_none());
        assert_eq!(
            plan.preview.map(|p| p.weights),
            Some(vec![("a".to_string(), 100)])
        );
    }

    #[test]
    fn waiting_update_gets_header_route_weight_and_mirror_once_available() {
        let plan = routes(&rollout(Some(rules()), "a", "b", false), false);
        assert_eq!(plan.active.header_routes.len(), 1);
        assert_eq!(
            plan.active.weights,
            vec![("a".to_string(), 100)],
            "no share before available"
        );
        let plan = routes(&rollout(Some(rules()), "a", "b", false), true);
        assert_eq!(
            plan.active.weights,
            vec![("a".to_string(), 90), ("b".to_string(), 10)]
        );
        assert_eq!(plan.active.mirror, Some(("b".to_string(), 50.0)));
    }

    #[test]
    fn abort_sends_everything_back_to_active() {
        let plan = routes(&rollout(Some(rules()), "a", "b", true), true);
        assert_eq!(plan.active.weights, vec![("a".to_string(), 100)]);
        assert!(plan.active.header_routes.is_empty() && plan.active.mirror.is_none());
    }
}
