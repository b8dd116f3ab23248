//! A real `cutover dashboard` process for the dashboard's end-to-end tests, and its HTTP API
//! as a page's script calls it. Shared by the single-host, Kubernetes and browser tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod browser;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const CUTOVER: &str = env!("CARGO_BIN_EXE_cutover");

/// A value only the pod template's environment holds: it must never reach a page.
pub const SECRET: &str = "hunter2-dashboard-secret";

/// Services, a builtin success-rate template on the preview (`count` measurements a second
/// apart), and a Rollout running the demo app, paused for promotion after the analysis, with a
/// header route and [`SECRET`] in its environment. Returns the manifest and the Services'
/// ports (active, preview).
pub fn local_manifest(name: &str, count: u32) -> (String, u16, u16) {
    let (services, active, preview) = super::e2e::services(name);
    let template = format!(
        r#"---
apiVersion: cutover.dev/v1alpha1
kind: AnalysisTemplate
metadata: {{name: success-rate}}
spec:
  metrics:
    - name: success-rate
      count: {count}
      interval: 1s
      successCondition: "result[0] >= 0.95"
      failureCondition: "result[0] < 0.5"
      provider:
        builtin: {{query: SuccessRate, window: 2s}}
"#
    );
    let strategy = "      autoPromotionEnabled: false\n      scaleDownDelaySeconds: 120\n      trafficRouting:\n        headerRoutes: [{header: x-canary, exact: \"true\"}]\n      prePromotionAnalysis:\n        templates: [{templateName: success-rate}]\n";
    let rollout = super::e2e::demo_rollout(name, 1, strategy, "").replace(
        "          args: [",
        &format!("          env: [{{name: DB_PASSWORD, value: {SECRET}}}]\n          args: ["),
    );
    (format!("{services}{template}{rollout}"), active, preview)
}

/// A running `cutover dashboard`; stopped with SIGTERM when dropped.
pub struct Dash {
    child: Option<Child>,
    /// Its base URL, e.g. `http://127.0.0.1:41234/`.
    pub base: String,
    /// The token printed with the URL (empty when read-only or kept in a file).
    pub token: String,
    pub http: reqwest::Client,
}

impl Dash {
    /// Starts `cutover BACKEND_ARGS dashboard --address 127.0.0.1:0 EXTRA` and reads the URL
    /// it prints.
    pub fn start(backend_args: &[&str], extra: &[&str]) -> Self {
        Self::start_at(backend_args, "127.0.0.1:0", extra)
    }

    /// The same on a given address (a restart on the same port).
    pub fn start_at(backend_args: &[&str], address: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(CUTOVER)
            .args(backend_args)
            .args(["dashboard", "--address", address])
            .args(extra)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn cutover dashboard");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the URL");
        let url = line
            .trim()
            .split_once(": ")
            .map(|(_, url)| url.to_string())
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        let (base, token) = match url.split_once("#token=") {
            Some((base, token)) => (base.to_string(), token.to_string()),
            None => (url, String::new()),
        };
        Self {
            child: Some(child),
            base,
            token,
            http: reqwest::Client::new(),
        }
    }

    /// The port it listens on.
    pub fn address(&self) -> String {
        self.base
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string()
    }

    /// The dashboard's origin, as its pages send it.
    pub fn origin(&self) -> String {
        self.base.trim_end_matches('/').to_string()
    }

    /// GET a page: status and body.
    pub async fn page(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        (r.status().as_u16(), r.text().await.expect("body"))
    }

    /// An action as the page sends it (token, origin, JSON): status and the answer.
    pub async fn act(&self, ns: &str, name: &str, op: Value) -> (u16, Value) {
        let token = format!("Bearer {}", self.token);
        let origin = self.origin();
        self.act_with(
            ns,
            name,
            op,
            &[("authorization", &token), ("origin", &origin)],
        )
        .await
    }

    /// An action with exactly these headers (besides the JSON content type).
    pub async fn act_with(
        &self,
        ns: &str,
        name: &str,
        op: Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}rollouts/{ns}/{name}/actions", self.base))
            .json(&op);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let r = request.send().await.expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// An action that must succeed; returns the backend's message.
    pub async fn ok(&self, ns: &str, name: &str, op: Value) -> String {
        let (status, answer) = self.act(ns, name, op.clone()).await;
        assert_eq!(status, 200, "{op}: {answer}");
        answer["message"].as_str().unwrap_or_default().to_string()
    }

    /// Polls a page until `done` holds (at most 90 s); returns it.
    pub async fn wait_page(&self, path: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let (_, page) = self.page(path).await;
            if done(&page) {
                return page;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "timed out waiting for {what} on {path}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Opens a live stream and reads it until `done` holds for what arrived (at most 60 s).
    pub async fn live_until(
        &self,
        response: &mut reqwest::Response,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let mut text = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done(&text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, response.chunk()).await {
                Ok(Ok(Some(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
                other => panic!("waiting for {what}: stream ended or timed out ({other:?})"),
            }
        }
        text
    }

    /// Opens the live stream of a page and reads it until the page's first regions arrived.
    pub async fn open_live(&self, page: &str) -> reqwest::Response {
        let mut live = self
            .http
            .get(format!("{}live/{page}", self.base))
            .send()
            .await
            .expect("live stream");
        self.live_until(&mut live, "the page's regions", |t| {
            t.contains("inner summary")
        })
        .await;
        live
    }

    /// The refusals every backend gives to a promote, each changing nothing: without the
    /// token (401), from a foreign Origin (403), on a `--read-only` dashboard (403).
    pub async fn assert_refusals(&self, read_only: &Dash, ns: &str, name: &str) {
        let origin = self.origin();
        let bearer = format!("Bearer {}", self.token);
        let promote = serde_json::json!({"op": "promote"});
        let (status, answer) = self
            .act_with(ns, name, promote.clone(), &[("origin", &origin)])
            .await;
        assert_eq!(status, 401, "{answer}");
        let foreign = [
            ("authorization", bearer.as_str()),
            ("origin", "http://evil.example"),
        ];
        let (status, answer) = self.act_with(ns, name, promote.clone(), &foreign).await;
        assert_eq!(status, 403, "{answer}");
        let (status, answer) = read_only
            .act_with(ns, name, promote, &[("authorization", &bearer)])
            .await;
        assert_eq!(status, 403, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or("")
                .contains("--read-only")
        );
    }

    /// Stops the process (SIGTERM, then SIGKILL after 10 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap_or(0)),
                nix::sys::signal::Signal::SIGTERM,
            );
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Dash {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The marks of each phase drawn in a page's charts.
pub fn marks(page: &str, class: &str) -> usize {
    page.matches(&format!("<g class=\"mark {class}\"")).count()
}

/// The text of a page's summary status pill (`Healthy`, `Paused`, …).
pub fn summary_phase(page: &str) -> String {
    let Some(at) = page.find("<dt>Status</dt><dd>") else {
        return String::new();
    };
    let rest = &page[at..];
    let Some(start) = rest.find("</span> ") else {
        return String::new();
    };
    rest[start + 8..]
        .split('<')
        .next()
        .unwrap_or_default()
        .to_string()
}
