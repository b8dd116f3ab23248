//! A real `cutover up` daemon in a temporary state directory, driven by the real CLI, with a
//! load generator on a Service. Shared by the single-host end-to-end tests.
#![allow(dead_code)]

pub mod argo;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const CUTOVER: &str = env!("CARGO_BIN_EXE_cutover");

/// A free TCP port on 127.0.0.1 (bound and released; the daemon binds it next).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Services `NAME-active` and `NAME-preview` on fixed free ports.
pub fn services(name: &str) -> (String, u16, u16) {
    let (a, p) = (free_port(), free_port());
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}-active}}\nspec:\n  ports: [{{port: {a}, protocol: TCP}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}-preview}}\nspec:\n  ports: [{{port: {p}, protocol: TCP}}]\n"
    );
    (yaml, a, p)
}

/// A Rollout running the demo app (`cutover demo-app`).
pub fn demo_rollout(name: &str, replicas: u32, strategy_extra: &str, args: &str) -> String {
    format!(
        r#"---
apiVersion: cutover.dev/v1alpha1
kind: Rollout
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: app
          image: demo:v1
          command: ["{CUTOVER}", "demo-app"]
          args: [{args}]
          ports: [{{containerPort: 8080}}]
          readinessProbe:
            httpGet: {{path: /health, port: 8080}}
            periodSeconds: 1
  strategy:
    blueGreen:
      activeService: {name}-active
      previewService: {name}-preview
{strategy_extra}"#
    )
}

/// A running daemon; stopped (SIGTERM, then killed) when dropped.
pub struct Daemon {
    pub dir: PathBuf,
    pub child: Option<Child>,
    /// Extra `cutover up` flags, kept for restarts.
    pub up_args: Vec<String>,
    /// Open-files limit (soft and hard) the daemon runs under, kept for restarts.
    pub nofile: Option<u32>,
    _temp: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts `cutover up -f manifest.yaml` in a new state directory.
    pub fn start(manifest: &str) -> Self {
        Self::start_with_env(manifest, &[])
    }

    /// Starts `cutover up -f manifest.yaml` in a new state directory with extra environment
    /// variables (e.g. the `DATABASE_URL` a Rollout's `spec.migrations` names).
    pub fn start_with_env(manifest: &str, env: &[(&str, &str)]) -> Self {
        Self::start_opts(manifest, env, &[], None)
    }

    /// Starts `cutover up -f manifest.yaml` with extra `up` flags and, when `nofile` is set,
    /// under that open-files limit (soft and hard, so the daemon cannot raise it).
    pub fn start_opts(
        manifest: &str,
        env: &[(&str, &str)],
        up_args: &[&str],
        nofile: Option<u32>,
    ) -> Self {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().to_path_buf();
        std::fs::write(dir.join("manifest.yaml"), manifest).expect("write manifest");
        let mut d = Self {
            dir: dir.clone(),
            child: None,
            up_args: up_args.iter().map(|a| a.to_string()).collect(),
            nofile,
            _temp: Some(temp),
        };
        d.spawn(
            &["-f", dir.join("manifest.yaml").to_str().unwrap_or_default()],
            env,
        );
        d
    }

    /// Starts `cutover up` again on the same state directory (no manifests).
    pub fn restart(&mut self) {
        self.spawn(&[], &[]);
    }

    /// Starts `cutover up` again on the same state directory (no manifests) with extra
    /// environment variables, as after a crash.
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        self.spawn(&[], env);
    }

    fn spawn(&mut self, extra: &[&str], env: &[(&str, &str)]) {
        let _ = std::fs::remove_file(self.dir.join("api.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .expect("daemon log");
        let mut command = match self.nofile {
            // `ulimit -n` in sh sets the soft and the hard limit, then execs the daemon.
            Some(n) => {
                let mut c = Command::new("sh");
                c.args([
                    "-c",
                    &format!("ulimit -n {n} && exec \"$0\" \"$@\""),
                    CUTOVER,
                ]);
                c
            }
            None => Command::new(CUTOVER),
        };
        let child = command
            .arg("--state-dir")
            .arg(&self.dir)
            .arg("up")
            .args(["--drain-timeout", "10s"])
            .args(&self.up_args)
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn cutover up");
        self.child = Some(child);
        let start = Instant::now();
        while !self.dir.join("api.json").exists() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("cutover up exited with {status}: {}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "daemon did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Kills the daemon with SIGKILL (its processes survive, as after a crash).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs a CLI command against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(CUTOVER)
            .arg("--state-dir")
            .arg(&self.dir)
            .args(args)
            .output()
            .expect("run cutover")
    }

    /// Runs a CLI command that must succeed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "cutover {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `get rollout NAME -o view-json`: the composite view (revisions, services, runs).
    pub fn view(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["get", "rollout", name, "-o", "view-json"]))
            .expect("json view")
    }

    /// Polls the view until `done` holds (at most 60 s).
    pub fn wait(&self, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let v = self.view(name);
            if done(&v) {
                return v;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}: status {}\nlog: {}",
                v["rollout"]["status"],
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the rollout is Healthy on `image` with the switch confirmed.
    pub fn wait_healthy_on(&self, name: &str, image: &str) -> Value {
        self.wait(name, &format!("Healthy on {image}"), |v| {
            phase(v) == "Healthy"
                && current_image(v) == image
                && v["rollout"]["status"]["observedGeneration"]
                    == v["rollout"]["metadata"]["generation"]
        })
    }

    pub fn state_dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap_or(0)),
                nix::sys::signal::Signal::SIGTERM,
            );
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // A daemon killed (by a test or above) leaves its data plane serving: stop it too.
        let pid = std::fs::read_to_string(self.dir.join("data-plane.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["pid"].as_i64())
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| {
                std::fs::read(format!("/proc/{p}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("data-plane"))
            });
        if let Some(pid) = pid.map(nix::unistd::Pid::from_raw) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The control API's address, from the state directory's `api.json`.
pub fn api_address(dir: &Path) -> SocketAddr {
    let text = std::fs::read_to_string(dir.join("api.json")).expect("api.json");
    let v: Value = serde_json::from_str(&text).expect("api.json is JSON");
    v["address"]
        .as_str()
        .expect("address")
        .parse()
        .expect("socket address")
}

/// `GET path` on the daemon's control API without a token (HTTP/1.0, read to the end):
/// the status code and the body.
pub fn api_get_without_token(dir: &Path, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let address = api_address(dir);
    let mut s = std::net::TcpStream::connect(address).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").expect("send");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (code, body.unwrap_or_default())
}

pub fn phase(v: &Value) -> String {
    v["rollout"]["status"]["phase"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Image of the revision the Service `service` selects.
pub fn image_behind(v: &Value, service: &str) -> String {
    let selector = v["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == service))
        .and_then(|s| s["selector"].as_str())
        .unwrap_or("");
    v["revisions"]
        .as_array()
        .and_then(|revs| revs.iter().find(|r| r["hash"] == selector))
        .and_then(|r| r["images"][0].as_str())
        .unwrap_or("")
        .to_string()
}

/// Image of the current revision.
pub fn current_image(v: &Value) -> String {
    let hash = v["rollout"]["status"]["currentPodHash"]
        .as_str()
        .unwrap_or("");
    v["revisions"]
        .as_array()
        .and_then(|revs| revs.iter().find(|r| r["hash"] == hash))
        .and_then(|r| r["images"][0].as_str())
        .unwrap_or("")
        .to_string()
}

/// One request of the load generator.
#[derive(Clone, Debug)]
pub struct Sample {
    pub sent: Instant,
    pub version: Option<String>,
    pub error: Option<String>,
}

/// Clients sending GET / to an address until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, samples) = (stop.clone(), samples.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("rt");
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(15))
                        .build()
                        .expect("client");
                    rt.block_on(async {
                        while !stop.load(Ordering::Relaxed) {
                            let sent = Instant::now();
                            let sample = match http.get(format!("http://{addr}/")).send().await {
                                Ok(r) if r.status().is_success() => {
                                    let version = r
                                        .headers()
                                        .get("x-version")
                                        .and_then(|v| v.to_str().ok())
                                        .map(str::to_string);
                                    match r.bytes().await {
                                        Ok(_) => Sample {
                                            sent,
                                            version: version.or(Some("?".into())),
                                            error: None,
                                        },
                                        Err(e) => Sample {
                                            sent,
                                            version: None,
                                            error: Some(format!("body: {e}")),
                                        },
                                    }
                                }
                                Ok(r) => Sample {
                                    sent,
                                    version: None,
                                    error: Some(format!("status {}", r.status())),
                                },
                                Err(e) => Sample {
                                    sent,
                                    version: None,
                                    error: Some(e.to_string()),
                                },
                            };
                            samples.lock().expect("lock").push(sample);
                        }
                    });
                })
            })
            .collect();
        Self {
            stop,
            samples,
            threads,
        }
    }

    /// Samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().expect("lock").clone()
    }

    pub fn stop(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        self.samples.lock().expect("lock").clone()
    }
}

impl Drop for Load {
    /// A test that fails before `stop` leaves no client running.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Fails listing the errors if any sample failed.
pub fn assert_no_failures(samples: &[Sample]) {
    let failures: Vec<&Sample> = samples.iter().filter(|s| s.error.is_some()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failures.len(),
        samples.len(),
        failures.iter().take(5).collect::<Vec<_>>()
    );
}

/// Requests sent after `ack` were not answered by `old`.
pub fn assert_none_from_after(samples: &[Sample], old: &str, ack: Instant) {
    let late: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.sent > ack && s.version.as_deref() == Some(old))
        .collect();
    assert!(
        late.is_empty(),
        "{} requests sent after the switch was acknowledged were answered by {old}",
        late.len()
    );
}
