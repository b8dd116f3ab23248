//! Checks of a Rollout: Services, numbers, selector, analysis references and arguments.

use std::collections::BTreeMap;

use cutover_core::api::{
    AnalysisRunArgument, DEFAULT_REVISION_HISTORY_LIMIT, Rollout, RolloutAnalysis,
    template_is_unset,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::diag::{Diagnostic, Diagnostics};
use crate::path::FieldPath;
use crate::set::{Located, ManifestSet};

use super::analysis::required_args;
use super::names::{Rule, check_labels, check_name};

pub(super) fn check(set: &ManifestSet, r: &Located<Rollout>, diags: &mut Diagnostics) {
    let spec = &r.value.spec;
    let bg = &spec.strategy.blue_green;
    let bg_path = FieldPath::parse("spec.strategy.blueGreen");
    let err = |path: &FieldPath, message: String, help: String| {
        Diagnostic::error(&r.file, r.locate(path), path.clone(), message).with_help(help)
    };
    let warn = |path: &FieldPath, message: String, help: String| {
        Diagnostic::warning(&r.file, r.locate(path), path.clone(), message).with_help(help)
    };

    // Services.
    let active = bg_path.key("activeService");
    if bg.active_service.trim().is_empty() {
        diags.push(err(
            &active,
            "required".into(),
            super::required_help(&active),
        ));
    } else {
        service_exists(set, r, &active, &bg.active_service, diags);
    }
    if let Some(preview) = bg.preview_service.as_deref().filter(|p| !p.is_empty()) {
        let path = bg_path.key("previewService");
        if preview == bg.active_service {
            diags.push(err(
                &path,
                format!("must differ from activeService (both are `{preview}`)"),
                "name a second Service for preview traffic, or remove previewService".into(),
            ));
        } else {
            service_exists(set, r, &path, preview, diags);
        }
    }

    // Numbers.
    let non_negative = [
        ("spec.replicas", spec.replicas),
        ("spec.revisionHistoryLimit", spec.revision_history_limit),
        ("spec.minReadySeconds", spec.min_ready_seconds),
        (
            "spec.strategy.blueGreen.autoPromotionSeconds",
            bg.auto_promotion_seconds,
        ),
        (
            "spec.strategy.blueGreen.scaleDownDelaySeconds",
            bg.scale_down_delay_seconds,
        ),
        (
            "spec.strategy.blueGreen.scaleDownDelayRevisionLimit",
            bg.scale_down_delay_revision_limit,
        ),
        (
            "spec.strategy.blueGreen.abortScaleDownDelaySeconds",
            bg.abort_scale_down_delay_seconds,
        ),
    ];
    for (path, value) in non_negative {
        if let Some(v) = value.filter(|v| *v < 0) {
            let path = FieldPath::parse(path);
            diags.push(err(
                &path,
                format!("must be 0 or more, got {v}"),
                "use a value >= 0".into(),
            ));
        }
    }
    if let Some(count) = bg.preview_replica_count {
        let path = bg_path.key("previewReplicaCount");
        if count < 1 {
            diags.push(err(
                &path,
                format!("must be at least 1, got {count}"),
                "use 1 or more, or remove it to run the preview at full size".into(),
            ));
        } else if count > spec.replicas() {
            diags.push(warn(
                &path,
                format!("{count} is more than spec.replicas ({})", spec.replicas()),
                "the preview never needs more pods than the active revision; lower it".into(),
            ));
        }
    }
    if let Some(limit) = bg.scale_down_delay_revision_limit {
        let history = spec
            .revision_history_limit
            .unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
        if limit > history {
            diags.push(err(
                &bg_path.key("scaleDownDelayRevisionLimit"),
                format!("{limit} is more than spec.revisionHistoryLimit ({history})"),
                format!("use at most {history}, or raise spec.revisionHistoryLimit"),
            ));
        }
    }
    if let (Some(deadline), Some(ready)) = (spec.progress_deadline_seconds, spec.min_ready_seconds)
        && deadline <= ready
    {
        diags.push(err(
            &FieldPath::parse("spec.progressDeadlineSeconds"),
            format!("must be greater than spec.minReadySeconds ({ready})"),
            "a pod must have time to become available before progress is judged".into(),
        ));
    }
    if bg.auto_promotion_enabled == Some(false) && bg.auto_promotion_seconds.is_some_and(|s| s > 0)
    {
        diags.push(warn(
            &bg_path.key("autoPromotionSeconds"),
            "ignored because autoPromotionEnabled is false".into(),
            "remove autoPromotionSeconds, or set autoPromotionEnabled: true to promote after the delay".into(),
        ));
    }

    // Pod template: exactly one of `template` and `workloadRef`.
    let has_template = !template_is_unset(&spec.template);
    match (&spec.workload_ref, has_template) {
        (Some(_), true) => diags.push(err(
            &FieldPath::parse("spec.workloadRef"),
            "set exactly one of spec.template and spec.workloadRef: both are set".into(),
            "remove spec.template (the pod template comes from the referenced Deployment), or remove workloadRef".into(),
        )),
        (None, false) => {
            let path = FieldPath::parse("spec.template");
            diags.push(
                Diagnostic::error(&r.file, r.locate_missing(&path), path.clone(), "required")
                    .with_help("add the pod template, or spec.workloadRef to take it from an existing Deployment"),
            );
        }
        _ => {}
    }
    if has_template {
        let labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        if let Some((message, help)) = check_selector(&spec.selector, &labels) {
            diags.push(err(&FieldPath::parse("spec.selector"), message, help));
        }
        if spec.template.spec.is_none() {
            let path = FieldPath::parse("spec.template.spec");
            diags.push(
                Diagnostic::error(&r.file, r.locate_missing(&path), path.clone(), "required")
                    .with_help("add the pod spec (containers) under template"),
            );
        }
    } else if spec.workload_ref.is_none() && selector_is_empty(&spec.selector) {
        // Neither a template nor a reference (reported above): the selector is missing too.
        diags.push(err(
            &FieldPath::parse("spec.selector"),
            "must not be empty".into(),
            "add matchLabels that the pod template's labels carry, e.g. `app: <name>`".into(),
        ));
    }
    if let Some(workload) = &spec.workload_ref {
        let fields = [
            ("kind", workload.kind.as_str(), "Deployment"),
            ("apiVersion", workload.api_version.as_str(), "apps/v1"),
        ];
        for (field, given, wanted) in fields {
            if given != wanted {
                diags.push(err(
                    &FieldPath::parse("spec.workloadRef").key(field),
                    format!("must be `{wanted}`, got `{given}`: cutover adopts Deployments only"),
                    format!("set `{field}: {wanted}` and name a Deployment, or give the Rollout a spec.template"),
                ));
            }
        }
        if workload.name.trim().is_empty() {
            diags.push(err(
                &FieldPath::parse("spec.workloadRef.name"),
                "required".into(),
                "name the Deployment whose pod template the Rollout runs".into(),
            ));
        }
    }

    // Analysis.
    let analyses = [
        ("prePromotionAnalysis", &bg.pre_promotion_analysis),
        ("postPromotionAnalysis", &bg.post_promotion_analysis),
    ];
    for (name, analysis) in analyses {
        if let Some(analysis) = analysis {
            check_analysis(set, r, &bg_path.key(name), analysis, diags);
        }
    }
}

/// Names the Rollout refers to or gives: Services (DNS-1035 labels, as Service names are),
/// analysis templates, and the labels of its selector and role metadata.
pub(super) fn check_names(r: &Located<Rollout>, diags: &mut Diagnostics) {
    let spec = &r.value.spec;
    let bg = &spec.strategy.blue_green;
    let bg_path = FieldPath::parse("spec.strategy.blueGreen");
    let services = [
        ("activeService", Some(bg.active_service.as_str())),
        ("previewService", bg.preview_service.as_deref()),
    ];
    for (field, name) in services {
        if let Some(name) = name.filter(|n| !n.trim().is_empty()) {
            check_name(
                r,
                &bg_path.key(field),
                "Service name",
                name,
                Rule::Dns1035Label,
                diags,
            );
        }
    }
    let analyses = [
        ("prePromotionAnalysis", &bg.pre_promotion_analysis),
        ("postPromotionAnalysis", &bg.post_promotion_analysis),
    ];
    for (field, analysis) in analyses {
        for (i, t) in analysis.iter().flat_map(|a| &a.templates).enumerate() {
            let path = bg_path
                .key(field)
                .key("templates")
                .index(i)
                .key("templateName");
            check_name(
                r,
                &path,
                "template name",
                &t.template_name,
                Rule::Dns1123Subdomain,
                diags,
            );
        }
    }
    let selector = FieldPath::parse("spec.selector.matchLabels");
    check_labels(r, &selector, spec.selector.match_labels.as_ref(), diags);
    for (field, metadata) in [
        ("activeMetadata", &bg.active_metadata),
        ("previewMetadata", &bg.preview_metadata),
    ] {
        let labels = metadata.as_ref().map(|m| &m.labels);
        check_labels(r, &bg_path.key(field).key("labels"), labels, diags);
    }
}

/// Reports a Service that is not among the loaded documents: an error when the set has Services
/// (they were meant to be complete), a warning when it has none (they live elsewhere).
fn service_exists(
    set: &ManifestSet,
    r: &Located<Rollout>,
    path: &FieldPath,
    name: &str,
    diags: &mut Diagnostics,
) {
    if set.service(name, r.namespace()).is_some() {
        return;
    }
    let pos = r.locate_value(path);
    if set.services.is_empty() {
        diags.push(
            Diagnostic::warning(
                &r.file,
                pos,
                path.clone(),
                format!("Service `{name}` is not among the files given"),
            )
            .with_help("it must exist when the Rollout is applied; pass its file too to check it"),
        );
    } else {
        let known: Vec<&str> = set.services.iter().map(|s| s.name()).collect();
        let help = match crate::schema::suggest(name, known.iter().copied()) {
            Some(s) => format!("did you mean `{s}`? Services loaded: {}", known.join(", ")),
            None => format!(
                "define a Service `{name}`; Services loaded: {}",
                known.join(", ")
            ),
        };
        diags.push(
            Diagnostic::error(
                &r.file,
                pos,
                path.clone(),
                format!("Service `{name}` not found"),
            )
            .with_help(help),
        );
    }
}

/// A selector with neither matchLabels nor matchExpressions.
fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// Whether `selector` selects pods with `labels`; on failure, the message and fix.
fn check_selector(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> Option<(String, String)> {
    let match_labels = selector.match_labels.clone().unwrap_or_default();
    let expressions = selector.match_expressions.clone().unwrap_or_default();
    if selector_is_empty(selector) {
        return Some((
            "must not be empty".into(),
            "add matchLabels that the pod template's labels carry, e.g. `app: <name>`".into(),
        ));
    }
    let mut misses = Vec::new();
    for (k, v) in &match_labels {
        if labels.get(k) != Some(v) {
            misses.push(format!("{k}={v}"));
        }
    }
    for e in &expressions {
        let value = labels.get(&e.key);
        let values = e.values.clone().unwrap_or_default();
        let ok = match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        };
        if !ok {
            misses.push(format!("{} {} {:?}", e.key, e.operator, values));
        }
    }
    if misses.is_empty() {
        return None;
    }
    Some((
        "selector does not match template labels".into(),
        format!(
            "spec.template.metadata.labels must satisfy {}; add the labels to the template or fix the selector",
            misses.join(", ")
        ),
    ))
}

fn check_analysis(
    set: &ManifestSet,
    r: &Located<Rollout>,
    path: &FieldPath,
    analysis: &RolloutAnalysis,
    diags: &mut Diagnostics,
) {
    let err = |p: &FieldPath, message: String, help: String| {
        Diagnostic::error(&r.file, r.locate(p), p.clone(), message).with_help(help)
    };
    if analysis.templates.is_empty() {
        diags.push(err(
            &path.key("templates"),
            "at least one template is required".into(),
            "add `templates: [{templateName: <AnalysisTemplate name>}]`".into(),
        ));
    }
    for (i, arg) in analysis.args.iter().enumerate() {
        if arg.value.is_none() && arg.value_from.is_none() {
            diags.push(err(
                &path.key("args").index(i),
                format!("argument `{}` has neither value nor valueFrom", arg.name),
                "add `value:` or `valueFrom:`".into(),
            ));
        }
    }
    let given: Vec<&str> = analysis
        .args
        .iter()
        .map(|a: &AnalysisRunArgument| a.name.as_str())
        .collect();
    for (i, t) in analysis.templates.iter().enumerate() {
        let tpath = path.key("templates").index(i).key("templateName");
        let cluster = t.cluster_scope.unwrap_or(false);
        let required = if cluster {
            set.cluster_analysis_template(&t.template_name).map(|c| {
                required_args(
                    set,
                    &c.value.spec.args,
                    &c.value.spec.templates,
                    r.namespace(),
                )
            })
        } else {
            set.analysis_template(&t.template_name, r.namespace())
                .map(|c| {
                    required_args(
                        set,
                        &c.value.spec.args,
                        &c.value.spec.templates,
                        r.namespace(),
                    )
                })
        };
        let kind = if cluster {
            "ClusterAnalysisTemplate"
        } else {
            "AnalysisTemplate"
        };
        let Some(required) = required else {
            let help = if cluster {
                "define it in one of the files given, or drop `clusterScope: true` if it is an AnalysisTemplate"
            } else if set.cluster_analysis_template(&t.template_name).is_some() {
                "a ClusterAnalysisTemplate has this name: add `clusterScope: true`"
            } else {
                "define it in one of the files given, or fix the name"
            };
            diags.push(err(
                &tpath,
                format!("{kind} `{}` not found", t.template_name),
                help.into(),
            ));
            continue;
        };
        for missing in required.iter().filter(|a| !given.contains(&a.as_str())) {
            let at = if analysis.args.is_empty() {
                path.clone()
            } else {
                path.key("args")
            };
            diags.push(err(
                &at,
                format!(
                    "missing argument `{missing}` required by {kind} `{}`",
                    t.template_name
                ),
                format!("add `- name: {missing}` with a `value:` under args"),
            ));
        }
    }
}
