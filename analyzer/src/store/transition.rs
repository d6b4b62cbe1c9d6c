//! The history the store keeps: a finding that began, changed severity or
//! ended, or an alert that moved between its states. Its state, severity
//! and resource are typed here and stored by name, so a row that no build
//! of the analyzer wrote is refused on reading rather than shown.

use serde::{Serialize, Serializer};

use crate::detect::{Resource, Severity};
use crate::error::{Error, Result};

/// A finding that began, changed severity or ended, or an alert that
/// fired or resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub at_ms: i64,
    pub service: String,
    pub instance: String,
    /// `finding`, or the alert's name.
    pub subject: String,
    pub resource: Watched,
    pub state: TransitionState,
    pub severity: Option<Severity>,
    pub summary: String,
}

/// A transition as both backends store it: every column as text.
pub(crate) struct StoredTransition {
    pub at_ms: i64,
    pub service: String,
    pub instance: String,
    pub subject: String,
    pub resource: String,
    pub state: String,
    pub severity: Option<String>,
    pub summary: String,
}

impl StoredTransition {
    /// The row, typed; a name no build wrote is an error.
    pub fn typed(self) -> Result<Transition> {
        Ok(Transition {
            at_ms: self.at_ms,
            service: self.service,
            instance: self.instance,
            subject: self.subject,
            resource: Watched::parse(&self.resource)?,
            state: TransitionState::parse(&self.state)?,
            severity: self.severity.as_deref().map(parse_severity).transpose()?,
            summary: self.summary,
        })
    }
}

/// What a transition says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionState {
    /// A leak was found.
    Began,
    /// A leak's severity changed.
    Changed,
    /// A leak is no longer found.
    Ended,
    /// An alert's condition holds, for less than its `for`.
    Pending,
    Firing,
    Resolved,
}

impl TransitionState {
    const ALL: [TransitionState; 6] = [
        TransitionState::Began,
        TransitionState::Changed,
        TransitionState::Ended,
        TransitionState::Pending,
        TransitionState::Firing,
        TransitionState::Resolved,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TransitionState::Began => "began",
            TransitionState::Changed => "changed",
            TransitionState::Ended => "ended",
            TransitionState::Pending => "pending",
            TransitionState::Firing => "firing",
            TransitionState::Resolved => "resolved",
        }
    }

    /// A stored state, by name.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| unknown("state", s))
    }
}

/// What a transition is about: a resource, or for the alerts that watch
/// no resource, the agent itself (silence), its pauses, or the
/// analyzer's own evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    Resource(Resource),
    Agent,
    Pauses,
    Evaluation,
}

impl Watched {
    pub fn name(self) -> &'static str {
        match self {
            Watched::Resource(r) => r.name(),
            Watched::Agent => "agent",
            Watched::Pauses => "pauses",
            Watched::Evaluation => "evaluation",
        }
    }

    /// A stored resource, by name.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "agent" => Ok(Watched::Agent),
            "pauses" => Ok(Watched::Pauses),
            "evaluation" => Ok(Watched::Evaluation),
            _ => Resource::parse(s)
                .map(Watched::Resource)
                .ok_or_else(|| unknown("resource", s)),
        }
    }
}

impl Serialize for Watched {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A stored severity, by name.
pub(crate) fn parse_severity(s: &str) -> Result<Severity> {
    [Severity::Critical, Severity::Warning, Severity::Info]
        .into_iter()
        .find(|v| v.name() == s)
        .ok_or_else(|| unknown("severity", s))
}

fn unknown(what: &str, s: &str) -> Error {
    Error::invalid(
        "transitions",
        format!("a stored transition has an unknown {what} {s:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_reads_back_and_strangers_are_refused() {
        for t in TransitionState::ALL {
            assert_eq!(TransitionState::parse(t.name()).unwrap(), t);
        }
        for w in Resource::ALL.map(Watched::Resource).into_iter().chain([
            Watched::Agent,
            Watched::Pauses,
            Watched::Evaluation,
        ]) {
            assert_eq!(Watched::parse(w.name()).unwrap(), w);
        }
        assert_eq!(parse_severity("warning").unwrap(), Severity::Warning);
        let e = TransitionState::parse("exploded").unwrap_err();
        assert!(e.to_string().contains("unknown state \"exploded\""), "{e}");
        assert!(Watched::parse("disk").is_err());
    }
}
