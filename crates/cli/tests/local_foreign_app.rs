//! An application that is not part of cutover (Python's http.server) run from a manifest goes
//! through set image, promote, abort and undo under load without a failed request.

mod e2e;

use std::net::SocketAddr;
use std::time::Duration;

use e2e::*;

#[test]
fn a_foreign_app_goes_through_set_image_promote_abort_undo_under_load() {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("python3 is needed for this test (the image has it; apt-get install python3)");
    }
    let site = tempfile::tempdir().expect("tempdir");
    std::fs::write(site.path().join("index.html"), "hello\n").expect("write");
    let (services, active_port, _) = services("site");
    let manifest = format!(
        r#"{services}---
apiVersion: cutover.dev/v1alpha1
kind: Rollout
metadata: {{name: site}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: site}}}}
  template:
    metadata: {{labels: {{app: site}}}}
    spec:
      terminationGracePeriodSeconds: 3
      containers:
        - name: web
          image: site:1.0
          command: ["python3", "-m", "http.server", "$(PORT)", "--bind", "127.0.0.1"]
          workingDir: {dir}
          ports: [{{containerPort: 8000}}]
          readinessProbe:
            httpGet: {{path: /index.html, port: 8000}}
            periodSeconds: 1
  strategy:
    blueGreen:
      activeService: site-active
      previewService: site-preview
      autoPromotionEnabled: false
      scaleDownDelaySeconds: 2
"#,
        dir = site.path().display()
    );
    let d = Daemon::start(&manifest);
    d.wait_healthy_on("site", "site:1.0");
    let active: SocketAddr = ([127, 0, 0, 1], active_port).into();
    let load = Load::start(active, 3);

    d.ok(&["set", "image", "site", "web=site:1.1"]);
    d.wait("site", "paused for promotion", |v| phase(v) == "Paused");
    d.ok(&["promote", "site"]);
    d.wait_healthy_on("site", "site:1.1");

    d.ok(&["set", "image", "site", "web=site:1.2"]);
    d.wait("site", "paused for promotion", |v| phase(v) == "Paused");
    d.ok(&["abort", "site"]);
    d.wait("site", "aborted", |v| phase(v) == "Degraded");
    d.ok(&["undo", "site"]);
    d.wait_healthy_on("site", "site:1.1");
    // Let the old revision's scale-down delay pass while the load goes on.
    std::thread::sleep(Duration::from_secs(3));
    let samples = load.stop();
    assert_no_failures(&samples);
    assert!(samples.len() > 100, "only {} requests", samples.len());
}
