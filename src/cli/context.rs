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
use crate::quote;

pub struct Desired {
    pub path: PathBuf,
    pub state: DesiredState,
    pub sha256: String,
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
    for instance in &state.instances {
        for part in &instance.master_key.key_parts {
            check_key_part_file(&shown, &text, part)?;
        }
    }
    Ok(Desired {
        path: path.to_path_buf(),
        state,
        sha256: hex::encode(Sha256::digest(&bytes)),
    })
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
        at(
            format!(
                "key part file {} ({}): {e}",
                quote::name(written),
                quote::path(file)
            ),
            "paths in key_parts are relative to the desired file's folder; create the file with `mkplan keypart new --out FILE`",
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
    let spec = match (&flag.backend, &desired.state.backend) {
        (Some(spec), _) => BackendSpec::parse(spec, None),
        (None, Some(spec)) => BackendSpec::parse(spec, desired.path.parent()),
        (None, None) => {
            return Err(Error::Other(format!(
                "no backend for {}: pass --backend sim:FLEET.yaml (or http://HOST:PORT), set MKPLAN_BACKEND, or add `backend:` to the desired file",
                desired.path.display()
            )));
        }
    }
    .map_err(Error::Other)?;
    let faults = match std::env::var("MKPLAN_SIM_FAULTS") {
        Ok(_) if matches!(spec, BackendSpec::Http(_)) => {
            return Err(Error::Other(
                "MKPLAN_SIM_FAULTS applies to the embedded simulator (sim:FLEET.yaml); give faults to the server instead: `mkplan sim serve --faults SPEC`".into(),
            ));
        }
        Ok(spec) => {
            Faults::parse(&spec).map_err(|e| Error::Other(format!("MKPLAN_SIM_FAULTS: {e}")))?
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
    Ok(AnyBackend::open(
        &spec,
        OpenOptions {
            faults,
            token,
            key_parts,
            parallelism: usize::from(flag.parallelism),
            tke_endpoint: flag.tke_endpoint.clone(),
            tke_credentials: tke_credentials(),
        },
    )?)
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

/// Reads the desired file, opens its backend and refreshes the live state of its instances:
/// the start of every command that looks at crypto units.
pub async fn refresh(path: &Path, flag: &BackendArg) -> Result<(Desired, AnyBackend, LiveFleet)> {
    let desired = read_desired(path)?;
    let (backend, live) = refresh_desired(&desired, flag).await?;
    Ok((desired, backend, live))
}

/// Opens the desired file's backend and refreshes the live state of its instances.
pub async fn refresh_desired(
    desired: &Desired,
    flag: &BackendArg,
) -> Result<(AnyBackend, LiveFleet)> {
    let backend = open_backend(desired, flag)?;
    let ids: Vec<String> = desired
        .state
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();
    let live = crate::backend::refresh_with_retries(&backend, &ids).await?;
    Ok((backend, live))
}

/// The journal's evidence for planning `desired` against `backend`: only the records bound to
/// that backend count, and refusals name the state directory and the desired file.
pub fn evidence_for(
    records: &[crate::apply::journal::Record],
    backend: &AnyBackend,
    state_dir: &Path,
    desired: &Desired,
) -> crate::model::JournalEvidence {
    use crate::backend::Backend;
    let mut evidence = crate::apply::evidence::journal_evidence_at(
        records,
        &backend.identity(),
        &format!("the journal in {}", state_dir.display()),
        Some(crate::apply::journal::unix_now()),
    );
    evidence.desired_file = desired.path.display().to_string();
    evidence
}
