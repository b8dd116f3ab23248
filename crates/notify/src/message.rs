//! What a notification says: the JSON payload of a transition, its message text from a
//! template, its idempotency key, and the HMAC signature of a webhook body.

use std::collections::BTreeMap;

use cutover_core::api::Rollout;
use cutover_core::notify::Trigger;
use cutover_core::plan::Event;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The facts of a rollout a notification carries, taken after the pass that made the
/// transition.
#[derive(Clone, Debug, PartialEq)]
pub struct RolloutFacts {
    /// Rollout name.
    pub name: String,
    /// Namespace (`default` on one host).
    pub namespace: String,
    /// The object's uid, when it has one (Kubernetes).
    pub uid: Option<String>,
    /// Current revision number.
    pub revision: Option<i64>,
    /// Images of the current pod template.
    pub images: Vec<String>,
    /// Phase after the pass.
    pub phase: Option<String>,
    /// Seconds from the switch to its verification, once verified.
    pub switch_seconds: Option<f64>,
    /// The rollout's annotations (subscriptions).
    pub annotations: BTreeMap<String, String>,
}

impl RolloutFacts {
    /// The facts of `rollout` with the status a pass wrote.
    pub fn of(rollout: &Rollout, status: &cutover_core::api::RolloutStatus) -> Self {
        let images = rollout
            .spec
            .template
            .spec
            .as_ref()
            .map(|spec| {
                spec.containers
                    .iter()
                    .filter_map(|c| c.image.clone())
                    .collect()
            })
            .unwrap_or_default();
        Self {
            name: rollout.metadata.name.clone().unwrap_or_default(),
            namespace: rollout
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            uid: rollout.metadata.uid.clone(),
            revision: status.current_revision,
            images,
            phase: status.phase.map(|p| format!("{p:?}")),
            switch_seconds: status.blue_green.switch.as_ref().and_then(|s| s.seconds),
            annotations: rollout.metadata.annotations.clone().unwrap_or_default(),
        }
    }
}

/// One transition, as webhooks receive it (camelCase JSON).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// The same for every try of this transition: receivers drop repeats by it.
    pub idempotency_key: String,
    /// Trigger name (`on-completed`).
    pub trigger: String,
    /// Rollout name.
    pub rollout: String,
    /// Namespace.
    pub namespace: String,
    /// Revision number.
    pub revision: Option<i64>,
    /// Images of the current pod template.
    pub images: Vec<String>,
    /// Phase after the transition.
    pub phase: Option<String>,
    /// The event's reason (`RolloutCompleted`, `ProgressDeadlineExceeded`…).
    pub reason: String,
    /// The event's message.
    pub message: String,
    /// Seconds from the switch to its verification (switch-verified and later).
    pub switch_latency_seconds: Option<f64>,
    /// When the transition happened (RFC 3339).
    pub at: String,
    /// The message text from the trigger's template.
    pub text: String,
    /// The subscription's recipient, when it names one.
    pub recipient: Option<String>,
}

/// The template environment: strict about undefined names so a typo fails at load.
pub fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

/// The text when a configuration gives no template for the trigger.
pub fn default_template(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::UpdateStarted => {
            "{{ namespace }}/{{ rollout }}: update to revision {{ revision }} started ({{ images | join(', ') }})"
        }
        Trigger::Paused => {
            "{{ namespace }}/{{ rollout }}: revision {{ revision }} paused, waiting for promotion"
        }
        Trigger::AnalysisFailed => "{{ namespace }}/{{ rollout }}: analysis failed: {{ message }}",
        Trigger::AnalysisError => {
            "{{ namespace }}/{{ rollout }}: analysis could not measure: {{ message }}"
        }
        Trigger::SwitchVerified => {
            "{{ namespace }}/{{ rollout }}: traffic switched to revision {{ revision }}, verified after {{ switchLatencySeconds }}s"
        }
        Trigger::Completed => {
            "{{ namespace }}/{{ rollout }}: revision {{ revision }} is stable ({{ images | join(', ') }})"
        }
        Trigger::Aborted => "{{ namespace }}/{{ rollout }}: update aborted: {{ message }}",
        Trigger::Degraded => {
            "{{ namespace }}/{{ rollout }} is Degraded ({{ reason }}): {{ message }}"
        }
        Trigger::MigrationContractDue => "{{ namespace }}/{{ rollout }}: {{ message }}",
    }
}

/// The key of one transition: the rollout (uid when it has one), its revision, the trigger,
/// when the pass ran and the event's place in it. Retries and every service share it.
pub fn idempotency_key(
    facts: &RolloutFacts,
    trigger: Trigger,
    at: Timestamp,
    index: usize,
) -> String {
    let mut hash = Sha256::new();
    let who = facts.uid.as_deref().unwrap_or(&facts.name);
    hash.update(format!(
        "{}\n{who}\n{}\n{trigger}\n{}\n{index}",
        facts.namespace,
        facts.revision.unwrap_or_default(),
        at.as_nanosecond()
    ));
    hex(&hash.finalize())
}

/// The notification of `event`, when it fires a trigger. The text is rendered here, so a
/// template error shows at once, with the trigger's default text as the fallback.
pub fn notification(
    facts: &RolloutFacts,
    event: &Event,
    index: usize,
    at: Timestamp,
    templates: &BTreeMap<Trigger, String>,
) -> Option<(Trigger, Notification)> {
    let trigger = Trigger::for_event(event.reason)?;
    let mut n = Notification {
        idempotency_key: idempotency_key(facts, trigger, at, index),
        trigger: trigger.name().to_string(),
        rollout: facts.name.clone(),
        namespace: facts.namespace.clone(),
        revision: facts.revision,
        images: facts.images.clone(),
        phase: facts.phase.clone(),
        reason: event.reason.to_string(),
        message: event.message.clone(),
        switch_latency_seconds: facts.switch_seconds,
        at: at.to_string(),
        text: String::new(),
        recipient: None,
    };
    let source = templates
        .get(&trigger)
        .map_or(default_template(trigger), String::as_str);
    n.text = match template_env().render_str(source, &n) {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!(%trigger, error = %e, "notification template failed; using the default text");
            template_env()
                .render_str(default_template(trigger), &n)
                .unwrap_or_else(|_| event.message.clone())
        }
    };
    Some((trigger, n))
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` under `key`, the `X-Cutover-Signature` header.
pub fn signature(key: &str, body: &[u8]) -> String {
    // Any key length is accepted by HMAC, so this cannot fail; the fallback keeps it total.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use cutover_core::plan::EventReason;

    use super::*;

    fn facts() -> RolloutFacts {
        RolloutFacts {
            name: "shop".into(),
            namespace: "prod".into(),
            uid: Some("u-1".into()),
            revision: Some(4),
            images: vec!["shop:v4".into()],
            phase: Some("Healthy".into()),
            switch_seconds: Some(0.25),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn a_completed_event_becomes_a_payload_with_rendered_text() {
        let at: Timestamp = "2026-01-02T03:04:05Z".parse().expect("time");
        let event = Event::normal(EventReason::RolloutCompleted, "revision 4 is stable");
        let templates = [(
            Trigger::Completed,
            "{{ rollout }}@{{ revision }} {{ images[0] }}".to_string(),
        )]
        .into_iter()
        .collect();
        let (trigger, n) = notification(&facts(), &event, 0, at, &templates).expect("fires");
        assert_eq!(trigger, Trigger::Completed);
        assert_eq!(n.text, "shop@4 shop:v4");
        let json = serde_json::to_value(&n).expect("json");
        assert_eq!(json["trigger"], "on-completed");
        assert_eq!(json["reason"], "RolloutCompleted");
        assert_eq!(json["switchLatencySeconds"], 0.25);
        assert_eq!(json["at"], "2026-01-02T03:04:05Z");
        // The same transition gives the same key; another place in the pass another one.
        let again = notification(&facts(), &event, 0, at, &templates)
            .expect("fires")
            .1;
        let other = notification(&facts(), &event, 1, at, &templates)
            .expect("fires")
            .1;
        assert_eq!(n.idempotency_key, again.idempotency_key);
        assert_ne!(n.idempotency_key, other.idempotency_key);
        let scaling = Event::normal(EventReason::ScalingReplicaSet, "scaled");
        assert!(notification(&facts(), &scaling, 0, at, &templates).is_none());
    }

    #[test]
    fn every_default_template_renders() {
        let event = Event::warning(EventReason::InvalidSpec, "bad");
        for trigger in Trigger::ALL {
            let n = Notification {
                idempotency_key: String::new(),
                trigger: trigger.name().into(),
                rollout: "shop".into(),
                namespace: "prod".into(),
                revision: Some(1),
                images: vec!["a".into()],
                phase: None,
                reason: event.reason.to_string(),
                message: "m".into(),
                switch_latency_seconds: None,
                at: String::new(),
                text: String::new(),
                recipient: None,
            };
            let text = template_env()
                .render_str(default_template(trigger), &n)
                .expect("renders");
            assert!(text.contains("prod/shop"), "{trigger}: {text}");
        }
    }

    #[test]
    fn signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
