//! The measurement state machine of one AnalysisRun, pure: it says which metrics to measure
//! now and when to look again, takes the measurements that arrived, and keeps the whole
//! `AnalysisRunStatus` by Argo's rules. The runner (`cutover-analysis`) owns the clock and the
//! providers; everything it needs to resume after a restart is in the status.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::condition::{Condition, ResultValue, Verdict, judge};
use crate::api::{
    AnalysisPhase, AnalysisRunStatus, DEFAULT_CONSECUTIVE_ERROR_LIMIT, DEFAULT_FAILURE_LIMIT,
    DEFAULT_INCONCLUSIVE_LIMIT, Measurement, Metric, MetricResult, RunSummary,
};

/// Measurements a metric keeps when no `measurementRetention` names it (Argo's default).
pub const DEFAULT_MEASUREMENT_RETENTION: usize = 10;
/// Wait before measuring again after an Error when the metric has no interval (Argo's).
pub const ERROR_RETRY_INTERVAL: Duration = Duration::from_secs(10);

/// A metric as a run measures it: arguments substituted, dry-run and retention decided.
#[derive(Clone, Debug, PartialEq)]
pub struct RunMetric {
    /// The metric.
    pub metric: Metric,
    /// Measured but not counted toward the run's phase.
    pub dry_run: bool,
    /// Measurements kept.
    pub retention: usize,
}

/// Why a run cannot start: reported as the run's Error before any measurement.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("metric {metric:?}: {message}")]
pub struct MetricError {
    /// Metric name.
    pub metric: String,
    /// What is wrong.
    pub message: String,
}

/// What a provider returned for one measurement.
#[derive(Clone, Debug, PartialEq)]
pub enum Measured {
    /// A value, judged by the conditions.
    Value(ResultValue),
    /// A provider that judges its own measurement (a Job's `Complete` or `Failed` condition,
    /// as Argo Rollouts does): the conditions are not evaluated.
    Verdict(Verdict, Option<String>),
    /// The provider could not measure (unreachable, timeout, bad answer).
    Error(String),
}

/// A measurement that finished.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrival {
    /// Metric name.
    pub metric: String,
    /// When it finished.
    pub finished_at: Timestamp,
    /// The outcome.
    pub outcome: Measured,
    /// Provider details (the resolved query, …).
    pub metadata: BTreeMap<String, String>,
}

/// What the runner does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Metrics to measure now (each has a Running measurement in the status).
    pub due: Vec<String>,
    /// When to step again if nothing arrives.
    pub next_at: Option<Timestamp>,
    /// The run is finished: its phase is final.
    pub done: bool,
}

struct Compiled {
    spec: RunMetric,
    success: Option<Condition>,
    failure: Option<Condition>,
    interval: Option<Duration>,
    initial_delay: Duration,
    /// None: measure until terminated.
    count: Option<i32>,
    failure_limit: i32,
    inconclusive_limit: i32,
    consecutive_error_limit: i32,
    consecutive_success_limit: i32,
}

/// One AnalysisRun's measurements and phases.
pub struct RunMachine {
    metrics: Vec<Compiled>,
    status: AnalysisRunStatus,
    terminate: bool,
    /// Why the run was asked to stop, for its message.
    terminate_reason: Option<String>,
}

fn int_or_string(v: Option<&IntOrString>, default: i32, what: &str) -> Result<i32, String> {
    match v {
        None => Ok(default),
        Some(IntOrString::Int(i)) => Ok(*i),
        Some(IntOrString::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| format!("{what} {s:?} is not a whole number")),
    }
}

fn compile(spec: RunMetric) -> Result<Compiled, MetricError> {
    let m = &spec.metric;
    let err = |message: String| MetricError {
        metric: m.name.clone(),
        message,
    };
    let cond = |c: &Option<String>, what: &str| -> Result<Option<Condition>, MetricError> {
        c.as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(Condition::compile)
            .transpose()
            .map_err(|e| err(format!("{what}: {e}")))
    };
    let duration = |d: &Option<crate::api::DurationString>, what: &str| {
        d.as_ref()
            .map(|d| d.parse().map_err(|e| err(format!("{what}: {e}"))))
            .transpose()
    };
    let interval = duration(&m.interval, "interval")?.filter(|d| !d.is_zero());
    let initial_delay = duration(&m.initial_delay, "initialDelay")?.unwrap_or_default();
    let count = match &m.count {
        None if interval.is_some() => None,
        None => Some(1),
        Some(c) => Some(int_or_string(Some(c), 1, "count").map_err(err)?),
    };
    if count.is_some_and(|c| c > 1) && interval.is_none() {
        return Err(err("count above 1 needs an interval".into()));
    }
    let limit = |v: &Option<IntOrString>, d: i32, what: &str| {
        int_or_string(v.as_ref(), d, what).map_err(err)
    };
    Ok(Compiled {
        success: cond(&m.success_condition, "successCondition")?,
        failure: cond(&m.failure_condition, "failureCondition")?,
        interval,
        initial_delay,
        count,
        failure_limit: limit(&m.failure_limit, DEFAULT_FAILURE_LIMIT, "failureLimit")?,
        inconclusive_limit: limit(
            &m.inconclusive_limit,
            DEFAULT_INCONCLUSIVE_LIMIT,
            "inconclusiveLimit",
        )?,
        consecutive_error_limit: limit(
            &m.consecutive_error_limit,
            DEFAULT_CONSECUTIVE_ERROR_LIMIT,
            "consecutiveErrorLimit",
        )?,
        consecutive_success_limit: limit(
            &m.consecutive_success_limit,
            0,
            "consecutiveSuccessLimit",
        )?,
        spec,
    })
}

fn time(t: Timestamp) -> Time {
    Time(t)
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

impl RunMachine {
    /// A new run started at `now`. Fails, before any measurement, when a metric cannot be
    /// measured as written (a condition that does not compile, a bad duration or count).
    pub fn new(metrics: Vec<RunMetric>, now: Timestamp) -> Result<Self, MetricError> {
        let status = AnalysisRunStatus {
            phase: Some(AnalysisPhase::Running),
            started_at: Some(time(now)),
            metric_results: metrics
                .iter()
                .map(|m| MetricResult {
                    name: m.metric.name.clone(),
                    phase: AnalysisPhase::Pending,
                    measurements: Vec::new(),
                    message: None,
                    count: 0,
                    successful: 0,
                    failed: 0,
                    inconclusive: 0,
                    error: 0,
                    consecutive_error: 0,
                    consecutive_success: 0,
                    dry_run: m.dry_run,
                    metadata: BTreeMap::new(),
                })
                .collect(),
            ..AnalysisRunStatus::default()
        };
        Self::resume(metrics, status, false)
    }

    /// A run continued from a stored status (after a daemon restart). A measurement that was
    /// in flight is dropped and taken again.
    pub fn resume(
        metrics: Vec<RunMetric>,
        mut status: AnalysisRunStatus,
        terminate: bool,
    ) -> Result<Self, MetricError> {
        let metrics = metrics
            .into_iter()
            .map(compile)
            .collect::<Result<Vec<_>, _>>()?;
        for r in &mut status.metric_results {
            r.measurements.retain(|m| m.phase.is_completed());
        }
        Ok(Self {
            metrics,
            status,
            terminate,
            terminate_reason: None,
        })
    }

    /// The status so far.
    pub fn status(&self) -> &AnalysisRunStatus {
        &self.status
    }

    /// Asks the run to stop: unfinished metrics end by what they measured (Successful, or
    /// Error/Inconclusive when that is all they saw) unless one already failed.
    pub fn terminate(&mut self) {
        self.terminate_with(None);
    }

    /// [`Self::terminate`], saying why in the run's message.
    pub fn terminate_with(&mut self, reason: Option<String>) {
        self.terminate = true;
        self.terminate_reason = reason;
        // A measurement in flight will not be waited for.
        for r in &mut self.status.metric_results {
            r.measurements.retain(|m| m.phase.is_completed());
        }
    }

    /// Records what arrived, reassesses every metric and the run, and says what to measure
    /// now and when to step again.
    pub fn step(&mut self, now: Timestamp, arrivals: Vec<Arrival>) -> Step {
        for a in arrivals {
            self.record(a);
        }
        self.assess();
        let done = self.status.phase.is_some_and(AnalysisPhase::is_completed);
        if done {
            return Step {
                due: Vec::new(),
                next_at: None,
                done,
            };
        }
        let started = self.status.started_at.as_ref().map_or(now, |t| t.0);
        let mut due = Vec::new();
        let mut next_at: Option<Timestamp> = None;
        for (i, m) in self.metrics.iter().enumerate() {
            let Some(r) = self.status.metric_results.get_mut(i) else {
                continue;
            };
            let Some(at) = next_measurement(m, r, started) else {
                continue;
            };
            if at <= now {
                due.push(r.name.clone());
                r.measurements.push(Measurement {
                    phase: AnalysisPhase::Running,
                    message: None,
                    started_at: Some(time(now)),
                    finished_at: None,
                    value: None,
                    metadata: BTreeMap::new(),
                    resume_at: None,
                });
                if r.phase == AnalysisPhase::Pending {
                    r.phase = AnalysisPhase::Running;
                }
            } else {
                next_at = Some(next_at.map_or(at, |n| n.min(at)));
            }
        }
        Step {
            due,
            next_at,
            done: false,
        }
    }

    fn record(&mut self, a: Arrival) {
        let Some(i) = self
            .status
            .metric_results
            .iter()
            .position(|r| r.name == a.metric)
        else {
            return;
        };
        let (Some(m), Some(r)) = (self.metrics.get(i), self.status.metric_results.get_mut(i))
        else {
            return;
        };
        if r.phase.is_completed() {
            return;
        }
        let started_at = match r.measurements.last() {
            Some(last) if last.phase == AnalysisPhase::Running => {
                r.measurements.pop().and_then(|m| m.started_at)
            }
            _ => None,
        };
        let (phase, value, message) = match &a.outcome {
            Measured::Error(e) => (AnalysisPhase::Error, None, Some(e.clone())),
            Measured::Verdict(v, message) => {
                let phase = match v {
                    Verdict::Successful => AnalysisPhase::Successful,
                    Verdict::Failed => AnalysisPhase::Failed,
                    Verdict::Inconclusive => AnalysisPhase::Inconclusive,
                };
                (phase, None, message.clone())
            }
            Measured::Value(v) => match judge(m.success.as_ref(), m.failure.as_ref(), v) {
                Ok(Verdict::Successful) => (AnalysisPhase::Successful, Some(v.to_string()), None),
                Ok(Verdict::Failed) => (AnalysisPhase::Failed, Some(v.to_string()), None),
                Ok(Verdict::Inconclusive) => {
                    (AnalysisPhase::Inconclusive, Some(v.to_string()), None)
                }
                Err(e) => (AnalysisPhase::Error, Some(v.to_string()), Some(e)),
            },
        };
        // Counters as Argo keeps them: an Error is not a measurement `count` counts.
        match phase {
            AnalysisPhase::Successful => {
                r.successful += 1;
                r.count += 1;
                r.consecutive_error = 0;
                r.consecutive_success += 1;
            }
            AnalysisPhase::Failed => {
                r.failed += 1;
                r.count += 1;
                r.consecutive_error = 0;
                r.consecutive_success = 0;
            }
            AnalysisPhase::Inconclusive => {
                r.inconclusive += 1;
                r.count += 1;
                r.consecutive_error = 0;
                r.consecutive_success = 0;
            }
            _ => {
                r.error += 1;
                r.consecutive_error += 1;
                r.consecutive_success = 0;
            }
        }
        r.metadata.extend(a.metadata.clone());
        r.measurements.push(Measurement {
            phase,
            message,
            started_at: started_at.or(Some(time(a.finished_at))),
            finished_at: Some(time(a.finished_at)),
            value,
            metadata: a.metadata,
            resume_at: None,
        });
        let keep = m.spec.retention.max(1);
        if r.measurements.len() > keep {
            let drop = r.measurements.len() - keep;
            r.measurements.drain(..drop);
        }
    }

    /// Metric phases, then the run phase: the worst counted metric phase once every metric is
    /// complete; the run ends early once a counted metric is Failed, Error or Inconclusive.
    fn assess(&mut self) {
        // Twice: a metric that completes badly in the first round makes the run terminating,
        // which completes the others in the second.
        for _ in 0..2 {
            let terminating = self.terminate
                || self.status.metric_results.iter().any(|r| {
                    !r.dry_run
                        && matches!(
                            r.phase,
                            AnalysisPhase::Failed
                                | AnalysisPhase::Error
                                | AnalysisPhase::Inconclusive
                        )
                });
            for (m, r) in self
                .metrics
                .iter()
                .zip(self.status.metric_results.iter_mut())
            {
                if let Some((phase, message)) = assess_metric(m, r, terminating) {
                    r.phase = phase;
                    r.message = message;
                }
            }
        }
        let terminating = self.terminate;
        let mut summary = RunSummary::default();
        let mut dry = RunSummary::default();
        let mut worst: Option<(AnalysisPhase, Option<String>)> = None;
        let mut complete = true;
        for r in &self.status.metric_results {
            let s = if r.dry_run { &mut dry } else { &mut summary };
            s.count += 1;
            match r.phase {
                AnalysisPhase::Successful => s.successful += 1,
                AnalysisPhase::Failed => s.failed += 1,
                AnalysisPhase::Inconclusive => s.inconclusive += 1,
                AnalysisPhase::Error => s.error += 1,
                _ => {}
            }
            if !r.phase.is_completed() {
                complete = false;
            }
            if r.dry_run {
                continue;
            }
            if worst
                .as_ref()
                .is_none_or(|(w, _)| r.phase.severity() > w.severity())
            {
                let message = r
                    .message
                    .as_ref()
                    .map(|m| format!("metric {:?} assessed {:?}: {m}", r.name, r.phase));
                worst = Some((r.phase, message));
            }
        }
        self.status.run_summary = Some(summary);
        self.status.dry_run_summary = (dry.count > 0).then_some(dry);
        let (phase, message) = match worst {
            // Every metric is dry run: nothing can fail the run.
            None if complete || terminating => (AnalysisPhase::Successful, None),
            Some((w, msg)) if complete => (w, msg),
            _ => (AnalysisPhase::Running, None),
        };
        // A run stopped from outside says why, unless a metric has worse to say.
        let message = if terminating && phase == AnalysisPhase::Successful {
            Some(
                self.terminate_reason
                    .clone()
                    .unwrap_or_else(|| "run terminated".into()),
            )
        } else {
            message
        };
        self.status.phase = Some(phase);
        self.status.message = message;
    }
}

/// When a metric is measured next: None when it is complete, in flight, or done counting.
fn next_measurement(m: &Compiled, r: &MetricResult, started: Timestamp) -> Option<Timestamp> {
    if r.phase.is_completed() {
        return None;
    }
    let Some(last) = r.measurements.last() else {
        return Some(after(started, m.initial_delay));
    };
    if !last.phase.is_completed() {
        return None;
    }
    let finished = last.finished_at.as_ref().map_or(started, |t| t.0);
    if last.phase == AnalysisPhase::Error {
        return Some(after(finished, m.interval.unwrap_or(ERROR_RETRY_INTERVAL)));
    }
    if m.count.is_some_and(|c| r.count >= c) {
        return None;
    }
    m.interval.map(|i| after(finished, i))
}

/// A metric's phase by Argo's `assessMetricStatus`; None keeps the current one.
fn assess_metric(
    m: &Compiled,
    r: &MetricResult,
    terminating: bool,
) -> Option<(AnalysisPhase, Option<String>)> {
    use AnalysisPhase::{Pending, Running, Successful};
    if r.phase.is_completed() {
        return None;
    }
    let Some(last) = r.measurements.last() else {
        if r.error > 0 || r.count > 0 {
            // Measurements were taken but none is kept (retention): assess on the counters.
        } else if terminating {
            return Some((
                Successful,
                Some("run terminated before a measurement".into()),
            ));
        } else {
            return Some((Pending, None));
        }
        return assess_counters(m, r, terminating);
    };
    if !last.phase.is_completed() {
        return Some((Running, None));
    }
    assess_counters(m, r, terminating)
}

fn assess_counters(
    m: &Compiled,
    r: &MetricResult,
    terminating: bool,
) -> Option<(AnalysisPhase, Option<String>)> {
    use AnalysisPhase::{Error, Failed, Inconclusive, Running, Successful};
    if m.failure_limit >= 0 && r.failed > m.failure_limit {
        return Some((
            Failed,
            Some(format!(
                "failed ({}) > failureLimit ({})",
                r.failed, m.failure_limit
            )),
        ));
    }
    if r.inconclusive > m.inconclusive_limit {
        return Some((
            Inconclusive,
            Some(format!(
                "inconclusive ({}) > inconclusiveLimit ({})",
                r.inconclusive, m.inconclusive_limit
            )),
        ));
    }
    if r.consecutive_error > m.consecutive_error_limit {
        let last = r
            .measurements
            .last()
            .and_then(|x| x.message.clone())
            .unwrap_or_default();
        return Some((
            Error,
            Some(format!(
                "consecutiveErrors ({}) > consecutiveErrorLimit ({}): {last}",
                r.consecutive_error, m.consecutive_error_limit
            )),
        ));
    }
    if m.consecutive_success_limit > 0 && r.consecutive_success >= m.consecutive_success_limit {
        return Some((
            Successful,
            Some(format!(
                "consecutiveSuccesses ({}) >= consecutiveSuccessLimit ({})",
                r.consecutive_success, m.consecutive_success_limit
            )),
        ));
    }
    if let Some(count) = m.count
        && r.count >= count
    {
        let failure_applies = m.failure_limit >= 0;
        let success_applies = m.consecutive_success_limit > 0;
        return Some(match (failure_applies, success_applies) {
            (true, true) => (
                Inconclusive,
                Some(format!(
                    "count ({count}) reached with neither failureLimit nor consecutiveSuccessLimit hit"
                )),
            ),
            (false, true) => (
                Failed,
                Some(format!(
                    "count ({count}) reached without {} consecutive successes",
                    m.consecutive_success_limit
                )),
            ),
            _ => (Successful, None),
        });
    }
    if terminating {
        return Some(terminated_phase(r));
    }
    Some((Running, None))
}

/// A metric stopped before it finished counting ends by what it measured: errors to the end
/// are an Error, only inconclusive results Inconclusive, anything else Successful (a run that
/// never measured, or measured well, has nothing against it). Argo Rollouts calls every such
/// metric Successful; a terminated metric that never got a good measurement is not one.
fn terminated_phase(r: &MetricResult) -> (AnalysisPhase, Option<String>) {
    use AnalysisPhase::{Error, Inconclusive, Successful};
    if r.consecutive_error > 0 && r.successful == 0 && r.failed == 0 && r.inconclusive == 0 {
        return (
            Error,
            Some(format!(
                "run terminated after {} errors and no successful measurement",
                r.consecutive_error
            )),
        );
    }
    if r.inconclusive > 0 && r.successful == 0 && r.failed == 0 {
        return (
            Inconclusive,
            Some(format!(
                "run terminated after {} inconclusive and no successful measurement",
                r.inconclusive
            )),
        );
    }
    (Successful, Some("run terminated".into()))
}
