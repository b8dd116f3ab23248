//! Delivery with real receivers on 127.0.0.1: the payload and headers a webhook gets, Slack's
//! body, retries against a receiver that refuses and then accepts, a command hook, and the
//! bounded queue's drop count.

mod receiver;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use cutover_core::plan::{Event, EventReason};
use cutover_notify::config::Host;
use cutover_notify::message::signature;
use cutover_notify::{MapSecrets, NotificationConfig, Notifier, RolloutFacts};
use jiff::Timestamp;
use receiver::Receiver;

fn facts(annotations: &[(&str, &str)]) -> RolloutFacts {
    RolloutFacts {
        name: "shop".into(),
        namespace: "default".into(),
        uid: None,
        revision: Some(2),
        images: vec!["shop:v2".into()],
        phase: Some("Healthy".into()),
        switch_seconds: Some(0.5),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn config(yaml: &str, secrets: &[(&str, &str)]) -> NotificationConfig {
    let secrets = MapSecrets {
        holder: "test secrets".into(),
        values: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    NotificationConfig::parse(yaml, "test", &secrets, Host::Single).expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_and_slack_get_their_bodies_signed_and_keyed() {
    let hook = Receiver::start(0);
    let slack = Receiver::start(0);
    let notifier = Notifier::start(config(
        "services:\n  ops: {webhook: {url: $HOOK, signingSecret: $KEY}}\n  team: {slack: {url: $SLACK}}\nsubscriptions:\n  - {triggers: [on-completed], service: ops}\n",
        &[
            ("HOOK", &hook.url()),
            ("KEY", "k3y"),
            ("SLACK", &slack.url()),
        ],
    ));
    let facts = facts(&[(
        "notifications.cutover.dev/subscribe.on-completed.team",
        "#releases",
    )]);
    let events = [
        Event::normal(EventReason::ScalingReplicaSet, "scaled"),
        Event::normal(EventReason::RolloutCompleted, "revision 2 is stable"),
    ];
    let queued = notifier.notify(&facts, &events, Timestamp::now());
    assert_eq!(queued, 2);
    let got = tokio::task::spawn_blocking(move || {
        (
            hook.wait("the webhook", |r| !r.is_empty()),
            slack.wait("slack", |r| !r.is_empty()),
        )
    })
    .await
    .expect("join");
    let (hook, slack) = got;
    assert_eq!(hook.len(), 1);
    let body = &hook[0].body;
    assert_eq!(body["trigger"], "on-completed");
    assert_eq!(body["rollout"], "shop");
    assert_eq!(body["revision"], 2);
    assert_eq!(body["images"][0], "shop:v2");
    assert_eq!(body["reason"], "RolloutCompleted");
    assert_eq!(body["switchLatencySeconds"], 0.5);
    assert_eq!(
        hook[0].headers["x-cutover-signature"],
        signature("k3y", &hook[0].raw)
    );
    assert_eq!(hook[0].headers["idempotency-key"], body["idempotencyKey"]);
    assert_eq!(slack[0].body["channel"], "#releases");
    assert_eq!(
        slack[0].body["text"],
        "default/shop: revision 2 is stable (shop:v2)"
    );
    assert_eq!(notifier.counters().sent.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_receiver_gets_retries_with_the_same_key() {
    let hook = Receiver::start(3);
    let notifier = Notifier::start(config(
        "services:\n  ops: {webhook: {url: $HOOK}}\nsubscriptions:\n  - {triggers: [on-aborted], service: ops}\ndelivery: {initialBackoffMillis: 20, maxBackoffMillis: 100}\n",
        &[("HOOK", &hook.url())],
    ));
    let events = [Event::warning(
        EventReason::RolloutAborted,
        "aborted by hand",
    )];
    assert_eq!(notifier.notify(&facts(&[]), &events, Timestamp::now()), 1);
    let refused = hook.refused.clone();
    let got =
        tokio::task::spawn_blocking(move || hook.wait("the retried delivery", |r| !r.is_empty()))
            .await
            .expect("join");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(*refused.lock().expect("lock"), 3);
    assert_eq!(
        notifier.counters().failed_attempts.load(Ordering::Relaxed),
        3
    );
    assert_eq!(notifier.counters().sent.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_hook_gets_the_payload_on_stdin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("payload.json");
    let script = format!("cat > {}", out.display());
    let yaml = format!(
        "services:\n  local: {{command: {{argv: [sh, -c, {script:?}], timeoutSeconds: 10}}}}\nsubscriptions:\n  - {{triggers: [on-degraded], service: local}}\n"
    );
    let notifier = Notifier::start(config(&yaml, &[]));
    let events = [Event::warning(
        EventReason::ProgressDeadlineExceeded,
        "stuck",
    )];
    assert_eq!(notifier.notify(&facts(&[]), &events, Timestamp::now()), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while notifier.counters().sent.load(Ordering::Relaxed) == 0 {
        assert!(std::time::Instant::now() < deadline, "the hook did not run");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let body: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("payload")).expect("json");
    assert_eq!(body["trigger"], "on-degraded");
    assert_eq!(body["reason"], "ProgressDeadlineExceeded");
}

#[test]
fn a_full_queue_drops_and_counts() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let notifier = Notifier::start(config(
            "services:\n  ops: {webhook: {url: 'http://127.0.0.1:9/'}}\nsubscriptions:\n  - {triggers: [on-paused], service: ops, recipients: [a, b, c, d, e]}\ndelivery: {queueSize: 2, maxAttempts: 1}\n",
            &[],
        ));
        // The worker cannot run until this task yields, so the queue holds exactly two.
        let events = [Event::normal(EventReason::RolloutPaused, "paused")];
        assert_eq!(notifier.notify(&facts(&[]), &events, Timestamp::now()), 2);
        assert_eq!(notifier.counters().dropped.load(Ordering::Relaxed), 3);
        assert!(notifier.counters().openmetrics().contains("cutover_notifications_dropped_total 3"));
    });
}
