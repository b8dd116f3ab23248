//! Executes a plan: process changes go to the supervisor at once (it works in the background);
//! every state change of the pass, status included, is written in one transaction.

use cutover_core::api::Rollout;
use cutover_core::plan::{Action, EventSeverity, Plan, RevisionRole};
use jiff::Timestamp;

use super::Engine;
use crate::store::{EventRow, RevisionRow, StoreError, Tx};
use crate::supervisor::RevisionSpec;

impl Engine {
    /// Applies `plan` for `rollout`. Store writes happen in `tx`, which the caller commits.
    pub(crate) fn execute(
        &self,
        tx: &Tx<'_>,
        rollout: &Rollout,
        plan: &Plan,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let name = rollout.metadata.name.clone().unwrap_or_default();
        let revisions = tx.revisions(&name)?;
        let spec_of = |hash: &str| -> Option<RevisionSpec> {
            let template = revisions
                .iter()
                .find(|r| r.hash == hash)
                .map(|r| r.template.clone())
                .or_else(|| {
                    // Created in this very pass: its template is the Rollout's current one.
                    (cutover_core::hash::pod_template_hash(&rollout.spec.template, None) == hash)
                        .then(|| rollout.spec.template.clone())
                })?;
            let revision = revisions
                .iter()
                .find(|r| r.hash == hash)
                .map_or(0, |r| r.revision);
            Some(RevisionSpec {
                rollout: name.clone(),
                hash: hash.to_string(),
                revision,
                template,
            })
        };
        for action in &plan.actions {
            match action {
                Action::CreateRevision {
                    hash,
                    revision,
                    role,
                    metadata,
                } => tx.insert_revision(
                    &name,
                    &RevisionRow {
                        hash: hash.clone(),
                        revision: *revision,
                        template: rollout.spec.template.clone(),
                        desired: 0,
                        deadline: None,
                        role: role.map(role_name).map(str::to_string),
                        created_revision: *revision,
                        role_metadata: metadata.as_ref().map(metadata_json),
                    },
                )?,
                Action::SetRevisionNumber { hash, revision, .. } => {
                    tx.set_revision_number(&name, hash, *revision)?
                }
                Action::ScaleRevision { hash, replicas, .. } => {
                    tx.set_desired(&name, hash, *replicas)?;
                    if let Some(mut spec) = spec_of(hash) {
                        if spec.revision == 0 {
                            spec.revision = created_revision(plan, hash);
                        }
                        let n = u32::try_from(*replicas).unwrap_or(0);
                        if let Err(e) = self.supervisor.scale(&spec, n) {
                            tracing::warn!(rollout = %name, %hash, error = %e, "scaling failed");
                        }
                    }
                }
                Action::SetScaleDownDeadline { hash, deadline } => {
                    tx.set_deadline(&name, hash, *deadline)?
                }
                Action::SwitchService { service, to, .. } => tx.set_selector(service, to)?,
                Action::StartAnalysis(req) => self.start_analysis(tx, rollout, req, now)?,
                Action::TerminateAnalysis { name: run, reason } => {
                    if let Some(mut row) = tx.runs(&name)?.into_iter().find(|r| &r.name == run) {
                        row.terminated = true;
                        tx.put_run(&name, &row)?;
                    }
                    self.terminate_analysis(run, &reason.to_string());
                }
                Action::DeleteAnalysisRun { name: run } => tx.delete_run(run)?,
                Action::DeleteRevision { hash } => {
                    if let Some(spec) = spec_of(hash) {
                        let _ = self.supervisor.scale(&spec, 0);
                    }
                    tx.delete_revision(&name, hash)?;
                }
                // Processes have no labels: the role and its metadata are recorded (what
                // `get rollout` shows), nothing else changes on one host.
                Action::SetRevisionRole {
                    hash,
                    role,
                    metadata,
                    ..
                } => tx.set_role(
                    &name,
                    hash,
                    role.map(role_name),
                    metadata.as_ref().map(metadata_json).as_deref(),
                )?,
                Action::RestartPods {
                    hash,
                    before,
                    max_unavailable,
                } => self.supervisor.restart_before(
                    &name,
                    hash,
                    *before,
                    u32::try_from(*max_unavailable).unwrap_or(1),
                ),
                Action::RunMigration(req) => self.run_migration(tx, &name, req, now)?,
            }
        }
        tx.put_status(&name, &plan.status)?;
        let events: Vec<EventRow> = plan
            .events
            .iter()
            .map(|e| EventRow {
                at: now,
                severity: match e.severity {
                    EventSeverity::Normal => "Normal".into(),
                    EventSeverity::Warning => "Warning".into(),
                },
                reason: e.reason.to_string(),
                message: e.message.clone(),
            })
            .collect();
        for e in &events {
            tracing::info!(rollout = %name, reason = %e.reason, "{}", e.message);
        }
        tx.add_events(&name, &events)
    }
}

fn created_revision(plan: &Plan, hash: &str) -> i64 {
    plan.actions
        .iter()
        .find_map(|a| match a {
            Action::CreateRevision {
                hash: h, revision, ..
            } if h == hash => Some(*revision),
            _ => None,
        })
        .unwrap_or(0)
}

fn role_name(role: RevisionRole) -> &'static str {
    match role {
        RevisionRole::Active => "Active",
        RevisionRole::Preview => "Preview",
    }
}

fn metadata_json(metadata: &cutover_core::api::PodTemplateMetadata) -> String {
    // Plain maps of strings always serialize.
    serde_json::to_string(metadata).unwrap_or_default()
}
