//! AnalysisRuns on one host. `StartAnalysis` resolves the templates (stored by `apply`) and the
//! arguments, stores the run as Running with its resolved spec, and — once the pass's
//! transaction is committed — starts a runner (`cutover_analysis::run`). Every status the
//! runner reports is written to the run's row (phase, message, whole status) and wakes the
//! engine, whose next pass lets the planner see the phase. `TerminateAnalysis` cancels the
//! runner. After a daemon restart, runs still Running resume from their stored status (a
//! measurement that was in flight is taken again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::dataplane::DataPlane;
use cutover_analysis::{BuiltinProvider, CounterSample, CounterSource, Providers, RunControl};
use cutover_core::analysis::{ArgContext, RunMachine, RunMetric, flatten_templates, resolve_run};
use cutover_core::api::{
    AnalysisPhase, AnalysisRunSpec, AnalysisRunStatus, AnalysisTemplate, AnalysisTemplateSpec,
    ClusterAnalysisTemplate, Rollout,
};
use cutover_core::plan::{AnalysisKind, AnalysisRunRequest};
use jiff::Timestamp;

use super::Engine;
use crate::store::{RunRow, StoreError, Tx};

/// The resolved spec stored with a run: what its metrics are, and how each is counted.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredRunSpec {
    spec: AnalysisRunSpec,
    dry_run: Vec<bool>,
    retention: Vec<usize>,
    /// Service and revision the builtin provider measures by default.
    service: Option<String>,
    revision: String,
}

impl StoredRunSpec {
    fn metrics(&self) -> Vec<RunMetric> {
        self.spec
            .metrics
            .iter()
            .enumerate()
            .map(|(i, m)| RunMetric {
                metric: m.clone(),
                dry_run: self.dry_run.get(i).copied().unwrap_or(false),
                retention: self.retention.get(i).copied().unwrap_or(10),
            })
            .collect()
    }
}

/// A run ready to be started after the transaction that stored it commits.
pub(crate) struct PendingRun {
    name: String,
    spec: StoredRunSpec,
    machine: RunMachine,
}

/// Runners of this daemon, by run name.
#[derive(Default)]
pub(crate) struct Runners {
    running: Mutex<HashMap<String, RunControl>>,
    pending: Mutex<Vec<PendingRun>>,
}

/// The data plane's counters, for the builtin provider.
struct RouterCounters(DataPlane);

impl CounterSource for RouterCounters {
    fn sample<'a>(
        &'a self,
        service: &'a str,
        revision: &'a str,
    ) -> cutover_analysis::BoxFuture<'a, Option<CounterSample>> {
        Box::pin(async move {
            self.0
                .revision_counters(service, revision)
                .await
                .map(|c| CounterSample {
                    by_class: c.by_class,
                    latency_buckets: c.latency_buckets,
                })
        })
    }
}

fn phase_text(p: Option<AnalysisPhase>) -> String {
    format!("{:?}", p.unwrap_or(AnalysisPhase::Running))
}

fn templates(
    tx: &Tx<'_>,
    rollout: &Rollout,
    req: &AnalysisRunRequest,
) -> Result<Vec<AnalysisTemplateSpec>, String> {
    let lookup = |r: &cutover_core::api::AnalysisTemplateRef| -> Option<AnalysisTemplateSpec> {
        if r.cluster_scope.unwrap_or(false) {
            let json = tx
                .object("ClusterAnalysisTemplate", &r.template_name)
                .ok()??;
            let t: ClusterAnalysisTemplate = serde_json::from_str(&json).ok()?;
            Some(t.spec.into())
        } else {
            let json = tx.object("AnalysisTemplate", &r.template_name).ok()??;
            let t: AnalysisTemplate = serde_json::from_str(&json).ok()?;
            Some(t.spec)
        }
    };
    let _ = rollout;
    flatten_templates(&req.analysis.templates, &lookup).map_err(|e| e.to_string())
}

impl Engine {
    /// Executes `StartAnalysis`: stores the run and queues its runner (or stores it as Error
    /// when its templates or arguments cannot be resolved: nothing is measured then).
    pub(crate) fn start_analysis(
        &self,
        tx: &Tx<'_>,
        rollout: &Rollout,
        req: &AnalysisRunRequest,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let name = rollout.metadata.name.clone().unwrap_or_default();
        let bg = &rollout.spec.strategy.blue_green;
        let service = match req.kind {
            AnalysisKind::PrePromotion => bg.preview_service.clone(),
            AnalysisKind::PostPromotion => Some(bg.active_service.clone()),
        };
        let resolved = templates(tx, rollout, req).and_then(|ts| {
            let ctx = ArgContext {
                rollout,
                stable_hash: req.stable_hash.as_deref(),
                latest_hash: &req.hash,
                secret: None,
            };
            let (spec, metrics) =
                resolve_run(&ts, &req.analysis, &ctx).map_err(|e| e.to_string())?;
            let machine = RunMachine::new(metrics.clone(), now).map_err(|e| e.to_string())?;
            Ok((
                StoredRunSpec {
                    spec,
                    dry_run: metrics.iter().map(|m| m.dry_run).collect(),
                    retention: metrics.iter().map(|m| m.retention).collect(),
                    service,
                    revision: req.hash.clone(),
                },
                machine,
            ))
        });
        let (phase, message) = match &resolved {
            Ok(_) => (AnalysisPhase::Running, None),
            Err(e) => (
                AnalysisPhase::Error,
                Some(format!("analysis cannot start: {e}")),
            ),
        };
        tx.put_run(
            &name,
            &RunRow {
                name: req.name.clone(),
                kind: match req.kind {
                    AnalysisKind::PrePromotion => "pre".into(),
                    AnalysisKind::PostPromotion => "post".into(),
                },
                hash: req.hash.clone(),
                phase: phase_text(Some(phase)),
                message: message.clone(),
                created_at: now,
                terminated: false,
                revision: Some(req.revision),
            },
        )?;
        if let Ok((spec, machine)) = resolved {
            let spec_json = serde_json::to_string(&spec).unwrap_or_default();
            let status_json = serde_json::to_string(machine.status()).unwrap_or_default();
            tx.set_run_state(
                &req.name,
                &phase_text(Some(phase)),
                None,
                Some(&spec_json),
                Some(&status_json),
            )?;
            self.runners
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(PendingRun {
                    name: req.name.clone(),
                    spec,
                    machine,
                });
        } else {
            let status = AnalysisRunStatus {
                phase: Some(phase),
                message,
                ..AnalysisRunStatus::default()
            };
            let json = serde_json::to_string(&status).unwrap_or_default();
            tx.set_run_state(
                &req.name,
                &phase_text(Some(phase)),
                status.message.as_deref(),
                None,
                Some(&json),
            )?;
        }
        Ok(())
    }

    /// Cancels a run's runner (`TerminateAnalysis`, `cutover terminate analysisrun`).
    pub(crate) fn terminate_analysis(&self, run: &str, reason: &str) {
        if let Some(c) = self
            .runners
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(run)
        {
            c.terminate_because(reason);
        }
    }

    /// Starts the runners queued by the pass that just committed.
    pub(crate) fn start_pending_runs(self: &Arc<Self>) {
        let pending: Vec<PendingRun> = std::mem::take(
            &mut *self
                .runners
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for p in pending {
            self.spawn_runner(p);
        }
    }

    /// Resumes the runs a previous daemon left Running.
    pub(crate) fn resume_runs(self: &Arc<Self>) -> Result<(), StoreError> {
        let names = self.store.read(|tx| tx.runs_in_phase("Running"))?;
        for (name, _rollout) in names {
            let Some((_, Some(spec), status)) = self.store.read(|tx| tx.run_state(&name))? else {
                continue;
            };
            let terminated = self
                .store
                .read(|tx| tx.runs(&_rollout))?
                .iter()
                .any(|r| r.name == name && r.terminated);
            let Ok(spec) = serde_json::from_str::<StoredRunSpec>(&spec) else {
                continue;
            };
            let status: AnalysisRunStatus = status
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
            match RunMachine::resume(spec.metrics(), status, terminated) {
                Ok(machine) => {
                    tracing::info!(run = %name, "resuming analysis run");
                    self.spawn_runner(PendingRun {
                        name,
                        spec,
                        machine,
                    });
                }
                Err(e) => {
                    let msg = format!("analysis cannot resume: {e}");
                    self.store
                        .write(|tx| tx.set_run_state(&name, "Error", Some(&msg), None, None))?;
                }
            }
        }
        Ok(())
    }

    fn spawn_runner(self: &Arc<Self>, p: PendingRun) {
        let control = RunControl::default();
        let mut map = self
            .runners
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(&p.name) {
            return;
        }
        map.insert(p.name.clone(), control.clone());
        drop(map);
        let mut builtin = BuiltinProvider::new(Arc::new(RouterCounters(self.router.clone())));
        builtin.default_service = p.spec.service.clone();
        builtin.default_revision = Some(p.spec.revision.clone());
        let providers = Providers {
            builtin: Some(Arc::new(builtin)),
            ..Providers::default()
        };
        let engine = Arc::clone(self);
        let name = p.name.clone();
        let metrics = p.spec.spec.metrics.clone();
        tokio::spawn(async move {
            let store = Arc::clone(&engine.store);
            let wake = Arc::clone(&engine.wake);
            let run_name = name.clone();
            cutover_analysis::run(
                p.machine,
                metrics,
                Arc::new(providers),
                control,
                move |status| {
                    let json = serde_json::to_string(status).unwrap_or_default();
                    let phase = phase_text(status.phase);
                    if let Err(e) = store.write(|tx| {
                        tx.set_run_state(
                            &run_name,
                            &phase,
                            status.message.as_deref(),
                            None,
                            Some(&json),
                        )
                    }) {
                        tracing::warn!(run = %run_name, error = %e, "cannot store analysis status");
                    }
                    wake.notify_one();
                },
            )
            .await;
            engine
                .runners
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&name);
        });
    }
}
