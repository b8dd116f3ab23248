//! Traffic routing beyond Service selectors: an Istio VirtualService and DestinationRule, or
//! Gateway API HTTPRoutes, carry out `blueGreen.trafficRouting`. What goes where is decided in
//! core ([`cutover_core::traffic::routes`] and [`cutover_core::traffic::Split`]); this module
//! reads the objects back before planning (what the routes serve, whether the mesh or gateway
//! has taken the last change), renders the decision into the managed routes only, and gives the
//! objects back when the Rollout is deleted.
//!
//! Writes are read-modify-write under the read `resourceVersion` (a merge patch that carries it,
//! so the API server refuses it with 409 if the object changed meanwhile). Server-side apply
//! cannot own "only the managed routes": both CRDs declare their route lists atomic
//! (Istio's `spec.http` has no list-type keys, Gateway API's `spec.rules` is
//! `x-kubernetes-list-type: atomic`), so applying one entry would take over, or drop, the
//! user's others. Replacing the list as read, with only the managed entries changed, keeps
//! every other route and field, and the version check keeps a concurrent edit from being lost.

pub mod gateway;
pub mod istio;

use std::collections::BTreeMap;
use std::fmt;

use cutover_core::api::{HeaderRoute, POD_TEMPLATE_HASH_LABEL, Rollout};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::cached::CachedService;
use crate::error::{Error, is_not_found};
use crate::observe::World;

/// Prefix of the names of the routes and rules cutover inserts (header routes), so that it
/// finds and removes exactly its own.
pub const INSERTED_PREFIX: &str = "cutover-header-";

/// How often a Rollout is planned again while a route change it wrote is not yet taken by the
/// mesh or gateway (routes are read, not watched).
pub const ROUTE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A managed route as read back: its weights, header routes and mirror, for status and the
/// CLI.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteSummary {
    /// `VirtualService/name` or `HTTPRoute/name`.
    pub object: String,
    /// The route or rule name (`#index` when unnamed).
    pub route: String,
    /// Backend (subset or Service) and weight.
    pub weights: Vec<(String, i64)>,
    /// Header conditions inserted before the route, e.g. `x-canary=true`.
    pub header_routes: Vec<String>,
    /// Backend mirrored to and percentage.
    pub mirror: Option<(String, f64)>,
}

impl fmt::Display for RouteSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let weights: Vec<String> = self
            .weights
            .iter()
            .map(|(b, w)| format!("{b}={w}"))
            .collect();
        write!(f, "{} {}: {}", self.object, self.route, weights.join(" "))?;
        if !self.header_routes.is_empty() {
            write!(f, "; headers {}", self.header_routes.join(", "))?;
        }
        if let Some((backend, pct)) = &self.mirror {
            write!(f, "; mirror {pct}% to {backend}")?;
        }
        Ok(())
    }
}

/// What the managed routes do now, read before planning.
pub struct RouteObservation {
    /// Revisions the routes send traffic to (weight above zero), plus one `unverified:…` entry
    /// per object whose last change the mesh or gateway has not taken yet: the active Service's
    /// switch counts as verified only once this holds the new revision alone.
    pub serving: Vec<String>,
    /// The gateway refused the route's current generation: why, naming the route.
    pub refused: Option<String>,
    /// Each managed route as read.
    pub summary: Vec<RouteSummary>,
    objects: Objects,
}

impl RouteObservation {
    /// Some object's last change is not yet taken by the mesh or gateway.
    pub fn unverified(&self) -> bool {
        self.serving.iter().any(|s| s.starts_with(UNVERIFIED))
    }
}

/// Prefix of the `serving` entries of objects whose last change is not yet taken.
pub(crate) const UNVERIFIED: &str = "unverified:";

enum Objects {
    // Boxed: two whole objects against a list of them.
    Istio(Box<istio::Observed>),
    Gateway(gateway::Observed),
}

/// Service name → the `rollouts-pod-template-hash` its selector holds.
pub type Selectors = BTreeMap<String, String>;

/// The selectors of `services`.
pub fn selectors<'a>(services: impl IntoIterator<Item = &'a Service>) -> Selectors {
    services
        .into_iter()
        .filter_map(|s| {
            let hash = s
                .spec
                .as_ref()?
                .selector
                .as_ref()?
                .get(POD_TEMPLATE_HASH_LABEL)?;
            Some((s.name_any(), hash.clone()))
        })
        .collect()
}

/// The selectors of `services` as the controller caches them.
pub fn cached_selectors<'a>(services: impl IntoIterator<Item = &'a CachedService>) -> Selectors {
    services
        .into_iter()
        .filter_map(|s| Some((s.name_any(), s.selector_hash.clone()?)))
        .collect()
}

/// One line per managed route (weights, header routes, mirror) for `cutover get`, or why the
/// routes cannot be read.
pub async fn summaries(
    client: &Client,
    ns: &str,
    rollout: &Rollout,
    services: &[Service],
) -> Vec<String> {
    match observe(client, ns, rollout, &selectors(services)).await {
        Ok(Some(o)) => o.summary.iter().map(ToString::to_string).collect(),
        Ok(None) => Vec::new(),
        Err(e) => vec![format!("cannot read the routes: {e}")],
    }
}

/// Reads the routing objects of `rollout`; None when it names none.
pub async fn observe(
    client: &Client,
    ns: &str,
    rollout: &Rollout,
    selectors: &Selectors,
) -> Result<Option<RouteObservation>, Error> {
    let Some(rules) = &rollout.spec.strategy.blue_green.traffic_routing else {
        return Ok(None);
    };
    if let Some(config) = &rules.istio {
        return istio::observe(client, ns, config).await.map(Some);
    }
    if let Some(config) = rules
        .gateway_api
        .as_ref()
        .filter(|g| !g.http_routes.is_empty())
    {
        let bg = &rollout.spec.strategy.blue_green;
        return gateway::observe(client, ns, config, bg, selectors)
            .await
            .map(Some);
    }
    Ok(None)
}

/// Renders the routes `planned` (the Rollout with the status the plan wrote) asks for into the
/// objects observed; writes only what differs. True when something was written.
pub async fn write(
    client: &Client,
    planned: &Rollout,
    world: &World,
    observed: &RouteObservation,
) -> Result<bool, Error> {
    let plan = cutover_core::traffic::routes(planned, preview_available(planned, world));
    match &observed.objects {
        Objects::Istio(o) => istio::write(client, o, &plan).await,
        Objects::Gateway(o) => gateway::write(client, o, &plan).await,
    }
}

/// The Rollout is being deleted: all traffic to the stable revision, cutover's header routes,
/// mirrors and labels removed.
pub async fn restore(client: &Client, ns: &str, rollout: &Rollout) -> Result<(), Error> {
    let Some(rules) = &rollout.spec.strategy.blue_green.traffic_routing else {
        return Ok(());
    };
    if let Some(config) = &rules.istio {
        istio::restore(client, ns, rollout, config).await?;
    }
    if let Some(config) = &rules.gateway_api {
        gateway::restore(client, ns, rollout, config).await?;
    }
    Ok(())
}

/// The planned preview revision has all its pods available: a weighted share or mirror only
/// starts then (as on one host).
fn preview_available(planned: &Rollout, world: &World) -> bool {
    let current = planned
        .status
        .as_ref()
        .and_then(|s| s.current_pod_hash.as_deref());
    world
        .observed
        .revisions
        .iter()
        .any(|r| Some(r.hash.as_str()) == current && r.desired > 0 && r.available >= r.desired)
}

/// One header condition as text (`x-canary=true`), for names and summaries.
pub(crate) fn header_label(route: &HeaderRoute) -> String {
    match (&route.exact, &route.prefix, &route.regex) {
        (Some(v), _, _) => format!("{}={v}", route.header),
        (_, Some(v), _) => format!("{}^={v}", route.header),
        (_, _, Some(v)) => format!("{}~={v}", route.header),
        _ => route.header.clone(),
    }
}

/// Gets a routing object; a missing one is a [`Error::Route`] that names it.
pub(crate) async fn get(
    client: &Client,
    ns: &str,
    ar: &ApiResource,
    name: &str,
) -> Result<DynamicObject, Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    match api.get(name).await {
        Ok(o) => Ok(o),
        Err(e) if is_not_found(&e) => Err(Error::Route(format!(
            "{} {ns}/{name} named in trafficRouting does not exist (or the {} CRD is not installed)",
            ar.kind, ar.group
        ))),
        Err(e) => Err(Error::kube(format!("get {} {ns}/{name}", ar.kind), e)),
    }
}

/// Replaces `spec.<field>` of `obj` with `value`, on the condition that the object is still at
/// the version read (see the module docs for why not server-side apply).
pub(crate) async fn replace_field(
    client: &Client,
    ar: &ApiResource,
    obj: &DynamicObject,
    field: &str,
    value: Value,
) -> Result<(), Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, ar);
    let patch = json!({
        "metadata": { "resourceVersion": obj.resource_version() },
        "spec": { field: value },
    });
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::kube(format!("patch {} {ns}/{name}", ar.kind), e))?;
    tracing::info!(object = %format!("{} {ns}/{name}", ar.kind), "routes written");
    Ok(())
}

/// The entries of the object's `spec.<field>` list.
pub(crate) fn spec_list(obj: &DynamicObject, field: &str) -> Vec<Value> {
    list_of(&obj.data["spec"][field])
}

/// The entries of a JSON list (none when it is not one).
pub(crate) fn list_of(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// A route or rule cutover inserted (and removes or rewrites on every write).
pub(crate) fn is_inserted(entry: &Value) -> bool {
    entry["name"]
        .as_str()
        .is_some_and(|n| n.starts_with(INSERTED_PREFIX))
}

/// The name of an inserted route or rule: the prefix, the backend index and the header
/// condition, in characters both CRDs accept for names.
pub(crate) fn inserted_name(backend: usize, route: &HeaderRoute) -> String {
    let text: String = crate::dns_safe(&header_label(route))
        .chars()
        .take(40)
        .collect();
    let text = text.trim_matches('-');
    format!(
        "{INSERTED_PREFIX}{backend}-{}",
        if text.is_empty() { "h" } else { text }
    )
}

/// Indices of the entries of `list` named `names`, in that order; `missing` says what is wrong
/// when one is not there.
pub(crate) fn find_named(
    list: &[Value],
    names: &[String],
    missing: impl Fn(&str) -> String,
) -> Result<Vec<usize>, Error> {
    names
        .iter()
        .map(|name| {
            list.iter()
                .position(|r| r["name"] == name.as_str())
                .ok_or_else(|| Error::Route(missing(name)))
        })
        .collect()
}

/// A route list with cutover's inserted entries dropped, `inserted(first managed)` put right
/// before the first managed entry, and each managed entry replaced by `managed_entry(entry)`;
/// every other entry as it was.
pub(crate) fn render_list(
    list: &[Value],
    managed: &[usize],
    inserted: impl Fn(&Value) -> Vec<Value>,
    managed_entry: impl Fn(&Value) -> Value,
) -> Vec<Value> {
    let first = managed.iter().min().copied();
    let mut out = Vec::with_capacity(list.len() + 1);
    for (i, entry) in list.iter().enumerate() {
        if is_inserted(entry) {
            continue;
        }
        if Some(i) == first {
            out.extend(inserted(entry));
        }
        if managed.contains(&i) {
            out.push(managed_entry(entry));
        } else {
            out.push(entry.clone());
        }
    }
    out
}

/// The object's `metadata.generation`.
pub(crate) fn generation(obj: &DynamicObject) -> i64 {
    obj.metadata.generation.unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_reads_as_one_line() {
        let s = RouteSummary {
            object: "VirtualService/my-app".into(),
            route: "primary".into(),
            weights: vec![("blue".into(), 90), ("green".into(), 10)],
            header_routes: vec!["x-canary:exact=true".into()],
            mirror: Some(("green".into(), 100.0)),
        };
        assert_eq!(
            s.to_string(),
            "VirtualService/my-app primary: blue=90 green=10; headers x-canary:exact=true; mirror 100% to green"
        );
    }

    #[test]
    fn inserted_names_are_valid_rule_names() {
        let route = HeaderRoute {
            header: "X-Canary".into(),
            regex: Some("^(a|b)$".into()),
            ..HeaderRoute::default()
        };
        let name = inserted_name(1, &route);
        assert!(name.starts_with(INSERTED_PREFIX), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
        assert!(!name.ends_with('-'), "{name}");
    }
}
