//! Checks of a pod template, wherever one is written: a Rollout's `spec.template` and a job
//! metric's `provider.job.spec.template`. What the API server would refuse when the ReplicaSet
//! or Job is created (a bad quantity, a duplicate container name, a port out of range, a Job
//! that restarts forever) is reported here, at its line, before anything is applied.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::{
    ContainerPort, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::{Rule, check_labels, check_name};
use super::{at_least, err, err_value, quantity};
use crate::diag::{Diagnostic, Diagnostics, clip};
use crate::path::FieldPath;
use crate::set::Located;

/// Whose pods a template makes: the rules for `restartPolicy` differ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// A Rollout's revisions (ReplicaSets): pods always restart.
    Rollout,
    /// A job metric's Job: pods must not restart forever.
    Job,
}

/// The parts of a container (or ephemeral container) that are checked.
struct View<'a> {
    path: FieldPath,
    name: &'a str,
    ports: &'a [ContainerPort],
    resources: Option<&'a ResourceRequirements>,
    probes: [(&'static str, Option<&'a Probe>); 3],
}

pub(super) fn check_template<T>(
    o: &Located<T>,
    base: &FieldPath,
    template: &PodTemplateSpec,
    owner: Owner,
    diags: &mut Diagnostics,
) {
    let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    check_labels(o, &base.key("metadata").key("labels"), labels, diags);
    if let Some(spec) = &template.spec {
        check_spec(o, &base.key("spec"), spec, owner, diags);
    }
}

/// A job metric's Job: its counts and its pod template.
pub(super) fn check_job<T>(
    o: &Located<T>,
    base: &FieldPath,
    job: &JobSpec,
    diags: &mut Diagnostics,
) {
    let counts = [
        ("backoffLimit", job.backoff_limit),
        ("parallelism", job.parallelism),
        ("completions", job.completions),
        ("ttlSecondsAfterFinished", job.ttl_seconds_after_finished),
    ];
    for (name, value) in counts {
        at_least(
            o,
            &base.key(name),
            value.map(i64::from),
            0,
            "use a value >= 0",
            diags,
        );
    }
    let deadline = base.key("activeDeadlineSeconds");
    let help = "give the Job's deadline in seconds, or remove it";
    at_least(o, &deadline, job.active_deadline_seconds, 1, help, diags);
    check_template(o, &base.key("template"), &job.template, Owner::Job, diags);
}

fn check_spec<T>(
    o: &Located<T>,
    base: &FieldPath,
    spec: &PodSpec,
    owner: Owner,
    diags: &mut Diagnostics,
) {
    restart_policy(o, base, spec, owner, diags);
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        diags.push(err(
            o,
            &base.key("ephemeralContainers"),
            "ephemeral containers are not allowed in a pod template".into(),
            "remove them: ephemeral containers are added to running pods (e.g. with `kubectl debug`)",
        ));
    }
    let views = containers(base, spec);
    let mut seen: HashMap<&str, &FieldPath> = HashMap::new();
    for v in &views {
        let name_path = v.path.key("name");
        check_name(
            o,
            &name_path,
            "container name",
            v.name,
            Rule::Dns1123Label,
            diags,
        );
        if let Some(first) = seen.insert(v.name, &v.path) {
            let at = o.locate(first);
            diags.push(
                Diagnostic::error(
                    &o.file,
                    o.locate_value(&name_path),
                    name_path.clone(),
                    format!("duplicate container name `{}`", clip(v.name.to_string(), 60)),
                )
                .with_help(format!(
                    "container names must be unique across containers, initContainers and ephemeralContainers; `{first}` at line {} has it too",
                    at.line
                )),
            );
        }
        check_ports(o, v, diags);
        if let Some(r) = v.resources {
            check_resources(o, &v.path.key("resources"), r, diags);
        }
        for (name, probe) in v.probes {
            if let Some(p) = probe {
                check_probe(o, &v.path.key(name), name, p, v.ports, diags);
            }
        }
    }
    if let Some(r) = &spec.resources {
        check_resources(o, &base.key("resources"), r, diags);
    }
    check_quantities(o, &base.key("overhead"), spec.overhead.as_ref(), diags);
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        let path = base.key("volumes").index(i);
        check_name(
            o,
            &path.key("name"),
            "volume name",
            &volume.name,
            Rule::Dns1123Label,
            diags,
        );
        if let Some(limit) = volume
            .empty_dir
            .as_ref()
            .and_then(|e| e.size_limit.as_ref())
        {
            check_quantity(o, &path.key("emptyDir").key("sizeLimit"), limit, diags);
        }
    }
    at_least(
        o,
        &base.key("terminationGracePeriodSeconds"),
        spec.termination_grace_period_seconds,
        0,
        "give the seconds a pod has to stop before it is killed",
        diags,
    );
}

fn restart_policy<T>(
    o: &Located<T>,
    base: &FieldPath,
    spec: &PodSpec,
    owner: Owner,
    diags: &mut Diagnostics,
) {
    let path = base.key("restartPolicy");
    match (owner, spec.restart_policy.as_deref()) {
        (Owner::Rollout, None | Some("Always")) | (Owner::Job, Some("Never" | "OnFailure")) => {}
        (Owner::Rollout, Some(other)) => diags.push(err_value(
            o,
            &path,
            format!("must be Always in a Rollout's pod template, got `{}`", clip(other.to_string(), 40)),
            "remove it: the pods of a revision are always restarted",
        )),
        (Owner::Job, Some(other)) => diags.push(err_value(
            o,
            &path,
            format!("a Job's pods need Never or OnFailure, got `{}`", clip(other.to_string(), 40)),
            "use `restartPolicy: Never` (a failed pod fails the measurement's attempt) or OnFailure (it restarts in place)",
        )),
        (Owner::Job, None) => diags.push(
            Diagnostic::error(
                &o.file,
                o.locate_missing(&path),
                path.clone(),
                "required: a Job's pods need restartPolicy Never or OnFailure (Kubernetes refuses the default, Always)",
            )
            .with_help("add `restartPolicy: Never` beside `containers:`"),
        ),
    }
}

/// A [`View`] of a `Container` or an `EphemeralContainer`: two types with the same fields.
macro_rules! view {
    ($path:expr, $c:expr) => {
        View {
            path: $path,
            name: &$c.name,
            ports: $c.ports.as_deref().unwrap_or_default(),
            resources: $c.resources.as_ref(),
            probes: [
                ("livenessProbe", $c.liveness_probe.as_ref()),
                ("readinessProbe", $c.readiness_probe.as_ref()),
                ("startupProbe", $c.startup_probe.as_ref()),
            ],
        }
    };
}

fn containers<'a>(base: &FieldPath, spec: &'a PodSpec) -> Vec<View<'a>> {
    let mut out = Vec::new();
    let lists = [
        ("containers", Some(&spec.containers)),
        ("initContainers", spec.init_containers.as_ref()),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.into_iter().flatten().enumerate() {
            out.push(view!(base.key(list).index(i), c));
        }
    }
    for (i, c) in spec.ephemeral_containers.iter().flatten().enumerate() {
        out.push(view!(base.key("ephemeralContainers").index(i), c));
    }
    out
}

/// A port number's problem, if it is not 1..=65535.
fn port_range(port: i32) -> Option<String> {
    (!(1..=65535).contains(&port)).then(|| format!("must be between 1 and 65535, got {port}"))
}

pub(super) const PORT_HELP: &str = "a TCP port number is between 1 and 65535";

fn check_ports<T>(o: &Located<T>, v: &View<'_>, diags: &mut Diagnostics) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (j, p) in v.ports.iter().enumerate() {
        let path = v.path.key("ports").index(j);
        if let Some(problem) = port_range(p.container_port) {
            diags.push(err_value(o, &path.key("containerPort"), problem, PORT_HELP));
        }
        if let Some(problem) = p.host_port.filter(|h| *h != 0).and_then(port_range) {
            diags.push(err_value(o, &path.key("hostPort"), problem, PORT_HELP));
        }
        if let Some(name) = &p.name {
            check_name(
                o,
                &path.key("name"),
                "port name",
                name,
                Rule::IanaSvcName,
                diags,
            );
            if let Some(first) = names.insert(name, j) {
                diags.push(err_value(
                    o,
                    &path.key("name"),
                    format!(
                        "duplicate port name `{}` (also ports[{first}])",
                        clip(name.clone(), 40)
                    ),
                    "give each port of a container its own name",
                ));
            }
        }
    }
}

fn check_probe<T>(
    o: &Located<T>,
    path: &FieldPath,
    kind: &str,
    p: &Probe,
    ports: &[ContainerPort],
    diags: &mut Diagnostics,
) {
    let at_least_one = [
        (
            "periodSeconds",
            p.period_seconds,
            "remove it for the default (10 s), or give the period in seconds",
        ),
        (
            "timeoutSeconds",
            p.timeout_seconds,
            "remove it for the default (1 s), or give the timeout in seconds",
        ),
        (
            "successThreshold",
            p.success_threshold,
            "remove it for the default (1)",
        ),
        (
            "failureThreshold",
            p.failure_threshold,
            "remove it for the default (3)",
        ),
    ];
    // Kubernetes silently reads 0 as the default; the single-host prober would not.
    for (name, value, help) in at_least_one {
        at_least(o, &path.key(name), value.map(i64::from), 1, help, diags);
    }
    let delay = p.initial_delay_seconds.map(i64::from);
    at_least(
        o,
        &path.key("initialDelaySeconds"),
        delay,
        0,
        "use a value >= 0",
        diags,
    );
    let grace = "remove it to use the pod's grace period";
    let grace_path = path.key("terminationGracePeriodSeconds");
    at_least(
        o,
        &grace_path,
        p.termination_grace_period_seconds,
        1,
        grace,
        diags,
    );
    if kind != "readinessProbe" && p.success_threshold.is_some_and(|v| v > 1) {
        diags.push(err_value(
            o,
            &path.key("successThreshold"),
            format!("must be 1 for a {kind}"),
            "only a readinessProbe may ask for several successes in a row",
        ));
    }
    let targets = [
        (
            path.key("httpGet").key("port"),
            p.http_get.as_ref().map(|h| &h.port),
        ),
        (
            path.key("tcpSocket").key("port"),
            p.tcp_socket.as_ref().map(|t| &t.port),
        ),
    ];
    for (port_path, port) in targets {
        match port {
            Some(IntOrString::Int(n)) => {
                if let Some(problem) = port_range(*n) {
                    diags.push(err_value(o, &port_path, problem, PORT_HELP));
                }
            }
            Some(IntOrString::String(name))
                if !ports.iter().any(|cp| cp.name.as_deref() == Some(name)) =>
            {
                diags.push(err_value(
                    o,
                    &port_path,
                    format!("no port of this container is named `{}`", clip(name.clone(), 40)),
                    "name one of the container's ports so (`ports: [{name: ..., containerPort: N}]`), or give the number",
                ));
            }
            _ => {}
        }
    }
    if let Some(problem) = p.grpc.as_ref().and_then(|g| port_range(g.port)) {
        diags.push(err_value(
            o,
            &path.key("grpc").key("port"),
            problem,
            PORT_HELP,
        ));
    }
}

fn check_resources<T>(
    o: &Located<T>,
    path: &FieldPath,
    r: &ResourceRequirements,
    diags: &mut Diagnostics,
) {
    check_quantities(o, &path.key("requests"), r.requests.as_ref(), diags);
    check_quantities(o, &path.key("limits"), r.limits.as_ref(), diags);
    let (Some(requests), Some(limits)) = (&r.requests, &r.limits) else {
        return;
    };
    for (name, request) in requests {
        let Some(limit) = limits.get(name) else {
            continue;
        };
        if let (Some(req), Some(lim)) = (quantity::value(&request.0), quantity::value(&limit.0))
            && req > lim
        {
            diags.push(err_value(
                o,
                &path.key("requests").key(name.clone()),
                format!("request {} is more than the limit {}", request.0, limit.0),
                "lower the request or raise the limit: a container never gets more than its limit",
            ));
        }
    }
}

fn check_quantities<T>(
    o: &Located<T>,
    path: &FieldPath,
    map: Option<&BTreeMap<String, Quantity>>,
    diags: &mut Diagnostics,
) {
    for (name, q) in map.into_iter().flatten() {
        check_quantity(o, &path.key(name.clone()), q, diags);
    }
}

fn check_quantity<T>(o: &Located<T>, path: &FieldPath, q: &Quantity, diags: &mut Diagnostics) {
    match quantity::value(&q.0) {
        None => diags.push(err_value(
            o,
            path,
            format!("invalid quantity `{}`", clip(q.0.clone(), 40)),
            "write a number with an optional suffix: e.g. 512Mi or 1Gi (bytes), 250m or 1 (CPUs)",
        )),
        Some(v) if v < 0.0 => diags.push(err_value(
            o,
            path,
            format!("must be 0 or more, got {}", q.0),
            "a quantity of a resource cannot be negative",
        )),
        Some(_) => {}
    }
}
