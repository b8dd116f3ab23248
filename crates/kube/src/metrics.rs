//! Prometheus metrics of the controller: reconcile duration, failures by kind, the latency from
//! a switch of the active Service to its confirmation on EndpointSlices, and one info gauge per
//! Rollout carrying its phase.

use std::collections::HashMap;
use std::sync::Mutex;

use cutover_core::api::{RolloutPhase, RolloutStatus};
use cutover_core::plan::Plan;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    namespace: String,
    rollout: String,
    phase: String,
}

#[derive(Clone)]
struct SwitchBuckets;

impl MetricConstructor<Histogram> for SwitchBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.05, 2.0, 12))
    }
}

/// The controller's metrics, registered in one registry.
pub struct Metrics {
    registry: Registry,
    reconcile: Histogram,
    local: Histogram,
    /// Analysis measurements by provider and outcome (the AnalysisRun controller records them).
    pub analysis: crate::analysisrun::MeasurementMetrics,
    failures: Family<ErrorLabels, Counter>,
    switch: Histogram,
    info: Family<RolloutLabels, Gauge>,
    phases: Mutex<HashMap<(String, String), String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cutover");
        let reconcile = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        // 50 µs … 0.1 s, in steps fine enough to read a p99 against a 20 ms goal.
        let local = Histogram::new(exponential_buckets(0.00005, 1.5, 20));
        let failures = Family::<ErrorLabels, Counter>::default();
        let switch = SwitchBuckets.new_metric();
        let info = Family::<RolloutLabels, Gauge>::default();
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile of a Rollout, API calls included",
            reconcile.clone(),
        );
        registry.register(
            "reconcile_local_seconds",
            "Time of one reconcile's own work (observation from the watch caches and planning), no API calls",
            local.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconciles by error kind",
            failures.clone(),
        );
        registry.register(
            "switch_confirmation_seconds",
            "From the active Service's selector change to EndpointSlices holding only the new revision",
            switch.clone(),
        );
        registry.register(
            "rollout_info",
            "One series per Rollout, labelled with its phase",
            info.clone(),
        );
        let analysis = crate::analysisrun::MeasurementMetrics::default();
        analysis.register(&mut registry);
        Self {
            registry,
            analysis,
            reconcile,
            local,
            failures,
            switch,
            info,
            phases: Mutex::default(),
        }
    }
}

/// Records a reconcile's duration when dropped, whatever way the reconcile ends.
pub struct ReconcileTimer<'a> {
    start: Instant,
    histogram: &'a Histogram,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    /// Starts timing a reconcile.
    pub fn reconcile_timer(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            start: Instant::now(),
            histogram: &self.reconcile,
        }
    }

    /// Starts timing a reconcile's work that makes no API call.
    pub fn local_timer(&self) -> ReconcileTimer<'_> {
        ReconcileTimer {
            start: Instant::now(),
            histogram: &self.local,
        }
    }

    /// Counts a failed reconcile.
    pub fn failure(&self, kind: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                error: kind.to_string(),
            })
            .inc();
    }

    /// Updates the phase gauge and records a switch confirmed by this plan.
    pub fn observe_plan(&self, ns: &str, name: &str, before: Option<&RolloutStatus>, plan: &Plan) {
        let confirmed_before = before
            .and_then(|s| s.blue_green.switch.as_ref())
            .and_then(|s| s.verified_at.as_ref());
        if let Some(sw) = &plan.status.blue_green.switch
            && sw.verified_at.is_some()
            && confirmed_before.is_none_or(|t| Some(t) != sw.verified_at.as_ref())
            && let Some(seconds) = sw.seconds
        {
            self.switch.observe(seconds);
        }
        let phase = plan.status.phase.map_or("Unknown", phase_name).to_string();
        self.set_phase(ns, name, Some(phase));
    }

    /// Forgets a deleted Rollout's gauge.
    pub fn forget(&self, ns: &str, name: &str) {
        self.set_phase(ns, name, None);
    }

    fn set_phase(&self, ns: &str, name: &str, phase: Option<String>) {
        let Ok(mut phases) = self.phases.lock() else {
            return;
        };
        let key = (ns.to_string(), name.to_string());
        let labels = |phase: String| RolloutLabels {
            namespace: ns.to_string(),
            rollout: name.to_string(),
            phase,
        };
        if let Some(old) = phases.remove(&key)
            && Some(&old) != phase.as_ref()
        {
            self.info.remove(&labels(old));
        }
        if let Some(p) = phase {
            self.info.get_or_create(&labels(p.clone())).set(1);
            phases.insert(key, p);
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

fn phase_name(p: RolloutPhase) -> &'static str {
    match p {
        RolloutPhase::Healthy => "Healthy",
        RolloutPhase::Progressing => "Progressing",
        RolloutPhase::Paused => "Paused",
        RolloutPhase::Degraded => "Degraded",
    }
}
