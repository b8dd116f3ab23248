//! Shared by the GitOps tests: where the fixtures live, and kstatus's rules for a custom
//! resource (kubernetes-sigs/cli-utils `pkg/kstatus/status`, which Flux's health checks use).
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

pub mod lua;

/// deploy/argocd/testdata/ of this repository.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/argocd/testdata")
}

/// kstatus's verdicts that a Rollout can reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KstatusStatus {
    /// Fully reconciled.
    Current,
    /// Work in flight.
    InProgress,
    /// Will not get there without help.
    Failed,
    /// Being deleted.
    Terminating,
}

#[derive(Debug)]
pub struct KstatusResult {
    pub status: KstatusStatus,
    pub message: String,
}

/// What kstatus computes for an object of a kind it has no special rules for, in its order:
/// deletion; an observedGeneration behind metadata.generation; a True `Reconciling`
/// condition; a True `Stalled` condition; otherwise Current.
pub fn kstatus(obj: &Value) -> KstatusResult {
    if obj["metadata"]["deletionTimestamp"].is_string() {
        return result(
            KstatusStatus::Terminating,
            "Resource scheduled for deletion",
        );
    }
    let generation = obj["metadata"]["generation"].as_i64();
    if let Some(observed) = obj["status"].get("observedGeneration") {
        // kstatus reads it as an integer; anything else is an error (shown as Unknown).
        let observed = observed
            .as_i64()
            .expect("status.observedGeneration is an integer, as kstatus requires");
        if Some(observed) != generation {
            return result(
                KstatusStatus::InProgress,
                &format!(
                    "Rollout generation is {}, but latest observed generation is {observed}",
                    generation.unwrap_or(0)
                ),
            );
        }
    }
    let conditions = obj["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in &conditions {
        let message = c["message"].as_str().unwrap_or_default();
        if c["type"] == "Reconciling" && c["status"] == "True" {
            return result(KstatusStatus::InProgress, message);
        }
        if c["type"] == "Stalled" && c["status"] == "True" {
            return result(KstatusStatus::Failed, message);
        }
    }
    result(KstatusStatus::Current, "Resource is current")
}

fn result(status: KstatusStatus, message: &str) -> KstatusResult {
    KstatusResult {
        status,
        message: message.to_string(),
    }
}
