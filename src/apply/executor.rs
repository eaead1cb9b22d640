//! Runs a checked plan, journal before effect: an intent (fsynced) before every operation, the
//! outcome after it. Steps whose dependencies are met run concurrently, up to `parallelism`
//! operations in flight and one at a time per crypto unit (a real unit takes one command at a
//! time); a step starts only after the outcomes of all its dependencies are journaled. Intents
//! of steps started together, and outcomes that arrive together, share one fsync.
//!
//! A transient error is settled by reading the live state before anything is retried; an
//! outcome that cannot be settled stops the apply (the steps in flight finish and are
//! journaled first), and the rerun plans from the live state and the journal. The operator's
//! interrupt stops it the same way (`interrupt`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::json;

use super::audit::{Audit, AuditError};
use super::by_hand::perform_by_hand;
pub use super::by_hand::{ATTESTED, CEREMONY};
use super::interrupt::{Interrupt, StepEnd, Stopped};
use super::journal::{Journal, JournalError, Outcome, Record};
use super::other_folders::{OtherFolderWitness, not_sent_why, sent_since_plan};
pub use super::resume::{close_finished, record_rotations, settle_previous};
use super::send::perform_settled;
use crate::backend::send_by::boot_clock_ms;
use crate::backend::{Backend, BackendError, SendBy};
use crate::keypart::Secret32;
use crate::model::{CryptoUnit, LiveInstance};
use crate::plan::ceremony::Instruction;
use crate::plan::{Action, InstancePlan, Plan, Registers, Step, effect};

/// Attempts of one operation whose earlier attempt was settled as not done.
pub const OPERATION_ATTEMPTS_MAX: u32 = 3;
/// Operations in flight at most (`--parallelism`), and the default.
pub const PARALLELISM_MAX: usize = 256;
pub const PARALLELISM_DEFAULT: usize = 10;

/// What an operator answers at a ceremony step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Done, or yes.
    Yes,
    /// Not done, or no: said deliberately.
    No,
    /// The operator stopped, or cannot say; why.
    Stopped(String),
    /// Not shown: an earlier step stopped the apply.
    Skipped,
}

/// The person who performs ceremony steps by hand. Only views talk to people: the command
/// line implements this with prompts, tests with a script.
pub trait Operator: Send + Sync {
    /// Shows the instruction and waits until the operator says it is done.
    fn perform(&self, instruction: &Instruction) -> impl Future<Output = Answer> + Send;
    /// Asks the operator for evidence only a person saw (a message of the TKE CLI).
    fn attest(&self, question: &str) -> impl Future<Output = Answer> + Send;
    /// The apply stops: ceremony steps not yet shown are not shown (they answer `Skipped`).
    fn halt(&self) {}
}

/// For applies without ceremony steps.
pub struct NoOperator;

impl Operator for NoOperator {
    async fn perform(&self, _: &Instruction) -> Answer {
        Answer::Stopped("no operator to perform a ceremony step".into())
    }

    async fn attest(&self, _: &str) -> Answer {
        Answer::Stopped("no operator to ask".into())
    }
}

/// Polls of the live state after a ceremony step, until it shows the step's effect.
pub const CEREMONY_POLL_MS: u64 = 500;

/// Where the executor reports what it does; only views print.
pub trait Progress {
    /// A step was sent (its intent is journaled).
    fn step_started(&mut self, step: &Step);
    /// A step's outcome is journaled: `finished` of `total` steps are.
    fn step_finished(&mut self, finished: usize, total: usize, step: &Step);
    /// A line for the operator.
    fn line(&mut self, text: &str);
    /// The operator interrupted: nothing new starts; `in_flight` steps are finishing.
    fn interrupted(&mut self, _in_flight: usize) {}
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(
        "step {step} ({action}) failed: {source}. The journal records it; fix the cause and run apply again"
    )]
    Step {
        step: String,
        action: Action,
        source: Box<BackendError>,
    },
    #[error(
        "step {step} ({action}): the outcome is unknown ({why}) and the live state cannot settle it. Nothing more was sent. Run `mkplan apply` again: it settles it from the service's status, or refuses and says what evidence it needs"
    )]
    Unknown {
        step: String,
        action: Action,
        why: String,
    },
    #[error("reading the live state to settle step {step}: {source}")]
    Refresh {
        step: String,
        source: Box<BackendError>,
    },
    /// Every step ran, but the live state read back is not the desired one.
    #[error("{0}")]
    NotConverged(String),
    /// Just before the rewrap, the live state was not the one the plan expects there.
    #[error(
        "step {step} (rewrap_key_storage) was not sent: the live state changed since the plan was made ({why}). Someone else acted on this instance; nothing more was sent. Find out who, then plan again"
    )]
    Changed { step: String, why: String },
    /// Set immediate found a rewrap of the key storage in progress: this rotation's rewrap had
    /// completed (set immediate is sent only then), so someone else sent another.
    #[error(
        "step {step} ({action}) was not sent again: {why}. A rewrap that mkplan did not send is running on the service: someone else acted on this instance, and a second rewrap after one completed makes the key storage unusable. Nothing more was sent. Find out who sent it, and once it ends read the service's rotation status (`mkplan status`); until IBM support or the service confirms which master key the key storage is under, do not set immediate, rewrap or clear any new register"
    )]
    ForeignRewrap {
        step: String,
        action: Action,
        why: String,
    },
    /// A clear of a new register shown as a ceremony step by an earlier run was never
    /// answered, and the register is not empty: a clear sent with the TKE CLI names no key, so
    /// if it is still on its way it clears whatever the register holds when it lands, after
    /// this run's loads or after its rewrap. Only its operator's word settles it.
    #[error(
        "refused: step {step} (clear_new_mk on crypto unit {unit}) was a ceremony step that an earlier run showed and that was never answered, and the unit's new register is not empty ({registers}). A clear sent with the TKE CLI (`ibmcloud tke cryptounit-mk-clrnew`) names no key: if it is still on its way, it clears whatever the new register holds when it lands, after this run's loads or after its rewrap, where it would take the new master key from that unit. Nothing was sent. Evidence that would settle it: the operator who was shown the step says their TKE CLI command has ended (or was never started); then clear that unit's new register with the TKE CLI, selecting that crypto unit only, and apply again: a new register shown empty settles the step"
    )]
    ClearByHandOpen {
        step: String,
        unit: String,
        registers: String,
    },
    /// A ceremony step never shown to the operator: the apply stopped first.
    #[error("step {step} ({action}) was not started: an earlier step stopped the apply")]
    NotStarted { step: String, action: Action },
    /// The operator interrupted; the steps in flight finished and are journaled.
    #[error("{0}")]
    Interrupted(Box<Stopped>),
}

/// What the executor needs besides the plan.
pub struct Context<'a, B: Backend, O: Operator> {
    pub backend: &'a B,
    pub journal: &'a mut Journal,
    pub audit: &'a mut Audit,
    pub progress: &'a mut dyn Progress,
    /// The apply run number in the journal.
    pub run: u32,
    /// The decrypted key parts of each instance that loads.
    pub key_parts: &'a HashMap<String, Vec<Secret32>>,
    /// Operations in flight at most (1 ..= PARALLELISM_MAX).
    pub parallelism: usize,
    /// The ceremony steps, by step id: the operator performs these by hand, and the executor
    /// verifies each in the live state.
    pub ceremony: &'a HashMap<String, Instruction>,
    pub operator: &'a O,
    /// How long the live state may take to show a ceremony step's effect.
    pub verify_timeout: Duration,
    /// The other state folders of this machine, asked again just before a rewrap.
    pub other_folders: Option<&'a dyn OtherFolderWitness>,
}

/// Which steps may start: dependencies finished, crypto unit free. Among those, the step with
/// the longest chain of steps after it goes first (so the critical path is never kept
/// waiting), then plan order.
struct Schedule<'p> {
    steps: &'p [Step],
    unmet: Vec<usize>,
    dependents: Vec<Vec<usize>>,
    height: Vec<usize>,
    ready: BinaryHeap<(usize, Reverse<usize>)>,
    /// Crypto units with an operation in flight, and per instance how many; an instance
    /// with its rewrap in flight is in `units` under its own id.
    busy_units: HashMap<&'p str, ()>,
    busy_per_instance: HashMap<&'p str, usize>,
    finished: usize,
}

impl<'p> Schedule<'p> {
    fn new(steps: &'p [Step]) -> Self {
        let index: HashMap<&str, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let mut unmet = vec![0; steps.len()];
        let mut dependents = vec![Vec::new(); steps.len()];
        for (i, step) in steps.iter().enumerate() {
            for dependency in &step.depends_on {
                let d = index[dependency.as_str()];
                assert!(d < i, "plan steps are in dependency order");
                unmet[i] += 1;
                dependents[d].push(i);
            }
        }
        let mut height = vec![1; steps.len()];
        for i in (0..steps.len()).rev() {
            height[i] = 1 + dependents[i].iter().map(|&d| height[d]).max().unwrap_or(0);
        }
        let ready = (0..steps.len())
            .filter(|&i| unmet[i] == 0)
            .map(|i| (height[i], Reverse(i)))
            .collect();
        Self {
            steps,
            unmet,
            dependents,
            height,
            ready,
            busy_units: HashMap::new(),
            busy_per_instance: HashMap::new(),
            finished: 0,
        }
    }

    fn free(&self, step: &Step) -> bool {
        let instance_busy = self.busy_units.contains_key(step.instance.as_str());
        match &step.unit {
            Some(unit) => !instance_busy && !self.busy_units.contains_key(unit.as_str()),
            None => {
                !instance_busy
                    && self
                        .busy_per_instance
                        .get(step.instance.as_str())
                        .copied()
                        .unwrap_or(0)
                        == 0
            }
        }
    }

    /// Up to `slots` steps that may start now; marks their units busy.
    fn start(&mut self, slots: usize) -> Vec<usize> {
        let mut started = Vec::new();
        let mut deferred = Vec::new();
        while started.len() < slots {
            let Some((height, Reverse(i))) = self.ready.pop() else {
                break;
            };
            let step = &self.steps[i];
            if !self.free(step) {
                deferred.push((height, Reverse(i)));
                continue;
            }
            let key = step.unit.as_deref().unwrap_or(step.instance.as_str());
            self.busy_units.insert(key, ());
            *self
                .busy_per_instance
                .entry(step.instance.as_str())
                .or_default() += 1;
            started.push(i);
        }
        self.ready.extend(deferred);
        started
    }

    fn release(&mut self, i: usize) {
        let step = &self.steps[i];
        let key = step.unit.as_deref().unwrap_or(step.instance.as_str());
        self.busy_units.remove(key);
        if let Some(count) = self.busy_per_instance.get_mut(step.instance.as_str()) {
            *count -= 1;
        }
    }

    fn finish(&mut self, i: usize) {
        self.finished += 1;
        for &d in &self.dependents[i] {
            self.unmet[d] -= 1;
            if self.unmet[d] == 0 {
                self.ready.push((self.height[d], Reverse(d)));
            }
        }
    }
}

/// What one step's future yields to the driver.
struct Finished {
    index: usize,
    started: Instant,
    result: Result<Outcome, ApplyError>,
    notes: Vec<String>,
}

/// Runs the steps of `plan`. `live` is the state the plan was made from; the executor tracks
/// each unit's registers from it for the audit trail.
pub async fn run<B: Backend, O: Operator>(
    context: &mut Context<'_, B, O>,
    plan: &Plan,
    live: &[LiveInstance],
) -> Result<(), ApplyError> {
    run_interruptible(context, plan, live, &Interrupt::new()).await
}

/// `run`, until `interrupt` is raised: then no step starts (no ceremony step is shown), the
/// steps in flight finish and are journaled, and it ends with `ApplyError::Interrupted`
/// saying where it stopped. An error writing the journal or the audit trail still wins.
pub async fn run_interruptible<B: Backend, O: Operator>(
    context: &mut Context<'_, B, O>,
    plan: &Plan,
    live: &[LiveInstance],
    interrupt: &Interrupt,
) -> Result<(), ApplyError> {
    let mut units: HashMap<&str, CryptoUnit> = live
        .iter()
        .flat_map(|i| i.crypto_units.iter())
        .map(|u| (u.hsm_id.as_str(), u.clone()))
        .collect();
    let instances: HashMap<&str, &InstancePlan> =
        plan.instances.iter().map(|i| (i.id.as_str(), i)).collect();
    let parallelism = context.parallelism.clamp(1, PARALLELISM_MAX);
    let backend = context.backend;
    let key_parts = context.key_parts;
    let (ceremony, operator, verify_timeout) =
        (context.ceremony, context.operator, context.verify_timeout);
    let other_folders = context.other_folders;
    let mut schedule = Schedule::new(&plan.steps);
    let mut in_flight = FuturesUnordered::new();
    let mut stopped: Option<ApplyError> = None;
    // Outcomes that arrived since the last write. They are written together with the intents
    // of the steps that start next, outcomes first, under one fsync: a dependency's outcome is
    // never behind its dependent's intent in the file, and a torn tail loses a suffix only.
    let mut records: Vec<Record> = Vec::new();
    // Audit entries of the outcomes in `records`: written after the journal has them.
    let mut audits: Vec<serde_json::Value> = Vec::new();
    // How each step ended, the steps in flight, and those in flight when the interrupt came.
    let mut ends: Vec<Option<StepEnd>> = vec![None; plan.steps.len()];
    let mut running: Vec<usize> = Vec::new();
    let mut interrupted: Option<Vec<usize>> = None;
    let mut stopping_before_interrupt = false;
    loop {
        if interrupted.is_none() && interrupt.is_raised() {
            operator.halt();
            context.progress.interrupted(running.len());
            interrupted = Some(running.clone());
            stopping_before_interrupt = stopped.is_some();
        }
        let mut started = if stopped.is_none() && interrupted.is_none() {
            schedule.start(parallelism - in_flight.len())
        } else {
            Vec::new()
        };
        // Read before the intents are written: the deadline each request keeps is never later
        // than the one its intent records.
        let window = context.journal.send_window();
        let send_by = window.map_or(SendBy::ANY_TIME, |window| {
            SendBy::within(boot_clock_ms(), window)
        });
        let now = started
            .iter()
            .any(|&i| plan.steps[i].action == Action::RewrapKeyStorage)
            .then(crate::timestamp::utc_now);
        records.extend(started.iter().map(|&i| {
            let step = &plan.steps[i];
            let by_hand = ceremony.contains_key(&step.id);
            Record::Intent {
                at: now
                    .clone()
                    .filter(|_| step.action == Action::RewrapKeyStorage),
                step: format!("r{}.{}", context.run, step.id),
                action: step.action,
                instance: step.instance.clone(),
                unit: step.unit.clone(),
                by_hand,
                send_within_ms: window
                    .filter(|_| !by_hand && step.action != Action::RemoveUnit)
                    .map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
            }
        }));
        // If the journal cannot be written, nothing new may start (its intent is not on
        // disk); the steps in flight still finish, and their outcomes stay unknown to the
        // journal, so the rerun settles them from the live state.
        if let Err(error) = context.journal.append_all(std::mem::take(&mut records)) {
            started.clear();
            operator.halt();
            stopped.get_or_insert(error.into());
        } else if let Err(error) = context.audit.write_all(std::mem::take(&mut audits)) {
            operator.halt();
            stopped.get_or_insert(error.into());
        }
        running.extend(&started);
        // Read once for every rewrap of this round, now that their intents are on disk.
        let folders_now = match other_folders {
            Some(witness)
                if started
                    .iter()
                    .any(|&i| plan.steps[i].action == Action::RewrapKeyStorage) =>
            {
                Some((witness.at_plan(), std::sync::Arc::new(witness.now())))
            }
            _ => None,
        };
        {
            for index in started {
                let step = &plan.steps[index];
                context.progress.step_started(step);
                let instance = instances[step.instance.as_str()];
                let parts = key_parts
                    .get(&step.instance)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                let folders_now = folders_now.clone();
                in_flight.push(async move {
                    let started = Instant::now();
                    // Its intent is on disk: a rewrap another folder journaled since the
                    // plan is found here, and that folder's own check finds this one.
                    let sent_elsewhere = match &folders_now {
                        Some((before, now)) if step.action == Action::RewrapKeyStorage => {
                            sent_since_plan(before, now, &step.instance)
                        }
                        _ => Vec::new(),
                    };
                    let (result, notes) = if !sent_elsewhere.is_empty() {
                        let why = not_sent_why(&sent_elsewhere);
                        let step = step.id.clone();
                        (Err(ApplyError::Changed { step, why }), Vec::new())
                    } else if step.action == Action::RemoveUnit {
                        (Ok(Outcome::Done), Vec::new())
                    } else if let Some(instruction) = ceremony.get(&step.id) {
                        perform_by_hand(
                            backend,
                            operator,
                            step,
                            instance,
                            instruction,
                            verify_timeout,
                        )
                        .await
                    } else {
                        perform_settled(backend, step, instance, parts, send_by).await
                    };
                    Finished {
                        index,
                        started,
                        result,
                        notes,
                    }
                });
            }
        }
        let next = tokio::select! {
            biased;
            () = interrupt.raised(), if interrupted.is_none() => None,
            next = in_flight.next() => Some(next),
        };
        // Interrupted: the top of the loop stops the schedule, then the steps in flight drain.
        let Some(next) = next else { continue };
        let Some(first) = next else {
            break;
        };
        let mut finished = vec![first];
        while let Some(Some(more)) = in_flight.next().now_or_never() {
            finished.push(more);
        }
        let mut outcomes = Vec::new();
        let mut lines = Vec::new();
        for done in finished {
            let step = &plan.steps[done.index];
            schedule.release(done.index);
            running.retain(|&i| i != done.index);
            ends[done.index] = Some(StepEnd::of(&done.result));
            let key = format!("r{}.{}", context.run, step.id);
            let elapsed = done.started.elapsed();
            let unit = step.unit.as_deref().and_then(|id| units.get_mut(id));
            let before = unit.as_ref().map(|u| registers(u));
            lines.extend(done.notes);
            match done.result {
                Ok(outcome) => {
                    let after = unit.map(|u| {
                        effect(
                            step.action,
                            &mut u.new_register,
                            &mut u.current_register,
                            &instances[step.instance.as_str()].target_verification_pattern,
                        );
                        registers(u)
                    });
                    audits.push(json!({
                        "kind": "step", "run": context.run, "step": step.id, "action": step.action,
                        "instance": step.instance, "unit": step.unit, "before": before, "after": after,
                        "outcome": outcome, "elapsed_ms": elapsed.as_millis() as u64,
                    }));
                    lines.push(format!(
                        "{} {:<4} {:<18} {}  done in {:.2} s{}",
                        step.action.symbol(),
                        step.id,
                        step.action.as_str(),
                        step.unit.as_deref().unwrap_or("(whole service instance)"),
                        elapsed.as_secs_f64(),
                        match &outcome {
                            Outcome::SettledDone { evidence } if evidence.starts_with(CEREMONY) =>
                                if evidence.contains(ATTESTED) {
                                    " (by hand; attested by the operator: the service shows no rotation status)"
                                } else {
                                    " (by hand; verified in the live state)"
                                },
                            Outcome::SettledDone { .. } =>
                                " (response lost; settled from the live state)",
                            _ => "",
                        }
                    ));
                    outcomes.push((done.index, Record::outcome(key, outcome)));
                }
                Err(error) => {
                    let not_done = match &error {
                        ApplyError::Step { source, .. } => Some(source.to_string()),
                        ApplyError::Changed { why, .. } => {
                            Some(format!("not sent: the live state changed ({why})"))
                        }
                        ApplyError::NotStarted { .. } => {
                            Some("not started: an earlier step stopped the apply".into())
                        }
                        _ => None,
                    };
                    if let ApplyError::ForeignRewrap { why, .. } = &error {
                        // Sticky: every later plan refuses until the operator attests what
                        // IBM support showed.
                        outcomes.push((
                            usize::MAX,
                            Record::outcome(
                                key,
                                Outcome::ForeignRewrap {
                                    evidence: why.clone(),
                                },
                            ),
                        ));
                    } else if let Some(reason) = not_done {
                        outcomes.push((
                            usize::MAX,
                            Record::outcome(key, Outcome::NotDone { reason }),
                        ));
                    }
                    audits.push(json!({
                        "kind": "step", "run": context.run, "step": step.id, "action": step.action,
                        "instance": step.instance, "unit": step.unit, "before": before,
                        "outcome": "failed", "error": error.to_string(),
                        "elapsed_ms": elapsed.as_millis() as u64,
                    }));
                    // The first error is the one reported; the steps in flight still finish
                    // and are journaled, nothing new starts, no ceremony step is shown.
                    operator.halt();
                    stopped.get_or_insert(error);
                }
            }
        }
        let (indices, outcomes): (Vec<usize>, Vec<Record>) = outcomes.into_iter().unzip();
        records = outcomes;
        for line in &lines {
            context.progress.line(line);
        }
        for index in indices.into_iter().filter(|&i| i != usize::MAX) {
            schedule.finish(index);
            context
                .progress
                .step_finished(schedule.finished, plan.steps.len(), &plan.steps[index]);
        }
    }
    context.audit.sync()?;
    if let Some(in_flight) = interrupted
        && !matches!(stopped, Some(ApplyError::Journal(_) | ApplyError::Audit(_)))
    {
        // An error that the interrupt caused (a prompt it ended) is in the steps' ends.
        let earlier = stopped.filter(|_| stopping_before_interrupt);
        return Err(ApplyError::Interrupted(Box::new(where_stopped(
            plan, ends, &in_flight, earlier,
        ))));
    }
    if let Some(error) = stopped {
        return Err(error);
    }
    assert_eq!(
        schedule.finished,
        plan.steps.len(),
        "every step of an acyclic plan runs"
    );
    Ok(())
}

/// The account of an interrupted run: `ends` of every step that finished, `in_flight` the
/// steps running when the interrupt came, `earlier` the error that had stopped it before.
fn where_stopped(
    plan: &Plan,
    ends: Vec<Option<StepEnd>>,
    in_flight: &[usize],
    earlier: Option<ApplyError>,
) -> Stopped {
    let mut stopped = Stopped {
        earlier_error: earlier.map(Box::new),
        ..Stopped::default()
    };
    for (index, end) in ends.into_iter().enumerate() {
        let id = plan.steps[index].id.clone();
        match end {
            None | Some(StepEnd::NotStarted) => stopped.not_started.push(id),
            Some(end) if in_flight.contains(&index) => stopped.in_flight.push((id, end)),
            Some(StepEnd::Done) => stopped.done.push(id),
            Some(end) => stopped.failed.push((id, end)),
        }
    }
    stopped
}

fn registers(unit: &CryptoUnit) -> Registers {
    Registers {
        new_register: unit.new_register.clone(),
        current_register: unit.current_register.clone(),
    }
}
