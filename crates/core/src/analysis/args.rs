//! From a Rollout's `prePromotionAnalysis` / `postPromotionAnalysis` to the metrics a run
//! measures: templates flattened (with the templates they include), arguments resolved
//! (`value`, `valueFrom.podTemplateHashValue`, `valueFrom.fieldRef`, `secretKeyRef` through the
//! backend), `{{args.NAME}}` substituted, dry-run and retention decided. A missing argument is
//! an error before any measurement.

use crate::api::{
    AnalysisRunSpec, AnalysisTemplateRef, AnalysisTemplateSpec, Argument, PodTemplateHashValue,
    Rollout, RolloutAnalysis, SecretKeyRef,
};

use super::machine::{DEFAULT_MEASUREMENT_RETENTION, RunMetric};

/// Why a run's metrics cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    /// A referenced template does not exist.
    #[error("analysis template {0:?} not found: apply it first")]
    TemplateNotFound(String),
    /// Two templates define a metric with the same name.
    #[error("metric {0:?} is defined by more than one template")]
    DuplicateMetric(String),
    /// An argument has no value.
    #[error("argument {0:?} has no value: give it in the Rollout's analysis args")]
    Missing(String),
    /// A metric uses an argument no template declares.
    #[error("{{{{args.{0}}}}} is used but no template declares argument {0:?}")]
    Undeclared(String),
    /// A value could not be read.
    #[error("argument {name:?}: {message}")]
    Unresolved {
        /// Argument name.
        name: String,
        /// Why.
        message: String,
    },
    /// A `dryRun` or `measurementRetention` name is not a valid pattern.
    #[error("{0}")]
    Pattern(String),
}

/// What resolving arguments needs to know about the rollout.
pub struct ArgContext<'a> {
    /// The Rollout (for `fieldRef`).
    pub rollout: &'a Rollout,
    /// Hash of the stable revision (`podTemplateHashValue: Stable`).
    pub stable_hash: Option<&'a str>,
    /// Hash of the revision under analysis (`podTemplateHashValue: Latest`).
    pub latest_hash: &'a str,
    /// Reads a Secret key; None on a backend without Secrets.
    pub secret: Option<&'a SecretReader>,
}

/// Reads a key of a Secret (the Kubernetes backend's `secretKeyRef`).
pub type SecretReader = dyn Fn(&SecretKeyRef) -> Result<String, String>;

/// Templates referenced by `refs` and the templates they include, in order, each once.
pub fn flatten_templates(
    refs: &[AnalysisTemplateRef],
    lookup: &dyn Fn(&AnalysisTemplateRef) -> Option<AnalysisTemplateSpec>,
) -> Result<Vec<AnalysisTemplateSpec>, ArgsError> {
    fn walk(
        refs: &[AnalysisTemplateRef],
        lookup: &dyn Fn(&AnalysisTemplateRef) -> Option<AnalysisTemplateSpec>,
        seen: &mut Vec<(String, bool)>,
        out: &mut Vec<AnalysisTemplateSpec>,
    ) -> Result<(), ArgsError> {
        for r in refs {
            let key = (r.template_name.clone(), r.cluster_scope.unwrap_or(false));
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let t =
                lookup(r).ok_or_else(|| ArgsError::TemplateNotFound(r.template_name.clone()))?;
            let included = t.templates.clone();
            out.push(t);
            walk(&included, lookup, seen, out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(refs, lookup, &mut Vec::new(), &mut out)?;
    Ok(out)
}

/// Builds the run: the merged spec (arguments with their resolved values) and its metrics.
pub fn resolve_run(
    templates: &[AnalysisTemplateSpec],
    analysis: &RolloutAnalysis,
    ctx: &ArgContext<'_>,
) -> Result<(AnalysisRunSpec, Vec<RunMetric>), ArgsError> {
    let mut metrics = Vec::new();
    let mut declared: Vec<Argument> = Vec::new();
    let mut dry_run = analysis.dry_run.clone();
    let mut retention = analysis.measurement_retention.clone();
    for t in templates {
        for m in &t.metrics {
            if metrics
                .iter()
                .any(|x: &crate::api::Metric| x.name == m.name)
            {
                return Err(ArgsError::DuplicateMetric(m.name.clone()));
            }
            metrics.push(m.clone());
        }
        for a in &t.args {
            match declared.iter_mut().find(|d| d.name == a.name) {
                Some(d) if d.value.is_none() && d.value_from.is_none() => *d = a.clone(),
                Some(_) => {}
                None => declared.push(a.clone()),
            }
        }
        dry_run.extend(t.dry_run.iter().cloned());
        retention.extend(t.measurement_retention.iter().cloned());
    }
    let mut values: Vec<(String, String)> = Vec::new();
    for a in &declared {
        let given = analysis.args.iter().find(|g| g.name == a.name);
        let value = match given {
            Some(g) => given_value(g, ctx)?,
            None => None,
        };
        let value = match value {
            Some(v) => v,
            None => template_value(a, ctx)?,
        };
        values.push((a.name.clone(), value));
    }
    let metrics = metrics
        .iter()
        .map(|m| substitute(m, &values))
        .collect::<Result<Vec<_>, _>>()?;
    let matches = |pattern: &str, name: &str| -> Result<bool, ArgsError> {
        let re = regex::Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| ArgsError::Pattern(format!("metric name pattern {pattern:?}: {e}")))?;
        Ok(re.is_match(name))
    };
    let mut run_metrics = Vec::new();
    for m in &metrics {
        let mut is_dry = false;
        for d in &dry_run {
            is_dry |= matches(&d.metric_name, &m.name)?;
        }
        let mut keep = DEFAULT_MEASUREMENT_RETENTION;
        for r in &retention {
            if matches(&r.metric_name, &m.name)? {
                keep = usize::try_from(r.limit.max(1)).unwrap_or(1);
            }
        }
        run_metrics.push(RunMetric {
            metric: m.clone(),
            dry_run: is_dry,
            retention: keep,
        });
    }
    let spec = AnalysisRunSpec {
        metrics,
        args: declared
            .iter()
            .zip(&values)
            .map(|(a, (_, v))| Argument {
                name: a.name.clone(),
                value: Some(v.clone()),
                value_from: None,
            })
            .collect(),
        dry_run,
        measurement_retention: retention,
        terminate: None,
        ttl_strategy: None,
    };
    Ok((spec, run_metrics))
}

fn given_value(
    g: &crate::api::AnalysisRunArgument,
    ctx: &ArgContext<'_>,
) -> Result<Option<String>, ArgsError> {
    if let Some(v) = &g.value {
        return Ok(Some(v.clone()));
    }
    let Some(from) = &g.value_from else {
        return Ok(None);
    };
    if let Some(which) = from.pod_template_hash_value {
        return match which {
            PodTemplateHashValue::Latest => Ok(Some(ctx.latest_hash.to_string())),
            PodTemplateHashValue::Stable => ctx
                .stable_hash
                .map(|h| Some(h.to_string()))
                .ok_or_else(|| ArgsError::Unresolved {
                    name: g.name.clone(),
                    message: "podTemplateHashValue Stable: the rollout has no stable revision yet"
                        .into(),
                }),
        };
    }
    if let Some(f) = &from.field_ref {
        return field(ctx.rollout, &f.field_path)
            .map(Some)
            .map_err(|message| ArgsError::Unresolved {
                name: g.name.clone(),
                message,
            });
    }
    Ok(None)
}

fn template_value(a: &Argument, ctx: &ArgContext<'_>) -> Result<String, ArgsError> {
    if let Some(v) = &a.value {
        return Ok(v.clone());
    }
    let unresolved = |message: String| ArgsError::Unresolved {
        name: a.name.clone(),
        message,
    };
    match &a.value_from {
        Some(from) => {
            if let Some(s) = &from.secret_key_ref {
                let read = ctx.secret.ok_or_else(|| {
                    unresolved(format!(
                        "secretKeyRef {}/{} needs the Kubernetes backend; on one host give the value in the Rollout's analysis args",
                        s.name, s.key
                    ))
                })?;
                return read(s).map_err(unresolved);
            }
            if let Some(f) = &from.field_ref {
                return field(ctx.rollout, &f.field_path).map_err(unresolved);
            }
            Err(ArgsError::Missing(a.name.clone()))
        }
        None => Err(ArgsError::Missing(a.name.clone())),
    }
}

/// Reads `metadata.name`, `metadata.labels['app']`, `spec.replicas`, … from the Rollout.
pub fn field(rollout: &Rollout, path: &str) -> Result<String, String> {
    let root = serde_json::to_value(rollout).map_err(|e| e.to_string())?;
    let mut cur = &root;
    let mut rest = path.trim();
    while !rest.is_empty() {
        let (key, tail) = if let Some(r) = rest.strip_prefix("['").or(rest.strip_prefix("[\"")) {
            let end = r
                .find(['\'', '"'])
                .ok_or_else(|| format!("fieldPath {path:?}: unclosed ["))?;
            (&r[..end], r[end + 1..].trim_start_matches(']'))
        } else {
            let r = rest.trim_start_matches('.');
            let end = r.find(['.', '[']).unwrap_or(r.len());
            (&r[..end], &r[end..])
        };
        cur = cur
            .get(key)
            .ok_or_else(|| format!("fieldPath {path:?}: the Rollout has no field {key:?}"))?;
        rest = tail;
    }
    Ok(match cur {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Replaces `{{args.NAME}}` everywhere in a metric (queries, URLs, headers, conditions, …).
fn substitute(
    m: &crate::api::Metric,
    values: &[(String, String)],
) -> Result<crate::api::Metric, ArgsError> {
    let text = serde_json::to_string(m).map_err(|e| ArgsError::Pattern(e.to_string()))?;
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = after[..end].trim();
        if let Some(name) = inner.strip_prefix("args.") {
            let value = values
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .ok_or_else(|| ArgsError::Undeclared(name.to_string()))?;
            // The value lands inside a JSON string: escape it as one.
            let escaped = serde_json::to_string(value).unwrap_or_default();
            out.push_str(escaped.trim_matches('"'));
        } else {
            out.push_str(&rest[start..start + 2 + end + 2]);
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    serde_json::from_str(&out).map_err(|e| {
        ArgsError::Pattern(format!(
            "metric {:?} after argument substitution: {e}",
            m.name
        ))
    })
}
