//! `apply PLANFILE`: a plan saved by `plan --out`, found from any folder and run only if it is
//! still current: the same desired file (by SHA-256), the same backend, the same live state.

use std::path::Path;

use super::ApplyArgs;
use super::context::{
    Desired, evidence_for, open_backend, path_in_plan_file, read_desired, refresh_backend,
};
use super::plan::read_plan_file;
use crate::apply::journal::Record;
use crate::backend::{AnyBackend, Backend};
use crate::error::{Error, Result};
use crate::model::LiveFleet;
use crate::plan::Plan;
use crate::quote;
use crate::render;
use crate::store::Store;

/// The first half of `apply PLANFILE`, before the lock: the plan as saved, if the desired file and the live state are still
/// the ones it was made from, and planning again from them and from the journal as it is now
/// gives the same steps and the same key storage finding; otherwise exit 4 with what changed
/// (or exit 3 if the planner now refuses). A rewrap leaves no trace in the registers of a
/// service without a rotation status: only the journal knows it was sent.
///
/// The desired file is `--desired`, else the one the plan names, found from the plan file's
/// folder; a plan made with `--instance` refreshes, checks and applies only its instances.
pub(super) fn open_saved(path: &Path, args: &ApplyArgs) -> Result<Saved> {
    let flag = &args.backend;
    let plan = read_plan_file(path)?;
    let desired_path = match (&args.desired, &plan.desired_file) {
        (Some(given), _) => given.clone(),
        (None, Some(recorded)) => path_in_plan_file(recorded, path),
        (None, None) => {
            return Err(Error::Other(format!(
                "{} does not name its desired file: pass it with --desired FILE, or make the plan with `mkplan plan DESIRED --out`",
                path.display()
            )));
        }
    };
    if args.desired.is_none() && !desired_path.exists() {
        return Err(Error::Other(format!(
            "the plan {} names the desired file {}, found from the plan file's folder at {}, which does not exist. Nothing was touched; pass the desired file with --desired FILE",
            path.display(),
            quote::name(plan.desired_file.as_deref().unwrap_or_default()),
            quote::path(&desired_path)
        )));
    }
    let desired = read_desired(&desired_path)?;
    // The plan file's words, shown cut and inert: the file may come from anyone.
    let desired_file = quote::path(&desired.path);
    if desired.sha256 != plan.desired_sha256 {
        return Err(Error::Stale(format!(
            "the plan {} is stale: the desired file {desired_file} {} (its SHA-256 differs). Nothing was touched; make a new plan",
            path.display(),
            if args.desired.is_some() {
                "given with --desired is not the one it was made from"
            } else {
                "changed since it was made"
            }
        )));
    }
    let wanted = &args.only.instances;
    let within = |a: &[String], b: &[String]| {
        a.iter()
            .all(|x| b.iter().any(|y| x.eq_ignore_ascii_case(y)))
    };
    let same = |a: &[String], b: &[String]| within(a, b) && within(b, a);
    if !wanted.is_empty() && !same(wanted, &plan.targeted) {
        return Err(Error::Other(format!(
            "--instance {}: a saved plan applies exactly the service instances it was made for ({}). Nothing was touched; make a plan for these with `mkplan plan {desired_file} --instance ID… --out PLANFILE`",
            wanted.join(", "),
            if plan.targeted.is_empty() {
                "all of the desired file's".to_string()
            } else {
                plan.targeted.join(", ")
            }
        )));
    }
    let desired = desired.only(&plan.targeted)?;
    // The backend comes from the command line or the desired file, never from the plan file:
    // a plan file that names another server must not send the key parts there.
    let backend = open_backend(&desired, flag)?;
    Ok(Saved {
        path: path.to_path_buf(),
        plan,
        desired,
        backend,
        backend_from_flag: flag.backend.is_some(),
    })
}

/// A saved plan, its desired file and its backend, checked before the lock is taken.
pub(super) struct Saved {
    path: std::path::PathBuf,
    plan: Plan,
    pub desired: Desired,
    pub backend: AnyBackend,
    backend_from_flag: bool,
}

/// The second half of `apply PLANFILE`, under the lock: refreshes the live state and checks
/// the plan against it and against the journal's `records`.
pub(super) async fn check_saved(
    saved: Saved,
    records: &[Record],
    store: &Store,
) -> Result<(
    Desired,
    AnyBackend,
    LiveFleet,
    Plan,
    crate::model::OtherFolders,
)> {
    let Saved {
        path,
        plan,
        desired,
        backend,
        backend_from_flag,
    } = saved;
    let path = path.as_path();
    let desired_file = quote::path(&desired.path);
    let live = refresh_backend(&desired, &backend).await?;
    // An HTTP backend's identity is the service's own name, read by the refresh.
    let (planned, now) = match &plan.backend_identity {
        Some(identity) => (identity.clone(), backend.identity()),
        None => (plan.backend.clone().unwrap_or_default(), backend.describe()),
    };
    if planned != now {
        return Err(Error::Stale(format!(
            "the plan {} was made against {}, but this apply reaches {} (from {}). Nothing was sent to either; apply it against its own backend, or make a new plan",
            path.display(),
            plan.backend
                .as_deref()
                .map_or("an unnamed backend".into(), quote::name),
            backend.describe(),
            if backend_from_flag {
                "--backend or MKPLAN_BACKEND".to_string()
            } else {
                format!("`backend:` in {desired_file}")
            }
        )));
    }
    eprintln!(
        "Applying the saved plan {}: made from {desired_file} against {}; {} step(s) on {}.",
        path.display(),
        backend.describe(),
        plan.steps.len(),
        plan.instances
            .iter()
            .map(|i| format!(
                "{} (to {}…)",
                quote::bare(&i.id),
                i.target_verification_pattern.short()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !plan.left_out.is_empty() {
        eprintln!("{}", render::left_out_line(&plan.left_out));
    }
    if live.fingerprint() != plan.live_fingerprint {
        return Err(Error::Stale(format!(
            "the plan {} is stale: the live state changed since it was made. Nothing was touched; make a new plan.\n{}",
            path.display(),
            changes_since(&plan, &live).join("\n")
        )));
    }
    let evidence = evidence_for(records, &backend, store, &desired);
    let fresh = crate::plan::plan(&desired.state, &desired.sha256, &live, &evidence)?;
    let shape = |p: &Plan| {
        let steps: Vec<_> = p
            .steps
            .iter()
            .map(|s| {
                (
                    s.action,
                    s.instance.clone(),
                    s.unit.clone(),
                    s.depends_on.clone(),
                )
            })
            .collect();
        let findings: Vec<_> = p
            .instances
            .iter()
            .map(|i| {
                (
                    i.id.clone(),
                    i.key_storage_under.clone(),
                    i.target_verification_pattern.clone(),
                )
            })
            .collect();
        (steps, findings)
    };
    if shape(&fresh) != shape(&plan) {
        return Err(Error::Stale(format!(
            "the plan {} is stale: planned again from the live state and the journal in the state directory, the steps or the key storage finding differ (the journal recorded operations since the plan was made). Nothing was touched; make a new plan with `mkplan plan {desired_file} --out …`",
            path.display()
        )));
    }
    Ok((desired, backend, live, plan, evidence.other_folders))
}

/// Per crypto unit, what differs between the plan's "before" and the live state now.
fn changes_since(plan: &Plan, live: &LiveFleet) -> Vec<String> {
    let mut lines = Vec::new();
    for instance in &plan.instances {
        let Some(now) = live.instance(&instance.id) else {
            lines.push(format!(
                "  service instance {}: no longer reported",
                quote::bare(&instance.id)
            ));
            continue;
        };
        if now.rewrap_status != instance.rewrap_status {
            lines.push(format!(
                "  service instance {}: rewrap status was \"{}\", now \"{}\"",
                instance.id,
                instance.rewrap_status.describe(),
                now.rewrap_status.describe()
            ));
        }
        for unit in &instance.units {
            let Some(current) = now.unit(&unit.hsm_id) else {
                lines.push(format!(
                    "  crypto unit {}: no longer reported",
                    quote::bare(&unit.hsm_id)
                ));
                continue;
            };
            if current.new_register != unit.before.new_register {
                lines.push(format!(
                    "  crypto unit {}: new register was {:#}, now {:#}",
                    unit.hsm_id, unit.before.new_register, current.new_register
                ));
            }
            if current.current_register != unit.before.current_register {
                lines.push(format!(
                    "  crypto unit {}: current register was {:#}, now {:#}",
                    unit.hsm_id, unit.before.current_register, current.current_register
                ));
            }
        }
    }
    if lines.is_empty() {
        lines.push("  (a mode, threshold, administrator or crypto unit list changed)".into());
    }
    lines
}
