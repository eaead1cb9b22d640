//! How fast mkplan talks to the TKE API. Two rules the SDK keeps by being sequential, kept
//! here while the reads of different crypto modules still go in parallel:
//!
//! - at most one request in flight per crypto module (location parts zone, host and CM
//!   index: the domains of one module share it), so a module never sees two of mkplan's
//!   requests at once;
//! - `429 Too Many Requests` is transient: mkplan waits as the service's `Retry-After` says
//!   (seconds or an HTTP date, at most `RETRY_AFTER_S_MAX`), else backs off, and gives up
//!   after `RATE_LIMITED_ATTEMPTS_MAX` attempts with an error naming the request. Only reads
//!   come through here: a command that changes anything is never resent blindly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;

/// Attempts at one read answered 429 before mkplan gives up on it.
pub const RATE_LIMITED_ATTEMPTS_MAX: u32 = 5;
/// The longest `Retry-After` mkplan waits for; a longer one gives up at once (the service
/// asks for more patience than one run should take).
pub const RETRY_AFTER_S_MAX: u64 = 60;
/// The pause after a 429 without `Retry-After`, doubled at each further attempt.
pub const RATE_LIMITED_BACKOFF_MS_INITIAL: u64 = 500;

/// The crypto module of a unit: `[zone].[host].[CM index]`, the first three parts of its
/// location (tke-wire.md §1.1; the SDK groups units by them).
pub fn module_of(location: &str) -> String {
    let parts: Vec<&str> = location.splitn(4, '.').collect();
    parts[..parts.len().min(3)].join(".")
}

/// One lock per crypto module: whoever holds it has the module's only request in flight.
#[derive(Default)]
pub struct Modules {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Modules {
    /// Waits until no other request of this process is in flight to `module`.
    pub async fn one_at_a_time(&self, module: &str) -> OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(module.to_string())
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}

/// What to do after the `attempt`-th 429 (counted from 1).
#[derive(Debug, PartialEq, Eq)]
pub enum Pause {
    Wait(Duration),
    /// Why mkplan stops trying, for the error message.
    GiveUp(String),
}

/// The pause after a 429: the `Retry-After` the service sent (now being `now`), else a
/// doubling back-off; giving up after the last attempt or on a wait over the cap.
pub fn after_rate_limit(attempt: u32, retry_after: Option<&str>, now: jiff::Timestamp) -> Pause {
    if attempt >= RATE_LIMITED_ATTEMPTS_MAX {
        return Pause::GiveUp(format!(
            "the service answered 429 Too Many Requests {attempt} times; mkplan gave up after {RATE_LIMITED_ATTEMPTS_MAX} attempts"
        ));
    }
    let asked = retry_after.and_then(|value| retry_after_delay(value, now));
    match asked {
        Some(wait) if wait > Duration::from_secs(RETRY_AFTER_S_MAX) => Pause::GiveUp(format!(
            "the service answered 429 Too Many Requests and asks to wait {} s, over mkplan's limit of {RETRY_AFTER_S_MAX} s",
            wait.as_secs()
        )),
        Some(wait) => Pause::Wait(wait),
        None => Pause::Wait(Duration::from_millis(
            RATE_LIMITED_BACKOFF_MS_INITIAL << (attempt - 1).min(16),
        )),
    }
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT` (RFC 9110 §10.2.3) as
/// a wait from `now`; a date in the past is no wait. `None` when it is neither.
pub fn retry_after_delay(value: &str, now: jiff::Timestamp) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits beyond u64 are a wait longer than any cap.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    let at = PARSER.parse_timestamp(value).ok()?;
    let wait = at.as_millisecond().saturating_sub(now.as_millisecond());
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-12-01T03:00:00Z".parse().unwrap()
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let delay = |v| retry_after_delay(v, now());
        assert_eq!(delay("7"), Some(Duration::from_secs(7)));
        assert_eq!(delay(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            delay("Tue, 01 Dec 2026 03:00:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            delay("Tue, 01 Dec 2026 02:00:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past is no wait"
        );
        assert_eq!(
            delay("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(delay("soon"), None);
        assert_eq!(delay("-5"), None);
        assert_eq!(delay(""), None);
    }

    #[test]
    fn a_rate_limit_waits_as_asked_backs_off_and_gives_up_within_bounds() {
        assert_eq!(
            after_rate_limit(1, Some("3"), now()),
            Pause::Wait(Duration::from_secs(3))
        );
        assert_eq!(
            after_rate_limit(1, None, now()),
            Pause::Wait(Duration::from_millis(RATE_LIMITED_BACKOFF_MS_INITIAL))
        );
        assert_eq!(
            after_rate_limit(3, Some("later"), now()),
            Pause::Wait(Duration::from_millis(4 * RATE_LIMITED_BACKOFF_MS_INITIAL))
        );
        let Pause::GiveUp(why) = after_rate_limit(1, Some("3600"), now()) else {
            panic!("an hour is over the cap");
        };
        assert!(
            why.contains("3600 s") && why.contains("limit of 60 s"),
            "{why}"
        );
        let Pause::GiveUp(why) = after_rate_limit(RATE_LIMITED_ATTEMPTS_MAX, Some("0"), now())
        else {
            panic!("the attempts are bounded");
        };
        assert!(why.contains("gave up after 5 attempts"), "{why}");
    }

    #[test]
    fn units_on_one_crypto_module_share_it() {
        assert_eq!(
            module_of("[us-south].[AZ3-CS3].[02].[03]"),
            "[us-south].[AZ3-CS3].[02]"
        );
        assert_eq!(
            module_of("[us-south].[AZ3-CS3].[02].[07]"),
            module_of("[us-south].[AZ3-CS3].[02].[03]")
        );
        assert_ne!(
            module_of("[us-south].[AZ3-CS3].[03].[03]"),
            module_of("[us-south].[AZ3-CS3].[02].[03]")
        );
    }
}
