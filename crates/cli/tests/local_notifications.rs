//! Notifications on one host, with a real daemon and a real HTTP receiver on 127.0.0.1: each
//! trigger of an update, a pause and a promotion arrives once with the right payload and a
//! valid signature; a receiver that is down gets retries and the rollout does not wait for it.

mod e2e;
#[path = "../../notify/tests/receiver/mod.rs"]
mod receiver;

use std::collections::BTreeMap;
use std::time::Duration;

use cutover_notify::message::signature;
use e2e::*;
use receiver::{Receiver, triggers_of};

const KEY: &str = "hmac-key-for-tests";

/// A configuration sending every trigger to one signed webhook, whose URL and key come from
/// the daemon's environment.
fn config_file(dir: &std::path::Path, backoff_millis: u64) -> String {
    let path = dir.join("notifications.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: cutover.dev/v1alpha1\nkind: NotificationConfig\nservices:\n  ops: {{webhook: {{url: $HOOK_URL, signingSecret: $HOOK_KEY}}}}\nsubscriptions:\n  - triggers: [on-update-started, on-paused, on-switch-verified, on-completed, on-aborted, on-degraded]\n    service: ops\ndelivery: {{initialBackoffMillis: {backoff_millis}, maxBackoffMillis: {backoff_millis}, maxAttempts: 1000}}\n"
        ),
    )
    .expect("write config");
    path.display().to_string()
}

fn metric(d: &Daemon, name: &str) -> u64 {
    let (_, text) = api_get_without_token(d.state_dir(), "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics: {text}"))
}

#[test]
fn each_trigger_of_an_update_arrives_once_signed_with_its_payload() {
    let hook = Receiver::start(0);
    let config_dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(config_dir.path(), 100);
    let (services, _, _) = services("note");
    let rollout = demo_rollout("note", 1, "      autoPromotionEnabled: false\n", "");
    let url = hook.url();
    let d = Daemon::start_opts(
        &format!("{services}{rollout}"),
        &[("HOOK_URL", &url), ("HOOK_KEY", KEY)],
        &["--notifications", &config],
        None,
    );
    d.wait_healthy_on("note", "demo:v1");
    d.ok(&["set", "image", "note", "app=demo:v2"]);
    d.wait("note", "paused for promotion", |v| phase(v) == "Paused");
    hook.wait("on-paused of revision 2", |all| {
        triggers_of(all, 2).contains_key("on-paused")
    });
    d.ok(&["promote", "note"]);
    d.wait_healthy_on("note", "demo:v2");
    hook.wait("on-completed of revision 2", |all| {
        triggers_of(all, 2).contains_key("on-completed")
    });
    // Passes keep running; nothing more may arrive for revision 2 (no repeats).
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        d.view("note");
    }
    let all = hook.all();
    assert!(all.len() >= 4, "{all:#?}");
    let counts = triggers_of(&all, 2);
    let expected: BTreeMap<String, usize> = [
        "on-update-started",
        "on-paused",
        "on-switch-verified",
        "on-completed",
    ]
    .into_iter()
    .map(|t| (t.to_string(), 1))
    .collect();
    assert_eq!(counts, expected, "{all:#?}");
    let mut keys = std::collections::BTreeSet::new();
    for r in &all {
        assert_eq!(
            r.headers["x-cutover-signature"],
            signature(KEY, &r.raw),
            "signature of {}",
            r.body
        );
        assert_eq!(r.headers["idempotency-key"], r.body["idempotencyKey"]);
        assert!(
            keys.insert(r.body["idempotencyKey"].to_string()),
            "repeated: {}",
            r.body
        );
        assert_eq!(r.body["rollout"], "note");
        assert_eq!(r.body["namespace"], "default");
    }
    let by_trigger = |t: &str| {
        all.iter()
            .find(|r| r.body["revision"] == 2 && r.body["trigger"] == t)
            .map(|r| r.body.clone())
            .unwrap_or_default()
    };
    let started = by_trigger("on-update-started");
    assert_eq!(started["images"][0], "demo:v2", "{started}");
    assert_eq!(started["reason"], "RolloutUpdated");
    let verified = by_trigger("on-switch-verified");
    assert!(
        verified["switchLatencySeconds"].as_f64().is_some(),
        "{verified}"
    );
    let completed = by_trigger("on-completed");
    assert_eq!(completed["phase"], "Healthy", "{completed}");
    assert!(
        completed["text"]
            .as_str()
            .is_some_and(|t| t.contains("default/note: revision 2 is stable")),
        "{completed}"
    );
    assert_eq!(
        metric(&d, "cutover_notifications_sent_total"),
        all.len() as u64
    );
    assert_eq!(metric(&d, "cutover_notifications_dropped_total"), 0);
}

#[test]
fn a_receiver_that_is_down_gets_retries_and_the_rollout_does_not_wait() {
    // A port with nothing listening: connections are refused until the receiver starts.
    let port = free_port();
    let config_dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(config_dir.path(), 200);
    let (services, _, _) = services("down");
    let rollout = demo_rollout("down", 1, "", "");
    let url = format!("http://127.0.0.1:{port}/hook?token=never-logged");
    let d = Daemon::start_opts(
        &format!("{services}{rollout}"),
        &[("HOOK_URL", &url), ("HOOK_KEY", KEY)],
        &["--notifications", &config],
        None,
    );
    d.wait_healthy_on("down", "demo:v1");
    d.ok(&["set", "image", "down", "app=demo:v2"]);
    // The update finishes with the receiver down.
    d.wait_healthy_on("down", "demo:v2");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while metric(&d, "cutover_notifications_failed_attempts_total") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no failed tries: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(metric(&d, "cutover_notifications_sent_total"), 0);
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver's port");
    let hook = Receiver::serve(listener, 0);
    let all = hook.wait("the retried deliveries of revision 2", |all| {
        let counts = triggers_of(all, 2);
        counts.contains_key("on-update-started") && counts.contains_key("on-completed")
    });
    for r in &all {
        assert_eq!(r.headers["x-cutover-signature"], signature(KEY, &r.raw));
    }
    assert!(
        d.log().contains("notification not delivered, retrying"),
        "{}",
        d.log()
    );
    assert!(
        !d.log().contains("never-logged"),
        "the webhook URL (a secret) reached the log: {}",
        d.log()
    );
}

#[test]
fn a_configuration_naming_an_unset_secret_stops_the_daemon_saying_what_to_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("notifications.yaml");
    std::fs::write(
        &config,
        "kind: NotificationConfig\nservices:\n  ops: {webhook: {url: $CUTOVER_TEST_UNSET_HOOK}}\n",
    )
    .expect("write config");
    let out = std::process::Command::new(CUTOVER)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["up", "--notifications"])
        .arg(&config)
        .env_remove("CUTOVER_TEST_UNSET_HOOK")
        .output()
        .expect("run cutover up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("notifications.yaml")
            && stderr.contains("services.ops.webhook.url")
            && stderr.contains("set the environment variable CUTOVER_TEST_UNSET_HOOK"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("state").join("api.json").exists(),
        "the daemon must not have started"
    );
}
