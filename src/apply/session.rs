//! The bookkeeping around one apply run, shared by `mkplan apply` and drills: start the run in
//! the journal and the audit trail, settle what earlier runs left open, record the rotations
//! that start; after the steps, read the live state back and check that it is the desired one.

use serde_json::json;
use sha2::{Digest, Sha256};

use super::audit::Audit;
use super::executor::{self, ApplyError};
use super::journal::{Journal, Record};
use crate::backend::{Backend, refresh_with_retries};
use crate::model::{LiveFleet, NewRegister, OtherFolders};
use crate::plan::Plan;

pub struct Started {
    /// The run's number in the journal.
    pub run: u32,
    /// One line per operation of an earlier run that was settled from the live state.
    pub settled: Vec<String>,
}

/// The SHA-256 of the plan's JSON: what the journal and the audit trail say was applied.
pub fn plan_sha256(plan: &Plan) -> String {
    hex::encode(Sha256::digest(crate::render::json(plan).as_bytes()))
}

/// Journals the start of a run of `plan` (made from `live`, weighing what `other_folders`
/// said) against the backend whose identity is `backend`, settles the operations that earlier
/// runs against it left without an outcome, and records the rotations it starts.
pub fn begin(
    journal: &mut Journal,
    audit: &mut Audit,
    plan: &Plan,
    live: &LiveFleet,
    other_folders: &OtherFolders,
    backend: &str,
) -> Result<Started, ApplyError> {
    let run = journal.next_run()?;
    let plan_sha256 = plan_sha256(plan);
    journal.append(Record::ApplyStarted {
        run,
        plan_sha256: plan_sha256.clone(),
        backend: Some(backend.to_string()),
        at: Some(crate::timestamp::utc_now()),
        audit: Some(audit.head()),
    })?;
    audit.record(json!({
        "kind": "apply_started", "run": run, "plan_sha256": plan_sha256,
        "desired_sha256": plan.desired_sha256, "live_fingerprint": plan.live_fingerprint,
        "backend": plan.backend, "steps": plan.steps.len(),
    }))?;
    let settled = executor::settle_previous(journal, plan, &live.instances, backend)?;
    // What the journal says now that the earlier intents are settled.
    let evidence = super::evidence::journal_evidence(journal.records(), backend, "");
    executor::record_rotations(
        journal,
        plan,
        &live.instances,
        &evidence,
        other_folders,
        backend,
    )?;
    Ok(Started { run, settled })
}

/// Reads the live state after the last step: every unit of every planned instance must hold
/// the target in its current register and nothing in its new register.
pub async fn verify_converged<B: Backend>(
    backend: &B,
    plan: &Plan,
) -> Result<LiveFleet, ApplyError> {
    let ids: Vec<String> = plan.instances.iter().map(|i| i.id.clone()).collect();
    let live = refresh_with_retries(backend, &ids).await.map_err(|e| {
        ApplyError::NotConverged(format!("reading the live state after the last step: {e}"))
    })?;
    check_converged(plan, &live)?;
    Ok(live)
}

/// Every unit of every planned instance in `live` (read after the last step) holds the target
/// in its current register and nothing in its new register.
pub fn check_converged(plan: &Plan, live: &LiveFleet) -> Result<(), ApplyError> {
    for instance in &plan.instances {
        let Some(now) = live.instance(&instance.id) else {
            return Err(ApplyError::NotConverged(format!(
                "service instance {} is no longer reported",
                instance.id
            )));
        };
        for unit in &now.crypto_units {
            if !unit
                .current_register
                .holds(&instance.target_verification_pattern)
                || unit.new_register != NewRegister::Empty
            {
                return Err(ApplyError::NotConverged(format!(
                    "after the last step crypto unit {} holds new {:#}, current {:#}, not the desired state; run apply again to plan from here",
                    unit.hsm_id, unit.new_register, unit.current_register
                )));
            }
        }
    }
    Ok(())
}
