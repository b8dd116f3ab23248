//! A kubelet stand-in: registers a Node, binds the namespace's Pending pods to it, marks them
//! Running and Ready with a unique fake IP (10.244.x.y: the Endpoints controller refuses
//! loopback addresses), finishes their deletion (no kubelet confirms it
//! otherwise), and marks pods unready on demand.
//!
//! Pods owned by a Job run to an end instead (nothing is executed): the last word of the first
//! container's `command` followed by its `args` decides, as if it were the program run —
//! `true` (`["true"]`, `["sh", "-c", "true"]`, `["/bin/true"]`) exits 0 and the pod Succeeded,
//! `false` exits 1 and the pod Failed; any other command keeps the pod Running until deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

pub const NODE: &str = "stand-in";

#[derive(Default)]
struct State {
    /// Pods held unready, by name.
    unready: BTreeSet<String>,
    /// New pods start unready while true.
    hold_new: bool,
    ips: BTreeMap<String, String>,
    next_ip: u32,
}

/// Handle to the running stand-in; the task ends when the handle is dropped.
pub struct Kubelet {
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Kubelet {
    pub async fn start(client: Client, ns: &str) -> Self {
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": NODE, "labels": { "kubernetes.io/hostname": NODE } },
        }))
        .unwrap();
        let _ = nodes.create(&PostParams::default(), &node).await;
        let state = Arc::new(Mutex::new(State {
            next_ip: 2,
            ..State::default()
        }));
        let task = tokio::spawn(run(client, ns.to_string(), state.clone()));
        Self { state, task }
    }

    /// Holds a pod unready (true) or lets it be ready again (false).
    pub fn set_unready(&self, pod: &str, unready: bool) {
        let mut s = self.state.lock().unwrap();
        if unready {
            s.unready.insert(pod.to_string());
        } else {
            s.unready.remove(pod);
        }
    }

    /// New pods start unready while `hold` is true; releasing makes them ready.
    pub fn hold_new_pods(&self, hold: bool) {
        let mut s = self.state.lock().unwrap();
        s.hold_new = hold;
        if !hold {
            s.unready.clear();
        }
    }
}

async fn run(client: Client, ns: String, state: Arc<Mutex<State>>) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    loop {
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for pod in list.items {
                tend(&client, &pods, &ns, &pod, &state).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_ready(pod: &Pod) -> Option<bool> {
    let s = pod.status.as_ref()?;
    if s.phase.as_deref() != Some("Running") {
        return None;
    }
    Some(
        s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
    )
}

async fn tend(client: &Client, pods: &Api<Pod>, ns: &str, pod: &Pod, state: &Mutex<State>) {
    let name = pod.name_any();
    if pod.metadata.deletion_timestamp.is_some() {
        let _ = pods
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await;
        return;
    }
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some();
    if !bound {
        let body = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": { "name": name, "namespace": ns },
            "target": { "apiVersion": "v1", "kind": "Node", "name": NODE },
        });
        let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap();
        let _ = client.request_text(req).await;
    }
    if owned_by_job(pod) {
        finish_job_pod(pods, pod).await;
        return;
    }
    let (want_ready, ip) = {
        let mut s = state.lock().unwrap();
        if is_ready(pod).is_none() && s.hold_new {
            s.unready.insert(name.clone());
        }
        let ip = match s.ips.get(&name) {
            Some(ip) => ip.clone(),
            None => {
                let n = s.next_ip;
                s.next_ip += 1;
                let ip = format!("10.244.{}.{}", n / 250, n % 250 + 2);
                s.ips.insert(name.clone(), ip.clone());
                ip
            }
        };
        (!s.unready.contains(&name), ip)
    };
    if is_ready(pod) == Some(want_ready) {
        return;
    }
    let now = jiff::Timestamp::now().to_string();
    let status = if want_ready { "True" } else { "False" };
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map_or(now.clone(), |t| t.0.to_string());
    let patch = json!({ "status": {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": ip,
        "podIPs": [{ "ip": ip }],
        "startTime": started,
        "conditions": [
            { "type": "PodScheduled", "status": "True", "lastTransitionTime": now },
            { "type": "Initialized", "status": "True", "lastTransitionTime": now },
            { "type": "ContainersReady", "status": status, "lastTransitionTime": now },
            { "type": "Ready", "status": status, "lastTransitionTime": now },
        ],
    }});
    let _ = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
}

fn owned_by_job(pod: &Pod) -> bool {
    pod.owner_references().iter().any(|o| o.kind == "Job")
}

/// The exit code of a Job's pod by the convention in the module doc; None: it keeps running.
fn exit_code(pod: &Pod) -> Option<i32> {
    let container = pod.spec.as_ref()?.containers.first()?;
    let words: Vec<&String> = container
        .command
        .iter()
        .flatten()
        .chain(container.args.iter().flatten())
        .collect();
    match words.last()?.rsplit('/').next()? {
        "true" => Some(0),
        "false" => Some(1),
        _ => None,
    }
}

async fn finish_job_pod(pods: &Api<Pod>, pod: &Pod) {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed" | "Running")) {
        return;
    }
    let now = jiff::Timestamp::now().to_string();
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map_or("main".to_string(), |c| c.name.clone());
    let (phase, state) = match exit_code(pod) {
        Some(code) => (
            if code == 0 { "Succeeded" } else { "Failed" },
            json!({ "terminated": {
                "exitCode": code,
                "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": now, "finishedAt": now,
            }}),
        ),
        None => ("Running", json!({ "running": { "startedAt": now } })),
    };
    let patch = json!({ "status": {
        "phase": phase,
        "hostIP": "127.0.0.1",
        "startTime": now,
        "containerStatuses": [{
            "name": container, "image": "stand-in", "imageID": "", "ready": false,
            "restartCount": 0, "state": state,
        }],
    }});
    let _ = pods
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await;
}
