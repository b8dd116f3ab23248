//! Builders for Rollouts, used by tests of every crate and by the simulated walkthrough.
//!
//! ```
//! use cutover_core::fixtures::RolloutBuilder;
//! let rollout = RolloutBuilder::new("my-app").replicas(3).manual_promotion().build();
//! assert_eq!(rollout.spec.replicas, Some(3));
//! ```

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::api::{
    AnalysisTemplateRef, BlueGreenStrategy, ContractMode, DatabaseUrlSource, DurationString,
    MigrationSource, Rollout, RolloutAnalysis, RolloutMigrations, RolloutSpec, RolloutStrategy,
};

/// Builds a Rollout with an `app=<name>` selector, one container `app` running `<name>:v1`,
/// active Service `<name>-active` and preview Service `<name>-preview`.
#[derive(Clone, Debug)]
pub struct RolloutBuilder {
    name: String,
    spec: RolloutSpec,
}

impl RolloutBuilder {
    /// A rollout with Argo's defaults and a preview Service.
    pub fn new(name: &str) -> Self {
        let labels = BTreeMap::from([("app".to_string(), name.to_string())]);
        let spec = RolloutSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            workload_ref: None,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".to_string(),
                        image: Some(format!("{name}:v1")),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            min_ready_seconds: None,
            revision_history_limit: None,
            paused: None,
            progress_deadline_seconds: None,
            progress_deadline_abort: None,
            restart_at: None,
            rollback_window: None,
            analysis: None,
            migrations: None,
            strategy: RolloutStrategy {
                blue_green: BlueGreenStrategy {
                    active_service: format!("{name}-active"),
                    preview_service: Some(format!("{name}-preview")),
                    ..BlueGreenStrategy::default()
                },
            },
        };
        Self {
            name: name.to_string(),
            spec,
        }
    }

    /// `spec.replicas`.
    pub fn replicas(mut self, n: i32) -> Self {
        self.spec.replicas = Some(n);
        self
    }

    /// `previewReplicaCount`.
    pub fn preview_replica_count(mut self, n: i32) -> Self {
        self.bg().preview_replica_count = Some(n);
        self
    }

    /// `autoPromotionEnabled: false`.
    pub fn manual_promotion(mut self) -> Self {
        self.bg().auto_promotion_enabled = Some(false);
        self
    }

    /// `autoPromotionSeconds`.
    pub fn auto_promotion_seconds(mut self, s: i32) -> Self {
        self.bg().auto_promotion_seconds = Some(s);
        self
    }

    /// `scaleDownDelaySeconds`.
    pub fn scale_down_delay(mut self, s: i32) -> Self {
        self.bg().scale_down_delay_seconds = Some(s);
        self
    }

    /// `scaleDownDelayRevisionLimit`.
    pub fn scale_down_delay_revision_limit(mut self, n: i32) -> Self {
        self.bg().scale_down_delay_revision_limit = Some(n);
        self
    }

    /// `abortScaleDownDelaySeconds`.
    pub fn abort_scale_down_delay(mut self, s: i32) -> Self {
        self.bg().abort_scale_down_delay_seconds = Some(s);
        self
    }

    /// `revisionHistoryLimit`.
    pub fn revision_history_limit(mut self, n: i32) -> Self {
        self.spec.revision_history_limit = Some(n);
        self
    }

    /// `progressDeadlineSeconds` and `progressDeadlineAbort`.
    pub fn progress_deadline(mut self, seconds: i32, abort: bool) -> Self {
        self.spec.progress_deadline_seconds = Some(seconds);
        self.spec.progress_deadline_abort = Some(abort);
        self
    }

    /// No preview Service.
    pub fn without_preview(mut self) -> Self {
        self.bg().preview_service = None;
        self
    }

    /// `prePromotionAnalysis` with template `success-rate`.
    pub fn pre_analysis(mut self) -> Self {
        self.bg().pre_promotion_analysis = Some(analysis("success-rate"));
        self
    }

    /// `postPromotionAnalysis` with template `success-rate`.
    pub fn post_analysis(mut self) -> Self {
        self.bg().post_promotion_analysis = Some(analysis("success-rate"));
        self
    }

    /// `spec.migrations` from directory `migrations`, URL from `$DATABASE_URL`, with a bake
    /// period in seconds and the contract mode.
    pub fn migrations(mut self, bake_seconds: u64, contract: ContractMode) -> Self {
        self.spec.migrations = Some(RolloutMigrations {
            source: MigrationSource {
                dir: Some("migrations".to_string()),
                config_map_ref: None,
            },
            database_url_from: DatabaseUrlSource {
                env: Some("DATABASE_URL".to_string()),
                secret_key_ref: None,
            },
            bake: Some(DurationString::new(format!("{bake_seconds}s"))),
            contract: Some(contract),
        });
        self
    }

    /// The image of container `app`.
    pub fn image(mut self, image: &str) -> Self {
        set_image(&mut self.spec, image);
        self
    }

    /// The Rollout, with `metadata.name` and `generation: 1`.
    pub fn build(self) -> Rollout {
        let mut rollout = Rollout::new(&self.name, self.spec);
        rollout.metadata.namespace = Some("default".to_string());
        rollout.metadata.generation = Some(1);
        rollout
    }

    fn bg(&mut self) -> &mut BlueGreenStrategy {
        &mut self.spec.strategy.blue_green
    }
}

/// Sets the image of every container (what `set image '*=IMAGE'` does).
pub fn set_image(spec: &mut RolloutSpec, image: &str) {
    if let Some(pod) = spec.template.spec.as_mut() {
        for c in &mut pod.containers {
            c.image = Some(image.to_string());
        }
    }
}

fn analysis(template: &str) -> RolloutAnalysis {
    RolloutAnalysis {
        templates: vec![AnalysisTemplateRef {
            template_name: template.to_string(),
            cluster_scope: None,
        }],
        ..RolloutAnalysis::default()
    }
}
