//! A kubelet stand-in: registers a Node, binds the namespace's Pending pods to it, marks them
//! Running and Ready with a unique fake IP (10.244.x.y: the Endpoints controller refuses
//! loopback addresses), finishes their deletion (no kubelet confirms it
//! otherwise), and marks pods unready on demand.
//!
//! A pod whose first container's image ends with `:crashloop` crash-loops instead: Running,
//! never ready, its container waiting in `CrashLoopBackOff` after exiting with code 1 and the
//! message `panic: missing DATABASE_URL`.
//!
//! Pods owned by a Job run to an end instead (nothing is executed): the last word of the first
//! container's `command` followed by its `args` decides, as if it were the program run —
//! `true` (`["true"]`, `["sh", "-c", "true"]`, `["/bin/true"]`) exits 0 and the pod Succeeded,
//! `false` exits 1 and the pod Failed; any other command keeps the pod Running until deleted.
//!
//! With [`Kubelet::run_cutover`], a Job pod whose first container's command is `cutover` is
//! really executed, with the given binary on this host: its `env` (values and Secret / ConfigMap
//! keys resolved), its ConfigMap volumes written to a temporary directory that replaces the mount
//! path in the arguments, and its termination-message file likewise; the exit code decides
//! Succeeded or Failed and the file (or, under `FallbackToLogsOnError`, stderr's tail) becomes
//! the container's termination message.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
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
    /// The binary that runs `cutover` Job pods; None: they follow the command convention.
    cutover: Option<PathBuf>,
    /// `cutover` pods started, by name.
    executing: BTreeSet<String>,
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

    /// Runs Job pods whose command is `cutover` with `bin` on this host.
    pub fn run_cutover(&self, bin: impl Into<PathBuf>) {
        self.state.lock().unwrap().cutover = Some(bin.into());
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
        bind(client, ns, &name, NODE).await;
    }
    if crash_loops(pod) {
        let waiting = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|c| !c.is_empty());
        if !waiting {
            let ip = format!("10.244.250.{}", state.lock().unwrap().ips.len() % 250 + 2);
            let _ = pods
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&crash_loop_status(pod, &ip)),
                )
                .await;
        }
        return;
    }
    if owned_by_job(pod) {
        let cutover = state.lock().unwrap().cutover.clone();
        match cutover.filter(|_| runs_cutover(pod)) {
            Some(bin) => start_cutover(client, ns, pod, bin, state).await,
            None => finish_job_pod(pods, pod).await,
        }
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
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.to_string());
    let patch = running_status(&ip, started, want_ready);
    let _ = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
}

/// Binds pod `ns/name` to `node`, as the scheduler would.
pub async fn bind(client: &Client, ns: &str, name: &str, node: &str) {
    let body = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": { "name": name, "namespace": ns },
        "target": { "apiVersion": "v1", "kind": "Node", "name": node },
    });
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let _ = client.request_text(req).await;
}

/// The status patch of a running pod at `ip`, ready or not, started at `started` (now when
/// unset), as a kubelet reports it.
pub fn running_status(ip: &str, started: Option<String>, ready: bool) -> serde_json::Value {
    let now = jiff::Timestamp::now().to_string();
    let status = if ready { "True" } else { "False" };
    json!({ "status": {
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": ip,
        "podIPs": [{ "ip": ip }],
        "startTime": started.unwrap_or_else(|| now.clone()),
        "conditions": [
            { "type": "PodScheduled", "status": "True", "lastTransitionTime": now },
            { "type": "Initialized", "status": "True", "lastTransitionTime": now },
            { "type": "ContainersReady", "status": status, "lastTransitionTime": now },
            { "type": "Ready", "status": status, "lastTransitionTime": now },
        ],
    }})
}

fn crash_loops(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.as_deref())
        .is_some_and(|i| i.ends_with(":crashloop"))
}

/// A running pod whose container keeps exiting: unready, waiting in CrashLoopBackOff.
fn crash_loop_status(pod: &Pod, ip: &str) -> serde_json::Value {
    let mut patch = running_status(ip, None, false);
    let now = jiff::Timestamp::now().to_string();
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map_or("app".to_string(), |c| c.name.clone());
    patch["status"]["containerStatuses"] = json!([{
        "name": container, "image": "stand-in", "imageID": "", "ready": false,
        "restartCount": 4,
        "state": { "waiting": { "reason": "CrashLoopBackOff",
                                "message": "back-off 1m20s restarting failed container" } },
        "lastState": { "terminated": {
            "exitCode": 1, "reason": "Error", "message": "starting\npanic: missing DATABASE_URL\n",
            "startedAt": now, "finishedAt": now,
        }},
    }]);
    patch
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

fn runs_cutover(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.command.as_ref()?.first().cloned())
        .is_some_and(|c| c.rsplit('/').next() == Some("cutover"))
}

/// Marks the pod Running and executes its container in the background, once.
async fn start_cutover(client: &Client, ns: &str, pod: &Pod, bin: PathBuf, state: &Mutex<State>) {
    let name = pod.name_any();
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed"))
        || !state.lock().unwrap().executing.insert(name)
    {
        return;
    }
    let (client, ns, pod) = (client.clone(), ns.to_string(), pod.clone());
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let now = jiff::Timestamp::now().to_string();
        let running =
            json!({ "status": { "phase": "Running", "hostIP": "127.0.0.1", "startTime": now } });
        let _ = pods
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&running),
            )
            .await;
        let (code, message) = match execute(&client, &ns, &pod, &bin).await {
            Ok(done) => done,
            Err(e) => (127, format!("stand-in kubelet: {e}")),
        };
        let finished = jiff::Timestamp::now().to_string();
        let container = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .map_or("main".to_string(), |c| c.name.clone());
        let patch = json!({ "status": {
            "phase": if code == 0 { "Succeeded" } else { "Failed" },
            "containerStatuses": [{
                "name": container, "image": "stand-in", "imageID": "", "ready": false, "restartCount": 0,
                "state": { "terminated": {
                    "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                    "message": message, "startedAt": now, "finishedAt": finished,
                }},
            }],
        }});
        let _ = pods
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
    });
}

/// Runs the pod's first container with `bin`; returns its exit code and termination message.
async fn execute(
    client: &Client,
    ns: &str,
    pod: &Pod,
    bin: &std::path::Path,
) -> Result<(i32, String), String> {
    let spec = pod.spec.as_ref().ok_or("no pod spec")?;
    let container = spec.containers.first().ok_or("no container")?;
    let dir = tempfile::Builder::new()
        .prefix("stand-in-pod-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    // Mount path → host directory, for every ConfigMap volume the container mounts.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut paths: Vec<(String, String)> = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = spec.volumes.iter().flatten().find(|v| v.name == mount.name) else {
            continue;
        };
        let Some(source) = &volume.config_map else {
            continue;
        };
        let cm = config_maps
            .get(&source.name)
            .await
            .map_err(|e| format!("configmap {}: {e}", source.name))?;
        let host = dir.path().join(&volume.name);
        std::fs::create_dir_all(&host).map_err(|e| e.to_string())?;
        for (key, value) in cm.data.iter().flatten() {
            std::fs::write(host.join(key), value).map_err(|e| e.to_string())?;
        }
        paths.push((mount.mount_path.clone(), host.display().to_string()));
    }
    let log = dir.path().join("termination-log");
    std::fs::write(&log, "").map_err(|e| e.to_string())?;
    let log_in_pod = container
        .termination_message_path
        .clone()
        .unwrap_or("/dev/termination-log".into());
    paths.push((log_in_pod, log.display().to_string()));
    let substitute = |arg: &String| {
        for (from, to) in &paths {
            if arg == from {
                return to.clone();
            }
            if let Some(rest) = arg.strip_prefix(&format!("{from}/")) {
                return format!("{to}/{rest}");
            }
        }
        arg.clone()
    };
    let args: Vec<String> = container
        .command
        .iter()
        .flatten()
        .skip(1)
        .chain(container.args.iter().flatten())
        .map(substitute)
        .collect();
    let mut env: Vec<(String, String)> = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), _) => v.clone(),
            (None, Some(from)) => {
                if let Some(key) = &from.secret_key_ref {
                    let secret = secrets
                        .get(&key.name)
                        .await
                        .map_err(|e| format!("secret {}: {e}", key.name))?;
                    let bytes = secret
                        .data
                        .and_then(|d| d.get(&key.key).cloned())
                        .ok_or(format!("secret {} has no key {}", key.name, key.key))?;
                    String::from_utf8(bytes.0).map_err(|e| e.to_string())?
                } else if let Some(key) = &from.config_map_key_ref {
                    let cm = config_maps
                        .get(&key.name)
                        .await
                        .map_err(|e| format!("configmap {}: {e}", key.name))?;
                    cm.data
                        .and_then(|d| d.get(&key.key).cloned())
                        .ok_or(format!("configmap {} has no key {}", key.name, key.key))?
                } else {
                    continue;
                }
            }
            (None, None) => String::new(),
        };
        env.push((var.name.clone(), value));
    }
    let bin = bin.to_path_buf();
    let fallback = container.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .output()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let code = out.status.code().unwrap_or(137);
    let mut message = std::fs::read_to_string(&log).unwrap_or_default();
    if message.trim().is_empty() && code != 0 && fallback {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        message = lines[lines.len().saturating_sub(80)..].join("\n");
    }
    Ok((code, message))
}
