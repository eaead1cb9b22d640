//! `validate`, `plan`, `apply` and `status` for a domain group file (first key
//! `domain_group:`, docs/zcrypt.md) on the `zcrypt:` backend. The commands are the HPCS
//! ones; the CLI sends a group file here before it reads an HPCS desired file.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::context::path_from_plan_file;
use super::output;
use super::{ApplyArgs, BackendArg, PlanArgs};
use crate::apply::group::{Answer, GroupApply, GroupApplyError, GroupOperator};
use crate::apply::group_journal::GroupJournal;
use crate::backend::BackendSpec;
use crate::backend::zcrypt::group::{ReadError, ZcryptBackend};
use crate::backend::zcrypt::inventory::ep11_token_dir;
use crate::backend::zcrypt::ock_conf::EP11_TOKEN_DIR_VARIABLE;
use crate::backend::zcrypt::pins::{PinSourceErrors, UserPins, affected_slots, check_sources};
use crate::backend::zcrypt::tools::SystemRunner;
use crate::error::{Error, Result};
use crate::model::InputError;
use crate::model::domain_group::{GroupMode, LiveGroup, StoreKind};
use crate::model::domain_group_desired::{
    DesiredGroup, DesiredStore, is_domain_group, parse_domain_group,
};
use crate::model::ock_tokens::{GroupTokens, token_changing};
use crate::plan::domain_group::{GroupPlan, GroupRefusal, plan_group};
use crate::render::domain_group::{
    GroupPlanDocument, group_live_fingerprint, group_plan_json, group_plan_text, group_refusal_json,
};
use crate::render::domain_group_markdown::{
    GroupSource, group_plan_markdown, group_refusal_markdown,
};
use crate::store::{Store, postgres};
use sha2::{Digest, Sha256};

/// A desired file larger than this is not a domain group file.
const GROUP_FILE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Whether `path` is a domain group file (an unreadable one is left to the HPCS reader's
/// messages).
pub fn is_group_file(path: &Path) -> bool {
    crate::bounded_read::read_to_string(path, GROUP_FILE_BYTES_MAX)
        .is_ok_and(|text| is_domain_group(&text))
}

pub(super) fn read_group(path: &Path) -> Result<DesiredGroup> {
    Ok(read_group_hashed(path)?.0)
}

/// The group file and the SHA-256 of its bytes, which a saved plan is bound to.
pub(super) fn read_group_hashed(path: &Path) -> Result<(DesiredGroup, String)> {
    let shown = path.display().to_string();
    let text = crate::bounded_read::read_to_string(path, GROUP_FILE_BYTES_MAX)
        .map_err(|e| InputError::new(&shown, format!("cannot read the domain group file: {e}")))?;
    let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    // Relative paths start at the file's folder, made absolute: a LUKS2 volume's key file is
    // named in the commands the journal records, which must read the same from any folder.
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let folder = std::path::absolute(parent.unwrap_or(Path::new(".")))
        .map_err(|e| InputError::new(&shown, format!("cannot tell its folder: {e}")))?;
    let desired = parse_domain_group(&shown, &text, &folder)?;
    Ok((desired, sha256))
}

/// Opens the group's backend and resolves its APQN selector against that sysfs (every plan
/// and apply resolves it again: what it selects is shown in the plan and bound to the change
/// by the journal).
pub(super) fn open_backend(
    desired: &mut DesiredGroup,
    flag: &BackendArg,
    path: &Path,
) -> Result<ZcryptBackend> {
    let (spec, relative_to) = match (&flag.backend, &desired.backend) {
        (Some(spec), _) => (spec.clone(), None),
        (None, Some(spec)) => (spec.clone(), path.parent()),
        (None, None) => {
            return Err(Error::Other(format!(
                "{}: no backend: add `backend: zcrypt:/` to the file or give --backend zcrypt:SYSFS_ROOT",
                path.display()
            )));
        }
    };
    let backend = match BackendSpec::parse(&spec, relative_to).map_err(Error::Other)? {
        BackendSpec::Zcrypt(root) => {
            let runner = SystemRunner::hiding(desired.user_pins.variables());
            ZcryptBackend::open(&root, Arc::new(runner)).map_err(Error::Other)?
        }
        _ => {
            return Err(Error::Other(format!(
                "backend {} cannot hold a domain group: use zcrypt:/ (this machine) or zcrypt:SYSFS_ROOT",
                crate::quote::quote(&spec)
            )));
        }
    };
    backend.resolve_apqns(desired).map_err(read_error)?;
    if let Some(selection) = &desired.selection {
        output::note(&format!(
            "Domain group {}: APQNs {}, {}.",
            desired.name,
            apqn_words(&selection.selected),
            selection.describe(desired.mode)
        ));
    }
    Ok(backend)
}

/// APQNs for people: `03.0006, 04.0006`, or `none`.
pub(crate) fn apqn_words(apqns: &[crate::model::domain_group::Apqn]) -> String {
    if apqns.is_empty() {
        return "none".into();
    }
    apqns
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn refused(refusal: impl std::fmt::Display) -> Error {
    Error::Unsafe(refusal.to_string())
}

/// A run's failure: a refusal (the machine contradicting itself among them) exits 3, any
/// other failure 1.
fn group_error(error: GroupApplyError) -> Error {
    match error {
        GroupApplyError::Refused(refusal) => refused(refusal),
        GroupApplyError::Failed(why) => Error::Other(why),
    }
}

/// Reading the machine failed: refused (exit 3) where what it shows contradicts itself.
pub(super) fn read_error(error: ReadError) -> Error {
    group_error(error.into())
}

pub fn validate(path: &Path) -> Result<u8> {
    let desired = read_group(path)?;
    // Without the machine, which slots the tokens hold is not known: the sources named are
    // checked (`plan` checks each token's slot too).
    let tokens = desired.stores.contains(&DesiredStore::OpenCryptoki);
    if tokens {
        check_sources(&desired, &[]).map_err(|problems| Error::Other(problems.to_string()))?;
    }
    let apqns = match &desired.selector {
        None => format!("{} APQNs", desired.apqns.len()),
        Some(selector) => {
            format!("the APQNs `apqns: {selector}` selects on the machine at each plan and apply")
        }
    };
    let pins = match tokens {
        true => format!(
            "; the USER PIN sources of slot(s) {} can be read",
            desired
                .user_pins
                .sources()
                .map(|(slot, _)| slot.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        false => String::new(),
    };
    eprintln!(
        "{}: domain group {} is valid: {apqns}, {} master key type(s), {} store declaration(s){pins}",
        path.display(),
        desired.name,
        desired.master_keys.len(),
        desired.stores.len()
    );
    Ok(0)
}

fn plan_now(
    desired: &DesiredGroup,
    backend: &ZcryptBackend,
    store: &Store,
) -> Result<(LiveGroup, GroupPlan)> {
    let (live, planned) = read_and_plan(desired, backend, store)?;
    Ok((live, planned.map_err(refused)?))
}

/// Whether applying `plan` runs `pkcshsm_mk_change`, which asks for the USER PINs.
fn runs_pkcshsm_mk_change(desired: &DesiredGroup, plan: &GroupPlan) -> bool {
    desired.stores.contains(&DesiredStore::OpenCryptoki)
        && plan.steps.iter().any(|s| {
            s.store
                .as_ref()
                .is_some_and(|s| s.kind == StoreKind::OpenCryptoki)
        })
}

/// The USER PIN sources checked as `apply` reads them (`UserPins::read`, one rule), when
/// applying `plan` runs `pkcshsm_mk_change`; the slots of the tokens on the group's APQNs
/// come from the machine as read.
fn pin_sources(
    desired: &DesiredGroup,
    live: &LiveGroup,
    plan: &GroupPlan,
) -> std::result::Result<Option<Arc<UserPins>>, PinSourceErrors> {
    if !runs_pkcshsm_mk_change(desired, plan) {
        return Ok(None);
    }
    UserPins::read(desired, &affected_slots(desired, &live.inventory)).map(Some)
}

/// What the token configs read told (`Inventory::notes`), and with `OCK_EP11_TOKEN_DIR` set,
/// the EP11 token configs read there, each with its slot: the tokens' APQNs come from them,
/// and the variable is easy to forget. (A folder that cannot be read is the planner's
/// refusal, `undeclared_stores`.)
fn note_token_configs(desired: &DesiredGroup, live: &LiveGroup) {
    for note in &live.inventory.notes {
        output::note(note);
    }
    if let Some(note) = no_token_to_move(desired, live) {
        output::note(&note);
    }
    if let Some(note) = no_zkey_key_to_move(desired, live) {
        output::note(&note);
    }
    let Ok(Some(dir)) = ep11_token_dir() else {
        return;
    };
    let read: Vec<String> = live
        .inventory
        .tokens
        .iter()
        .filter(|t| t.mode == GroupMode::Ep11)
        .map(|t| match t.slot {
            Some(slot) => format!("slot {slot}: {}", t.config),
            None => t.config.clone(),
        })
        .collect();
    if read.is_empty() && !live.inventory.unreadable.is_empty() {
        return;
    }
    output::note(&format!(
        "openCryptoki: {EP11_TOKEN_DIR_VARIABLE} is {}, so the EP11 tokens read their configs there; read: {}.",
        crate::quote::path(&dir),
        match read.is_empty() {
            true => "none".to_string(),
            false => read.join(", "),
        }
    ));
}

/// Why a group declaring `opencryptoki: tokens` has no openCryptoki step: no token uses its
/// APQNs and no operation is open there, or it changes no type a token uses (a CCA group
/// changing ASYM only). `None` when tokens may move, or the inventory could not be read
/// (the planner refuses then).
fn no_token_to_move(desired: &DesiredGroup, live: &LiveGroup) -> Option<String> {
    let inventory = &live.inventory;
    if !desired.stores.contains(&DesiredStore::OpenCryptoki) || !inventory.unreadable.is_empty() {
        return None;
    }
    let types = token_changing(desired.mode, desired.master_keys.keys().copied());
    let group = GroupTokens::of(
        &inventory.tokens,
        &inventory.operations,
        &desired.apqns,
        desired.mode,
    );
    if types.is_empty() {
        return Some(format!(
            "openCryptoki: the group declares `opencryptoki: tokens` but changes only {}, which pkcshsm_mk_change moves for no token (the CCA token's types are SYM, AES and APKA; RSA-CRT keys of tokens made by openCryptoki 3.14 or older, under ASYM, are converted with `pkcscca -m oldrsakeys`): the plan has no openCryptoki step.",
            desired
                .master_keys
                .keys()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    (group.tokens.is_empty() && group.operations.is_empty()).then(|| format!(
        "openCryptoki: the group declares `opencryptoki: tokens`, but no token config in {} puts an openCryptoki {} token on its APQNs and no pkcshsm_mk_change operation is open there: nothing to re-encipher, so the plan has no openCryptoki step.",
        crate::quote::path(&desired.opencryptoki_config),
        desired.mode
    ))
}

/// Why a group declaring `zkey_keys: associated` moves no zkey key: the repository it reads
/// shows none on its APQNs. Said, because the keys may be kept in another repository (round
/// 12z, F5). `None` when one moves, or the inventory could not be read.
fn no_zkey_key_to_move(desired: &DesiredGroup, live: &LiveGroup) -> Option<String> {
    let inventory = &live.inventory;
    if !desired.stores.contains(&DesiredStore::ZkeyAssociated) || !inventory.unreadable.is_empty() {
        return None;
    }
    let none = !inventory
        .zkey_keys
        .iter()
        .any(|k| k.depends_on(&desired.apqns, desired.mode));
    none.then(|| format!(
        "zkey: the group declares `zkey_keys: associated`, but `zkey list` in the repository {} shows no key on its APQNs: nothing to re-encipher there. If this machine keeps its zkey keys in another repository, name it as zkey_repository.",
        crate::quote::path(&desired.zkey_repository)
    ))
}

/// The machine as read, and the plan from it and the journal (or the pre-check that refused).
pub(super) fn read_and_plan(
    desired: &DesiredGroup,
    backend: &ZcryptBackend,
    store: &Store,
) -> Result<(LiveGroup, std::result::Result<GroupPlan, GroupRefusal>)> {
    let live = backend.read(desired).map_err(read_error)?;
    let journal = read_journal(store, &backend.identity(desired))?;
    let evidence = crate::apply::group_evidence::group_evidence(&journal, desired);
    let planned = plan_group(desired, &live, &evidence);
    Ok((live, planned))
}

/// The group's journal, read without writing: from the state folder (checked with this
/// user's journal key) or the database.
fn read_journal(store: &Store, identity: &str) -> Result<GroupJournal> {
    match store {
        Store::Files(folder) => {
            let key = crate::store::files::for_reading(folder)?;
            GroupJournal::read(folder, identity, key.as_ref()).map_err(Error::Unsafe)
        }
        Store::Postgres(database) => postgres::read_group_journal(database, identity),
    }
}

/// What an apply holds from before it plans until it ends: the state folder's lock, or the
/// database's lease on the group's APQNs on this Linux image. Dropping it releases it.
pub(super) enum GroupHold {
    Folder(PathBuf, #[allow(dead_code)] crate::apply::lock::StateLock),
    Lease(Box<postgres::GroupLease>),
}

/// Takes the lock or the lease, or says who holds it (exit 1).
pub(super) fn hold(store: &Store, identity: &str, desired: &DesiredGroup) -> Result<GroupHold> {
    match store {
        Store::Files(folder) => {
            let lock = crate::apply::lock::acquire(folder, &crate::store::holder())
                .map_err(Error::Other)?;
            Ok(GroupHold::Folder(folder.clone(), lock))
        }
        Store::Postgres(database) => {
            let apqns: Vec<String> = desired.apqns.iter().map(ToString::to_string).collect();
            let lease = postgres::GroupLease::take(database, identity, &apqns)?;
            Ok(GroupHold::Lease(Box::new(lease)))
        }
    }
}

/// The group's journal, to append to under what `held` holds: in the state folder, sealed
/// with this user's journal key (made if none), or in the database under the lease.
pub(super) fn open_journal(held: &GroupHold, identity: &str) -> Result<GroupJournal> {
    match held {
        GroupHold::Folder(folder, _) => {
            // A state folder that is refused makes no key either.
            crate::apply::state_dir::prepare(folder).map_err(Error::Unsafe)?;
            let key = crate::store::files::for_writing(folder)?;
            GroupJournal::open(folder, identity, &key).map_err(Error::Unsafe)
        }
        GroupHold::Lease(lease) => lease.journal(identity),
    }
}

pub async fn plan(args: &PlanArgs, store: &Store) -> Result<u8> {
    let (mut desired, desired_sha256) = read_group_hashed(&args.desired)?;
    let backend = open_backend(&mut desired, &args.backend, &args.desired)?;
    let (live, planned) = read_and_plan(&desired, &backend, store)?;
    note_token_configs(&desired, &live);
    let what = format!("{} against {}", args.desired.display(), backend.describe());
    let plan = match planned {
        Ok(plan) => plan,
        Err(refusal) => {
            // A refusal is a report too: in the format asked for on stdout, in words on
            // stderr, exit 3.
            if args.json {
                output::report_line(&group_refusal_json(&desired.name, &refusal))?;
            } else if args.markdown {
                output::report(&group_refusal_markdown(&desired.name, &refusal, &what))?;
            }
            return Err(refused(refusal));
        }
    };
    // A plan `apply` would stop before its first step is shown, not saved, and exits 1.
    let pins = pin_sources(&desired, &live, &plan).map(drop);
    let live_fingerprint = group_live_fingerprint(&live);
    let document = GroupPlanDocument {
        plan: &plan,
        backend: &backend.describe(),
        backend_identity: &backend.identity(&desired),
        desired_sha256: &desired_sha256,
        live_fingerprint: &live_fingerprint,
        desired_file: None,
    };
    if let Some(out) = args.out.as_ref().filter(|_| pins.is_ok()) {
        let desired_file = path_from_plan_file(&args.desired, out);
        let saved = GroupPlanDocument {
            desired_file: Some(&desired_file),
            ..document
        };
        super::plan::save_text(&group_plan_json(&saved), out)?;
    }
    if args.json {
        output::report_line(&group_plan_json(&document))?;
    } else if args.markdown {
        let source = GroupSource {
            what: &what,
            desired_sha256: &desired_sha256,
            live_fingerprint: &live_fingerprint,
        };
        output::report(&group_plan_markdown(&plan, Some(&live), &source))?;
    } else {
        output::report(&group_plan_text(&plan, &backend.describe()))?;
    }
    if let Err(problems) = pins {
        let saved = match &args.out {
            Some(out) => format!(" It was not saved to {}.", out.display()),
            None => String::new(),
        };
        return Err(Error::Other(format!(
            "{problems}\nThe plan above cannot be applied until they can be read: `apply` would stop before its first step.{saved}"
        )));
    }
    if let Some(out) = &args.out {
        output::note(&format!(
            "Saved the plan to {}. Review it with `mkplan show {}`; `mkplan apply {}` runs it only while the group file and the machine are as they were.",
            out.display(),
            out.display(),
            out.display()
        ));
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        2
    } else {
        0
    })
}

/// The operator at the terminal (or a script driving the ceremony): each instruction on
/// stderr, answers on stdin: `done`, `not done` or `stop`.
struct StdinOperator;

impl GroupOperator for StdinOperator {
    fn perform(&self, instruction: &str) -> Answer {
        eprint!("{instruction}");
        let stdin = std::io::stdin();
        loop {
            eprintln!(
                "Type 'done' when it is done, 'not done' if you did not do it, or 'stop' to stop here:"
            );
            let mut line = String::new();
            match stdin.lock().read_line(&mut line) {
                Ok(0) | Err(_) => return Answer::Stopped("no more input on stdin".into()),
                Ok(_) => {}
            }
            match line.trim() {
                "done" => return Answer::Done,
                "not done" => return Answer::NotDone,
                "stop" => return Answer::Stopped("the operator stopped".into()),
                _ => eprintln!("  That is not an answer here."),
            }
        }
    }
}

pub async fn apply(args: &ApplyArgs, store: &Store) -> Result<u8> {
    let path: PathBuf = args.desired.clone().unwrap_or_else(|| args.target.clone());
    let mut desired = read_group(&path)?;
    let backend = open_backend(&mut desired, &args.backend, &path)?;
    run_group_apply(&desired, &backend, store, args, None)
}

/// Checks a saved plan against the machine, under the lock: the machine as read and the plan.
pub(super) type SavedCheck<'a> = &'a dyn Fn(&Store) -> Result<(LiveGroup, GroupPlan)>;

/// Takes the lock, plans (or checks the saved plan: then no approval is asked, it was
/// reviewed), and runs the change to the end or to a refusal.
pub(super) fn run_group_apply(
    desired: &DesiredGroup,
    backend: &ZcryptBackend,
    store: &Store,
    args: &ApplyArgs,
    saved: Option<SavedCheck>,
) -> Result<u8> {
    let identity = backend.identity(desired);
    let held = hold(store, &identity, desired)?;
    let (live, plan) = match saved {
        Some(check) => check(store)?,
        None => plan_now(desired, backend, store)?,
    };
    note_token_configs(desired, &live);
    // Read before anything runs, and before the approval is asked: a source that cannot be
    // read stops the apply with nothing done.
    let user_pins = pin_sources(desired, &live, &plan)
        .map_err(|problems| Error::Other(format!("{problems}\nNothing was done")))?;
    if saved.is_none() {
        if plan.has_changes() {
            eprint!("{}", group_plan_text(&plan, &backend.describe()));
        }
        if plan.has_changes() && !args.auto_approve {
            eprintln!("Apply this plan? Type 'yes' to go on:");
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            if line.trim() != "yes" {
                eprintln!("Not applied: nothing was done.");
                return Ok(1);
            }
        }
    }
    let mut journal = open_journal(&held, &identity)?;
    let progress = |line: &str| eprintln!("{line}");
    let mut run = GroupApply {
        backend,
        desired,
        journal: &mut journal,
        operator: &StdinOperator,
        verify_timeout: Duration::from_secs(args.verify_timeout_s),
        progress: &progress,
        user_pins,
    };
    match run.run() {
        Ok(0) => {
            eprintln!("No changes: domain group {} is converged.", desired.name);
            Ok(0)
        }
        Ok(steps) => {
            eprintln!(
                "Domain group {} converged after {steps} steps.",
                desired.name
            );
            Ok(0)
        }
        Err(error) => Err(group_error(error)),
    }
}
