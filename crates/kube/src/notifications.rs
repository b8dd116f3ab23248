//! Notifications on Kubernetes: the configuration is the `config.yaml` key of ConfigMap
//! `cutover-notifications` in the controller's namespace, and its `$NAME` secrets are keys of
//! Secret `cutover-notifications` there. The install's RBAC lets the controller read exactly
//! these two objects. Both are read when the controller starts.

use std::collections::BTreeMap;

use cutover_notify::config::Host;
use cutover_notify::{MapSecrets, NotificationConfig};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use crate::error::Error;

/// Name of the ConfigMap and of the Secret.
pub const NAME: &str = "cutover-notifications";
/// The ConfigMap's key holding the configuration document.
pub const CONFIG_KEY: &str = "config.yaml";

/// Reads the configuration in `ns`. None when the ConfigMap does not exist (notifications
/// are off).
pub async fn load(client: &Client, ns: &str) -> Result<Option<NotificationConfig>, Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let Some(config_map) = config_maps
        .get_opt(NAME)
        .await
        .map_err(|e| Error::kube(format!("read ConfigMap {ns}/{NAME}"), e))?
    else {
        return Ok(None);
    };
    let origin = format!("ConfigMap {ns}/{NAME} key {CONFIG_KEY}");
    let Some(yaml) = config_map.data.as_ref().and_then(|d| d.get(CONFIG_KEY)) else {
        return Err(Error::Config(format!(
            "{origin} is missing: put the notification configuration (kind: NotificationConfig) under data.{CONFIG_KEY}"
        )));
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let values = secrets
        .get_opt(NAME)
        .await
        .map_err(|e| Error::kube(format!("read Secret {ns}/{NAME}"), e))?
        .map(|secret| secret_values(&secret))
        .unwrap_or_default();
    let secrets = MapSecrets {
        holder: format!("Secret {ns}/{NAME}"),
        values,
    };
    NotificationConfig::parse(yaml, &origin, &secrets, Host::Cluster)
        .map(Some)
        .map_err(|e| Error::Config(e.to_string()))
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
