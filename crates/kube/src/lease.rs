//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several controller replicas
//! exactly one reconciles. kube-runtime has no helper for it; this is the usual protocol:
//! take the Lease when it is free or expired, renew it at a third of its duration, and stop
//! when a renewal finds another holder. Writes use the Lease's resourceVersion, so two
//! candidates never both win a race.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::error::{Error, is_conflict};

/// Where the Lease lives and who we are.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This instance's identity (the pod name in a cluster).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
}

/// Holds the Lease until it is lost.
pub struct Leader {
    api: Api<Lease>,
    config: LeaseConfig,
}

impl Leader {
    /// Waits until this instance holds the Lease.
    pub async fn acquire(client: Client, config: LeaseConfig) -> Result<Self, Error> {
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        let leader = Self { api, config };
        loop {
            if leader.try_take().await? {
                tracing::info!(lease = %leader.config.name, identity = %leader.config.identity, "leadership acquired");
                return Ok(leader);
            }
            tokio::time::sleep(leader.config.duration / 3).await;
        }
    }

    /// Renews the Lease until renewal fails; returns the reason it was lost.
    pub async fn hold(self) -> Error {
        loop {
            tokio::time::sleep(self.config.duration / 3).await;
            match self.try_take().await {
                Ok(true) => {}
                Ok(false) => return Error::LeaseLost(self.config.name.clone()),
                Err(e) => {
                    // A failed renewal is retried until the Lease would have expired.
                    tracing::warn!(error = %e, "renewing the leader lease failed");
                }
            }
        }
    }

    /// Takes or renews the Lease if it is ours, free or expired.
    async fn try_take(&self) -> Result<bool, Error> {
        let now = Timestamp::now();
        let secs = i32::try_from(self.config.duration.as_secs()).unwrap_or(i32::MAX);
        let current = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| Error::kube(format!("get lease {}", self.config.name), e))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, secs, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(Error::kube("create lease", e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.config.identity.as_str());
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
            let valid = i64::from(spec.lease_duration_seconds.unwrap_or(secs));
            t.0.as_second().saturating_add(valid) < now.as_second()
        });
        if !ours && !expired && spec.holder_identity.is_some() {
            return Ok(false);
        }
        let acquired = if ours {
            spec.acquire_time.clone()
        } else {
            None
        };
        lease.spec = Some(self.spec(now, secs, acquired));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(Error::kube("renew lease", e)),
        }
    }

    fn spec(&self, now: Timestamp, secs: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(secs),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }
    }
}
