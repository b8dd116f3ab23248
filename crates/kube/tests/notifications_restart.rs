//! Notifications survive a controller restart on the real API server: the controller, running
//! with the install's RBAC, stores each notification in ConfigMap
//! `cutover-notifications-outbox` before queuing it. The receiver refuses everything until the
//! controller is stopped; a new controller then delivers every stored notification with its
//! original Idempotency-Key and empties the outbox.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../notify/tests/receiver/mod.rs"]
mod receiver;
mod support;

use std::collections::BTreeSet;

use cutover_core::api::{Rollout, RolloutPhase};
use cutover_notify::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use receiver::Receiver;
use serde_json::json;
use support::kubelet::Kubelet;
use support::{KubeEnv, hash_of, wait_for};

const NS: &str = "notify-restart";
const APP: &str = "shop";
const OUTBOX: &str = "cutover-notifications-outbox";

/// The jobs in the outbox.
async fn outbox_jobs(config_maps: &Api<ConfigMap>) -> Vec<Job> {
    let Some(outbox) = config_maps.get_opt(OUTBOX).await.unwrap() else {
        return Vec::new();
    };
    outbox
        .data
        .unwrap_or_default()
        .values()
        .map(|json| serde_json::from_str(json).unwrap())
        .collect()
}

/// (idempotency key, recipient) of each job.
fn job_keys(jobs: &[Job]) -> BTreeSet<(String, Option<String>)> {
    jobs.iter()
        .map(|j| {
            (
                j.notification.idempotency_key.clone(),
                j.target.recipient.clone(),
            )
        })
        .collect()
}

/// "revision/trigger" of each job.
fn job_triggers(jobs: &[Job]) -> BTreeSet<String> {
    jobs.iter()
        .map(|j| {
            let n = &j.notification;
            format!("{}/{}", n.revision.unwrap_or_default(), n.trigger)
        })
        .collect()
}

fn keys_of(all: &[receiver::Received]) -> BTreeSet<(String, Option<String>)> {
    all.iter()
        .map(|r| {
            (
                r.headers["idempotency-key"].clone(),
                r.body["recipient"].as_str().map(str::to_string),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undelivered_notifications_are_sent_by_the_next_controller() {
    let Some(env) = KubeEnv::installed(NS).await else {
        return;
    };
    let client = env.client.clone();
    let hook = Receiver::start(usize::MAX);
    env.apply(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": { "name": "cutover-notifications", "namespace": "cutover-system" },
        "stringData": { "ops-url": hook.url() },
    }))
    .await;
    // Retries often and never gives up while the test runs.
    env.apply(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "cutover-notifications", "namespace": "cutover-system" },
        "data": { "config.yaml": "apiVersion: cutover.dev/v1alpha1\nkind: NotificationConfig\nservices:\n  ops: {webhook: {url: $ops-url}}\ndelivery: {initialBackoffMillis: 100, maxBackoffMillis: 300, maxAttempts: 100000}\n" },
    }))
    .await;
    let _kubelet = Kubelet::start(client.clone(), NS).await;
    env.blue_green_services(NS, APP).await;
    let controller_client = env.controller_client().await;
    let start = || {
        support::start_controller_with(&controller_client, NS, |c| {
            c.notifications_namespace = Some("cutover-system".into());
        })
    };
    let controller = start();
    let annotations = json!({
        "notifications.cutover.dev/subscribe..ops": "",
        "notifications.cutover.dev/subscribe.on-paused.ops": "pager",
    });
    let manifest = |image: &str| support::manual_blue_green(NS, APP, image, &annotations);
    let rollouts: Api<Rollout> = Api::namespaced(client.clone(), NS);
    let phase_is = |phase: RolloutPhase, image: &str| {
        let (rollouts, hash) = (rollouts.clone(), hash_of(APP, image));
        async move { support::wait_phase(&rollouts, APP, phase, &hash).await }
    };
    env.apply(manifest("shop:1")).await;
    phase_is(RolloutPhase::Healthy, "shop:1").await;
    env.apply(manifest("shop:2")).await;
    phase_is(RolloutPhase::Paused, "shop:2").await;

    // At least revision 1's on-completed, revision 2's on-update-started and two on-paused
    // (the catch-all subscription and the one with a recipient): each stored and refused at
    // least once.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "cutover-system");
    let expected_triggers = BTreeSet::from([
        "1/on-completed".to_string(),
        "2/on-update-started".to_string(),
        "2/on-paused".to_string(),
    ]);
    let stored = wait_for(60, "the stored notifications, each refused", || async {
        let stored = outbox_jobs(&config_maps).await;
        let refused = keys_of(&hook.all_rejected());
        (job_triggers(&stored).is_superset(&expected_triggers)
            && job_keys(&stored).is_subset(&refused))
        .then_some(stored)
    })
    .await;
    let pending = job_keys(&stored);
    assert!(
        pending.contains(&(
            stored
                .iter()
                .find(|j| j.notification.trigger == "on-paused")
                .unwrap()
                .notification
                .idempotency_key
                .clone(),
            Some("pager".to_string())
        )),
        "the subscription with a recipient is stored too: {pending:?}"
    );
    assert!(hook.all().is_empty(), "nothing was accepted yet");

    controller.abort();
    assert!(controller.await.unwrap_err().is_cancelled());
    hook.accept_all();
    let controller = start();
    let arrived = wait_for(60, "every stored notification delivered", || async {
        let arrived = keys_of(&hook.all());
        pending.is_subset(&arrived).then_some(arrived)
    })
    .await;
    assert_eq!(arrived, pending, "only what was pending arrived");
    wait_for(60, "an empty outbox", || async {
        outbox_jobs(&config_maps).await.is_empty().then_some(())
    })
    .await;
    let triggers: BTreeSet<String> = hook
        .all()
        .iter()
        .map(|r| format!("{}/{}", r.body["revision"], r.body["trigger"]))
        .map(|t| t.replace('"', ""))
        .collect();
    assert_eq!(triggers, job_triggers(&stored));
    controller.abort();
}
