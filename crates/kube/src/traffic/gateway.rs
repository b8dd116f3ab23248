//! Gateway API (`gateway.networking.k8s.io/v1` HTTPRoute): the managed rules' backendRefs to
//! the active and preview Services get the split's weights, a rule matching the header routes
//! (with the managed rule's own path matches, so that it is the more specific one) sends to the
//! preview Service, and a `RequestMirror` filter copies traffic while mirroring.
//!
//! Verification: every entry of `status.parents` must have `Accepted=True` with
//! `observedGeneration` equal to the route's `metadata.generation` (the gateway controller has
//! taken exactly what is stored). `Accepted=False` for that generation is a refusal: the rollout
//! is Degraded with the route and the gateway's reason named.

use std::collections::BTreeSet;

use cutover_core::api::{BlueGreenStrategy, GatewayApiRouting, GatewayHttpRoute, Rollout};
use cutover_core::traffic::{Split, TrafficPlan, service_split};
use kube::api::DynamicObject;
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::{
    Objects, RouteObservation, RouteSummary, Selectors, UNVERIFIED, find_named, generation, get,
    inserted_name, is_inserted, list_of, render_list, replace_field, spec_list,
};
use crate::error::Error;

/// `gateway.networking.k8s.io/v1` HTTPRoute.
pub fn http_route() -> ApiResource {
    ApiResource {
        group: "gateway.networking.k8s.io".into(),
        version: "v1".into(),
        api_version: "gateway.networking.k8s.io/v1".into(),
        kind: "HTTPRoute".into(),
        plural: "httproutes".into(),
    }
}

/// The HTTPRoutes as read, each with the indices of its managed rules.
pub(super) struct Observed {
    routes: Vec<(DynamicObject, Vec<usize>)>,
    /// `[active Service, preview Service]`.
    services: [Option<String>; 2],
}

pub(super) async fn observe(
    client: &Client,
    ns: &str,
    config: &GatewayApiRouting,
    bg: &BlueGreenStrategy,
    selectors: &Selectors,
) -> Result<RouteObservation, Error> {
    let services = [Some(bg.active_service.clone()), bg.preview_service.clone()];
    let selected = |svc: &str| selectors.get(svc).cloned();
    let mut serving = BTreeSet::new();
    let mut refused = None;
    let mut summary = Vec::new();
    let mut routes = Vec::new();
    for entry in &config.http_routes {
        let obj = get(client, ns, &http_route(), &entry.name).await?;
        let rules = spec_list(&obj, "rules");
        let managed = managed_rules(&rules, entry, &bg.active_service, ns)?;
        let headers: Vec<String> = rules
            .iter()
            .filter(|r| is_inserted(r))
            .flat_map(|r| list_of(&r["matches"]))
            .flat_map(|m| list_of(&m["headers"]))
            .map(|h| {
                format!(
                    "{}:{}={}",
                    h["name"].as_str().unwrap_or(""),
                    h["type"].as_str().unwrap_or("Exact"),
                    h["value"].as_str().unwrap_or("")
                )
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for &i in &managed {
            let rule = &rules[i];
            let mut weights = Vec::new();
            for r in list_of(&rule["backendRefs"]) {
                let name = r["name"].as_str().unwrap_or("").to_string();
                let weight = r["weight"].as_i64().unwrap_or(1);
                if weight > 0 {
                    serving.insert(
                        selected(&name).unwrap_or_else(|| format!("unselected-service:{name}")),
                    );
                }
                weights.push((name, weight));
            }
            let mirror = list_of(&rule["filters"])
                .into_iter()
                .find(|f| f["type"] == "RequestMirror")
                .map(|f| {
                    let m = &f["requestMirror"];
                    let pct = m["percent"].as_f64().unwrap_or_else(|| {
                        let n = m["fraction"]["numerator"].as_f64().unwrap_or(100.0);
                        let d = m["fraction"]["denominator"].as_f64().unwrap_or(100.0);
                        if d > 0.0 { n * 100.0 / d } else { 0.0 }
                    });
                    (
                        m["backendRef"]["name"].as_str().unwrap_or("").to_string(),
                        pct,
                    )
                });
            summary.push(RouteSummary {
                object: format!("HTTPRoute/{}", obj.name_any()),
                route: rule["name"]
                    .as_str()
                    .map_or_else(|| format!("#{i}"), str::to_string),
                weights,
                header_routes: headers.clone(),
                mirror,
            });
        }
        match acceptance(&obj, ns) {
            Acceptance::Accepted => {}
            Acceptance::Pending(why) => {
                serving.insert(format!("{UNVERIFIED}{why}"));
            }
            Acceptance::Refused(why) => {
                serving.insert(format!("{UNVERIFIED}HTTPRoute {ns}/{}", obj.name_any()));
                refused = Some(why);
            }
        }
        routes.push((obj, managed));
    }
    Ok(RouteObservation {
        serving: serving.into_iter().collect(),
        refused,
        summary,
        objects: Objects::Gateway(Observed { routes, services }),
    })
}

enum Acceptance {
    Accepted,
    Pending(String),
    Refused(String),
}

/// Whether every parent has accepted the route's current generation.
fn acceptance(obj: &DynamicObject, ns: &str) -> Acceptance {
    let generation_now = generation(obj);
    let name = obj.name_any();
    let parents = obj
        .data
        .pointer("/status/parents")
        .map(list_of)
        .unwrap_or_default();
    if parents.is_empty() {
        return Acceptance::Pending(format!(
            "HTTPRoute {ns}/{name} (no parent has reported Accepted for generation {generation_now})"
        ));
    }
    for p in &parents {
        let accepted = list_of(&p["conditions"])
            .into_iter()
            .find(|c| c["type"] == "Accepted");
        let parent = p["parentRef"]["name"].as_str().unwrap_or("?");
        match accepted {
            Some(c)
                if c["observedGeneration"].as_i64() == Some(generation_now)
                    && c["status"] == "True" => {}
            Some(c) if c["observedGeneration"].as_i64() == Some(generation_now) => {
                return Acceptance::Refused(format!(
                    "HTTPRoute {ns}/{name} is not accepted by {} for parent {parent} at generation {generation_now}: {}: {}",
                    p["controllerName"].as_str().unwrap_or("its gateway"),
                    c["reason"].as_str().unwrap_or("NotAccepted"),
                    c["message"].as_str().unwrap_or("")
                ));
            }
            _ => {
                return Acceptance::Pending(format!(
                    "HTTPRoute {ns}/{name} (parent {parent} has not accepted generation {generation_now})"
                ));
            }
        }
    }
    Acceptance::Accepted
}

/// Indices of the managed rules: those named, or every rule with a backendRef to the active
/// Service.
fn managed_rules(
    rules: &[Value],
    entry: &GatewayHttpRoute,
    active: &str,
    ns: &str,
) -> Result<Vec<usize>, Error> {
    let route = &entry.name;
    if entry.rules.is_empty() {
        let found: Vec<usize> = (0..rules.len())
            .filter(|i| !is_inserted(&rules[*i]))
            .filter(|i| {
                list_of(&rules[*i]["backendRefs"])
                    .iter()
                    .any(|r| r["name"] == active)
            })
            .collect();
        if found.is_empty() {
            return Err(Error::Route(format!(
                "HTTPRoute {ns}/{route} has no rule with a backendRef to the active Service '{active}'"
            )));
        }
        return Ok(found);
    }
    find_named(rules, &entry.rules, |name| {
        format!(
            "HTTPRoute {ns}/{route} has no rule named '{name}' (trafficRouting.gatewayAPI.httpRoutes[].rules)"
        )
    })
}

pub(super) async fn write(
    client: &Client,
    o: &Observed,
    plan: &TrafficPlan,
) -> Result<bool, Error> {
    let split = service_split(plan);
    let mut written = false;
    for (obj, managed) in &o.routes {
        let rules = spec_list(obj, "rules");
        let rendered = render_rules(&rules, managed, &o.services, &split);
        if rendered != rules {
            replace_field(client, &http_route(), obj, "rules", json!(rendered)).await?;
            written = true;
        }
    }
    Ok(written)
}

/// The rules with cutover's header rules (re)inserted before the first managed rule and the
/// managed rules' weights and mirror filter set; every other rule as it was.
fn render_rules(
    rules: &[Value],
    managed: &[usize],
    services: &[Option<String>; 2],
    split: &Split,
) -> Vec<Value> {
    render_list(
        rules,
        managed,
        |rule| header_rules(rule, services, split),
        |rule| weigh(rule, services, split),
    )
}

/// The managed rule's first backendRef to the active Service (else its first), as the pattern
/// of refs cutover adds (same kind, port).
fn backend(rule: &Value, services: &[Option<String>; 2], service: &str) -> Value {
    let refs = list_of(&rule["backendRefs"]);
    let template = refs
        .iter()
        .find(|r| services[0].as_deref().is_some_and(|a| r["name"] == a))
        .or(refs.first())
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut r = json!({ "name": service });
    for key in ["group", "kind", "namespace", "port"] {
        if !template[key].is_null() {
            r[key] = template[key].clone();
        }
    }
    r
}

/// One rule per backend that header routes go to, matching the managed rule's matches plus the
/// header (Gateway API prefers the match with more header conditions).
fn header_rules(rule: &Value, services: &[Option<String>; 2], split: &Split) -> Vec<Value> {
    let base = match rule["matches"].as_array() {
        Some(m) if !m.is_empty() => m.clone(),
        _ => vec![json!({})],
    };
    let mut out = Vec::new();
    for (k, service) in services.iter().enumerate() {
        let Some(service) = service else { continue };
        let mut matches = Vec::new();
        for (header, _) in split.header_routes.iter().filter(|(_, to)| *to == k) {
            let (kind, value) = match (&header.exact, &header.prefix, &header.regex) {
                (Some(v), _, _) => ("Exact", v.clone()),
                (_, Some(v), _) => ("RegularExpression", format!("^{}.*", escape(v))),
                (_, _, Some(v)) => ("RegularExpression", v.clone()),
                _ => continue,
            };
            for m in &base {
                let mut m = m.clone();
                let mut headers: Vec<Value> = list_of(&m["headers"])
                    .into_iter()
                    .filter(|h| {
                        !h["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(&header.header))
                    })
                    .collect();
                headers.push(json!({ "type": kind, "name": header.header, "value": value }));
                m["headers"] = json!(headers);
                matches.push(m);
            }
        }
        if matches.is_empty() {
            continue;
        }
        // The CRD allows 64 matches per rule.
        matches.truncate(64);
        let first = split.header_routes.iter().find(|(_, to)| *to == k);
        let name = first.map_or_else(|| format!("{k}"), |(h, _)| inserted_name(k, h));
        let mut backend = backend(rule, services, service);
        backend["weight"] = json!(1);
        out.push(json!({
            "name": name,
            "matches": matches,
            "backendRefs": [backend],
        }));
    }
    out
}

/// Regular-expression escape of a literal prefix.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The managed rule with the two Services weighted (a missing ref added after the active
/// ref's pattern) and cutover's mirror filter set or removed.
fn weigh(rule: &Value, services: &[Option<String>; 2], split: &Split) -> Value {
    let mut r = rule.clone();
    let mut refs = list_of(&rule["backendRefs"]);
    for (k, service) in services.iter().enumerate() {
        let Some(service) = service else { continue };
        let weight = split.weights[k];
        match refs.iter_mut().find(|b| b["name"] == service.as_str()) {
            Some(b) => b["weight"] = json!(weight),
            None => {
                let mut b = backend(rule, services, service);
                b["weight"] = json!(weight);
                refs.push(b);
            }
        }
    }
    r["backendRefs"] = json!(refs);
    let ours = |f: &Value| {
        f["type"] == "RequestMirror"
            && services
                .iter()
                .flatten()
                .any(|s| f["requestMirror"]["backendRef"]["name"] == s.as_str())
    };
    let mut filters: Vec<Value> = list_of(&rule["filters"])
        .into_iter()
        .filter(|f| !ours(f))
        .collect();
    if let Some((k, percent)) = split.mirror
        && let Some(service) = &services[k]
    {
        let mut mirror = json!({ "backendRef": backend(rule, services, service) });
        if percent.fract() == 0.0 {
            mirror["percent"] = json!(percent as i64);
        } else {
            // Fractions of a percent: the CRD's percent is whole, fraction is exact.
            mirror["fraction"] =
                json!({ "numerator": (percent * 100.0).round() as i64, "denominator": 10000 });
        }
        filters.push(json!({ "type": "RequestMirror", "requestMirror": mirror }));
    }
    match r.as_object_mut() {
        Some(map) if filters.is_empty() => {
            map.remove("filters");
        }
        Some(map) => {
            map.insert("filters".into(), json!(filters));
        }
        None => {}
    }
    r
}

/// All traffic of the managed rules to the active Service, cutover's header rules and mirror
/// filters removed.
pub(super) async fn restore(
    client: &Client,
    ns: &str,
    rollout: &Rollout,
    config: &GatewayApiRouting,
) -> Result<(), Error> {
    let bg = &rollout.spec.strategy.blue_green;
    let services = [Some(bg.active_service.clone()), bg.preview_service.clone()];
    let split = Split {
        hashes: [None, None],
        weights: [100, 0],
        header_routes: Vec::new(),
        mirror: None,
    };
    for entry in &config.http_routes {
        let obj = match get(client, ns, &http_route(), &entry.name).await {
            Ok(o) => o,
            Err(Error::Route(_)) => continue,
            Err(e) => return Err(e),
        };
        let rules = spec_list(&obj, "rules");
        let Ok(managed) = managed_rules(&rules, entry, &bg.active_service, ns) else {
            continue;
        };
        let rendered = render_rules(&rules, &managed, &services, &split);
        if rendered != rules {
            replace_field(client, &http_route(), &obj, "rules", json!(rendered)).await?;
        }
    }
    Ok(())
}
