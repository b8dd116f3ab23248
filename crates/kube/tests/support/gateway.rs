//! A gateway-controller stand-in: for every HTTPRoute in a namespace it writes
//! `status.parents` for each parentRef with `Accepted` at the route's current generation, as a
//! Gateway API implementation does once it has programmed the route. `accept(false)` makes it
//! report `Accepted=False` instead, as a gateway that rejects the route.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

pub const CONTROLLER_NAME: &str = "example.com/gateway-stand-in";

/// Handle to the running stand-in; the task ends when the handle is dropped.
pub struct GatewayStandIn {
    accept: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GatewayStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GatewayStandIn {
    pub fn start(client: Client, ns: &str) -> Self {
        let accept = Arc::new(AtomicBool::new(true));
        let flag = accept.clone();
        let api: Api<DynamicObject> =
            Api::namespaced_with(client, ns, &cutover_kube::traffic::gateway::http_route());
        let task = tokio::spawn(async move {
            loop {
                if let Ok(list) = api.list(&ListParams::default()).await {
                    for route in list.items {
                        tend(&api, &route, flag.load(Ordering::SeqCst)).await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { accept, task }
    }

    /// Accept routes (true) or refuse them (false) from their next generation on.
    pub fn accept(&self, accept: bool) {
        self.accept.store(accept, Ordering::SeqCst);
    }
}

async fn tend(api: &Api<DynamicObject>, route: &DynamicObject, accept: bool) {
    let generation = route.metadata.generation.unwrap_or(0);
    let reported = route
        .data
        .pointer("/status/parents/0/conditions/0/observedGeneration")
        .and_then(Value::as_i64);
    if reported == Some(generation) {
        return;
    }
    let (status, reason, message) = if accept {
        ("True", "Accepted", "route programmed")
    } else {
        (
            "False",
            "NotAllowedByListeners",
            "no listener of the gateway allows this route",
        )
    };
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap();
    let parents: Vec<Value> = route
        .data
        .pointer("/spec/parentRefs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|parent| {
            json!({
                "parentRef": parent,
                "controllerName": CONTROLLER_NAME,
                "conditions": [{
                    "type": "Accepted", "status": status, "reason": reason, "message": message,
                    "observedGeneration": generation, "lastTransitionTime": now.to_string(),
                }],
            })
        })
        .collect();
    let patch = json!({ "status": { "parents": parents } });
    if let Err(e) = api
        .patch_status(
            &route.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        panic!("gateway stand-in: status of {}: {e}", route.name_any());
    }
}
