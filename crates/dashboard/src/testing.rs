//! A backend held in memory, and realistic views, for the dashboard's own tests and its
//! benchmark (a thousand rollouts without a thousand processes).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use cutover_core::ops::Operation;
use cutover_local::api::RolloutView;
use futures::future::BoxFuture;
use serde_json::json;

use crate::{Backend, DashboardError, RolloutKey};

/// A value only the pod template's environment holds: it must never reach a page.
pub const SECRET: &str = "s3cr3t-env-value-never-shown";

/// Views in memory; operations are recorded, and promote makes the rollout Healthy.
#[derive(Default)]
pub struct FakeBackend {
    /// The rollouts.
    pub views: Mutex<Vec<RolloutView>>,
    /// Operations received, in order.
    pub operations: Mutex<Vec<(RolloutKey, Operation)>>,
    /// When set, every call fails with this (the backend is down).
    pub down: Mutex<Option<String>>,
    /// Reads of the backend so far (`rollouts` and `rollout`).
    pub reads: AtomicUsize,
    /// Every read waits while a test holds this for writing (a slow backend).
    pub hold: tokio::sync::RwLock<()>,
}

impl FakeBackend {
    /// A backend with these views.
    pub fn with(views: Vec<RolloutView>) -> Self {
        Self {
            views: Mutex::new(views),
            ..Self::default()
        }
    }

    async fn read(&self) -> Result<(), DashboardError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        drop(self.hold.read().await);
        self.check()
    }

    fn check(&self) -> Result<(), DashboardError> {
        match self.down.lock().ok().and_then(|d| d.clone()) {
            Some(why) => Err(DashboardError::Unavailable(why)),
            None => Ok(()),
        }
    }

    /// Changes one rollout's view in place.
    pub fn update(&self, name: &str, change: impl FnOnce(&mut RolloutView)) {
        if let Ok(mut views) = self.views.lock()
            && let Some(v) = views
                .iter_mut()
                .find(|v| v.rollout.metadata.name.as_deref() == Some(name))
        {
            change(v);
        }
    }
}

impl Backend for FakeBackend {
    fn describe(&self) -> String {
        "in memory".into()
    }

    fn rollouts(&self) -> BoxFuture<'_, Result<Vec<RolloutView>, DashboardError>> {
        Box::pin(async move {
            self.read().await?;
            Ok(self.views.lock().map(|v| v.clone()).unwrap_or_default())
        })
    }

    fn rollout<'a>(
        &'a self,
        key: &'a RolloutKey,
    ) -> BoxFuture<'a, Result<RolloutView, DashboardError>> {
        Box::pin(async move {
            self.read().await?;
            self.views
                .lock()
                .ok()
                .and_then(|v| v.iter().find(|v| RolloutKey::of(v) == *key).cloned())
                .ok_or_else(|| {
                    DashboardError::NotFound(format!(
                        "rollout {}/{}: not found",
                        key.namespace, key.name
                    ))
                })
        })
    }

    fn operate<'a>(
        &'a self,
        key: &'a RolloutKey,
        op: &'a Operation,
    ) -> BoxFuture<'a, Result<String, DashboardError>> {
        Box::pin(async move {
            self.check()?;
            let view = self.rollout(key).await?;
            if let Some(why) = cutover_core::ops::nothing_to_act_on(&view.rollout, op) {
                return Err(DashboardError::NothingToDo(why));
            }
            if let Ok(mut ops) = self.operations.lock() {
                ops.push((key.clone(), op.clone()));
            }
            if matches!(op, Operation::Promote { .. }) {
                self.update(&key.name, |v| {
                    if let Some(s) = v.rollout.status.as_mut() {
                        s.phase = Some(cutover_core::api::RolloutPhase::Healthy);
                        s.pause_conditions.clear();
                        s.message = None;
                    }
                });
            }
            Ok(format!("rollout '{}' {op:?}", key.name))
        })
    }
}

/// A rollout paused for promotion after its pre-promotion analysis: two revisions with three
/// pods each, both Services, a run with `measurements` success rates, events; `index` varies
/// the name, namespace and phase.
pub fn view(index: usize, measurements: usize) -> RolloutView {
    let name = format!("app-{index:04}");
    let namespace = format!("team-{}", index % 7);
    let phase = ["Paused", "Healthy", "Progressing", "Degraded"][index % 4];
    let (old, new) = ("6d9f7c8b5", "7b4c9d2f1");
    let pods = |hash: &str, image: &str| {
        json!({
            "hash": hash, "revision": if hash == old { 1 } else { 2 }, "images": [image], "desired": 3,
            "createdAt": "2026-11-01T10:00:00Z",
            "replicas": (0..3).map(|i| json!({
                "name": format!("{name}-{hash}-{i}"), "index": i, "pid": 1000 + i, "port": 40000 + i,
                "phase": "Running", "ready": true, "restarts": 0, "createdAt": "2026-11-01T10:00:00Z",
                "lastExit": null, "logPath": "/tmp/x.log",
            })).collect::<Vec<_>>(),
        })
    };
    let values: Vec<serde_json::Value> = (0..measurements)
        .map(|i| {
            json!({
                "phase": if i % 5 == 4 { "Failed" } else { "Successful" },
                "startedAt": format!("2026-11-01T10:{:02}:{:02}Z", 5 + i / 60, i % 60),
                "finishedAt": format!("2026-11-01T10:{:02}:{:02}Z", 5 + i / 60, i % 60),
                "value": format!("[{}]", if i % 5 == 4 { 0.9 } else { 0.99 }),
            })
        })
        .collect();
    let value = json!({
        "rollout": {
            "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": namespace, "generation": 2,
                         "creationTimestamp": "2026-11-01T09:00:00Z"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{
                    "name": "app", "image": "shop:v2", "command": ["shop", "--password", SECRET],
                    "env": [{"name": "DB_PASSWORD", "value": SECRET}],
                }]}},
                "strategy": {"blueGreen": {"activeService": format!("{name}-active"),
                                           "previewService": format!("{name}-preview"),
                                           "trafficRouting": {"headerRoutes": [{"header": "x-canary", "exact": "true"}]}}},
            },
            "status": {
                "phase": phase, "message": if phase == "Paused" { "BlueGreenPause" } else { "" },
                "observedGeneration": 2, "currentPodHash": new, "stableRS": old, "currentRevision": 2,
                "blueGreen": {"activeSelector": old, "previewSelector": new,
                              "switch": {"to": old, "startedAt": "2026-11-01T09:01:00.000000Z",
                                         "verifiedAt": "2026-11-01T09:01:00.412000Z", "seconds": 0.412}},
                "pauseConditions": if phase == "Paused" { json!([{"reason": "BlueGreenPause", "startTime": "2026-11-01T10:06:00Z"}]) } else { json!([]) },
                "controllerPause": phase == "Paused",
                "replicas": 6, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3, "HPAReplicas": 3,
                "conditions": [{"type": "Progressing", "status": "True", "reason": "RolloutPaused",
                                "message": "waiting for promotion", "lastTransitionTime": "2026-11-01T10:06:00Z"}],
                "duration": {"revision": 2, "startedAt": "2026-11-01T10:00:00.000000Z",
                             "pausedAt": "2026-11-01T10:06:00.000000Z", "pausedSeconds": 0.0},
            },
        },
        "revisions": [pods(new, "shop:v2"), pods(old, "shop:v1")],
        "services": [
            {"name": format!("{name}-active"), "address": "127.0.0.1:8080", "selector": old, "serving": [old], "generation": 3},
            {"name": format!("{name}-preview"), "address": "127.0.0.1:8081", "selector": new, "serving": [new], "generation": 2},
        ],
        "events": (0..10).map(|i| json!({"at": format!("2026-11-01T10:0{i}:00Z"), "severity": "Normal",
                                          "reason": "RolloutUpdated", "message": format!("step {i}")})).collect::<Vec<_>>(),
        "runs": [{
            "name": format!("{name}-{new}-2-pre"), "rollout": name, "kind": "pre", "hash": new,
            "phase": "Successful", "createdAt": "2026-11-01T10:05:00Z", "terminated": false,
            "status": {"phase": "Successful", "metricResults": [{
                "name": "success-rate", "phase": "Successful", "measurements": values,
                "count": measurements, "successful": measurements, "failed": 0, "inconclusive": 0, "error": 0,
                "consecutiveError": 0, "consecutiveSuccess": 0, "dryRun": false,
                "metadata": {"query": SECRET},
            }]},
            "metrics": [{"name": "success-rate", "provider": "builtin", "successCondition": "result[0] >= 0.95",
                         "failureCondition": "result[0] < 0.5", "count": "10", "interval": "1s"}],
        }],
    });
    serde_json::from_value(value).unwrap_or_else(|e| panic!("sample view: {e}"))
}

/// The list page of `views` as the server draws it, for the benchmark.
pub fn render_list(views: &[RolloutView], query: &crate::pages::list::ListQuery) -> String {
    let frame = crate::html::Frame {
        root: "",
        source: "in memory",
        read_only: false,
    };
    crate::pages::list::page(&frame, views, query, None, jiff::Timestamp::now(), None)
}
