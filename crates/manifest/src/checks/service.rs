//! Checks of a Service: its ports, and that a named `targetPort` is a port name that the
//! containers of each Rollout routing through the Service declare (else the Service has no
//! endpoints once the Rollout switches to it).

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::{Rule, check_name};
use super::pod::PORT_HELP;
use super::{err, err_value};
use crate::diag::{Diagnostics, clip};
use crate::path::FieldPath;
use crate::set::{Located, ManifestSet};

pub(super) fn check(set: &ManifestSet, s: &Located<Service>, diags: &mut Diagnostics) {
    let ports = s
        .value
        .spec
        .as_ref()
        .and_then(|spec| spec.ports.as_deref())
        .unwrap_or_default();
    let base = FieldPath::parse("spec.ports");
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = base.index(i);
        if !(1..=65535).contains(&p.port) {
            diags.push(err_value(
                s,
                &path.key("port"),
                format!("must be between 1 and 65535, got {}", p.port),
                PORT_HELP,
            ));
        }
        if let Some(n) = p.node_port.filter(|n| *n != 0 && !(1..=65535).contains(n)) {
            diags.push(err_value(
                s,
                &path.key("nodePort"),
                format!("must be between 1 and 65535, got {n}"),
                PORT_HELP,
            ));
        }
        match &p.name {
            Some(name) => {
                check_name(
                    s,
                    &path.key("name"),
                    "port name",
                    name,
                    Rule::Dns1123Label,
                    diags,
                );
                if !names.insert(name.as_str()) {
                    diags.push(err_value(
                        s,
                        &path.key("name"),
                        format!("duplicate port name `{}`", clip(name.clone(), 40)),
                        "give each port of the Service its own name",
                    ));
                }
            }
            None if ports.len() > 1 => diags.push(err(
                s,
                &path,
                "a Service with several ports must name each of them".into(),
                "add `name:` (e.g. `http`) to this port",
            )),
            None => {}
        }
        match &p.target_port {
            Some(IntOrString::Int(n)) if !(1..=65535).contains(n) => diags.push(err_value(
                s,
                &path.key("targetPort"),
                format!("must be between 1 and 65535, got {n}"),
                PORT_HELP,
            )),
            Some(IntOrString::String(name)) => {
                let at = path.key("targetPort");
                check_name(s, &at, "targetPort", name, Rule::IanaSvcName, diags);
                named_target_port(set, s, &at, name, diags);
            }
            _ => {}
        }
    }
}

/// A named `targetPort` must be a container port name of every Rollout that routes through
/// this Service (as its activeService or previewService).
fn named_target_port(
    set: &ManifestSet,
    s: &Located<Service>,
    at: &FieldPath,
    name: &str,
    diags: &mut Diagnostics,
) {
    for r in &set.rollouts {
        let bg = &r.value.spec.strategy.blue_green;
        let routes =
            bg.active_service == s.name() || bg.preview_service.as_deref() == Some(s.name());
        let same_namespace = match (r.namespace(), s.namespace()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        if !routes || !same_namespace {
            continue;
        }
        let declared = r
            .value
            .spec
            .template
            .spec
            .iter()
            .flat_map(|p| &p.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .any(|p| p.name.as_deref() == Some(name));
        if !declared {
            diags.push(err_value(
                s,
                at,
                format!(
                    "no container of Rollout `{}` has a port named `{}`",
                    r.name(),
                    clip(name.to_string(), 40)
                ),
                &format!(
                    "name the app's port in {}'s pod template (`ports: [{{name: {name}, containerPort: N}}]`), or give the port number here",
                    r.file
                ),
            ));
        }
    }
}

/// Sets the response timeout of a Service's routes on one host (see docs/single-host.md).
const RESPONSE_TIMEOUT: &str = "cutover.dev/response-timeout";

/// The annotations cutover itself reads on a Service.
pub(super) fn check_annotations(s: &Located<Service>, diags: &mut Diagnostics) {
    let Some(value) = s
        .value
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(RESPONSE_TIMEOUT))
    else {
        return;
    };
    let path = FieldPath::parse(&format!("metadata.annotations[\"{RESPONSE_TIMEOUT}\"]"));
    super::analysis::check_duration(
        s,
        &path,
        &cutover_core::api::DurationString::new(value),
        diags,
    );
}
