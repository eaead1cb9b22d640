//! `apply`, `unlock` and `audit verify`: the commands that change crypto units, and those
//! that look after the state directory.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::ApplyArgs;
use super::ceremony::{TerminalOperator, ceremony_steps};
use super::context::{
    Desired, evidence_for, open_backend, read_desired, refresh_backend, scope_for,
};
use super::conventions::quiet;
use super::early_key_parts::EarlyKeyParts;
use super::interrupt;
use super::keypart::{NamedBy, open_key_parts};
use super::saved_plan::{check_saved, open_saved};
use crate::apply::executor::{self, Context, Progress};
use crate::apply::journal::Record;
use crate::apply::read_back;
use crate::apply::resume::close_finished;
use crate::apply::session::{self, Started};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::keypart::{self, Secret32};
use crate::model::{KeyPartSource, LiveFleet, NewRegister};
use crate::plan::ceremony::Instruction;
use crate::plan::{Action, Plan};
use crate::render;
use crate::store::Store;

pub async fn apply(args: &ApplyArgs, store: &Store) -> Result<u8> {
    let (target, flag) = (args.target.as_path(), &args.backend);
    let saved_plan = !is_yaml(target);
    // The parts whose passwords are in the environment decrypt while the plan is made.
    let mut early = EarlyKeyParts::default();
    // What this apply acts on (the desired file's instances on its backend) is known before
    // the lock: a database locks just those instances.
    let (desired, backend, saved) = if saved_plan {
        let saved = open_saved(target, args)?;
        (None, None, Some(saved))
    } else {
        if let Some(other) = &args.desired {
            return Err(Error::Other(format!(
                "--desired {} goes with a saved plan file (`apply PLANFILE --desired FILE`); {} is itself a desired file. Nothing was touched",
                other.display(),
                target.display()
            )));
        }
        let desired = read_desired(target)?.only(&args.only.instances)?;
        // Before the backend: its HTTP client reads the system's root certificates first.
        early = EarlyKeyParts::start(&desired);
        let backend = open_backend(&desired, flag)?;
        (Some(desired), Some(backend), None)
    };
    let (scope, instances) = match (&saved, &desired, &backend) {
        (Some(saved), _, _) => (
            scope_for(store, &saved.desired, &saved.backend).await?,
            saved.desired.instance_ids(),
        ),
        (None, Some(desired), Some(backend)) => (
            scope_for(store, desired, backend).await?,
            desired.instance_ids(),
        ),
        _ => unreachable!("a saved plan or a desired file"),
    };
    let mut writer = store.writer(&scope, &instances, "apply")?;
    let journal = &mut writer.journal;
    let (desired, mut backend, live, mut plan, other_folders) = match (saved, desired, backend) {
        (Some(saved), _, _) => check_saved(saved, journal.records(), store).await?,
        (None, Some(desired), Some(backend)) => {
            let live = refresh_backend(&desired, &backend).await?;
            let mut evidence = evidence_for(journal.records(), &backend, store, &desired);
            // Kept before the plan refuses, so that later plans refuse too.
            let seen =
                crate::apply::evidence::foreign_rewraps_seen(&live, &evidence, &backend.identity());
            if !seen.is_empty() {
                journal
                    .append_all(seen)
                    .map_err(|e| Error::Unsafe(e.to_string()))?;
                evidence = evidence_for(journal.records(), &backend, store, &desired);
            }
            let mut plan = crate::plan::plan(&desired.state, &desired.sha256, &live, &evidence)?;
            desired.stamp(&mut plan, &backend);
            (desired, backend, live, plan, evidence.other_folders)
        }
        _ => unreachable!("a saved plan or a desired file"),
    };
    let identity = backend.identity();
    plan.desired_file = Some(desired.path.display().to_string());
    plan.backend = Some(backend.describe());
    plan.backend_identity = Some(backend.identity());
    report_resume(&plan, &live, journal.records());
    if !plan.changes {
        executor::settle_previous(journal, &plan, &live.instances, &identity)
            .map_err(apply_error)?;
        for line in close_finished(journal, &live.instances, &identity).map_err(apply_error)? {
            // A rotation whose rewrap the registers cannot settle stays open: said loudly.
            if line.starts_with("Kept open") {
                eprintln!("warning: {line}");
            } else {
                eprintln!("{line}");
            }
        }
        eprintln!(
            "No changes: every crypto unit {}already holds the desired master key. Nothing was sent.",
            if plan.left_out.is_empty() {
                ""
            } else {
                "of the instances named by --instance "
            }
        );
        return Ok(0);
    }
    // With -q the plan is shown only where it is asked to be approved.
    let silent = quiet() && args.auto_approve;
    if !saved_plan && !silent {
        let source = format!("{} against {}", desired.path.display(), backend.describe());
        eprint!(
            "{}",
            if super::conventions::colour_stderr() {
                render::text_in_colour(&plan, &source)
            } else {
                render::text(&plan, &source)
            }
        );
    }
    // From here Ctrl-C is caught: the password prompt (which reads Ctrl-C itself, with the
    // terminal's echo off) then restores the terminal before it reports the interrupt.
    let interrupt = interrupt::listen();
    // Before the "yes": a wrong signature key stops the apply while nothing is sent.
    super::signature_keys::prepare(&desired, &mut backend, &live, &plan, args.manual).await?;
    let by_hand = args.manual || backend.read_only().is_some();
    let mut ceremony = ceremony_steps(&desired, &plan, by_hand);
    if !by_hand {
        ceremony.extend(super::signature_keys::rewrap_ceremony(
            &desired, &plan, &backend,
        ));
    }
    if let Some(why) = backend.read_only() {
        eprintln!("{why}");
    }
    if !ceremony.is_empty() {
        eprintln!(
            "{} ceremony step(s): you perform each by hand; mkplan shows it, waits for you on stdin, and checks the live state before it journals the step.",
            ceremony.len()
        );
    }
    // Before the "yes": a wrong or missing password stops the apply while nothing is sent.
    let key_parts = key_parts(&desired, &plan, &ceremony, &mut early)?;
    if !key_parts.is_empty() && !quiet() {
        eprintln!(
            "Key parts decrypted and checked: they combine into the desired master key ({} service instance(s) load it).",
            key_parts.len()
        );
    }
    if !saved_plan && !args.auto_approve {
        interrupt::confirm(&interrupt).await?;
    }
    if interrupt.is_raised() {
        return Err(Error::Other(
            "apply cancelled by the interrupt before the first step; nothing was touched".into(),
        ));
    }
    // A trail whose anchored entries were removed is not extended: new entries would hide it.
    let mut audit = writer.audit()?;
    let journal = &mut writer.journal;
    let Started { run, settled } =
        session::begin(journal, &mut audit, &plan, &live, &other_folders, &identity)
            .map_err(apply_error)?;
    for line in settled {
        eprintln!("settled from the previous run: {line}");
    }
    let mut view = TerminalProgress::new(plan.steps.len());
    // Each instance is read back once its own steps are done, beside the others' steps.
    let (mut progress, finished) = read_back::watch(&mut view, &plan);
    let other_folders = crate::store::files::FolderWitness::new(store, &identity, other_folders);
    let mut context = Context {
        backend: &backend,
        journal,
        audit: &mut audit,
        progress: &mut progress,
        run,
        key_parts: &key_parts,
        parallelism: usize::from(flag.parallelism),
        ceremony: &ceremony,
        operator: &TerminalOperator::with_interrupt(interrupt.clone()),
        verify_timeout: std::time::Duration::from_secs(args.verify_timeout_s),
        other_folders: Some(&other_folders),
    };
    let started = std::time::Instant::now();
    let (outcome, read) = steps_and_read_back(
        executor::run_interruptible(&mut context, &plan, &live.instances, &interrupt),
        read_back::read_back(&backend, &plan, finished),
    )
    .await;
    let elapsed = started.elapsed();
    drop(progress);
    view.finish();
    let finished = match outcome {
        Ok(()) => match read {
            // The rotation is finished: its records say nothing more about what comes next.
            Ok(now) => close_finished(&mut writer.journal, &now.instances, &identity).map(|_| ()),
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    audit
        .record(json!({
            "kind": "apply_finished", "run": run,
            "outcome": match &finished { Ok(()) => "converged".to_string(), Err(e) => format!("stopped: {e}") },
        }))
        .map_err(|e| Error::Other(e.to_string()))?;
    writer
        .journal
        .append(Record::AuditAnchored {
            audit: audit.head(),
            at: Some(crate::timestamp::utc_now()),
        })
        .map_err(|e| Error::Unsafe(e.to_string()))?;
    let resume = interrupt::resume_command(args, &desired.path, store);
    finished.map_err(|error| stopped_error(error, &plan, &resume))?;
    eprintln!(
        "Apply complete: {} steps in {:.2} s, at most {} at a time; every crypto unit's current register holds the desired master key.",
        plan.steps.len(),
        elapsed.as_secs_f64(),
        flag.parallelism
    );
    Ok(0)
}

/// Runs the steps and the reads after them side by side; waits for the reads only if the
/// steps succeeded (a read waits for steps that may never finish).
async fn steps_and_read_back<T>(
    steps: impl std::future::Future<Output = std::result::Result<(), executor::ApplyError>>,
    read: impl std::future::Future<Output = std::result::Result<T, executor::ApplyError>>,
) -> (
    std::result::Result<(), executor::ApplyError>,
    std::result::Result<T, executor::ApplyError>,
) {
    let (mut steps, mut read) = (std::pin::pin!(steps), std::pin::pin!(read));
    let mut early = None;
    let outcome = loop {
        tokio::select! {
            biased;
            outcome = &mut steps => break outcome,
            done = &mut read, if early.is_none() => early = Some(done),
        }
    };
    let read = match early {
        Some(done) => done,
        None if outcome.is_ok() => read.await,
        None => Err(executor::ApplyError::NotConverged(
            "not read: the steps stopped".into(),
        )),
    };
    (outcome, read)
}

/// A desired file is named `.yaml` or `.yml`, in any case (`PLAN.YAML` from a Windows share).
fn is_yaml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// On a rerun, says what is already done and what the journal left open.
fn report_resume(plan: &Plan, live: &LiveFleet, records: &[Record]) {
    let open = crate::apply::evidence::unsettled(records).len();
    let runs = records
        .iter()
        .filter(|r| matches!(r, Record::ApplyStarted { .. }))
        .count();
    if runs == 0 {
        return;
    }
    let units: usize = live.instances.iter().map(|i| i.crypto_units.len()).sum();
    let done = plan
        .instances
        .iter()
        .flat_map(|i| i.units.iter().map(move |u| (i, u)))
        .filter(|(i, u)| {
            u.before
                .current_register
                .holds(&i.target_verification_pattern)
                && u.before.new_register == NewRegister::Empty
        })
        .count();
    eprintln!(
        "Resuming from the journal ({runs} earlier run(s)): found {done} of {units} crypto units already done; {open} operation(s) with no recorded outcome to settle; {} step(s) remain.",
        plan.steps.len()
    );
}

/// A key part file and its password variable; smart cards are read by the TKE application.
fn file_source(part: &KeyPartSource) -> Option<(&Path, Option<&str>)> {
    match part {
        KeyPartSource::File {
            file, password_env, ..
        } => Some((file.as_path(), password_env.as_deref())),
        KeyPartSource::SmartCard { .. } => None,
    }
}

/// Decrypts and combines the key parts of every instance that loads, and checks that they
/// make the desired master key, before the first step: a wrong part must touch nothing. A
/// file that several instances share is decrypted once.
pub(super) fn key_parts(
    desired: &Desired,
    plan: &Plan,
    by_hand: &HashMap<String, Instruction>,
    early: &mut EarlyKeyParts,
) -> Result<HashMap<String, Vec<Secret32>>> {
    // A load done by hand takes its key parts in the TKE tools, not from mkplan.
    let loads: std::collections::HashSet<&str> = plan
        .steps
        .iter()
        .filter(|s| s.action == Action::LoadNewMk && !by_hand.contains_key(&s.id))
        .map(|s| s.instance.as_str())
        .collect();
    let loading: Vec<_> = desired
        .state
        .instances
        .iter()
        .filter(|instance| loads.contains(instance.id.as_str()))
        .collect();
    let mut sources: Vec<(&Path, Option<&str>)> = Vec::new();
    for instance in &loading {
        for source in instance.master_key.key_parts.iter().filter_map(file_source) {
            if !sources.contains(&source) {
                sources.push(source);
            }
        }
    }
    // In the order of the sources, as before: the first error is the one reported.
    let mut opened = Vec::with_capacity(sources.len());
    let mut rest = Vec::new();
    let mut slots = Vec::with_capacity(sources.len());
    for &(file, variable) in &sources {
        match early.take(file, variable) {
            Some(part) => slots.push(Some(part)),
            None => {
                rest.push((file, variable));
                slots.push(None);
            }
        }
    }
    let mut prompted = open_key_parts(&rest, NamedBy::DesiredFile)?.into_iter();
    for slot in slots {
        opened.push(match slot {
            Some(part) => part?,
            None => prompted.next().expect("every other source was opened"),
        });
    }
    let mut parts = HashMap::new();
    for instance in loading {
        let mine: Vec<Secret32> = instance
            .master_key
            .key_parts
            .iter()
            .filter_map(file_source)
            .map(|source| {
                let index = sources
                    .iter()
                    .position(|s| *s == source)
                    .expect("every source was opened");
                opened[index].clone()
            })
            .collect();
        let combined = keypart::combine(&mine).map_err(|e| {
            Error::Other(format!(
                "service instance {}: {e}; nothing was touched",
                instance.id
            ))
        })?;
        let vp = combined.verification_pattern();
        if vp != instance.master_key.verification_pattern {
            return Err(Error::Other(format!(
                "service instance {}: the key parts combine into the master key {vp}, not the desired {}. Nothing was touched: check the key part files and the desired verification_pattern",
                instance.id, instance.master_key.verification_pattern
            )));
        }
        parts.insert(instance.id.clone(), mine);
    }
    Ok(parts)
}

/// The error an apply ends with once steps may have run: where it stopped, and the command
/// that resumes it. Damaged evidence (the journal, the audit trail) and a live state that
/// someone else changed are not resumed blindly: their messages say what to do first.
fn stopped_error(error: executor::ApplyError, plan: &Plan, resume: &str) -> Error {
    use executor::ApplyError;
    match error {
        ApplyError::Interrupted(stopped) => Error::Other(format!(
            "{}To resume: {resume}",
            interrupt::describe_stopped(plan, &stopped)
        )),
        ApplyError::Journal(_)
        | ApplyError::Audit(_)
        | ApplyError::Changed { .. }
        | ApplyError::ForeignRewrap { .. } => apply_error(error),
        other => Error::Other(format!("{other}\nTo resume: {resume}")),
    }
}

fn apply_error(error: executor::ApplyError) -> Error {
    match &error {
        executor::ApplyError::Journal(_)
        | executor::ApplyError::Audit(_)
        | executor::ApplyError::ForeignRewrap { .. }
        | executor::ApplyError::ClearByHandOpen { .. } => Error::Unsafe(error.to_string()),
        executor::ApplyError::Changed { .. } => Error::Stale(error.to_string()),
        _ => Error::Other(error.to_string()),
    }
}

/// A progress bar on a terminal (steps finished, the step last sent, elapsed), plain lines
/// otherwise.
struct TerminalProgress {
    total: usize,
    bar: Option<ProgressBar>,
    /// Whether the bar is shown (stderr is a terminal, no -q), asked once.
    shows_bar: bool,
}

impl TerminalProgress {
    fn new(total: usize) -> Self {
        Self {
            total,
            bar: None,
            shows_bar: std::io::stderr().is_terminal() && !quiet(),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn bar(&mut self) -> Option<&ProgressBar> {
        if !self.shows_bar {
            return None;
        }
        let total = self.total as u64;
        Some(self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) =
                ProgressStyle::with_template("[{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            {
                bar.set_style(style);
            }
            bar
        }))
    }
}

impl TerminalProgress {
    fn say(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            // One write per line: thousands of steps print thousands of lines.
            None => {
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("{text}\n").as_bytes(),
                );
            }
        }
    }
}

impl Progress for TerminalProgress {
    fn step_started(&mut self, step: &crate::plan::Step) {
        if let Some(bar) = self.bar() {
            bar.set_message(format!(
                "sent {} {} {}",
                step.id,
                step.action,
                step.unit.as_deref().unwrap_or("")
            ));
        }
    }

    fn step_finished(&mut self, finished: usize, _total: usize, _step: &crate::plan::Step) {
        if let Some(bar) = self.bar() {
            bar.set_position(finished as u64);
        }
    }

    fn line(&mut self, text: &str) {
        if !quiet() {
            self.say(text);
        }
    }

    fn interrupted(&mut self, in_flight: usize) {
        // Said even with -q: it explains why the apply stops.
        self.say(&if in_flight == 0 {
            "Interrupt received: no step starts.".to_string()
        } else {
            format!(
                "Interrupt received: no new step starts. Waiting for the {in_flight} step(s) in flight to finish and be journaled; interrupt again to exit at once (the next apply settles them from the live state)."
            )
        });
    }
}

pub fn unlock(lock_id: &str, store: &Store) -> Result<u8> {
    eprintln!("{}", store.unlock(lock_id)?);
    Ok(0)
}

/// `audit verify`: every audit trail of the store, each checked against its journal.
pub fn audit_verify(store: &Store) -> Result<u8> {
    let mut broken = Vec::new();
    for result in store.audit_verify()? {
        match result {
            Ok(line) => eprintln!("{line}"),
            Err(why) => broken.push(why),
        }
    }
    if broken.is_empty() {
        Ok(0)
    } else {
        Err(Error::Other(broken.join("\n")))
    }
}
