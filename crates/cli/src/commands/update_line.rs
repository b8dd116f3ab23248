//! The tree's `Update:` line, read from `status.duration`: how long the current (or last)
//! update has taken, how much of it was a manual pause, and how it ended.

use cutover_core::api::{UpdateCompletion, UpdateDuration};
use jiff::Timestamp;

use super::tree::human_duration;

/// `revision 3: promoted after 2m10s (90s paused)`, or while it runs
/// `revision 3: running for 45s, paused for 20s`. Whole seconds, as kubectl prints ages.
pub fn update_line(d: &UpdateDuration, now: Timestamp) -> String {
    let since = |t: Timestamp| human_duration((now.as_second() - t.as_second()).max(0));
    let secs = |s: f64| {
        // Seconds of an update fit an i64 many times over; rounding is what is shown.
        #[allow(clippy::cast_possible_truncation)]
        let whole = s.round() as i64;
        human_duration(whole.max(0))
    };
    let mut line = format!("revision {}: ", d.revision);
    match (d.completion, d.seconds) {
        (Some(completion), Some(seconds)) => {
            let how = match completion {
                UpdateCompletion::Promoted => "promoted",
                UpdateCompletion::Aborted => "aborted",
            };
            line.push_str(&format!("{how} after {}", secs(seconds)));
            if d.paused_seconds >= 0.5 {
                line.push_str(&format!(" ({} paused)", secs(d.paused_seconds)));
            }
        }
        _ => {
            line.push_str(&format!("running for {}", since(d.started_at.0)));
            if let Some(paused) = &d.paused_at {
                line.push_str(&format!(", paused for {}", since(paused.0)));
            }
            if d.paused_seconds >= 0.5 {
                line.push_str(&format!(", {} paused before", secs(d.paused_seconds)));
            }
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn at(second: i64) -> MicroTime {
        MicroTime(Timestamp::from_second(second).expect("timestamp"))
    }

    fn duration() -> UpdateDuration {
        UpdateDuration {
            revision: 3,
            started_at: at(1000),
            paused_at: None,
            paused_seconds: 0.0,
            finished_at: None,
            completion: None,
            seconds: None,
        }
    }

    #[test]
    fn a_running_update_says_how_long_and_how_long_paused() {
        let now = Timestamp::from_second(1045).expect("now");
        assert_eq!(update_line(&duration(), now), "revision 3: running for 45s");
        let paused = UpdateDuration {
            paused_at: Some(at(1025)),
            paused_seconds: 10.2,
            ..duration()
        };
        assert_eq!(
            update_line(&paused, now),
            "revision 3: running for 45s, paused for 20s, 10s paused before"
        );
    }

    #[test]
    fn a_finished_update_says_how_it_ended() {
        let now = Timestamp::from_second(9999).expect("now");
        let done = UpdateDuration {
            finished_at: Some(at(1130)),
            completion: Some(UpdateCompletion::Promoted),
            seconds: Some(130.4),
            paused_seconds: 90.0,
            ..duration()
        };
        assert_eq!(
            update_line(&done, now),
            "revision 3: promoted after 2m10s (90s paused)"
        );
        let aborted = UpdateDuration {
            completion: Some(UpdateCompletion::Aborted),
            seconds: Some(4.0),
            paused_seconds: 0.0,
            ..done
        };
        assert_eq!(update_line(&aborted, now), "revision 3: aborted after 4s");
    }
}
