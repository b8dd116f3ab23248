//! A Rollout's database migrations on Kubernetes (`spec.migrations`, see docs/migrations.md).
//!
//! Each `RunMigration` of the plan becomes a `batch/v1` Job running `cutover migrate` in the
//! controller's own image ([`job`]), with the migration files of `source.configMapRef` mounted
//! at `/migrations` and `DATABASE_URL` from `databaseUrlFrom.secretKeyRef`. The controller never
//! connects to the database: the Job writes its outcome (every migration's phase and the error)
//! as its pod's termination message (`cutover migrate --report /dev/termination-log`), and
//! [`observe`] reads the planner's migration facts from the watch caches — the ConfigMap's keys
//! for the migration names, the rollout's Jobs for what runs, failed and which revision each
//! migration ran for, and the newest report for the phases.

mod job;
mod observe;

pub use job::{CUTOVER_IMAGE_ENV, DEFAULT_IMAGE, MIGRATIONS_MOUNT, job_name, run};
pub use observe::observe;

/// Pod label of a migration Job's pod: the Job's name (the pod cache keeps its termination
/// message).
pub const MIGRATION_JOB_LABEL: &str = "cutover.dev/migration-job";
/// Job annotation: the migration the Job runs.
pub const MIGRATION_ANNOTATION: &str = "migration.cutover.dev/name";
/// Job annotation: the command (`expand+backfill`, `contract`, `rollback`).
pub const COMMAND_ANNOTATION: &str = "migration.cutover.dev/command";
/// Job annotation: the revision number the command runs for.
pub const REVISION_ANNOTATION: &str = "migration.cutover.dev/revision";
/// Job annotation: the pod-template hash of that revision.
pub const HASH_ANNOTATION: &str = "migration.cutover.dev/pod-template-hash";

use cutover_core::plan::MigrationCommand;

/// The command's name in annotations and Job names.
pub(crate) fn command_name(command: MigrationCommand) -> &'static str {
    match command {
        MigrationCommand::ExpandAndBackfill => "expand+backfill",
        MigrationCommand::Contract => "contract",
        MigrationCommand::Rollback => "rollback",
    }
}

pub(crate) fn parse_command(name: &str) -> Option<MigrationCommand> {
    [
        MigrationCommand::ExpandAndBackfill,
        MigrationCommand::Contract,
        MigrationCommand::Rollback,
    ]
    .into_iter()
    .find(|c| command_name(*c) == name)
}
