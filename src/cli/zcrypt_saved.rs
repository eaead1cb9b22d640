//! A domain group's saved plan (`plan GROUP.yaml --out PLANFILE`, `kind` `domain_group`):
//! `show PLANFILE` prints it, and `apply PLANFILE` runs it only while it is still the plan:
//! the same group file (SHA-256), the same backend and journal identity, the same machine
//! (the live fingerprint: every register, card serial and store copy), and planning again
//! from them and the journal gives the same steps. Otherwise exit 4 with what changed, and
//! nothing is touched. A saved plan was reviewed, so apply asks for no approval.

use std::path::{Path, PathBuf};

use super::ApplyArgs;
use super::context::path_in_plan_file;
use super::output;
use super::zcrypt::{open_backend, read_and_plan, read_group_hashed, refused, run_group_apply};
use crate::error::{Error, Result};
use crate::model::InputError;
use crate::plan::PLAN_FILE_BYTES_MAX;
use crate::plan::domain_group::GroupPlan;
use crate::quote;
use crate::render::domain_group::{
    GroupPlanDocument, group_live_fingerprint, group_plan_dot, group_plan_json, group_plan_text,
};
use crate::render::domain_group_markdown::{GroupSource, group_plan_markdown};
use crate::store::Store;

/// A saved domain group plan as `plan --out` writes it.
#[derive(serde::Deserialize)]
struct SavedGroupPlan {
    format_version: String,
    kind: String,
    desired_sha256: String,
    live_fingerprint: String,
    backend: String,
    backend_identity: String,
    desired_file: Option<String>,
    #[serde(flatten)]
    plan: GroupPlan,
}

impl SavedGroupPlan {
    fn document(&self) -> GroupPlanDocument<'_> {
        GroupPlanDocument {
            plan: &self.plan,
            backend: &self.backend,
            backend_identity: &self.backend_identity,
            desired_sha256: &self.desired_sha256,
            live_fingerprint: &self.live_fingerprint,
            desired_file: self.desired_file.as_deref(),
        }
    }
}

/// Whether `path` is a plan file of a domain group (JSON whose `kind` is `domain_group`).
/// Anything else, unreadable included, is left to the HPCS plan reader and its messages.
pub fn is_group_plan_file(path: &Path) -> bool {
    let Ok(text) = crate::bounded_read::read_to_string(path, PLAN_FILE_BYTES_MAX) else {
        return false;
    };
    #[derive(serde::Deserialize)]
    struct Kind {
        kind: Option<String>,
    }
    text.trim_start().starts_with('{')
        && serde_json::from_str::<Kind>(&text)
            .is_ok_and(|k| k.kind.as_deref() == Some("domain_group"))
}

fn read_saved(path: &Path) -> Result<SavedGroupPlan> {
    let shown = path.display().to_string();
    let fix = "write plan files with `mkplan plan GROUP.yaml --out PLANFILE`; do not edit them";
    let text = crate::bounded_read::read_to_string(path, PLAN_FILE_BYTES_MAX)
        .map_err(|e| InputError::new(&shown, format!("cannot read the plan file: {e}")).fix(fix))?;
    let saved: SavedGroupPlan = serde_json::from_str(&text).map_err(|e| {
        InputError::from_json(&shown, "damaged domain group plan file", &text, &e, &[]).fix(fix)
    })?;
    if saved.format_version != "1" || saved.kind != "domain_group" {
        return Err(InputError::new(
            &shown,
            format!(
                "this plan file is of format version {} and kind {}; this mkplan reads domain group plans of format version \"1\" (docs/json.md)",
                quote::quote(&saved.format_version),
                quote::quote(&saved.kind)
            ),
        )
        .fix(fix)
        .into());
    }
    Ok(saved)
}

/// `show PLANFILE` for a domain group's plan: text, `--json`, `--markdown` or `--dot`. The
/// file may come from anyone: what it says is shown inert.
pub fn show(path: &Path, json: bool, markdown: bool, dot: bool) -> Result<u8> {
    let saved = read_saved(path)?;
    let text = if json {
        format!("{}\n", group_plan_json(&saved.document()))
    } else if markdown {
        let what = format!("saved plan {} against {}", path.display(), saved.backend);
        let source = GroupSource {
            what: &what,
            desired_sha256: &saved.desired_sha256,
            live_fingerprint: &saved.live_fingerprint,
        };
        group_plan_markdown(&saved.plan, None, &source)
    } else if dot {
        group_plan_dot(&saved.plan)
    } else {
        group_plan_text(&saved.plan, &saved.backend)
    };
    output::report(&quote::inert(&text))?;
    Ok(0)
}

/// `apply PLANFILE` for a domain group.
pub async fn apply_saved(path: &Path, args: &ApplyArgs, store: &Store) -> Result<u8> {
    let saved = read_saved(path)?;
    let desired_path: PathBuf = match (&args.desired, &saved.desired_file) {
        (Some(given), _) => given.clone(),
        (None, Some(recorded)) => path_in_plan_file(recorded, path),
        (None, None) => {
            return Err(Error::Other(format!(
                "{} does not name its group file: pass it with --desired FILE. Nothing was touched",
                path.display()
            )));
        }
    };
    let (mut desired, desired_sha256) = read_group_hashed(&desired_path)?;
    let stale = |what: String| {
        Error::Stale(format!(
            "the plan {} is stale: {what}. Nothing was touched; make a new plan with `mkplan plan {} --out {}`",
            path.display(),
            desired_path.display(),
            path.display()
        ))
    };
    if desired_sha256 != saved.desired_sha256 {
        return Err(stale(format!(
            "the group file {} is not the one it was made from (its SHA-256 differs)",
            quote::path(&desired_path)
        )));
    }
    // The backend comes from the command line or the group file, never from the plan file,
    // as for a service's plan: a plan file must not choose which machine is acted on.
    let from = if args.backend.backend.is_some() {
        "--backend or MKPLAN_BACKEND".to_string()
    } else {
        format!("`backend:` in {}", quote::path(&desired_path))
    };
    let made_against = quote::bare(&saved.backend);
    let backend = open_backend(&mut desired, &args.backend, &desired_path).map_err(|e| {
        Error::Other(format!(
            "{e}\nThe plan {} was made against {made_against}; this apply took its backend from {from}. Nothing was touched; pass --backend for the machine the plan was made on",
            path.display()
        ))
    })?;
    if backend.describe() != saved.backend || backend.identity(&desired) != saved.backend_identity {
        return Err(stale(format!(
            "it was made against {made_against}, but this apply reaches {} (from {from})",
            backend.describe()
        )));
    }
    eprintln!(
        "Applying the saved plan {}: domain group {} from {} against {}; {} step(s).",
        path.display(),
        desired.name,
        quote::path(&desired_path),
        backend.describe(),
        saved.plan.steps.len()
    );
    let check = |store: &Store| -> Result<_> {
        let (live, planned) = read_and_plan(&desired, &backend, store)?;
        let plan = planned.map_err(refused)?;
        if group_live_fingerprint(&live) != saved.live_fingerprint {
            return Err(stale(
                "the machine changed since it was made (a register, a card serial or a store's copies; `mkplan status` shows them now)".into(),
            ));
        }
        if plan != saved.plan {
            return Err(stale(
                "planning again from the machine and the journal gives other steps".into(),
            ));
        }
        Ok((live, plan))
    };
    run_group_apply(&desired, &backend, store, args, Some(&check))
}
