//! cutover's analysis providers and the runner of one AnalysisRun.
//!
//! Every provider sits behind [`Provider`]: given a metric (arguments already substituted) it
//! returns an [`Outcome`] — a value or an error, never a panic. [`runner::run`] drives the pure
//! state machine of `cutover_core::analysis` with real time and these providers.

pub mod builtin;
pub mod http;
pub mod prometheus;
pub mod runner;
pub mod web;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cutover_core::analysis::Measured;
use cutover_core::api::Metric;

pub use builtin::{BuiltinProvider, CounterSample, CounterSource};
pub use prometheus::PrometheusProvider;
pub use runner::{RunControl, run};
pub use web::WebProvider;

/// A boxed future, so providers can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What one measurement gave.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The value, or why there is none.
    pub measured: Measured,
    /// Details worth showing (the resolved query or URL).
    pub metadata: BTreeMap<String, String>,
}

impl Outcome {
    /// An error outcome.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            measured: Measured::Error(message.into()),
            metadata: BTreeMap::new(),
        }
    }
}

/// A source of measurements.
pub trait Provider: Send + Sync {
    /// Takes one measurement of `metric`.
    fn measure<'a>(&'a self, metric: &'a Metric) -> BoxFuture<'a, Outcome>;
}

/// Dispatches on the metric's provider field; what the backend cannot run is an Error
/// measurement that says so.
#[derive(Clone)]
pub struct Providers {
    /// Prometheus queries.
    pub prometheus: PrometheusProvider,
    /// HTTP requests.
    pub web: WebProvider,
    /// The router's counters, when the backend has a router.
    pub builtin: Option<Arc<BuiltinProvider>>,
    /// Kubernetes Jobs, when the backend runs on Kubernetes (`cutover-kube` plugs its own in);
    /// None: `job` metrics are an Error measurement that says where they run.
    pub job: Option<Arc<dyn Provider>>,
}

/// The Error measurement of a `job` metric on a backend without Kubernetes.
pub const JOB_UNSUPPORTED: &str =
    "job metrics run only on the Kubernetes backend; on one host use a web or builtin metric";

impl Default for Providers {
    fn default() -> Self {
        Self {
            prometheus: PrometheusProvider::new(),
            web: WebProvider::new(),
            builtin: None,
            job: None,
        }
    }
}

impl Provider for Providers {
    fn measure<'a>(&'a self, metric: &'a Metric) -> BoxFuture<'a, Outcome> {
        let p = &metric.provider;
        if p.prometheus.is_some() {
            return self.prometheus.measure(metric);
        }
        if p.web.is_some() {
            return self.web.measure(metric);
        }
        if p.builtin.is_some() {
            return match &self.builtin {
                Some(b) => b.measure(metric),
                None => Box::pin(async {
                    Outcome::error("builtin metrics need cutover's router (single-host backend)")
                }),
            };
        }
        if p.job.is_some() {
            return match &self.job {
                Some(j) => j.measure(metric),
                None => Box::pin(async { Outcome::error(JOB_UNSUPPORTED) }),
            };
        }
        Box::pin(async { Outcome::error("the metric has no provider") })
    }
}
