//! CustomResourceDefinitions generated from the API types (`cutover crds`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate, Rollout};

/// The CRDs of every cutover resource, in install order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        Rollout::crd(),
        AnalysisTemplate::crd(),
        ClusterAnalysisTemplate::crd(),
        AnalysisRun::crd(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_crd_has_subresources_and_columns() {
        let crd = Rollout::crd();
        assert_eq!(crd.spec.group, "cutover.dev");
        let version = &crd.spec.versions[0];
        let sub = version.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some());
        let scale = sub.scale.as_ref().expect("scale subresource");
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert!(
            version
                .additional_printer_columns
                .as_ref()
                .is_some_and(|c| c.iter().any(|c| c.name == "Phase"))
        );
    }
}
