//! Istio: the DestinationRule's two subsets carry `rollouts-pod-template-hash` labels, the
//! VirtualService's managed HTTP routes weight the two subsets, get header routes to the
//! preview subset inserted before them, and a mirror while mirroring.
//!
//! Verification: the objects are read back before every plan; a route counts as serving what
//! its stored weights say (the write reached the API server, at the read generation). Where
//! the cluster runs Istio with status enabled (`PILOT_ENABLE_STATUS`), the object's
//! `status.observedGeneration` must also have reached `metadata.generation`: istiod has then
//! processed that generation. Without status the read-back is all there is to verify.

use std::collections::BTreeSet;

use cutover_core::api::{IstioRouting, POD_TEMPLATE_HASH_LABEL, Rollout};
use cutover_core::traffic::{Split, TrafficPlan, subset_split};
use kube::Client;
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::core::ApiResource;
use serde_json::{Value, json};

use super::{
    Objects, RouteObservation, RouteSummary, UNVERIFIED, find_named, generation, get,
    inserted_name, is_inserted, list_of, render_list, replace_field, spec_list,
};
use crate::error::Error;

/// `networking.istio.io/v1` VirtualService.
pub fn virtual_service() -> ApiResource {
    resource("VirtualService", "virtualservices")
}

/// `networking.istio.io/v1` DestinationRule.
pub fn destination_rule() -> ApiResource {
    resource("DestinationRule", "destinationrules")
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "networking.istio.io".into(),
        version: "v1".into(),
        api_version: "networking.istio.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The Istio objects as read.
pub(super) struct Observed {
    config: IstioRouting,
    vs: DynamicObject,
    dr: DynamicObject,
    /// The revision each subset holds: `[activeSubsetName, previewSubsetName]`.
    hashes: [Option<String>; 2],
    /// Indices of the managed routes in `spec.http`.
    managed: Vec<usize>,
}

fn subset_names(config: &IstioRouting) -> [&str; 2] {
    [
        config.destination_rule.active_subset_name.as_str(),
        config.destination_rule.preview_subset_name.as_str(),
    ]
}

pub(super) async fn observe(
    client: &Client,
    ns: &str,
    config: &IstioRouting,
) -> Result<RouteObservation, Error> {
    let dr = get(
        client,
        ns,
        &destination_rule(),
        &config.destination_rule.name,
    )
    .await?;
    let vs = get(client, ns, &virtual_service(), &config.virtual_service.name).await?;
    let subsets = spec_list(&dr, "subsets");
    let mut hashes: [Option<String>; 2] = [None, None];
    for (slot, name) in hashes.iter_mut().zip(subset_names(config)) {
        let subset = subsets
            .iter()
            .find(|s| s["name"] == name)
            .ok_or_else(|| {
                Error::Route(format!(
                    "DestinationRule {ns}/{} has no subset '{name}' (trafficRouting.istio.destinationRule)",
                    dr.name_any()
                ))
            })?;
        *slot = subset["labels"][POD_TEMPLATE_HASH_LABEL]
            .as_str()
            .map(str::to_string);
    }
    let http = spec_list(&vs, "http");
    let managed = managed_routes(&http, config, ns)?;
    let names = subset_names(config);
    let mut serving = BTreeSet::new();
    let mut summary = Vec::new();
    let headers: Vec<String> = http
        .iter()
        .filter(|r| is_inserted(r))
        .flat_map(|r| list_of(&r["match"]))
        .flat_map(|m| {
            m["headers"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| match v.as_object().and_then(|o| o.iter().next()) {
                    Some((kind, value)) => format!("{k}:{kind}={}", value.as_str().unwrap_or("")),
                    None => k.clone(),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    for &i in &managed {
        let route = &http[i];
        let dests = list_of(&route["route"]);
        let mut weights = Vec::new();
        for d in &dests {
            let subset = d["destination"]["subset"].as_str().unwrap_or("");
            let weight = d["weight"]
                .as_i64()
                .unwrap_or(if dests.len() == 1 { 100 } else { 0 });
            weights.push((subset.to_string(), weight));
            if weight > 0 {
                let hash = names
                    .iter()
                    .position(|n| *n == subset)
                    .and_then(|k| hashes[k].clone());
                serving.insert(hash.unwrap_or_else(|| format!("unmanaged-subset:{subset}")));
            }
        }
        summary.push(RouteSummary {
            object: format!("VirtualService/{}", vs.name_any()),
            route: route["name"]
                .as_str()
                .map_or_else(|| format!("#{i}"), str::to_string),
            weights,
            header_routes: headers.clone(),
            mirror: route["mirror"]["subset"].as_str().map(|s| {
                let pct = route["mirrorPercentage"]["value"].as_f64().unwrap_or(100.0);
                (s.to_string(), pct)
            }),
        });
    }
    for (obj, kind) in [(&vs, "VirtualService"), (&dr, "DestinationRule")] {
        if let Some(seen) = observed_generation(obj)
            && seen < generation(obj)
        {
            serving.insert(format!("{UNVERIFIED}{kind} {ns}/{}", obj.name_any()));
        }
    }
    Ok(RouteObservation {
        serving: serving.into_iter().collect(),
        refused: None,
        summary,
        objects: Objects::Istio(Box::new(Observed {
            config: config.clone(),
            vs,
            dr,
            hashes,
            managed,
        })),
    })
}

/// Istio writes `status.observedGeneration` as an integer or a string.
fn observed_generation(obj: &DynamicObject) -> Option<i64> {
    let v = obj.data.pointer("/status/observedGeneration")?;
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

/// Indices of the managed routes: those named in `routes`, or the only route there is.
fn managed_routes(http: &[Value], config: &IstioRouting, ns: &str) -> Result<Vec<usize>, Error> {
    let vs = &config.virtual_service.name;
    if config.virtual_service.routes.is_empty() {
        let own: Vec<usize> = (0..http.len())
            .filter(|i| !is_inserted(&http[*i]))
            .collect();
        return match own.as_slice() {
            [one] => Ok(vec![*one]),
            _ => Err(Error::Route(format!(
                "VirtualService {ns}/{vs} has {} HTTP routes: name the ones cutover manages in trafficRouting.istio.virtualService.routes",
                own.len()
            ))),
        };
    }
    find_named(http, &config.virtual_service.routes, |name| {
        format!(
            "VirtualService {ns}/{vs} has no HTTP route named '{name}' (trafficRouting.istio.virtualService.routes)"
        )
    })
}

pub(super) async fn write(
    client: &Client,
    o: &Observed,
    plan: &TrafficPlan,
) -> Result<bool, Error> {
    let split = subset_split(plan, [o.hashes[0].as_deref(), o.hashes[1].as_deref()]);
    let names = subset_names(&o.config);
    let mut written = false;
    // Subsets first: subset_split relabels only a subset no route sends traffic to, and the
    // routes written next may point at it.
    let subsets = spec_list(&o.dr, "subsets");
    let labelled = label_subsets(&subsets, names, &split.hashes);
    if labelled != subsets {
        replace_field(
            client,
            &destination_rule(),
            &o.dr,
            "subsets",
            json!(labelled),
        )
        .await?;
        written = true;
    }
    let http = spec_list(&o.vs, "http");
    let rendered = render_http(&http, &o.managed, names, &split);
    if rendered != http {
        replace_field(client, &virtual_service(), &o.vs, "http", json!(rendered)).await?;
        written = true;
    }
    Ok(written)
}

/// Sets (Some) or removes (None) the hash label of the two named subsets; other subsets and
/// labels stay.
fn label_subsets(subsets: &[Value], names: [&str; 2], hashes: &[Option<String>; 2]) -> Vec<Value> {
    subsets
        .iter()
        .map(|s| {
            let mut s = s.clone();
            if let Some(k) = names.iter().position(|n| s["name"] == *n) {
                let labels = &mut s["labels"];
                if !labels.is_object() {
                    *labels = json!({});
                }
                if let Some(map) = labels.as_object_mut() {
                    match &hashes[k] {
                        Some(h) => {
                            map.insert(POD_TEMPLATE_HASH_LABEL.into(), json!(h));
                        }
                        None => {
                            map.remove(POD_TEMPLATE_HASH_LABEL);
                        }
                    }
                }
            }
            s
        })
        .collect()
}

/// The HTTP routes with cutover's header routes (re)inserted before the first managed route,
/// and the managed routes' weights and mirror set; every other route as it was.
fn render_http(http: &[Value], managed: &[usize], names: [&str; 2], split: &Split) -> Vec<Value> {
    render_list(
        http,
        managed,
        |route| header_routes(route, names, split),
        |route| weigh(route, names, split),
    )
}

/// The destination the managed route names first, without subset and weight: where added
/// destinations, header routes and the mirror point (with a subset).
fn destination(route: &Value, subset: &str) -> Value {
    let mut d = route["route"][0]["destination"].clone();
    if !d.is_object() {
        d = json!({});
    }
    d["subset"] = json!(subset);
    d
}

fn header_routes(route: &Value, names: [&str; 2], split: &Split) -> Vec<Value> {
    let base = match route["match"].as_array() {
        Some(m) if !m.is_empty() => m.clone(),
        _ => vec![json!({})],
    };
    split
        .header_routes
        .iter()
        .map(|(header, to)| {
            let condition = match (&header.exact, &header.prefix, &header.regex) {
                (Some(v), _, _) => json!({ "exact": v }),
                (_, Some(v), _) => json!({ "prefix": v }),
                (_, _, Some(v)) => json!({ "regex": v }),
                _ => json!({}),
            };
            let matches: Vec<Value> = base
                .iter()
                .map(|m| {
                    let mut m = m.clone();
                    if !m["headers"].is_object() {
                        m["headers"] = json!({});
                    }
                    // Istio requires header names in lower case.
                    m["headers"][header.header.to_ascii_lowercase()] = condition.clone();
                    m
                })
                .collect();
            json!({
                "name": inserted_name(*to, header),
                "match": matches,
                "route": [{ "destination": destination(route, names[*to]) }],
            })
        })
        .collect()
}

/// The managed route with one destination per subset at the split's weights (a missing one
/// added after the first's pattern) and the mirror set or removed.
fn weigh(route: &Value, names: [&str; 2], split: &Split) -> Value {
    let mut r = route.clone();
    let mut dests = list_of(&route["route"]);
    for (k, name) in names.iter().enumerate() {
        let weight = split.weights[k];
        match dests
            .iter_mut()
            .find(|d| d["destination"]["subset"] == *name)
        {
            Some(d) => d["weight"] = json!(weight),
            None => {
                dests.push(json!({ "destination": destination(route, name), "weight": weight }))
            }
        }
    }
    r["route"] = json!(dests);
    let obj = r.as_object_mut();
    if let Some(map) = obj {
        match split.mirror {
            Some((k, percent)) => {
                map.insert("mirror".into(), destination(route, names[k]));
                map.insert("mirrorPercentage".into(), json!({ "value": percent }));
            }
            None => {
                map.remove("mirror");
                map.remove("mirrorPercentage");
            }
        }
    }
    r
}

/// All traffic of the managed routes to the subset holding the stable revision (the active
/// subset when neither does), cutover's header routes and mirror removed, then the hash labels
/// taken off the subsets.
pub(super) async fn restore(
    client: &Client,
    ns: &str,
    rollout: &Rollout,
    config: &IstioRouting,
) -> Result<(), Error> {
    let observed = match observe(client, ns, config).await {
        Ok(o) => o,
        Err(Error::Route(why)) => {
            tracing::warn!(rollout = %rollout.name_any(), %why, "routes not restored");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let Objects::Istio(o) = observed.objects else {
        return Ok(());
    };
    let status = rollout.status.clone().unwrap_or_default();
    let stable = status.stable_rs.or(status.blue_green.active_selector);
    let Some(weights) = restored_weights(&o.hashes, stable.as_deref()) else {
        return Ok(());
    };
    let split = Split {
        hashes: [None, None],
        weights,
        header_routes: Vec::new(),
        mirror: None,
    };
    let names = subset_names(config);
    let http = spec_list(&o.vs, "http");
    let rendered = render_http(&http, &o.managed, names, &split);
    if rendered != http {
        replace_field(client, &virtual_service(), &o.vs, "http", json!(rendered)).await?;
    }
    let subsets = spec_list(&o.dr, "subsets");
    let unlabelled = label_subsets(&subsets, names, &[None, None]);
    if unlabelled != subsets {
        replace_field(
            client,
            &destination_rule(),
            &o.dr,
            "subsets",
            json!(unlabelled),
        )
        .await?;
    }
    Ok(())
}

/// The weights that leave all traffic on the stable revision's subset when a Rollout lets go of
/// its routes, from the revision labels the subsets carry now. None when no subset carries one:
/// an earlier pass of the cleanup already restored the routes and unlabelled the subsets (a
/// deletion is often reconciled twice, from a cache that still shows the finalizer), and
/// deciding again without labels would move all traffic to the first subset.
fn restored_weights(hashes: &[Option<String>; 2], stable: Option<&str>) -> Option<[u32; 2]> {
    if hashes.iter().all(Option::is_none) {
        return None;
    }
    let [first, second] = hashes.each_ref().map(Option::as_deref);
    let on_second = stable.is_some() && second == stable && first != stable;
    Some(if on_second { [0, 100] } else { [100, 0] })
}

#[cfg(test)]
mod restore_tests {
    use super::restored_weights;

    #[test]
    fn traffic_stays_on_the_stable_subset_and_a_second_cleanup_changes_nothing() {
        let labelled = [Some("h3".to_string()), Some("h2".to_string())];
        assert_eq!(restored_weights(&labelled, Some("h2")), Some([0, 100]));
        assert_eq!(restored_weights(&labelled, Some("h3")), Some([100, 0]));
        assert_eq!(restored_weights(&[None, None], Some("h2")), None);
    }
}
