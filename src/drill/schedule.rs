//! A drill run's fault schedule, drawn from its seed: which apply attempts fail and how, with
//! what parallelism and latency. The same seed always draws the same schedule (ChaCha8, whose
//! output is stable across versions), so a run is replayed by its seed alone.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Attempts with faults in one run, at most; each is followed by a rerun.
pub const FAULTY_ATTEMPTS_MAX: usize = 3;
/// Parallelism a run may draw.
pub const PARALLELISM_CHOICES: [usize; 4] = [1, 2, 4, 10];
/// Latency a run may draw per operation (the drill's clock is simulated: it costs no time).
pub const LATENCY_MS_MAX: u64 = 250;
/// Mixed into the seed for the draws that came after the first schedules were pinned, so
/// that those stay as they were drawn.
const RERUN_STREAM: u64 = 0x5e12_3a7e_0f0c_e000;

/// The faults of one apply attempt, counting its mutating operations from 1.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AttemptFaults {
    /// The operation takes effect, then the mkplan process dies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_after_op: Option<u64>,
    /// The operation fails with a transient error and has no effect.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub fail_op: BTreeSet<u64>,
    /// The operation takes effect, but its response is lost.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub lose_response_op: BTreeSet<u64>,
    /// From this operation on, the token is rejected (401), reads included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_expires_at_op: Option<u64>,
    /// Over HTTP: the server dies right after this operation (counted by the server) is on
    /// disk, without answering, and is started again on the same file and port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_server_after_op: Option<u64>,
}

impl AttemptFaults {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `crash_after_op=5,lose_response_op=2`: the contract's fault syntax.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.crash_after_op {
            parts.push(format!("crash_after_op={n}"));
        }
        parts.extend(self.fail_op.iter().map(|n| format!("fail_op={n}")));
        parts.extend(
            self.lose_response_op
                .iter()
                .map(|n| format!("lose_response_op={n}")),
        );
        if let Some(n) = self.token_expires_at_op {
            parts.push(format!("token_expires_at_op={n}"));
        }
        if let Some(n) = self.restart_server_after_op {
            parts.push(format!("restart_server_after_op={n}"));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(",")
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Schedule {
    pub seed: u64,
    pub parallelism: usize,
    /// Base latency of every operation, plus a jitter drawn per operation from the seed.
    pub latency_ms: u64,
    /// The faulty attempts, in order; the attempts after them have no faults.
    pub attempts: Vec<AttemptFaults>,
    /// In a drill with several actors (`--actors`): the turns of mkplan from state folders X
    /// and Y, and of the operator with the TKE CLI; the attempts above are then unused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actors: Vec<super::actors::Turn>,
}

impl Schedule {
    /// Draws a schedule for a plan of `operations` mutating operations.
    pub fn draw(seed: u64, operations: u64) -> Self {
        Self::draw_for(seed, operations, false)
    }

    /// Over HTTP a fault may also restart the server, and there is no latency: the clock is
    /// real.
    pub fn draw_for(seed: u64, operations: u64, over_http: bool) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let operations = operations.max(1);
        let faulty = match rng.random_range(0..100) {
            0..10 => 0,
            10..60 => 1,
            60..85 => 2,
            _ => FAULTY_ATTEMPTS_MAX,
        };
        let attempts = (0..faulty)
            .map(|_| {
                let mut faults = AttemptFaults::default();
                let at = rng.random_range(1..=operations);
                let kinds = if over_http { 5 } else { 4 };
                match rng.random_range(0..kinds) {
                    4 => faults.restart_server_after_op = Some(at),
                    0 => faults.crash_after_op = Some(at),
                    1 => {
                        faults.lose_response_op.insert(at);
                    }
                    2 => {
                        faults.fail_op.insert(at);
                    }
                    _ => faults.token_expires_at_op = Some(at),
                }
                if rng.random_bool(0.3) {
                    let other = rng.random_range(1..=operations);
                    if rng.random_bool(0.5) {
                        faults.lose_response_op.insert(other);
                    } else {
                        faults.fail_op.insert(other);
                    }
                }
                faults
            })
            .collect();
        let parallelism = PARALLELISM_CHOICES[rng.random_range(0..PARALLELISM_CHOICES.len())];
        let latency_ms = if over_http || rng.random_bool(0.5) {
            0
        } else {
            rng.random_range(1..=LATENCY_MS_MAX)
        };
        Self {
            seed,
            parallelism,
            latency_ms,
            attempts,
            actors: Vec::new(),
        }
    }

    /// The faults of attempt `index` (from 0).
    pub fn attempt(&self, index: usize) -> AttemptFaults {
        self.attempts.get(index).cloned().unwrap_or_default()
    }

    /// The latency of operation `number` of attempt `attempt`: the base plus a jitter that
    /// reorders concurrent completions, drawn from the seed.
    pub fn latency_ms(&self, attempt: usize, number: u64) -> u64 {
        if self.latency_ms == 0 {
            return 0;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(
            self.seed
                ^ (attempt as u64).rotate_left(32)
                ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        self.latency_ms + rng.random_range(0..=self.latency_ms / 2)
    }

    /// Whether the operator starts attempt `attempt` (from 2) at once after the one before
    /// stopped, while a rewrap the service accepted may still run; otherwise only once it has
    /// completed (a rewrap takes about a minute). Drawn from the seed. Only the rerun right
    /// after a faulty attempt may come at once, so every run ends with reruns that find the
    /// service idle.
    pub fn rerun_at_once(&self, attempt: usize) -> bool {
        if attempt < 2 || attempt > self.attempts.len() + 1 {
            return false;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ RERUN_STREAM ^ attempt as u64);
        rng.random_bool(0.5)
    }

    /// "1: crash_after_op=4, rerun at once; 2: fail_op=2" for tables.
    pub fn describe(&self) -> String {
        if !self.actors.is_empty() {
            return self
                .actors
                .iter()
                .map(super::actors::Turn::describe)
                .collect::<Vec<_>>()
                .join("; ");
        }
        if self.attempts.is_empty() {
            return "no faults".into();
        }
        self.attempts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let at_once = if self.rerun_at_once(i + 2) {
                    ", rerun at once"
                } else {
                    ""
                };
                format!("{}: {}{at_once}", i + 1, a.describe())
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_draws_the_same_schedule_and_seeds_differ() {
        assert_eq!(Schedule::draw(7, 10), Schedule::draw(7, 10));
        let distinct: BTreeSet<String> = (0..50)
            .map(|s| format!("{:?}", Schedule::draw(s, 10)))
            .collect();
        assert!(distinct.len() > 40, "seeds must give different schedules");
    }

    #[test]
    fn only_the_rerun_after_a_faulty_attempt_may_come_at_once() {
        let mut at_once = BTreeSet::new();
        for seed in 0..200 {
            let schedule = Schedule::draw(seed, 10);
            let faulty = schedule.attempts.len();
            assert!(!schedule.rerun_at_once(1), "the first attempt is no rerun");
            for attempt in faulty + 2..faulty + 5 {
                assert!(!schedule.rerun_at_once(attempt), "seed {seed}");
            }
            at_once.extend((2..=faulty + 1).map(|a| schedule.rerun_at_once(a)));
        }
        assert_eq!(at_once, BTreeSet::from([false, true]), "both are drawn");
    }

    #[test]
    fn faults_stay_within_the_operations_and_every_kind_is_drawn() {
        let mut kinds = BTreeSet::new();
        for seed in 0..500 {
            let schedule = Schedule::draw(seed, 10);
            assert!(schedule.attempts.len() <= FAULTY_ATTEMPTS_MAX);
            for a in &schedule.attempts {
                assert!(!a.is_empty());
                let ops = a
                    .crash_after_op
                    .iter()
                    .chain(&a.fail_op)
                    .chain(&a.lose_response_op)
                    .chain(a.token_expires_at_op.iter());
                for &n in ops {
                    assert!((1..=10).contains(&n), "{a:?}");
                }
                kinds.extend(
                    a.describe()
                        .split(',')
                        .map(|p| p.split('=').next().unwrap().to_string()),
                );
            }
        }
        assert_eq!(
            kinds,
            BTreeSet::from(
                [
                    "crash_after_op",
                    "fail_op",
                    "lose_response_op",
                    "token_expires_at_op"
                ]
                .map(String::from)
            )
        );
    }
}
