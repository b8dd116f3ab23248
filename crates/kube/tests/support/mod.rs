//! Test support for the end-to-end tests: a real kube-apiserver started by
//! scripts/kube-test-env in a temporary directory, and a kubelet stand-in.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod gateway;
pub mod kubelet;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;

/// A running API server; stopped when dropped.
pub struct KubeEnv {
    dir: tempfile::TempDir,
    pub client: Client,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script(args: &[&str]) -> String {
    let out = Command::new(repo_root().join("scripts/kube-test-env"))
        .args(args)
        .output()
        .expect("run scripts/kube-test-env");
    assert!(
        out.status.success(),
        "scripts/kube-test-env {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl KubeEnv {
    /// Builds (or reuses) the server binaries and starts etcd, kube-apiserver and
    /// kube-controller-manager in a fresh temporary directory. None (and a loud line) when
    /// `CUTOVER_SKIP_KUBE=1` says to run without Kubernetes.
    pub async fn start() -> Option<Self> {
        if std::env::var("CUTOVER_SKIP_KUBE").as_deref() == Ok("1") {
            eprintln!("SKIPPED: this test needs a kube-apiserver and CUTOVER_SKIP_KUBE=1");
            return None;
        }
        // scripts/test prepared the binaries; this only finds them (or builds them when a test
        // runs alone on a fresh machine).
        script(&["build"]);
        let dir = tempfile::Builder::new()
            .prefix("cutover-e2e-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().to_str().expect("utf-8 path").to_string();
        script(&["start", &path]);
        let client = client_for(&dir.path().join("kubeconfig")).await;
        Some(Self { dir, client })
    }

    /// [`Self::start`], then deploy/install.yaml (without the controller) and namespace `ns`.
    pub async fn installed(ns: &str) -> Option<Self> {
        let env = Self::start().await?;
        env.install().await;
        env.apply(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns },
        }))
        .await;
        Some(env)
    }

    /// Installs the Gateway API and Istio CRDs from ../shared/fixtures/crds, unchanged, and
    /// waits until they serve. False (and a loud line) when ../shared is not beside the
    /// project: the caller skips.
    pub async fn install_route_crds(&self) -> bool {
        let dir = repo_root().join("../shared/fixtures/crds");
        let files = [
            "gateway-api-v1.6.1/httproutes.yaml",
            "gateway-api-v1.6.1/gateways.yaml",
            "istio-1.30.3/networking.yaml",
        ];
        if !files.iter().all(|f| dir.join(f).is_file()) {
            eprintln!(
                "SKIPPED: this test needs the Gateway API and Istio CRDs in {} (../shared beside the project)",
                dir.display()
            );
            return false;
        }
        for f in files {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            for doc in serde_yaml_ng::Deserializer::from_str(&text) {
                let value: Option<serde_json::Value> =
                    serde::Deserialize::deserialize(doc).unwrap();
                let Some(value) = value else { continue };
                if value["kind"] == "CustomResourceDefinition" {
                    self.apply(value).await;
                }
            }
        }
        for (group, version, plural) in [
            ("gateway.networking.k8s.io", "v1", "httproutes"),
            ("networking.istio.io", "v1", "virtualservices"),
            ("networking.istio.io", "v1", "destinationrules"),
        ] {
            let ar = kube::core::ApiResource {
                group: group.into(),
                version: version.into(),
                api_version: format!("{group}/{version}"),
                kind: String::new(),
                plural: plural.into(),
            };
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
            let mut served = false;
            for _ in 0..100 {
                if api.list(&Default::default()).await.is_ok() {
                    served = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(served, "CRD {plural}.{group} never became served");
        }
        true
    }

    /// A client acting as ServiceAccount `ns/name`, with a token the API server issues for it
    /// (TokenRequest): exactly the rights RBAC gives that identity, no more.
    pub async fn service_account_client(&self, ns: &str, name: &str) -> Client {
        let body = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": { "expirationSeconds": 86400 },
        });
        let req = http::Request::post(format!(
            "/api/v1/namespaces/{ns}/serviceaccounts/{name}/token"
        ))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
        let answer = self
            .client
            .request_text(req)
            .await
            .unwrap_or_else(|e| panic!("token for serviceaccount {ns}/{name}: {e}"));
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let token = answer["status"]["token"]
            .as_str()
            .expect("token")
            .to_string();
        let admin = std::fs::read_to_string(self.dir().join("kubeconfig")).unwrap();
        let kubeconfig: String = admin
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("token:") {
                    format!("    token: {token}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = self.dir().join(format!("kubeconfig-{ns}-{name}"));
        std::fs::write(&path, kubeconfig).unwrap();
        client_for(&path).await
    }

    /// A client with the rights deploy/install.yaml gives the controller's ServiceAccount.
    pub async fn controller_client(&self) -> Client {
        self.service_account_client("cutover-system", "cutover-controller")
            .await
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Applies deploy/install.yaml except the controller's Deployment, and waits until the
    /// Rollout CRD serves.
    pub async fn install(&self) {
        let text = std::fs::read_to_string(repo_root().join("deploy/install.yaml")).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Option<serde_json::Value> = serde::Deserialize::deserialize(doc).unwrap();
            let Some(value) = value else { continue };
            if value["kind"] == "Deployment" {
                continue;
            }
            self.apply(value).await;
        }
        let rollouts: Api<cutover_core::api::Rollout> = Api::all(self.client.clone());
        for _ in 0..100 {
            if rollouts.list(&Default::default()).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the Rollout CRD never became served");
    }

    /// Applies deploy/namespaced/install.yaml (without the controller's Deployment) into
    /// namespace `ns`, which it creates; `edit` may change each object first (a test removes a
    /// rule to see a missing permission surface).
    pub async fn install_namespaced(&self, ns: &str, edit: impl Fn(&mut serde_json::Value)) {
        self.apply(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns },
        }))
        .await;
        let path = repo_root().join("deploy/namespaced/install.yaml");
        let text = std::fs::read_to_string(path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Option<serde_json::Value> = serde::Deserialize::deserialize(doc).unwrap();
            let Some(mut value) = value else { continue };
            if value["kind"] == "Deployment" {
                continue;
            }
            value["metadata"]["namespace"] = ns.into();
            // `get_mut`, not indexing: `value["subjects"]` on a mutable object inserts a null
            // field, which the API server refuses for kinds without `subjects`.
            if let Some(subjects) = value
                .get_mut("subjects")
                .and_then(serde_json::Value::as_array_mut)
            {
                for s in subjects {
                    s["namespace"] = ns.into();
                }
            }
            edit(&mut value);
            self.apply(value).await;
        }
    }

    /// Server-side applies any object. On servers before 1.25 a CRD goes without its CEL
    /// validation rules (`x-kubernetes-validations`), which those servers' server-side apply
    /// refuses as an undeclared field; `kubectl apply` (client-side) drops them there the same
    /// way (docs/kubernetes.md).
    pub async fn apply(&self, mut value: serde_json::Value) {
        if value["kind"] == "CustomResourceDefinition" && self.minor_version().await < 25 {
            strip_cel_rules(&mut value);
        }
        let obj: DynamicObject = serde_json::from_value(value.clone()).unwrap();
        let types = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).unwrap();
        let (ar, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("discover {gvk:?}: {e}"));
        let api: Api<DynamicObject> = match (&caps.scope, obj.metadata.namespace.as_deref()) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(self.client.clone(), ns, &ar)
            }
            (kube::discovery::Scope::Namespaced, None) => {
                Api::default_namespaced_with(self.client.clone(), &ar)
            }
            _ => Api::all_with(self.client.clone(), &ar),
        };
        let name = obj.metadata.name.clone().expect("name");
        api.patch(
            &name,
            &PatchParams::apply("cutover-e2e").force(),
            &Patch::Apply(&value),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {} {name}: {e}", gvk.kind));
    }

    /// The server's minor version (`20` for v1.20.2).
    pub async fn minor_version(&self) -> u32 {
        let info = self
            .client
            .apiserver_version()
            .await
            .expect("server version");
        info.minor
            .trim_end_matches('+')
            .parse()
            .expect("numeric minor version")
    }

    /// Services `APP-active` and `APP-preview` in `ns`, selecting pods labelled `app: APP`
    /// (port 80 to 8080), as a blue-green Rollout names them.
    pub async fn blue_green_services(&self, ns: &str, app: &str) {
        for role in ["active", "preview"] {
            self.apply(serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": format!("{app}-{role}"), "namespace": ns },
                "spec": { "selector": { "app": app },
                          "ports": [{ "port": 80, "targetPort": 8080, "protocol": "TCP" }] },
            }))
            .await;
        }
    }
}

impl Drop for KubeEnv {
    fn drop(&mut self) {
        let path = self.dir.path().to_string_lossy().into_owned();
        let _ = Command::new(repo_root().join("scripts/kube-test-env"))
            .args(["stop", &path])
            .output();
    }
}

/// Sends the controller's logs to the test output, filtered by `RUST_LOG`.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Runs the controller in-process, watching namespace `ns`, until the task is aborted.
pub fn start_controller(client: &Client, ns: &str) -> tokio::task::JoinHandle<()> {
    start_controller_with(client, ns, |_| {})
}

/// [`start_controller`] with `edit` changing the settings first.
pub fn start_controller_with(
    client: &Client,
    ns: &str,
    edit: impl FnOnce(&mut cutover_kube::RunConfig),
) -> tokio::task::JoinHandle<()> {
    let mut config = cutover_kube::RunConfig {
        namespace: Some(ns.into()),
        reconciler: cutover_kube::Config {
            resync: Duration::from_secs(30),
            ..cutover_kube::Config::default()
        },
        ..cutover_kube::RunConfig::default()
    };
    edit(&mut config);
    let client = client.clone();
    tokio::spawn(async move {
        if let Err(e) = cutover_kube::run_with_client(client, config, std::future::pending()).await
        {
            panic!("controller failed: {e}");
        }
    })
}

pub async fn client_for(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

type DumpFn = Box<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = String> + Send>> + Send + Sync>;

/// Set by a test: prints its view of the world when a wait times out.
pub static DUMP: std::sync::OnceLock<DumpFn> = std::sync::OnceLock::new();

/// Polls `check` every 100 ms until it returns Some, or panics after `secs` with `what`.
pub async fn wait_for<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            if let Some(dump) = DUMP.get() {
                eprintln!("{}", dump().await);
            }
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A pod template running `image`, labelled `app: <app>`: what the tests' Rollouts carry.
pub fn template(app: &str, image: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": { "labels": { "app": app } },
        "spec": { "containers": [{ "name": "app", "image": image }] },
    })
}

/// A blue/green Rollout `app` in `ns` running `image` behind Services `<app>-active` and
/// `<app>-preview`, waiting for promotion, with `annotations`.
pub fn manual_blue_green(
    ns: &str,
    app: &str,
    image: &str,
    annotations: &serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": app, "namespace": ns, "annotations": annotations },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": app } },
            "template": template(app, image),
            "strategy": { "blueGreen": {
                "activeService": format!("{app}-active"),
                "previewService": format!("{app}-preview"),
                "autoPromotionEnabled": false,
            }},
        },
    })
}

/// Waits (90 s at most) until Rollout `app` is in `phase` on pod template hash `hash`.
pub async fn wait_phase(
    rollouts: &Api<cutover_core::api::Rollout>,
    app: &str,
    phase: cutover_core::api::RolloutPhase,
    hash: &str,
) -> cutover_core::api::Rollout {
    wait_for(90, &format!("{phase:?} on {hash}"), || async {
        let r = rollouts.get(app).await.ok()?;
        let s = r.status.as_ref()?;
        (s.phase == Some(phase) && s.current_pod_hash.as_deref() == Some(hash)).then_some(r)
    })
    .await
}

/// The `rollouts-pod-template-hash` of [`template`]`(app, image)`.
pub fn hash_of(app: &str, image: &str) -> String {
    cutover_core::hash::pod_template_hash(
        &serde_json::from_value(template(app, image)).unwrap(),
        None,
    )
}

/// Removes every `x-kubernetes-validations` from a CRD's schemas.
fn strip_cel_rules(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("x-kubernetes-validations");
            map.values_mut().for_each(strip_cel_rules);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_cel_rules),
        _ => {}
    }
}
