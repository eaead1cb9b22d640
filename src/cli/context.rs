//! Resolving a command's inputs once: read and check the desired file and its key part files,
//! pick the backend (flag or env, else `backend:` in the desired file), open it.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::BackendArg;
use crate::backend::http::Token;
use crate::backend::sim::Faults;
use crate::backend::tke::Credentials;
use crate::backend::{AnyBackend, BackendSpec, OpenOptions};
use crate::error::{Error, Result};
use crate::keypart;
use crate::model::{DesiredState, InputError, KeyPartSource, LiveFleet, parse_desired};
use crate::plan::Plan;
use crate::quote;

pub struct Desired {
    pub path: PathBuf,
    /// The desired key state; with `--instance`, only the named service instances.
    pub state: DesiredState,
    /// The SHA-256 of the whole file, whatever `--instance` names.
    pub sha256: String,
    /// With `--instance`: the service instances kept, and those of the file left out.
    pub targeted: Vec<String>,
    pub left_out: Vec<String>,
    /// `signature_keys:`: who signs the TKE commands, with what (only `tke:` uses them).
    pub signature_keys: Vec<crate::model::signature_keys::SignatureKey>,
}

/// Ids an error lists at most when `--instance` names one the desired file does not have.
const INSTANCE_IDS_SHOWN_MAX: usize = 20;

impl Desired {
    /// `--instance ID…`, like Terraform's `-target`: keeps only the named service instances
    /// (in the file's order), so only they are refreshed, planned, applied and shown; the
    /// others are remembered as left out. An id the file does not have is an error that
    /// names the ids it has. No ids: every instance.
    /// The service instances this command acts on (what a database lease covers).
    pub fn instance_ids(&self) -> Vec<String> {
        self.state.instances.iter().map(|i| i.id.clone()).collect()
    }

    pub fn only(mut self, ids: &[String]) -> Result<Self> {
        if ids.is_empty() {
            return Ok(self);
        }
        let named = |id: &str| ids.iter().any(|wanted| wanted.eq_ignore_ascii_case(id));
        let unknown: Vec<&str> = ids
            .iter()
            .filter(|wanted| {
                !self
                    .state
                    .instances
                    .iter()
                    .any(|i| i.id.eq_ignore_ascii_case(wanted))
            })
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            let existing: Vec<&str> = self.state.instances.iter().map(|i| i.id.as_str()).collect();
            let mut listed = existing
                .iter()
                .take(INSTANCE_IDS_SHOWN_MAX)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if existing.len() > INSTANCE_IDS_SHOWN_MAX {
                listed += &format!(" and {} more", existing.len() - INSTANCE_IDS_SHOWN_MAX);
            }
            return Err(Error::Other(format!(
                "--instance {}: {} has no such service instance. Its service instances: {listed}. Nothing was read or touched",
                unknown.join(", "),
                self.path.display()
            )));
        }
        let (kept, left_out): (Vec<_>, Vec<_>) = std::mem::take(&mut self.state.instances)
            .into_iter()
            .partition(|i| named(&i.id));
        self.targeted = kept.iter().map(|i| i.id.clone()).collect();
        self.left_out = left_out.into_iter().map(|i| i.id).collect();
        self.state.instances = kept;
        Ok(self)
    }

    /// Writes where a fresh plan came from into it: the desired file, the backend, and what
    /// `--instance` kept and left out.
    pub fn stamp(&self, plan: &mut Plan, backend: &AnyBackend) {
        use crate::backend::Backend;
        plan.desired_file = Some(self.path.display().to_string());
        plan.backend = Some(backend.describe());
        plan.backend_identity = Some(backend.identity());
        plan.targeted = self.targeted.clone();
        plan.left_out = self.left_out.clone();
    }
}

/// The desired file's path as a plan file saved at `plan_file` records it: relative to the
/// plan file's folder, so that the plan applies from any working folder (absolute when no
/// relative path leads there).
pub fn path_from_plan_file(desired: &Path, plan_file: &Path) -> String {
    let folder = match plan_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let (Ok(desired), Ok(folder)) = (fs::canonicalize(desired), fs::canonicalize(folder)) else {
        return std::path::absolute(desired)
            .unwrap_or_else(|_| desired.to_path_buf())
            .display()
            .to_string();
    };
    let common = desired
        .components()
        .zip(folder.components())
        .take_while(|(a, b)| a == b)
        .count();
    if common == 0 {
        return desired.display().to_string();
    }
    let mut relative = PathBuf::new();
    for _ in folder.components().skip(common) {
        relative.push("..");
    }
    for component in desired.components().skip(common) {
        relative.push(component);
    }
    relative.display().to_string()
}

/// The desired file a plan file names, found from the plan file's folder (or absolute).
pub fn path_in_plan_file(recorded: &str, plan_file: &Path) -> PathBuf {
    let recorded = Path::new(recorded);
    if recorded.is_absolute() {
        return recorded.to_path_buf();
    }
    let folder = match plan_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        // A plan file in the working folder: the path as recorded.
        _ => return recorded.to_path_buf(),
    };
    // From the folder's real path, `..` means what the disk means by it, even through a
    // symlink, and the result reads cleanly.
    match fs::canonicalize(folder) {
        Ok(real) => crate::backend::lexically_normal(&real.join(recorded)),
        Err(_) => folder.join(recorded),
    }
}

/// Reads the desired file and checks it, and checks that every key part file exists and is
/// well formed (no password needed).
pub fn read_desired(path: &Path) -> Result<Desired> {
    let shown = path.display().to_string();
    let bytes = fs::read(path).map_err(|e| {
        InputError::new(&shown, format!("cannot read the desired file: {e}"))
            .fix("give the path of a desired key-state YAML file, e.g. plans/three-units.yaml")
    })?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| InputError::new(&shown, "the desired file is not UTF-8 text"))?;
    let folder = path.parent().unwrap_or(Path::new(""));
    let state = parse_desired(&shown, &text, folder)?;
    let signature_keys = crate::model::signature_keys::parse(&shown, &text, folder, &state)?;
    for key in &signature_keys {
        check_signature_key_file(&shown, &text, key)?;
    }
    // A fleet names the same few key part files for every instance: each is read and checked
    // once, and a bad one is reported where it is first named, as before.
    let mut checked = std::collections::HashSet::new();
    for instance in &state.instances {
        for part in &instance.master_key.key_parts {
            if let KeyPartSource::File { file, .. } = part
                && checked.contains(file)
            {
                continue;
            }
            check_key_part_file(&shown, &text, part)?;
            if let KeyPartSource::File { file, .. } = part {
                checked.insert(file.clone());
            }
        }
    }
    Ok(Desired {
        path: path.to_path_buf(),
        state,
        sha256: hex::encode(Sha256::digest(&bytes)),
        targeted: Vec::new(),
        left_out: Vec::new(),
        signature_keys,
    })
}

/// A signature key file must be there and readable (its password is asked only by `apply`).
fn check_signature_key_file(
    desired: &str,
    text: &str,
    key: &crate::model::signature_keys::SignatureKey,
) -> Result<()> {
    use crate::model::signature_keys::SignatureKeySource;
    let SignatureKeySource::File { file, written, .. } = &key.source else {
        return Ok(());
    };
    let fix = "give the path of the TKE CLI signature key file (`ibmcloud tke sigkey-add`), relative to the desired file's folder";
    match crate::bounded_read::read_to_string(file, crate::backend::tke::sigkey::FILE_BYTES_MAX) {
        Ok(_) => Ok(()),
        // Placed, but neither the value nor its line shown: a value with no folder in it that
        // names no file may be a password written where the path belongs.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !written.contains('/') => {
            Err(InputError::new(
            desired,
            format!(
                "administrator {}'s signature key file does not exist ({e}); its value is not shown, in case it is not a path but a password",
                key.administrator
            ),
        )
            .located(key.position.0, key.position.1)
            .fix(fix)
            .into())
        }
        Err(e) => Err(InputError::new(
            desired,
            format!(
                "administrator {}'s signature key file {} cannot be read: {e}",
                key.administrator,
                crate::quote::quote(written)
            ),
        )
        .at(text, key.position.0, key.position.1)
        .fix(fix)
        .into()),
    }
}

fn check_key_part_file(desired: &str, text: &str, part: &KeyPartSource) -> Result<()> {
    let KeyPartSource::File {
        file,
        written,
        position,
        ..
    } = part
    else {
        // A smart card is checked when it is in its reader (`mkplan cards`).
        return Ok(());
    };
    let at = |message: String, fix: &str| {
        InputError::new(desired, message)
            .at(text, position.0, position.1)
            .fix(fix)
    };
    let content = keypart::read_text(file).map_err(|e| {
        let fix = "paths in key_parts are relative to the desired file's folder; create the file with `mkplan keypart new --out FILE`";
        if e.kind() == std::io::ErrorKind::NotFound && !written.contains('/') {
            // Placed, but neither the value nor its line shown: a value with no folder in it
            // that names no file may be a password written where the path belongs. A path
            // (`plans/keyparts/…`, the usual mistake) is shown, resolved.
            return InputError::new(
                desired,
                format!(
                    "the key part file this `file:` names does not exist ({e}); its value is not shown, in case it is not a path but a password (a path names its folder: `keyparts/custodian-1.json`)"
                ),
            )
            .located(position.0, position.1)
            .fix(fix);
        }
        at(
            format!(
                "key part file {} ({}): {e}",
                quote::name(written),
                quote::path(file)
            ),
            fix,
        )
    })?;
    keypart::parse_file(&file.display().to_string(), &content).map_err(|inner| {
        at(
            format!("key part file {}: {}", quote::name(written), inner.message),
            inner.fix.as_deref().unwrap_or("restore the key part file"),
        )
    })?;
    Ok(())
}

pub fn open_backend(desired: &Desired, flag: &BackendArg) -> Result<AnyBackend> {
    let spec = match &flag.backend {
        Some(spec) => Some(BackendSpec::parse(spec, None).map_err(Error::Other)?),
        None => super::validate::spec_in_desired(desired)?,
    };
    let spec = match spec {
        Some(spec) => spec,
        None => {
            return Err(Error::Other(format!(
                "no backend for {}: pass --backend sim:FLEET.yaml (or http://HOST:PORT), set MKPLAN_BACKEND, or add `backend:` to the desired file",
                desired.path.display()
            )));
        }
    };
    let faults = match std::env::var("MKPLAN_SIM_FAULTS") {
        Ok(_) if matches!(spec, BackendSpec::Http(_)) => {
            return Err(Error::Other(
                "MKPLAN_SIM_FAULTS applies to the embedded simulator (sim:FLEET.yaml); give faults to the server instead: `mkplan sim serve --faults SPEC`".into(),
            ));
        }
        Ok(spec) => {
            let faults = Faults::parse(&spec)
                .map_err(|e| Error::Other(format!("MKPLAN_SIM_FAULTS: {e}")))?;
            if faults.lost_response_lands_after_ms > 0 {
                return Err(Error::Other(
                    "MKPLAN_SIM_FAULTS: lost_response_lands_after_ms needs a service that outlives the apply; give it to `mkplan sim serve --faults SPEC`".into(),
                ));
            }
            faults
        }
        Err(_) => Faults::default(),
    };
    let token = std::env::var("MKPLAN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(Token::new);
    // Key part files (not smart cards: the TKE application reads those) are credentials too.
    let key_parts = flag.loads_key_parts
        && desired.state.instances.iter().any(|instance| {
            instance
                .master_key
                .key_parts
                .iter()
                .any(|part| !part.is_smart_card())
        });
    let backend = AnyBackend::open(
        &spec,
        OpenOptions {
            faults,
            token,
            key_parts,
            parallelism: usize::from(flag.parallelism),
            tke_endpoint: flag.tke_endpoint.clone(),
            tke_credentials: tke_credentials(),
            // Read from the environment only, never from the desired file.
            tke_test_oa_root: std::env::var_os(crate::backend::tke::TEST_OA_ROOT_VARIABLE)
                .is_some_and(|v| !v.is_empty()),
        },
    )?;
    if let AnyBackend::Tke(tke) = &backend
        && let Some(warning) = tke.test_root_warning()
    {
        use std::io::Write;
        let _ = writeln!(std::io::stderr().lock(), "{warning}");
    }
    Ok(backend)
}

/// `IBMCLOUD_IAM_TOKEN`, else `IBMCLOUD_API_KEY` (exchanged at IAM, `MKPLAN_IAM_ENDPOINT`).
fn tke_credentials() -> Credentials {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if let Some(token) = set("IBMCLOUD_IAM_TOKEN") {
        return Credentials::Token(Token::new(token));
    }
    if let Some(key) = set("IBMCLOUD_API_KEY") {
        return Credentials::ApiKey {
            key: zeroize::Zeroizing::new(key),
            iam: set("MKPLAN_IAM_ENDPOINT")
                .unwrap_or_else(|| crate::backend::tke::IAM_ENDPOINT.into()),
        };
    }
    Credentials::None
}

/// Opens the desired file's backend and refreshes the live state of its instances.
pub async fn refresh_desired(
    desired: &Desired,
    flag: &BackendArg,
) -> Result<(AnyBackend, LiveFleet)> {
    let backend = open_backend(desired, flag)?;
    let live = refresh_backend(desired, &backend).await?;
    Ok((backend, live))
}

/// What a database store keys this command's records and lease by: the backend's identity,
/// which for an HTTP backend is the service's own name, read by a first refresh. A folder
/// needs none before its lock (its records carry their backend).
pub async fn scope_for(
    store: &crate::store::Store,
    desired: &Desired,
    backend: &AnyBackend,
) -> Result<String> {
    use crate::backend::Backend;
    if store.folder().is_none() {
        refresh_backend(desired, backend).await?;
    }
    Ok(backend.identity())
}

/// Refreshes the live state of the desired file's instances on an open backend.
pub async fn refresh_backend(desired: &Desired, backend: &AnyBackend) -> Result<LiveFleet> {
    Ok(crate::backend::refresh_with_retries(backend, &desired.instance_ids()).await?)
}

/// The journal's evidence for planning `desired` against `backend`: only the records bound to
/// that backend count, and refusals name the state directory and the desired file.
pub fn evidence_for(
    records: &[crate::apply::journal::Record],
    backend: &AnyBackend,
    store: &crate::store::Store,
    desired: &Desired,
) -> crate::model::JournalEvidence {
    use crate::backend::Backend;
    let mut evidence = crate::apply::evidence::journal_evidence_at(
        records,
        &backend.identity(),
        &store.journal_named(&backend.identity()),
        Some(crate::apply::journal::unix_now()),
    );
    evidence.desired_file = desired.path.display().to_string();
    evidence.other_folders = crate::store::files::other_folders_of(store, &backend.identity());
    if let (Some(legacy), Some(_)) = (backend.legacy_identity(), store.folder()) {
        legacy_rewraps(records, &legacy, store, &mut evidence.other_folders);
    }
    evidence
}

/// The rewraps a folder's journal recorded under `legacy`, a `tke:` backend's identity before
/// it named whose crypto modules answered: a simulator at that URL or the service, nobody can
/// tell now. Each is a witness as another scope's is (`Store::other_scopes`, which a database
/// reads for its own older scope): no plan of its instance until it is settled.
fn legacy_rewraps(
    records: &[crate::apply::journal::Record],
    legacy: &str,
    store: &crate::store::Store,
    found: &mut crate::model::OtherFolders,
) {
    for (instance, rewraps) in crate::apply::evidence::rewraps_on_any_backend(records) {
        let older = rewraps.into_iter().filter(|(bound, _)| bound == legacy);
        found
            .rewraps
            .entry(instance)
            .or_default()
            .extend(older.map(|(backend, rewrap)| crate::model::FolderRewrap {
                state_dir: store.shown(),
                scope: Some(backend.clone()),
                backend,
                rewrap,
            }));
    }
    found.rewraps.retain(|_, rewraps| !rewraps.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_file_records_its_desired_file_relative_to_itself_even_through_a_symlink() {
        let root = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(root.path()).unwrap();
        fs::create_dir_all(root.join("repo/plans")).unwrap();
        fs::create_dir_all(root.join("window/saved")).unwrap();
        fs::write(root.join("repo/plans/desired.yaml"), "version: 1\n").unwrap();
        let desired = root.join("repo/plans/desired.yaml");

        let recorded = path_from_plan_file(&desired, &root.join("window/saved/plan.json"));
        assert_eq!(recorded, "../../repo/plans/desired.yaml");
        let found = path_in_plan_file(&recorded, &root.join("window/saved/plan.json"));
        assert_eq!(found, desired);

        // The plan file reached through a symlink to its folder: `..` is the disk's.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.join("window/saved"), root.join("link")).unwrap();
            let found = path_in_plan_file(&recorded, &root.join("link/plan.json"));
            assert_eq!(found, desired);
        }

        // Absolute paths stay; a plan file in the working folder keeps the path as recorded.
        let absolute = desired.display().to_string();
        assert_eq!(
            path_in_plan_file(&absolute, Path::new("x/plan.json")),
            desired
        );
        assert_eq!(
            path_in_plan_file("plans/desired.yaml", Path::new("plan.json")),
            Path::new("plans/desired.yaml")
        );
    }
}
