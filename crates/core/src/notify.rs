//! Notification triggers: which of `plan()`'s typed events a team can subscribe to. The
//! mapping is pure so both backends notify on exactly the same transitions.

use std::fmt;
use std::str::FromStr;

use crate::plan::EventReason;

/// A transition worth telling people about. Names follow Argo's notification triggers
/// (`on-<what>`), so subscription annotations read the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    /// A new revision was created for a changed pod template.
    UpdateStarted,
    /// The rollout paused, waiting for promotion.
    Paused,
    /// An analysis run failed.
    AnalysisFailed,
    /// An analysis run could not measure.
    AnalysisError,
    /// The data plane confirmed the switch to the new revision.
    SwitchVerified,
    /// The new revision became stable.
    Completed,
    /// The update was aborted.
    Aborted,
    /// The rollout cannot make progress (progress deadline, invalid spec, lost revision,
    /// refused writes, failed migration).
    Degraded,
    /// A migration may be contracted now.
    MigrationContractDue,
}

impl Trigger {
    /// Every trigger, in the order of a release.
    pub const ALL: [Trigger; 9] = [
        Self::UpdateStarted,
        Self::Paused,
        Self::AnalysisFailed,
        Self::AnalysisError,
        Self::SwitchVerified,
        Self::Completed,
        Self::Aborted,
        Self::Degraded,
        Self::MigrationContractDue,
    ];

    /// The trigger an event fires, if any. Routine progress (scaling, Service switches,
    /// analysis starts) fires none: it would drown the transitions people act on.
    pub fn for_event(reason: EventReason) -> Option<Self> {
        use EventReason as R;
        Some(match reason {
            R::RolloutUpdated => Self::UpdateStarted,
            R::RolloutPaused => Self::Paused,
            R::AnalysisRunFailed => Self::AnalysisFailed,
            R::AnalysisRunError => Self::AnalysisError,
            R::SwitchVerified => Self::SwitchVerified,
            R::RolloutCompleted => Self::Completed,
            R::RolloutAborted => Self::Aborted,
            R::ProgressDeadlineExceeded
            | R::InvalidSpec
            | R::StableRevisionLost
            | R::ApiServerRefused
            | R::MigrationFailed => Self::Degraded,
            R::MigrationContractDue => Self::MigrationContractDue,
            R::ScalingReplicaSet
            | R::SwitchService
            | R::AnalysisRunStarted
            | R::AnalysisRunSuccessful
            | R::AnalysisRunInconclusive
            | R::RolloutResumed
            | R::RolloutRetry
            | R::MigrationStarted
            | R::MigrationContracted
            | R::ServiceSelectorRepaired => return None,
        })
    }

    /// The name used in configuration and annotations (`on-completed`).
    pub fn name(self) -> &'static str {
        match self {
            Self::UpdateStarted => "on-update-started",
            Self::Paused => "on-paused",
            Self::AnalysisFailed => "on-analysis-failed",
            Self::AnalysisError => "on-analysis-error",
            Self::SwitchVerified => "on-switch-verified",
            Self::Completed => "on-completed",
            Self::Aborted => "on-aborted",
            Self::Degraded => "on-degraded",
            Self::MigrationContractDue => "on-migration-contract-due",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A trigger name that is not one of [`Trigger::ALL`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownTrigger(pub String);

impl fmt::Display for UnknownTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<&str> = Trigger::ALL.iter().map(|t| t.name()).collect();
        write!(
            f,
            "unknown trigger {:?}; use one of {}",
            self.0,
            known.join(", ")
        )
    }
}

impl std::error::Error for UnknownTrigger {}

impl FromStr for Trigger {
    type Err = UnknownTrigger;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownTrigger(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_transition_of_the_issue_fires_its_trigger() {
        let table = [
            (EventReason::RolloutUpdated, Some(Trigger::UpdateStarted)),
            (EventReason::RolloutPaused, Some(Trigger::Paused)),
            (
                EventReason::AnalysisRunFailed,
                Some(Trigger::AnalysisFailed),
            ),
            (EventReason::AnalysisRunError, Some(Trigger::AnalysisError)),
            (EventReason::SwitchVerified, Some(Trigger::SwitchVerified)),
            (EventReason::RolloutCompleted, Some(Trigger::Completed)),
            (EventReason::RolloutAborted, Some(Trigger::Aborted)),
            (
                EventReason::ProgressDeadlineExceeded,
                Some(Trigger::Degraded),
            ),
            (EventReason::InvalidSpec, Some(Trigger::Degraded)),
            (EventReason::StableRevisionLost, Some(Trigger::Degraded)),
            (EventReason::ApiServerRefused, Some(Trigger::Degraded)),
            (
                EventReason::MigrationContractDue,
                Some(Trigger::MigrationContractDue),
            ),
            (EventReason::ScalingReplicaSet, None),
            (EventReason::SwitchService, None),
            (EventReason::AnalysisRunStarted, None),
        ];
        for (reason, trigger) in table {
            assert_eq!(Trigger::for_event(reason), trigger, "{reason}");
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known_ones() {
        for trigger in Trigger::ALL {
            assert_eq!(trigger.name().parse::<Trigger>(), Ok(trigger));
        }
        let err = "on-finished"
            .parse::<Trigger>()
            .expect_err("unknown")
            .to_string();
        assert!(
            err.contains("on-finished") && err.contains("on-completed"),
            "{err}"
        );
    }
}
