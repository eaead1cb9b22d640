//! Ctrl-C and SIGTERM during `apply`, as Terraform handles them: the first interrupt stops the
//! apply gracefully (no new step; the steps in flight finish and are journaled; then where it
//! stopped and the command that resumes it), a second one exits at once with 130 and leaves
//! the open intents for the next run to settle from the live state. Also the prompts that wait
//! on stdin once the signals are caught, and the resume command itself.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use tokio::signal::unix::{SignalKind, signal};

use super::ApplyArgs;
use crate::apply::interrupt::{Interrupt, StepEnd, Stopped};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::store::Store;

/// The exit status after a second interrupt (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED_TWICE: i32 = 130;

/// The defaults of the options the resume command repeats only when the operator changed them
/// (a test checks them against the command line's).
const VERIFY_TIMEOUT_S_DEFAULT: u64 = 120;

/// Catches SIGINT and SIGTERM from now on, for the rest of the process: the first raises the
/// returned interrupt, the second exits at once. Before it, the signals end mkplan at once,
/// which is safe while nothing was sent. Call it before the password prompts: the prompt turns
/// the terminal's echo off and reads Ctrl-C itself, then raises SIGINT; caught, the prompt
/// restores the terminal and returns (uncaught, mkplan would die with the echo off).
pub fn listen() -> Interrupt {
    let interrupt = Interrupt::new();
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the signals keep their default: mkplan ends at once, and the
        // journal's intents let the next run settle what was in flight.
        return interrupt;
    };
    let raised = interrupt.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        raised.raise();
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        eprintln!(
            "\nSecond interrupt: mkplan exits now. Steps in flight may have reached the crypto units, and their outcomes are not journaled: the next `mkplan apply` settles them from the live state before it sends anything."
        );
        std::process::exit(EXIT_INTERRUPTED_TWICE);
    });
    interrupt
}

/// "Apply these steps?" on the terminal; an interrupt at the prompt cancels.
pub async fn confirm(interrupt: &Interrupt) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Other(
            "no terminal to confirm the plan: review it, then run again with --auto-approve (or apply a saved plan file)".into(),
        ));
    }
    eprint!("Apply these steps? Only 'yes' is accepted: ");
    let _ = std::io::stderr().flush();
    // Read by a thread of its own, so the interrupt is heard while it waits.
    let (sender, answer) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line).map(|_| line);
        let _ = sender.send(read);
    });
    let line = tokio::select! {
        biased;
        () = interrupt.raised() => {
            eprintln!();
            return Err(Error::Other("apply cancelled by the interrupt at the prompt; nothing was touched".into()));
        }
        line = answer => line,
    };
    let line = line
        .map_err(|_| Error::Other("no answer read".into()))?
        .map_err(|e| Error::Other(e.to_string()))?;
    if line.trim() != "yes" {
        return Err(Error::Other("apply cancelled; nothing was touched".into()));
    }
    Ok(())
}

/// The command that resumes this apply: the desired file (a saved plan is stale once steps
/// ran), and every option the operator gave that changes where or how it applies.
pub fn resume_command(args: &ApplyArgs, desired: &Path, store: &Store) -> String {
    let mut words = vec![
        "mkplan".to_string(),
        "apply".into(),
        quoted(&desired.display().to_string()),
        "--auto-approve".into(),
    ];
    let mut option = |flag: &str, value: &str| {
        words.push(flag.to_string());
        words.push(quoted(value));
    };
    if let Some(backend) = &args.backend.backend {
        option("--backend", backend);
    }
    if let Some(endpoint) = &args.backend.tke_endpoint {
        option("--tke-endpoint", endpoint);
    }
    if store.folder() != Some(Path::new(super::STATE_DIR_DEFAULT)) {
        option("--state", &store.shown());
    }
    if usize::from(args.backend.parallelism) != crate::apply::executor::PARALLELISM_DEFAULT {
        option("--parallelism", &args.backend.parallelism.to_string());
    }
    if args.verify_timeout_s != VERIFY_TIMEOUT_S_DEFAULT {
        option("--verify-timeout-s", &args.verify_timeout_s.to_string());
    }
    // A targeted apply resumes on its own instances only: the same change window.
    for instance in &args.only.instances {
        option("--instance", instance);
    }
    if args.manual {
        words.push("--manual".into());
    }
    words.join(" ")
}

/// A word as a POSIX shell reads it back: as is when it is plain, else in single quotes.
fn quoted(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Where an interrupted apply stopped, for the operator: how many steps are done, what became
/// of each step in flight, and which steps did not start.
pub fn describe_stopped(plan: &Plan, stopped: &Stopped) -> String {
    let step = |id: &str| plan.steps.iter().find(|s| s.id == id);
    let name = |id: &str| {
        step(id).map_or_else(
            || id.to_string(),
            |s| match &s.unit {
                Some(unit) => format!("{} {} on {unit}", s.id, s.action),
                None => format!("{} {} on service instance {}", s.id, s.action, s.instance),
            },
        )
    };
    let (done_in_flight, other_in_flight): (Vec<_>, Vec<_>) = stopped
        .in_flight
        .iter()
        .partition(|(_, end)| *end == StepEnd::Done);
    let mut text = format!(
        "apply interrupted: no step started after the interrupt{}.\n",
        if stopped.in_flight.is_empty() {
            String::new()
        } else {
            format!(
                "; the {} step(s) in flight finished and are journaled",
                stopped.in_flight.len()
            )
        }
    );
    text += &format!(
        "  done:         {} of {} step(s)\n",
        stopped.done.len() + done_in_flight.len(),
        plan.steps.len()
    );
    if !done_in_flight.is_empty() {
        let ids: Vec<&str> = done_in_flight.iter().map(|(id, _)| id.as_str()).collect();
        text += &format!("  in flight, then done: {}\n", by_action(plan, &ids));
    }
    for (id, end) in other_in_flight {
        text += &format!("  in flight, then {}: {}\n", describe_end(end), name(id));
    }
    for (id, end) in &stopped.failed {
        text += &format!("  failed:       {}: {}\n", name(id), describe_end(end));
    }
    if !stopped.not_started.is_empty() {
        let ids: Vec<&str> = stopped.not_started.iter().map(String::as_str).collect();
        text += &format!(
            "  not started:  {} step(s): {}\n",
            ids.len(),
            by_action(plan, &ids)
        );
    }
    if let Some(error) = &stopped.earlier_error {
        text += &format!("  before the interrupt the apply was already stopping: {error}\n");
    }
    text
}

/// Step ids grouped by action, in plan order, a few ids each: `3 commit_new_mk (s4, s5, s6)`.
fn by_action(plan: &Plan, ids: &[&str]) -> String {
    const IDS_SHOWN_MAX: usize = 6;
    // A set: a fleet's interrupted apply lists up to every step (100,000 at 10,000 instances).
    let ids: std::collections::HashSet<&str> = ids.iter().copied().collect();
    let mut groups: Vec<(crate::plan::Action, Vec<&str>)> = Vec::new();
    for step in plan.steps.iter().filter(|s| ids.contains(s.id.as_str())) {
        match groups.iter_mut().find(|(action, _)| *action == step.action) {
            Some((_, members)) => members.push(&step.id),
            None => groups.push((step.action, vec![&step.id])),
        }
    }
    groups
        .iter()
        .map(|(action, members)| {
            let mut shown = members[..members.len().min(IDS_SHOWN_MAX)].join(", ");
            if members.len() > IDS_SHOWN_MAX {
                shown += ", …";
            }
            format!("{} {action} ({shown})", members.len())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_end(end: &StepEnd) -> String {
    match end {
        StepEnd::Done => "done".into(),
        StepEnd::NotDone(why) => format!("not done ({why})"),
        StepEnd::Unknown(why) => {
            format!("outcome unknown ({why}; the next apply settles it from the live state)")
        }
        StepEnd::NotStarted => "not started".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_resume_command_repeats_only_what_the_operator_gave() {
        let parse = |words: &[&str]| {
            let args = super::super::Args::try_parse_from(words).expect("parses");
            let super::super::Command::Apply(ref apply) = args.command else {
                panic!("apply")
            };
            resume_command(apply, &apply.target, &args.store().expect("a store"))
        };
        // With the defaults (the environment may not set them for this test).
        if std::env::vars().all(|(k, _)| !k.starts_with("MKPLAN_")) {
            assert_eq!(
                parse(&["mkplan", "apply", "plans/a.yaml"]),
                "mkplan apply plans/a.yaml --auto-approve"
            );
        }
        assert_eq!(
            parse(&[
                "mkplan",
                "--state-dir",
                "/srv/state dir",
                "apply",
                "a.yaml",
                "--backend",
                "http://127.0.0.1:8080",
                "--parallelism",
                "4",
                "--manual",
            ]),
            "mkplan apply a.yaml --auto-approve --backend http://127.0.0.1:8080 --state '/srv/state dir' --parallelism 4 --manual"
        );
    }

    #[test]
    fn words_are_quoted_only_when_a_shell_would_split_or_expand_them() {
        assert_eq!(quoted("plans/three-units.yaml"), "plans/three-units.yaml");
        assert_eq!(quoted("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(quoted("my plans/a.yaml"), "'my plans/a.yaml'");
        assert_eq!(quoted("it's.yaml"), r"'it'\''s.yaml'");
        assert_eq!(quoted("$HOME/x"), "'$HOME/x'");
        assert_eq!(quoted(""), "''");
    }
}
