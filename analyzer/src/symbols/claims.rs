//! Which agent is asked to upload a build-id's debug file.
//!
//! A fleet of a thousand instances of one binary would otherwise upload it
//! a thousand times. The first agent whose batch names a build-id with no
//! debug file is asked for it, and holds the claim for [`CLAIM`]; the
//! others are not asked meanwhile. If the upload does not come, the claim
//! lapses and the next agent is asked. An upload is taken only from the
//! caller that holds the claim, so no one can push a file nobody asked for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an agent has to upload what it was asked for.
pub const CLAIM: Duration = Duration::from_secs(120);
/// Claims kept at once: far more build-ids than a fleet runs.
const MAX_CLAIMS: usize = 10_000;

#[derive(Default)]
pub struct Claims {
    held: Mutex<HashMap<String, (String, Instant)>>,
}

impl Claims {
    /// The build-ids of `wanted` that `caller` is now asked to upload:
    /// those nobody else holds a live claim on.
    pub fn ask(&self, wanted: &[String], caller: &str) -> Vec<String> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if held.len() >= MAX_CLAIMS {
            held.retain(|_, (_, until)| *until > now);
        }
        let mut out = Vec::new();
        for id in wanted {
            let free = held
                .get(id)
                .is_none_or(|(who, until)| *until <= now || who == caller);
            if free && held.len() < MAX_CLAIMS {
                held.insert(id.clone(), (caller.to_owned(), now + CLAIM));
                out.push(id.clone());
            }
        }
        out
    }

    /// Whether `caller` holds a live claim on `build_id`.
    pub fn holds(&self, build_id: &str, caller: &str) -> bool {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(build_id)
            .is_some_and(|(who, until)| who == caller && *until > Instant::now())
    }

    /// Ends the claim on `build_id`: its file arrived.
    pub fn release(&self, build_id: &str) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.remove(build_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_caller_is_asked_and_only_it_may_upload() {
        let c = Claims::default();
        let id = vec!["abcd".to_owned()];
        assert_eq!(c.ask(&id, "a"), id);
        assert!(
            c.ask(&id, "b").is_empty(),
            "b is not asked while a holds it"
        );
        assert_eq!(c.ask(&id, "a"), id, "a is asked again");
        assert!(c.holds("abcd", "a") && !c.holds("abcd", "b"));
        c.release("abcd");
        assert!(!c.holds("abcd", "a"));
        assert_eq!(c.ask(&id, "b"), id);
    }
}
