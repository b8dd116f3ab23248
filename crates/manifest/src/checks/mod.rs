//! Semantic checks: what the types alone cannot say (references between objects, numeric
//! ranges, durations, selector/label agreement). Each finding carries a location and a fix.

mod analysis;
mod migrations;
mod rollout;
mod service;
mod traffic;

use std::collections::HashMap;

use crate::diag::{Diagnostic, Diagnostics};
use crate::path::FieldPath;
use crate::set::{HasMeta, Located, ManifestSet};

/// Runs every check over a loaded set.
pub(crate) fn check(set: &ManifestSet, diags: &mut Diagnostics) {
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
        keep(r, diags, |d| rollout::check(set, r, d));
        keep(r, diags, |d| traffic::check(r, d));
        keep(r, diags, |d| migrations::check(r, d));
    }
    for s in &set.services {
        keep(s, diags, |d| service::check(s, d));
    }
    for t in &set.analysis_templates {
        let s = &t.value.spec;
        keep(t, diags, |d| {
            analysis::check_spec(set, t, &s.metrics, &s.args, &s.templates, d)
        });
    }
    for t in &set.cluster_analysis_templates {
        let s = &t.value.spec;
        keep(t, diags, |d| {
            analysis::check_spec(set, t, &s.metrics, &s.args, &s.templates, d)
        });
    }
    for t in &set.analysis_runs {
        let s = &t.value.spec;
        keep(t, diags, |d| {
            analysis::check_spec(set, t, &s.metrics, &s.args, &[], d)
        });
    }
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
