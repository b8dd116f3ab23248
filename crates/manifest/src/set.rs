//! The loaded, typed objects with where each came from.

use cutover_core::api::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate, Rollout};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::diag::{Diagnostics, Pos};
use crate::locate::DocIndex;
use crate::path::FieldPath;

/// A typed object and its place in the sources.
#[derive(Clone, Debug)]
pub struct Located<T> {
    /// Display name of the source file.
    pub file: String,
    /// Index of the document in its file, from 0 (empty documents count).
    pub document: usize,
    /// Where the document starts.
    pub start: Pos,
    /// The object.
    pub value: T,
    pub(crate) index: DocIndex,
    /// Paths where loading patched over a reported problem; checks say nothing about them.
    pub(crate) patched: Vec<FieldPath>,
}

impl<T> Located<T> {
    /// True when `path` lies at or under a value that loading patched over; its problem was
    /// already reported.
    pub(crate) fn is_patched(&self, path: &FieldPath) -> bool {
        self.patched.iter().any(|p| path.starts_with(p))
    }

    /// Where the field at `path` is written (its key), or the nearest enclosing node.
    pub fn locate(&self, path: &FieldPath) -> Pos {
        self.index.locate(path)
    }

    /// Where the value at `path` starts, or the nearest enclosing node.
    pub fn locate_value(&self, path: &FieldPath) -> Pos {
        self.index.locate_value(path)
    }

    /// Where a missing field at `path` should go: its parent mapping's key.
    pub fn locate_missing(&self, path: &FieldPath) -> Pos {
        self.index.locate_missing(path)
    }
}

/// Objects that have Kubernetes metadata.
pub trait HasMeta {
    /// The object's metadata.
    fn meta(&self) -> &ObjectMeta;
}

macro_rules! has_meta {
    ($($t:ty),*) => {$(
        impl HasMeta for $t {
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
        }
    )*};
}
has_meta!(
    Rollout,
    AnalysisTemplate,
    ClusterAnalysisTemplate,
    AnalysisRun,
    Service
);

impl<T: HasMeta> Located<T> {
    /// `metadata.name`, empty when unset.
    pub fn name(&self) -> &str {
        self.value.meta().name.as_deref().unwrap_or_default()
    }

    /// `metadata.namespace`, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.value.meta().namespace.as_deref()
    }
}

/// Everything a [`crate::load`] call read, by kind, in source order.
#[derive(Clone, Debug, Default)]
pub struct ManifestSet {
    /// Rollouts.
    pub rollouts: Vec<Located<Rollout>>,
    /// Services.
    pub services: Vec<Located<Service>>,
    /// Namespaced analysis templates.
    pub analysis_templates: Vec<Located<AnalysisTemplate>>,
    /// Cluster-scoped analysis templates.
    pub cluster_analysis_templates: Vec<Located<ClusterAnalysisTemplate>>,
    /// Analysis runs.
    pub analysis_runs: Vec<Located<AnalysisRun>>,
    /// Istio VirtualServices and DestinationRules and Gateway API HTTPRoutes: not managed by
    /// cutover, read so that a Rollout's `trafficRouting` can be checked against them.
    pub routing: Vec<RoutingObject>,
    /// Warnings found while loading (a set with errors is never returned).
    pub warnings: Diagnostics,
}

/// A routing object a Rollout's `trafficRouting` may name, as written.
#[derive(Clone, Debug, PartialEq)]
pub struct RoutingObject {
    /// `VirtualService`, `DestinationRule` or `HTTPRoute`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, if set.
    pub namespace: Option<String>,
    /// `spec` as written.
    pub spec: serde_json::Value,
}

/// The routing kinds read beside cutover's own, by apiVersion group.
pub(crate) fn routing_kind(api_version: &str, kind: &str) -> bool {
    let group = api_version.split('/').next().unwrap_or_default();
    matches!(
        (group, kind),
        ("networking.istio.io", "VirtualService" | "DestinationRule")
            | ("gateway.networking.k8s.io", "HTTPRoute")
    )
}

/// Finds an object by name. A namespace set on both sides must agree; an unset one matches any,
/// since a manifest without a namespace lands in whatever namespace it is applied to.
fn find<'a, T: HasMeta>(
    list: &'a [Located<T>],
    name: &str,
    namespace: Option<&str>,
) -> Option<&'a Located<T>> {
    list.iter().find(|o| {
        o.name() == name
            && match (namespace, o.namespace()) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    })
}

impl ManifestSet {
    /// The Rollout named `name`.
    pub fn rollout(&self, name: &str) -> Option<&Located<Rollout>> {
        find(&self.rollouts, name, None)
    }

    /// The Service named `name` (in `namespace`, when both sides set one).
    pub fn service(&self, name: &str, namespace: Option<&str>) -> Option<&Located<Service>> {
        find(&self.services, name, namespace)
    }

    /// The AnalysisTemplate named `name` (in `namespace`, when both sides set one).
    pub fn analysis_template(
        &self,
        name: &str,
        namespace: Option<&str>,
    ) -> Option<&Located<AnalysisTemplate>> {
        find(&self.analysis_templates, name, namespace)
    }

    /// The routing object of `kind` named `name` (in `namespace`, when both sides set one).
    pub fn routing(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Option<&RoutingObject> {
        self.routing.iter().find(|o| {
            o.kind == kind
                && o.name == name
                && match (namespace, o.namespace.as_deref()) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        })
    }

    /// The ClusterAnalysisTemplate named `name`.
    pub fn cluster_analysis_template(
        &self,
        name: &str,
    ) -> Option<&Located<ClusterAnalysisTemplate>> {
        find(&self.cluster_analysis_templates, name, None)
    }

    /// Number of objects loaded.
    pub fn len(&self) -> usize {
        self.rollouts.len()
            + self.services.len()
            + self.analysis_templates.len()
            + self.cluster_analysis_templates.len()
            + self.analysis_runs.len()
    }

    /// True when nothing was loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
