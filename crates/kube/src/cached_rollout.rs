//! The Rollout as the controller caches it: metadata parsed, spec and status kept as compact
//! JSON and parsed again for each reconcile.
//!
//! The typed `Rollout` is about 9 KB per object once its pod template is parsed (the struct
//! alone is 3,952 bytes, each template container 2,336, plus a `BTreeMap` per label and
//! selector map), and the reflector keeps one per Rollout for the controller's whole life.
//! Kept as JSON the same spec and status take a few hundred bytes. A reconcile parses them
//! back (tens of microseconds, against milliseconds of work); the trigger mappers, which look
//! at every cached Rollout for each Service, ConfigMap or Deployment event, read the few names
//! they need from [`Refs`] without parsing anything.

use std::borrow::Cow;

use cutover_core::api::{Rollout, RolloutSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;

/// A cached Rollout. Listed and watched through `Api<CachedRollout>` at the Rollout's path;
/// writes go through the full [`Rollout`].
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "Rollout")]
pub struct CachedRollout {
    /// The Rollout's metadata, without managedFields and kubectl's last-applied copy.
    pub metadata: ObjectMeta,
    /// The names other objects are matched to this Rollout by.
    pub refs: Refs,
    /// `spec`, as JSON.
    spec: Box<str>,
    /// `status`, as JSON.
    status: Option<Box<str>>,
}

/// The objects a Rollout names that, when they change, plan it again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refs {
    /// `strategy.blueGreen.activeService`.
    pub active_service: String,
    /// `strategy.blueGreen.previewService`.
    pub preview_service: Option<String>,
    /// `migrations.source.configMapRef.name`.
    pub migrations_config_map: Option<String>,
    /// `workloadRef.name`.
    pub workload: Option<String>,
}

impl Refs {
    fn of(spec: &RolloutSpec) -> Self {
        let blue_green = &spec.strategy.blue_green;
        Self {
            active_service: blue_green.active_service.clone(),
            preview_service: blue_green.preview_service.clone(),
            migrations_config_map: spec
                .migrations
                .as_ref()
                .and_then(|m| m.source.config_map_ref.as_ref())
                .map(|c| c.name.clone()),
            workload: spec.workload_ref.as_ref().map(|w| w.name.clone()),
        }
    }

    /// Whether `service` is the Rollout's active or preview Service.
    pub fn uses_service(&self, service: &str) -> bool {
        self.active_service == service || self.preview_service.as_deref() == Some(service)
    }
}

impl TryFrom<Rollout> for CachedRollout {
    type Error = serde_json::Error;

    fn try_from(mut rollout: Rollout) -> Result<Self, Self::Error> {
        crate::cache::prune_rollout(&mut rollout);
        let status = match &rollout.status {
            Some(status) => Some(serde_json::to_string(status)?.into_boxed_str()),
            None => None,
        };
        Ok(Self {
            refs: Refs::of(&rollout.spec),
            spec: serde_json::to_string(&rollout.spec)?.into_boxed_str(),
            status,
            metadata: rollout.metadata,
        })
    }
}

impl CachedRollout {
    /// The whole Rollout, parsed back from the kept JSON.
    pub fn expand(&self) -> Result<Rollout, serde_json::Error> {
        let status = match &self.status {
            Some(json) => Some(serde_json::from_str(json)?),
            None => None,
        };
        Ok(Rollout {
            metadata: self.metadata.clone(),
            spec: serde_json::from_str(&self.spec)?,
            status,
        })
    }
}

impl kube::Resource for CachedRollout {
    type DynamicType = ();
    type Scope = <Rollout as kube::Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Rollout::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        Rollout::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        Rollout::version(dt)
    }

    fn api_version(dt: &()) -> Cow<'_, str> {
        Rollout::api_version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        Rollout::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    /// A Rollout using every part of the spec the controller reads, as the API server sends
    /// it, with a status and the metadata the cache drops.
    const ROLLOUT: &str = r#"{
      "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout",
      "metadata": {
        "name": "web", "namespace": "shop", "uid": "u-1", "resourceVersion": "42",
        "generation": 3, "finalizers": ["cutover.dev/cleanup"],
        "labels": {"team": "checkout"},
        "annotations": {
          "notifications.cutover.dev/subscribe.on-rollout-completed.webhook": "ops",
          "kubectl.kubernetes.io/last-applied-configuration": "{\"a\":\"very long copy\"}"
        },
        "managedFields": [{"manager": "kubectl", "operation": "Apply",
          "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
      },
      "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
          "metadata": {"labels": {"app": "web"}},
          "spec": {"containers": [{"name": "web", "image": "shop/web:2.1",
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}
        },
        "strategy": {"blueGreen": {
          "activeService": "web-active", "previewService": "web-preview",
          "autoPromotionEnabled": false, "scaleDownDelaySeconds": 30,
          "prePromotionAnalysis": {"templates": [{"templateName": "success-rate"}],
            "args": [{"name": "service", "value": "web-preview"}]}
        }},
        "migrations": {"source": {"configMapRef": {"name": "web-migrations"}},
          "databaseUrlFrom": {"secretKeyRef": {"name": "web-db", "key": "url"}}}
      },
      "status": {
        "phase": "Paused", "replicas": 6, "readyReplicas": 6, "observedGeneration": 3,
        "currentPodHash": "6d4f", "stableRS": "5c7b",
        "conditions": [{"type": "Available", "status": "True",
          "lastUpdateTime": "2026-12-07T10:00:00Z", "lastTransitionTime": "2026-12-07T10:00:00Z",
          "reason": "AvailableReason", "message": "Rollout has minimum availability"}]
      }
    }"#;

    #[test]
    fn expands_to_the_rollout_it_was_cached_from_less_what_the_cache_drops() {
        let mut typed: Rollout = serde_json::from_str(ROLLOUT).expect("a Rollout");
        let cached: CachedRollout = serde_json::from_str(ROLLOUT).expect("a cached Rollout");
        crate::cache::prune_rollout(&mut typed);
        assert_eq!(cached.expand().expect("expands"), typed);
        assert!(cached.metadata.managed_fields.is_none());
        let annotations = cached.metadata.annotations.as_ref().expect("annotations");
        assert!(!annotations.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        assert!(typed.status.is_some() && typed.spec.template.spec.is_some());
    }

    #[test]
    fn keeps_the_names_triggers_match_on() {
        let cached: CachedRollout = serde_json::from_str(ROLLOUT).expect("a cached Rollout");
        assert_eq!(
            cached.refs,
            Refs {
                active_service: "web-active".into(),
                preview_service: Some("web-preview".into()),
                migrations_config_map: Some("web-migrations".into()),
                workload: None,
            }
        );
        assert!(cached.refs.uses_service("web-preview") && !cached.refs.uses_service("web"));
    }

    #[test]
    fn stands_for_the_rollout_kind_and_rejects_what_the_rollout_rejects() {
        assert_eq!(CachedRollout::kind(&()), "Rollout");
        assert_eq!(CachedRollout::api_version(&()), "cutover.dev/v1alpha1");
        assert_eq!(CachedRollout::plural(&()), "rollouts");
        assert_eq!(
            CachedRollout::url_path(&(), Some("shop")),
            Rollout::url_path(&(), Some("shop"))
        );
        let broken = ROLLOUT.replace(r#""replicas": 3"#, r#""replicas": "three""#);
        assert!(serde_json::from_str::<CachedRollout>(&broken).is_err());
    }

    #[test]
    fn is_a_fraction_of_the_typed_rollout() {
        let cached: CachedRollout = serde_json::from_str(ROLLOUT).expect("a cached Rollout");
        let kept = cached.spec.len() + cached.status.as_ref().map_or(0, |s| s.len());
        // The typed Rollout's struct alone, before its template container and maps.
        assert!(
            kept + std::mem::size_of::<CachedRollout>() < std::mem::size_of::<Rollout>(),
            "{kept} bytes of JSON"
        );
    }
}
