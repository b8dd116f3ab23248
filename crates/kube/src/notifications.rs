//! Notifications on Kubernetes: the configuration is the `config.yaml` key of ConfigMap
//! `cutover-notifications` in the controller's namespace, and its `$NAME` secrets are keys of
//! Secret `cutover-notifications` there. The install's RBAC lets the controller read these two
//! objects (and keep the outbox, see [`crate::outbox`]). Both are read when the controller starts and again every
//! [`RELOAD_INTERVAL`]; a change replaces the configuration in use.

use std::collections::BTreeMap;
use std::time::Duration;

use cutover_notify::config::Host;
use cutover_notify::{MapSecrets, NotificationConfig, Notifier};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use crate::error::Error;

/// Name of the ConfigMap and of the Secret.
pub const NAME: &str = "cutover-notifications";
/// The ConfigMap's key holding the configuration document.
pub const CONFIG_KEY: &str = "config.yaml";
/// How often the ConfigMap and the Secret are read again.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// The resourceVersions of the ConfigMap and the Secret a configuration was read from: the
/// same pair, the same configuration.
pub type Version = (Option<String>, Option<String>);

/// Reads the configuration in `ns`, with the versions it came from. An empty configuration
/// (nothing is sent) when the ConfigMap does not exist.
pub async fn load(client: &Client, ns: &str) -> Result<(NotificationConfig, Version), Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let Some(config_map) = config_maps
        .get_opt(NAME)
        .await
        .map_err(|e| Error::kube(format!("read ConfigMap {ns}/{NAME}"), e))?
    else {
        return Ok((NotificationConfig::default(), (None, None)));
    };
    let origin = format!("ConfigMap {ns}/{NAME} key {CONFIG_KEY}");
    let Some(yaml) = config_map.data.as_ref().and_then(|d| d.get(CONFIG_KEY)) else {
        return Err(Error::Config(format!(
            "{origin} is missing: put the notification configuration (kind: NotificationConfig) under data.{CONFIG_KEY}"
        )));
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = secrets
        .get_opt(NAME)
        .await
        .map_err(|e| Error::kube(format!("read Secret {ns}/{NAME}"), e))?;
    let version = (
        config_map.metadata.resource_version.clone(),
        secret
            .as_ref()
            .and_then(|s| s.metadata.resource_version.clone()),
    );
    let values = secret.as_ref().map(secret_values).unwrap_or_default();
    let secrets = MapSecrets {
        holder: format!("Secret {ns}/{NAME}"),
        values,
    };
    NotificationConfig::parse(yaml, &origin, &secrets, Host::Cluster)
        .map(|config| (config, version))
        .map_err(|e| Error::Config(e.to_string()))
}

/// One controller's notifications: the notifier that delivers, the outbox that keeps each job
/// until it is delivered, and the task that reads the configuration again. Dropping it stops
/// the reload and the deliveries, as a process exit would; the outbox keeps what was not
/// delivered for the next controller.
pub struct Notifications {
    pub notifier: Notifier,
    pub outbox: crate::outbox::Outbox,
    reload: tokio::task::JoinHandle<()>,
}

impl Drop for Notifications {
    fn drop(&mut self) {
        self.reload.abort();
        self.notifier.stop();
    }
}

/// Starts the notifications of the configuration in `ns`, read again every `every`. A missing
/// or wrong configuration sends nothing, with the reason in the log, until it is fixed:
/// rollouts are reconciled either way.
pub async fn start(client: Client, ns: String, every: Duration) -> Notifications {
    let mut state = Reload::default();
    let first = load(&client, &ns).await;
    // The queue is sized from the configuration at start (`delivery.queueSize`), so the
    // notifier starts with what was read, not with the defaults.
    let initial = first
        .as_ref()
        .map(|(config, _)| config.clone())
        .unwrap_or_default();
    let notifier = Notifier::start(initial);
    state.apply(first, &notifier, &ns);
    let outbox = crate::outbox::Outbox::new(client.clone(), &ns);
    let reloader = notifier.clone();
    let reload = tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            state.apply(load(&client, &ns).await, &reloader, &ns);
        }
    });
    Notifications {
        notifier,
        outbox,
        reload,
    }
}

/// What the last read found, so that only changes are applied and logged.
#[derive(Default)]
struct Reload {
    version: Option<Version>,
    error: Option<String>,
}

impl Reload {
    fn apply(
        &mut self,
        read: Result<(NotificationConfig, Version), Error>,
        notifier: &Notifier,
        ns: &str,
    ) {
        match read {
            Ok((config, version)) => {
                self.error = None;
                if self.version.as_ref() == Some(&version) {
                    return;
                }
                if version.0.is_none() {
                    tracing::info!("no ConfigMap {ns}/{NAME}: notifications are off");
                } else {
                    tracing::info!(
                        services = config.services.len(),
                        subscriptions = config.subscriptions.len(),
                        "notifications configured from ConfigMap {ns}/{NAME}"
                    );
                }
                notifier.replace_config(config);
                self.version = Some(version);
            }
            Err(e) => {
                let e = e.to_string();
                if self.error.as_ref() != Some(&e) {
                    tracing::error!(
                        "notifications: {e}; the configuration read before stays in use"
                    );
                    self.error = Some(e);
                }
            }
        }
    }
}

/// The Secret's keys as text (`data` decoded, `stringData` as given).
fn secret_values(secret: &Secret) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect();
    values.extend(secret.string_data.clone().unwrap_or_default());
    values
}
