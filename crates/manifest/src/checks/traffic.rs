//! Checks of `blueGreen.trafficRouting`: each header route has exactly one matcher and its
//! regular expression compiles; shares are percentages; the routers named fit the backend and
//! the routing objects in the files.

use cutover_core::api::{Rollout, TrafficRouting};

use super::Target;
use crate::diag::{Diagnostic, Diagnostics};
use crate::path::FieldPath;
use crate::set::{Located, ManifestSet};

pub(super) fn check(r: &Located<Rollout>, diags: &mut Diagnostics) {
    let Some(rules) = &r.value.spec.strategy.blue_green.traffic_routing else {
        return;
    };
    let base = FieldPath::parse("spec.strategy.blueGreen.trafficRouting");
    let err = |path: FieldPath, message: String, help: &str| {
        Diagnostic::error(&r.file, r.locate(&path), path.clone(), message).with_help(help)
    };
    check_header_routes(rules, &base, diags, &err);
    if let Some(w) = rules.preview_weight.filter(|w| !(0..=100).contains(w)) {
        diags.push(err(
            base.key("previewWeight"),
            format!("must be between 0 and 100, got {w}"),
            "it is the percentage of active traffic sent to the preview",
        ));
    }
    if let Some(p) = rules
        .mirror
        .as_ref()
        .and_then(|m| m.percent)
        .filter(|p| !(0.0..=100.0).contains(p))
    {
        diags.push(err(
            base.key("mirror").key("percent"),
            format!("must be between 0 and 100, got {p}"),
            "it is the percentage of active traffic copied to the preview",
        ));
    }
}

fn check_header_routes(
    rules: &TrafficRouting,
    base: &FieldPath,
    diags: &mut Diagnostics,
    err: &impl Fn(FieldPath, String, &str) -> Diagnostic,
) {
    for (i, route) in rules.header_routes.iter().enumerate() {
        let path = base.key("headerRoutes").index(i);
        let set = [&route.exact, &route.prefix, &route.regex]
            .iter()
            .filter(|m| m.is_some())
            .count();
        if set != 1 {
            diags.push(err(
                path.clone(),
                format!("needs exactly one of exact, prefix or regex, found {set}"),
                "e.g. `header: x-canary` with `exact: \"true\"`",
            ));
        }
        if route.header.trim().is_empty() {
            diags.push(err(
                path.key("header"),
                "must name a header".into(),
                "e.g. `header: x-canary`",
            ));
        }
        if let Some(re) = &route.regex
            && let Err(e) = regex::Regex::new(&format!("^(?:{re})$"))
        {
            diags.push(err(
                path.key("regex"),
                // The regex error spans several lines; its last line names the problem.
                format!(
                    "invalid regular expression: {}",
                    e.to_string().lines().last().unwrap_or_default().trim()
                ),
                "use Rust regex syntax (RE2-like); it must match the whole value",
            ));
        }
    }
}

/// The routers of `trafficRouting`: on Kubernetes, weights, header routes and mirroring need
/// Istio or Gateway API; the objects they name, when the files hold them, have the routes,
/// rules and subsets named.
pub(super) fn check_routers(
    set: &ManifestSet,
    r: &Located<Rollout>,
    target: Target,
    diags: &mut Diagnostics,
) {
    let bg = &r.value.spec.strategy.blue_green;
    let Some(rules) = &bg.traffic_routing else {
        return;
    };
    let base = FieldPath::parse("spec.strategy.blueGreen.trafficRouting");
    let err = |path: FieldPath, message: String, help: String| {
        Diagnostic::error(&r.file, r.locate(&path), path.clone(), message).with_help(help)
    };
    let ns = r.namespace();
    let routed = rules.istio.is_some() || rules.gateway_api.is_some();
    if target == Target::Kubernetes && rules.needs_weighting_router() && !routed {
        let field = if rules.preview_weight.is_some_and(|w| w > 0) {
            "previewWeight"
        } else if !rules.header_routes.is_empty() {
            "headerRoutes"
        } else {
            "mirror"
        };
        diags.push(err(
            base.key(field),
            format!("on Kubernetes `{field}` needs a router that can weight, copy and match headers; plain Services only switch selectors"),
            "add `trafficRouting.istio` (a VirtualService and DestinationRule) or `trafficRouting.gatewayAPI` (HTTPRoutes); docs/traffic.md shows both".into(),
        ));
    }
    if target == Target::Local && routed {
        diags.push(super::warn(
            r,
            &base,
            "`istio` and `gatewayAPI` do nothing on one host: the built-in router carries out headerRoutes, previewWeight and mirror".into(),
            "keep them if the manifest is also for Kubernetes",
        ));
    }
    if rules.istio.is_some() && rules.gateway_api.is_some() {
        diags.push(err(
            base.key("gatewayAPI"),
            "set either `istio` or `gatewayAPI`, not both".into(),
            "one router carries out the rules".into(),
        ));
    }
    if let Some(istio) = &rules.istio {
        let dr = &istio.destination_rule;
        let path = base.key("istio").key("destinationRule");
        if dr.active_subset_name == dr.preview_subset_name {
            diags.push(err(
                path.key("previewSubsetName"),
                format!(
                    "names the same subset as activeSubsetName ('{}')",
                    dr.preview_subset_name
                ),
                "name the DestinationRule's two subsets, e.g. blue and green".into(),
            ));
        }
        if let Some(obj) = set.routing("DestinationRule", &dr.name, ns) {
            let names = names_of(&obj.spec["subsets"]);
            for (field, subset) in [
                ("activeSubsetName", &dr.active_subset_name),
                ("previewSubsetName", &dr.preview_subset_name),
            ] {
                if !names.contains(subset) {
                    diags.push(err(
                        path.key(field),
                        format!("DestinationRule '{}' has no subset '{subset}'", dr.name),
                        format!("its subsets: {}", names.join(", ")),
                    ));
                }
            }
        }
        let vs = &istio.virtual_service;
        let path = base.key("istio").key("virtualService");
        if let Some(obj) = set.routing("VirtualService", &vs.name, ns) {
            let names = names_of(&obj.spec["http"]);
            let count = obj.spec["http"].as_array().map_or(0, Vec::len);
            if vs.routes.is_empty() && count != 1 {
                diags.push(err(
                    path.key("name"),
                    format!(
                        "VirtualService '{}' has {count} HTTP routes: say which cutover manages",
                        vs.name
                    ),
                    "list their names in `routes`".into(),
                ));
            }
            for (i, route) in vs.routes.iter().enumerate() {
                if !names.contains(route) {
                    diags.push(err(
                        path.key("routes").index(i),
                        format!(
                            "VirtualService '{}' has no HTTP route named '{route}'",
                            vs.name
                        ),
                        format!("its named routes: {}", names.join(", ")),
                    ));
                }
            }
        }
    }
    if let Some(gateway) = &rules.gateway_api {
        let path = base.key("gatewayAPI");
        if bg.preview_service.is_none() && rules.needs_weighting_router() {
            diags.push(err(
                path.clone(),
                "Gateway API sends the preview's share, header routes and mirror to the preview Service, and the strategy names none".into(),
                "set `previewService`".into(),
            ));
        }
        for (i, route) in gateway.http_routes.iter().enumerate() {
            let Some(obj) = set.routing("HTTPRoute", &route.name, ns) else {
                continue;
            };
            let names = names_of(&obj.spec["rules"]);
            for (j, rule) in route.rules.iter().enumerate() {
                if !names.contains(rule) {
                    diags.push(err(
                        path.key("httpRoutes").index(i).key("rules").index(j),
                        format!("HTTPRoute '{}' has no rule named '{rule}'", route.name),
                        format!("its named rules: {}", names.join(", ")),
                    ));
                }
            }
            let to_active = obj.spec["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|rule| {
                    rule["backendRefs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|b| b["name"] == bg.active_service.as_str())
                });
            if route.rules.is_empty() && !to_active {
                diags.push(err(
                    path.key("httpRoutes").index(i).key("name"),
                    format!(
                        "HTTPRoute '{}' has no rule with a backendRef to the active Service '{}'",
                        route.name, bg.active_service
                    ),
                    "point the rule that serves the app at the active Service, or name the rules in `rules`".into(),
                ));
            }
        }
    }
}

/// The `name` of each entry of a list.
fn names_of(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect()
}
