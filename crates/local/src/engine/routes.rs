//! Turns each rollout's Service selections and traffic rules into router tables, and installs a
//! table only when it differs from the live one.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use cutover_core::api::Rollout;
use cutover_core::traffic::{self, ServiceRoutes};
use cutover_router::{HeaderMatch, HeaderRoute, MirrorRule, RouteTable, WeightedRevision};

use super::Engine;
use crate::store::{StoreError, Tx};

impl Engine {
    /// Recomputes every Service's table from the store and the supervisor's ready replicas.
    pub(crate) fn install_routes(&self, tx: &Tx<'_>) -> Result<(), StoreError> {
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
            self.install_service(&name, &plan.active);
            if let Some(preview) = &plan.preview {
                self.install_service(&name, preview);
            }
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
        let ready = self
            .supervisor
            .observe(&name, &current)
            .iter()
            .filter(|r| r.ready)
            .count();
        Ok(desired > 0 && ready >= usize::try_from(desired).unwrap_or(usize::MAX))
    }

    fn install_service(&self, rollout: &str, routes: &ServiceRoutes) {
        let Some(handle) = self.router.service(&routes.service) else {
            return;
        };
        let mut hashes: Vec<&String> = routes.weights.iter().map(|(h, _)| h).collect();
        hashes.extend(routes.header_routes.iter().map(|(_, h)| h));
        hashes.extend(routes.mirror.iter().map(|(h, _)| h));
        let backends: BTreeMap<String, Vec<SocketAddr>> = hashes
            .into_iter()
            .map(|hash| {
                let mut addrs: Vec<SocketAddr> = self
                    .supervisor
                    .observe(rollout, hash)
                    .iter()
                    .filter(|r| r.ready)
                    .map(|r| r.addr)
                    .collect();
                addrs.sort();
                (hash.clone(), addrs)
            })
            .collect();
        // A stable description of the table: install only when it changes, so drains start
        // only when something really left.
        let key = format!(
            "{backends:?}|{:?}|{:?}|{:?}",
            routes.weights, routes.header_routes, routes.mirror
        );
        {
            let mut installed = self.installed.lock().unwrap_or_else(|p| p.into_inner());
            if installed.get(&routes.service) == Some(&key) {
                return;
            }
            installed.insert(routes.service.clone(), key);
        }
        let table = RouteTable {
            backends,
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
        };
        let generation = handle.install(table);
        tracing::debug!(service = %routes.service, generation, "route table installed");
        // Wake the loop when the previous table has drained, so the switch is confirmed
        // promptly instead of at the next poll.
        let wake = self.wake.clone();
        tokio::spawn(async move {
            handle.drained(generation).await;
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
