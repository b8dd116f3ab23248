//! The planner's migration facts, from the watch caches only: no API call, no database.

use std::collections::BTreeMap;
use std::sync::Arc;

use cutover_core::api::{MigrationPhase, Rollout};
use cutover_core::plan::{
    MigrationCommand, MigrationFailure, ObservedMigration, ObservedMigrations, RunningMigration,
};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde::Deserialize;

use super::job::{condition, failed};
use super::{
    COMMAND_ANNOTATION, HASH_ANNOTATION, MIGRATION_ANNOTATION, MIGRATION_JOB_LABEL,
    REVISION_ANNOTATION, parse_command,
};
use crate::cache::{Caches, owned_by};
use crate::cached::{CachedPod, Labelled};

/// What `cutover migrate --report` writes (see crates/cli/src/commands/migrate.rs).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    #[serde(default)]
    migrations: Option<Vec<ReportedMigration>>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportedMigration {
    name: String,
    phase: MigrationPhase,
    #[serde(default)]
    backfilled_at: Option<Timestamp>,
    #[serde(default)]
    contracted_at: Option<Timestamp>,
    #[serde(default = "yes")]
    contract: bool,
}

fn yes() -> bool {
    true
}

/// One of the rollout's migration Jobs, as far as observation needs it.
struct Run {
    job: Arc<Job>,
    command: MigrationCommand,
    migration: String,
    created: Timestamp,
}

/// The migration facts of `rollout` (None without `spec.migrations`).
pub fn observe(caches: &Caches, rollout: &Rollout, ns: &str) -> Option<ObservedMigrations> {
    let spec = rollout.spec.migrations.as_ref()?;
    let unreadable = |why: String| {
        Some(ObservedMigrations {
            unreadable: Some(why),
            ..ObservedMigrations::default()
        })
    };
    let Some(files) = &spec.source.config_map_ref else {
        return unreadable("spec.migrations.source.configMapRef is not set: on Kubernetes the migration files come from a ConfigMap (dir is for one host)".into());
    };
    if spec.database_url_from.secret_key_ref.is_none() {
        return unreadable("spec.migrations.databaseUrlFrom.secretKeyRef is not set: on Kubernetes the database URL comes from a Secret (env is for one host)".into());
    }
    let Some(config_map) = caches
        .config_maps
        .get(&ObjectRef::new(&files.name).within(ns))
    else {
        return unreadable(format!(
            "ConfigMap {ns}/{} (spec.migrations.source.configMapRef) not found",
            files.name
        ));
    };
    let runs = runs(caches, rollout, ns);
    let report = latest_report(caches, ns, &runs);
    let migrations = migration_names(&config_map)
        .into_iter()
        .map(|name| {
            let reported = report.iter().flatten().find(|m| m.name == name);
            ObservedMigration {
                phase: reported.map_or(MigrationPhase::Pending, |m| m.phase),
                backfilled_at: reported.and_then(|m| m.backfilled_at),
                contracted_at: reported.and_then(|m| m.contracted_at),
                // The revision of the newest expand + backfill of this migration.
                revision: runs
                    .iter()
                    .rev()
                    .find(|r| {
                        r.command == MigrationCommand::ExpandAndBackfill && r.migration == name
                    })
                    .and_then(|r| r.job.annotations().get(REVISION_ANNOTATION)?.parse().ok()),
                has_contract: reported.is_none_or(|m| m.contract),
                name,
            }
        })
        .collect();
    let running = runs
        .iter()
        .find(|r| !finished(&r.job))
        .map(|r| RunningMigration {
            command: r.command,
            migration: Some(r.migration.clone()),
            since: r.created,
        });
    // Only the newest Job's failure counts: a later run (retry, next command) supersedes it.
    let failure = runs
        .last()
        .filter(|r| failed(&r.job))
        .map(|r| failure(caches, ns, r));
    Some(ObservedMigrations {
        migrations,
        running,
        failure,
        unreadable: None,
    })
}

/// The rollout's migration Jobs (not being deleted), oldest first.
fn runs(caches: &Caches, rollout: &Rollout, ns: &str) -> Vec<Run> {
    let uid = rollout.meta().uid.as_ref();
    let mut runs: Vec<Run> = owned_by(&caches.jobs, ns, &rollout.name_any())
        .into_iter()
        .filter(|job| {
            job.meta().deletion_timestamp.is_none()
                && (uid.is_none() || job.owner_references().iter().any(|o| Some(&o.uid) == uid))
        })
        .filter_map(|job| {
            let annotations = job.annotations();
            let command = parse_command(annotations.get(COMMAND_ANNOTATION)?)?;
            let migration = annotations.get(MIGRATION_ANNOTATION)?.clone();
            let created = job
                .meta()
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
            Some(Run {
                job,
                command,
                migration,
                created,
            })
        })
        .collect();
    // Creation times have second precision: the name breaks ties so the order is stable.
    runs.sort_by(|a, b| {
        a.created
            .cmp(&b.created)
            .then_with(|| a.job.name_any().cmp(&b.job.name_any()))
    });
    runs
}

fn finished(job: &Job) -> bool {
    condition(job, "Complete").is_some() || failed(job)
}

/// The migration names: the ConfigMap's `*.yaml`/`*.yml` keys without the extension, in order
/// (as `cutover migrate` reads the mounted directory).
fn migration_names(config_map: &ConfigMap) -> Vec<String> {
    let mut keys: Vec<&String> = config_map.data.iter().flat_map(BTreeMap::keys).collect();
    keys.sort();
    keys.into_iter()
        .filter_map(|k| k.strip_suffix(".yaml").or_else(|| k.strip_suffix(".yml")))
        .map(str::to_string)
        .collect()
}

/// The phases of the newest finished Job that could read the state table. None before any
/// Job reported: every migration then counts as pending (expand of a migration already applied
/// by hand finds itself done).
fn latest_report(caches: &Caches, ns: &str, runs: &[Run]) -> Option<Vec<ReportedMigration>> {
    runs.iter()
        .rev()
        .filter(|r| finished(&r.job))
        .filter_map(|r| report(caches, ns, &r.job.name_any()))
        .find_map(|r| r.migrations)
}

/// The report in the termination message of the Job's pod; a message that is not a report
/// (the log's tail, written by Kubernetes when the command died first) becomes its error.
fn report(caches: &Caches, ns: &str, job: &str) -> Option<Report> {
    let message = caches
        .pods
        .state_filter(|p| {
            p.meta().namespace.as_deref() == Some(ns) && p.label(MIGRATION_JOB_LABEL) == Some(job)
        })
        .iter()
        .find_map(|pod| termination_message(pod))?;
    Some(serde_json::from_str(&message).unwrap_or_else(|_| Report {
        migrations: None,
        error: Some(last_lines(&message)),
    }))
}

fn termination_message(pod: &CachedPod) -> Option<String> {
    pod.containers
        .iter()
        .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
        .filter(|m| !m.trim().is_empty())
}

/// The last lines of a log, on one line.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

fn failure(caches: &Caches, ns: &str, run: &Run) -> MigrationFailure {
    let job = &run.job;
    let condition = condition(job, "Failed");
    let message = report(caches, ns, &job.name_any())
        .and_then(|r| r.error)
        .or_else(|| condition.and_then(|c| c.message.clone()))
        .unwrap_or_else(|| format!("job {} failed", job.name_any()));
    MigrationFailure {
        command: run.command,
        migration: Some(run.migration.clone()),
        hash: job
            .annotations()
            .get(HASH_ANNOTATION)
            .cloned()
            .unwrap_or_default(),
        message,
        at: condition
            .and_then(|c| c.last_transition_time.as_ref())
            .map_or(run.created, |t| t.0),
    }
}
