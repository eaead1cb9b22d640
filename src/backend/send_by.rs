//! The latest moment a mutating request may leave this process. On a shared journal, each
//! intent promises that its operation is sent within a window after the intent was
//! committed, or never; a writer that takes over an unsettled intent waits for that window
//! (and the time a request may take to arrive) before it reads the live state to settle it.
//! The sender keeps the promise by checking the deadline as late as it can, just before the
//! request leaves: a process paused in between (a suspended laptop, a stopped container)
//! wakes up and sends nothing.
//!
//! Measured on `CLOCK_BOOTTIME`, which keeps counting while the machine sleeps (the monotonic
//! clock stops then, and a laptop resumed after an hour would think a second had passed).

use std::time::Duration;

use super::BackendError;

/// Milliseconds on `CLOCK_BOOTTIME`: since this machine booted, its sleep included.
pub fn boot_clock_ms() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `now` is.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &raw mut now) };
    assert_eq!(result, 0, "CLOCK_BOOTTIME is readable on Linux");
    u64::try_from(now.tv_sec).unwrap_or_default() * 1_000
        + u64::try_from(now.tv_nsec).unwrap_or_default() / 1_000_000
}

/// When a mutating request may still leave: any time, or until a moment of the boot clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendBy(Option<u64>);

impl SendBy {
    /// No deadline: a journal that no other writer can take over (a folder's, under its lock).
    pub const ANY_TIME: Self = Self(None);

    /// `window` from `from_ms` (a boot-clock reading taken before the intent was written, so
    /// that the deadline is never later than the one the journal records).
    pub fn within(from_ms: u64, window: Duration) -> Self {
        let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Self(Some(from_ms.saturating_add(window)))
    }

    /// Refuses to send `operation` once the deadline has passed: nothing leaves, and the
    /// error says so (the step did not happen; a rerun plans it again).
    pub fn check(self, operation: &str) -> Result<(), BackendError> {
        self.check_with(|| operation.to_string())
    }

    /// `check`, naming the operation only when it is refused.
    pub fn check_with(self, operation: impl FnOnce() -> String) -> Result<(), BackendError> {
        match self.0 {
            Some(deadline) if boot_clock_ms() > deadline => Err(BackendError::NotSent {
                operation: operation(),
                why: "its send window, recorded with its intent, had passed (this process was paused or slowed down after journaling it, and another writer may have taken over). Nothing was sent".into(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_passed_refuses_the_send_and_any_time_never_does() {
        let now = boot_clock_ms();
        assert!(SendBy::ANY_TIME.check("rewrap_key_storage").is_ok());
        assert!(
            SendBy::within(now, Duration::from_secs(60))
                .check("x")
                .is_ok()
        );
        let late = SendBy::within(now.saturating_sub(2_000), Duration::from_secs(1))
            .check("rewrap_key_storage")
            .unwrap_err();
        assert!(matches!(late, BackendError::NotSent { .. }), "{late:?}");
        assert!(
            late.to_string().contains("rewrap_key_storage was not sent"),
            "{late}"
        );
    }

    #[test]
    fn the_boot_clock_moves_forward() {
        let first = boot_clock_ms();
        std::thread::sleep(Duration::from_millis(5));
        assert!(boot_clock_ms() >= first + 5);
    }
}
