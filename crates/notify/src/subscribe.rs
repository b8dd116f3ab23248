//! Who hears about a trigger: the configuration's default subscriptions plus a rollout's own
//! annotations, `notifications.cutover.dev/subscribe.<trigger>.<service>: <recipients>` (or
//! Argo's `notifications.argoproj.io/...` prefix, with Argo's trigger names, for migrating
//! users). Recipients are `;`-separated, as Argo's.

use std::collections::{BTreeMap, BTreeSet};

use cutover_core::notify::{Trigger, UnknownTrigger};

use crate::config::NotificationConfig;

/// The annotation prefix of cutover's own subscriptions.
pub const PREFIX: &str = "notifications.cutover.dev/subscribe.";
/// Argo Rollouts' prefix, accepted as well.
pub const ARGO_PREFIX: &str = "notifications.argoproj.io/subscribe.";

/// One delivery to make: a service and a recipient (empty: none named).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Target {
    /// Service name.
    pub service: String,
    /// Recipient.
    pub recipient: Option<String>,
}

/// A trigger name: cutover's own, or Argo's name of the same transition.
pub fn parse_trigger(name: &str) -> Result<Trigger, UnknownTrigger> {
    Ok(match name {
        "on-rollout-updated" => Trigger::UpdateStarted,
        "on-rollout-paused" => Trigger::Paused,
        "on-analysis-run-failed" => Trigger::AnalysisFailed,
        "on-analysis-run-error" => Trigger::AnalysisError,
        "on-rollout-completed" => Trigger::Completed,
        "on-rollout-aborted" => Trigger::Aborted,
        other => other.parse()?,
    })
}

/// The targets of `trigger` for a rollout with these annotations. Annotations that name an
/// unknown trigger or service are skipped and returned as warnings (the rollout itself is
/// fine; the author should hear why nothing arrives).
pub fn targets(
    config: &NotificationConfig,
    annotations: &BTreeMap<String, String>,
    trigger: Trigger,
) -> (BTreeSet<Target>, Vec<String>) {
    let mut targets = BTreeSet::new();
    let mut warnings = Vec::new();
    for sub in &config.subscriptions {
        if sub.triggers.contains(&trigger) {
            add(
                &mut targets,
                &sub.service,
                sub.recipients.iter().map(String::as_str),
            );
        }
    }
    for (key, value) in annotations {
        let Some(rest) = key
            .strip_prefix(PREFIX)
            .or_else(|| key.strip_prefix(ARGO_PREFIX))
        else {
            continue;
        };
        let Some((name, service)) = rest.split_once('.') else {
            warnings.push(format!(
                "annotation {key}: expected subscribe.<trigger>.<service>"
            ));
            continue;
        };
        // An empty trigger subscribes to every trigger (Argo's `subscribe..<service>`).
        if !name.is_empty() {
            match parse_trigger(name) {
                Ok(t) if t == trigger => {}
                Ok(_) => continue,
                Err(e) => {
                    warnings.push(format!("annotation {key}: {e}"));
                    continue;
                }
            }
        }
        if !config.services.contains_key(service) {
            warnings.push(format!(
                "annotation {key}: no notification service named {service:?} is configured"
            ));
            continue;
        }
        add(
            &mut targets,
            service,
            value.split(';').map(str::trim).filter(|r| !r.is_empty()),
        );
    }
    (targets, warnings)
}

fn add<'a>(
    targets: &mut BTreeSet<Target>,
    service: &str,
    recipients: impl Iterator<Item = &'a str>,
) {
    let mut any = false;
    for r in recipients {
        any = true;
        targets.insert(Target {
            service: service.to_string(),
            recipient: Some(r.to_string()),
        });
    }
    if !any {
        targets.insert(Target {
            service: service.to_string(),
            recipient: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{ServiceKind, Subscription};

    fn config() -> NotificationConfig {
        let command = ServiceKind::Command {
            argv: vec!["true".into()],
            timeout: Duration::from_secs(1),
        };
        NotificationConfig {
            services: [
                ("hook".to_string(), command.clone()),
                ("slack".to_string(), command),
            ]
            .into_iter()
            .collect(),
            subscriptions: vec![Subscription {
                triggers: [Trigger::Completed].into_iter().collect(),
                service: "hook".into(),
                recipients: vec![],
            }],
            ..NotificationConfig::default()
        }
    }

    fn target(service: &str, recipient: Option<&str>) -> Target {
        Target {
            service: service.into(),
            recipient: recipient.map(Into::into),
        }
    }

    #[test]
    fn defaults_and_both_annotation_prefixes_combine_without_repeats() {
        let annotations: BTreeMap<String, String> = [
            (
                "notifications.cutover.dev/subscribe.on-completed.slack",
                "#a; #b",
            ),
            (
                "notifications.argoproj.io/subscribe.on-rollout-completed.slack",
                "#b",
            ),
            ("notifications.cutover.dev/subscribe.on-aborted.slack", "#c"),
            ("notifications.cutover.dev/subscribe..hook", ""),
            ("unrelated/annotation", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (completed, warnings) = targets(&config(), &annotations, Trigger::Completed);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            completed.into_iter().collect::<Vec<_>>(),
            vec![
                target("hook", None),
                target("slack", Some("#a")),
                target("slack", Some("#b")),
            ]
        );
        let (aborted, _) = targets(&config(), &annotations, Trigger::Aborted);
        assert_eq!(
            aborted.into_iter().collect::<Vec<_>>(),
            vec![target("hook", None), target("slack", Some("#c"))]
        );
    }

    #[test]
    fn unknown_triggers_and_services_are_warned_about() {
        let annotations: BTreeMap<String, String> = [
            ("notifications.cutover.dev/subscribe.on-done.slack", "x"),
            (
                "notifications.cutover.dev/subscribe.on-completed.teams",
                "x",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (found, warnings) = targets(&config(), &annotations, Trigger::Completed);
        assert_eq!(found.len(), 1, "only the default: {found:?}");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        let all = warnings.join("\n");
        assert!(
            all.contains("\"on-done\"") && all.contains("\"teams\""),
            "{all}"
        );
    }
}
