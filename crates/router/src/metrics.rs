//! The router's Prometheus metrics. Handles for a revision are resolved once per table install
//! (see [`RevisionMetrics`]) so the request path does no label hashing or map lookups.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Revision label used for requests that never reached a revision (no table, no backend).
pub(crate) const NO_REVISION: &str = "none";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub service: String,
    pub revision: String,
    pub code_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RevisionLabels {
    pub service: String,
    pub revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MirrorLabels {
    pub service: String,
    pub revision: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ServiceLabels {
    pub service: String,
}

/// A Service and why a connection was refused or closed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConnectionLabels {
    pub service: String,
    pub reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs .. ~26 s: covers a loopback hop as well as a slow backend.
    Histogram::new(exponential_buckets(0.0001, 2.0, 19))
}

fn switch_histogram() -> Histogram {
    // 1 ms .. ~65 s: a switch is an install plus a drain that may run to its deadline.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// All metric families, registered in one registry owned by the router.
pub(crate) struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: HistogramFamily<RevisionLabels>,
    pub in_flight: Family<RevisionLabels, Gauge>,
    pub mirror: Family<MirrorLabels, Counter>,
    pub switch: HistogramFamily<ServiceLabels>,
    pub generation: Family<ServiceLabels, Gauge>,
    pub connections_open: Family<ServiceLabels, Gauge>,
    pub connections_parked: Family<ServiceLabels, Gauge>,
    pub connections_refused: Family<ConnectionLabels, Counter>,
    pub connections_timed_out: Family<ConnectionLabels, Counter>,
    pub response_timeouts: Family<RevisionLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cutover");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: HistogramFamily<RevisionLabels> =
            Family::new_with_constructor(latency_histogram);
        let in_flight = Family::<RevisionLabels, Gauge>::default();
        let mirror = Family::<MirrorLabels, Counter>::default();
        let switch: HistogramFamily<ServiceLabels> = Family::new_with_constructor(switch_histogram);
        let generation = Family::<ServiceLabels, Gauge>::default();
        let connections_open = Family::<ServiceLabels, Gauge>::default();
        let connections_parked = Family::<ServiceLabels, Gauge>::default();
        let connections_refused = Family::<ConnectionLabels, Counter>::default();
        let connections_timed_out = Family::<ConnectionLabels, Counter>::default();
        let response_timeouts = Family::<RevisionLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by service, revision and status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to the end of the response body",
            duration.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests (and upgraded connections) currently proxied",
            in_flight.clone(),
        );
        registry.register(
            "mirror_requests",
            "Mirrored request copies, by outcome",
            mirror.clone(),
        );
        registry.register(
            "switch_seconds",
            "Measured switch latency, from table install to verified",
            switch.clone(),
        );
        registry.register(
            "route_generation",
            "Generation of the live route table",
            generation.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections open on a Service's listener",
            connections_open.clone(),
        );
        registry.register(
            "connections_parked",
            "Idle HTTP/1.1 keep-alive connections parked: open, waiting for the client's next \
             request without per-connection buffers",
            connections_parked.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections answered 503 and closed at once: limit (the listener's \
             max_connections), budget (the open-files budget), overflow (too many refusals at \
             once: closed unanswered), accept_error (accept failed)",
            connections_refused.clone(),
        );
        registry.register(
            "connections_timed_out",
            "Client connections closed for sending nothing: no_request (no request head within \
             the header-read timeout of connecting), header (a request head not finished in \
             time), idle (no request for the idle timeout)",
            connections_timed_out.clone(),
        );
        registry.register(
            "response_timeouts",
            "Requests answered 504: the backend sent no response head within the route's \
             response timeout",
            response_timeouts.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            in_flight,
            mirror,
            switch,
            generation,
            connections_open,
            connections_parked,
            connections_refused,
            connections_timed_out,
            response_timeouts,
        }
    }

    pub fn revision(&self, service: &str, revision: &str) -> RevisionMetrics {
        let class = |code_class| {
            self.requests.get_or_create_owned(&RequestLabels {
                service: service.to_owned(),
                revision: revision.to_owned(),
                code_class,
            })
        };
        let labels = RevisionLabels {
            service: service.to_owned(),
            revision: revision.to_owned(),
        };
        RevisionMetrics {
            by_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            duration: self.duration.get_or_create_owned(&labels),
            in_flight: self.in_flight.get_or_create_owned(&labels),
            timeouts: self.response_timeouts.get_or_create_owned(&labels),
        }
    }

    pub fn refused(&self, service: &str, reason: &'static str) {
        self.connections_refused
            .get_or_create(&ConnectionLabels {
                service: service.to_owned(),
                reason,
            })
            .inc();
    }

    /// The parked-connections gauge of a Service.
    pub fn connections_parked(&self, service: &str) -> Gauge {
        self.connections_parked.get_or_create_owned(&ServiceLabels {
            service: service.to_owned(),
        })
    }

    pub fn timed_out(&self, service: &str, reason: &'static str) {
        self.connections_timed_out
            .get_or_create(&ConnectionLabels {
                service: service.to_owned(),
                reason,
            })
            .inc();
    }

    pub fn mirror_outcome(&self, service: &str, revision: &str, outcome: &'static str) {
        self.mirror
            .get_or_create(&MirrorLabels {
                service: service.to_owned(),
                revision: revision.to_owned(),
                outcome,
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here would be a bug in an encoder.
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        out
    }
}

/// Pre-resolved metric handles of one (service, revision).
pub(crate) struct RevisionMetrics {
    by_class: [Counter; 5],
    pub duration: Histogram,
    pub in_flight: Gauge,
    /// Requests of this revision that hit the response timeout.
    pub timeouts: Counter,
}

impl RevisionMetrics {
    pub fn count(&self, status: http::StatusCode) {
        let index = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.by_class[index].inc();
    }
}
