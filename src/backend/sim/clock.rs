//! Where the simulator reads the time: a rewrap runs for `keys × rewrap_ms_per_key` and
//! completes when the clock passes its `completes_at_ms`. Time is a seam (style.md, habit 7):
//! `sim:` and `sim serve` read the wall clock, in Unix milliseconds, so that every process
//! serving one fleet file agrees on when a rewrap completes; a drill reads tokio's clock,
//! which a paused runtime advances only when every task waits, so a 60-second rewrap costs
//! no time and a seed replays exactly.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds as this clock counts them, and how to wait for a later now.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;

    /// How long to sleep on tokio's clock for this clock to advance by `ms`.
    fn sleep_for(&self, ms: u64) -> Duration {
        Duration::from_millis(ms)
    }
}

/// Waits until `clock` reads `at_ms` or later.
pub async fn sleep_until(clock: &dyn Clock, at_ms: u64) {
    loop {
        let now = clock.now_ms();
        if now >= at_ms {
            return;
        }
        let pause = clock.sleep_for(at_ms - now).max(Duration::from_millis(1));
        tokio::time::sleep(pause).await;
    }
}

/// The wall clock: what `sim:` and `sim serve` use.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64)
    }
}

/// tokio's clock, from a fixed start: in a runtime started paused (the drills) it advances
/// only when every task sleeps, so waiting for a rewrap takes no real time and the same seed
/// always sees the same times.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    start_ms: u64,
    origin: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(start_ms: u64) -> Self {
        Self {
            start_ms,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.start_ms + self.origin.elapsed().as_millis() as u64
    }
}

/// The wall clock running `speed` times faster, for the simulator servers of a drill over
/// HTTP: their runtime has a real clock, and a rehearsal should not wait a minute for each
/// rewrap. A rewrap still takes time there, so a lost response or a restart can land while
/// it runs.
#[derive(Clone, Copy, Debug)]
pub struct FastClock {
    start_ms: u64,
    origin: std::time::Instant,
    speed: u64,
}

impl FastClock {
    /// Starts at the wall clock's now.
    pub fn new(speed: u64) -> Self {
        Self {
            start_ms: SystemClock.now_ms(),
            origin: std::time::Instant::now(),
            speed: speed.max(1),
        }
    }
}

impl Clock for FastClock {
    fn now_ms(&self) -> u64 {
        self.start_ms + self.origin.elapsed().as_millis() as u64 * self.speed
    }

    fn sleep_for(&self, ms: u64) -> Duration {
        Duration::from_millis(ms.div_ceil(self.speed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_paused_tokio_clock_waits_a_minute_in_no_time() {
        let clock = TokioClock::starting_at(1_000);
        let started = std::time::Instant::now();
        sleep_until(&clock, 61_000).await;
        assert!(clock.now_ms() >= 61_000);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_fast_clock_runs_faster_than_the_wall() {
        let clock = FastClock::new(100);
        let start = clock.now_ms();
        let started = std::time::Instant::now();
        sleep_until(&clock, start + 2_000).await;
        assert!(clock.now_ms() >= start + 2_000);
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
