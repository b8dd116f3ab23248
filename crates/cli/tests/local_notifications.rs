//! Notifications on one host, with a real daemon and a real HTTP receiver on 127.0.0.1: each
//! trigger of an update, a pause and a promotion arrives once with the right payload and a
//! valid signature; so do the triggers of an abort, a failed analysis and a progress deadline,
//! without changing what the rollout does; a receiver that is down gets retries and the rollout
//! does not wait for it.

mod e2e;
#[path = "../../notify/tests/receiver/mod.rs"]
mod receiver;

use std::collections::BTreeMap;
use std::time::Duration;

use cutover_notify::message::signature;
use e2e::*;
use receiver::{Received, Receiver, triggers_of};

const KEY: &str = "hmac-key-for-tests";

/// A configuration sending every trigger to one signed webhook, whose URL and key come from
/// the daemon's environment.
fn config_file(dir: &std::path::Path, backoff_millis: u64) -> String {
    config_file_for(
        dir,
        backoff_millis,
        "on-update-started, on-paused, on-switch-verified, on-completed, on-aborted, on-degraded",
    )
}

/// Like [`config_file`], subscribing `ops` to the comma-separated `triggers` only.
fn config_file_for(dir: &std::path::Path, backoff_millis: u64, triggers: &str) -> String {
    let path = dir.join("notifications.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: cutover.dev/v1alpha1\nkind: NotificationConfig\nservices:\n  ops: {{webhook: {{url: $HOOK_URL, signingSecret: $HOOK_KEY}}}}\nsubscriptions:\n  - triggers: [{triggers}]\n    service: ops\ndelivery: {{initialBackoffMillis: {backoff_millis}, maxBackoffMillis: {backoff_millis}, maxAttempts: 1000}}\n"
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

/// A daemon running `manifest` with every delivery of `triggers` going to `hook`.
fn daemon_notifying(
    hook: &Receiver,
    config_dir: &std::path::Path,
    triggers: &str,
    manifest: &str,
) -> Daemon {
    let config = config_file_for(config_dir, 100, triggers);
    let url = hook.url();
    Daemon::start_opts(
        manifest,
        &[("HOOK_URL", &url), ("HOOK_KEY", KEY)],
        &["--notifications", &config],
        None,
    )
}

/// The only delivery of `trigger` for `revision`; fails if there is none or more than one.
fn only_delivery(all: &[Received], trigger: &str, revision: i64) -> serde_json::Value {
    let matching: Vec<&Received> = all
        .iter()
        .filter(|r| r.body["trigger"] == trigger && r.body["revision"] == revision)
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "{trigger} of revision {revision} must arrive exactly once: {all:#?}"
    );
    for r in &matching {
        assert_eq!(r.headers["x-cutover-signature"], signature(KEY, &r.raw));
    }
    matching[0].body.clone()
}

/// Keeps the daemon passing for a while so that a repeated delivery would have time to arrive.
fn let_passes_run(d: &Daemon, name: &str) {
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        d.view(name);
    }
}

#[test]
fn an_abort_during_a_paused_update_is_notified_once_and_active_stays_on_stable() {
    let hook = Receiver::start(0);
    let config_dir = tempfile::tempdir().expect("tempdir");
    let (services, _, _) = services("abrt");
    let rollout = demo_rollout("abrt", 1, "      autoPromotionEnabled: false\n", "");
    let d = daemon_notifying(
        &hook,
        config_dir.path(),
        "on-paused, on-aborted, on-completed",
        &format!("{services}{rollout}"),
    );
    d.wait_healthy_on("abrt", "demo:v1");
    d.ok(&["set", "image", "abrt", "app=demo:v2"]);
    hook.wait("on-paused of revision 2", |all| {
        triggers_of(all, 2).contains_key("on-paused")
    });
    d.ok(&["abort", "abrt"]);
    hook.wait("on-aborted of revision 2", |all| {
        triggers_of(all, 2).contains_key("on-aborted")
    });
    let v = d.wait("abrt", "aborted", |v| {
        v["rollout"]["status"]["abort"] == true
    });
    assert_eq!(image_behind(&v, "abrt-active"), "demo:v1", "{v}");
    let_passes_run(&d, "abrt");
    let all = hook.all();
    let aborted = only_delivery(&all, "on-aborted", 2);
    assert_eq!(aborted["reason"], "RolloutAborted", "{aborted}");
    assert_eq!(aborted["phase"], phase(&v), "{aborted}");
    assert_eq!(aborted["rollout"], "abrt", "{aborted}");
    assert_eq!(aborted["images"][0], "demo:v2", "{aborted}");
    assert!(
        !triggers_of(&all, 2).contains_key("on-completed"),
        "an aborted update is not completed: {all:#?}"
    );
    assert_eq!(image_behind(&d.view("abrt"), "abrt-active"), "demo:v1");
}

#[test]
fn a_failed_pre_promotion_analysis_is_notified_once_and_v2_is_not_promoted() {
    let hook = Receiver::start(0);
    let config_dir = tempfile::tempdir().expect("tempdir");
    let (services, _, _) = services("anf");
    let template = format!(
        "---\napiVersion: cutover.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata: {{name: never-ok}}\nspec:\n  metrics:\n    - name: ok\n      successCondition: \"result == true\"\n      provider:\n        web: {{url: \"http://{}/\", jsonPath: \"{{$.ok}}\"}}\n",
        argo::json_server(r#"{"ok":false}"#)
    );
    let analysis = "      prePromotionAnalysis:\n        templates: [{templateName: never-ok}]\n";
    let rollout = demo_rollout("anf", 1, analysis, "");
    let d = daemon_notifying(
        &hook,
        config_dir.path(),
        "on-analysis-failed, on-aborted, on-completed",
        &format!("{services}{template}{rollout}"),
    );
    d.wait_healthy_on("anf", "demo:v1");
    d.ok(&["set", "image", "anf", "app=demo:v2"]);
    hook.wait("on-analysis-failed of revision 2", |all| {
        triggers_of(all, 2).contains_key("on-analysis-failed")
    });
    let v = d.wait("anf", "aborted by the analysis", |v| {
        v["rollout"]["status"]["abort"] == true
    });
    let_passes_run(&d, "anf");
    let all = hook.all();
    let failed = only_delivery(&all, "on-analysis-failed", 2);
    assert_eq!(failed["reason"], "AnalysisRunFailed", "{failed}");
    assert_eq!(failed["rollout"], "anf", "{failed}");
    assert!(
        failed["phase"].as_str().is_some_and(|p| !p.is_empty()),
        "{failed}"
    );
    assert!(
        !triggers_of(&all, 2).contains_key("on-completed"),
        "v2 must not be promoted: {all:#?}"
    );
    assert_eq!(image_behind(&v, "anf-active"), "demo:v1", "{v}");
    assert_eq!(image_behind(&d.view("anf"), "anf-active"), "demo:v1");
}

#[test]
fn a_progress_deadline_is_notified_once_as_degraded_with_its_reason() {
    let hook = Receiver::start(0);
    let config_dir = tempfile::tempdir().expect("tempdir");
    let (services, _, _) = services("dgr");
    let rollout = demo_rollout("dgr", 1, "", "").replace(
        "  replicas: 1\n",
        "  replicas: 1\n  progressDeadlineSeconds: 3\n",
    );
    let d = daemon_notifying(
        &hook,
        config_dir.path(),
        "on-degraded, on-completed",
        &format!("{services}{rollout}"),
    );
    d.wait_healthy_on("dgr", "demo:v1");
    // A preview that never gets ready: its process exits at start.
    let never_ready = rollout.replace("image: demo:v1", "image: demo:v2").replace(
        &format!("command: [\"{CUTOVER}\", \"demo-app\"]"),
        "command: [\"sh\", \"-c\", \"echo 'panic: missing DATABASE_URL'; exit 3\"]",
    );
    let path = d.state_dir().join("v2.yaml");
    std::fs::write(&path, format!("{services}{never_ready}")).expect("write");
    d.ok(&["apply", "-f", path.to_str().unwrap_or_default()]);
    hook.wait("on-degraded of revision 2", |all| {
        triggers_of(all, 2).contains_key("on-degraded")
    });
    let v = d.wait("dgr", "Degraded", |v| phase(v) == "Degraded");
    let_passes_run(&d, "dgr");
    let all = hook.all();
    let degraded = only_delivery(&all, "on-degraded", 2);
    assert_eq!(degraded["phase"], "Degraded", "{degraded}");
    assert_eq!(degraded["reason"], "ProgressDeadlineExceeded", "{degraded}");
    assert_eq!(degraded["images"][0], "demo:v2", "{degraded}");
    assert_eq!(triggers_of(&all, 2).len(), 1, "{all:#?}");
    assert_eq!(image_behind(&v, "dgr-active"), "demo:v1", "{v}");
}

#[test]
fn a_contract_becoming_due_is_notified_once_and_the_rollout_stays_healthy() {
    let hook = Receiver::start(0);
    let config_dir = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let migrations = work.path().join("migrations");
    std::fs::create_dir(&migrations).expect("mkdir");
    let examples =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/migrations");
    let copy = |file: &str| {
        std::fs::copy(examples.join(file), migrations.join(file)).expect("copy migration");
    };
    copy("000_create_users.yaml");
    let (services, _, _) = services("due");
    let rollout = demo_rollout(
        "due",
        1,
        "      autoPromotionEnabled: false\n      scaleDownDelaySeconds: 2\n",
        "",
    );
    // Manual contract (the default) after a one-second bake: the contract becomes due soon
    // after the promotion and stays due.
    let manifest = format!(
        "{services}{rollout}  migrations:\n    source: {{dir: {}}}\n    databaseUrlFrom: {{env: DATABASE_URL}}\n    bake: 1s\n",
        migrations.display()
    );
    let database = format!("sqlite:{}", work.path().join("app.db").display());
    let config = config_file_for(
        config_dir.path(),
        100,
        "on-migration-contract-due, on-completed, on-degraded",
    );
    let url = hook.url();
    let d = Daemon::start_opts(
        &manifest,
        &[
            ("HOOK_URL", &url),
            ("HOOK_KEY", KEY),
            ("DATABASE_URL", &database),
        ],
        &["--notifications", &config],
        None,
    );
    d.wait_healthy_on("due", "demo:v1");
    copy("001_user_name_to_full_name.yaml");
    d.ok(&["set", "image", "due", "app=demo:v2"]);
    d.wait("due", "preview ready", |v| phase(v) == "Paused");
    d.ok(&["promote", "due"]);
    d.wait_healthy_on("due", "demo:v2");
    hook.wait("on-migration-contract-due of revision 2", |all| {
        triggers_of(all, 2).contains_key("on-migration-contract-due")
    });
    let_passes_run(&d, "due");
    let all = hook.all();
    let due = only_delivery(&all, "on-migration-contract-due", 2);
    assert_eq!(due["reason"], "MigrationContractDue", "{due}");
    assert_eq!(due["phase"], "Healthy", "{due}");
    assert!(
        due["message"]
            .as_str()
            .is_some_and(|m| m.contains("001_user_name_to_full_name")),
        "{due}"
    );
    assert!(
        all.iter().all(|r| r.body["trigger"] != "on-degraded"),
        "{all:#?}"
    );
    let v = d.view("due");
    assert_eq!(phase(&v), "Healthy");
    assert_eq!(image_behind(&v, "due-active"), "demo:v2");
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
fn notifications_not_delivered_when_the_daemon_is_killed_arrive_after_its_restart() {
    // The receiver refuses everything (503) until told otherwise, keeping what it refused.
    let hook = Receiver::start(usize::MAX);
    let config_dir = tempfile::tempdir().expect("tempdir");
    let config = config_file(config_dir.path(), 200);
    let (services, _, _) = services("crash");
    let rollout = demo_rollout("crash", 1, "", "");
    let url = hook.url();
    let env = [("HOOK_URL", url.as_str()), ("HOOK_KEY", KEY)];
    let mut d = Daemon::start_opts(
        &format!("{services}{rollout}"),
        &env,
        &["--notifications", &config],
        None,
    );
    d.wait_healthy_on("crash", "demo:v1");
    d.ok(&["set", "image", "crash", "app=demo:v2"]);
    d.wait_healthy_on("crash", "demo:v2");
    let expected = ["on-completed", "on-switch-verified", "on-update-started"];
    let tried_before = wait_for("a refused try of every notification of revision 2", || {
        let rejected = hook.all_rejected();
        let counts = triggers_of(&rejected, 2);
        expected
            .iter()
            .all(|t| counts.contains_key(*t))
            .then_some(rejected)
    });
    d.kill9();
    let keys_before = idempotency_keys(&tried_before, 2);
    assert_eq!(keys_before.len(), expected.len(), "{tried_before:#?}");
    assert!(hook.all().is_empty(), "nothing may have been accepted yet");
    hook.accept_all();
    d.restart_with_env(&env);
    let delivered = hook.wait("the stored notifications of revision 2", |all| {
        idempotency_keys(all, 2) == keys_before
    });
    let counts = triggers_of(&delivered, 2);
    for trigger in expected {
        assert!(
            counts.contains_key(trigger),
            "{trigger} lost: {delivered:#?}"
        );
    }
    for r in &delivered {
        assert_eq!(r.headers["x-cutover-signature"], signature(KEY, &r.raw));
        assert_eq!(r.headers["idempotency-key"], r.body["idempotencyKey"]);
    }
    assert_eq!(phase(&d.view("crash")), "Healthy");
}

/// The distinct idempotency keys of the deliveries of `revision`.
fn idempotency_keys(all: &[Received], revision: i64) -> std::collections::BTreeSet<String> {
    all.iter()
        .filter(|r| r.body["revision"] == revision)
        .filter_map(|r| r.headers.get("idempotency-key").cloned())
        .collect()
}

/// Polls `found` (up to a minute) until it gives a value.
fn wait_for<T>(what: &str, found: impl Fn() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
