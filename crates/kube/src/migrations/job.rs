//! The Job that runs one migration command: `cutover migrate` in the controller's image.

use cutover_core::api::Rollout;
use cutover_core::plan::{MigrationCommand, MigrationRequest};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{
    COMMAND_ANNOTATION, HASH_ANNOTATION, MIGRATION_ANNOTATION, MIGRATION_JOB_LABEL,
    REVISION_ANNOTATION, command_name,
};
use crate::ROLLOUT_LABEL;
use crate::controller::Context;
use crate::error::{Error, is_conflict, is_not_found};

/// Environment variable of the controller naming the image its migration Jobs run (the
/// controller's own image: it holds the `cutover` binary).
pub const CUTOVER_IMAGE_ENV: &str = "CUTOVER_IMAGE";
/// The image when `CUTOVER_IMAGE` is unset: the one deploy/install.yaml runs.
pub const DEFAULT_IMAGE: &str = "cutover:dev";
/// Where the ConfigMap of migration files is mounted in the Job's pod.
pub const MIGRATIONS_MOUNT: &str = "/migrations";
/// The container's termination-message file: `cutover migrate --report` writes its outcome there.
const TERMINATION_LOG: &str = "/dev/termination-log";
/// Longest object name Kubernetes accepts for a label value (the pod carries the Job's name).
const MAX_NAME: usize = 63;

/// Starts the Job of `req` unless it exists. A Job of the same name that failed belongs to an
/// earlier attempt (the planner asks again only after `abort` + `retry`): it is deleted, and the
/// next pass creates it anew.
pub async fn run(
    ctx: &Context,
    rollout: &Rollout,
    ns: &str,
    req: &MigrationRequest,
) -> Result<(), Error> {
    // Without both references observation reports the state unreadable and the planner asks
    // for nothing; a stale plan has nothing to run either.
    let Some(job) = job_for(rollout, ns, req, &image())? else {
        return Ok(());
    };
    let name = job.name_any();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    match api.create(&PostParams::default(), &job).await {
        Ok(_) => {
            tracing::info!(job = %name, migration = %req.migration, command = %req.command, "migration job created");
            Ok(())
        }
        Err(e) if is_conflict(&e) => {
            let existing = match api.get(&name).await {
                Ok(existing) => existing,
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) => return Err(Error::kube(format!("get job {ns}/{name}"), e)),
            };
            if !failed(&existing) {
                return Ok(());
            }
            let background = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..DeleteParams::default()
            };
            match api.delete(&name, &background).await {
                Ok(_) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(Error::kube(format!("delete job {ns}/{name}"), e)),
            }
        }
        Err(e) => Err(Error::kube(format!("create job {ns}/{name}"), e)),
    }
}

fn image() -> String {
    std::env::var(CUTOVER_IMAGE_ENV)
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_string())
}

/// A Job has failed once its `Failed` condition is true.
pub(crate) fn failed(job: &Job) -> bool {
    condition(job, "Failed").is_some()
}

/// The true condition `type_` of a Job.
pub(crate) fn condition<'a>(
    job: &'a Job,
    type_: &str,
) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// `<rollout>-<revision>-migrate-<command>-<migration>`, lower-case and DNS-safe; cut to 63
/// characters with a hash of the full name so that two long names stay apart. The migration is
/// part of the name because one revision can run several migrations in turn.
pub fn job_name(
    rollout: &str,
    revision: i64,
    command: MigrationCommand,
    migration: &str,
) -> String {
    let command = command_name(command).replace('+', "-");
    let full = format!("{rollout}-{revision}-migrate-{command}-{migration}");
    let safe = crate::dns_safe(&full);
    if safe.len() <= MAX_NAME {
        return safe.trim_matches('-').to_string();
    }
    let suffix = format!("-{:08x}", fnv1a(full.as_bytes()) as u32);
    let kept = safe[..MAX_NAME - suffix.len()].trim_end_matches('-');
    format!("{}{suffix}", kept.trim_start_matches('-'))
}

/// FNV-1a: a stable hash (std's hasher may change between releases, names must not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The arguments of `cutover migrate` for `req`.
fn migrate_args(req: &MigrationRequest) -> Vec<String> {
    let mut args: Vec<String> = vec!["migrate".into()];
    match req.command {
        MigrationCommand::ExpandAndBackfill => {
            args.extend([
                "expand".into(),
                req.migration.clone(),
                "--and-backfill".into(),
            ]);
        }
        MigrationCommand::Rollback => args.extend(["rollback".into(), req.migration.clone()]),
        MigrationCommand::Contract => {
            // The facts the planner checked, so that the library's contract gate checks the
            // same ones again (a Job has no stdin for `--rollout-state -`).
            let facts = json!({
                "oldRevisionRunning": false,
                "fullyPromotedAt": req.fully_promoted_at.map(|t| t.to_string()),
            });
            args.extend([
                "contract".into(),
                req.migration.clone(),
                "--rollout-state-json".into(),
                facts.to_string(),
                "--bake".into(),
                format!("{}s", req.bake.as_secs()),
            ]);
        }
    }
    args.extend([
        "--dir".into(),
        MIGRATIONS_MOUNT.into(),
        "--report".into(),
        TERMINATION_LOG.into(),
    ]);
    args
}

/// The Job for `req`, or None when `spec.migrations` lacks the Kubernetes references.
pub(crate) fn job_for(
    rollout: &Rollout,
    ns: &str,
    req: &MigrationRequest,
    image: &str,
) -> Result<Option<Job>, Error> {
    let Some(spec) = &rollout.spec.migrations else {
        return Ok(None);
    };
    let (Some(files), Some(secret)) = (
        &spec.source.config_map_ref,
        &spec.database_url_from.secret_key_ref,
    ) else {
        return Ok(None);
    };
    let rollout_name = rollout.name_any();
    let name = job_name(&rollout_name, req.revision, req.command, &req.migration);
    let owner = rollout
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))?;
    let value = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": { ROLLOUT_LABEL: rollout_name },
            "annotations": {
                MIGRATION_ANNOTATION: req.migration,
                COMMAND_ANNOTATION: command_name(req.command),
                REVISION_ANNOTATION: req.revision.to_string(),
                HASH_ANNOTATION: req.hash,
            },
            "ownerReferences": [owner],
        },
        "spec": {
            // A failed migration is reported, never retried by itself (docs/migrations.md).
            "backoffLimit": 0,
            "template": {
                "metadata": { "labels": { ROLLOUT_LABEL: rollout_name, MIGRATION_JOB_LABEL: name } },
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "migrate",
                        "image": image,
                        "command": ["cutover"],
                        "args": migrate_args(req),
                        "env": [{
                            "name": "DATABASE_URL",
                            "valueFrom": { "secretKeyRef": { "name": secret.name, "key": secret.key } },
                        }],
                        "volumeMounts": [{ "name": "migrations", "mountPath": MIGRATIONS_MOUNT, "readOnly": true }],
                        "terminationMessagePath": TERMINATION_LOG,
                        // Killed before writing its report: the log's tail says why.
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                    }],
                    "volumes": [{ "name": "migrations", "configMap": { "name": files.name } }],
                },
            },
        },
    });
    serde_json::from_value(value)
        .map(Some)
        .map_err(|source| Error::Json {
            what: "migration job",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_dns_safe_and_at_most_63_characters() {
        let short = job_name(
            "web",
            2,
            MigrationCommand::ExpandAndBackfill,
            "001_user_name_to_full_name",
        );
        assert_eq!(
            short,
            "web-2-migrate-expand-backfill-001-user-name-to-full-name"
        );
        let long_a = job_name(
            "a-very-long-rollout-name",
            12,
            MigrationCommand::Contract,
            &"x".repeat(60),
        );
        let long_b = job_name(
            "a-very-long-rollout-name",
            12,
            MigrationCommand::Contract,
            &"y".repeat(60),
        );
        assert!(long_a.len() <= 63 && long_b.len() <= 63);
        assert_ne!(long_a, long_b);
        assert!(
            long_a
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }
}
