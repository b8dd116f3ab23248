//! Executes a plan's actions as API calls. Every call is idempotent, so a pass that fails half
//! way is simply planned again: "already exists" and "not found" count as done.

use std::collections::BTreeMap;

use cutover_core::api::{AntiAffinity, POD_TEMPLATE_HASH_LABEL, PodTemplateMetadata, Rollout};
use cutover_core::plan::{Action, RevisionRole};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Pod, PodAffinityTerm, PodAntiAffinity, PodTemplateSpec, Service,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, OwnerReference,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::analysis;
use crate::controller::Context;
use crate::error::{Error, is_conflict, is_not_found};
use crate::expect::{Kind, Want};
use crate::observe::World;
use crate::{
    MANAGED_BY_ANNOTATION, REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION, ROLE_ANNOTATION,
    ROLE_METADATA_ANNOTATION, ROLLOUT_LABEL, SCALE_DOWN_DEADLINE_ANNOTATION, SELECTOR_ANNOTATION,
};

/// Executes the actions of one plan for one Rollout.
pub struct Executor<'a> {
    /// The controller's context.
    pub ctx: &'a Context,
    /// The Rollout planned for.
    pub rollout: &'a Rollout,
    /// Its namespace.
    pub ns: &'a str,
    /// What was observed before planning.
    pub world: &'a World,
}

impl Executor<'_> {
    /// Executes one action.
    pub async fn execute(&self, action: &Action) -> Result<(), Error> {
        match action {
            Action::CreateRevision {
                hash,
                revision,
                role,
                metadata,
            } => {
                let role = RoleMetadata {
                    role: *role,
                    metadata: metadata.as_ref(),
                };
                self.create_revision(hash, *revision, role).await
            }
            Action::SetRevisionNumber {
                hash,
                revision,
                previous,
            } => self.renumber(hash, *revision, *previous).await,
            Action::ScaleRevision { hash, replicas, .. } => {
                self.patch_rs(hash, json!({ "spec": { "replicas": replicas } }))
                    .await
            }
            Action::SetScaleDownDeadline { hash, deadline } => {
                let value = deadline.map(|d| d.to_string());
                self.patch_rs(
                    hash,
                    json!({ "metadata": { "annotations": { SCALE_DOWN_DEADLINE_ANNOTATION: value } } }),
                )
                .await
            }
            Action::SwitchService { service, to, .. } => self.switch_service(service, to).await,
            Action::DeleteRevision { hash } => self.delete_revision(hash).await,
            Action::SetRevisionRole {
                hash,
                role,
                metadata,
                previous,
            } => {
                self.set_role(hash, *role, metadata.as_ref(), previous.as_ref())
                    .await
            }
            Action::RestartPods {
                hash,
                before,
                max_unavailable,
            } => self.restart_pods(hash, *before, *max_unavailable).await,
            Action::StartAnalysis(req) => {
                analysis::start(self.ctx, self.rollout, self.ns, req).await?;
                self.expect(Kind::AnalysisRun, &req.name, Want::ChangedFrom(None));
                Ok(())
            }
            Action::TerminateAnalysis { name, reason } => {
                analysis::terminate(self.ctx, self.ns, name, &reason.to_string()).await
            }
            Action::DeleteAnalysisRun { name } => {
                analysis::delete(self.ctx, self.ns, name).await?;
                let before = self.world.runs.get(name).and_then(|r| r.resource_version());
                self.expect(Kind::AnalysisRun, name, Want::Gone(before));
                Ok(())
            }
            // A Job runs `cutover migrate`; its state and report are observed next pass.
            Action::RunMigration(req) => {
                crate::migrations::run(self.ctx, self.rollout, self.ns, req).await
            }
        }
    }

    /// Records that the next reconcile must see this write in the cache.
    fn expect(&self, kind: Kind, name: &str, want: Want) {
        let rollout = format!("{}/{}", self.ns, self.rollout.name_any());
        self.ctx
            .expectations
            .expect(&rollout, kind, self.ns, name, want);
    }

    /// After a patch: expect the cache to move past the version the plan saw, unless the
    /// patch changed nothing (the API then keeps the version, and waiting would be in vain).
    fn expect_patched(
        &self,
        kind: Kind,
        name: &str,
        before: Option<String>,
        after: Option<String>,
    ) {
        if before != after {
            self.expect(kind, name, Want::ChangedFrom(before));
        }
    }

    fn rs_name(&self, hash: &str) -> String {
        self.world.replica_sets.get(hash).map_or_else(
            || format!("{}-{hash}", self.rollout.name_any()),
            |rs| rs.name_any(),
        )
    }

    async fn create_revision(
        &self,
        hash: &str,
        revision: i64,
        role: RoleMetadata<'_>,
    ) -> Result<(), Error> {
        let rs = replica_set_for(self.rollout, hash, revision, role)?;
        let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), self.ns);
        match api.create(&PostParams::default(), &rs).await {
            Ok(_) => {
                self.expect(Kind::ReplicaSet, &rs.name_any(), Want::ChangedFrom(None));
                Ok(())
            }
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(Error::kube(
                format!("create replicaset {}/{}", self.ns, rs.name_any()),
                e,
            )),
        }
    }

    /// Gives a revision brought back the next number; the numbers it had go to its history.
    async fn renumber(&self, hash: &str, revision: i64, previous: i64) -> Result<(), Error> {
        let history = self.world.replica_sets.get(hash).and_then(|rs| {
            rs.annotations
                .get(REVISION_HISTORY_ANNOTATION)
                .map(str::to_string)
        });
        let history = match history {
            Some(h) if !h.is_empty() => format!("{h},{previous}"),
            _ => previous.to_string(),
        };
        self.patch_rs(
            hash,
            json!({ "metadata": { "annotations": {
                REVISION_ANNOTATION: revision.to_string(),
                REVISION_HISTORY_ANNOTATION: history,
            } } }),
        )
        .await
    }

    async fn patch_rs(&self, hash: &str, patch: Value) -> Result<(), Error> {
        let name = self.rs_name(hash);
        let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), self.ns);
        let patched = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::kube(format!("patch replicaset {}/{name}", self.ns), e))?;
        let before = self
            .world
            .replica_sets
            .get(hash)
            .and_then(|rs| rs.resource_version());
        self.expect_patched(Kind::ReplicaSet, &name, before, patched.resource_version());
        Ok(())
    }

    async fn switch_service(&self, service: &str, to: &str) -> Result<(), Error> {
        // The selector and the record of what cutover set change together: a selector that
        // later differs from the record was changed by someone else.
        let patch = json!({
            "metadata": { "annotations": {
                MANAGED_BY_ANNOTATION: self.rollout.name_any(),
                SELECTOR_ANNOTATION: to,
            } },
            "spec": { "selector": { POD_TEMPLATE_HASH_LABEL: to } },
        });
        let api: Api<Service> = Api::namespaced(self.ctx.client.clone(), self.ns);
        let patched = api
            .patch(service, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| Error::kube(format!("switch service {}/{service}", self.ns), e))?;
        let before = self
            .world
            .services
            .get(service)
            .and_then(|s| s.resource_version());
        self.expect_patched(Kind::Service, service, before, patched.resource_version());
        Ok(())
    }

    async fn delete_revision(&self, hash: &str) -> Result<(), Error> {
        let name = self.rs_name(hash);
        let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), self.ns);
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {
                let before = self
                    .world
                    .replica_sets
                    .get(hash)
                    .and_then(|rs| rs.resource_version());
                self.expect(Kind::ReplicaSet, &name, Want::Gone(before));
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(Error::kube(
                format!("delete replicaset {}/{name}", self.ns),
                e,
            )),
        }
    }

    /// Puts the role's ephemeral metadata on the revision's pods and pod template, and removes
    /// the other role's keys. The template is patched too so pods created later carry it; a
    /// template metadata change does not restart pods.
    async fn set_role(
        &self,
        hash: &str,
        role: Option<RevisionRole>,
        metadata: Option<&PodTemplateMetadata>,
        previous: Option<&PodTemplateMetadata>,
    ) -> Result<(), Error> {
        let mut labels = serde_json::Map::new();
        let mut annotations = serde_json::Map::new();
        // Keys put on before and not wanted now go; wanted keys are set.
        if let Some(m) = previous {
            for k in m.labels.keys() {
                labels.insert(k.clone(), Value::Null);
            }
            for k in m.annotations.keys() {
                annotations.insert(k.clone(), Value::Null);
            }
        }
        if let Some(m) = metadata {
            for (k, v) in &m.labels {
                labels.insert(k.clone(), json!(v));
            }
            for (k, v) in &m.annotations {
                annotations.insert(k.clone(), json!(v));
            }
        }
        let meta = json!({ "labels": labels, "annotations": annotations });
        if self.world.replica_sets.contains_key(hash) {
            let record = RoleMetadata { role, metadata };
            let mut rs_patch = json!({ "metadata": { "annotations": record.annotations()? } });
            if !labels.is_empty() || !annotations.is_empty() {
                rs_patch["spec"] = json!({ "template": { "metadata": meta } });
            }
            self.patch_rs(hash, rs_patch).await?;
        }
        if labels.is_empty() && annotations.is_empty() {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), self.ns);
        let patch = json!({ "metadata": meta });
        for pod in self.world.pods.get(hash).into_iter().flatten() {
            let name = pod.name_any();
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(Error::kube(format!("label pod {}/{name}", self.ns), e)),
            }
        }
        Ok(())
    }

    /// Evicts pods started before `before`, keeping at most `max_unavailable` of the revision's
    /// pods unavailable. Evictions respect PodDisruptionBudgets: a refused eviction (429) is
    /// tried again on a later pass.
    async fn restart_pods(
        &self,
        hash: &str,
        before: Timestamp,
        max_unavailable: i32,
    ) -> Result<(), Error> {
        let pods = self.world.pods.get(hash).map(Vec::as_slice).unwrap_or(&[]);
        let unavailable = pods.iter().filter(|p| !p.ready).count();
        let budget = usize::try_from(max_unavailable.max(1))
            .unwrap_or(1)
            .saturating_sub(unavailable);
        let old = pods
            .iter()
            .filter(|p| p.started_at.as_ref().is_some_and(|t| t.0 < before));
        for pod in old.take(budget) {
            let name = pod.name_any();
            let body = json!({
                "apiVersion": self.ctx.apis.eviction_version,
                "kind": "Eviction",
                "metadata": { "name": name, "namespace": self.ns },
            });
            let bytes = serde_json::to_vec(&body).map_err(|source| Error::Json {
                what: "eviction",
                source,
            })?;
            let uri = format!("/api/v1/namespaces/{}/pods/{name}/eviction", self.ns);
            let req = http::Request::post(uri)
                .header("content-type", "application/json")
                .body(bytes)
                .map_err(|e| Error::kube("build eviction", kube::Error::HttpError(e)))?;
            match self.ctx.client.request_text(req).await {
                Ok(_) => {
                    tracing::info!(pod = %format!("{}/{name}", self.ns), "evicted for restart")
                }
                Err(kube::Error::Api(s)) if s.code == 429 || s.code == 404 => {}
                Err(e) => return Err(Error::kube(format!("evict pod {}/{name}", self.ns), e)),
            }
        }
        Ok(())
    }
}

/// A role and its ephemeral metadata, as recorded on a ReplicaSet.
#[derive(Clone, Copy, Debug, Default)]
pub struct RoleMetadata<'a> {
    /// The role.
    pub role: Option<RevisionRole>,
    /// Its metadata on the pods.
    pub metadata: Option<&'a PodTemplateMetadata>,
}

impl RoleMetadata<'_> {
    /// The ReplicaSet annotations that record it (null removes one, in a merge patch).
    fn annotations(&self) -> Result<Value, Error> {
        let role = self.role.map(|r| match r {
            RevisionRole::Active => "active",
            RevisionRole::Preview => "preview",
        });
        let metadata = self
            .metadata
            .map(serde_json::to_string)
            .transpose()
            .map_err(|source| Error::Json {
                what: "role metadata",
                source,
            })?;
        Ok(json!({ ROLE_ANNOTATION: role, ROLE_METADATA_ANNOTATION: metadata }))
    }
}

/// The ReplicaSet of a revision: the Rollout's pod template plus the hash and rollout labels
/// and the starting role's metadata, owned by the Rollout, at zero pods (the plan scales it
/// next).
pub fn replica_set_for(
    rollout: &Rollout,
    hash: &str,
    revision: i64,
    role: RoleMetadata<'_>,
) -> Result<ReplicaSet, Error> {
    let name = rollout.name_any();
    let owner = rollout
        .controller_owner_ref(&())
        .ok_or(Error::MissingField("uid"))?;
    let extra: BTreeMap<String, String> = [
        (POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string()),
        (ROLLOUT_LABEL.to_string(), name.clone()),
    ]
    .into();
    let mut template: PodTemplateSpec = rollout.spec.template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    // Pods start with their role's labels: an active revision's pods never run without them.
    if let Some(m) = role.metadata {
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .extend(m.labels.clone());
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .extend(m.annotations.clone());
    }
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .extend(extra.clone());
    let mut selector: LabelSelector = rollout.spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
    if let (Some(anti), Some(stable)) = (
        rollout.spec.strategy.blue_green.anti_affinity.as_ref(),
        rollout.status.as_ref().and_then(|s| s.stable_rs.as_deref()),
    ) && stable != hash
        && let Some(spec) = template.spec.as_mut()
    {
        inject_anti_affinity(
            spec.affinity.get_or_insert_with(Affinity::default),
            anti,
            stable,
        );
    }
    let mut labels = rollout
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.extend(extra);
    let mut annotations: BTreeMap<String, String> = [
        (REVISION_ANNOTATION.to_string(), revision.to_string()),
        // The Rollout's template as written, so `undo` restores exactly it (the ReplicaSet's
        // own template carries injected labels and anti-affinity).
        (
            crate::TEMPLATE_ANNOTATION.to_string(),
            serde_json::to_string(&rollout.spec.template).map_err(|source| Error::Json {
                what: "pod template",
                source,
            })?,
        ),
    ]
    .into();
    if let Value::Object(recorded) = role.annotations()? {
        for (k, v) in recorded {
            if let Value::String(v) = v {
                annotations.insert(k, v);
            }
        }
    }
    Ok(ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{hash}")),
            namespace: rollout.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                block_owner_deletion: Some(true),
                ..owner
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: rollout.spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    })
}

/// Keeps the new revision's pods off the nodes running the stable revision, as Argo does.
fn inject_anti_affinity(affinity: &mut Affinity, anti: &AntiAffinity, stable: &str) {
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: POD_TEMPLATE_HASH_LABEL.into(),
                operator: "In".into(),
                values: Some(vec![stable.into()]),
            }]),
            ..LabelSelector::default()
        }),
        topology_key: "kubernetes.io/hostname".into(),
        ..PodAffinityTerm::default()
    };
    let paa = affinity
        .pod_anti_affinity
        .get_or_insert_with(PodAntiAffinity::default);
    if let Some(p) = &anti.preferred {
        paa.preferred_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(WeightedPodAffinityTerm {
                weight: p.weight,
                pod_affinity_term: term,
            });
    } else if anti.required.is_some() {
        paa.required_during_scheduling_ignored_during_execution
            .get_or_insert_with(Vec::new)
            .push(term);
    }
}
