//! The notification configuration: services, message templates, default subscriptions and
//! delivery settings. One document shape serves both backends: a file given to `cutover up
//! --notifications` on one host, the `config.yaml` key of the `cutover-notifications`
//! ConfigMap on Kubernetes. Secret values are `$NAME` references, resolved from the
//! environment (one host) or the `cutover-notifications` Secret (Kubernetes).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use cutover_core::notify::Trigger;
use serde::Deserialize;

/// The document kind.
pub const KIND: &str = "NotificationConfig";

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The YAML does not parse or has unknown fields.
    #[error("{origin}: {reason}")]
    Syntax {
        /// Where the document came from.
        origin: String,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// A value is wrong.
    #[error("{origin}: {what}")]
    Invalid {
        /// Where the document came from.
        origin: String,
        /// What is wrong and what to do.
        what: String,
    },
}

/// A place `$NAME` references are looked up.
pub trait SecretSource {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
    /// How a user sets `name` (for the error when it is missing).
    fn how_to_set(&self, name: &str) -> String;
}

/// `$NAME` is the environment variable NAME (one host).
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvSecrets;

impl SecretSource for EnvSecrets {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn how_to_set(&self, name: &str) -> String {
        format!("set the environment variable {name} for the daemon")
    }
}

/// `$NAME` is a key of a Secret (Kubernetes).
#[derive(Clone, Debug, Default)]
pub struct MapSecrets {
    /// What holds them, e.g. `Secret cutover/cutover-notifications`.
    pub holder: String,
    /// Key → value.
    pub values: BTreeMap<String, String>,
}

impl SecretSource for MapSecrets {
    fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }
    fn how_to_set(&self, name: &str) -> String {
        format!("add the key {name} to {}", self.holder)
    }
}

/// A value that must not reach logs or status: its Debug form is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for sending.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How a service delivers.
#[derive(Clone, Debug)]
pub enum ServiceKind {
    /// A generic webhook: the notification's JSON, signed when a secret is set.
    Webhook {
        /// Where to POST.
        url: Secret,
        /// Key of the `X-Cutover-Signature: sha256=<hex>` HMAC of the body.
        signing_secret: Option<Secret>,
        /// Extra headers (e.g. `Authorization`).
        headers: Vec<(String, Secret)>,
    },
    /// A Slack-compatible incoming webhook: `{"text": ...}`, with `channel` when the
    /// subscription names a recipient.
    Slack {
        /// The incoming webhook URL.
        url: Secret,
    },
    /// A command on this host, given the notification's JSON on stdin (one host only).
    Command {
        /// Program and arguments.
        argv: Vec<String>,
        /// How long it may run.
        timeout: Duration,
    },
}

/// A default subscription: these triggers go to this service, to these recipients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// Triggers.
    pub triggers: BTreeSet<Trigger>,
    /// Service name.
    pub service: String,
    /// Recipients (Slack channels, or labels a webhook receives); empty: one delivery with
    /// no recipient.
    pub recipients: Vec<String>,
}

/// Retry and queue settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Deliveries waiting at most; more are dropped and counted.
    pub queue_size: usize,
    /// Tries per delivery, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each failure.
    pub initial_backoff: Duration,
    /// The longest wait between tries.
    pub max_backoff: Duration,
    /// How long one HTTP request may take.
    pub request_timeout: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Self {
            queue_size: 1000,
            max_attempts: 8,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A checked configuration with its secrets resolved.
#[derive(Clone, Debug, Default)]
pub struct NotificationConfig {
    /// Services by name.
    pub services: BTreeMap<String, ServiceKind>,
    /// Message templates by trigger (minijinja; checked when loaded).
    pub templates: BTreeMap<Trigger, String>,
    /// Subscriptions of every rollout.
    pub subscriptions: Vec<Subscription>,
    /// Retries and queue.
    pub delivery: Delivery,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    services: BTreeMap<String, ServiceDoc>,
    #[serde(default)]
    templates: BTreeMap<String, String>,
    #[serde(default)]
    subscriptions: Vec<SubscriptionDoc>,
    #[serde(default)]
    delivery: DeliveryDoc,
}

/// A service: exactly one of its kinds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ServiceDoc {
    webhook: Option<WebhookDoc>,
    slack: Option<SlackDoc>,
    command: Option<CommandDoc>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhookDoc {
    url: String,
    signing_secret: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SlackDoc {
    url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CommandDoc {
    argv: Vec<String>,
    timeout_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SubscriptionDoc {
    triggers: Vec<String>,
    service: String,
    #[serde(default)]
    recipients: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeliveryDoc {
    queue_size: Option<usize>,
    max_attempts: Option<u32>,
    initial_backoff_millis: Option<u64>,
    max_backoff_millis: Option<u64>,
    request_timeout_seconds: Option<u64>,
}

/// Where commands may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    /// One host: command hooks allowed.
    Single,
    /// Kubernetes: no command hooks (the controller's container is not the user's host).
    Cluster,
}

impl NotificationConfig {
    /// Parses and checks a document. `origin` names it in errors (a file path, or
    /// `ConfigMap ns/cutover-notifications key config.yaml`).
    pub fn parse(
        yaml: &str,
        origin: &str,
        secrets: &dyn SecretSource,
        host: Host,
    ) -> Result<Self, ConfigError> {
        let doc: Document = serde_yaml_ng::from_str(yaml).map_err(|e| ConfigError::Syntax {
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
        let invalid = |what: String| ConfigError::Invalid {
            origin: origin.to_string(),
            what,
        };
        if let Some(kind) = &doc.kind
            && kind != KIND
        {
            return Err(invalid(format!(
                "kind is {kind:?}; a notification configuration has kind: {KIND}"
            )));
        }
        if let Some(v) = &doc.api_version
            && !v.starts_with("cutover.dev/")
        {
            return Err(invalid(format!(
                "apiVersion is {v:?}; use cutover.dev/v1alpha1"
            )));
        }
        let mut services = BTreeMap::new();
        for (name, spec) in doc.services {
            let kind = resolve_service(&name, spec, secrets, host).map_err(&invalid)?;
            services.insert(name, kind);
        }
        let mut templates = BTreeMap::new();
        let env = crate::message::template_env();
        for (trigger, source) in doc.templates {
            let trigger: Trigger = trigger
                .parse()
                .map_err(|e| invalid(format!("templates: {e}")))?;
            env.template_from_str(&source)
                .map_err(|e| invalid(format!("templates.{trigger}: {e}")))?;
            templates.insert(trigger, source);
        }
        let mut subscriptions = Vec::new();
        for (i, sub) in doc.subscriptions.into_iter().enumerate() {
            let mut triggers = BTreeSet::new();
            for t in &sub.triggers {
                triggers.insert(
                    crate::subscribe::parse_trigger(t)
                        .map_err(|e| invalid(format!("subscriptions[{i}]: {e}")))?,
                );
            }
            if !services.contains_key(&sub.service) {
                return Err(invalid(format!(
                    "subscriptions[{i}]: no service named {:?} (services: {})",
                    sub.service,
                    names(&services)
                )));
            }
            subscriptions.push(Subscription {
                triggers,
                service: sub.service,
                recipients: sub.recipients,
            });
        }
        let delivery = resolve_delivery(doc.delivery).map_err(&invalid)?;
        Ok(Self {
            services,
            templates,
            subscriptions,
            delivery,
        })
    }
}

fn names(services: &BTreeMap<String, ServiceKind>) -> String {
    if services.is_empty() {
        return "none defined".into();
    }
    services.keys().cloned().collect::<Vec<_>>().join(", ")
}

fn resolve_service(
    name: &str,
    spec: ServiceDoc,
    secrets: &dyn SecretSource,
    host: Host,
) -> Result<ServiceKind, String> {
    let secret = |field: &str, value: &str| -> Result<Secret, String> {
        resolve_secret(value, secrets).map_err(|e| format!("services.{name}.{field}: {e}"))
    };
    match (spec.webhook, spec.slack, spec.command) {
        (
            Some(WebhookDoc {
                url,
                signing_secret,
                headers,
            }),
            None,
            None,
        ) => {
            let url = secret("webhook.url", &url)?;
            check_url(url.expose()).map_err(|e| format!("services.{name}.webhook.url: {e}"))?;
            let signing_secret = signing_secret
                .map(|s| secret("webhook.signingSecret", &s))
                .transpose()?;
            let headers = headers
                .into_iter()
                .map(|(k, v)| Ok((k.clone(), secret(&format!("webhook.headers.{k}"), &v)?)))
                .collect::<Result<_, String>>()?;
            Ok(ServiceKind::Webhook {
                url,
                signing_secret,
                headers,
            })
        }
        (None, Some(SlackDoc { url }), None) => {
            let url = secret("slack.url", &url)?;
            check_url(url.expose()).map_err(|e| format!("services.{name}.slack.url: {e}"))?;
            Ok(ServiceKind::Slack { url })
        }
        (
            None,
            None,
            Some(CommandDoc {
                argv,
                timeout_seconds,
            }),
        ) => {
            if host == Host::Cluster {
                return Err(format!(
                    "services.{name}.command: command hooks run only on one host (cutover up); on Kubernetes use a webhook"
                ));
            }
            if argv.is_empty() {
                return Err(format!(
                    "services.{name}.command.argv is empty; give the program and its arguments"
                ));
            }
            Ok(ServiceKind::Command {
                argv,
                timeout: Duration::from_secs(timeout_seconds.unwrap_or(30)),
            })
        }
        _ => Err(format!(
            "services.{name}: give exactly one of webhook, slack or command"
        )),
    }
}

/// `$NAME` looked up; anything else is the value itself.
fn resolve_secret(value: &str, secrets: &dyn SecretSource) -> Result<Secret, String> {
    let Some(name) = value.strip_prefix('$') else {
        return Ok(Secret(value.to_string()));
    };
    secrets.get(name).map(Secret).ok_or_else(|| {
        format!(
            "refers to ${name}, which is not set: {}",
            secrets.how_to_set(name)
        )
    })
}

/// Only the scheme is checked, never echoed with the rest: a URL may hold a token.
fn check_url(url: &str) -> Result<(), String> {
    let parsed: Result<http::Uri, _> = url.parse();
    match parsed {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
            Ok(())
        }
        _ => Err("not an http:// or https:// URL with a host".into()),
    }
}

fn resolve_delivery(doc: DeliveryDoc) -> Result<Delivery, String> {
    let default = Delivery::default();
    let delivery = Delivery {
        queue_size: doc.queue_size.unwrap_or(default.queue_size),
        max_attempts: doc.max_attempts.unwrap_or(default.max_attempts),
        initial_backoff: doc
            .initial_backoff_millis
            .map_or(default.initial_backoff, Duration::from_millis),
        max_backoff: doc
            .max_backoff_millis
            .map_or(default.max_backoff, Duration::from_millis),
        request_timeout: doc
            .request_timeout_seconds
            .map_or(default.request_timeout, Duration::from_secs),
    };
    if delivery.queue_size == 0 {
        return Err("delivery.queueSize must be at least 1".into());
    }
    if delivery.max_attempts == 0 {
        return Err("delivery.maxAttempts must be at least 1".into());
    }
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> MapSecrets {
        MapSecrets {
            holder: "Secret ops/cutover-notifications".into(),
            values: [(
                "hook".to_string(),
                "http://127.0.0.1:9/x?token=abc".to_string(),
            )]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn a_full_document_resolves_secrets_and_keeps_them_out_of_debug() {
        let yaml = r#"
apiVersion: cutover.dev/v1alpha1
kind: NotificationConfig
services:
  ops: {webhook: {url: $hook, signingSecret: s3cr3t}}
templates:
  on-completed: "{{ rollout }} is live"
subscriptions:
  - {triggers: [on-completed, on-rollout-aborted], service: ops, recipients: [oncall]}
delivery: {maxAttempts: 3, initialBackoffMillis: 10}
"#;
        let config =
            NotificationConfig::parse(yaml, "test.yaml", &secrets(), Host::Cluster).expect("valid");
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("token=abc") && !debug.contains("s3cr3t"),
            "{debug}"
        );
        let Some(ServiceKind::Webhook { url, .. }) = config.services.get("ops") else {
            panic!("ops is a webhook: {debug}");
        };
        assert_eq!(url.expose(), "http://127.0.0.1:9/x?token=abc");
        assert_eq!(
            config.subscriptions[0].triggers,
            [Trigger::Completed, Trigger::Aborted].into_iter().collect()
        );
        assert_eq!(config.delivery.max_attempts, 3);
    }

    #[test]
    fn mistakes_say_where_and_what_to_do() {
        let cases = [
            (
                "services: {a: {webhook: {url: $missing}}}",
                "add the key missing to Secret ops/cutover-notifications",
            ),
            (
                "services: {a: {command: {argv: [true]}}}",
                "only on one host",
            ),
            (
                "services: {a: {slack: {url: 'ftp://x'}}}",
                "services.a.slack.url",
            ),
            ("templates: {on-finish: x}", "unknown trigger \"on-finish\""),
            (
                "templates: {on-completed: '{{ x'}",
                "templates.on-completed",
            ),
            (
                "subscriptions: [{triggers: [on-completed], service: nope}]",
                "no service named \"nope\"",
            ),
            ("servicez: {}", "unknown field"),
            (
                "services: {a: {}}",
                "services.a: give exactly one of webhook, slack or command",
            ),
        ];
        for (yaml, expected) in cases {
            let err = NotificationConfig::parse(yaml, "cm", &secrets(), Host::Cluster)
                .expect_err(yaml)
                .to_string();
            assert!(
                err.starts_with("cm: ") && err.contains(expected),
                "{yaml}: {err}"
            );
        }
    }
}
