//! Executor scenario against a mocked API (kube-rs's ApiServerVerifier pattern): deleting a
//! Rollout gives its Services their selectors back and then drops the finalizer. The full flows
//! run against a real API server in e2e.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use cutover_core::api::Rollout;
use cutover_kube::cache::Caches;
use cutover_kube::events::EventPublisher;
use cutover_kube::metrics::Metrics;
use cutover_kube::{Config, Context, DataPlaneApis, controller};
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

async fn expect(handle: &mut Handle, method: &str, path: &str, reply: Value) -> Value {
    let (req, send) = handle.next_request().await.expect("a request");
    assert_eq!(req.method().as_str(), method, "{}", req.uri());
    assert_eq!(req.uri().path(), path);
    let body = req.into_body().collect_bytes().await.unwrap();
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap(),
    );
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "namespace": "ns",
            "annotations": { "rollout.cutover.dev/managed-by": "app" } },
        "spec": { "selector": { "app": "app", "rollouts-pod-template-hash": "abc" } },
    })
}

#[tokio::test]
async fn deleting_a_rollout_restores_service_selectors() {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(svc, "ns");
    let events = EventPublisher::new(client.clone(), "cutover", None);
    let ctx = Arc::new(Context::new(
        client,
        events,
        Arc::new(Metrics::default()),
        Config::default(),
        DataPlaneApis::current(),
        Caches::new(&DataPlaneApis::current().endpoint_slices).0,
    ));
    let rollout_json = json!({
        "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "app", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
            "finalizers": ["cutover.dev/service-selectors"],
            "deletionTimestamp": "2026-01-01T00:00:00Z" },
        "spec": { "selector": { "matchLabels": { "app": "app" } },
            "template": { "metadata": { "labels": { "app": "app" } } },
            "strategy": { "blueGreen": { "activeService": "app-active", "previewService": "app-preview" } } },
    });
    let rollout: Rollout = serde_json::from_value(rollout_json.clone()).unwrap();
    let server = tokio::spawn(async move {
        for name in ["app-active", "app-preview"] {
            let path = format!("/api/v1/namespaces/ns/services/{name}");
            expect(&mut handle, "GET", &path, service(name)).await;
            let patch = expect(&mut handle, "PATCH", &path, service(name)).await;
            assert_eq!(
                patch["spec"]["selector"]["rollouts-pod-template-hash"],
                Value::Null
            );
            assert!(
                patch["spec"]["selector"]
                    .as_object()
                    .unwrap()
                    .contains_key("rollouts-pod-template-hash")
            );
            assert_eq!(
                patch["metadata"]["annotations"]["rollout.cutover.dev/managed-by"],
                Value::Null
            );
        }
        let patch = expect(
            &mut handle,
            "PATCH",
            "/apis/cutover.dev/v1alpha1/namespaces/ns/rollouts/app",
            rollout_json,
        )
        .await;
        assert!(
            patch.to_string().contains("remove"),
            "finalizer removal: {patch}"
        );
    });
    let cached = cutover_kube::cached_rollout::CachedRollout::try_from(rollout).unwrap();
    let action = controller::reconcile(Arc::new(cached), ctx).await.unwrap();
    tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .unwrap()
        .unwrap();
    let _ = action;
}
