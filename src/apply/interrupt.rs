//! The operator's interrupt (Ctrl-C, SIGTERM) as the executor sees it: a flag it reads before
//! it starts any step, and the account of where it stopped. As in Terraform, nothing new
//! starts after the first interrupt, and the operations in flight finish and are journaled: an
//! HSM command whose outcome nobody recorded costs the next run a settlement, and a rewrap
//! cut off in the middle may cost the operator an attestation. Catching the signals is the
//! command line's business (`cli::interrupt`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use super::executor::ApplyError;

/// Raised once, by the first interrupt; every clone sees it.
#[derive(Clone, Default)]
pub struct Interrupt(Arc<Flag>);

#[derive(Default)]
struct Flag {
    raised: AtomicBool,
    notify: Notify,
}

impl Interrupt {
    /// Not raised yet (and never, if nothing raises it).
    pub fn new() -> Self {
        Self::default()
    }

    pub fn raise(&self) {
        self.0.raised.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_raised(&self) -> bool {
        self.0.raised.load(Ordering::SeqCst)
    }

    /// Completes once the interrupt is raised (at once if it already is).
    pub async fn raised(&self) {
        let notified = self.0.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read: a `raise` in between still wakes it.
        notified.as_mut().enable();
        if self.is_raised() {
            return;
        }
        notified.await;
    }
}

/// What became of a step that had started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepEnd {
    /// Took effect, and the journal says so.
    Done,
    /// Refused or failed without effect, and the journal says so.
    NotDone(String),
    /// Nobody knows yet: the intent stays open and the next run settles it from the live state.
    Unknown(String),
    /// A ceremony step that was never shown: the apply stopped before its turn (journaled as
    /// not done).
    NotStarted,
}

impl StepEnd {
    pub(super) fn of(result: &Result<super::journal::Outcome, ApplyError>) -> Self {
        match result {
            Ok(outcome) if outcome.took_effect() => Self::Done,
            Ok(_) => Self::NotDone("settled as not done".into()),
            Err(ApplyError::Step { source, .. }) => Self::NotDone(source.to_string()),
            Err(ApplyError::Changed { why, .. }) => {
                Self::NotDone(format!("not sent: the live state changed ({why})"))
            }
            Err(ApplyError::Unknown { why, .. }) => Self::Unknown(why.clone()),
            Err(ApplyError::NotStarted { .. }) => Self::NotStarted,
            Err(other) => Self::Unknown(other.to_string()),
        }
    }
}

/// Where an interrupted apply stopped, by step id, in plan order.
#[derive(Debug, Default)]
pub struct Stopped {
    /// Steps done before the interrupt.
    pub done: Vec<String>,
    /// Steps that had failed before the interrupt, and why.
    pub failed: Vec<(String, StepEnd)>,
    /// The steps in flight when the interrupt came, and how each ended.
    pub in_flight: Vec<(String, StepEnd)>,
    /// Steps never started (ceremony steps that waited for their turn included).
    pub not_started: Vec<String>,
    /// The error that had already stopped the apply before the interrupt, if any.
    pub earlier_error: Option<Box<ApplyError>>,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done_in_flight = self
            .in_flight
            .iter()
            .filter(|(_, end)| *end == StepEnd::Done)
            .count();
        write!(
            f,
            "interrupted: {} step(s) done, {} in flight at the interrupt ({done_in_flight} of them done), {} not started",
            self.done.len(),
            self.in_flight.len(),
            self.not_started.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_wakes_when_raised_and_a_late_one_at_once() {
        let interrupt = Interrupt::new();
        let waiter = {
            let interrupt = interrupt.clone();
            tokio::spawn(async move { interrupt.raised().await })
        };
        tokio::task::yield_now().await;
        assert!(!interrupt.is_raised());
        interrupt.raise();
        waiter.await.expect("the waiter wakes");
        interrupt.raised().await;
        assert!(interrupt.clone().is_raised());
    }
}
