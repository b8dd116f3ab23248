//! From an AnalysisRun object to a runnable machine: arguments resolved (a `secretKeyRef`
//! read from a Secret in the run's namespace, a template `fieldRef` from the run's Rollout),
//! `{{args.NAME}}` substituted, dry run and retention decided — by the same
//! `cutover_core::analysis::resolve_run` the single-host backend uses — then a new machine, or
//! one resumed from the stored status.

use std::collections::BTreeMap;

use cutover_core::analysis::{ArgContext, RunMachine, resolve_run};
use cutover_core::api::{
    AnalysisRun, AnalysisTemplateSpec, Metric, POD_TEMPLATE_HASH_LABEL, Rollout, RolloutAnalysis,
    SecretKeyRef,
};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::ROLLOUT_LABEL;
use crate::error::Error;

/// A run ready to measure.
pub(super) struct Prepared {
    /// The machine, new or resumed.
    pub machine: RunMachine,
    /// The metrics with their arguments substituted.
    pub metrics: Vec<Metric>,
    /// Built from a stored status (the controller restarted).
    pub resumed: bool,
}

/// Secrets the run's arguments read, by name; None: the Secret does not exist.
type Secrets = BTreeMap<String, Option<BTreeMap<String, String>>>;

/// The run's machine, `Ok(Err(message))` when the run cannot start (its Error message), or an
/// API error worth retrying.
pub(super) async fn prepare(
    client: &Client,
    run: &AnalysisRun,
) -> Result<Result<Prepared, String>, Error> {
    let ns = run.namespace().unwrap_or_default();
    let secrets = read_secrets(client, &ns, run).await?;
    let rollout = owning_rollout(client, &ns, run).await?;
    // The reader must own what it reads (`SecretReader` is a `'static` closure type).
    let secret_ns = ns.clone();
    let reader = move |r: &SecretKeyRef| -> Result<String, String> {
        let ns = &secret_ns;
        match secrets.get(&r.name) {
            Some(Some(data)) => data
                .get(&r.key)
                .cloned()
                .ok_or_else(|| format!("secret {ns}/{} has no key {:?}", r.name, r.key)),
            _ => Err(format!("secret {ns}/{} not found", r.name)),
        }
    };
    let template = AnalysisTemplateSpec {
        metrics: run.spec.metrics.clone(),
        args: run.spec.args.clone(),
        dry_run: run.spec.dry_run.clone(),
        measurement_retention: run.spec.measurement_retention.clone(),
        templates: Vec::new(),
    };
    let latest = run
        .labels()
        .get(POD_TEMPLATE_HASH_LABEL)
        .cloned()
        .unwrap_or_default();
    let ctx = ArgContext {
        rollout: &rollout,
        stable_hash: None,
        latest_hash: &latest,
        secret: Some(&reader),
    };
    let (_, run_metrics) = match resolve_run(&[template], &RolloutAnalysis::default(), &ctx) {
        Ok(resolved) => resolved,
        Err(e) => return Ok(Err(format!("analysis cannot start: {e}"))),
    };
    let metrics = run_metrics.iter().map(|m| m.metric.clone()).collect();
    let stored = run.status.clone().filter(|s| s.started_at.is_some());
    let resumed = stored.is_some();
    let machine = match stored {
        Some(status) => RunMachine::resume(run_metrics, status, run.spec.terminate == Some(true)),
        None => RunMachine::new(run_metrics, Timestamp::now()),
    };
    Ok(match machine {
        Ok(machine) => Ok(Prepared {
            machine,
            metrics,
            resumed,
        }),
        Err(e) => Err(format!("analysis cannot start: {e}")),
    })
}

/// The Secrets named by the run's `secretKeyRef` arguments that have no value yet.
async fn read_secrets(client: &Client, ns: &str, run: &AnalysisRun) -> Result<Secrets, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut out = Secrets::new();
    let names = run
        .spec
        .args
        .iter()
        .filter(|a| a.value.is_none())
        .filter_map(|a| a.value_from.as_ref()?.secret_key_ref.as_ref())
        .map(|r| r.name.clone());
    for name in names {
        if out.contains_key(&name) {
            continue;
        }
        let secret = api
            .get_opt(&name)
            .await
            .map_err(|e| Error::kube(format!("get secret {ns}/{name}"), e))?;
        let data = secret.map(|s| {
            let mut data: BTreeMap<String, String> = s.string_data.unwrap_or_default();
            for (k, v) in s.data.unwrap_or_default() {
                data.insert(k, String::from_utf8_lossy(&v.0).into_owned());
            }
            data
        });
        out.insert(name, data);
    }
    Ok(out)
}

/// The Rollout a template `fieldRef` argument reads; an empty one when no argument needs it
/// (the creator resolved the Rollout's own arguments) or the Rollout is gone, in which case
/// the field is reported missing.
async fn owning_rollout(client: &Client, ns: &str, run: &AnalysisRun) -> Result<Rollout, Error> {
    let empty = || {
        serde_json::from_value::<Rollout>(serde_json::json!({
            "apiVersion": "cutover.dev/v1alpha1", "kind": "Rollout", "metadata": {},
            "spec": { "selector": {}, "template": {},
                      "strategy": { "blueGreen": { "activeService": "" } } },
        }))
        .map_err(|source| Error::Json {
            what: "an empty Rollout",
            source,
        })
    };
    let needs_rollout =
        run.spec.args.iter().any(|a| {
            a.value.is_none() && a.value_from.as_ref().is_some_and(|f| f.field_ref.is_some())
        });
    let name = run.labels().get(ROLLOUT_LABEL);
    let (true, Some(name)) = (needs_rollout, name) else {
        return empty();
    };
    let api: Api<Rollout> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(rollout)) => Ok(rollout),
        Ok(None) => empty(),
        Err(e) => Err(Error::kube(format!("get rollout {ns}/{name}"), e)),
    }
}
