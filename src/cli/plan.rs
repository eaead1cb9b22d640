//! `validate`, `plan` and `show`.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::PlanArgs;
use super::context::{
    evidence_for, path_from_plan_file, path_in_plan_file, read_desired, refresh_desired,
};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::InputError;
use crate::plan::{PLAN_FORMAT_VERSION, Plan, StepGraph};
use crate::render;

pub fn validate(desired: &Path) -> Result<u8> {
    let desired = read_desired(desired)?;
    let units: usize = desired.state.instances.len();
    eprintln!(
        "{} is valid: {} service instance(s), key part files present and well formed.",
        desired.path.display(),
        units
    );
    Ok(0)
}

pub async fn plan(args: &PlanArgs, state_dir: &Path) -> Result<u8> {
    let desired = read_desired(&args.desired)?.only(&args.only.instances)?;
    let (backend, live) = refresh_desired(&desired, &args.backend).await?;
    let records = super::journal_key::read_journal(state_dir)?;
    let journal = evidence_for(&records, &backend, state_dir, &desired);
    let mut plan = match crate::plan::plan(&desired.state, &desired.sha256, &live, &journal) {
        Ok(plan) => plan,
        Err(refused) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&refused).expect("refusals serialize")
                );
            }
            return Err(Error::Refused(refused));
        }
    };
    desired.stamp(&mut plan, &backend);
    if let Some(out) = &args.out {
        plan.desired_file = Some(path_from_plan_file(&desired.path, out));
        save(&plan, out)?;
    }
    let source = format!("{} against {}", desired.path.display(), backend.describe());
    if args.json {
        println!("{}", render::json(&plan));
    } else if args.markdown {
        print!("{}", render::markdown(&plan, &source));
    } else {
        eprint!("{}", render::text(&plan, &source));
    }
    if let Some(out) = &args.out {
        eprintln!(
            "Saved the plan to {}. Review it with `mkplan show {}`.",
            out.display(),
            out.display()
        );
    }
    Ok(if args.detailed_exitcode && plan.changes {
        2
    } else {
        0
    })
}

/// Writes the plan file atomically: a half-written plan must never be applied.
pub(super) fn save(plan: &Plan, out: &Path) -> Result<()> {
    let folder = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let failed = |e: std::io::Error| {
        Error::Other(format!("cannot write the plan file {}: {e}", out.display()))
    };
    let mut temporary = tempfile::NamedTempFile::new_in(folder).map_err(failed)?;
    temporary
        .write_all(render::json(plan).as_bytes())
        .map_err(failed)?;
    temporary.write_all(b"\n").map_err(failed)?;
    temporary.as_file().sync_all().map_err(failed)?;
    temporary.persist(out).map_err(|e| failed(e.error))?;
    Ok(())
}

pub fn read_plan_file(path: &Path) -> Result<Plan> {
    let shown = path.display().to_string();
    let text = fs::read_to_string(path).map_err(|e| {
        InputError::new(&shown, format!("cannot read the plan file: {e}"))
            .fix("write one with `mkplan plan DESIRED.yaml --out PLANFILE`")
    })?;
    let plan: Plan = serde_json::from_str(&text).map_err(|e| {
        InputError::new(&shown, format!("not a plan file: {e}"))
            .at(&text, e.line() as u64, e.column() as u64)
            .fix("write plan files with `mkplan plan --out`; do not edit them")
    })?;
    if plan.format_version != PLAN_FORMAT_VERSION {
        return Err(InputError::new(
            &shown,
            format!(
                "plan format version {} is not {PLAN_FORMAT_VERSION}",
                plan.format_version
            ),
        )
        .fix("make the plan again with this mkplan")
        .into());
    }
    StepGraph::new(&plan.steps).map_err(|e| {
        InputError::new(&shown, format!("damaged plan: {e}"))
            .fix("make the plan again with `mkplan plan --out`")
    })?;
    Ok(plan)
}

pub fn show(path: &Path, json: bool, markdown: bool, dot: bool) -> Result<u8> {
    let plan = read_plan_file(path)?;
    let source = format!("saved plan {}", path.display());
    if json {
        println!("{}", render::json(&plan));
    } else if markdown {
        print!("{}", render::markdown(&plan, &source));
    } else if dot {
        print!("{}", render::dot(&plan));
    } else {
        eprint!("{}", render::text(&plan, &source));
    }
    Ok(0)
}

/// `runbook PLANFILE`: the plan's steps as a checklist; the desired file it names gives the
/// key part holders.
pub fn runbook(path: &Path, markdown: bool) -> Result<u8> {
    let mut plan = read_plan_file(path)?;
    let desired_file = plan.desired_file.clone().ok_or_else(|| {
        Error::Other(format!(
            "{} does not name its desired file; make it with `mkplan plan DESIRED --out`",
            path.display()
        ))
    })?;
    let desired = read_desired(&path_in_plan_file(&desired_file, path))?;
    // The checklist names the desired file as it is found from here.
    plan.desired_file = Some(desired.path.display().to_string());
    let instructions = super::ceremony::instructions(&desired, &plan);
    let by_hand = super::ceremony::ceremony_steps(&desired, &plan, false)
        .into_keys()
        .collect();
    let text = render::runbook(&plan, &instructions, &by_hand, markdown);
    if markdown {
        print!("{text}");
    } else {
        eprint!("{text}");
    }
    Ok(0)
}
