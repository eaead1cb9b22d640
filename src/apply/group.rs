//! Applying a domain group's change: plan from what the machine shows, run the first ready
//! step, read again, plan again, until nothing is left. Every store is observable, so a
//! rerun after any stop (a crash, a failed tool, an operator who stopped) plans from where
//! the machine is; the journal adds the intent and outcome of each step and the cards'
//! serial numbers.
//!
//! - Tool steps: intent fsynced, the tool run through the [`ToolRunner`] seam, outcome
//!   written, then the stores read again; a tool that failed but whose effect shows is
//!   settled as done, one that succeeded but whose effect does not show stops the apply.
//! - Ceremony steps: the instruction is shown, the operator answers, and `mkvps` must show
//!   the effect within the timeout.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::group_journal::{GroupJournal, GroupRecord};
use crate::backend::send_by::{SendBy, boot_clock_ms};
use crate::backend::zcrypt::group::{
    LUKS2_COMPLETE_FLAGS, LUKS2_FROM_OLD_FLAGS, LUKS2_STAGE_FLAGS, ReadError, ZcryptBackend,
    luks2_args,
};
use crate::backend::zcrypt::pins::UserPins;
use crate::backend::zcrypt::tools::ToolCall;
use crate::model::domain_group::{Apqn, LiveGroup, StoreKind};
use crate::model::domain_group_desired::{DesiredGroup, DesiredStore};
use crate::model::registers::{MkType, Mkvp};
use crate::plan::domain_group::effect::World;
use crate::plan::domain_group::{
    GroupAction, GroupEvidence, GroupPlan, GroupRefusal, GroupStep, apqn_changes, plan_group,
};

/// Steps one apply runs at most (a group of 256 APQNs and 10,000 stores needs fewer).
pub const GROUP_STEPS_MAX: usize = 100_000;
/// How often `mkvps` is read while a ceremony step is awaited.
pub const CEREMONY_POLL_MS: u64 = 200;

/// The operator's answer to a ceremony step.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Done,
    NotDone,
    Stopped(String),
}

pub trait GroupOperator {
    /// Shows the instruction and waits for the operator's answer.
    fn perform(&self, instruction: &str) -> Answer;
}

#[derive(Debug)]
pub enum GroupApplyError {
    /// Refused by a pre-check or for missing evidence: exit 3.
    Refused(GroupRefusal),
    /// A step failed or the machine could not be read: exit 1.
    Failed(String),
}

/// The machine contradicting itself is refused as the pre-checks refuse: exit 3.
impl From<ReadError> for GroupApplyError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::Failed(why) => Self::Failed(why),
            ReadError::Contradicts { message, settle } => Self::Refused(GroupRefusal {
                check: "mkvps_consistent",
                message,
                settle: Some(settle),
            }),
        }
    }
}

impl std::fmt::Display for GroupApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(refusal) => refusal.fmt(f),
            Self::Failed(why) => f.write_str(why),
        }
    }
}

fn now() -> String {
    crate::apply::record::utc_now()
}

pub struct GroupApply<'a, O: GroupOperator> {
    pub backend: &'a ZcryptBackend,
    pub desired: &'a DesiredGroup,
    pub journal: &'a mut GroupJournal,
    pub operator: &'a O,
    pub verify_timeout: Duration,
    /// Progress lines (stderr in the CLI).
    pub progress: &'a dyn Fn(&str),
    /// The openCryptoki USER PINs, answered when `pkcshsm_mk_change` asks for them; read by
    /// the caller before anything runs.
    pub user_pins: Option<Arc<UserPins>>,
}

impl<O: GroupOperator> GroupApply<'_, O> {
    /// The group as the machine shows it, with an openCryptoki operation closed outside mkplan
    /// settled from the journal (so a step's outcome is compared with what the planner sees).
    fn read(&self) -> Result<LiveGroup, GroupApplyError> {
        let mut live = self
            .backend
            .read(self.desired)
            .map_err(GroupApplyError::from)?;
        let evidence = self.evidence();
        crate::plan::domain_group::tokens_closed::settle_closed_operation(
            &mut live,
            self.desired,
            &evidence,
        );
        Ok(live)
    }

    fn evidence(&self) -> GroupEvidence {
        super::group_evidence::group_evidence(self.journal, self.desired)
    }

    fn plan(&self, live: &LiveGroup) -> Result<GroupPlan, GroupApplyError> {
        plan_group(self.desired, live, &self.evidence()).map_err(GroupApplyError::Refused)
    }

    fn record(&mut self, record: GroupRecord) -> Result<(), GroupApplyError> {
        self.journal.append(record).map_err(GroupApplyError::Failed)
    }

    /// Runs until the group converges; the number of steps run.
    pub fn run(&mut self) -> Result<usize, GroupApplyError> {
        let identity = self.journal.identity().to_string();
        for (step, what) in self.journal.unsettled() {
            (self.progress)(&format!(
                "Step {step} ({what}) was interrupted: settled by reading the stores again."
            ));
            self.record(GroupRecord::Outcome {
                identity: identity.clone(),
                at: now(),
                step,
                result: "settled_by_reading".into(),
                detail: "interrupted; the stores are read again".into(),
            })?;
        }
        for count in 0..GROUP_STEPS_MAX {
            self.check_selection()?;
            let live = self.read()?;
            let plan = self.plan(&live)?;
            let Some(step) = plan.ready().next().cloned() else {
                if self.journal.open_change_serials().is_some() {
                    self.record(GroupRecord::Done {
                        identity: identity.clone(),
                        at: now(),
                    })?;
                }
                return Ok(count);
            };
            if self.journal.open_change_serials().is_none() {
                let serials = live
                    .apqns
                    .iter()
                    .filter_map(|a| Some((format!("{:02x}", a.apqn.card), a.card_serial.clone()?)))
                    .collect();
                let targets = self
                    .desired
                    .master_keys
                    .iter()
                    .map(|(t, vp)| (t.to_string(), vp.to_string()))
                    .collect();
                let apqns = self.desired.apqns.iter().map(ToString::to_string).collect();
                self.record(GroupRecord::Begin {
                    identity: identity.clone(),
                    at: now(),
                    targets,
                    serials,
                    apqns,
                })?;
            }
            if step.ceremony {
                self.ceremony(&step, &live)?;
            } else {
                self.tool(&step, &live)?;
            }
        }
        Err(GroupApplyError::Failed(format!(
            "more than {GROUP_STEPS_MAX} steps: stopped; rerun to continue"
        )))
    }

    /// A group that selects its APQNs selects the same ones before every step as when this
    /// apply began: a card that came or went while it ran (a card configured online, one
    /// taken away) stops it before the next step, rather than after the change's end.
    fn check_selection(&self) -> Result<(), GroupApplyError> {
        let Some(selector) = &self.desired.selector else {
            return Ok(());
        };
        let mut again = self.desired.clone();
        self.backend.resolve_apqns(&mut again)?;
        let began: BTreeSet<Apqn> = self.desired.apqns.iter().copied().collect();
        let now: BTreeSet<Apqn> = again.apqns.iter().copied().collect();
        if now == began {
            return Ok(());
        }
        let words = |set: &BTreeSet<Apqn>| {
            set.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(GroupApplyError::Refused(GroupRefusal {
            check: "apqns_unchanged",
            message: format!(
                "`apqns: {selector}` selected {} when this apply began, and selects {} now: {}. mkplan stopped before its next step: a card that went may still hold keys under the old master key once the others are set, and one that came took no part in the loads",
                words(&began),
                if now.is_empty() {
                    "none".into()
                } else {
                    words(&now)
                },
                apqn_changes(&now, &began)
            ),
            settle: Some(format!(
                "the group back on {}: bring back a card that went (`lszcrypt` must show it with the domain), or leave out a card that came (`cards:` in the selector, or list the APQNs: apqns: [{}]), then apply again",
                words(&began),
                words(&began)
            )),
        }))
    }

    fn expected(&self, step: &GroupStep, live: &LiveGroup) -> World {
        let mut world = World::from_live(self.desired, live);
        world.perform(step, self.desired);
        world
    }

    fn tool(&mut self, step: &GroupStep, live: &LiveGroup) -> Result<(), GroupApplyError> {
        let identity = self.journal.identity().to_string();
        let mut call =
            step_call(self.backend, self.desired, step, live).map_err(GroupApplyError::Failed)?;
        if step.store.as_ref().map(|s| s.kind) == Some(StoreKind::OpenCryptoki) {
            call.user_pins = Some(self.user_pins.clone().ok_or_else(|| {
                GroupApplyError::Failed(format!(
                    "step {} ({}) runs pkcshsm_mk_change, which asks for each token's USER PIN, and none was read (a bug: please report it)",
                    step.id, step.action
                ))
            })?);
        }
        (self.progress)(&format!("{} {}: {}", step.id, step.action, call.shown()));
        // Read before the intent is written: the deadline the tool keeps is never later than
        // the one its intent records.
        let window = self.journal.send_window();
        let send_by = window.map_or(SendBy::ANY_TIME, |w| SendBy::within(boot_clock_ms(), w));
        self.record(GroupRecord::Intent {
            identity: identity.clone(),
            at: now(),
            step: step.id.clone(),
            action: step.action.to_string(),
            what: call.shown(),
            send_within_ms: window.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
        })?;
        send_by
            .check(&format!("step {} ({})", step.id, call.shown()))
            .map_err(|e| GroupApplyError::Failed(e.to_string()))?;
        let result = self.backend.run(&call);
        let said = match &result {
            Ok(output) if output.success() => "exit 0".to_string(),
            Ok(output) => format!(
                "exit {}: {}",
                output.code.map_or("by a signal".into(), |c| c.to_string()),
                output.last_words()
            ),
            Err(why) => why.clone(),
        };
        let ok = matches!(&result, Ok(output) if output.success());
        // Settled by reading: the store's state decides, whatever the tool said.
        let after = self.read()?;
        let store = step.store.as_ref().expect("a tool step names its store");
        let shown = after
            .stores
            .iter()
            .find(|s| &s.id == store)
            .map(|s| &s.state);
        let wanted = self.expected(step, live);
        let took = wanted
            .stores
            .iter()
            .find(|s| &s.id == store)
            .map(|s| &s.state)
            == shown;
        let outcome = match (took, ok) {
            (true, _) => "done",
            (false, false) => "failed",
            (false, true) => "not_shown",
        };
        self.record(GroupRecord::Outcome {
            identity,
            at: now(),
            step: step.id.clone(),
            result: outcome.into(),
            detail: said.clone(),
        })?;
        match (took, ok) {
            (true, false) => {
                (self.progress)(&format!(
                    "  {} reported a failure ({said}), but the store shows the step done.",
                    call.program
                ));
                Ok(())
            }
            (true, true) => Ok(()),
            (false, false) => Err(GroupApplyError::Failed(format!(
                "step {} ({}) failed: {} {said}. Nothing more was run; fix the cause and rerun apply, which continues from what the stores show",
                step.id,
                step.action,
                call.shown()
            ))),
            (false, true) => Err(GroupApplyError::Failed(format!(
                "step {} ({}): {} succeeded, but {store} does not show the effect. Check it with the tool, then rerun apply",
                step.id,
                step.action,
                call.shown()
            ))),
        }
    }

    fn ceremony(&mut self, step: &GroupStep, live: &LiveGroup) -> Result<(), GroupApplyError> {
        let identity = self.journal.identity().to_string();
        let apqn = step.apqn.expect("a ceremony step names its APQN");
        let mk_type = step.mk_types[0];
        let wanted = self.expected(step, live);
        let expected = wanted
            .registers
            .get(&apqn)
            .and_then(|r| r.get(&mk_type))
            .cloned();
        let instruction = instruction(self.desired, step);
        self.record(GroupRecord::Intent {
            identity: identity.clone(),
            at: now(),
            step: step.id.clone(),
            action: step.action.to_string(),
            what: format!("ceremony on {apqn} {mk_type}"),
            send_within_ms: None,
        })?;
        let answer = self.operator.perform(&instruction);
        if answer != Answer::Done {
            let why = match answer {
                Answer::NotDone => "the operator did not perform it".to_string(),
                Answer::Stopped(why) => why,
                Answer::Done => unreachable!(),
            };
            self.record(GroupRecord::Outcome {
                identity,
                at: now(),
                step: step.id.clone(),
                result: "stopped".into(),
                detail: why.clone(),
            })?;
            return Err(GroupApplyError::Failed(format!(
                "stopped at ceremony step {} ({}): {why}. Rerun apply to continue",
                step.id, step.action
            )));
        }
        let deadline = Instant::now() + self.verify_timeout;
        loop {
            let apqns = self
                .backend
                .read_apqns(self.desired)
                .map_err(GroupApplyError::from)?;
            let shown = apqns
                .iter()
                .find(|a| a.apqn == apqn)
                .and_then(|a| a.registers.as_ref()?.get(&mk_type).cloned());
            if shown.is_some() && shown == expected {
                self.record(GroupRecord::Outcome {
                    identity,
                    at: now(),
                    step: step.id.clone(),
                    result: "done".into(),
                    detail: format!("mkvps of {apqn} shows it"),
                })?;
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.record(GroupRecord::Outcome {
                    identity,
                    at: now(),
                    step: step.id.clone(),
                    result: "not_shown".into(),
                    detail: format!("{shown:?}"),
                })?;
                return Err(GroupApplyError::Failed(format!(
                    "ceremony step {} ({}): {apqn}'s mkvps does not show it after {} s. Check with `lszcrypt -c {apqn}`, then rerun apply",
                    step.id,
                    step.action,
                    self.verify_timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(CEREMONY_POLL_MS));
        }
    }
}

/// What the operator reads for a ceremony step: what to do, where, and what mkplan then
/// checks in `mkvps`.
pub fn instruction(desired: &DesiredGroup, step: &GroupStep) -> String {
    let apqn = step.apqn.map(|a| a.to_string()).unwrap_or_default();
    let mk_type = step.mk_types.first().copied().unwrap_or(MkType::Wk);
    let vp = step
        .verification_pattern
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let check = match step.action {
        GroupAction::ClearNewMk => format!("{mk_type} NEW: empty"),
        GroupAction::LoadNewMk if mk_type.is_ep11() => format!("WK NEW: uncommitted 0x{vp}…"),
        GroupAction::LoadNewMk => format!("{mk_type} NEW: full 0x{vp}"),
        GroupAction::CommitNewMk => format!("WK NEW: committed 0x{vp}…"),
        _ => format!("{mk_type} CUR: valid 0x{vp}…, {mk_type} NEW: empty"),
    };
    format!(
        "\nCeremony step {id} ({action}) on APQN {apqn} of domain group {group}:\n  {description}\n  mkplan then checks {apqn}'s mkvps for: {check}\n",
        id = step.id,
        action = step.action,
        group = desired.name,
        description = step.description,
    )
}

/// `pkcshsm_mk_change reencipher`'s option for a new key of `mk_type`, with the key's
/// verification pattern as long as the tool reads it (openCryptoki `parse_mkvp`:
/// `EP11_WKVP_LENGTH` 16 bytes, `CCA_MKVP_LENGTH` 8; it ignores more, with a warning). ASYM
/// has none: the CCA token never uses the ASYM master key.
pub fn ock_mkvp_args(mk_type: MkType, vp: &Mkvp) -> Result<[String; 2], String> {
    let (flag, bytes) = match mk_type {
        MkType::Wk => ("--ep11-wkvp", 16),
        MkType::Sym => ("--cca-sym-mkvp", 8),
        MkType::Aes => ("--cca-aes-mkvp", 8),
        MkType::Apka => ("--cca-apka-mkvp", 8),
        MkType::Asym => {
            return Err("openCryptoki's CCA token does not use the ASYM master key: mkplan never stages tokens for it (a bug: please report it)".into());
        }
    };
    let hex = vp.as_str();
    let hex = hex.get(..bytes * 2).ok_or_else(|| {
        format!("{mk_type} verification pattern {vp} is shorter than the {bytes} bytes pkcshsm_mk_change reads")
    })?;
    Ok([flag.to_string(), hex.to_string()])
}

/// The command a tool step runs, or why mkplan cannot run it.
pub fn step_call(
    backend: &ZcryptBackend,
    desired: &DesiredGroup,
    step: &GroupStep,
    live: &LiveGroup,
) -> Result<ToolCall, String> {
    let store = step.store.as_ref().ok_or("a ceremony step runs no tool")?;
    let apqns = ZcryptBackend::apqn_list(desired);
    let args = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    match (store.kind, step.action) {
        (StoreKind::ZkeyKey, action) => {
            let how: &[&str] = match action {
                GroupAction::StageReencipher => &["--to-new", "--staged"],
                GroupAction::CompleteReencipher => &["--complete"],
                GroupAction::ReencipherFromOld => &["--from-old"],
                _ => return Err(format!("{action} is not a store step")),
            };
            let mut a = args(&["reencipher", "--name", &store.name, "--apqns", &apqns]);
            a.extend(args(how));
            Ok(backend.call(desired, "zkey", a))
        }
        (StoreKind::OpenCryptoki, GroupAction::StageReencipher) => {
            let mut a = args(&["reencipher", "--apqns", &apqns]);
            for mk_type in &step.mk_types {
                a.extend(ock_mkvp_args(*mk_type, &desired.master_keys[mk_type])?);
            }
            Ok(backend.call(desired, "pkcshsm_mk_change", a))
        }
        (StoreKind::OpenCryptoki, GroupAction::CompleteReencipher) => {
            let id = live
                .stores
                .iter()
                .find(|s| &s.id == store)
                .and_then(|s| s.handle.clone())
                .ok_or("no open pkcshsm_mk_change operation to finalize")?;
            Ok(backend.call(
                desired,
                "pkcshsm_mk_change",
                args(&["finalize", "--id", &id]),
            ))
        }
        (StoreKind::Luks2Volume, action) => {
            let flags: &[&str] = match action {
                GroupAction::StageReencipher => LUKS2_STAGE_FLAGS,
                GroupAction::CompleteReencipher => LUKS2_COMPLETE_FLAGS,
                GroupAction::ReencipherFromOld => LUKS2_FROM_OLD_FLAGS,
                _ => return Err(format!("mkplan does not {action} a LUKS2 volume")),
            };
            let key_file = desired
                .stores
                .iter()
                .find_map(|s| match s {
                    DesiredStore::Luks2Volume { device, key_file } if device == &store.name => {
                        Some(key_file)
                    }
                    _ => None,
                })
                .ok_or_else(|| format!("{store} is not declared"))?;
            let mut args = luks2_args("reencipher", &store.name, key_file, flags);
            if action != GroupAction::ReencipherFromOld {
                // Staging: the tool asks before it cancels a pending staging (the planner
                // stages only a volume with none, or with one under no usable key). Completing: the key slots of
                // the old key, now unbound, are removed (`LUKS2_COMPLETE_FLAGS`). The tool asks
                // first, and stdin is no terminal here. Last, so the journal's earlier commands
                // still match.
                args.push("--batch-mode".into());
            }
            Ok(backend.call(desired, "zkey-cryptsetup", args))
        }
        (StoreKind::Application, action) => {
            let Some(DesiredStore::Application {
                stage, complete, ..
            }) = desired.stores.iter().find(
                |s| matches!(s, DesiredStore::Application { name, .. } if name == &store.name),
            )
            else {
                return Err(format!("{store} is not declared"));
            };
            let command = if action == GroupAction::StageReencipher {
                stage
            } else {
                complete
            };
            Ok(backend.call(desired, &command[0], command[1..].to_vec()))
        }
        (kind, action) => Err(format!(
            "mkplan cannot {action} a {} yet: do it by hand",
            kind.as_str()
        )),
    }
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
