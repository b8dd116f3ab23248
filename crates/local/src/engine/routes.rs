//! Turns each rollout's Service selections and traffic rules into route tables for the data
//! plane, binds the Services' listeners, and sends a table only when it differs from the last.
//!
//! After a restart the tables are rebuilt from the store before any listener opens (or before
//! the running data plane gets a table from this daemon): the replicas the store recorded that
//! answer on their port count as ready until the supervisor has seen them ready once, was
//! shown another process, or [`RESTORE_GRACE`] passed. kamal-proxy marks restored targets
//! healthy the same way. Without it, a listener that opens again answers "no revision" and
//! "no healthy backend" until the first probes pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use cutover_core::api::{DurationString, Rollout};
use cutover_core::traffic::{self, ServiceRoutes};
use cutover_router::{HeaderMatch, HeaderRoute, MirrorRule, RouteTable, WeightedRevision};
use k8s_openapi::api::core::v1::Service;
use tokio::time::Instant;

use super::{Engine, EngineError};
use crate::store::{StoreError, Tx};
use crate::supervisor::{ReplicaPhase, ReplicaRecord};

/// The Service annotation that sets its response timeout (`30s`, `2m`; `0s`: none).
pub const RESPONSE_TIMEOUT_ANNOTATION: &str = "cutover.dev/response-timeout";

/// How long restored replicas count as ready without the supervisor having seen them so.
const RESTORE_GRACE: Duration = Duration::from_secs(10);

/// How long a restored replica's port may take to accept a connection.
const RESTORE_CONNECT: Duration = Duration::from_millis(200);

/// What the engine remembers about the tables it sent.
#[derive(Default)]
pub(crate) struct RouteMemory {
    /// Description of the table last sent per Service.
    installed: Mutex<HashMap<String, String>>,
    restored: Mutex<Restored>,
    /// Annotation values already reported as invalid.
    warned: Mutex<HashSet<String>>,
}

/// Replicas restored from the store: (rollout, hash) → (address, pid).
#[derive(Default)]
struct Restored {
    until: Option<Instant>,
    replicas: HashMap<(String, String), Vec<(SocketAddr, u32)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps: consistent whatever a panicking holder was doing.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Engine {
    /// Records the replicas the store lists that answer on their port, to route to them until
    /// their first probe verdict. Called once at start, after adoption and before binding.
    pub(crate) async fn restore_routes(&self) -> Result<(), StoreError> {
        let mut candidates = Vec::new();
        self.store.read(|tx| -> Result<(), StoreError> {
            for rollout in tx.rollouts()? {
                let name = rollout.metadata.name.unwrap_or_default();
                for row in tx.revisions(&name)? {
                    let records: Vec<ReplicaRecord> = tx
                        .replica_records(&name, &row.hash)?
                        .and_then(|json| serde_json::from_str(&json).ok())
                        .unwrap_or_default();
                    for record in records {
                        let addr = SocketAddr::from(([127, 0, 0, 1], record.port));
                        candidates.push((name.clone(), row.hash.clone(), addr, record.pid));
                    }
                }
            }
            Ok(())
        })?;
        let mut probes = tokio::task::JoinSet::new();
        for candidate in candidates {
            probes.spawn(async move {
                let connect = tokio::net::TcpStream::connect(candidate.2);
                let answers = tokio::time::timeout(RESTORE_CONNECT, connect)
                    .await
                    .is_ok_and(|r| r.is_ok());
                answers.then_some(candidate)
            });
        }
        let mut restored = Restored {
            until: Some(Instant::now() + RESTORE_GRACE),
            replicas: HashMap::new(),
        };
        while let Some(done) = probes.join_next().await {
            if let Ok(Some((rollout, hash, addr, pid))) = done {
                restored
                    .replicas
                    .entry((rollout, hash))
                    .or_default()
                    .push((addr, pid));
            }
        }
        *lock(&self.routes.restored) = restored;
        Ok(())
    }

    /// Addresses of a revision's replicas that take traffic: the ready ones, and restored ones
    /// still in their grace (same process, starting or running, never seen ready yet).
    fn routable_replicas(&self, rollout: &str, hash: &str) -> Vec<SocketAddr> {
        let replicas = self.supervisor.observe(rollout, hash);
        let mut restored = lock(&self.routes.restored);
        let in_grace = restored.until.is_some_and(|until| Instant::now() < until);
        let mut kept = restored
            .replicas
            .get_mut(&(rollout.to_owned(), hash.to_owned()));
        let mut addrs = Vec::new();
        for replica in &replicas {
            if replica.ready {
                addrs.push(replica.addr);
                // Seen ready: from now on the supervisor's verdict alone decides.
                if let Some(kept) = kept.as_deref_mut() {
                    kept.retain(|(addr, _)| *addr != replica.addr);
                }
                continue;
            }
            let trusted = in_grace
                && matches!(
                    replica.phase,
                    ReplicaPhase::Starting | ReplicaPhase::Running
                )
                && kept.as_deref().is_some_and(|kept| {
                    kept.iter().any(|(addr, pid)| {
                        *addr == replica.addr && replica.pid.is_none_or(|p| p == *pid)
                    })
                });
            if trusted {
                addrs.push(replica.addr);
            }
        }
        addrs.sort();
        addrs
    }

    /// The Service's response timeout from its annotation; an invalid value is reported once
    /// and the data plane's default applies.
    fn response_timeout(&self, service: &Service) -> Option<Duration> {
        let text = service
            .metadata
            .annotations
            .as_ref()?
            .get(RESPONSE_TIMEOUT_ANNOTATION)?;
        match DurationString::new(text).parse() {
            Ok(timeout) => Some(timeout),
            Err(error) => {
                let name = service.metadata.name.clone().unwrap_or_default();
                if lock(&self.routes.warned).insert(format!("{name}={text}")) {
                    tracing::warn!(service = %name, value = %text, %error, "annotation {RESPONSE_TIMEOUT_ANNOTATION} ignored (write a duration such as 30s); the default applies");
                }
                None
            }
        }
    }

    /// The table of every stored Service, from the store and the routable replicas. A Service
    /// no rollout routes gets an empty table (it answers 503).
    pub(crate) fn desired_tables(
        &self,
        tx: &Tx<'_>,
    ) -> Result<BTreeMap<String, RouteTable>, StoreError> {
        let mut tables = BTreeMap::new();
        for mut rollout in tx.rollouts()? {
            let name = rollout.metadata.name.clone().unwrap_or_default();
            let bg = rollout.spec.strategy.blue_green.clone();
            // The Services' selections are world state (kept in the store); the status only
            // says what the planner last asked for.
            let status = rollout.status.get_or_insert_with(Default::default);
            status.blue_green.active_selector = tx.selector(&bg.active_service)?;
            status.blue_green.preview_selector = match &bg.preview_service {
                Some(p) => tx.selector(p)?,
                None => None,
            };
            let preview_available = self.preview_available(tx, &rollout)?;
            let plan = traffic::routes(&rollout, preview_available);
            for routes in std::iter::once(&plan.active).chain(plan.preview.as_ref()) {
                tables.insert(routes.service.clone(), self.table(&name, routes));
            }
        }
        for service in tx.services()? {
            let name = service.metadata.name.clone().unwrap_or_default();
            let table = tables.entry(name).or_default();
            table.response_timeout = self.response_timeout(&service);
        }
        Ok(tables)
    }

    /// Recomputes every Service's table and sends the ones that changed.
    pub(crate) fn install_routes(&self, tx: &Tx<'_>) -> Result<(), StoreError> {
        for (service, table) in self.desired_tables(tx)? {
            self.install_service(&service, &table);
        }
        Ok(())
    }

    /// Binds a listener for every stored Service that has none (first port of its spec), with
    /// its table installed before it accepts.
    pub async fn bind_services(&self) -> Result<(), EngineError> {
        let services = self.store.read(|tx| tx.services())?;
        let mut tables = self.store.read(|tx| self.desired_tables(tx))?;
        for service in services {
            let name = service.metadata.name.clone().unwrap_or_default();
            if self.router.service(&name).is_some() {
                continue;
            }
            let port = service
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .and_then(|p| p.first())
                .map_or(0, |p| u16::try_from(p.port).unwrap_or(0));
            let addr = SocketAddr::new(self.config.bind_address, port);
            let table = tables.remove(&name).unwrap_or_default();
            self.router
                .bind(&name, addr, &table)
                .await
                .map_err(|e| EngineError::Bind {
                    service: name.clone(),
                    addr,
                    reason: e.to_string(),
                })?;
            lock(&self.routes.installed).insert(name, format!("{table:?}"));
        }
        Ok(())
    }

    fn preview_available(&self, tx: &Tx<'_>, rollout: &Rollout) -> Result<bool, StoreError> {
        let name = rollout.metadata.name.clone().unwrap_or_default();
        let Some(current) = rollout
            .status
            .as_ref()
            .and_then(|s| s.current_pod_hash.clone())
        else {
            return Ok(false);
        };
        let desired = tx
            .revisions(&name)?
            .into_iter()
            .find(|r| r.hash == current)
            .map_or(0, |r| r.desired);
        let ready = self.routable_replicas(&name, &current).len();
        Ok(desired > 0 && ready >= usize::try_from(desired).unwrap_or(usize::MAX))
    }

    fn table(&self, rollout: &str, routes: &ServiceRoutes) -> RouteTable {
        let mut hashes: Vec<&String> = routes.weights.iter().map(|(h, _)| h).collect();
        hashes.extend(routes.header_routes.iter().map(|(_, h)| h));
        hashes.extend(routes.mirror.iter().map(|(h, _)| h));
        RouteTable {
            backends: hashes
                .into_iter()
                .map(|hash| (hash.clone(), self.routable_replicas(rollout, hash)))
                .collect(),
            default_route: routes
                .weights
                .iter()
                .map(|(revision, weight)| WeightedRevision {
                    revision: revision.clone(),
                    weight: *weight,
                })
                .collect(),
            header_routes: routes
                .header_routes
                .iter()
                .filter_map(|(rule, revision)| header_route(rule, revision))
                .collect(),
            mirror: routes
                .mirror
                .as_ref()
                .map(|(revision, percent)| MirrorRule {
                    revision: revision.clone(),
                    percent: *percent,
                }),
            response_timeout: None,
        }
    }

    fn install_service(&self, service: &str, table: &RouteTable) {
        // A stable description of the table: send only when it changes, so drains start
        // only when something really left.
        let key = format!("{table:?}");
        {
            let mut installed = lock(&self.routes.installed);
            if installed.get(service) == Some(&key) {
                return;
            }
            installed.insert(service.to_owned(), key);
        }
        let Some(id) = self.router.install(service, table) else {
            return;
        };
        tracing::debug!(service, ?id, "route table sent");
        // Wake the loop when the previous table has drained, so the switch is confirmed
        // promptly instead of at the next poll.
        let (router, wake, service) = (self.router.clone(), self.wake.clone(), service.to_owned());
        tokio::spawn(async move {
            router.drained(&service, id).await;
            wake.notify_one();
        });
    }
}

fn header_route(rule: &cutover_core::api::HeaderRoute, revision: &str) -> Option<HeaderRoute> {
    let matcher = if let Some(v) = &rule.exact {
        HeaderMatch::Exact(v.clone())
    } else if let Some(v) = &rule.prefix {
        HeaderMatch::Prefix(v.clone())
    } else {
        // `apply` validated the expression; one that fails here is skipped, not fatal.
        let re = rule.regex.as_ref()?;
        HeaderMatch::Regex(regex::Regex::new(&format!("^(?:{re})$")).ok()?)
    };
    Some(HeaderRoute {
        header: rule.header.clone(),
        matcher,
        revision: revision.to_string(),
    })
}
