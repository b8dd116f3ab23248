//! AnalysisRuns measured by the controller, against a real kube-apiserver and
//! kube-controller-manager (1.20, built by scripts/kube-test-env), a kubelet stand-in that
//! also finishes Jobs' pods (see tests/support/kubelet.rs), a local HTTP server for `web`
//! metrics, and the controller running in-process. One server is shared; the independent
//! scenarios run concurrently, the controller restart last.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::Path;
use axum::routing::get;
use cutover_core::api::{
    AnalysisPhase, AnalysisRun, AnalysisRunStatus, POD_TEMPLATE_HASH_LABEL, Rollout, RolloutPhase,
};
use cutover_kube::analysisrun::{JOB_RUN_LABEL, job_name};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::kubelet::Kubelet;
use support::{KubeEnv, hash_of, template, wait_for};

const NS: &str = "analysis";

/// Requests to `/count/{key}`, by key.
type Hits = Arc<Mutex<BTreeMap<String, u32>>>;

/// The web metrics' server: `/healthy` answers `{"ok": true}`, `/failing` `{"ok": false}`,
/// `/count/{key}` `{"ok": true}` and counts the requests.
async fn web_server(hits: Hits) -> SocketAddr {
    let app = axum::Router::new()
        .route("/healthy", get(|| async { Json(json!({ "ok": true })) }))
        .route("/failing", get(|| async { Json(json!({ "ok": false })) }))
        .route(
            "/count/{key}",
            get(move |Path(key): Path<String>| async move {
                *hits.lock().unwrap().entry(key).or_default() += 1;
                Json(json!({ "ok": true }))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn start_controller(client: &Client) -> tokio::task::JoinHandle<()> {
    support::start_controller(client, NS)
}

fn service(name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "namespace": NS },
        "spec": {
            "selector": { "app": app },
            "ports": [{ "name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP" }],
        },
    })
}

/// A web metric reading `{$.ok}` from `url`, `count` times a second apart.
fn web_metric(name: &str, url: &str, count: Option<i32>) -> Value {
    let mut m = json!({
        "name": name,
        "interval": "1s",
        "successCondition": "result == true",
        "provider": { "web": { "url": url, "jsonPath": "{$.ok}" } },
    });
    if let Some(c) = count {
        m["count"] = json!(c);
    }
    m
}

fn analysis_run(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "cutover.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": { "name": name, "namespace": NS },
        "spec": spec,
    })
}

struct Test {
    /// The controller's identity: deploy/install.yaml's ServiceAccount and RBAC.
    controller_client: Client,
    env: KubeEnv,
    client: Client,
    runs: Api<AnalysisRun>,
    web: SocketAddr,
    hits: Hits,
}

impl Test {
    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.web)
    }

    async fn status(&self, run: &str) -> Option<AnalysisRunStatus> {
        self.runs.get_opt(run).await.unwrap()?.status
    }

    /// Waits until the run named `run` is finished; returns its status.
    async fn finished(&self, run: &str, secs: u64) -> AnalysisRunStatus {
        wait_for(secs, &format!("analysisrun {run} finished"), || async {
            let s = self.status(run).await?;
            s.phase
                .is_some_and(AnalysisPhase::is_completed)
                .then_some(s)
        })
        .await
    }

    /// Waits until the metric `metric` of `run` has at least `n` finished measurements.
    async fn measured(&self, run: &str, metric: &str, n: usize) -> AnalysisRunStatus {
        wait_for(
            20,
            &format!("{n} measurements of {run}/{metric}"),
            || async {
                let s = self.status(run).await?;
                let r = s.metric_results.iter().find(|r| r.name == metric)?;
                let done = r.measurements.iter().filter(|m| m.phase.is_completed());
                (done.count() >= n).then_some(s)
            },
        )
        .await
    }

    /// A Rollout `app` on `image` with a pre-promotion analysis reading `path` of the web
    /// server, its Services, and the template; waits until v1 is Healthy.
    async fn rollout(&self, app: &str, path: &str) {
        self.env.apply(service(&format!("{app}-active"), app)).await;
        self.env
            .apply(service(&format!("{app}-preview"), app))
            .await;
        self.env
            .apply(json!({
                "apiVersion": "cutover.dev/v1alpha1", "kind": "AnalysisTemplate",
                "metadata": { "name": format!("{app}-health"), "namespace": NS },
                "spec": {
                    "args": [{ "name": "url" }],
                    "metrics": [web_metric("health", "{{args.url}}", Some(2))],
                },
            }))
            .await;
        self.env
            .apply(json!({
                "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
                "metadata": { "name": app, "namespace": NS },
                "spec": {
                    "replicas": 1,
                    "selector": { "matchLabels": { "app": app } },
                    "template": template(app, "app:1"),
                    "strategy": { "blueGreen": {
                        "activeService": format!("{app}-active"),
                        "previewService": format!("{app}-preview"),
                        "scaleDownDelaySeconds": 0,
                        "prePromotionAnalysis": {
                            "templates": [{ "templateName": format!("{app}-health") }],
                            "args": [{ "name": "url", "value": self.url(path) }],
                        },
                    }},
                },
            }))
            .await;
        self.wait_rollout(app, "initial deploy Healthy", |s| {
            s.phase == Some(RolloutPhase::Healthy)
        })
        .await;
    }

    async fn wait_rollout(
        &self,
        app: &str,
        what: &str,
        check: impl Fn(&cutover_core::api::RolloutStatus) -> bool,
    ) -> Rollout {
        let rollouts: Api<Rollout> = Api::namespaced(self.client.clone(), NS);
        wait_for(60, &format!("{app}: {what}"), || async {
            let r = rollouts.get(app).await.ok()?;
            check(r.status.as_ref()?).then_some(r)
        })
        .await
    }

    async fn set_image(&self, app: &str, image: &str) {
        let rollouts: Api<Rollout> = Api::namespaced(self.client.clone(), NS);
        let patch = json!({ "spec": { "template": template(app, image) } });
        rollouts
            .patch(app, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }

    /// The pre-promotion run of `app`'s revision `hash`, once it is finished.
    async fn pre_run(&self, app: &str, hash: &str) -> (String, AnalysisRunStatus) {
        let selector = format!("cutover.dev/rollout={app},{POD_TEMPLATE_HASH_LABEL}={hash}");
        let name = wait_for(60, &format!("{app}: pre-promotion run"), || async {
            let list = self
                .runs
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            list.items.first().map(ResourceExt::name_any)
        })
        .await;
        let status = self.finished(&name, 30).await;
        (name, status)
    }

    async fn active_selector(&self, app: &str) -> Option<String> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), NS);
        let s = services.get(&format!("{app}-active")).await.unwrap();
        s.spec?.selector?.get(POD_TEMPLATE_HASH_LABEL).cloned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn analysis_runs_measured_against_a_real_api_server() {
    let started = Instant::now();
    let Some(env) = KubeEnv::installed(NS).await else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let client = env.client.clone();
    // secretKeyRef arguments: the optional role of deploy/install.yaml, bound here.
    env.apply(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": { "name": "cutover-analysis-secrets", "namespace": NS },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "cutover-analysis-secrets" },
        "subjects": [{ "kind": "ServiceAccount", "name": "cutover-controller",
                       "namespace": "cutover-system" }],
    }))
    .await;
    let kubelet = Kubelet::start(client.clone(), NS).await;
    let hits = Hits::default();
    let t = Test {
        runs: Api::namespaced(client.clone(), NS),
        client: client.clone(),
        controller_client: env.controller_client().await,
        web: web_server(hits.clone()).await,
        hits,
        env,
    };
    let booted = started.elapsed();
    let mut controller = start_controller(&t.controller_client);
    let timed = |name: &'static str, at: Instant| {
        eprintln!("ok: {name} ({:.1}s)", at.elapsed().as_secs_f64());
    };
    tokio::join!(
        async {
            let at = Instant::now();
            healthy_web_analysis_promotes(&t).await;
            timed("web analysis passes, the rollout promotes", at);
        },
        async {
            let at = Instant::now();
            failing_web_analysis_aborts(&t).await;
            timed("web analysis fails, the rollout aborts", at);
        },
        async {
            let at = Instant::now();
            job_metrics(&t).await;
            timed("job metrics pass and fail", at);
        },
        async {
            let at = Instant::now();
            terminate_ends_the_run(&t).await;
            timed("spec.terminate ends the run", at);
        },
        async {
            let at = Instant::now();
            arguments_from_secrets(&t).await;
            timed("secretKeyRef arguments, missing ones", at);
        },
        async {
            let at = Instant::now();
            deleted_run_stops_measuring(&t).await;
            timed("a deleted run stops measuring", at);
        },
        async {
            let at = Instant::now();
            terminate_deletes_a_running_job(&t).await;
            timed("terminate deletes the running Job", at);
        },
    );
    let at = Instant::now();
    restart_resumes_the_run(&t, &mut controller).await;
    timed("controller restart resumes the run", at);
    controller.abort();
    // Stopped before the server, so they do not log its absence.
    drop(kubelet);
    eprintln!(
        "analysis e2e took {:.1}s ({:.1}s to start the server)",
        started.elapsed().as_secs_f64(),
        booted.as_secs_f64()
    );
}

/// (a) A healthy answer: the pre-promotion run is measured twice, ends Successful, and the
/// rollout promotes by itself.
async fn healthy_web_analysis_promotes(t: &Test) {
    let app = "web-ok";
    t.rollout(app, "healthy").await;
    t.set_image(app, "app:2").await;
    let h2 = hash_of(app, "app:2");
    let (_, status) = t.pre_run(app, &h2).await;
    assert_eq!(status.phase, Some(AnalysisPhase::Successful), "{status:?}");
    let health = &status.metric_results[0];
    assert_eq!((health.count, health.successful), (2, 2), "{health:?}");
    assert!(
        health
            .measurements
            .iter()
            .all(|m| m.value.as_deref() == Some("true")),
        "{health:?}"
    );
    t.wait_rollout(app, "Healthy on app:2", |s| {
        s.phase == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref() == Some(h2.as_str())
    })
    .await;
    assert_eq!(t.active_selector(app).await, Some(h2));
}

/// (b) A failing answer: the run ends Failed at the first measurement, the update is
/// aborted, and the active Service stays on the old revision.
async fn failing_web_analysis_aborts(t: &Test) {
    let app = "web-bad";
    t.rollout(app, "failing").await;
    let h1 = hash_of(app, "app:1");
    t.set_image(app, "app:2").await;
    let (_, status) = t.pre_run(app, &hash_of(app, "app:2")).await;
    assert_eq!(status.phase, Some(AnalysisPhase::Failed), "{status:?}");
    assert_eq!(status.metric_results[0].failed, 1);
    t.wait_rollout(app, "aborted (Degraded)", |s| {
        s.phase == Some(RolloutPhase::Degraded)
    })
    .await;
    assert_eq!(t.active_selector(app).await, Some(h1));
}

fn job_metric(name: &str, command: &str) -> Value {
    json!({
        "name": name,
        "provider": { "job": {
            "metadata": { "labels": { "purpose": "smoke" } },
            "spec": {
                "backoffLimit": 0,
                "template": { "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "check", "image": "busybox", "command": [command] }],
                }},
            },
        }},
    })
}

/// (c) Job metrics: a Job that completes is a Successful measurement, one that fails a Failed
/// one; the Jobs are named after the run and the metric, owned by and labelled with the run.
async fn job_metrics(t: &Test) {
    t.env
        .apply(analysis_run(
            "job-pass",
            json!({ "metrics": [job_metric("smoke", "true")] }),
        ))
        .await;
    t.env
        .apply(analysis_run(
            "job-fail",
            json!({ "metrics": [job_metric("smoke", "false")] }),
        ))
        .await;
    let pass = t.finished("job-pass", 40).await;
    assert_eq!(pass.phase, Some(AnalysisPhase::Successful), "{pass:?}");
    let fail = t.finished("job-fail", 40).await;
    assert_eq!(fail.phase, Some(AnalysisPhase::Failed), "{fail:?}");
    let failed = &fail.metric_results[0].measurements[0];
    assert!(
        failed.message.as_deref().unwrap_or("").contains("failed"),
        "{failed:?}"
    );
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), NS);
    let job = jobs.get(&job_name("job-pass", "smoke", 1)).await.unwrap();
    assert_eq!(
        job.labels().get(JOB_RUN_LABEL).map(String::as_str),
        Some("job-pass")
    );
    assert_eq!(
        job.labels().get("purpose").map(String::as_str),
        Some("smoke")
    );
    let owner = &job.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("AnalysisRun", "job-pass")
    );
}

/// (e) `spec.terminate` ends a run measured until terminated; it ends Successful.
async fn terminate_ends_the_run(t: &Test) {
    let url = t.url("healthy");
    t.env
        .apply(analysis_run(
            "forever",
            json!({ "metrics": [web_metric("health", &url, None)] }),
        ))
        .await;
    t.measured("forever", "health", 2).await;
    t.runs
        .patch(
            "forever",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "terminate": true } })),
        )
        .await
        .unwrap();
    let status = t.finished("forever", 10).await;
    assert_eq!(status.phase, Some(AnalysisPhase::Successful), "{status:?}");
    assert!(status.metric_results[0].successful >= 2);
}

/// A run deleted mid-way is measured no more.
async fn deleted_run_stops_measuring(t: &Test) {
    let url = t.url("count/deleted");
    t.env
        .apply(analysis_run(
            "deleted",
            json!({ "metrics": [web_metric("health", &url, None)] }),
        ))
        .await;
    t.measured("deleted", "health", 2).await;
    t.runs.delete("deleted", &Default::default()).await.unwrap();
    let hits = || t.hits.lock().unwrap().get("deleted").copied().unwrap_or(0);
    // A measurement may be on its way as the run goes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_delete = hits();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(hits(), after_delete, "measured after the run was deleted");
}

/// `spec.terminate` while a Job measures: the run ends and the Job is deleted.
async fn terminate_deletes_a_running_job(t: &Test) {
    // `sleep` keeps the stand-in's pod Running (see tests/support/kubelet.rs).
    t.env
        .apply(analysis_run(
            "job-stopped",
            json!({ "metrics": [job_metric("slow", "sleep")] }),
        ))
        .await;
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), NS);
    let name = job_name("job-stopped", "slow", 1);
    wait_for(20, "the slow job created", || async {
        jobs.get_opt(&name).await.ok()?.map(|_| ())
    })
    .await;
    t.runs
        .patch(
            "job-stopped",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "terminate": true } })),
        )
        .await
        .unwrap();
    let status = t.finished("job-stopped", 10).await;
    assert_eq!(status.phase, Some(AnalysisPhase::Successful), "{status:?}");
    wait_for(10, "the slow job deleted", || async {
        jobs.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
}

/// An argument read from a Secret is substituted; a missing Secret or argument ends the run in
/// Error before any measurement, with a message naming it.
async fn arguments_from_secrets(t: &Test) {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(t.client.clone(), NS);
    let secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "web-target", "namespace": NS },
        "stringData": { "path": "healthy" },
    }))
    .unwrap();
    secrets.create(&Default::default(), &secret).await.unwrap();
    let base = format!("http://{}", t.web);
    let with_arg = |name: &str, arg: Value| {
        analysis_run(
            name,
            json!({
                "args": [arg],
                "metrics": [web_metric("health", &format!("{base}/{{{{args.path}}}}"), Some(1))],
            }),
        )
    };
    let from = |secret: &str| json!({ "name": "path", "valueFrom": { "secretKeyRef": { "name": secret, "key": "path" } } });
    t.env
        .apply(with_arg("secret-arg", from("web-target")))
        .await;
    t.env
        .apply(with_arg("secret-missing", from("no-such-secret")))
        .await;
    t.env
        .apply(with_arg("arg-missing", json!({ "name": "path" })))
        .await;
    let ok = t.finished("secret-arg", 20).await;
    assert_eq!(ok.phase, Some(AnalysisPhase::Successful), "{ok:?}");
    assert_eq!(
        ok.metric_results[0].metadata.get("url"),
        Some(&format!("{base}/healthy"))
    );
    for (run, named) in [
        ("secret-missing", "no-such-secret"),
        ("arg-missing", "\"path\""),
    ] {
        let s = t.finished(run, 20).await;
        assert_eq!(s.phase, Some(AnalysisPhase::Error), "{s:?}");
        let message = s.message.unwrap_or_default();
        assert!(message.contains(named), "{run}: {message}");
        assert!(
            s.metric_results.is_empty(),
            "{run} measured: {:?}",
            s.metric_results
        );
    }
}

/// (d) The controller stops mid-run and a new one resumes: the measurements taken before are
/// kept and the count goes on to the end.
async fn restart_resumes_the_run(t: &Test, controller: &mut tokio::task::JoinHandle<()>) {
    let url = t.url("healthy");
    t.env
        .apply(analysis_run(
            "resumed",
            json!({ "metrics": [web_metric("health", &url, Some(4))] }),
        ))
        .await;
    t.measured("resumed", "health", 2).await;
    controller.abort();
    let _ = (&mut *controller).await;
    // Measurements finished while the old controller stopped are in the status too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = t.status("resumed").await.unwrap();
    let kept: Vec<_> = before.metric_results[0]
        .measurements
        .iter()
        .filter(|m| m.phase.is_completed())
        .cloned()
        .collect();
    assert!(kept.len() >= 2 && kept.len() < 4, "{before:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        t.status("resumed").await.unwrap().metric_results[0].count,
        before.metric_results[0].count,
        "measured while no controller ran"
    );
    *controller = start_controller(&t.controller_client);
    let after = t.finished("resumed", 20).await;
    assert_eq!(after.phase, Some(AnalysisPhase::Successful), "{after:?}");
    let health = &after.metric_results[0];
    assert_eq!((health.count, health.successful), (4, 4), "{health:?}");
    assert_eq!(
        &health.measurements[..kept.len()],
        &kept[..],
        "earlier measurements kept"
    );
    assert_eq!(after.started_at, before.started_at);
}
