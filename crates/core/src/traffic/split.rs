//! The routes of [`super::routes`] laid onto two named backends, for routers on Kubernetes that
//! weight between backends instead of revisions: the two subsets of an Istio DestinationRule, or
//! the active and preview Services behind a Gateway API HTTPRoute. Pure, so that both adapters
//! only render what is decided here.

use crate::api::HeaderRoute;

use super::TrafficPlan;

/// Traffic over two backends, index 0 and 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The revision (pod-template hash) each backend holds. For subsets: what cutover writes
    /// into the subset's labels (None: leave the subset as it is). For Services: their
    /// selectors, as the plan set them.
    pub hashes: [Option<String>; 2],
    /// Weight of each backend; they add up to 100.
    pub weights: [u32; 2],
    /// Header routes, each with the backend it sends to.
    pub header_routes: Vec<(HeaderRoute, usize)>,
    /// Mirroring: the backend copied to and the percentage copied.
    pub mirror: Option<(usize, f64)>,
}

impl Split {
    /// The backend holding `hash`, the first one when both do.
    fn index_of(&self, hash: &str) -> Option<usize> {
        self.hashes.iter().position(|h| h.as_deref() == Some(hash))
    }

    /// Weights, header routes and mirror from the plan's active routes onto the backends as
    /// `hashes` holds them. A share for a revision no backend holds stays on backend 0.
    fn route(mut self, plan: &TrafficPlan) -> Self {
        let mut weights = [0u32; 2];
        for (hash, weight) in &plan.active.weights {
            let i = self.index_of(hash).unwrap_or(0);
            weights[i] = weights[i].saturating_add(*weight).min(100);
        }
        if weights == [0, 0] {
            // No revision yet: a route needs a destination with weight; nothing runs behind it.
            weights = [100, 0];
        }
        self.weights = weights;
        self.header_routes = plan
            .active
            .header_routes
            .iter()
            .filter_map(|(route, hash)| Some((route.clone(), self.index_of(hash)?)))
            .collect();
        self.mirror = plan
            .active
            .mirror
            .as_ref()
            .and_then(|(hash, percent)| Some((self.index_of(hash)?, *percent)));
        self
    }
}

/// The plan over an Istio DestinationRule's two subsets, given the hashes they hold now
/// (`observed`, index 0 the `activeSubsetName`).
///
/// Blue/green with fixed subsets: a revision that already has a subset keeps it, and a revision
/// that needs one takes the subset whose revision no route needs any more. So an update goes into
/// the subset that carries no production traffic, promotion moves the weights from one subset to
/// the other (100/0 → 0/100) without relabelling a subset that carries traffic, and the previous
/// revision stays behind its subset for an instant switch back.
pub fn subset_split(plan: &TrafficPlan, observed: [Option<&str>; 2]) -> Split {
    let mut needed: Vec<&str> = Vec::new();
    let wanted = plan
        .active
        .weights
        .iter()
        .map(|(h, _)| h.as_str())
        .chain(plan.active.header_routes.iter().map(|(_, h)| h.as_str()))
        .chain(plan.active.mirror.iter().map(|(h, _)| h.as_str()))
        .chain(
            plan.preview
                .iter()
                .flat_map(|p| p.weights.iter().map(|(h, _)| h.as_str())),
        );
    for hash in wanted {
        if !needed.contains(&hash) {
            needed.push(hash);
        }
    }
    let mut hashes = observed.map(|h| h.map(str::to_string));
    for hash in needed.iter().take(2) {
        if hashes.iter().any(|h| h.as_deref() == Some(*hash)) {
            continue;
        }
        let free = hashes
            .iter()
            .position(|h| h.as_deref().is_none_or(|h| !needed.contains(&h)));
        if let Some(i) = free {
            hashes[i] = Some((*hash).to_string());
        }
    }
    Split {
        hashes,
        weights: [100, 0],
        header_routes: Vec::new(),
        mirror: None,
    }
    .route(plan)
}

/// The plan over the active (index 0) and preview (index 1) Services. Promotion switches the
/// active Service's selector, so its weight is back to 100 once the preview is promoted.
pub fn service_split(plan: &TrafficPlan) -> Split {
    let active = plan.active.weights.first().map(|(h, _)| h.clone());
    let preview = plan
        .preview
        .as_ref()
        .and_then(|p| p.weights.first().map(|(h, _)| h.clone()));
    Split {
        hashes: [active, preview],
        weights: [100, 0],
        header_routes: Vec::new(),
        mirror: None,
    }
    .route(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::ServiceRoutes;

    fn plan(weights: &[(&str, u32)], preview: &str, extras: bool) -> TrafficPlan {
        let header = HeaderRoute {
            header: "x-canary".into(),
            exact: Some("true".into()),
            ..HeaderRoute::default()
        };
        TrafficPlan {
            active: ServiceRoutes {
                service: "active".into(),
                weights: weights.iter().map(|(h, w)| (h.to_string(), *w)).collect(),
                header_routes: if extras {
                    vec![(header, preview.to_string())]
                } else {
                    Vec::new()
                },
                mirror: extras.then(|| (preview.to_string(), 100.0)),
            },
            preview: Some(ServiceRoutes {
                service: "preview".into(),
                weights: vec![(preview.to_string(), 100)],
                ..ServiceRoutes::default()
            }),
        }
    }

    #[test]
    fn first_revision_takes_the_active_subset() {
        let s = subset_split(&plan(&[("a", 100)], "a", false), [None, None]);
        assert_eq!(s.hashes, [Some("a".into()), None]);
        assert_eq!(s.weights, [100, 0]);
    }

    #[test]
    fn seed_flow_100_0_then_90_10_then_0_100() {
        let s = subset_split(&plan(&[("a", 100)], "b", true), [Some("a"), None]);
        assert_eq!(s.hashes, [Some("a".into()), Some("b".into())]);
        assert_eq!(s.weights, [100, 0]);
        assert_eq!(s.header_routes.len(), 1);
        assert_eq!(s.header_routes[0].1, 1);
        assert_eq!(s.mirror, Some((1, 100.0)));
        let s = subset_split(
            &plan(&[("a", 90), ("b", 10)], "b", true),
            [Some("a"), Some("b")],
        );
        assert_eq!(s.weights, [90, 10]);
        // Promoted: active selects b; the subsets keep their revisions, the weights move.
        let s = subset_split(&plan(&[("b", 100)], "b", false), [Some("a"), Some("b")]);
        assert_eq!(s.hashes, [Some("a".into()), Some("b".into())]);
        assert_eq!(s.weights, [0, 100]);
        assert!(s.header_routes.is_empty() && s.mirror.is_none());
    }

    #[test]
    fn next_update_goes_into_the_subset_without_production_traffic() {
        let s = subset_split(&plan(&[("b", 100)], "c", false), [Some("a"), Some("b")]);
        assert_eq!(s.hashes, [Some("c".into()), Some("b".into())]);
        assert_eq!(s.weights, [0, 100]);
    }

    #[test]
    fn abort_returns_all_weight_to_the_stable_subset() {
        let s = subset_split(&plan(&[("a", 100)], "b", false), [Some("a"), Some("b")]);
        assert_eq!(s.weights, [100, 0]);
        assert_eq!(s.hashes, [Some("a".into()), Some("b".into())]);
    }

    #[test]
    fn services_split_by_role_and_return_to_100_0_after_promotion() {
        let s = service_split(&plan(&[("a", 90), ("b", 10)], "b", true));
        assert_eq!(s.weights, [90, 10]);
        assert_eq!(s.header_routes[0].1, 1);
        assert_eq!(s.mirror, Some((1, 100.0)));
        let s = service_split(&plan(&[("b", 100)], "b", false));
        assert_eq!(s.weights, [100, 0]);
    }

    #[test]
    fn no_revision_yet_keeps_a_valid_route() {
        let s = service_split(&plan(&[], "b", false));
        assert_eq!(s.weights, [100, 0]);
    }
}
