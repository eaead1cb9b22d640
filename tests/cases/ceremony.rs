//! Ceremony steps through the binary: `apply --manual` with a scripted operator who performs
//! each step on the simulator and answers on stdin. mkplan must wait, verify each step in the
//! live state before journaling it, report a wrong key, journal the operator's evidence, and
//! settle a ceremony interrupted by a crash from the live state.

use std::io::Write;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use mkplan::backend::sim::{Faults, SimOperation, Simulator};
use mkplan::model::VerificationPattern;

use crate::cases::apply::{PASSWORDS, assert_converged, assert_no_incidents, three_units};
use crate::support::*;

/// What the scripted operator is asked.
#[derive(Debug, Clone)]
pub(crate) enum Asked {
    /// A step to perform: action (as in JSON), instance, unit.
    Step {
        action: String,
        instance: String,
        unit: Option<String>,
    },
    /// Whether the rewrap message appeared.
    Rewrap,
}

/// A running `mkplan apply --manual`, its stderr read line by line.
pub(crate) struct Ceremony {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    pub transcript: String,
}

impl Ceremony {
    pub(crate) fn start(ws: &Workspace, extra: &[&str]) -> Self {
        let mut child = ws
            .process(&[
                "apply",
                "desired.yaml",
                "--auto-approve",
                "--verify-timeout-s",
                "5",
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mkplan apply --manual");
        let stdin = child.stdin.take().unwrap();
        let lines = crate::support::stderr_lines(&mut child);
        Self {
            child,
            stdin,
            lines,
            transcript: String::new(),
        }
    }

    /// The next question, or None when mkplan has exited.
    pub(crate) fn next(&mut self) -> Option<Asked> {
        self.next_watching(|_| {})
    }

    /// The next question; `on_line` sees every line before it.
    pub(crate) fn next_watching(&mut self, mut on_line: impl FnMut(&str)) -> Option<Asked> {
        let mut action = String::new();
        let (mut instance, mut unit) = (String::new(), None);
        loop {
            let line = self.lines.recv_timeout(Duration::from_secs(60)).ok()?;
            self.transcript.push_str(&line);
            self.transcript.push('\n');
            on_line(&line);
            if let Some(rest) = line.strip_prefix("── ceremony step ") {
                action = rest
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
            } else if let Some(rest) = line.trim_start().strip_prefix("service instance ") {
                instance = rest.trim().to_string();
            } else if let Some(rest) = line.trim_start().strip_prefix("crypto unit ") {
                unit = rest.split_whitespace().next().map(String::from);
            } else if line.starts_with("Type 'done'") {
                return Some(Asked::Step {
                    action: action_name(&action),
                    instance: instance.clone(),
                    unit: unit.clone(),
                });
            } else if line.starts_with("Type 'yes'") {
                return Some(Asked::Rewrap);
            }
        }
    }

    pub(crate) fn answer(&mut self, text: &str) {
        writeln!(self.stdin, "{text}").expect("answer on stdin");
    }

    /// Kills mkplan (as a power cut would) and returns the transcript.
    pub(crate) fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.transcript
    }

    pub(crate) fn finish(mut self) -> (i32, String) {
        drop(self.stdin);
        let status = self.child.wait().expect("mkplan ends");
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.transcript.push_str(&line);
            self.transcript.push('\n');
        }
        (status.code().unwrap_or(-1), self.transcript)
    }
}

/// The symbol in the block title → the action's JSON name.
fn action_name(symbol: &str) -> String {
    match symbol {
        "+" => "load_new_mk",
        "~" => "commit_new_mk",
        "-" => "clear_new_mk",
        "!" => "rewrap_key_storage",
        ">" => "set_immediate",
        other => other,
    }
    .to_string()
}

/// The operator's hands: performs the step on the simulator, loading `key` where asked.
pub(crate) fn perform(ws: &Workspace, asked: &Asked, key: &str) {
    let Asked::Step {
        action,
        instance,
        unit,
    } = asked
    else {
        return;
    };
    let (instance, unit) = (instance.clone(), unit.clone().unwrap_or_default());
    let vp = VerificationPattern::parse(key).unwrap();
    let operation = match action.as_str() {
        "load_new_mk" => SimOperation::LoadNewMk {
            instance,
            unit,
            verification_pattern: vp,
        },
        "commit_new_mk" => SimOperation::CommitNewMk {
            instance,
            unit,
            verification_pattern: vp,
            signers: vec!["alice".into(), "bob".into()],
        },
        "clear_new_mk" => SimOperation::ClearNewMk {
            instance,
            unit,
            verification_pattern: None,
        },
        "rewrap_key_storage" => SimOperation::RewrapKeyStorage { instance },
        "set_immediate" => SimOperation::SetImmediate {
            instance,
            unit,
            verification_pattern: vp,
            signers: vec!["alice".into(), "bob".into()],
        },
        other => panic!("unexpected ceremony step {other}"),
    };
    let simulator = Simulator::open(&ws.path(FLEET), Faults::default()).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(simulator.perform(&operation))
        .expect("the simulator accepts the operator's step");
}

/// Runs a whole ceremony, performing every step correctly and answering yes.
fn run_correctly(ws: &Workspace) -> (i32, String) {
    run_correctly_with(ws, &["--manual"])
}

fn run_correctly_with(ws: &Workspace, flags: &[&str]) -> (i32, String) {
    let mut ceremony = Ceremony::start(ws, flags);
    while let Some(asked) = ceremony.next() {
        perform(ws, &asked, B);
        ceremony.answer(if matches!(asked, Asked::Rewrap) {
            "yes"
        } else {
            "done"
        });
    }
    ceremony.finish()
}

#[test]
fn a_rotation_by_hand_is_verified_step_by_step_and_journaled() {
    let ws = rotate_to_b(&three_units(true));
    let (code, transcript) = run_correctly(&ws);
    assert_eq!(code, 0, "{transcript}");
    assert_eq!(
        transcript.matches("── ceremony step").count(),
        10,
        "{transcript}"
    );
    assert!(
        transcript.contains("ibmcloud tke cryptounit-mk-load"),
        "{transcript}"
    );
    assert!(
        transcript.contains("(by hand; verified in the live state)"),
        "{transcript}"
    );
    assert_converged(&ws, "by hand");
    let journal = ws.read(".mkplan/journal.jsonl");
    assert_eq!(
        journal
            .matches("ceremony: performed by the operator")
            .count(),
        9
    );
    assert!(journal.contains("ceremony: the service reports the rewrap as done"));
}

#[test]
fn without_a_status_the_operator_attests_the_rewrap_and_the_journal_keeps_it() {
    let ws = rotate_to_b(&three_units(false));
    let (code, transcript) = run_correctly(&ws);
    assert_eq!(code, 0, "{transcript}");
    assert!(
        transcript.contains("KMS CRK rewrap successful, waiting on cryptounit-mk-setimm"),
        "{transcript}"
    );
    // The live state cannot show a rewrap on such a service: the line says whose word it is.
    assert!(
        transcript
            .contains("(by hand; attested by the operator: the service shows no rotation status)"),
        "{transcript}"
    );
    assert!(
        ws.read(".mkplan/journal.jsonl")
            .contains("the operator attests the service reported")
    );
    assert_converged(&ws, "attested rewrap");
}

#[test]
fn a_wrong_key_loaded_by_hand_is_reported_and_the_next_plan_clears_and_reloads_it() {
    let ws = rotate_to_b(&three_units(true));
    let mut ceremony = Ceremony::start(&ws, &["--manual", "--parallelism", "1"]);
    let mut loads = 0;
    while let Some(asked) = ceremony.next() {
        let wrong = matches!(&asked, Asked::Step { action, .. } if action == "load_new_mk" && { loads += 1; loads == 2 });
        perform(&ws, &asked, if wrong { C } else { B });
        ceremony.answer("done");
    }
    let (code, transcript) = ceremony.finish();
    assert_eq!(code, 1, "{transcript}");
    assert!(
        transcript.contains(&format!("holds Full Uncommitted {C}, not the desired {B}")),
        "{transcript}"
    );
    assert_no_incidents(&ws, "after the wrong key");
    let plan = ws.plan().planned(2);
    assert!(
        !find(&plan, "clear_new_mk", Some(&u(2))).is_empty(),
        "the next plan clears unit 2"
    );
    let (code, transcript) = run_correctly(&ws);
    assert_eq!(code, 0, "{transcript}");
    assert_converged(&ws, "after clearing and reloading");
}

#[test]
fn a_crash_in_the_middle_of_a_ceremony_step_is_settled_from_the_live_state() {
    let ws = rotate_to_b(&three_units(true));
    let mut ceremony = Ceremony::start(&ws, &["--manual", "--parallelism", "1"]);
    let mut steps = 0;
    loop {
        let asked = ceremony.next().expect("a ceremony step");
        perform(&ws, &asked, B);
        steps += 1;
        if steps == 4 {
            // The operator committed on unit 1; mkplan dies before it hears "done".
            break;
        }
        ceremony.answer("done");
    }
    let transcript = ceremony.kill();
    assert!(transcript.contains("commit"), "{transcript}");
    let (code, rerun) = run_correctly(&ws);
    assert_eq!(code, 0, "{rerun}");
    assert!(rerun.contains("commit_new_mk on"), "{rerun}");
    assert!(
        rerun.contains("took effect"),
        "the rerun settles the interrupted step: {rerun}"
    );
    assert_converged(&ws, "after the crash");
}

/// Key parts on smart cards: the loads and commits are ceremonies (the TKE application reads
/// the cards, the administrators sign with theirs); mkplan sends the rewrap and the set
/// immediates itself, without --manual and without any password.
#[test]
fn key_parts_on_smart_cards_make_the_loads_and_commits_ceremonies() {
    let ws = rotate_to_b(&three_units(true));
    with_smart_cards(&ws);
    let plan = ws.plan().planned(2);
    assert_eq!(
        plan["instances"][0]["ceremony"]["key_part_holders"],
        serde_json::json!(["dana", "eli"])
    );
    assert_eq!(
        plan["instances"][0]["ceremony"]["key_part_readers"],
        serde_json::json!(["Key part reader"])
    );
    let (code, transcript) = run_correctly_with(&ws, &[]);
    assert_eq!(code, 0, "{transcript}");
    assert_eq!(
        transcript.matches("── ceremony step").count(),
        6,
        "3 loads and 3 commits by hand: {transcript}"
    );
    assert!(
        transcript.contains("dana's card in the reader matching \"Key part reader\""),
        "{transcript}"
    );
    assert_converged(&ws, "smart cards");
    let runbook_plan = ws.mkplan(&["plan", DESIRED, "--out", "plan.json"]);
    assert_eq!(runbook_plan.code, 0, "{}", runbook_plan.stderr);
}

#[test]
fn the_runbook_lists_every_step_who_does_it_and_how_it_is_checked() {
    let ws = rotate_to_b(&three_units(true));
    with_smart_cards(&ws);
    assert_eq!(ws.mkplan(&["plan", DESIRED, "--out", "plan.json"]).code, 0);
    let runbook = ws.mkplan(&["runbook", "plan.json", "--markdown"]);
    assert_eq!(runbook.code, 0, "{}", runbook.stderr);
    let text = &runbook.stdout;
    for step in 1..=10 {
        assert!(
            text.contains(&format!("## s{step} ")),
            "step s{step} missing:\n{text}"
        );
    }
    assert_eq!(text.matches("| who | by hand |").count(), 6, "{text}");
    assert_eq!(text.matches("| who | mkplan sends it").count(), 4, "{text}");
    assert!(text.contains("**Point of no return.**"), "{text}");
    assert!(text.contains("key part holder dana"), "{text}");
    assert!(
        text.contains("PIN entries (smart cards): 15 for the steps by hand"),
        "{text}"
    );
    assert!(text.contains("| mkplan checks |"), "{text}");
}

/// After a crash or a lost response on the rewrap of a service that reports no status, the
/// plan refuses until someone says what happened; `attest rewrap` journals the operator's
/// word, and the next apply goes on from it.
#[test]
fn an_unknown_rewrap_is_settled_by_the_operators_attestation() {
    let passwords = [
        ("MKPLAN_PART1_PASSWORD", "demo-custodian-1"),
        ("MKPLAN_PART2_PASSWORD", "demo-custodian-2"),
    ];
    // mkplan's own rewrap went unanswered: nobody at this end can see that it did not run,
    // so --not-run needs what the service showed.
    for (fault, attest) in [
        ("lose_response_op=7", vec!["--completed"]),
        (
            "fail_op=7",
            vec![
                "--not-run",
                "--service-evidence",
                "IBM support: no rotation ran",
            ],
        ),
    ] {
        let ws = rotate_to_b(&three_units(false));
        let mut env = passwords.to_vec();
        env.push(("MKPLAN_SIM_FAULTS", fault));
        let first = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &env);
        assert_eq!(first.code, 1, "{fault}: {}", first.stderr);
        let refused = ws.mkplan(&["plan", DESIRED]);
        assert_eq!(refused.code, 3, "{fault}: {}", refused.stderr);
        assert!(
            refused.stderr.contains("mkplan attest rewrap"),
            "{}",
            refused.stderr
        );
        let attest_args = |instance: &'static str| {
            let mut args = vec!["attest", "rewrap", instance, "--desired", DESIRED];
            args.extend(attest.iter().copied());
            args
        };
        let wrong = ws.mkplan(&attest_args("11111111-2222-4333-8444-000000000009"));
        assert_eq!(wrong.code, 1, "{}", wrong.stderr);
        let attested = ws.mkplan(&attest_args(INSTANCE));
        assert_eq!(attested.code, 0, "{}", attested.stderr);
        let rerun = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &passwords);
        assert_eq!(rerun.code, 0, "{fault}: {}", rerun.stderr);
        assert_converged(&ws, fault);
    }
}

/// Puts the desired file's key parts on two smart cards, held by dana and eli, both going in
/// the reader named like "Key part reader".
pub(crate) fn with_smart_cards(ws: &Workspace) {
    let desired = ws.read(DESIRED);
    let start = desired
        .find("      key_parts:")
        .expect("key parts in the desired file");
    let cards = "      key_parts:\n        - smart_card: { holder: dana, reader: \"Key part reader\" }\n        - smart_card: { holder: eli, reader: \"Key part reader\" }\n";
    ws.write(DESIRED, &format!("{}{cards}", &desired[..start]));
}

/// Regression (found in review): after the operator said "stop", the ceremony steps already
/// queued behind it were still shown and asked for.
#[test]
fn stop_shows_no_further_ceremony_step() {
    let ws = rotate_to_b(&three_units(true));
    let mut ceremony = Ceremony::start(&ws, &["--manual"]);
    let first = ceremony.next().expect("the first step");
    assert!(matches!(first, Asked::Step { .. }));
    ceremony.answer("stop");
    let (code, transcript) = ceremony.finish();
    assert_eq!(code, 1, "{transcript}");
    assert_eq!(
        transcript.matches("── ceremony step").count(),
        1,
        "{transcript}"
    );
    assert_no_incidents(&ws, "after stop");
}

/// Regression (found in review): "no" to "did the CLI report success?" was journaled as
/// "the rewrap did not run", and the next plan rewrapped again. Not seeing the message is
/// not evidence; the outcome stays unknown and the next plan refuses.
#[test]
fn not_seeing_the_rewrap_message_leaves_the_rewrap_unknown() {
    let ws = rotate_to_b(&three_units(false));
    let mut ceremony = Ceremony::start(&ws, &["--manual"]);
    while let Some(asked) = ceremony.next() {
        perform(&ws, &asked, B);
        ceremony.answer(if matches!(asked, Asked::Rewrap) {
            "no"
        } else {
            "done"
        });
    }
    let (code, transcript) = ceremony.finish();
    assert_eq!(code, 1, "{transcript}");
    assert!(transcript.contains("attest rewrap"), "{transcript}");
    let plan = ws.mkplan(&["plan", DESIRED]);
    assert_eq!(plan.code, 3, "{}", plan.stderr);
    assert!(plan.stderr.contains("rewrap_evidence"), "{}", plan.stderr);
    assert_no_incidents(&ws, "after no");
}

/// Regression (adversary, a10): the operator answered "stop" at the rewrap ceremony step, so
/// nothing was sent. The rerun's refusal said that mkplan's own rewrap request "left mkplan"
/// and that `--not-run` needs `--service-evidence`; neither is true. It must say that the
/// ceremony step was shown and stopped without the operator's word, and that their word
/// settles it: `attest rewrap --not-run` alone is taken, and the next apply converges.
#[test]
fn a_stopped_rewrap_ceremony_is_settled_by_the_operators_word() {
    let ws = rotate_to_b(&three_units(false));
    let mut ceremony = Ceremony::start(&ws, &["--manual"]);
    while let Some(asked) = ceremony.next() {
        if matches!(&asked, Asked::Step { action, .. } if action == "rewrap_key_storage") {
            ceremony.answer("stop");
            continue;
        }
        perform(&ws, &asked, B);
        ceremony.answer("done");
    }
    let (code, transcript) = ceremony.finish();
    assert_eq!(code, 1, "{transcript}");
    assert_no_incidents(&ws, "after stop at the rewrap");

    let refused = ws.mkplan(&["plan", DESIRED]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    // What is true: the step was shown and stopped, nothing left mkplan, the word settles it.
    let said = [
        ("rewrap_evidence", true),
        ("as a ceremony step", true),
        ("mkplan sent no rewrap itself", true),
        ("--not-run --desired", true),
        ("left mkplan", false),
        ("mkplan's own rewrap", false),
        ("--service-evidence", false),
    ];
    for (words, present) in said {
        let found = refused.stderr.contains(words);
        assert_eq!(found, present, "{words}: {}", refused.stderr);
    }
    let not_run = format!("attest rewrap {INSTANCE} --not-run --desired {DESIRED}");
    let not_run: Vec<&str> = not_run.split(' ').collect();
    ws.mkplan(&not_run).expect_code(0);
    let rerun = ws.mkplan_with_env(&["apply", DESIRED, "--auto-approve"], &PASSWORDS);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_converged(&ws, "after the operator's word");
}
