//! Checks of analysis metrics, shared by AnalysisTemplate, ClusterAnalysisTemplate and
//! AnalysisRun.

use std::collections::HashSet;

use cutover_core::api::{
    AnalysisTemplateRef, Argument, BuiltinQuery, DurationError, DurationString, Metric,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::diag::{Diagnostic, Diagnostics, clip};
use crate::path::FieldPath;
use crate::set::{HasMeta, Located, ManifestSet};

use super::is_templated;

/// Argument names the templates need a value for: declared without `value` or `valueFrom`,
/// including those of templates they include (followed to a fixed depth, against cycles).
pub(super) fn required_args(
    set: &ManifestSet,
    args: &[Argument],
    templates: &[AnalysisTemplateRef],
    namespace: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    collect_required(set, args, templates, namespace, 0, &mut out);
    out
}

fn collect_required(
    set: &ManifestSet,
    args: &[Argument],
    templates: &[AnalysisTemplateRef],
    namespace: Option<&str>,
    depth: usize,
    out: &mut Vec<String>,
) {
    for a in args {
        if a.value.is_none() && a.value_from.is_none() && !out.contains(&a.name) {
            out.push(a.name.clone());
        }
    }
    if depth >= 8 {
        return;
    }
    for t in templates {
        if t.cluster_scope.unwrap_or(false) {
            if let Some(c) = set.cluster_analysis_template(&t.template_name) {
                let s = &c.value.spec;
                collect_required(set, &s.args, &s.templates, namespace, depth + 1, out);
            }
        } else if let Some(c) = set.analysis_template(&t.template_name, namespace) {
            let s = &c.value.spec;
            collect_required(set, &s.args, &s.templates, namespace, depth + 1, out);
        }
    }
}

pub(super) fn check_spec<T: HasMeta>(
    set: &ManifestSet,
    o: &Located<T>,
    metrics: &[Metric],
    args: &[Argument],
    templates: &[AnalysisTemplateRef],
    diags: &mut Diagnostics,
) {
    let err = |p: &FieldPath, message: String, help: &str| {
        Diagnostic::error(&o.file, o.locate(p), p.clone(), message).with_help(help)
    };
    let spec = FieldPath::root().key("spec");
    if metrics.is_empty() && templates.is_empty() {
        diags.push(err(
            &spec.key("metrics"),
            "at least one metric is required".into(),
            "add a metric with a name and a provider",
        ));
    }
    for (i, t) in templates.iter().enumerate() {
        let found = if t.cluster_scope.unwrap_or(false) {
            set.cluster_analysis_template(&t.template_name).is_some()
        } else {
            set.analysis_template(&t.template_name, o.namespace())
                .is_some()
        };
        if !found {
            diags.push(err(
                &spec.key("templates").index(i).key("templateName"),
                format!("template `{}` not found", t.template_name),
                "define it in one of the files given, or fix the name",
            ));
        }
    }
    let mut names = HashSet::new();
    let declared: Vec<&str> = args.iter().map(|a| a.name.as_str()).collect();
    for (i, m) in metrics.iter().enumerate() {
        let path = spec.key("metrics").index(i);
        if !names.insert(m.name.as_str()) {
            diags.push(err(
                &path.key("name"),
                format!("duplicate metric name `{}`", m.name),
                "give each metric a unique name",
            ));
        }
        check_metric(o, &path, m, diags);
        // Arguments of included templates are only known after merging; check plain templates.
        if templates.is_empty() {
            for name in arg_refs(m) {
                if !declared.contains(&name.as_str()) {
                    diags.push(err(
                        &path,
                        format!("refers to undeclared argument `{name}`"),
                        "declare it under spec.args, or fix the `{{args.NAME}}` reference",
                    ));
                }
            }
        }
    }
}

fn check_metric<T>(o: &Located<T>, path: &FieldPath, m: &Metric, diags: &mut Diagnostics) {
    let err = |p: &FieldPath, message: String, help: &str| {
        Diagnostic::error(&o.file, o.locate(p), p.clone(), message).with_help(help)
    };
    let providers = m.provider.kinds();
    match providers.len() {
        1 => {}
        0 => diags.push(err(
            &path.key("provider"),
            "no provider set".into(),
            "set exactly one of prometheus, web, job or builtin",
        )),
        _ => diags.push(err(
            &path.key("provider"),
            format!("more than one provider set: {}", providers.join(", ")),
            "a metric has exactly one provider; split it into one metric per provider",
        )),
    }
    let durations = [
        (path.key("interval"), m.interval.as_ref()),
        (path.key("initialDelay"), m.initial_delay.as_ref()),
        (
            path.key("provider").key("builtin").key("window"),
            m.provider.builtin.as_ref().and_then(|b| b.window.as_ref()),
        ),
    ];
    for (p, d) in durations {
        if let Some(d) = d {
            check_duration(o, &p, d, diags);
        }
    }
    let count = int_field(o, &path.key("count"), m.count.as_ref(), diags);
    if count.is_some_and(|c| c > 1) && m.interval.is_none() {
        diags.push(err(
            &path.key("count"),
            "a count above 1 requires an interval".into(),
            "add `interval:` (e.g. 30s) to space the measurements",
        ));
    }
    let limits = [
        ("failureLimit", m.failure_limit.as_ref(), -1),
        ("inconclusiveLimit", m.inconclusive_limit.as_ref(), 0),
        (
            "consecutiveErrorLimit",
            m.consecutive_error_limit.as_ref(),
            0,
        ),
        (
            "consecutiveSuccessLimit",
            m.consecutive_success_limit.as_ref(),
            0,
        ),
    ];
    for (name, value, min) in limits {
        let p = path.key(name);
        if let Some(v) = int_field(o, &p, value, diags).filter(|v| *v < min) {
            let help = if min < 0 {
                "use -1 (no limit) or more"
            } else {
                "use 0 or more"
            };
            diags.push(err(&p, format!("must be {min} or more, got {v}"), help));
        }
    }
    // Conditions are translated and compiled as the analysis engine will (`{{args.x}}` ones
    // only once the run resolves them).
    for (name, cond) in [
        ("successCondition", &m.success_condition),
        ("failureCondition", &m.failure_condition),
    ] {
        if let Some(c) = cond.as_deref().filter(|c| !c.contains("{{"))
            && let Err(e) = cutover_core::analysis::Condition::compile(c)
        {
            diags.push(err(
                &path.key(name),
                // The condition is quoted short: the reason after it must stay readable.
                format!("invalid condition `{}`: {e}", clip(c.trim().to_string(), 60)),
                "write a boolean expression over `result`, e.g. `result[0] >= 0.95` or `len(result) > 0 && result[0] < 0.01`",
            ));
        }
    }
    if let Some(b) = &m.provider.builtin
        && b.query == BuiltinQuery::LatencyQuantile
        && !b.quantile.is_some_and(|q| q > 0.0 && q <= 1.0)
    {
        diags.push(err(
            &path.key("provider").key("builtin").key("quantile"),
            "LatencyQuantile needs a quantile between 0 and 1".into(),
            "add e.g. `quantile: 0.99`",
        ));
    }
}

pub(super) fn check_duration<T>(
    o: &Located<T>,
    p: &FieldPath,
    d: &DurationString,
    diags: &mut Diagnostics,
) {
    match d.parse() {
        Ok(_) | Err(DurationError::Templated(_)) => {}
        Err(e) => diags.push(
            Diagnostic::error(
                &o.file,
                o.locate_value(p),
                p.clone(),
                format!("invalid duration {:?}", d.0),
            )
            .with_help(match e {
                DurationError::Empty => {
                    "write a number with a unit, e.g. 30s, 5m or 1h30m".to_string()
                }
                _ => "use units ns, us, ms, s, m or h, e.g. 30s, 5m or 1h30m".to_string(),
            }),
        ),
    }
}

/// The integer of an int-or-string field; a `{{args.x}}` string is accepted as unknown (None).
fn int_field<T>(
    o: &Located<T>,
    p: &FieldPath,
    value: Option<&IntOrString>,
    diags: &mut Diagnostics,
) -> Option<i64> {
    match value? {
        IntOrString::Int(i) => Some(i64::from(*i)),
        IntOrString::String(s) if is_templated(s) => None,
        IntOrString::String(s) => match s.trim().parse() {
            Ok(i) => Some(i),
            Err(_) => {
                diags.push(
                    Diagnostic::error(
                        &o.file,
                        o.locate_value(p),
                        p.clone(),
                        format!("{s:?} is not an integer"),
                    )
                    .with_help("write a whole number, or a `{{args.NAME}}` reference"),
                );
                None
            }
        },
    }
}

/// Names used as `{{args.NAME}}` anywhere in the metric.
fn arg_refs(m: &Metric) -> Vec<String> {
    let text = serde_json::to_string(m).unwrap_or_default();
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("{{") {
        rest = &rest[start + 2..];
        let Some(end) = rest.find("}}") else { break };
        if let Some(name) = rest[..end].trim().strip_prefix("args.") {
            let name = name.trim().to_string();
            if !out.contains(&name) {
                out.push(name);
            }
        }
        rest = &rest[end + 2..];
    }
    out
}
