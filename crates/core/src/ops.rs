//! What users do to a rollout, the same words on both backends: the single-host daemon applies
//! them to its stored object, the Kubernetes CLI as patches on the Rollout.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::{Deserialize, Serialize};

/// A user operation on one rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Operation {
    /// Release pauses; `full` also skips the remaining gates.
    Promote {
        /// Skip analysis, pauses and the reduced preview.
        #[serde(default)]
        full: bool,
    },
    /// Abort the update: active returns to stable.
    Abort,
    /// Try an aborted update again.
    Retry,
    /// Go back to revision N (default: the previous one).
    Undo {
        /// Revision number.
        #[serde(default)]
        to_revision: Option<i64>,
    },
    /// Halt switching and promotion.
    Pause,
    /// Undo `pause`.
    Resume,
    /// Restart every pod, a few at a time.
    Restart,
    /// Set a container's image (`*` for all).
    SetImage {
        /// Container name or `*`.
        container: String,
        /// The image.
        image: String,
    },
}

/// The JSON merge patches an operation makes on Kubernetes: one on the status subresource and
/// one on the object. Argo CD's actions (deploy/argocd) are tested against them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MergePatches {
    /// `{"status": …}`, sent to the status subresource.
    pub status: Option<serde_json::Value>,
    /// `{"spec": …}`, sent to the object.
    pub spec: Option<serde_json::Value>,
}

/// The merge patches of `op` on `rollout` at `now`; `None` for the operations that are not a
/// merge patch (undo and set image replace the pod template).
pub fn merge_patches(
    rollout: &crate::api::Rollout,
    op: &Operation,
    now: jiff::Timestamp,
) -> Option<MergePatches> {
    use serde_json::json;
    let spec = |body: serde_json::Value| Some(json!({ "spec": body }));
    let status = |body: serde_json::Value| Some(json!({ "status": body }));
    let patches = match op {
        Operation::Promote { full } => {
            let mut body = json!({ "pauseConditions": null });
            if *full {
                body["promoteFull"] = json!(true);
            }
            MergePatches {
                status: status(body),
                // Only a manual pause is lifted; an unpaused spec is left alone.
                spec: (rollout.spec.paused == Some(true))
                    .then(|| json!({ "spec": { "paused": null } })),
            }
        }
        Operation::Abort => MergePatches {
            status: status(json!({ "abort": true })),
            spec: None,
        },
        Operation::Retry => MergePatches {
            status: status(json!({ "abort": null })),
            spec: None,
        },
        Operation::Pause => MergePatches {
            status: None,
            spec: spec(json!({ "paused": true })),
        },
        Operation::Resume => MergePatches {
            status: None,
            spec: spec(json!({ "paused": null })),
        },
        Operation::Restart => MergePatches {
            status: None,
            spec: spec(json!({ "restartAt": now.to_string() })),
        },
        Operation::Undo { .. } | Operation::SetImage { .. } => return None,
    };
    Some(patches)
}

/// Sets the image of the container named `container` (every container for `*`) in a rollout's
/// pod template. The error names the containers there are.
pub fn set_image(
    template: &mut PodTemplateSpec,
    container: &str,
    image: &str,
    rollout: &str,
) -> Result<(), String> {
    let pod = template
        .spec
        .as_mut()
        .ok_or_else(|| format!("rollout '{rollout}' has no pod spec"))?;
    let mut found = false;
    for c in pod
        .containers
        .iter_mut()
        .filter(|c| container == "*" || c.name == container)
    {
        c.image = Some(image.to_string());
        found = true;
    }
    if found {
        return Ok(());
    }
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    Err(format!(
        "rollout '{rollout}' has no container {container:?}; its containers: {}",
        names.join(", ")
    ))
}

/// Why `op` has nothing to act on in `rollout`'s present state, or `None` when it has.
///
/// Argo's CLI patches regardless and answers "promoted"; a promote that releases nothing is
/// how a script that promotes before the pause leaves the rollout paused for good, so both
/// backends refuse these with the reason (the CLI's exit code 4) instead of pretending.
pub fn nothing_to_act_on(rollout: &crate::api::Rollout, op: &Operation) -> Option<String> {
    let default = crate::api::RolloutStatus::default();
    let status = rollout.status.as_ref().unwrap_or(&default);
    let phase = status
        .phase
        .map_or_else(|| "not reconciled yet".to_string(), |p| format!("{p:?}"));
    let paused = rollout.spec.paused == Some(true) || !status.pause_conditions.is_empty();
    let adopted = rollout.spec.workload_ref.as_ref().map(|w| w.name.as_str());
    // An update is in flight until the desired revision is the stable one.
    let updating = status.current_pod_hash != status.stable_rs;
    let name = rollout.metadata.name.as_deref().unwrap_or_default();
    match op {
        Operation::Promote { full: false } if !paused => Some(if status.abort {
            format!(
                "nothing to promote: rollout is {phase} (aborted); `cutover retry rollout {name}` starts the update again"
            )
        } else if updating {
            format!(
                "nothing to promote: rollout is {phase} and not paused yet; `cutover promote {name} --full` skips the remaining pauses and analysis"
            )
        } else {
            format!("nothing to promote: rollout is {phase}")
        }),
        Operation::Promote { full: true } if !paused && !updating => {
            Some(format!("nothing to promote: rollout is {phase}"))
        }
        Operation::Abort if status.abort => Some(format!(
            "nothing to abort: rollout is {phase}, already aborted"
        )),
        Operation::Abort if !updating => Some(format!("nothing to abort: rollout is {phase}")),
        Operation::Retry if !status.abort => {
            Some(format!("nothing to retry: rollout is {phase}, not aborted"))
        }
        // The template is the Deployment's: writing one into the Rollout would set both.
        Operation::Undo { .. } => adopted.map(|deployment| format!(
            "undo does not apply to rollout {name}: its pod template comes from Deployment {deployment} (workloadRef); roll the Deployment's template back instead (`kubectl rollout undo deployment/{deployment}`), and the Rollout updates to it"
        )),
        Operation::SetImage { container, image } => adopted.map(|deployment| format!(
            "set image does not apply to rollout {name}: its pod template comes from Deployment {deployment} (workloadRef); set the image there instead (`kubectl set image deployment/{deployment} {container}={image}`), and the Rollout updates to it"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::api::{PauseCondition, PauseReason, RolloutPhase, RolloutStatus};
    use crate::fixtures::RolloutBuilder;

    fn rollout(
        phase: RolloutPhase,
        current: &str,
        abort: bool,
        paused: bool,
    ) -> crate::api::Rollout {
        let mut r = RolloutBuilder::new("web").build();
        r.status = Some(RolloutStatus {
            phase: Some(phase),
            current_pod_hash: Some(current.into()),
            stable_rs: Some("a".into()),
            abort,
            pause_conditions: if paused {
                vec![PauseCondition {
                    reason: PauseReason::BlueGreenPause,
                    start_time: Time(jiff::Timestamp::UNIX_EPOCH),
                }]
            } else {
                Vec::new()
            },
            ..RolloutStatus::default()
        });
        r
    }

    #[test]
    fn only_operations_that_change_something_act() {
        use RolloutPhase::*;
        let promote = Operation::Promote { full: false };
        let full = Operation::Promote { full: true };
        let cases = [
            (
                rollout(Healthy, "a", false, false),
                &Operation::Abort,
                Some("nothing to abort: rollout is Healthy"),
            ),
            (
                rollout(Healthy, "a", false, false),
                &Operation::Retry,
                Some("nothing to retry: rollout is Healthy, not aborted"),
            ),
            (
                rollout(Healthy, "a", false, false),
                &promote,
                Some("nothing to promote: rollout is Healthy"),
            ),
            (
                rollout(Healthy, "a", false, false),
                &full,
                Some("nothing to promote: rollout is Healthy"),
            ),
            (rollout(Paused, "b", false, true), &promote, None),
            (rollout(Paused, "b", false, true), &Operation::Abort, None),
            (rollout(Progressing, "b", false, false), &full, None),
            (
                rollout(Progressing, "b", false, false),
                &Operation::Abort,
                None,
            ),
            (rollout(Degraded, "b", true, false), &Operation::Retry, None),
            (
                rollout(Degraded, "b", true, false),
                &Operation::Abort,
                Some("nothing to abort: rollout is Degraded, already aborted"),
            ),
        ];
        for (r, op, expected) in cases {
            assert_eq!(nothing_to_act_on(&r, op).as_deref(), expected, "{op:?}");
        }
        let not_yet = nothing_to_act_on(&rollout(Progressing, "b", false, false), &promote);
        assert!(not_yet.is_some_and(|m| m.contains("not paused yet") && m.contains("--full")));
    }

    #[test]
    fn undo_and_set_image_of_a_rollout_adopting_a_deployment_point_at_the_deployment() {
        let mut r = rollout(RolloutPhase::Healthy, "a", false, false);
        r.spec.workload_ref = Some(crate::api::WorkloadRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web-deploy".into(),
            scale_down: None,
        });
        let why = nothing_to_act_on(&r, &Operation::Undo { to_revision: None });
        assert!(
            why.as_deref()
                .is_some_and(|w| w.contains("kubectl rollout undo deployment/web-deploy")),
            "{why:?}"
        );
        let set_image = Operation::SetImage {
            container: "*".into(),
            image: "web:2".into(),
        };
        let why = nothing_to_act_on(&r, &set_image);
        assert!(
            why.as_deref()
                .is_some_and(|w| w.contains("kubectl set image deployment/web-deploy *=web:2")),
            "{why:?}"
        );
    }
}
