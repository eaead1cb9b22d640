//! Ceremony steps at the command line: which steps of a plan the operator performs by hand,
//! and the operator itself: each instruction on stderr, answers read from stdin one line at a
//! time (a terminal, or a script that drives the ceremony).

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::Mutex;

use tokio::sync::mpsc;

use super::context::Desired;
use crate::apply::executor::{Answer, Operator};
use crate::apply::interrupt::Interrupt;
use crate::model::KeyPartSource;
use crate::plan::ceremony::{Instruction, KeyPartHolder, instruction};
use crate::plan::{Action, Plan};

/// The key part holders of each instance of the desired file.
pub fn holders(desired: &Desired) -> HashMap<String, Vec<KeyPartHolder>> {
    desired
        .state
        .instances
        .iter()
        .map(|instance| {
            let holders = instance
                .master_key
                .key_parts
                .iter()
                .map(|part| match part {
                    KeyPartSource::File { written, .. } => KeyPartHolder {
                        holder: format!("the custodian of key part file {written}"),
                        smart_card_reader: None,
                    },
                    KeyPartSource::SmartCard { holder, reader, .. } => KeyPartHolder {
                        holder: holder.clone(),
                        smart_card_reader: Some(reader.clone()),
                    },
                })
                .collect();
            (instance.id.clone(), holders)
        })
        .collect()
}

/// The instruction of every step of the plan.
pub fn instructions(desired: &Desired, plan: &Plan) -> Vec<Instruction> {
    let holders = holders(desired);
    plan.steps
        .iter()
        .map(|step| {
            instruction(
                plan,
                step,
                holders
                    .get(&step.instance)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
            )
        })
        .collect()
}

/// The steps the operator performs by hand: every step with `--manual` or on a backend that
/// cannot send commands; and where key parts are on smart cards, the load (the TKE
/// application reads the cards) and the commit (the administrators sign with theirs).
pub fn ceremony_steps(
    desired: &Desired,
    plan: &Plan,
    all_by_hand: bool,
) -> HashMap<String, Instruction> {
    let with_cards: std::collections::HashSet<&str> = desired
        .state
        .instances
        .iter()
        .filter(|i| {
            i.master_key
                .key_parts
                .iter()
                .any(KeyPartSource::is_smart_card)
        })
        .map(|i| i.id.as_str())
        .collect();
    instructions(desired, plan)
        .into_iter()
        .filter(|i| {
            i.action != Action::RemoveUnit
                && (all_by_hand
                    || (with_cards.contains(i.instance.as_str())
                        && matches!(i.action, Action::LoadNewMk | Action::CommitNewMk)))
        })
        .map(|i| (i.step.clone(), i))
        .collect()
}

/// The instruction block an operator reads.
pub fn describe(instruction: &Instruction) -> String {
    let mut text = format!(
        "\n── ceremony step {}: {} {} ──\n",
        instruction.step,
        instruction.action.symbol(),
        instruction.action.label()
    );
    let mut line = |label: &str, value: &str| text.push_str(&format!("  {label:<17}{value}\n"));
    line("service instance", &instruction.instance);
    if let Some(unit) = &instruction.unit {
        line(
            "crypto unit",
            &format!(
                "{unit} {}",
                instruction.location.as_deref().unwrap_or_default()
            ),
        );
    }
    line("TKE CLI", &instruction.tke_cli);
    line("TKE application", &instruction.tke_application);
    if !instruction.present.is_empty() {
        line("present", &instruction.present.join("; "));
    }
    if instruction.pin_entries > 0 {
        line("PIN entries", &instruction.pin_entries.to_string());
    }
    line("afterwards", &instruction.expected);
    line("mkplan checks", &instruction.verified_by);
    text
}

/// The operator at this terminal (or the script on stdin).
pub struct TerminalOperator {
    lines: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// One ceremony step at a time: there is one operator.
    turn: tokio::sync::Mutex<()>,
    /// Set when the apply stops: steps waiting for their turn are not shown.
    halted: std::sync::atomic::AtomicBool,
    /// The operator's Ctrl-C: it ends the prompt the operator is at.
    interrupt: Interrupt,
}

impl TerminalOperator {
    pub fn new() -> Self {
        Self::with_interrupt(Interrupt::new())
    }

    /// An operator whose prompt ends when `interrupt` is raised.
    pub fn with_interrupt(interrupt: Interrupt) -> Self {
        Self {
            lines: Mutex::new(None),
            turn: tokio::sync::Mutex::new(()),
            halted: std::sync::atomic::AtomicBool::new(false),
            interrupt,
        }
    }

    /// The next line on stdin, read by a thread of its own so the executor keeps running.
    async fn read_line(&self) -> Option<String> {
        let mut receiver = {
            let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            lines.take().unwrap_or_else(|| {
                let (sender, receiver) = mpsc::unbounded_channel();
                std::thread::spawn(move || {
                    for line in std::io::stdin().lock().lines() {
                        let Ok(line) = line else { break };
                        if sender.send(line).is_err() {
                            break;
                        }
                    }
                });
                receiver
            })
        };
        let line = receiver.recv().await;
        *self.lines.lock().unwrap_or_else(|e| e.into_inner()) = Some(receiver);
        line
    }

    /// Asks until the operator answers, stops, or interrupts.
    async fn ask(&self, prompt: &str, yes: &str, no: &str) -> Answer {
        tokio::select! {
            biased;
            // Whether the operator did it half-way is for the live state to say: the next run
            // settles it from there.
            () = self.interrupt.raised() => Answer::Stopped("interrupted at the prompt".into()),
            answer = self.ask_until_answered(prompt, yes, no) => answer,
        }
    }

    async fn ask_until_answered(&self, prompt: &str, yes: &str, no: &str) -> Answer {
        loop {
            eprintln!("{prompt}");
            let Some(line) = self.read_line().await else {
                return Answer::Stopped("no more input on stdin".into());
            };
            match line.trim() {
                answer if answer == yes => return Answer::Yes,
                answer if answer == no => return Answer::No,
                "stop" => return Answer::Stopped("the operator stopped".into()),
                // Not echoed: it may be a password or PIN typed into the wrong window.
                _ => eprintln!("  That is not an answer here."),
            }
        }
    }
}

impl Default for TerminalOperator {
    fn default() -> Self {
        Self::new()
    }
}

impl Operator for TerminalOperator {
    async fn perform(&self, instruction: &Instruction) -> Answer {
        let _turn = self.turn.lock().await;
        if self.halted.load(std::sync::atomic::Ordering::SeqCst) {
            return Answer::Skipped;
        }
        eprint!("{}", describe(instruction));
        let cards = async {
            tokio::select! {
                biased;
                () = self.interrupt.raised() => Err("interrupted while waiting for the cards".into()),
                waited = wait_for_cards(instruction) => waited,
            }
        };
        let answer = match cards.await {
            Err(why) => Answer::Stopped(why),
            Ok(()) => {
                self.ask(
                    "Type 'done' when it is done, 'not done' if you did not do it, or 'stop' to stop here:",
                    "done",
                    "not done",
                )
                .await
            }
        };
        // Anything but "done" stops the apply: the steps queued behind this one are not
        // shown (set before the turn passes on).
        if answer != Answer::Yes {
            self.halt();
        }
        answer
    }

    fn halt(&self) {
        self.halted.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    async fn attest(&self, question: &str) -> Answer {
        let _turn = self.turn.lock().await;
        self.ask(
            &format!("{question}\nType 'yes' if it did, 'no' if the rewrap did not run, or 'stop' if you cannot say:"),
            "yes",
            "no",
        )
        .await
    }
}

/// `mkplan cards`.
#[cfg(feature = "smartcards")]
pub async fn cards(watch: bool, json: bool) -> crate::error::Result<u8> {
    use crate::backend::cards;
    use crate::error::Error;
    let readers = tokio::task::spawn_blocking(cards::readers)
        .await
        .map_err(|e| Error::Other(e.to_string()))?
        .map_err(Error::Other)?;
    use super::output;
    if json {
        output::report_line(&crate::render::versioned_json(
            crate::render::CARDS_FORMAT_VERSION,
            &serde_json::json!({ "readers": readers }),
        ))?;
        return Ok(0);
    }
    // The readers are the report (stdout); with --watch, so is every change after them.
    if readers.is_empty() {
        output::report_line("No smart card readers.")?;
    }
    for reader in &readers {
        output::report_line(&describe_reader(reader))?;
    }
    if !watch {
        return Ok(0);
    }
    eprintln!("Watching; Ctrl-C stops.");
    let mut last = readers;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let now = tokio::task::spawn_blocking(cards::readers)
            .await
            .map_err(|e| Error::Other(e.to_string()))?
            .map_err(Error::Other)?;
        for reader in &now {
            if last.iter().find(|r| r.name == reader.name) != Some(reader) {
                output::report_line(&describe_reader(reader))?;
            }
        }
        for gone in last.iter().filter(|r| now.iter().all(|n| n.name != r.name)) {
            output::report_line(&format!("{}: reader removed", gone.name))?;
        }
        if output::stdout_closed() {
            return Ok(0);
        }
        last = now;
    }
}

#[cfg(feature = "smartcards")]
fn describe_reader(reader: &crate::backend::cards::Reader) -> String {
    match &reader.atr {
        Some(atr) => format!("{}: card present, ATR {atr}", reader.name),
        None if reader.card_present => format!("{}: card present", reader.name),
        None => format!("{}: no card", reader.name),
    }
}

#[cfg(not(feature = "smartcards"))]
pub async fn cards(_watch: bool, _json: bool) -> crate::error::Result<u8> {
    Err(crate::error::Error::Other(
        "this mkplan is built without smart card support: build it with `cargo build --release --features smartcards` (needs libpcsclite-dev and a running pcscd)".into(),
    ))
}

/// Seconds a ceremony step waits for a key part card in its reader.
#[cfg(feature = "smartcards")]
pub const CARD_WAIT_S: u64 = 300;

/// Before a load from smart cards: waits until each holder's card is in a matching reader
/// (one at a time, as the TKE application asks for them), reporting insertions and
/// removals. Without PC/SC support, says what to check by eye.
async fn wait_for_cards(instruction: &Instruction) -> Result<(), String> {
    #[cfg(feature = "smartcards")]
    let mut previous: Option<String> = None;
    for card in &instruction.cards {
        let Some(pattern) = card.smart_card_reader.clone() else {
            continue;
        };
        #[cfg(feature = "smartcards")]
        {
            use crate::backend::cards::{self, Event};
            eprintln!(
                "  waiting for {}'s key part card in a reader matching {pattern:?}{} …",
                card.holder,
                if previous.is_some() {
                    " (the previous card comes out first)"
                } else {
                    ""
                }
            );
            let after = previous.take();
            let found = tokio::task::spawn_blocking(move || {
                cards::wait_for_card(
                    &pattern,
                    std::time::Duration::from_secs(CARD_WAIT_S),
                    after.as_deref(),
                    |event| match event {
                        Event::Inserted(reader) => eprintln!(
                            "  card inserted in {} (ATR {})",
                            reader.name,
                            reader.atr.as_deref().unwrap_or("-")
                        ),
                        Event::Removed(reader) => eprintln!("  card removed from {reader}"),
                    },
                )
            })
            .await
            .map_err(|e| e.to_string())??;
            eprintln!(
                "  {}'s card is in {} (ATR {})",
                card.holder,
                found.name,
                found.atr.as_deref().unwrap_or("-")
            );
            previous = Some(found.name);
        }
        #[cfg(not(feature = "smartcards"))]
        eprintln!(
            "  {}'s key part card goes in the reader matching {pattern:?} when the TKE application asks (this mkplan cannot see readers: built without smart card support)",
            card.holder
        );
    }
    Ok(())
}
