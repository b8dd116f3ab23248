//! The Kubernetes side of the dashboard's tests: a rollout measured by a web metric, and a
//! user who may read but not patch.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use super::dashboard::SECRET;
use super::support::KubeEnv;

/// The namespace of the dashboard's Kubernetes tests.
pub const NS: &str = "dash";

/// Services, a web metric template reading `url` every second `count` times, and Rollout `web` (two pods,
/// paused for promotion after the analysis, a secret in its environment).
pub async fn install_web(env: &KubeEnv, url: &str, count: u32) {
    env.blue_green_services(NS, "web").await;
    env.apply(json!({
        "apiVersion": "cutover.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "health", "namespace": NS},
        "spec": {"metrics": [{
            "name": "health", "count": count, "interval": "1s", "successCondition": "result == true",
            "provider": {"web": {"url": url, "jsonPath": "{$.ok}"}},
        }]},
    }))
    .await;
    env.apply(json!({
        "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "app", "image": "web:v1",
                                                  "env": [{"name": "DB_PASSWORD", "value": SECRET}]}]}},
            "strategy": {"blueGreen": {"activeService": "web-active", "previewService": "web-preview",
                                       "autoPromotionEnabled": false, "scaleDownDelaySeconds": 120,
                                       "prePromotionAnalysis": {"templates": [{"templateName": "health"}]}}},
        },
    }))
    .await;
}

/// A kubeconfig acting as `dash-viewer`, who may read rollouts and what they own but patch
/// nothing (the admin impersonates it, as `kubectl --as` does).
pub async fn viewer_kubeconfig(env: &KubeEnv) -> std::path::PathBuf {
    env.apply(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "dash-viewer", "namespace": NS},
        "rules": [
            {"apiGroups": ["cutover.dev"], "resources": ["rollouts", "analysisruns"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list"]},
            {"apiGroups": [""], "resources": ["pods", "services", "events"], "verbs": ["get", "list"]},
        ],
    }))
    .await;
    env.apply(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "dash-viewer", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dash-viewer"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "dash-viewer"}],
    }))
    .await;
    let admin = std::fs::read_to_string(env.dir().join("kubeconfig")).unwrap();
    let viewer = admin.replace(
        "  user:\n    token: ",
        "  user:\n    as: dash-viewer\n    token: ",
    );
    assert_ne!(admin, viewer, "the kubeconfig's user entry changed shape");
    let path = env.dir().join("viewer.kubeconfig");
    std::fs::write(&path, viewer).unwrap();
    path
}
