//! Turns a revision's pod template into what the supervisor launches: programs, arguments,
//! environment and probes, with Kubernetes' `$(VAR)` expansion. Pure: no I/O, so every rule here
//! is unit-tested without starting a process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, EnvVar, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{RevisionSpec, SupervisorError};

/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// Variables a replica inherits from the daemon. Everything else comes from the manifest, so the
/// same manifest behaves the same whichever shell started the daemon; PATH and HOME are kept
/// because local programs need them to be found and to run at all.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
];

/// Everything needed to run one replica ("pod").
#[derive(Debug, Clone)]
pub(crate) struct PodPlan {
    pub containers: Vec<ContainerPlan>,
    pub grace: Duration,
}

/// One container of a pod: one process.
#[derive(Debug, Clone)]
pub(crate) struct ContainerPlan {
    pub name: String,
    pub program: String,
    pub args: Vec<String>,
    /// The full environment, in order (inherited, cutover's, then the manifest's).
    pub env: Vec<(String, String)>,
    pub working_dir: Option<PathBuf>,
    pub startup: Option<ProbePlan>,
    pub readiness: Option<ProbePlan>,
    pub liveness: Option<ProbePlan>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProbePlan {
    pub action: ProbeAction,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProbeAction {
    Http {
        host: String,
        port: u16,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp {
        host: String,
        port: u16,
    },
    Exec {
        command: Vec<String>,
    },
}

/// The pod name a replica gets, as Kubernetes would name a ReplicaSet's pod.
pub(crate) fn pod_name(rollout: &str, hash: &str, index: u32) -> String {
    format!("{rollout}-{hash}-{index}")
}

/// Builds the launch plan of replica `index` listening on `port`.
pub(crate) fn plan_pod(
    spec: &RevisionSpec,
    index: u32,
    port: u16,
    inherited: &[(String, String)],
) -> Result<PodPlan, SupervisorError> {
    let ctx = Ctx { spec, index, port };
    let pod = spec
        .template
        .spec
        .as_ref()
        .filter(|p| !p.containers.is_empty())
        .ok_or_else(|| SupervisorError::NoContainers {
            rollout: spec.rollout.clone(),
            hash: spec.hash.clone(),
        })?;
    if let Some(init) = pod.init_containers.as_ref().and_then(|c| c.first()) {
        return Err(ctx.unsupported(
            &init.name,
            "initContainers are not supported by the single-host backend",
            "run the setup step as part of the main container's command",
        ));
    }
    // Only the first container's first port is remapped: that is the port the Service targets.
    let mapped_port = pod.containers[0]
        .ports
        .as_ref()
        .and_then(|p| p.first())
        .map(|p| p.container_port);
    let containers = pod
        .containers
        .iter()
        .map(|c| ctx.container(c, mapped_port, inherited))
        .collect::<Result<_, _>>()?;
    let grace = pod
        .termination_grace_period_seconds
        .map_or(DEFAULT_GRACE, |s| {
            Duration::from_secs(s.max(0).unsigned_abs())
        });
    Ok(PodPlan { containers, grace })
}

/// The daemon's variables that a replica inherits.
pub(crate) fn inherited_env() -> Vec<(String, String)> {
    INHERITED_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect()
}

struct Ctx<'a> {
    spec: &'a RevisionSpec,
    index: u32,
    port: u16,
}

impl Ctx<'_> {
    fn unsupported(&self, container: &str, what: &str, hint: &str) -> SupervisorError {
        SupervisorError::Unsupported {
            rollout: self.spec.rollout.clone(),
            hash: self.spec.hash.clone(),
            container: container.to_owned(),
            what: what.to_owned(),
            hint: hint.to_owned(),
        }
    }

    fn container(
        &self,
        c: &Container,
        mapped_port: Option<i32>,
        inherited: &[(String, String)],
    ) -> Result<ContainerPlan, SupervisorError> {
        let spec = self.spec;
        let mut command = c.command.clone().unwrap_or_default();
        if command.is_empty() {
            return Err(SupervisorError::MissingCommand {
                rollout: spec.rollout.clone(),
                hash: spec.hash.clone(),
                container: c.name.clone(),
            });
        }
        if c.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
            return Err(self.unsupported(
                &c.name,
                "envFrom is not supported by the single-host backend",
                "list the variables under `env` with a `value`",
            ));
        }
        let mut env: Vec<(String, String)> = inherited.to_vec();
        let image = c.image.clone().unwrap_or_default();
        let pod_name = pod_name(&spec.rollout, &spec.hash, self.index);
        for (k, v) in [
            ("PORT", self.port.to_string()),
            ("CUTOVER_IMAGE", image),
            ("CUTOVER_REVISION", spec.hash.clone()),
            ("CUTOVER_REPLICA", self.index.to_string()),
            ("POD_NAME", pod_name),
        ] {
            set(&mut env, k, v);
        }
        for var in c.env.iter().flatten() {
            let value = self.env_value(&c.name, var)?;
            // Like Kubernetes, a value may refer to variables defined before it.
            let value = expand(&value, &lookup(&env));
            set(&mut env, &var.name, value);
        }
        let vars = lookup(&env);
        let program = expand(&command.remove(0), &vars);
        let args = command
            .iter()
            .chain(c.args.iter().flatten())
            .map(|a| expand(a, &vars))
            .collect();
        let probe = |p: &Option<Probe>, kind: &str| {
            p.as_ref()
                .map(|p| self.probe(c, p, kind, mapped_port))
                .transpose()
        };
        Ok(ContainerPlan {
            name: c.name.clone(),
            program,
            args,
            startup: probe(&c.startup_probe, "startupProbe")?,
            readiness: probe(&c.readiness_probe, "readinessProbe")?,
            liveness: probe(&c.liveness_probe, "livenessProbe")?,
            working_dir: c.working_dir.as_ref().map(PathBuf::from),
            env,
        })
    }

    fn env_value(&self, container: &str, var: &EnvVar) -> Result<String, SupervisorError> {
        let Some(source) = &var.value_from else {
            return Ok(var.value.clone().unwrap_or_default());
        };
        let unsupported = |what: String| {
            self.unsupported(
                container,
                &what,
                "use a literal `value`, or a fieldRef to metadata.name, metadata.namespace, metadata.labels['..'], metadata.annotations['..'], status.podIP or status.hostIP",
            )
        };
        let Some(field) = &source.field_ref else {
            return Err(unsupported(format!(
                "env {}: valueFrom other than fieldRef (configMapKeyRef, secretKeyRef, resourceFieldRef) is not supported by the single-host backend",
                var.name
            )));
        };
        let meta = &self.spec.template.metadata;
        let path = field.field_path.as_str();
        let from_map = |map: Option<&BTreeMap<String, String>>, prefix: &str| {
            let key = path
                .strip_prefix(prefix)?
                .strip_suffix("']")?
                .strip_prefix('\'')?;
            Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
        };
        let value = match path {
            "metadata.name" => Some(pod_name(&self.spec.rollout, &self.spec.hash, self.index)),
            "metadata.namespace" => Some(
                meta.as_ref()
                    .and_then(|m| m.namespace.clone())
                    .unwrap_or_else(|| "default".to_owned()),
            ),
            "status.podIP" | "status.hostIP" => Some("127.0.0.1".to_owned()),
            _ => from_map(
                meta.as_ref().and_then(|m| m.labels.as_ref()),
                "metadata.labels[",
            )
            .or_else(|| {
                from_map(
                    meta.as_ref().and_then(|m| m.annotations.as_ref()),
                    "metadata.annotations[",
                )
            }),
        };
        value.ok_or_else(|| {
            unsupported(format!(
                "env {}: fieldRef {path:?} is not supported by the single-host backend",
                var.name
            ))
        })
    }

    fn probe(
        &self,
        c: &Container,
        p: &Probe,
        kind: &str,
        mapped_port: Option<i32>,
    ) -> Result<ProbePlan, SupervisorError> {
        let port = |port: &IntOrString| -> Result<u16, SupervisorError> {
            let number = match port {
                IntOrString::Int(n) => *n,
                IntOrString::String(name) => c
                    .ports
                    .iter()
                    .flatten()
                    .find(|p| p.name.as_deref() == Some(name.as_str()))
                    .map(|p| p.container_port)
                    .ok_or_else(|| {
                        self.unsupported(
                            &c.name,
                            &format!(
                                "{kind} names port {name:?}, which the container does not declare"
                            ),
                            "add it under `ports` with that name, or use a number",
                        )
                    })?,
            };
            // The declared port stands for the replica's PORT, which cutover chooses.
            if Some(number) == mapped_port {
                return Ok(self.port);
            }
            u16::try_from(number).map_err(|_| {
                self.unsupported(
                    &c.name,
                    &format!("{kind} port {number} is out of range"),
                    "use a port between 1 and 65535",
                )
            })
        };
        let host = |h: &Option<String>| {
            h.clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "127.0.0.1".to_owned())
        };
        let action = if let Some(http) = &p.http_get {
            if http
                .scheme
                .as_deref()
                .is_some_and(|s| !s.eq_ignore_ascii_case("http"))
            {
                return Err(self.unsupported(
                    &c.name,
                    &format!("{kind}.httpGet.scheme {:?} is not supported", http.scheme),
                    "use scheme HTTP, or a tcpSocket or exec probe",
                ));
            }
            ProbeAction::Http {
                host: host(&http.host),
                port: port(&http.port)?,
                path: http.path.clone().unwrap_or_else(|| "/".to_owned()),
                headers: http
                    .http_headers
                    .iter()
                    .flatten()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
            }
        } else if let Some(tcp) = &p.tcp_socket {
            ProbeAction::Tcp {
                host: host(&tcp.host),
                port: port(&tcp.port)?,
            }
        } else if let Some(command) = p.exec.as_ref().and_then(|e| e.command.clone()) {
            if command.is_empty() {
                return Err(self.unsupported(
                    &c.name,
                    &format!("{kind}.exec.command is empty"),
                    "give the program to run",
                ));
            }
            ProbeAction::Exec { command }
        } else {
            return Err(self.unsupported(
                &c.name,
                &format!("{kind} has no httpGet, tcpSocket or exec action (gRPC probes are not supported)"),
                "use an httpGet, tcpSocket or exec probe",
            ));
        };
        let secs = |v: Option<i32>, default: u64| {
            Duration::from_secs(v.map_or(default, |s| u64::from(s.max(0).unsigned_abs())))
        };
        let count = |v: Option<i32>, default: u32| v.map_or(default, |n| n.max(1).unsigned_abs());
        Ok(ProbePlan {
            action,
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: count(p.success_threshold, 1),
            failure_threshold: count(p.failure_threshold, 3),
        })
    }
}

fn set(env: &mut Vec<(String, String)>, key: &str, value: String) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value,
        None => env.push((key.to_owned(), value)),
    }
}

fn lookup(env: &[(String, String)]) -> BTreeMap<&str, &str> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Kubernetes' `$(VAR)` expansion: `$(VAR)` becomes the variable's value, `$$` becomes `$` (so
/// `$$(VAR)` stays literal), and a reference to an unknown variable or an unclosed `$(` is kept
/// as written.
pub(crate) fn expand(input: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let mut chars = after.chars();
        match chars.next() {
            // A lone `$` at the end is kept.
            None => {
                out.push('$');
                rest = after;
            }
            Some('$') => {
                out.push('$');
                rest = &after[1..];
            }
            Some('(') => match after.find(')') {
                Some(close) => {
                    let name = &after[1..close];
                    match vars.get(name) {
                        Some(value) => out.push_str(value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &after[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = &after[1..];
                }
            },
            Some(c) => {
                out.push('$');
                out.push(c);
                rest = chars.as_str();
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([("A", "1"), ("PORT", "8080")])
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let cases = [
            ("$(A)", "1"),
            ("x$(A)y$(PORT)", "x1y8080"),
            ("$$(A)", "$(A)"),
            ("$$$(A)", "$1"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$(A", "$(A"),
            ("$A", "$A"),
            ("cost: 5$", "cost: 5$"),
            ("$$", "$"),
            ("é$(A)é", "é1é"),
            ("$é", "$é"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &vars()), want, "input {input:?}");
        }
    }

    fn spec(containers: serde_json::Value) -> RevisionSpec {
        RevisionSpec {
            rollout: "web".into(),
            hash: "abc".into(),
            revision: 1,
            template: serde_json::from_value(serde_json::json!({
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}
            }))
            .unwrap(),
        }
    }

    #[test]
    fn env_ports_and_probes() {
        let s = spec(serde_json::json!([{
            "name": "app", "image": "demo:v2",
            "command": ["demo", "--version=$(CUTOVER_IMAGE)"], "args": ["$(GREETING)", "$$(PORT)"],
            "ports": [{"name": "http", "containerPort": 8080}],
            "env": [
                {"name": "GREETING", "value": "hi-$(POD_NAME)"},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            ],
            "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}},
            "livenessProbe": {"tcpSocket": {"port": 9000}, "periodSeconds": 2},
        }]));
        let pod = plan_pod(&s, 2, 40000, &[]).unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.program, "demo");
        assert_eq!(c.args, ["--version=demo:v2", "hi-web-abc-2", "$(PORT)"]);
        let env: BTreeMap<_, _> = c.env.iter().cloned().collect();
        assert_eq!(env["PORT"], "40000");
        assert_eq!(env["NS"], "default");
        assert_eq!(env["APP"], "web");
        assert_eq!(env["CUTOVER_REPLICA"], "2");
        let readiness = c.readiness.as_ref().unwrap();
        assert!(matches!(
            readiness.action,
            ProbeAction::Http { port: 40000, .. }
        ));
        assert_eq!(readiness.period, Duration::from_secs(10));
        let liveness = c.liveness.as_ref().unwrap();
        assert!(matches!(
            liveness.action,
            ProbeAction::Tcp { port: 9000, .. }
        ));
        assert_eq!(pod.grace, Duration::from_secs(30));
    }

    #[test]
    fn unsupported_parts_are_errors() {
        let missing = spec(serde_json::json!([{"name": "app", "image": "demo:v1"}]));
        let err = plan_pod(&missing, 0, 1, &[]).unwrap_err().to_string();
        assert!(
            err.contains("no `command`") && err.contains("\"app\""),
            "{err}"
        );
        let secret = spec(
            serde_json::json!([{"name": "app", "command": ["x"], "env": [
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]),
        );
        let err = plan_pod(&secret, 0, 1, &[]).unwrap_err().to_string();
        assert!(err.contains("env S"), "{err}");
        let field = spec(
            serde_json::json!([{"name": "app", "command": ["x"], "env": [
            {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]}]),
        );
        let err = plan_pod(&field, 0, 1, &[]).unwrap_err().to_string();
        assert!(err.contains("spec.nodeName"), "{err}");
        let https = spec(serde_json::json!([{"name": "app", "command": ["x"],
            "readinessProbe": {"httpGet": {"port": 1, "scheme": "HTTPS"}}}]));
        assert!(plan_pod(&https, 0, 1, &[]).is_err());
    }
}
