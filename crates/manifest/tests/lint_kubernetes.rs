//! What the Kubernetes API server (or the backend in use) would refuse or ignore is reported by
//! lint, at its line: resource quantities, names, container and port rules, ranges, Job
//! restart policies, and fields that do nothing on the chosen backend.

mod common;

use common::{ROLLOUT, SERVICES, TEMPLATE, lint, lint_rollout, rollout_with};
use cutover_manifest::{Source, Target, load_for};
use insta::assert_snapshot;

/// Lints the valid set with `rollout` for `target`.
fn lint_for(rollout: &str, template: &str, target: Target) -> String {
    lint_with(rollout, template, None, target)
}

/// [`lint_for`] with one more file.
fn lint_with(rollout: &str, template: &str, extra: Option<Source>, target: Target) -> String {
    let mut sources = vec![
        Source::new("rollout.yaml", rollout),
        Source::new("services.yaml", SERVICES),
        Source::new("analysis-template.yaml", template),
    ];
    sources.extend(extra);
    match load_for(&sources, target) {
        Ok(set) if set.warnings.is_empty() => "ok".to_string(),
        Ok(set) => format!("ok with warnings:\n{}", set.warnings),
        Err(diags) => diags.to_string(),
    }
}

const RESOURCES: &str = "image: my-app:1.1.0
          resources:
            requests: {cpu: lots, memory: 2Gi, ephemeral-storage: -1}
            limits: {cpu: 500m, memory: 1Gi}";

#[test]
fn invalid_quantities_and_requests_above_limits() {
    let text = rollout_with("image: my-app:1.1.0", RESOURCES);
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn names_follow_kubernetes_rules() {
    let text = rollout_with("name: my-app\n", "name: Foo_Bar\n")
        .replace("- name: app\n", "- name: ROLLOUT_NAME\n")
        .replace("app: my-app\n    spec:", "app: My App!\n    spec:");
    let services = SERVICES.replace("name: my-app-preview", "name: 9-preview");
    let template = TEMPLATE.replace("name: success-rate\n", "name: ../../x\n");
    assert_snapshot!(lint(&[
        ("rollout.yaml", &text),
        ("services.yaml", &services),
        ("analysis-template.yaml", &template),
    ]));
}

#[test]
fn a_path_as_a_rollout_name_is_refused() {
    let text = rollout_with("name: my-app\n", "name: ../../../../tmp/x\n");
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn long_names_are_refused_with_their_length() {
    let long = "a".repeat(254);
    let text = rollout_with("name: my-app\n", &format!("name: {long}\n"));
    let out = lint_rollout(&text);
    assert!(
        out.starts_with("rollout.yaml:4:9: metadata.name: name `aaaa")
            && out.contains("is 254 characters long; at most 253 are allowed"),
        "{out}"
    );
    // A valid subdomain longer than a label value does not fit cutover's Rollout label.
    let text = rollout_with("name: my-app\n", &format!("name: {}\n", "a".repeat(64)));
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn referenced_services_and_templates_are_names_too() {
    let text = rollout_with("activeService: my-app-active", "activeService: My_Active")
        .replace("templateName: success-rate", "templateName: Success_Rate");
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn duplicate_container_names_across_lists() {
    let text = rollout_with(
        "      containers:\n",
        "      initContainers:\n        - name: app\n          image: my-app:1.1.0\n      containers:\n",
    );
    assert_snapshot!(lint_rollout(&text));
}

#[test]
fn a_named_target_port_must_be_declared_by_the_rollouts_containers() {
    let services = SERVICES.replacen("targetPort: 8080", "targetPort: http", 1);
    let out = lint(&[
        ("rollout.yaml", ROLLOUT),
        ("services.yaml", &services),
        ("analysis-template.yaml", TEMPLATE),
    ]);
    assert_snapshot!(out);
    // Declared, it is fine.
    let text = rollout_with(
        "image: my-app:1.1.0",
        "image: my-app:1.1.0\n          ports: [{name: http, containerPort: 8080}]",
    );
    let out = lint(&[
        ("rollout.yaml", &text),
        ("services.yaml", &services),
        ("analysis-template.yaml", TEMPLATE),
    ]);
    assert_eq!(out, "ok");
}

const JOB_TEMPLATE: &str = "\
apiVersion: cutover.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  args:
    - name: service-name
    - name: token
      valueFrom:
        secretKeyRef: {name: creds, key: token}
  metrics:
    - name: smoke
      maxFailures: 2
      provider:
        job:
          spec:
            backoffLimit: -1
            template:
              spec:
                restartPolicy: Always
                containers:
                  - name: smoke
                    image: curlimages/curl:8
";

#[test]
fn job_metrics_need_a_restart_policy_that_ends() {
    assert_snapshot!(lint(&[
        ("rollout.yaml", ROLLOUT),
        ("services.yaml", SERVICES),
        ("analysis-template.yaml", JOB_TEMPLATE),
    ]));
}

#[test]
fn out_of_range_ports_and_probe_periods() {
    let text = rollout_with(
        "image: my-app:1.1.0",
        "image: my-app:1.1.0
          ports: [{name: http, containerPort: 700049481}]
          readinessProbe:
            httpGet: {path: /health, port: metrics}
            periodSeconds: 0
          livenessProbe:
            tcpSocket: {port: 8080}
            successThreshold: 2",
    );
    let services = SERVICES.replacen("port: 80,", "port: 700049481,", 1);
    assert_snapshot!(lint(&[
        ("rollout.yaml", &text),
        ("services.yaml", &services),
        ("analysis-template.yaml", TEMPLATE),
    ]));
}

#[test]
fn replicas_above_the_per_host_limit_warn_on_one_host_only() {
    let text = rollout_with("replicas: 4", "replicas: 1000000");
    assert_snapshot!(lint_for(&text, TEMPLATE, Target::Local));
    assert_eq!(lint_for(&text, TEMPLATE, Target::Kubernetes), "ok");
    assert_eq!(lint_for(&text, TEMPLATE, Target::Any), "ok");
}

#[test]
fn fields_that_do_nothing_on_one_host_warn_there() {
    let text = rollout_with(
        "autoPromotionEnabled: false",
        "autoPromotionEnabled: false
      activeMetadata: {labels: {role: active}}
      antiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: {weight: 1}}",
    );
    let template = JOB_TEMPLATE
        .replace("      maxFailures: 2\n", "")
        .replace("backoffLimit: -1", "backoffLimit: 1")
        .replace("restartPolicy: Always", "restartPolicy: Never");
    assert_snapshot!(lint_for(&text, &template, Target::Local));
    // On Kubernetes the same files are quiet: every one of those fields works there.
    assert_eq!(lint_for(&text, &template, Target::Kubernetes), "ok");
}

#[test]
fn builtin_metrics_warn_on_kubernetes() {
    let template = TEMPLATE.replace(
        "        prometheus:
          address: http://prometheus.monitoring:9090
          query: sum(rate(http_requests_total{service=\"{{args.service-name}}\"}[5m]))",
        "        builtin: {query: SuccessRate}",
    );
    assert_snapshot!(lint_for(ROLLOUT, &template, Target::Kubernetes));
    assert_eq!(lint_for(ROLLOUT, &template, Target::Local), "ok");
}

/// The seed's DestinationRule and VirtualService (§4), with a named route.
const ISTIO: &str = "\
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: my-app
spec:
  host: my-app
  subsets:
    - name: blue
      labels: {app: my-app}
    - name: green
      labels: {app: my-app}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: my-app
spec:
  hosts: [my-app]
  http:
    - name: primary
      route:
        - destination: {host: my-app, subset: blue}
          weight: 100
";

fn with_routing(routing: &str) -> String {
    rollout_with(
        "previewService: my-app-preview",
        &format!(
            "previewService: my-app-preview
      trafficRouting:
        headerRoutes: [{{header: x-canary, exact: \"true\"}}]
        previewWeight: 10{routing}"
        ),
    )
}

fn lint_routing(rollout: &str, target: Target) -> String {
    let istio = Source::new("istio.yaml", ISTIO);
    lint_with(rollout, TEMPLATE, Some(istio), target)
}

#[test]
fn preview_weight_on_kubernetes_needs_a_router_that_can_weight() {
    let out = lint_routing(&with_routing(""), Target::Kubernetes);
    assert!(out.contains("previewWeight"), "{out}");
    assert!(out.contains("trafficRouting.istio"), "{out}");
    assert!(out.contains("gatewayAPI"), "{out}");
    assert_eq!(lint_routing(&with_routing(""), Target::Local), "ok");
}

#[test]
fn istio_routing_matching_the_files_loads() {
    let routing = "
        istio:
          virtualService: {name: my-app, routes: [primary]}
          destinationRule: {name: my-app, activeSubsetName: blue, previewSubsetName: green}";
    assert_eq!(
        lint_routing(&with_routing(routing), Target::Kubernetes),
        "ok"
    );
    let out = lint_routing(&with_routing(routing), Target::Local);
    assert!(out.contains("do nothing on one host"), "{out}");
}

#[test]
fn istio_route_and_subset_names_are_checked_against_the_files() {
    let routing = "
        istio:
          virtualService: {name: my-app, routes: [primray]}
          destinationRule: {name: my-app, activeSubsetName: blue, previewSubsetName: gren}";
    assert_snapshot!(lint_routing(&with_routing(routing), Target::Kubernetes));
}

#[test]
fn gateway_rules_are_checked_against_the_files() {
    let route = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: shop
spec:
  parentRefs: [{name: public}]
  rules:
    - name: main
      backendRefs: [{name: my-app-active, port: 80}]
";
    let rollout = with_routing(
        "
        gatewayAPI:
          httpRoutes: [{name: shop, rules: [mian]}]",
    );
    let route = Source::new("route.yaml", route);
    let out = lint_with(&rollout, TEMPLATE, Some(route), Target::Kubernetes);
    assert!(
        out.contains("HTTPRoute 'shop' has no rule named 'mian'"),
        "{out}"
    );
    assert!(out.contains("its named rules: main"), "{out}");
}
