//! Semantic checks: what the types alone cannot say (references between objects, numeric
//! ranges, durations, selector/label agreement). Each finding carries a location and a fix.

mod analysis;
mod backend;
mod migrations;
mod names;
mod pod;
mod quantity;
mod rollout;
mod service;
mod traffic;

use std::collections::HashMap;

use cutover_core::api::{Argument, Metric};

pub use backend::{LOCAL_REPLICA_LIMIT, Target};
use names::{Rule, check_labels, check_name};

use crate::diag::{Diagnostic, Diagnostics};
use crate::path::FieldPath;
use crate::set::{HasMeta, Located, ManifestSet};

/// Runs every check over a loaded set, for the backend `target`.
pub(crate) fn check(set: &ManifestSet, target: Target, diags: &mut Diagnostics) {
    duplicates("Rollout", &set.rollouts, diags);
    duplicates("Service", &set.services, diags);
    duplicates("AnalysisTemplate", &set.analysis_templates, diags);
    duplicates(
        "ClusterAnalysisTemplate",
        &set.cluster_analysis_templates,
        diags,
    );
    duplicates("AnalysisRun", &set.analysis_runs, diags);
    for r in &set.rollouts {
        keep(r, diags, |d| {
            meta(r, Rule::Dns1123Subdomain, d);
            rollout_name_fits_a_label(r, d);
            rollout::check(set, r, d);
            traffic::check(r, d);
            traffic::check_routers(set, r, target, d);
            migrations::check(r, d);
            rollout::check_names(r, d);
            // With workloadRef the template is the Deployment's, checked by the API server.
            if !cutover_core::api::template_is_unset(&r.value.spec.template) {
                let template = FieldPath::parse("spec.template");
                pod::check_template(r, &template, &r.value.spec.template, pod::Owner::Rollout, d);
            }
            backend::check_rollout(r, target, d);
        });
    }
    for s in &set.services {
        keep(s, diags, |d| {
            meta(s, Rule::Dns1035Label, d);
            service::check(set, s, d);
            service::check_annotations(s, d);
        });
    }
    for t in &set.analysis_templates {
        let s = &t.value.spec;
        keep(t, diags, |d| {
            meta(t, Rule::Dns1123Subdomain, d);
            analysis::check_spec(set, t, &s.metrics, &s.args, &s.templates, d);
            metrics(t, &s.metrics, &s.args, target, d);
        });
    }
    for t in &set.cluster_analysis_templates {
        let s = &t.value.spec;
        keep(t, diags, |d| {
            meta(t, Rule::Dns1123Subdomain, d);
            analysis::check_spec(set, t, &s.metrics, &s.args, &s.templates, d);
            metrics(t, &s.metrics, &s.args, target, d);
        });
    }
    for t in &set.analysis_runs {
        let s = &t.value.spec;
        keep(t, diags, |d| {
            meta(t, Rule::Dns1123Subdomain, d);
            analysis::check_spec(set, t, &s.metrics, &s.args, &[], d);
            metrics(t, &s.metrics, &s.args, target, d);
        });
    }
}

/// The object's name (by `rule`), namespace and labels.
fn meta<T: HasMeta>(o: &Located<T>, rule: Rule, diags: &mut Diagnostics) {
    let m = o.value.meta();
    let base = FieldPath::root().key("metadata");
    if let Some(name) = m.name.as_deref().filter(|n| !n.is_empty()) {
        check_name(o, &base.key("name"), "name", name, rule, diags);
    }
    if let Some(ns) = &m.namespace {
        check_name(
            o,
            &base.key("namespace"),
            "namespace",
            ns,
            Rule::Dns1123Label,
            diags,
        );
    }
    check_labels(o, &base.key("labels"), m.labels.as_ref(), diags);
}

/// cutover labels a Rollout's AnalysisRuns with the Rollout's name, and a label value holds
/// at most 63 characters: a longer (otherwise valid) name would fail every analysis.
fn rollout_name_fits_a_label<T: HasMeta>(r: &Located<T>, diags: &mut Diagnostics) {
    let name = r.name();
    let len = name.chars().count();
    if len > 63 && Rule::Dns1123Subdomain.check(name).is_none() {
        diags.push(err_value(
            r,
            &FieldPath::parse("metadata.name"),
            format!("is {len} characters long; a Rollout's name is at most 63"),
            "shorten it: cutover labels the Rollout's AnalysisRuns with its name, and a label value holds at most 63 characters",
        ));
    }
}

/// What the analysis checks leave to others: job metrics' Jobs, and the backend's warnings.
fn metrics<T>(
    o: &Located<T>,
    metrics: &[Metric],
    args: &[Argument],
    target: Target,
    diags: &mut Diagnostics,
) {
    for (i, m) in metrics.iter().enumerate() {
        let Some(job) = &m.provider.job else { continue };
        let base = FieldPath::root()
            .key("spec")
            .key("metrics")
            .index(i)
            .key("provider")
            .key("job");
        let labels = job.metadata.as_ref().map(|md| &md.labels);
        check_labels(o, &base.key("metadata").key("labels"), labels, diags);
        pod::check_job(o, &base.key("spec"), &job.spec, diags);
    }
    backend::check_analysis(o, metrics, args, target, diags);
}

/// An error about the field at `path`, pointing at its key.
pub(crate) fn err<T>(o: &Located<T>, path: &FieldPath, message: String, help: &str) -> Diagnostic {
    Diagnostic::error(&o.file, o.locate(path), path.clone(), message).with_help(help)
}

/// An error about the value at `path`, pointing at the value.
pub(crate) fn err_value<T>(
    o: &Located<T>,
    path: &FieldPath,
    message: String,
    help: &str,
) -> Diagnostic {
    Diagnostic::error(&o.file, o.locate_value(path), path.clone(), message).with_help(help)
}

/// Reports the number at `path` when it is below `min`.
pub(crate) fn at_least<T>(
    o: &Located<T>,
    path: &FieldPath,
    value: Option<i64>,
    min: i64,
    help: &str,
    diags: &mut Diagnostics,
) {
    if let Some(v) = value.filter(|v| *v < min) {
        let message = if min == 0 {
            format!("must be 0 or more, got {v}")
        } else {
            format!("must be at least {min}, got {v}")
        };
        diags.push(err_value(o, path, message, help));
    }
}

/// A warning about the field at `path`, pointing at its key.
pub(crate) fn warn<T>(o: &Located<T>, path: &FieldPath, message: String, help: &str) -> Diagnostic {
    Diagnostic::warning(&o.file, o.locate(path), path.clone(), message).with_help(help)
}

/// Runs the checks of one object, dropping findings about values that loading already reported
/// and patched over (a placeholder would only draw a second, misleading error).
fn keep<T>(o: &Located<T>, diags: &mut Diagnostics, checks: impl FnOnce(&mut Diagnostics)) {
    let mut found = Diagnostics::new();
    checks(&mut found);
    diags.extend(found.into_iter().filter(|d| !o.is_patched(&d.path)));
}

/// Reports a missing name, and a second object of one kind with the same namespace and name.
fn duplicates<T: HasMeta>(kind: &str, list: &[Located<T>], diags: &mut Diagnostics) {
    let mut seen: HashMap<(Option<&str>, &str), &Located<T>> = HashMap::new();
    let name_path = FieldPath::parse("metadata.name");
    for o in list {
        if o.name().is_empty() {
            if o.value.meta().generate_name.is_none() {
                diags.push(
                    Diagnostic::error(
                        &o.file,
                        o.locate_missing(&name_path),
                        name_path.clone(),
                        "required",
                    )
                    .with_help(format!("give the {kind} a name under metadata")),
                );
            }
            continue;
        }
        if let Some(first) = seen.insert((o.namespace(), o.name()), o) {
            diags.push(
                Diagnostic::error(
                    &o.file,
                    o.locate_value(&name_path),
                    name_path.clone(),
                    format!("duplicate {kind} `{}`", o.name()),
                )
                .with_help(format!(
                    "it is also defined at {}:{}:{}; rename one or remove it",
                    first.file, first.start.line, first.start.column
                )),
            );
        }
    }
}

/// The fix for a required field that is missing, by field name.
pub(crate) fn required_help(path: &FieldPath) -> String {
    let name = path.last_key().unwrap_or_default();
    match name {
        "activeService" => {
            "add `activeService: <name of the Service that receives production traffic>`".into()
        }
        "strategy" | "blueGreen" => {
            "add `strategy: {blueGreen: {activeService: <Service name>}}`: cutover updates blue/green"
                .into()
        }
        "selector" => "add `selector: {matchLabels: {...}}` matching the pod template's labels".into(),
        "template" => "add `template:` with the pod template (metadata.labels and spec.containers)".into(),
        "containers" => "add `containers:` with at least one container (name and image)".into(),
        "templateName" => "add `templateName: <name of an AnalysisTemplate>`".into(),
        "provider" => "add `provider:` with one of prometheus, web, job or builtin".into(),
        "address" => "add `address: <Prometheus base URL, e.g. http://prometheus.monitoring:9090>`".into(),
        "query" => "add `query:` with the query that produces the value".into(),
        _ => format!("add `{name}:`"),
    }
}

/// True for a value that is an analysis argument reference, resolved only when a run starts.
pub(crate) fn is_templated(text: &str) -> bool {
    text.contains("{{")
}
