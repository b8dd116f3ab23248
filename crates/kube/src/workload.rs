//! `spec.workloadRef` on Kubernetes: a Rollout that takes its pod template from an existing
//! Deployment. Before planning, the template is read from the Deployment (so `plan()` sees a
//! normal Rollout and a template change there starts an update); after the plan's status is
//! written, the Deployment is scaled as [`cutover_core::workload::deployment_replicas`] says.
//!
//! The Deployment's own replicas are remembered in an annotation on the Deployment the first
//! time cutover scales it, with the Rollout's name beside them, so that deleting the Rollout or
//! removing the reference gives them back even after a controller restart.

use std::borrow::Cow;

use cutover_core::api::{
    Rollout, RolloutStatus, WorkloadScaleDown, selector_is_unset, template_is_unset,
};
use cutover_core::plan::Observed;
use cutover_core::workload::{WorkloadProgress, deployment_replicas};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::cache::Caches;
use crate::error::{Error, is_conflict, is_not_found};

/// Deployment annotation: its replicas before a Rollout took it over.
pub const ORIGINAL_REPLICAS_ANNOTATION: &str = "cutover.dev/workload-original-replicas";
/// Deployment annotation: the Rollout that scaled it down.
pub const ADOPTED_BY_ANNOTATION: &str = "cutover.dev/workload-rollout";

/// `rollout` as the planner sees it, with the referenced Deployment as read now (None when the
/// Rollout names none, or it does not exist: the plan then reports the spec invalid). Borrowed
/// unless a Deployment's template was filled in: most Rollouts name none, and a reconcile
/// should not copy them.
pub async fn resolve<'a>(
    client: &Client,
    rollout: &'a Rollout,
    ns: &str,
) -> Result<(Cow<'a, Rollout>, Option<Deployment>), Error> {
    let Some(reference) = &rollout.spec.workload_ref else {
        return Ok((Cow::Borrowed(rollout), None));
    };
    // The API server refuses a Rollout with both; should one slip through, its own template
    // wins rather than being overwritten behind the user's back.
    if !template_is_unset(&rollout.spec.template) {
        return Ok((Cow::Borrowed(rollout), None));
    }
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deployment = api.get_opt(&reference.name).await.map_err(|e| {
        Error::kube(
            format!("get deployment {ns}/{} (workloadRef)", reference.name),
            e,
        )
    })?;
    let Some(spec) = deployment.as_ref().and_then(|d| d.spec.as_ref()) else {
        return Ok((Cow::Borrowed(rollout), deployment));
    };
    let mut resolved = rollout.clone();
    resolved.spec.template = spec.template.clone();
    // As in Argo Rollouts, a Rollout that names no selector uses the Deployment's.
    if selector_is_unset(&resolved.spec.selector) {
        resolved.spec.selector = spec.selector.clone();
    }
    Ok((Cow::Owned(resolved), deployment))
}

/// Scales the adopted `deployment` for the Rollout's planned `status`, the pods of its
/// current revision being as `observed` saw them.
pub async fn scale(
    client: &Client,
    rollout: &Rollout,
    ns: &str,
    deployment: &Deployment,
    status: &RolloutStatus,
    observed: &Observed,
) -> Result<(), Error> {
    let Some(reference) = &rollout.spec.workload_ref else {
        return Ok(());
    };
    let name = rollout.name_any();
    let held = Hold::of(deployment);
    if held.owner.as_deref().is_some_and(|o| o != name) {
        tracing::warn!(deployment = %format!("{ns}/{}", reference.name), owner = ?held.owner,
            "deployment already adopted by another rollout: its replicas are left alone");
        return Ok(());
    }
    let mode = reference.scale_down();
    if mode == WorkloadScaleDown::Never {
        // Switched to `never` after cutover scaled it: give its replicas back.
        return match held.original {
            Some(_) => release(client, ns, deployment).await,
            None => Ok(()),
        };
    }
    let current = current_replicas(deployment);
    let original = held.original.unwrap_or(current);
    let current_available = observed
        .revisions
        .iter()
        .find(|r| status.current_pod_hash.as_deref() == Some(r.hash.as_str()))
        .map_or(0, |r| r.available);
    let target = deployment_replicas(WorkloadProgress::from_status(
        mode,
        original,
        status,
        current_available,
    ));
    if held.original.is_some() && target == current {
        return Ok(());
    }
    let patch = json!({
        "metadata": {
            "resourceVersion": deployment.resource_version(),
            "annotations": {
                ORIGINAL_REPLICAS_ANNOTATION: original.to_string(),
                ADOPTED_BY_ANNOTATION: name,
            },
        },
        "spec": { "replicas": target },
    });
    tracing::info!(deployment = %format!("{ns}/{}", reference.name), from = current, to = target,
        "scaling the adopted deployment ({mode:?})");
    write(client, ns, &reference.name, &patch).await
}

/// Gives back the replicas of Deployments this Rollout scaled but no longer references.
pub async fn release_unreferenced(
    client: &Client,
    caches: &Caches,
    rollout: &Rollout,
    ns: &str,
) -> Result<(), Error> {
    let referenced = rollout.spec.workload_ref.as_ref().map(|r| r.name.as_str());
    for deployment in adopted_by(caches, rollout, ns) {
        if Some(deployment.name_any().as_str()) != referenced {
            release(client, ns, &deployment).await?;
        }
    }
    Ok(())
}

/// The Rollout is being deleted: every Deployment it scaled gets its replicas back.
pub async fn release_all(
    client: &Client,
    caches: &Caches,
    rollout: &Rollout,
    ns: &str,
) -> Result<(), Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mut names: Vec<String> = adopted_by(caches, rollout, ns)
        .iter()
        .map(|d| d.name_any())
        .collect();
    // The cache may not show the annotation written just before the deletion: read the
    // referenced Deployment itself.
    names.extend(rollout.spec.workload_ref.as_ref().map(|r| r.name.clone()));
    names.sort();
    names.dedup();
    for name in names {
        let deployment = match api.get_opt(&name).await {
            Ok(Some(d)) => d,
            Ok(None) => continue,
            Err(e) => return Err(Error::kube(format!("get deployment {ns}/{name}"), e)),
        };
        if Hold::of(&deployment).owner.as_deref() == Some(rollout.name_any().as_str()) {
            release(client, ns, &deployment).await?;
        }
    }
    Ok(())
}

/// Drops the pod template, status and every annotation but ours: the cache only tells which
/// Deployments a Rollout holds (the template is read fresh when planning).
pub fn prune_deployment(deployment: &mut Deployment) {
    deployment.metadata.managed_fields = None;
    deployment.metadata.labels = None;
    if let Some(a) = deployment.metadata.annotations.as_mut() {
        a.retain(|k, _| k == ORIGINAL_REPLICAS_ANNOTATION || k == ADOPTED_BY_ANNOTATION);
    }
    deployment.spec = deployment.spec.take().map(|s| DeploymentSpec {
        replicas: s.replicas,
        ..DeploymentSpec::default()
    });
    deployment.status = None;
}

/// What of a (pruned) Deployment can change a Rollout's plan: its generation (the template and
/// replicas) and cutover's annotations. Deployment events that change neither (status updates
/// while its pods come and go, which are most of them) wake no Rollout.
pub fn deployment_change(deployment: &Deployment) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    deployment.metadata.generation.hash(&mut hasher);
    deployment.metadata.annotations.hash(&mut hasher);
    Some(hasher.finish())
}

/// What cutover recorded on a Deployment it scaled.
struct Hold {
    original: Option<i32>,
    owner: Option<String>,
}

impl Hold {
    fn of(deployment: &Deployment) -> Self {
        let annotations = deployment.annotations();
        Self {
            original: annotations
                .get(ORIGINAL_REPLICAS_ANNOTATION)
                .and_then(|v| v.trim().parse().ok()),
            owner: annotations.get(ADOPTED_BY_ANNOTATION).cloned(),
        }
    }
}

/// `spec.replicas`, defaulted as the API server does.
fn current_replicas(deployment: &Deployment) -> i32 {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
}

fn adopted_by(caches: &Caches, rollout: &Rollout, ns: &str) -> Vec<std::sync::Arc<Deployment>> {
    let name = rollout.name_any();
    caches.deployments.state_filter(|d| {
        d.namespace().as_deref() == Some(ns)
            && d.annotations().get(ADOPTED_BY_ANNOTATION) == Some(&name)
    })
}

/// Sets the Deployment back to the replicas it had and forgets the hold.
async fn release(client: &Client, ns: &str, deployment: &Deployment) -> Result<(), Error> {
    let name = deployment.name_any();
    let Some(original) = Hold::of(deployment).original else {
        return Ok(());
    };
    let patch = json!({
        "metadata": {
            "annotations": { ORIGINAL_REPLICAS_ANNOTATION: null, ADOPTED_BY_ANNOTATION: null },
        },
        "spec": { "replicas": original },
    });
    tracing::info!(deployment = %format!("{ns}/{name}"), replicas = original,
        "giving the deployment its replicas back");
    write(client, ns, &name, &patch).await
}

async fn write(client: &Client, ns: &str, name: &str, patch: &Value) -> Result<(), Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        // Gone, or changed since it was read: the watch event that brings the change plans
        // the Rollout again, with a fresh read.
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        Err(e) => Err(Error::kube(format!("scale deployment {ns}/{name}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::apps::v1::DeploymentStatus;

    use super::*;

    fn deployment(generation: i64, annotations: &[(&str, &str)]) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.generation = Some(generation);
        d.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        );
        d
    }

    #[test]
    fn only_generation_and_cutover_annotations_wake_rollouts() {
        let base = deployment(3, &[]);
        let mut status_only = deployment(3, &[]);
        status_only.status = Some(DeploymentStatus {
            ready_replicas: Some(2),
            ..DeploymentStatus::default()
        });
        prune_deployment(&mut status_only);
        assert_eq!(deployment_change(&base), deployment_change(&status_only));
        let mut foreign = deployment(3, &[("team", "payments")]);
        prune_deployment(&mut foreign);
        assert_eq!(deployment_change(&base), deployment_change(&foreign));

        let new_template = deployment(4, &[]);
        assert_ne!(deployment_change(&base), deployment_change(&new_template));
        let held = deployment(3, &[(ADOPTED_BY_ANNOTATION, "web")]);
        assert_ne!(deployment_change(&base), deployment_change(&held));
    }
}
