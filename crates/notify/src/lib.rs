//! Notifications for cutover: the typed transitions `plan()` emits (see
//! [`cutover_core::notify::Trigger`]) delivered to generic webhooks, Slack-compatible incoming
//! webhooks and (on one host) command hooks.
//!
//! Backends hand events over with [`Notifier::notify`], which only enqueues: delivery runs on
//! its own tasks with retries and backoff, so it never blocks a reconcile or the engine. The
//! queue is bounded; what does not fit is dropped and counted in the metrics.

pub mod config;
pub mod deliver;
pub mod message;
pub mod subscribe;

pub use config::{ConfigError, EnvSecrets, MapSecrets, NotificationConfig, SecretSource};
pub use deliver::{Counters, Finished, Job, Notifier};
pub use message::{Notification, RolloutFacts};
pub use subscribe::Target;
