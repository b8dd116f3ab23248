//! The simulated database and migration executor: runs take a set time and fail when told.

use std::time::Duration;

use jiff::Timestamp;

use super::World;
use crate::api::MigrationPhase;
use crate::plan::{MigrationCommand, MigrationFailure, MigrationRequest, ObservedMigration};

/// The simulated database and migration executor of a rollout with `spec.migrations`.
#[derive(Clone, Debug, Default)]
pub struct SimMigrations {
    /// The migration files in order with their recorded state.
    pub migrations: Vec<ObservedMigration>,
    /// The run in progress and when it started.
    pub job: Option<(MigrationRequest, Timestamp)>,
    /// The last failed run.
    pub failure: Option<MigrationFailure>,
    /// A run takes this long.
    pub duration: Duration,
    /// The next run to finish fails.
    pub fail_next: bool,
}

impl World {
    /// Starts a run like the executor: one at a time; expand records the revision.
    pub(super) fn start_migration(&mut self, req: &MigrationRequest) {
        let now = self.now;
        let Some(m) = self.migrations.as_mut() else {
            return;
        };
        if m.job.is_some() {
            return;
        }
        if req.command == MigrationCommand::ExpandAndBackfill
            && let Some(target) = m.migrations.iter_mut().find(|x| x.name == req.migration)
        {
            target.revision = Some(req.revision);
        }
        m.failure = None;
        m.job = Some((req.clone(), now));
    }

    pub(super) fn finish_due_migration(&mut self) {
        let now = self.now;
        let Some(m) = self.migrations.as_mut() else {
            return;
        };
        let due = m.job.as_ref().is_some_and(|(_, since)| {
            now.as_millisecond() - since.as_millisecond()
                >= i64::try_from(m.duration.as_millis()).unwrap_or(i64::MAX)
        });
        if due {
            self.end_migration_job();
        }
    }

    /// Ends the migration run in progress: it fails when `fail_next` is set (expand applied,
    /// backfill failed), else the migration reaches the command's phase.
    fn end_migration_job(&mut self) {
        let now = self.now;
        let Some(m) = self.migrations.as_mut() else {
            return;
        };
        let Some((req, _)) = m.job.take() else {
            return;
        };
        let Some(target) = m.migrations.iter_mut().find(|x| x.name == req.migration) else {
            return;
        };
        if std::mem::take(&mut m.fail_next) {
            if req.command == MigrationCommand::ExpandAndBackfill {
                target.phase = MigrationPhase::Expanded;
            }
            m.failure = Some(MigrationFailure {
                command: req.command,
                migration: Some(req.migration.clone()),
                hash: req.hash.clone(),
                message: "simulated failure".to_string(),
                at: now,
            });
            return;
        }
        match req.command {
            MigrationCommand::ExpandAndBackfill => {
                target.phase = MigrationPhase::Backfilled;
                target.backfilled_at = Some(now);
            }
            MigrationCommand::Contract => {
                target.phase = MigrationPhase::Contracted;
                target.contracted_at = Some(now);
            }
            MigrationCommand::Rollback => target.phase = MigrationPhase::RolledBack,
        }
    }

    /// Adds a pending migration file (a release that ships one).
    pub fn add_migration(&mut self, name: &str) {
        if let Some(m) = self.migrations.as_mut() {
            m.migrations.push(ObservedMigration {
                name: name.to_string(),
                phase: MigrationPhase::Pending,
                backfilled_at: None,
                contracted_at: None,
                revision: None,
                has_contract: true,
            });
        }
    }

    /// Adds a pending migration file whose contract phase is empty (e.g. an index).
    pub fn add_migration_without_contract(&mut self, name: &str) {
        self.add_migration(name);
        if let Some(m) = self
            .migrations
            .as_mut()
            .and_then(|m| m.migrations.last_mut())
        {
            m.has_contract = false;
        }
    }

    /// Makes the migration run in progress fail now, or else the next one to finish.
    pub fn fail_migration(&mut self) {
        let Some(m) = self.migrations.as_mut() else {
            return;
        };
        m.fail_next = true;
        if m.job.is_some() {
            self.end_migration_job();
        }
    }

    /// The recorded phase of a migration.
    pub fn migration_phase(&self, name: &str) -> Option<MigrationPhase> {
        self.migrations
            .as_ref()?
            .migrations
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.phase)
    }
}
