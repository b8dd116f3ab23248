//! Durations as Argo Rollouts writes them: Go's `time.ParseDuration` syntax (`30s`, `5m`,
//! `1h30m`, `1.5h`, `300ms`).

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A duration kept as the user wrote it, parsed on demand.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct DurationString(pub String);

/// Why a duration string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string was empty.
    #[error("empty duration: write a number with a unit, e.g. 30s, 5m or 1h30m")]
    Empty,
    /// A part had no unit, an unknown unit or no number.
    #[error(
        "invalid duration {0:?}: write numbers with units ns, us, ms, s, m or h, e.g. 30s, 5m or 1h30m"
    )]
    Invalid(String),
    /// A template argument (`{{args.x}}`) that is only known when the analysis runs.
    #[error("duration {0:?} refers to an argument; it is resolved when the analysis starts")]
    Templated(String),
}

impl DurationString {
    /// Builds a duration string from text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// Parses the text. A value of the form `{{args.name}}` is reported as
    /// [`DurationError::Templated`], which callers that validate before substitution accept.
    pub fn parse(&self) -> Result<Duration, DurationError> {
        parse_go_duration(&self.0)
    }
}

impl fmt::Display for DurationString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses Go's duration syntax: an optional sign-free sequence of decimal numbers, each with a
/// fraction and a unit. A bare `0` is allowed, as in Go.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s.contains("{{") {
        return Err(DurationError::Templated(text.to_string()));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || DurationError::Invalid(text.to_string());
    let mut rest = s;
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        if num_len == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        total_nanos += number * nanos_per_unit;
        rest = &rest[unit_len..];
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("300ms", 300),
            ("0", 0),
            ("2m0s", 120_000),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse_go_duration(text).map(|d| d.as_millis()),
                Ok(millis),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for text in ["", "30", "5 minutes", "m", "1x", "-5s", "1h-3m"] {
            assert!(parse_go_duration(text).is_err(), "{text} should not parse");
        }
        assert!(matches!(
            parse_go_duration("{{args.interval}}"),
            Err(DurationError::Templated(_))
        ));
    }
}
