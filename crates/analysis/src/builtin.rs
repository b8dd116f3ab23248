//! `provider.builtin`: cutover's router counts every request per Service and revision; this
//! provider turns two samples of those counters, `window` apart, into a success rate
//! (share of responses that are not 5xx), a latency quantile or a request rate — analysis
//! without a Prometheus server. A measurement therefore takes `window` (default 30 s).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cutover_core::analysis::{Measured, ResultValue};
use cutover_core::api::{BuiltinQuery, Metric};

use crate::{BoxFuture, Outcome, Provider};

/// Window when the metric gives none.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);

/// Cumulative counters of one revision behind one Service.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CounterSample {
    /// Responses by status class, 1xx … 5xx.
    pub by_class: [u64; 5],
    /// Latency histogram: (upper bound in seconds, cumulative count), ascending.
    pub latency_buckets: Vec<(f64, u64)>,
}

/// Where the counters come from (the router, on one host).
pub trait CounterSource: Send + Sync {
    /// Counters of `revision` behind `service` now; None when it has served nothing. Async:
    /// the counters live in the data-plane process.
    fn sample<'a>(
        &'a self,
        service: &'a str,
        revision: &'a str,
    ) -> BoxFuture<'a, Option<CounterSample>>;
}

/// Measures the router's counters.
pub struct BuiltinProvider {
    source: Arc<dyn CounterSource>,
    /// Revision measured when the metric names none (the one under analysis).
    pub default_revision: Option<String>,
    /// Service measured when the metric names none.
    pub default_service: Option<String>,
}

impl BuiltinProvider {
    /// A provider over a counter source.
    pub fn new(source: Arc<dyn CounterSource>) -> Self {
        Self {
            source,
            default_revision: None,
            default_service: None,
        }
    }
}

/// The value of `query` from counters taken `elapsed` apart. None: no request in the window.
pub fn compute(
    query: BuiltinQuery,
    quantile: f64,
    before: &CounterSample,
    after: &CounterSample,
    elapsed: Duration,
) -> Option<f64> {
    let delta: Vec<u64> = after
        .by_class
        .iter()
        .zip(before.by_class.iter())
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    let total: u64 = delta.iter().sum();
    #[allow(clippy::cast_precision_loss)]
    match query {
        BuiltinQuery::RequestRate => Some(total as f64 / elapsed.as_secs_f64().max(1e-3)),
        BuiltinQuery::SuccessRate => (total > 0).then(|| (total - delta[4]) as f64 / total as f64),
        BuiltinQuery::LatencyQuantile => {
            let buckets: Vec<(f64, u64)> = after
                .latency_buckets
                .iter()
                .map(|(le, c)| {
                    let b = before
                        .latency_buckets
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0, |(_, c)| *c);
                    (*le, c.saturating_sub(b))
                })
                .collect();
            let count = buckets.last().map_or(0, |b| b.1);
            if count == 0 {
                return None;
            }
            // Linear interpolation inside the bucket, as Prometheus' histogram_quantile.
            let rank = quantile.clamp(0.0, 1.0) * count as f64;
            let mut lower = (0.0, 0u64);
            for (le, c) in buckets {
                if c as f64 >= rank {
                    if le.is_infinite() {
                        return Some(lower.0);
                    }
                    let in_bucket = (c - lower.1) as f64;
                    let frac = if in_bucket > 0.0 {
                        (rank - lower.1 as f64) / in_bucket
                    } else {
                        0.0
                    };
                    return Some(lower.0 + (le - lower.0) * frac);
                }
                lower = (le, c);
            }
            Some(lower.0)
        }
    }
}

impl Provider for BuiltinProvider {
    fn measure<'a>(&'a self, metric: &'a Metric) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let Some(b) = &metric.provider.builtin else {
                return Outcome::error("not a builtin metric");
            };
            let Some(service) = b.service.clone().or_else(|| self.default_service.clone()) else {
                return Outcome::error("builtin metric: set `service` (e.g. the preview Service)");
            };
            let Some(revision) = b.revision.clone().or_else(|| self.default_revision.clone())
            else {
                return Outcome::error("builtin metric: set `revision`");
            };
            let window = match &b.window {
                Some(w) => match w.parse() {
                    Ok(d) => d,
                    Err(e) => return Outcome::error(format!("builtin metric window: {e}")),
                },
                None => DEFAULT_WINDOW,
            };
            let mut metadata = BTreeMap::new();
            metadata.insert("service".into(), service.clone());
            metadata.insert("revision".into(), revision.clone());
            let before = self
                .source
                .sample(&service, &revision)
                .await
                .unwrap_or_default();
            let start = tokio::time::Instant::now();
            tokio::time::sleep(window).await;
            let after = self
                .source
                .sample(&service, &revision)
                .await
                .unwrap_or_default();
            let value = compute(
                b.query,
                b.quantile.unwrap_or(0.99),
                &before,
                &after,
                start.elapsed(),
            );
            // No request in the window: an empty list, like an empty Prometheus vector, so
            // `result[0]` is an evaluation error and `len(result) == 0` can test for it.
            let measured = Measured::Value(ResultValue::List(
                value.map(ResultValue::Number).into_iter().collect(),
            ));
            Outcome { measured, metadata }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_quantiles_over_the_window() {
        let before = CounterSample {
            by_class: [0, 10, 0, 0, 0],
            latency_buckets: vec![(0.1, 5), (1.0, 10), (f64::INFINITY, 10)],
        };
        let after = CounterSample {
            by_class: [0, 18, 0, 0, 2],
            latency_buckets: vec![(0.1, 10), (1.0, 20), (f64::INFINITY, 20)],
        };
        let s = Duration::from_secs(10);
        assert_eq!(
            compute(BuiltinQuery::SuccessRate, 0.0, &before, &after, s),
            Some(0.8)
        );
        assert_eq!(
            compute(BuiltinQuery::RequestRate, 0.0, &before, &after, s),
            Some(1.0)
        );
        let p50 = compute(BuiltinQuery::LatencyQuantile, 0.5, &before, &after, s).expect("p50");
        assert!((p50 - 0.1).abs() < 1e-9, "{p50}");
        assert_eq!(
            compute(BuiltinQuery::SuccessRate, 0.0, &after, &after, s),
            None
        );
    }
}
