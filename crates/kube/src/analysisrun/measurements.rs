//! How long measurements take and how they end, per provider: one histogram family,
//! `cutover_analysis_measurement_duration_seconds{provider, outcome}` (its `_count` counts the
//! measurements, `outcome="error"` the provider errors), filled by wrapping the providers.

use std::sync::Arc;

use cutover_analysis::{BoxFuture, Outcome, Provider};
use cutover_core::analysis::{Measured, Verdict};
use cutover_core::api::Metric;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MeasurementLabels {
    provider: String,
    outcome: String,
}

type Histograms = Family<MeasurementLabels, Histogram, fn() -> Histogram>;

/// Durations and outcomes of measurements.
#[derive(Clone)]
pub struct MeasurementMetrics {
    seconds: Histograms,
}

impl Default for MeasurementMetrics {
    fn default() -> Self {
        // 10 ms to about 80 s: a web call to a Job that pulls an image.
        let buckets: fn() -> Histogram = || Histogram::new(exponential_buckets(0.01, 2.0, 14));
        Self {
            seconds: Family::new_with_constructor(buckets),
        }
    }
}

impl MeasurementMetrics {
    /// Adds the family to `registry` (prefixed there, e.g. `cutover_`).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "analysis_measurement_duration_seconds",
            "Time of one analysis measurement, by provider and outcome",
            self.seconds.clone(),
        );
    }

    fn observe(&self, provider: &str, measured: &Measured, seconds: f64) {
        let outcome = match measured {
            Measured::Value(_) => "value",
            Measured::Verdict(Verdict::Successful, _) => "successful",
            Measured::Verdict(Verdict::Failed, _) => "failed",
            Measured::Verdict(Verdict::Inconclusive, _) => "inconclusive",
            Measured::Error(_) => "error",
        };
        self.seconds
            .get_or_create(&MeasurementLabels {
                provider: provider.to_string(),
                outcome: outcome.to_string(),
            })
            .observe(seconds);
    }
}

/// A provider whose measurements are timed into [`MeasurementMetrics`].
pub(super) struct Timed {
    pub inner: Arc<dyn Provider>,
    pub metrics: MeasurementMetrics,
}

impl Provider for Timed {
    fn measure<'a>(&'a self, metric: &'a Metric) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let start = Instant::now();
            let outcome = self.inner.measure(metric).await;
            let provider = metric.provider.kinds().first().copied().unwrap_or("none");
            self.metrics
                .observe(provider, &outcome.measured, start.elapsed().as_secs_f64());
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_by_provider() {
        let m = MeasurementMetrics::default();
        let mut registry = Registry::with_prefix("cutover");
        m.register(&mut registry);
        m.observe("web", &Measured::Error("down".into()), 0.02);
        m.observe("job", &Measured::Verdict(Verdict::Failed, None), 3.0);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap_or_default();
        for line in [
            r#"cutover_analysis_measurement_duration_seconds_count{provider="web",outcome="error"} 1"#,
            r#"cutover_analysis_measurement_duration_seconds_count{provider="job",outcome="failed"} 1"#,
        ] {
            assert!(text.contains(line), "{text}");
        }
    }
}
