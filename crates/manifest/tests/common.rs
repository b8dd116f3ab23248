//! Shared fixtures: a valid manifest set that each test breaks in one place.

#![allow(dead_code)]

use cutover_manifest::{Source, load};

/// The two Services of the seed example.
pub const SERVICES: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: my-app-active
spec:
  selector: {app: my-app}
  ports: [{port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata:
  name: my-app-preview
spec:
  selector: {app: my-app}
  ports: [{port: 80, targetPort: 8080, protocol: TCP}]
";

/// The success-rate template of the seed example.
pub const TEMPLATE: &str = "\
apiVersion: cutover.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  args:
    - name: service-name
  metrics:
    - name: success-rate
      interval: 30s
      count: 5
      successCondition: result[0] >= 0.95
      failureLimit: 3
      provider:
        prometheus:
          address: http://prometheus.monitoring:9090
          query: sum(rate(http_requests_total{service=\"{{args.service-name}}\"}[5m]))
";

/// A valid Rollout; tests replace one line of it.
pub const ROLLOUT: &str = "\
apiVersion: cutover.dev/v1alpha1
kind: Rollout
metadata:
  name: my-app
spec:
  replicas: 4
  revisionHistoryLimit: 2
  selector:
    matchLabels:
      app: my-app
  template:
    metadata:
      labels:
        app: my-app
    spec:
      containers:
        - name: app
          image: my-app:1.1.0
  strategy:
    blueGreen:
      activeService: my-app-active
      previewService: my-app-preview
      autoPromotionEnabled: false
      prePromotionAnalysis:
        templates:
          - templateName: success-rate
        args:
          - name: service-name
            value: my-app-preview
";

/// `ROLLOUT` with `from` replaced by `to` (which must occur).
pub fn rollout_with(from: &str, to: &str) -> String {
    assert!(ROLLOUT.contains(from), "fixture has no {from:?}");
    ROLLOUT.replacen(from, to, 1)
}

/// Loads the files and renders the result as the CLI prints it: every diagnostic, or `ok`.
pub fn lint(files: &[(&str, &str)]) -> String {
    let sources: Vec<Source> = files.iter().map(|(p, t)| Source::new(*p, *t)).collect();
    match load(&sources) {
        Ok(set) if set.warnings.is_empty() => "ok".to_string(),
        Ok(set) => format!("ok with warnings:\n{}", set.warnings),
        Err(diags) => diags.to_string(),
    }
}

/// Lints a Rollout text together with the valid Services and template.
pub fn lint_rollout(rollout: &str) -> String {
    lint(&[
        ("rollout.yaml", rollout),
        ("services.yaml", SERVICES),
        ("analysis-template.yaml", TEMPLATE),
    ])
}
