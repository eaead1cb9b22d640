//! Ceremony steps: the operator performs the step by hand (TKE CLI or TKE application), then
//! the live state must show its effect within the timeout. The outcome carries the evidence:
//! what the live state showed, or what the operator attested.

use std::time::{Duration, Instant};

use super::executor::{Answer, ApplyError, CEREMONY_POLL_MS, Operator};
use super::journal::Outcome;
use super::resume::observed;
use super::send::check_before_rewrap;
use crate::backend::{Backend, BackendError};
use crate::model::{LiveInstance, RewrapStatus, VerificationPattern};
use crate::plan::ceremony::Instruction;
use crate::plan::{Action, InstancePlan, Step};

/// How the journal's evidence of a ceremony step begins.
pub const CEREMONY: &str = "ceremony:";
/// What a ceremony step's evidence says when the operator's word is all there is (a rewrap on
/// a service that reports no rotation status): the live state cannot show it.
pub const ATTESTED: &str = "the operator attests";

/// A ceremony step: the operator performs it, then the live state must show its effect
/// within the timeout. The outcome carries the evidence: what the live state showed, or what
/// the operator attested.
pub(super) async fn perform_by_hand<B: Backend, O: Operator>(
    backend: &B,
    operator: &O,
    step: &Step,
    instance: &InstancePlan,
    instruction: &Instruction,
    timeout: Duration,
) -> (Result<Outcome, ApplyError>, Vec<String>) {
    let stopped = |why: String| ApplyError::Step {
        step: step.id.clone(),
        action: step.action,
        source: Box::new(BackendError::Refused {
            operation: step.action.as_str().into(),
            reason: why,
        }),
    };
    // Before the operator rewraps by hand: the live state must still be the one planned.
    if step.action == Action::RewrapKeyStorage
        && let Err(error) = check_before_rewrap(backend, step, instance).await
    {
        return (Err(error), Vec::new());
    }
    match operator.perform(instruction).await {
        Answer::Yes => {}
        Answer::No => {
            return (
                Err(stopped("the operator did not perform it".into())),
                Vec::new(),
            );
        }
        Answer::Skipped => {
            return (
                Err(ApplyError::NotStarted {
                    step: step.id.clone(),
                    action: step.action,
                }),
                Vec::new(),
            );
        }
        Answer::Stopped(why) => {
            // Whether the operator did something is unknown: the intent stays open and the
            // rerun settles it from the live state.
            return (
                Err(ApplyError::Unknown {
                    step: step.id.clone(),
                    action: step.action,
                    why: format!("the ceremony stopped: {why}"),
                }),
                Vec::new(),
            );
        }
    }
    let target = &instance.target_verification_pattern;
    let deadline = Instant::now() + timeout;
    loop {
        let live = match crate::backend::refresh_with_retries(
            backend,
            std::slice::from_ref(&step.instance),
        )
        .await
        {
            Ok(live) => live,
            Err(source) => {
                return (
                    Err(ApplyError::Refresh {
                        step: step.id.clone(),
                        source: Box::new(source),
                    }),
                    Vec::new(),
                );
            }
        };
        let found = &live.instances[0];
        if step.action == Action::RewrapKeyStorage {
            match found.rewrap_status {
                RewrapStatus::Rewrapped => {
                    return (
                        Ok(Outcome::SettledDone {
                            evidence: format!("{CEREMONY} the service reports the rewrap as done"),
                        }),
                        Vec::new(),
                    );
                }
                RewrapStatus::NotReported => return attest_rewrap(operator, step).await,
                RewrapStatus::NotRewrapped | RewrapStatus::InProgress => {}
            }
        } else if observed(step.action, found, step.unit.as_deref(), target) {
            return (
                Ok(Outcome::SettledDone {
                    evidence: format!(
                        "{CEREMONY} performed by the operator; the live state shows {}",
                        instruction.expected
                    ),
                }),
                Vec::new(),
            );
        } else if let Some(other) = wrong_key(step, found, target) {
            return (
                Err(stopped(format!(
                    "after the ceremony the new register of crypto unit {} holds {other}, not the desired {target}. Nothing more was done; run apply again: the plan clears the new register and loads it again",
                    step.unit.as_deref().unwrap_or_default()
                ))),
                Vec::new(),
            );
        }
        if Instant::now() >= deadline {
            return (
                Err(ApplyError::Unknown {
                    step: step.id.clone(),
                    action: step.action,
                    why: format!(
                        "the live state did not show \"{}\" within {} s of the operator's \"done\"",
                        instruction.expected,
                        timeout.as_secs()
                    ),
                }),
                Vec::new(),
            );
        }
        tokio::time::sleep(Duration::from_millis(CEREMONY_POLL_MS)).await;
    }
}

/// A key other than the target in the new register after a load or commit by hand.
fn wrong_key(step: &Step, live: &LiveInstance, target: &VerificationPattern) -> Option<String> {
    if !matches!(step.action, Action::LoadNewMk | Action::CommitNewMk) {
        return None;
    }
    let unit = live.unit(step.unit.as_deref()?)?;
    let held = unit.new_register.verification_pattern()?;
    (held != target).then(|| format!("{:#}", unit.new_register))
}

/// Without a rotation status, only the operator saw whether the rewrap ran: the answer is
/// journaled as the operator's evidence. "I cannot say" leaves it unknown, and the next plan
/// refuses until the evidence is there.
async fn attest_rewrap<O: Operator>(
    operator: &O,
    step: &Step,
) -> (Result<Outcome, ApplyError>, Vec<String>) {
    let question = format!(
        "The service does not report its rotation status. Did `ibmcloud tke cryptounit-mk-rotate` report \"KMS CRK rewrap successful, waiting on cryptounit-mk-setimm\" for service instance {}?",
        step.instance
    );
    match operator.attest(&question).await {
        Answer::Yes => (
            Ok(Outcome::SettledDone {
                evidence: format!(
                    "{CEREMONY} {ATTESTED} the service reported \"KMS CRK rewrap successful, waiting on cryptounit-mk-setimm\""
                ),
            }),
            Vec::new(),
        ),
        // Not seeing the success message is not evidence that nothing ran (the command may
        // have failed half-way through the re-encryption): the outcome stays unknown. Only an
        // explicit `mkplan attest rewrap … --not-run` says it did not run.
        Answer::No => (
            Err(ApplyError::Unknown {
                step: step.id.clone(),
                action: step.action,
                why: format!(
                    "the operator did not see the rewrap's success message. If the service showed that the rewrap did not run, record what it showed with `mkplan attest rewrap {} --not-run --service-evidence \"…\" --desired DESIRED.yaml`; if it did run, with `--completed --desired DESIRED.yaml`",
                    step.instance
                ),
            }),
            Vec::new(),
        ),
        Answer::Stopped(why) => (
            Err(ApplyError::Unknown {
                step: step.id.clone(),
                action: step.action,
                why: format!(
                    "the service reports no rotation status and the operator could not say ({why})"
                ),
            }),
            Vec::new(),
        ),
        Answer::Skipped => (
            Err(ApplyError::Unknown {
                step: step.id.clone(),
                action: step.action,
                why: "the apply stopped before the operator was asked".into(),
            }),
            Vec::new(),
        ),
    }
}
