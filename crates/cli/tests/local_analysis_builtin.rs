//! Analysis on one host with the `builtin` provider (the router's own per-revision counters,
//! no Prometheus), end to end through a real `cutover up`:
//! - a healthy v2 passes a pre-promotion success-rate analysis on the preview Service and is
//!   promoted on its own, with no failed request on the active Service;
//! - a v2 failing 25 % of its requests is aborted on its own: the run ends Failed and the
//!   active Service stays on v1;
//! - a preview that gets no traffic is not promoted: with `result[0] >= 0.95` every
//!   measurement is an Error (an empty list has no first element) and the 5th error in a row
//!   ends the run in Error (docs/analysis.md, "No data");
//! - a run killed mid-way with the daemon (SIGKILL) resumes after a restart, keeping the
//!   measurements already taken and stopping at its count.
//!
//! Each scenario has its own daemon and ports, so the tests run concurrently.

mod e2e;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use e2e::*;
use serde_json::Value;

/// A template with one builtin metric on the revision under analysis, behind the preview
/// Service (the provider's defaults before the switch).
fn builtin_template(
    name: &str,
    query: &str,
    window: &str,
    count: u32,
    interval: &str,
    condition: &str,
) -> String {
    format!(
        r#"---
apiVersion: cutover.dev/v1alpha1
kind: AnalysisTemplate
metadata: {{name: {name}}}
spec:
  metrics:
    - name: {name}
      count: {count}
      interval: {interval}
      successCondition: "{condition}"
      provider:
        builtin: {{query: {query}, window: {window}}}
"#
    )
}

fn pre_promotion(template: &str) -> String {
    format!("      prePromotionAnalysis:\n        templates: [{{templateName: {template}}}]\n")
}

fn addr(port: u16) -> SocketAddr {
    ([127, 0, 0, 1], port).into()
}

/// Name and phase of the rollout's pre-promotion run, if it has one.
fn pre_run(v: &Value) -> Option<(String, String)> {
    v["runs"].as_array()?.iter().find_map(|r| {
        let name = r["name"].as_str()?;
        (r["kind"] == "pre" || name.ends_with("-pre")).then(|| {
            (
                name.to_string(),
                r["phase"].as_str().unwrap_or("").to_string(),
            )
        })
    })
}

/// `get analysisrun NAME -o json`.
fn analysis_run(d: &Daemon, name: &str) -> Value {
    serde_json::from_str(&d.ok(&["get", "analysisrun", name, "-o", "json"])).expect("run json")
}

/// The run's only metric result.
fn metric(run: &Value) -> &Value {
    &run["status"]["metricResults"][0]
}

fn measurements(run: &Value) -> Vec<Value> {
    metric(run)["measurements"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The first number of a measurement value such as `[0.75]`.
fn number(value: &Value) -> Option<f64> {
    value
        .as_str()?
        .trim_matches(|c| c == '[' || c == ']' || c == ' ')
        .parse()
        .ok()
}

const SUCCESS_RATE: &str = "result[0] >= 0.95";

#[test]
fn builtin_success_rate_promotes_a_healthy_preview() {
    let started = Instant::now();
    let (services, active_port, preview_port) = services("ok");
    let template = builtin_template("success-rate", "SuccessRate", "2s", 2, "1s", SUCCESS_RATE);
    let rollout = demo_rollout("ok", 1, &pre_promotion("success-rate"), "");
    let d = Daemon::start(&format!("{services}{template}{rollout}"));
    // The initial deploy skips the gates.
    d.wait_healthy_on("ok", "demo:v1");

    let production = Load::start(addr(active_port), 1);
    let testers = Load::start(addr(preview_port), 1);
    d.ok(&["set", "image", "ok", "app=demo:v2"]);
    let v = d.wait_healthy_on("ok", "demo:v2");
    std::thread::sleep(Duration::from_millis(300));
    let production = production.stop();
    let testers = testers.stop();

    let (name, phase) = pre_run(&v).expect("a pre-promotion run");
    assert_eq!(phase, "Successful", "{}", d.log());
    let run = analysis_run(&d, &name);
    let m = metric(&run);
    assert_eq!(m["count"], 2, "{run:#}");
    assert_eq!(m["successful"], 2, "{run:#}");
    for ms in measurements(&run) {
        assert_eq!(ms["phase"], "Successful", "{ms}");
        assert_eq!(ms["metadata"]["service"], "ok-preview", "{ms}");
        assert_eq!(ms["metadata"]["revision"], run["hash"], "{ms}");
        assert_eq!(number(&ms["value"]), Some(1.0), "{ms}");
    }
    assert_eq!(image_behind(&v, "ok-active"), "demo:v2");
    assert_no_failures(&production);
    // The preview Service selects v2 as soon as it exists: until a v2 replica is ready the
    // router answers 503 there. From v2's first answer on, no preview request failed.
    let first_v2 = testers
        .iter()
        .position(|s| s.version.as_deref() == Some("v2"))
        .expect("the preview load reached v2");
    assert_no_failures(&testers[first_v2..]);
    eprintln!("healthy preview promoted in {:?}", started.elapsed());
}

#[test]
fn builtin_success_rate_aborts_a_preview_failing_a_quarter_of_requests() {
    let started = Instant::now();
    let (services, active_port, preview_port) = services("bad");
    let template = builtin_template("success-rate", "SuccessRate", "2s", 2, "1s", SUCCESS_RATE);
    let rollout = demo_rollout(
        "bad",
        1,
        &pre_promotion("success-rate"),
        r#""--fail-rate-for", "v2=0.25""#,
    );
    let d = Daemon::start(&format!("{services}{template}{rollout}"));
    d.wait_healthy_on("bad", "demo:v1");

    let production = Load::start(addr(active_port), 1);
    let testers = Load::start(addr(preview_port), 1);
    d.ok(&["set", "image", "bad", "app=demo:v2"]);
    let v = d.wait("bad", "aborted by analysis", |v| {
        v["rollout"]["status"]["abort"] == true && pre_run(v).is_some_and(|(_, p)| p != "Running")
    });
    std::thread::sleep(Duration::from_millis(300));
    let production = production.stop();
    let testers = testers.stop();

    let (name, phase) = pre_run(&v).expect("a pre-promotion run");
    assert_eq!(phase, "Failed", "{}", d.log());
    let run = analysis_run(&d, &name);
    let m = metric(&run);
    assert_eq!(m["phase"], "Failed", "{run:#}");
    assert_eq!(
        m["failed"], 1,
        "failureLimit 0: the first failure ends the run: {run:#}"
    );
    let first = &measurements(&run)[0];
    let rate = number(&first["value"]).expect("a success rate");
    assert!(
        (0.65..=0.85).contains(&rate),
        "success rate {rate}: {first}"
    );
    assert_eq!(image_behind(&v, "bad-active"), "demo:v1", "active moved");
    assert_no_failures(&production);
    assert!(
        production
            .iter()
            .all(|s| s.version.as_deref() == Some("v1")),
        "production saw another version than v1"
    );
    let injected = testers
        .iter()
        .filter(|s| {
            s.error
                .as_deref()
                .is_some_and(|e| e.starts_with("status 500"))
        })
        .count();
    assert!(injected > 0, "the preview load saw v2's failures");
    let tree = d.ok(&["get", "rollout", "bad"]);
    assert!(tree.contains("✖ 1"), "{tree}");
    eprintln!("faulty preview aborted in {:?}", started.elapsed());
}

#[test]
fn builtin_metric_without_preview_traffic_does_not_pass() {
    let started = Instant::now();
    let (services, active_port, _) = services("idle");
    let template = builtin_template("success-rate", "SuccessRate", "1s", 2, "1s", SUCCESS_RATE);
    let rollout = demo_rollout("idle", 1, &pre_promotion("success-rate"), "");
    let d = Daemon::start(&format!("{services}{template}{rollout}"));
    d.wait_healthy_on("idle", "demo:v1");

    // Production traffic only: the preview revision is never asked anything.
    let production = Load::start(addr(active_port), 1);
    d.ok(&["set", "image", "idle", "app=demo:v2"]);
    let v = d.wait("idle", "the run to end", |v| {
        pre_run(v).is_some_and(|(_, p)| p != "Running")
    });
    let (name, phase) = pre_run(&v).expect("a pre-promotion run");
    // An empty list makes `result[0]` an evaluation error; errors are retried and the 5th in
    // a row (consecutiveErrorLimit 4) ends the run in Error, which aborts the update.
    assert_eq!(phase, "Error", "{}", d.log());
    let run = analysis_run(&d, &name);
    let m = metric(&run);
    assert_eq!(m["phase"], "Error", "{run:#}");
    assert_eq!(m["error"], 5, "{run:#}");
    assert_eq!(m["successful"], 0, "{run:#}");
    let kept = measurements(&run);
    assert_eq!(kept.len(), 5, "{run:#}");
    for ms in &kept {
        assert_eq!(ms["phase"], "Error", "{ms}");
        assert_eq!(ms["value"], "[]", "no request in the window: {ms}");
    }
    let v = d.wait("idle", "the update to be aborted", |v| {
        v["rollout"]["status"]["abort"] == true
    });
    assert_eq!(image_behind(&v, "idle-active"), "demo:v1", "active moved");
    let production = production.stop();
    assert_no_failures(&production);
    eprintln!("no-data run ended in Error in {:?}", started.elapsed());
}

#[test]
fn analysis_run_resumes_after_the_daemon_is_killed() {
    let started = Instant::now();
    let (services, _, _) = services("resume");
    // RequestRate is a number even without traffic, so every measurement passes.
    let template = builtin_template(
        "request-rate",
        "RequestRate",
        "1s",
        4,
        "2s",
        "result[0] >= 0",
    );
    let rollout = demo_rollout("resume", 1, &pre_promotion("request-rate"), "");
    let mut d = Daemon::start(&format!("{services}{template}{rollout}"));
    d.wait_healthy_on("resume", "demo:v1");
    d.ok(&["set", "image", "resume", "app=demo:v2"]);
    let v = d.wait("resume", "the pre-promotion run", |v| pre_run(v).is_some());
    let (name, _) = pre_run(&v).expect("a pre-promotion run");

    // Kill the daemon once one or two measurements are stored.
    let poll = Instant::now();
    let before = loop {
        let run = analysis_run(&d, &name);
        let count = metric(&run)["count"].as_i64().unwrap_or(0);
        if count >= 1 {
            d.kill9();
            break run;
        }
        assert!(
            poll.elapsed() < Duration::from_secs(30),
            "no measurement: {run:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let taken = measurements(&before);
    assert!(
        (1..=2).contains(&taken.len()),
        "killed after {} measurements",
        taken.len()
    );
    assert_eq!(before["phase"], "Running");

    d.restart();
    let v = d.wait_healthy_on("resume", "demo:v2");
    let (_, phase) = pre_run(&v).expect("the run");
    assert_eq!(phase, "Successful", "{}", d.log());
    let after = analysis_run(&d, &name);
    let m = metric(&after);
    assert_eq!(m["count"], 4, "{after:#}");
    assert_eq!(m["successful"], 4, "{after:#}");
    assert_eq!(m["error"], 0, "{after:#}");
    let all = measurements(&after);
    assert_eq!(all.len(), 4, "no measurement lost or repeated: {after:#}");
    assert_eq!(&all[..taken.len()], &taken[..], "earlier measurements kept");
    let starts: Vec<jiff::Timestamp> = all
        .iter()
        .map(|m| {
            m["startedAt"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .expect("startedAt")
        })
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] < w[1]),
        "measurements in order: {starts:?}"
    );
    eprintln!("resumed run finished in {:?}", started.elapsed());
}
