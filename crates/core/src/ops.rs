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
