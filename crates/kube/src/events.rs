//! Publishes a Rollout's transitions as Kubernetes Events (events.k8s.io/v1).
//!
//! kube-runtime's `Recorder` keeps every event it published for six minutes, to fold repeats
//! into a series: after an update wave over 1,000 Rollouts that is thousands of full Event
//! objects held in the controller. Cutover publishes an event only when the plan reports a
//! transition, and each carries its own message, so there is nothing to fold: every event is
//! created once, with the same fields the recorder writes, and nothing is kept.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

/// Normal or Warning, as Kubernetes spells the event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// A transition that needs no attention.
    Normal,
    /// A transition someone should look at (a refusal, an abort, a failed analysis).
    Warning,
}

/// One event about the object it is published for.
#[derive(Clone, Debug)]
pub struct EventNote {
    /// Normal or Warning.
    pub type_: EventType,
    /// Machine-readable reason (`Promoted`, `Aborted`…).
    pub reason: String,
    /// Human-readable message.
    pub note: String,
    /// What was done (the API caps it at 128 characters).
    pub action: String,
}

/// Creates Events for the objects a controller acts on, keeping no copy of them.
#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    controller: String,
    instance: String,
}

/// The API's limit on an Event's `action`.
const ACTION_LIMIT: usize = 128;

impl EventPublisher {
    /// Publishes as `controller`; `instance` (the leader identity) defaults to the controller.
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
        }
    }

    /// The Event `note` becomes for the object `regarding`, published at `now`.
    pub fn event(&self, note: &EventNote, regarding: &ObjectReference, now: Timestamp) -> Event {
        // Named like kubectl and the recorder name them: the object, then a unique suffix.
        let owner = regarding.name.as_deref().unwrap_or(&self.controller);
        Event {
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!("{owner}.{:x}", now.as_nanosecond())),
                ..ObjectMeta::default()
            },
            action: Some(note.action.chars().take(ACTION_LIMIT).collect()),
            reason: Some(note.reason.clone()),
            note: Some(note.note.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(
                match note.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            ..Event::default()
        }
    }

    /// Creates the event in the object's namespace (`default` for a cluster-scoped object).
    pub async fn publish(
        &self,
        note: &EventNote,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let event = self.event(note, regarding, Timestamp::now());
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        api.create(&PostParams::default(), &event).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publisher(instance: Option<String>) -> EventPublisher {
        // A client that is never called (`event` only builds the object); it needs a runtime.
        let (service, _handle) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        EventPublisher::new(Client::new(service, "ns"), "cutover", instance)
    }

    #[tokio::test]
    async fn an_event_carries_what_users_read_and_a_capped_action() {
        let regarding = ObjectReference {
            kind: Some("Rollout".into()),
            name: Some("app".into()),
            namespace: Some("shop".into()),
            ..ObjectReference::default()
        };
        let note = EventNote {
            type_: EventType::Warning,
            reason: "Aborted".into(),
            note: "analysis failed".into(),
            action: "x".repeat(300),
        };
        let now = Timestamp::from_second(1_800_000_000).unwrap_or_else(|e| panic!("{e}"));
        let event = publisher(None).event(&note, &regarding, now);
        assert_eq!(event.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(
            event.metadata.name,
            Some(format!("app.{:x}", now.as_nanosecond()))
        );
        assert_eq!(event.type_.as_deref(), Some("Warning"));
        assert_eq!(event.reason.as_deref(), Some("Aborted"));
        assert_eq!(event.note.as_deref(), Some("analysis failed"));
        assert_eq!(event.action.map(|a| a.len()), Some(ACTION_LIMIT));
        assert_eq!(event.regarding, Some(regarding));
        assert_eq!(event.reporting_controller.as_deref(), Some("cutover"));
        assert_eq!(event.reporting_instance.as_deref(), Some("cutover"));
        assert!(event.series.is_none());
    }

    #[tokio::test]
    async fn the_leader_identity_is_the_reporting_instance() {
        let event = publisher(Some("pod-7".into())).event(
            &EventNote {
                type_: EventType::Normal,
                reason: "Promoted".into(),
                note: "switched".into(),
                action: "switched".into(),
            },
            &ObjectReference::default(),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(event.reporting_instance.as_deref(), Some("pod-7"));
        assert_eq!(event.type_.as_deref(), Some("Normal"));
        assert_eq!(event.metadata.namespace, None);
    }
}
