//! Notifications on the real API server: the controller, running with deploy/install.yaml's
//! RBAC, reads ConfigMap and Secret `cutover-notifications` in its namespace, and a Rollout's
//! subscription annotation sends each transition of an update, a pause and a promotion to a
//! real HTTP receiver on 127.0.0.1, once, signed, with the right payload. The webhook URL (a
//! secret) appears nowhere in the Rollout. The receiver refuses its first requests, which
//! are retried with the same key while the rollout goes on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../notify/tests/receiver/mod.rs"]
mod receiver;
mod support;

use std::collections::BTreeMap;

use cutover_core::api::{Rollout, RolloutPhase};
use cutover_notify::message::signature;
use kube::api::{Api, Patch, PatchParams};
use receiver::{Received, Receiver, triggers_of};
use serde_json::json;
use support::kubelet::Kubelet;
use support::{KubeEnv, hash_of, wait_for};

const NS: &str = "notify";
const APP: &str = "shop";
const KEY: &str = "kube-hmac-key";

/// Promotes as the CLI does: clears the pause conditions.
async fn promote(rollouts: &Api<Rollout>) {
    rollouts
        .patch_status(
            APP,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": { "pauseConditions": null } })),
        )
        .await
        .unwrap();
}

async fn wait_received(hook: &Receiver, what: &str, done: impl Fn(&[Received]) -> bool) {
    wait_for(60, what, || async { done(&hook.all()).then_some(()) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribed_transitions_reach_a_webhook_once_each() {
    let Some(env) = KubeEnv::installed(NS).await else {
        return;
    };
    let client = env.client.clone();
    // The receiver refuses its first two requests (503): they are retried, and the rollout
    // goes on meanwhile.
    let hook = Receiver::start(2);
    let url = format!("{}?token=do-not-leak", hook.url());
    env.apply(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "cutover-notifications", "namespace": "cutover-system" },
        "stringData": { "ops-url": url, "ops-key": KEY },
    }))
    .await;
    env.apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "cutover-notifications", "namespace": "cutover-system" },
        "data": { "config.yaml": "apiVersion: cutover.dev/v1alpha1\nkind: NotificationConfig\nservices:\n  ops: {webhook: {url: $ops-url, signingSecret: $ops-key}}\ndelivery: {initialBackoffMillis: 100}\n" },
    }))
    .await;
    let _kubelet = Kubelet::start(client.clone(), NS).await;
    env.blue_green_services(NS, APP).await;
    let controller_client = env.controller_client().await;
    let controller = support::start_controller_with(&controller_client, NS, |c| {
        c.notifications_namespace = Some("cutover-system".into());
        c.notifications_reload = Some(std::time::Duration::from_secs(1));
    });
    let annotations = json!({
        "notifications.cutover.dev/subscribe..ops": "",
        "notifications.argoproj.io/subscribe.on-rollout-completed.ops": "release-channel",
    });
    let manifest = |image: &str| support::manual_blue_green(NS, APP, image, &annotations);
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), NS);
    let phase_is = |phase: RolloutPhase, hash: String| {
        let rollouts = rollouts.clone();
        async move { support::wait_phase(&rollouts, APP, phase, &hash).await }
    };
    env.apply(manifest("shop:1")).await;
    phase_is(RolloutPhase::Healthy, hash_of(APP, "shop:1")).await;
    env.apply(manifest("shop:2")).await;
    phase_is(RolloutPhase::Paused, hash_of(APP, "shop:2")).await;
    wait_received(&hook, "on-paused of revision 2", |all| {
        triggers_of(all, 2).contains_key("on-paused")
    })
    .await;
    promote(&rollouts).await;
    let done = phase_is(RolloutPhase::Healthy, hash_of(APP, "shop:2")).await;
    // Both subscriptions to on-completed: the catch-all one and Argo's with a recipient.
    wait_received(&hook, "two on-completed of revision 2", |all| {
        triggers_of(all, 2).get("on-completed") == Some(&2)
    })
    .await;
    // The first deliveries (revision 1's, refused) came through on a retry.
    wait_received(
        &hook,
        "revision 1's on-completed after the retries",
        |all| triggers_of(all, 1).get("on-completed") == Some(&2),
    )
    .await;
    // Reconciles go on (resyncs, watch events); give repeats a chance to show.
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let _ = rollouts.get(APP).await;
    }
    let all = hook.all();
    let expected: BTreeMap<String, usize> = [
        ("on-update-started", 1),
        ("on-paused", 1),
        ("on-switch-verified", 1),
        ("on-completed", 2),
    ]
    .into_iter()
    .map(|(t, n)| (t.to_string(), n))
    .collect();
    assert_eq!(triggers_of(&all, 2), expected, "{all:#?}");
    for r in &all {
        assert_eq!(r.headers["x-cutover-signature"], signature(KEY, &r.raw));
        assert_eq!(r.headers["idempotency-key"], r.body["idempotencyKey"]);
        assert_eq!(r.body["namespace"], NS);
        assert_eq!(r.body["rollout"], APP);
    }
    let completed: Vec<&Received> = all
        .iter()
        .filter(|r| r.body["revision"] == 2 && r.body["trigger"] == "on-completed")
        .collect();
    let recipients: Vec<_> = completed
        .iter()
        .map(|r| r.body["recipient"].clone())
        .collect();
    assert!(
        recipients.contains(&json!("release-channel")) && recipients.contains(&json!(null)),
        "{recipients:?}"
    );
    assert_eq!(
        completed[0].body["idempotencyKey"], completed[1].body["idempotencyKey"],
        "one transition, one key"
    );
    assert_eq!(completed[0].body["images"], json!(["shop:2"]));
    let started = all
        .iter()
        .find(|r| r.body["revision"] == 2 && r.body["trigger"] == "on-update-started")
        .unwrap();
    assert_eq!(started.body["reason"], "RolloutUpdated");
    let verified = all
        .iter()
        .find(|r| r.body["trigger"] == "on-switch-verified" && r.body["revision"] == 2)
        .unwrap();
    assert!(
        verified.body["switchLatencySeconds"].as_f64().is_some(),
        "{}",
        verified.body
    );
    assert_eq!(
        *hook.refused.lock().unwrap(),
        2,
        "the first two tries were refused"
    );
    let mut keys: Vec<(String, String)> = all
        .iter()
        .map(|r| {
            (
                r.body["idempotencyKey"].to_string(),
                r.body["recipient"].to_string(),
            )
        })
        .collect();
    let delivered = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), delivered, "a delivery arrived twice: {all:#?}");
    let stored = serde_json::to_string(&done).unwrap();
    assert!(
        !stored.contains("do-not-leak"),
        "the secret URL leaked: {stored}"
    );

    // A changed ConfigMap is picked up without a restart: updates pause until one announces
    // its pause with the new template.
    env.apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "cutover-notifications", "namespace": "cutover-system" },
        "data": { "config.yaml": "apiVersion: cutover.dev/v1alpha1\nkind: NotificationConfig\nservices:\n  ops: {webhook: {url: $ops-url, signingSecret: $ops-key}}\ntemplates:\n  on-paused: 'reloaded: {{ rollout }} waits at {{ images[0] }}'\n" },
    }))
    .await;
    let mut reloaded = None;
    for n in 3..=20 {
        let image = format!("shop:{n}");
        env.apply(manifest(&image)).await;
        phase_is(RolloutPhase::Paused, hash_of(APP, &image)).await;
        wait_received(&hook, &format!("on-paused of revision {n}"), |all| {
            triggers_of(all, n).contains_key("on-paused")
        })
        .await;
        let paused = hook
            .all()
            .into_iter()
            .find(|r| r.body["revision"] == n && r.body["trigger"] == "on-paused")
            .unwrap();
        if paused.body["text"] == format!("reloaded: {APP} waits at {image}") {
            reloaded = Some(paused);
            break;
        }
        promote(&rollouts).await;
        phase_is(RolloutPhase::Healthy, hash_of(APP, &image)).await;
    }
    controller.abort();
    let reloaded = reloaded.expect("the new template was never used");
    assert_eq!(
        reloaded.headers["x-cutover-signature"],
        signature(KEY, &reloaded.raw)
    );
}
