//! A Rollout's migrations on Kubernetes: a real kube-apiserver and kube-controller-manager
//! (scripts/kube-test-env), the controller in-process, the kubelet stand-in executing the
//! migration Job's `cutover migrate` with the built binary, and a real PostgreSQL. Expand +
//! backfill run as a Job before the new revision gets pods; a failing migration leaves the
//! rollout Degraded with MigrationFailed and the active Service on the old revision; `abort`
//! after expand + backfill runs a rollback Job (the new column is dropped, active stays on v1);
//! with `contract: auto` a contract Job drops the old column once v1 is gone and `bake` passed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kube/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use cutover_core::api::Rollout;
use cutover_migrate::test_cluster;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Client;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use support::kubelet::Kubelet;
use support::{KubeEnv, wait_for};

const NS: &str = "migrations";
const CUTOVER: &str = env!("CARGO_BIN_EXE_cutover");

fn seed_migration() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/migrations/001_user_name_to_full_name.yaml"),
    )
    .expect("examples/migrations/001")
}

/// A fresh database holding v1's schema: users(id, user_name) with `rows` rows.
async fn database(base: &str, prefix: &str, rows: u32) -> String {
    let url = test_cluster::fresh_database(base, prefix)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    query(
        &url,
        &format!(
            "CREATE TABLE users (id bigserial PRIMARY KEY, user_name varchar(255) NOT NULL);
             INSERT INTO users (user_name) SELECT 'user ' || g FROM generate_series(1, {rows}) g;"
        ),
    )
    .await;
    url
}

async fn query(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(conn);
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

/// Services, the migration ConfigMap (`files`), the database Secret and a Rollout on `image`.
async fn deploy(env: &KubeEnv, app: &str, url: &str, files: Value, image: &str) {
    for role in ["active", "preview"] {
        env.apply(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("{app}-{role}"), "namespace": NS},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        }))
        .await;
    }
    env.apply(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{app}-db"), "namespace": NS},
        "stringData": {"url": url},
    }))
    .await;
    config_map(env, app, files).await;
    rollout(env, app, image).await;
}

async fn config_map(env: &KubeEnv, app: &str, files: Value) {
    env.apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{app}-migrations"), "namespace": NS},
        "data": files,
    }))
    .await;
}

async fn rollout(env: &KubeEnv, app: &str, image: &str) {
    rollout_with(env, app, image, "1h", "manual").await;
}

/// A Rollout on `image` whose migrations bake for `bake` and contract `contract`ly.
async fn rollout_with(env: &KubeEnv, app: &str, image: &str, bake: &str, contract: &str) {
    env.apply(json!({
        "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": app, "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app}},
                         "spec": {"containers": [{"name": "app", "image": image}]}},
            "strategy": {"blueGreen": {"activeService": format!("{app}-active"),
                                       "previewService": format!("{app}-preview"),
                                       "autoPromotionEnabled": false, "scaleDownDelaySeconds": 2}},
            "migrations": {
                "source": {"configMapRef": {"name": format!("{app}-migrations")}},
                "databaseUrlFrom": {"secretKeyRef": {"name": format!("{app}-db"), "key": "url"}},
                "bake": bake,
                "contract": contract,
            },
        },
    }))
    .await;
}

async fn status(client: &Client, app: &str) -> Value {
    let api: Api<Rollout> = Api::namespaced(client.clone(), NS);
    let r = api.get(app).await.expect("get rollout");
    serde_json::to_value(&r).expect("json")
}

fn healthy(v: &Value) -> bool {
    let s = &v["status"];
    s["phase"] == "Healthy"
        && s["stableRS"] == s["currentPodHash"]
        && s["observedGeneration"] == v["metadata"]["generation"]
}

async fn active_hash(client: &Client, app: &str) -> Value {
    let api: Api<Service> = Api::namespaced(client.clone(), NS);
    let svc = api.get(&format!("{app}-active")).await.expect("service");
    json!(
        svc.spec
            .and_then(|s| s.selector)
            .and_then(|s| s.get("rollouts-pod-template-hash").cloned())
    )
}

async fn wait_healthy(client: &Client, app: &str) -> Value {
    wait_for(30, &format!("{app} Healthy"), || async {
        let v = status(client, app).await;
        healthy(&v).then_some(v)
    })
    .await
}

/// `cutover --kubeconfig … -n NS ARGS`, as an operator runs it; panics unless it succeeds.
fn cutover(env: &KubeEnv, args: &[&str]) {
    let out = Command::new(CUTOVER)
        .arg("--kubeconfig")
        .arg(env.dir().join("kubeconfig"))
        .args(["-n", NS])
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap_or_else(|e| panic!("cutover {args:?}: {e}"));
    assert!(out.status.success(), "cutover {args:?}: {out:?}");
}

/// The columns of `users`, in order.
async fn columns(url: &str) -> Vec<String> {
    query(
        url,
        "SELECT column_name FROM information_schema.columns
         WHERE table_name = 'users' ORDER BY ordinal_position",
    )
    .await
    .into_iter()
    .filter_map(|mut r| r.remove(0))
    .collect()
}

/// Waits until the Job `name` completed successfully.
async fn wait_job(client: &Client, name: &str) -> Job {
    let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
    wait_for(30, &format!("Job {name} to complete"), || async {
        let job = jobs.get_opt(name).await.ok().flatten()?;
        job.status.as_ref()?.completion_time.as_ref()?;
        Some(job)
    })
    .await
}

async fn wait_migration_phase(client: &Client, app: &str, phase: &str) -> Value {
    wait_for(30, &format!("{app}'s migration {phase}"), || async {
        let v = status(client, app).await;
        (v["status"]["migration"]["phase"] == phase).then_some(v)
    })
    .await
}

/// v2 with the seed's migration, expanded and backfilled, then aborted: a rollback Job drops
/// `full_name` again and active stays on v1.
async fn abort_rolls_back(env: &KubeEnv, client: &Client, app: &str, url: &str, stable: Value) {
    config_map(
        env,
        app,
        json!({"001_user_name_to_full_name.yaml": seed_migration()}),
    )
    .await;
    rollout(env, app, &format!("{app}:v2")).await;
    wait_job(
        client,
        &format!("{app}-2-migrate-expand-backfill-001-user-name-to-full-name"),
    )
    .await;
    wait_for(30, &format!("{app} paused for promotion on v2"), || async {
        let v = status(client, app).await;
        (v["status"]["phase"] == "Paused" && v["status"]["migration"]["phase"] == "backfilled")
            .then_some(())
    })
    .await;
    assert_eq!(columns(url).await, ["id", "user_name", "full_name"]);

    cutover(env, &["abort", app]);
    let job = wait_job(
        client,
        &format!("{app}-2-migrate-rollback-001-user-name-to-full-name"),
    )
    .await;
    let args = job
        .spec
        .as_ref()
        .expect("spec")
        .template
        .spec
        .as_ref()
        .expect("pod spec")
        .containers[0]
        .args
        .clone()
        .unwrap_or_default();
    assert_eq!(
        args[..3],
        ["migrate", "rollback", "001_user_name_to_full_name"],
        "{args:?}"
    );
    let v = wait_migration_phase(client, app, "rolled_back").await;
    assert_eq!(
        v["status"]["migration"]["name"], "001_user_name_to_full_name",
        "{v}"
    );
    assert_eq!(columns(url).await, ["id", "user_name"]);
    let rows = query(url, "SELECT count(*) FROM users").await;
    assert_eq!(rows[0][0].as_deref(), Some("10"));
    assert_eq!(active_hash(client, app).await, stable);
}

/// `contract: auto` with a 1s bake: after promote and the old revision's scale-down, a
/// contract Job drops `user_name`.
async fn auto_contract(env: &KubeEnv, client: &Client, app: &str, url: &str) {
    config_map(
        env,
        app,
        json!({"001_user_name_to_full_name.yaml": seed_migration()}),
    )
    .await;
    rollout_with(env, app, &format!("{app}:v2"), "1s", "auto").await;
    wait_job(
        client,
        &format!("{app}-2-migrate-expand-backfill-001-user-name-to-full-name"),
    )
    .await;
    let v = wait_for(30, &format!("{app} paused for promotion on v2"), || async {
        let v = status(client, app).await;
        (v["status"]["phase"] == "Paused").then_some(v)
    })
    .await;
    // Never while v1 serves.
    assert_eq!(v["status"]["migration"]["phase"], "backfilled", "{v}");
    let hash = v["status"]["currentPodHash"].clone();
    cutover(env, &["promote", app]);
    let v = wait_healthy(client, app).await;
    assert_eq!(v["status"]["currentPodHash"], hash);
    let job = wait_job(
        client,
        &format!("{app}-2-migrate-contract-001-user-name-to-full-name"),
    )
    .await;
    let v = wait_migration_phase(client, app, "contracted").await;
    assert!(
        v["status"]["migration"]["message"]
            .as_str()
            .is_none_or(|m| !m.contains("waits")),
        "{v}"
    );
    // The old revision was gone before the contract Job started.
    let started = job.metadata.creation_timestamp.as_ref().expect("created").0;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let left = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("pods");
    for pod in &left.items {
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(json!(labels.get("rollouts-pod-template-hash")), hash);
        let created = pod.metadata.creation_timestamp.as_ref().expect("created").0;
        assert!(created <= started, "pod created after the contract Job");
    }
    assert_eq!(columns(url).await, ["id", "full_name"]);
    let rows = query(
        url,
        "SELECT count(*) FROM users WHERE full_name LIKE 'user %'",
    )
    .await;
    assert_eq!(rows[0][0].as_deref(), Some("10"));
    assert_eq!(active_hash(client, app).await, hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migration_jobs_run_before_the_preview_and_a_failure_stops_the_update() {
    let started = std::time::Instant::now();
    let pg = test_cluster::start().unwrap_or_else(|e| panic!("PostgreSQL: {e}"));
    let Some(env) = KubeEnv::start().await else {
        return;
    };
    env.install().await;
    env.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}))
        .await;
    let client = env.client.clone();
    let kubelet = Kubelet::start(client.clone(), NS).await;
    kubelet.run_cutover(CUTOVER);
    let controller = support::start_controller(&env.controller_client().await, NS);

    // Two apps, each with no migration yet: v1 deploys at once.
    let web_db = database(&pg.url, "kube_web", 2500).await;
    let api_db = database(&pg.url, "kube_api", 10).await;
    deploy(&env, "web", &web_db, json!({}), "web:v1").await;
    deploy(&env, "api", &api_db, json!({}), "api:v1").await;
    // Two more, each on its own database: one aborted after its expand (rollback), one with
    // `contract: auto`.
    let ops_db = database(&pg.url, "kube_ops", 10).await;
    let auto_db = database(&pg.url, "kube_auto", 10).await;
    deploy(&env, "ops", &ops_db, json!({}), "ops:v1").await;
    deploy(&env, "auto", &auto_db, json!({}), "auto:v1").await;
    rollout_with(&env, "auto", "auto:v1", "1s", "auto").await;
    wait_healthy(&client, "web").await;
    let api_stable = {
        wait_healthy(&client, "api").await;
        active_hash(&client, "api").await
    };
    wait_healthy(&client, "ops").await;
    let ops_stable = active_hash(&client, "ops").await;
    wait_healthy(&client, "auto").await;
    eprintln!("v1 healthy after {:?}", started.elapsed());

    let rollback = async {
        abort_rolls_back(&env, &client, "ops", &ops_db, ops_stable).await;
        eprintln!("ops rolled back after {:?}", started.elapsed());
    };
    let contract = async {
        auto_contract(&env, &client, "auto", &auto_db).await;
        eprintln!("auto contracted after {:?}", started.elapsed());
    };
    let web_and_api = async {
        // The release ships the seed's migration with v2.
        config_map(
            &env,
            "web",
            json!({"001_user_name_to_full_name.yaml": seed_migration()}),
        )
        .await;
        rollout(&env, "web", "web:v2").await;
        let jobs: Api<Job> = Api::namespaced(client.clone(), NS);
        let job_name = "web-2-migrate-expand-backfill-001-user-name-to-full-name";
        let job = wait_for(30, "the expand+backfill Job to complete", || async {
            let job = jobs.get_opt(job_name).await.ok().flatten()?;
            job.status.as_ref()?.completion_time.as_ref()?;
            Some(job)
        })
        .await;
        let spec = job.spec.as_ref().expect("job spec");
        assert_eq!(spec.backoff_limit, Some(0));
        let owner = job.metadata.owner_references.as_ref().expect("owner");
        assert!(owner.iter().any(|o| o.kind == "Rollout" && o.name == "web"));
        let done = job.status.and_then(|s| s.completion_time).expect("done").0;
        let backfilled = query(
            &web_db,
            "SELECT count(*) FROM users WHERE full_name = user_name",
        )
        .await;
        assert_eq!(backfilled[0][0].as_deref(), Some("2500"));

        let v = wait_for(30, "web paused for promotion on v2", || async {
            let v = status(&client, "web").await;
            (v["status"]["phase"] == "Paused").then_some(v)
        })
        .await;
        assert_eq!(v["status"]["migration"]["phase"], "backfilled", "{v}");
        // The preview revision got its pods only after the Job completed.
        let hash = v["status"]["currentPodHash"]
            .as_str()
            .expect("hash")
            .to_string();
        let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
        let preview = pods
            .list(&ListParams::default().labels(&format!("rollouts-pod-template-hash={hash}")))
            .await
            .expect("pods");
        assert!(!preview.items.is_empty());
        for pod in &preview.items {
            let created = pod.metadata.creation_timestamp.as_ref().expect("created").0;
            assert!(
                created >= done,
                "preview pod created {created} before the Job finished {done}"
            );
        }
        cutover(&env, &["promote", "web"]);
        let v = wait_healthy(&client, "web").await;
        assert_eq!(v["status"]["currentPodHash"], hash.as_str());
        eprintln!("web promoted after {:?}", started.elapsed());

        // A migration that fails: the update stops before the new revision gets pods.
        config_map(
        &env,
        "api",
        json!({"001_broken.yaml": "description: refers to a table that does not exist\noperations:\n  - raw_sql:\n      expand: ALTER TABLE no_such_table ADD COLUMN x int\n"}),
    )
    .await;
        rollout(&env, "api", "api:v2").await;
        let v = wait_for(30, "api Degraded with MigrationFailed", || async {
            let v = status(&client, "api").await;
            let failed = v["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Progressing" && c["reason"] == "MigrationFailed");
            (v["status"]["phase"] == "Degraded" && failed).then_some(v)
        })
        .await;
        let message = v["status"]["migration"]["message"].as_str().unwrap_or("");
        assert!(message.contains("no_such_table"), "{v}");
        assert_eq!(active_hash(&client, "api").await, api_stable);
        let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
        let new_hash = v["status"]["currentPodHash"].as_str().expect("hash");
        let new_rs = rs
            .list(&ListParams::default().labels(&format!("rollouts-pod-template-hash={new_hash}")))
            .await
            .expect("replicasets");
        assert!(
            new_rs
                .items
                .iter()
                .all(|r| r.status.as_ref().is_none_or(|s| s.replicas == 0)),
            "the failed revision got pods"
        );
    };
    tokio::join!(web_and_api, rollback, contract);
    eprintln!("done after {:?}", started.elapsed());
    controller.abort();
}
