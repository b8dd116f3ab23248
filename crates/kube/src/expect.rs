//! Write expectations: what the controller's own writes must look like in its caches before it
//! plans the same Rollout again (the "expectations" of Kubernetes' own controllers).
//!
//! A watch cache lags the API by the time an event takes to arrive. Planning on a cache that
//! does not yet show the ReplicaSet just created, or the selector just patched, would repeat
//! the action (harmless: every action is idempotent) but would also write a status that steps
//! back for a moment — a Rollout flickering to "no revision" in `get rollout -w`, or a scale-down
//! deadline set twice. So after a write the executor records the object's resourceVersion
//! *before* the write; the next reconcile of that Rollout waits until the cache shows another
//! version (or, for a create, the object at all; for a delete, its absence). Resource versions
//! are only compared for equality, as the API asks. An expectation that is not met within
//! [`EXPECTATION_TIMEOUT`] is dropped (a watch that fell behind relists; it must not wedge
//! the Rollout).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::time::Instant;

use crate::cache::Caches;

/// How long a reconcile waits for the cache to show a write before planning anyway.
pub const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The cache an expectation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Rollouts (our own status writes).
    Rollout,
    /// ReplicaSets.
    ReplicaSet,
    /// Services.
    Service,
    /// AnalysisRuns.
    AnalysisRun,
}

/// What the cache must show of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    /// The object exists with a resourceVersion other than this one (`None`: exists at all).
    ChangedFrom(Option<String>),
    /// The object is gone, or marked for deletion, or changed from this resourceVersion.
    Gone(Option<String>),
}

#[derive(Clone, Debug)]
struct Expectation {
    kind: Kind,
    namespace: String,
    name: String,
    want: Want,
    since: Instant,
}

/// Outstanding expectations per Rollout (`namespace/name`).
#[derive(Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Vec<Expectation>>>,
}

impl Expectations {
    /// Records that `rollout`'s next reconcile must see `want` for object `ns/name` of `kind`.
    pub fn expect(&self, rollout: &str, kind: Kind, ns: &str, name: &str, want: Want) {
        if let Ok(mut pending) = self.pending.lock() {
            pending
                .entry(rollout.to_string())
                .or_default()
                .push(Expectation {
                    kind,
                    namespace: ns.to_string(),
                    name: name.to_string(),
                    want,
                    since: Instant::now(),
                });
        }
    }

    /// Whether the caches show every write recorded for `rollout`; met (and timed-out)
    /// expectations are dropped. Returns the first unmet one's description.
    pub fn unmet(&self, rollout: &str, caches: &Caches) -> Option<String> {
        let Ok(mut pending) = self.pending.lock() else {
            return None;
        };
        let list = pending.get_mut(rollout)?;
        list.retain(|e| {
            if e.since.elapsed() > EXPECTATION_TIMEOUT {
                tracing::warn!(rollout, object = %e.name, "cache never showed our write; planning anyway");
                return false;
            }
            !met(e, caches)
        });
        let first = list
            .first()
            .map(|e| format!("{:?} {}/{}", e.kind, e.namespace, e.name));
        if list.is_empty() {
            pending.remove(rollout);
        }
        first
    }

    /// Forgets a deleted Rollout.
    pub fn forget(&self, rollout: &str) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(rollout);
        }
    }
}

fn met(e: &Expectation, caches: &Caches) -> bool {
    let seen = match e.kind {
        Kind::Rollout => version(&caches.rollouts, &e.namespace, &e.name),
        Kind::ReplicaSet => version(&caches.replica_sets, &e.namespace, &e.name),
        Kind::Service => version(&caches.services, &e.namespace, &e.name),
        Kind::AnalysisRun => version(&caches.runs, &e.namespace, &e.name),
    };
    match (&e.want, seen) {
        (Want::ChangedFrom(_), None) => false,
        (Want::ChangedFrom(before), Some((rv, _))) => rv != *before,
        (Want::Gone(_), None) => true,
        (Want::Gone(before), Some((rv, deleting))) => deleting || rv != *before,
    }
}

/// The cached object's resourceVersion and whether it is being deleted.
fn version<K>(store: &Store<K>, ns: &str, name: &str) -> Option<(Option<String>, bool)>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    let obj = store.get(&ObjectRef::new(name).within(ns))?;
    let meta = obj.meta();
    Some((
        meta.resource_version.clone(),
        meta.deletion_timestamp.is_some(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cached::CachedReplicaSet;
    use kube::runtime::watcher::Event;

    fn rs(rv: &str) -> CachedReplicaSet {
        let mut rs = CachedReplicaSet::default();
        rs.metadata.name = Some("app-abc".into());
        rs.metadata.namespace = Some("ns".into());
        rs.metadata.resource_version = Some(rv.into());
        rs
    }

    #[tokio::test]
    async fn a_write_is_awaited_until_the_cache_shows_it() {
        let (caches, mut writers) = Caches::new(&crate::DataPlaneApis::current().endpoint_slices);
        let exp = Expectations::default();
        exp.expect(
            "ns/app",
            Kind::ReplicaSet,
            "ns",
            "app-abc",
            Want::ChangedFrom(None),
        );
        assert!(exp.unmet("ns/app", &caches).is_some(), "not created yet");
        writers
            .replica_sets_mut()
            .apply_watcher_event(&Event::Apply(rs("1")));
        assert_eq!(exp.unmet("ns/app", &caches), None);

        exp.expect(
            "ns/app",
            Kind::ReplicaSet,
            "ns",
            "app-abc",
            Want::ChangedFrom(Some("1".into())),
        );
        assert!(exp.unmet("ns/app", &caches).is_some(), "patch not seen yet");
        writers
            .replica_sets_mut()
            .apply_watcher_event(&Event::Apply(rs("2")));
        assert_eq!(exp.unmet("ns/app", &caches), None);

        exp.expect(
            "ns/app",
            Kind::ReplicaSet,
            "ns",
            "app-abc",
            Want::Gone(Some("2".into())),
        );
        assert!(
            exp.unmet("ns/app", &caches).is_some(),
            "delete not seen yet"
        );
        writers
            .replica_sets_mut()
            .apply_watcher_event(&Event::Delete(rs("2")));
        assert_eq!(exp.unmet("ns/app", &caches), None);
    }
}
