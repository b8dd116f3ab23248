//! Analysis on one host against a REAL Prometheus (Debian's `prometheus`, installed by
//! .ci/run) scraping the daemon's `/metrics` every second: a healthy v2 passes pre- and
//! post-promotion analysis and becomes stable; a v3 failing ~20 % of requests is aborted by
//! the success-rate query on the preview, with production (the active Service) never seeing a
//! failed request.

mod e2e;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use e2e::*;

/// A Prometheus server on a free port, scraping `target` every second; killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: SocketAddr) -> Self {
        let binary = std::env::var("CUTOVER_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: cutover\n    static_configs: [{{targets: ['{target}']}}]\n"
            ),
        )
        .expect("config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = cutover_migrate::test_cluster::tool_command(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary} ({e}): install it with `apt-get install -y prometheus` (.ci/run does)")
            });
        let p = Self {
            child,
            port,
            _dir: dir,
        };
        let start = Instant::now();
        while !reqwest::blocking_ready(port) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "prometheus did not become ready: {}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tiny blocking HTTP check without pulling a blocking client in.
mod reqwest {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    pub fn blocking_ready(port: u16) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = s.write_all(b"GET /-/ready HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")
    }
}

fn template(prom_port: u16) -> String {
    // The seed's success-rate template with short windows: 2xx share of the revision's
    // requests on a Service over 15 s, measured every 2 s.
    format!(
        r#"---
apiVersion: cutover.dev/v1alpha1
kind: AnalysisTemplate
metadata: {{name: success-rate}}
spec:
  args:
    - name: service
    - name: hash
  metrics:
    - name: success-rate
      initialDelay: 3s
      interval: 2s
      count: 3
      successCondition: result[0] >= 0.95
      provider:
        prometheus:
          address: http://127.0.0.1:{prom_port}
          query: |
            sum(rate(cutover_requests_total{{service="{{{{args.service}}}}",revision="{{{{args.hash}}}}",code_class="2xx"}}[15s]))
            /
            sum(rate(cutover_requests_total{{service="{{{{args.service}}}}",revision="{{{{args.hash}}}}"}}[15s]))
"#
    )
}

const ANALYSIS: &str = "      prePromotionAnalysis:
        templates: [{templateName: success-rate}]
        args:
          - {name: service, value: shop-preview}
          - {name: hash, valueFrom: {podTemplateHashValue: Latest}}
      postPromotionAnalysis:
        templates: [{templateName: success-rate}]
        args:
          - {name: service, value: shop-active}
          - {name: hash, valueFrom: {podTemplateHashValue: Latest}}
";

fn runs(v: &serde_json::Value) -> Vec<(String, String)> {
    v["runs"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r["name"].as_str().unwrap_or("").to_string(),
                        r["phase"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn real_prometheus_gates_promotion_and_aborts_a_faulty_version() {
    let started = Instant::now();
    let (services, active_port, preview_port) = services("shop");
    // v1 deploys without analysis (the initial deploy skips the gates); analysis is applied
    // once Prometheus scrapes the daemon, whose address is known only after it starts.
    let rollout_v1 = demo_rollout("shop", 2, "", r#""--fail-rate-for", "v3=0.2""#);
    let d = Daemon::start(&format!("{services}{rollout_v1}"));
    d.wait_healthy_on("shop", "demo:v1");
    let prom = Prometheus::start(api_address(d.state_dir()));

    let with_analysis = demo_rollout("shop", 2, ANALYSIS, r#""--fail-rate-for", "v3=0.2""#);
    let manifest: PathBuf = d.state_dir().join("analysis.yaml");
    std::fs::write(
        &manifest,
        format!("{services}{}{with_analysis}", template(prom.port)),
    )
    .expect("write");
    d.ok(&["apply", "-f", manifest.to_str().unwrap_or_default()]);

    let active: SocketAddr = ([127, 0, 0, 1], active_port).into();
    let preview: SocketAddr = ([127, 0, 0, 1], preview_port).into();
    let production = Load::start(active, 2);
    let testers = Load::start(preview, 2);

    // Healthy v2: pre-promotion analysis on the preview passes, the switch happens, the
    // post-promotion analysis on the active Service passes, v2 becomes stable.
    d.ok(&["set", "image", "shop", "app=demo:v2"]);
    let v = d.wait_healthy_on("shop", "demo:v2");
    let r = runs(&v);
    assert!(
        r.iter()
            .any(|(n, p)| n.ends_with("-pre") && p == "Successful"),
        "{r:?}\n{}",
        d.log()
    );
    assert!(
        r.iter()
            .any(|(n, p)| n.ends_with("-post") && p == "Successful"),
        "{r:?}"
    );
    let pre = r
        .iter()
        .find(|(n, _)| n.ends_with("-pre"))
        .map(|(n, _)| n.clone())
        .unwrap_or_default();
    let shown = d.ok(&["get", "analysisrun", &pre]);
    assert!(
        shown.contains("success-rate") && shown.contains("Successful"),
        "{shown}"
    );

    // v3 fails ~20 % of its requests: the success rate on the preview falls under 0.95, the
    // pre-promotion run fails and the update is aborted with no human involved.
    d.ok(&["set", "image", "shop", "app=demo:v3"]);
    let v = d.wait("shop", "aborted by analysis", |v| {
        v["rollout"]["status"]["abort"] == true || phase(v) == "Degraded"
    });
    let r = runs(&v);
    assert!(
        r.iter().any(|(n, p)| n.ends_with("-pre")
            && p == "Failed"
            && n.contains(
                &v["rollout"]["status"]["currentPodHash"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string()
            )),
        "{r:?}"
    );
    assert_eq!(
        image_behind(&v, "shop-active"),
        "demo:v2",
        "traffic stays on the stable revision"
    );
    let tree = d.ok(&["get", "rollout", "shop"]);
    assert!(tree.contains("✖"), "{tree}");

    let production = production.stop();
    let testers = testers.stop();
    assert_no_failures(&production);
    assert!(
        testers.iter().any(|s| s.error.is_some()),
        "the preview load saw v3's failures"
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
}
