//! What users do to a running rollout: apply manifests, promote, abort, retry, undo, pause,
//! resume, restart, set image. Each is one transaction on the stored objects (the same patches
//! Argo's CLI makes on Kubernetes); the engine acts on them in its next pass.

use std::path::{Path, PathBuf};

use cutover_core::api::{Rollout, RolloutStatus};
use cutover_manifest::{Diagnostics, ManifestSet, Source};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::store::{Store, StoreError, Tx};

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The manifests did not lint; nothing was applied.
    #[error("manifests are invalid; nothing was applied:\n{0}")]
    Invalid(Diagnostics),
    /// The request cannot be carried out as asked (a container or revision that does not
    /// exist, a manifest the single-host backend cannot run).
    #[error("{0}")]
    Refused(String),
    /// The operation has nothing to act on in the rollout's present state ("nothing to abort:
    /// rollout is Healthy"); nothing was changed.
    #[error("{0}")]
    NothingToDo(String),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Names of what an apply created or changed.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ApplyReport {
    /// `Kind/name unchanged|configured|created`, one per object.
    pub objects: Vec<String>,
    /// Located warnings, one per line: fields that do nothing on one host and what to use
    /// instead. Applied anyway, as `cutover lint --backend local` would pass them.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Validates and stores manifests, all or nothing. A Rollout keeps its status (and creation
/// time); a changed spec bumps its generation. References resolve against the given files and
/// what the daemon already holds, so a Rollout may be applied alone after its templates.
pub fn apply(store: &Store, sources: &[Source]) -> Result<ApplyReport, OpError> {
    let set = load_with_stored(store, sources)?;
    refuse_unsupported(&set)?;
    let now = Time(Timestamp::now());
    let given = |file: &str| sources.iter().any(|s| s.path == file);
    store.write(|tx| -> Result<ApplyReport, OpError> {
        let mut report = ApplyReport {
            // Only the given files' warnings: stored context was warned about when applied.
            warnings: set
                .warnings
                .iter()
                .filter(|w| given(&w.file))
                .map(ToString::to_string)
                .collect(),
            ..ApplyReport::default()
        };
        for r in &set.rollouts {
            let mut rollout = r.value.clone();
            anchor_migration_dir(&mut rollout, &r.file);
            let name = r.name().to_string();
            let verb = match tx.rollout(&name)? {
                Some(old) if old.spec == rollout.spec => {
                    rollout = old;
                    "unchanged"
                }
                Some(old) => {
                    rollout.status = old.status;
                    rollout.metadata.creation_timestamp = old.metadata.creation_timestamp;
                    rollout.metadata.generation = Some(old.metadata.generation.unwrap_or(1) + 1);
                    "configured"
                }
                None => {
                    rollout.status = None;
                    rollout.metadata.generation = Some(1);
                    rollout.metadata.creation_timestamp = Some(now.clone());
                    "created"
                }
            };
            tx.put_rollout(&rollout)?;
            report.objects.push(format!("Rollout/{name} {verb}"));
        }
        // Only what the files hold is stored; the daemon's own objects were only context.
        for s in set.services.iter().filter(|s| given(&s.file)) {
            tx.put_service(&s.value)?;
            report.objects.push(format!("Service/{} applied", s.name()));
        }
        for t in set.analysis_templates.iter().filter(|t| given(&t.file)) {
            let json = serde_json::to_string(&t.value).unwrap_or_default();
            tx.put_object("AnalysisTemplate", t.name(), &json)?;
            report
                .objects
                .push(format!("AnalysisTemplate/{} applied", t.name()));
        }
        for t in set
            .cluster_analysis_templates
            .iter()
            .filter(|t| given(&t.file))
        {
            let json = serde_json::to_string(&t.value).unwrap_or_default();
            tx.put_object("ClusterAnalysisTemplate", t.name(), &json)?;
            report
                .objects
                .push(format!("ClusterAnalysisTemplate/{} applied", t.name()));
        }
        Ok(report)
    })
}

/// Loads `sources` with what the daemon already holds as context: its AnalysisTemplates,
/// ClusterAnalysisTemplates and Services, each as a source of its own named
/// `(stored KIND/NAME)`, minus those the files define again. References then resolve as they
/// will when the engine runs the rollout.
fn load_with_stored(store: &Store, sources: &[Source]) -> Result<ManifestSet, OpError> {
    // Bounded first: listing the files' objects parses them, and a hostile text must be
    // refused before that.
    cutover_manifest::check_bounds(sources).map_err(OpError::Invalid)?;
    let stored = store.read(|tx| {
        let mut docs = Vec::new();
        for kind in ["AnalysisTemplate", "ClusterAnalysisTemplate"] {
            docs.extend(tx.objects(kind)?.into_iter().map(|json| (kind, json)));
        }
        for service in tx.services()? {
            docs.push((
                "Service",
                serde_json::to_string(&service).unwrap_or_default(),
            ));
        }
        Ok(docs)
    })?;
    let defined = defined_objects(sources);
    let mut all = sources.to_vec();
    for (kind, json) in stored {
        let name = serde_json::from_str::<serde_json::Value>(&json)
            .ok()
            .and_then(|v| v["metadata"]["name"].as_str().map(str::to_string))
            .unwrap_or_default();
        if !defined.contains(&(kind.to_string(), name.clone())) {
            // JSON is YAML: the stored object is a document as it is.
            all.push(Source::new(format!("(stored {kind}/{name})"), json));
        }
    }
    // Checked for this backend: a field that does nothing on one host is applied with a
    // warning that says so, instead of silently.
    cutover_manifest::load_for(&all, cutover_manifest::Target::Local).map_err(OpError::Invalid)
}

/// `(kind, name)` of every document in `sources`, read leniently: what does not parse is left
/// to `load` to report.
fn defined_objects(sources: &[Source]) -> Vec<(String, String)> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for source in sources {
        for doc in serde_yaml_ng::Deserializer::from_str(&source.text) {
            let Ok(value) = serde_yaml_ng::Value::deserialize(doc) else {
                break;
            };
            let field = |v: &serde_yaml_ng::Value| v.as_str().unwrap_or_default().to_string();
            out.push((field(&value["kind"]), field(&value["metadata"]["name"])));
        }
    }
    out
}

/// `spec.migrations.source.dir` is relative to the manifest's directory; the daemon, whose
/// working directory may be another, stores it absolute. Standard input counts as the daemon's
/// working directory.
fn anchor_migration_dir(rollout: &mut Rollout, file: &str) {
    let Some(dir) = rollout
        .spec
        .migrations
        .as_mut()
        .and_then(|m| m.source.dir.as_mut())
    else {
        return;
    };
    if Path::new(dir.as_str()).is_absolute() {
        return;
    }
    let manifest_dir = match Path::new(file).parent() {
        Some(parent) if file != "<stdin>" => parent.to_path_buf(),
        _ => PathBuf::new(),
    };
    let base = if manifest_dir.is_absolute() {
        manifest_dir
    } else {
        std::env::current_dir()
            .unwrap_or_default()
            .join(manifest_dir)
    };
    let relative: PathBuf = Path::new(dir.as_str())
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    *dir = base.join(relative).display().to_string();
}

/// What the single-host backend cannot run yet is refused before anything is stored.
fn refuse_unsupported(set: &ManifestSet) -> Result<(), OpError> {
    for r in &set.rollouts {
        let no_command = r
            .value
            .spec
            .template
            .spec
            .as_ref()
            .map(|p| {
                p.containers
                    .iter()
                    .filter(|c| c.command.is_none())
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if let Some(container) = no_command.first() {
            return Err(OpError::Refused(format!(
                "{}: Rollout {}: container {container:?} has no `command`: the single-host backend runs processes, not images; give the program to run (the image stays the version identity, as $(CUTOVER_IMAGE))",
                r.file,
                r.name()
            )));
        }
    }
    Ok(())
}

pub use cutover_core::ops::Operation;

/// Applies an operation to a stored rollout.
pub fn operate(store: &Store, name: &str, op: &Operation) -> Result<String, OpError> {
    store.write(|tx| {
        let mut rollout = tx
            .rollout(name)?
            .ok_or_else(|| StoreError::NotFound(name.to_string()))?;
        if let Some(why) = cutover_core::ops::nothing_to_act_on(&rollout, op) {
            return Err(OpError::NothingToDo(why));
        }
        let message = change(tx, &mut rollout, op).map_err(OpError::Refused)?;
        tx.put_rollout(&rollout)?;
        Ok(message)
    })
}

fn change(tx: &Tx<'_>, rollout: &mut Rollout, op: &Operation) -> Result<String, String> {
    let name = rollout.metadata.name.clone().unwrap_or_default();
    let status = rollout.status.get_or_insert_with(RolloutStatus::default);
    let mut spec_changed = false;
    let message = match op {
        Operation::Promote { full } => {
            status.pause_conditions.clear();
            if *full {
                status.promote_full = true;
            }
            if rollout.spec.paused == Some(true) {
                rollout.spec.paused = None;
                spec_changed = true;
            }
            format!(
                "rollout '{name}' promoted{}",
                if *full { " (full)" } else { "" }
            )
        }
        Operation::Abort => {
            status.abort = true;
            format!("rollout '{name}' aborted")
        }
        Operation::Retry => {
            status.abort = false;
            format!("rollout '{name}' retried")
        }
        Operation::Pause => {
            rollout.spec.paused = Some(true);
            spec_changed = true;
            format!("rollout '{name}' paused")
        }
        Operation::Resume => {
            rollout.spec.paused = None;
            spec_changed = true;
            format!("rollout '{name}' resumed")
        }
        Operation::Restart => {
            rollout.spec.restart_at = Some(Time(Timestamp::now()));
            spec_changed = true;
            format!("rollout '{name}' restarts")
        }
        Operation::Undo { to_revision } => {
            let current = status.current_revision.unwrap_or(0);
            let revisions = tx.revisions(&name).map_err(|e| e.to_string())?;
            let target = revisions
                .iter()
                .filter(|r| match to_revision {
                    Some(n) => r.revision == *n,
                    None => r.revision < current,
                })
                .max_by_key(|r| r.revision)
                .ok_or_else(|| match to_revision {
                    Some(n) => format!("rollout '{name}' has no revision {n}; `cutover get rollout {name}` lists them"),
                    None => format!("rollout '{name}' has no revision before {current} to go back to"),
                })?;
            rollout.spec.template = target.template.clone();
            spec_changed = true;
            format!("rollout '{name}' undo to revision {}", target.revision)
        }
        Operation::SetImage { container, image } => {
            cutover_core::ops::set_image(&mut rollout.spec.template, container, image, &name)?;
            spec_changed = true;
            format!("rollout '{name}' image updated")
        }
    };
    if spec_changed {
        rollout.metadata.generation = Some(rollout.metadata.generation.unwrap_or(1) + 1);
    }
    Ok(message)
}
