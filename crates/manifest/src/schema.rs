//! Unknown-field detection against the JSON schemas the API types generate.
//!
//! Typed deserialization stops at the first unknown field (`deny_unknown_fields`); walking the
//! document against the schema finds all of them, and knows the field names to suggest. Where the
//! CRD keeps a part opaque (the pod template, a Job metric's spec) the walk switches to the full
//! Kubernetes schema, so a typo there is caught as well.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use cutover_core::api::{
    AnalysisRunSpec, AnalysisRunStatus, AnalysisTemplateSpec, ClusterAnalysisTemplateSpec,
    RolloutSpec, RolloutStatus,
};
use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::path::{FieldPath, Segment};

/// The kinds whose documents cutover reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `cutover.dev/v1alpha1` Rollout.
    Rollout,
    /// `cutover.dev/v1alpha1` AnalysisTemplate.
    AnalysisTemplate,
    /// `cutover.dev/v1alpha1` ClusterAnalysisTemplate.
    ClusterAnalysisTemplate,
    /// `cutover.dev/v1alpha1` AnalysisRun.
    AnalysisRun,
    /// `v1` Service.
    Service,
}

impl Kind {
    /// The `kind` value.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Rollout => "Rollout",
            Kind::AnalysisTemplate => "AnalysisTemplate",
            Kind::ClusterAnalysisTemplate => "ClusterAnalysisTemplate",
            Kind::AnalysisRun => "AnalysisRun",
            Kind::Service => "Service",
        }
    }
}

/// A root schema (with its `$defs`) plus the places where a fuller schema replaces an opaque one.
struct KindSchema {
    root: Value,
    defs: Map<String, Value>,
    /// (path pattern, schema): `*` in a pattern matches any sequence index.
    overrides: Vec<(Vec<&'static str>, Value)>,
}

/// Produces a schema node (a `$ref` into the generator's definitions).
type MakeSchema = fn(&mut SchemaGenerator) -> Value;

/// Builds the schema of a cutover kind: apiVersion, kind, metadata, spec and status.
fn custom_kind<Spec: JsonSchema, Status: JsonSchema>(
    overrides: &[(&'static str, MakeSchema)],
) -> KindSchema {
    let mut generator = SchemaGenerator::default();
    let metadata = generator.subschema_for::<ObjectMeta>().to_value();
    let spec = generator.subschema_for::<Spec>().to_value();
    let status = generator.subschema_for::<Status>().to_value();
    let overrides = overrides
        .iter()
        .map(|(pattern, make)| (pattern.split('.').collect(), make(&mut generator)))
        .collect();
    KindSchema {
        root: json!({
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": metadata,
                "spec": spec,
                "status": status,
            },
            "additionalProperties": false,
        }),
        defs: generator.take_definitions(true),
        overrides,
    }
}

fn pod_template(generator: &mut SchemaGenerator) -> Value {
    generator.subschema_for::<PodTemplateSpec>().to_value()
}

fn job_spec(generator: &mut SchemaGenerator) -> Value {
    generator.subschema_for::<JobSpec>().to_value()
}

const JOB_SPEC: &str = "spec.metrics.*.provider.job.spec";

static ROLLOUT: LazyLock<KindSchema> =
    LazyLock::new(|| custom_kind::<RolloutSpec, RolloutStatus>(&[("spec.template", pod_template)]));
static ANALYSIS_TEMPLATE: LazyLock<KindSchema> =
    LazyLock::new(|| custom_kind::<AnalysisTemplateSpec, ()>(&[(JOB_SPEC, job_spec)]));
static CLUSTER_ANALYSIS_TEMPLATE: LazyLock<KindSchema> =
    LazyLock::new(|| custom_kind::<ClusterAnalysisTemplateSpec, ()>(&[(JOB_SPEC, job_spec)]));
static ANALYSIS_RUN: LazyLock<KindSchema> =
    LazyLock::new(|| custom_kind::<AnalysisRunSpec, AnalysisRunStatus>(&[(JOB_SPEC, job_spec)]));
static SERVICE: LazyLock<KindSchema> = LazyLock::new(|| {
    let mut generator = SchemaGenerator::default();
    let root = generator.subschema_for::<Service>().to_value();
    KindSchema {
        root,
        defs: generator.take_definitions(true),
        overrides: Vec::new(),
    }
});

fn schema_of(kind: Kind) -> &'static KindSchema {
    match kind {
        Kind::Rollout => &ROLLOUT,
        Kind::AnalysisTemplate => &ANALYSIS_TEMPLATE,
        Kind::ClusterAnalysisTemplate => &CLUSTER_ANALYSIS_TEMPLATE,
        Kind::AnalysisRun => &ANALYSIS_RUN,
        Kind::Service => &SERVICE,
    }
}

/// A field the schema does not know, with the names it does know at that place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownField {
    /// Path of the unknown key.
    pub path: FieldPath,
    /// Field names allowed in the enclosing object.
    pub known: Vec<String>,
}

/// Lists every unknown field of a `kind` document and removes them from `doc`, so that typed
/// deserialization can go on to report the remaining problems.
pub fn strip_unknown_fields(kind: Kind, doc: &mut Value) -> Vec<UnknownField> {
    let schema = schema_of(kind);
    let mut found = Vec::new();
    walk(schema, &schema.root, doc, &FieldPath::root(), &mut found);
    found
}

/// What an object schema allows.
enum Shape<'a> {
    /// Exactly these properties.
    Closed(Vec<(&'a str, &'a Value)>),
    /// Any key, each value following this schema (a map).
    Map(&'a Value),
    /// Anything.
    Open,
}

impl KindSchema {
    /// Follows `$ref`s into `$defs`.
    fn resolve<'a>(&'a self, mut node: &'a Value) -> &'a Value {
        // A bounded loop: a reference cycle without structure in between cannot describe data.
        for _ in 0..32 {
            let Some(reference) = node.get("$ref").and_then(Value::as_str) else {
                return node;
            };
            let name = reference.rsplit('/').next().unwrap_or(reference);
            let name = name.replace("~1", "/").replace("~0", "~");
            match self.defs.get(&name) {
                Some(target) => node = target,
                None => return &Value::Bool(true),
            }
        }
        node
    }

    /// The branches of a node: itself plus its `allOf`/`anyOf`/`oneOf` members (how schemars
    /// writes `Option<T>` and flattened or untagged types), resolved.
    fn branches<'a>(&'a self, node: &'a Value, out: &mut Vec<&'a Value>) {
        let node = self.resolve(node);
        out.push(node);
        for combinator in ["allOf", "anyOf", "oneOf"] {
            if let Some(list) = node.get(combinator).and_then(Value::as_array) {
                for member in list {
                    self.branches(member, out);
                }
            }
        }
    }

    fn shape<'a>(&'a self, node: &'a Value) -> Shape<'a> {
        let mut branches = Vec::new();
        self.branches(node, &mut branches);
        let mut props: Vec<(&str, &Value)> = Vec::new();
        let mut map = None;
        let mut closed_by_flag = false;
        for b in &branches {
            if b.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                return Shape::Open;
            }
            if let Some(p) = b.get("properties").and_then(Value::as_object) {
                props.extend(p.iter().map(|(k, v)| (k.as_str(), v)));
            }
            match b.get("additionalProperties") {
                Some(Value::Bool(false)) => closed_by_flag = true,
                Some(Value::Bool(true)) => return Shape::Open,
                Some(schema @ Value::Object(_)) => map = Some(schema),
                _ => {}
            }
        }
        if let Some(schema) = map {
            return Shape::Map(schema);
        }
        // An object schema that lists properties is closed, as the API server's strict field
        // validation treats Kubernetes types; one that lists none is free-form.
        if props.is_empty() && !closed_by_flag {
            return Shape::Open;
        }
        Shape::Closed(props)
    }

    fn items<'a>(&'a self, node: &'a Value) -> Option<&'a Value> {
        let mut branches = Vec::new();
        self.branches(node, &mut branches);
        branches.into_iter().find_map(|b| b.get("items"))
    }

    fn override_for(&self, path: &FieldPath) -> Option<&Value> {
        self.overrides.iter().find_map(|(pattern, schema)| {
            let segs = path.segments();
            let matches = pattern.len() == segs.len()
                && pattern.iter().zip(segs).all(|(p, s)| match s {
                    Segment::Key(k) => p == k,
                    Segment::Index(_) => *p == "*",
                });
            matches.then_some(schema)
        })
    }
}

fn walk(
    schema: &KindSchema,
    node: &Value,
    value: &mut Value,
    path: &FieldPath,
    found: &mut Vec<UnknownField>,
) {
    let node = schema.override_for(path).unwrap_or(node);
    match value {
        Value::Object(object) => match schema.shape(node) {
            Shape::Open => {}
            Shape::Map(item) => {
                for (key, child) in object.iter_mut() {
                    walk(schema, item, child, &path.key(key.clone()), found);
                }
            }
            Shape::Closed(props) => {
                let mut unknown = Vec::new();
                for (key, child) in object.iter_mut() {
                    match props.iter().find(|(name, _)| name == key) {
                        Some((_, sub)) => walk(schema, sub, child, &path.key(key.clone()), found),
                        None => unknown.push(key.clone()),
                    }
                }
                let known: BTreeSet<String> = props.iter().map(|(k, _)| k.to_string()).collect();
                for key in unknown {
                    object.remove(&key);
                    found.push(UnknownField {
                        path: path.key(key),
                        known: known.iter().cloned().collect(),
                    });
                }
            }
        },
        Value::Array(list) => {
            if let Some(item) = schema.items(node) {
                for (i, child) in list.iter_mut().enumerate() {
                    walk(schema, item, child, &path.index(i), found);
                }
            }
        }
        _ => {}
    }
}

/// The known name closest to `unknown`, if one is close enough to be a likely typo.
pub fn suggest<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = unknown.to_ascii_lowercase();
    known
        .into_iter()
        .map(|k| {
            let score = strsim::normalized_damerau_levenshtein(&lower, &k.to_ascii_lowercase())
                .max(strsim::jaro_winkler(&lower, &k.to_ascii_lowercase()) - 0.1);
            (k, score)
        })
        .filter(|(_, score)| *score >= 0.75)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_all_unknown_fields_including_in_the_pod_template() {
        let mut doc = json!({
            "apiVersion": "cutover.dev/v1alpha1",
            "kind": "Rollout",
            "metadata": {"name": "a", "labelz": {}},
            "spec": {
                "selector": {"matchLabels": {"app": "a"}},
                "template": {"spec": {"containres": [], "containers": [{"name": "a", "imagePullPolicyy": "x"}]}},
                "strategy": {"blueGreen": {"activeServic": "x"}}
            }
        });
        let found = strip_unknown_fields(Kind::Rollout, &mut doc);
        let paths: Vec<String> = found.iter().map(|f| f.path.to_string()).collect();
        assert_eq!(
            paths,
            [
                "metadata.labelz",
                "spec.strategy.blueGreen.activeServic",
                "spec.template.spec.containers[0].imagePullPolicyy",
                "spec.template.spec.containres",
            ]
        );
        assert!(doc["spec"]["template"]["spec"].get("containres").is_none());
    }

    #[test]
    fn suggests_close_names_only() {
        let known = ["activeService", "previewService", "autoPromotionEnabled"];
        assert_eq!(suggest("activeServic", known), Some("activeService"));
        assert_eq!(suggest("previewservice", known), Some("previewService"));
        assert_eq!(suggest("zzz", known), None);
    }
}
