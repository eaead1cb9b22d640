//! The administrators' signature keys for `apply --backend tke:REGION` (`signature_keys:` in
//! the desired file): opened before the first step (a password from its variable or a no-echo
//! prompt; the file must decrypt and its SKI match), then checked against the crypto units
//! read: every key of an administrator a unit knows must be that administrator's key, and
//! each unit the plan changes must get enough signatures from installed administrators. Any
//! problem stops the apply with nothing sent. Passwords and tokens are zeroized once used.

use std::collections::HashMap;

use super::context::Desired;
use super::keypart::{Asked, NamedBy, password};
use super::password_env::Passwords;
use crate::backend::AnyBackend;
use crate::backend::tke::signer::Signer;
use crate::backend::tke::{sigkey, signserv};
use crate::error::{Error, Result};
use crate::model::LiveFleet;
use crate::model::signature_keys::SignatureKeySource;
use crate::plan::ceremony::Instruction;
use crate::plan::{Action, Plan};

/// The signing service's URL, as the TKE CLI reads it.
pub const SIGNSERV_URL_VARIABLE: &str = "TKE_SIGNSERV_URL";

/// Opens and checks the signature keys and gives them to a `tke:` backend, which then sends
/// commands itself. Other backends, `--manual`, or no `signature_keys:`: nothing to do.
pub async fn prepare(
    desired: &Desired,
    backend: &mut AnyBackend,
    live: &LiveFleet,
    plan: &Plan,
    manual: bool,
) -> Result<()> {
    let AnyBackend::Tke(tke) = backend else {
        return Ok(());
    };
    if manual || desired.signature_keys.is_empty() || !plan.changes {
        return Ok(());
    }
    let signers = open(desired).await?;
    check(&signers, live, plan)?;
    if !super::conventions::quiet() {
        eprintln!(
            "Signature keys opened and checked ({}): mkplan sends the loads, commits, set immediates and clears as signed commands; the rewrap stays a ceremony step.",
            signers
                .iter()
                .map(|s| s.administrator().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    tke.set_signers(signers);
    Ok(())
}

/// The rewrap steps of a plan, as ceremony steps: on `tke:` every other step is sent.
pub fn rewrap_ceremony(
    desired: &Desired,
    plan: &Plan,
    backend: &AnyBackend,
) -> HashMap<String, Instruction> {
    if !matches!(backend, AnyBackend::Tke(_)) {
        return HashMap::new();
    }
    super::ceremony::ceremony_steps(desired, plan, true)
        .into_iter()
        .filter(|(_, i)| i.action == Action::RewrapKeyStorage)
        .collect()
}

async fn open(desired: &Desired) -> Result<Vec<Box<dyn Signer>>> {
    let mut passwords = Passwords::default();
    let mut signers = Vec::with_capacity(desired.signature_keys.len());
    for key in &desired.signature_keys {
        let name = &key.administrator;
        let signer = match &key.source {
            SignatureKeySource::File {
                file,
                written,
                password_env,
            } => {
                let password = password(
                    &mut passwords,
                    &Asked {
                        what: format!("administrator {name}'s signature key file {written}"),
                        prompt: format!(
                            "Password for administrator {name}'s signature key file {written}: "
                        ),
                        variable: password_env.as_deref(),
                        named_by: NamedBy::DesiredFile,
                    },
                    false,
                )?;
                sigkey::open(name, file, password.as_bytes())
            }
            SignatureKeySource::SigningService { key, token_env } => {
                let url = std::env::var(SIGNSERV_URL_VARIABLE).map_err(|_| {
                    Error::Other(format!(
                        "administrator {name}'s signature key is signing service key {key}, but {SIGNSERV_URL_VARIABLE} is not set: set it to the signing service's URL. Nothing was touched"
                    ))
                })?;
                let token = match token_env {
                    Some(variable) => Some(zeroize::Zeroizing::new(
                        std::env::var(variable).map_err(|_| {
                            Error::Other(format!(
                                "administrator {name}'s signing service token variable {variable} is not set. Nothing was touched"
                            ))
                        })?,
                    )),
                    None => None,
                };
                signserv::signer(&url, name, key, token).await
            }
        };
        signers.push(signer.map_err(|e| Error::Other(format!("{e}. Nothing was touched")))?);
    }
    Ok(signers)
}

/// Every key matches the administrator a unit knows by that name, and every unit the plan
/// sends a command to gets enough signatures from installed administrators.
fn check(signers: &[Box<dyn Signer>], live: &LiveFleet, plan: &Plan) -> Result<()> {
    for step in &plan.steps {
        let needed = match step.action {
            Action::LoadNewMk => 1,
            Action::CommitNewMk | Action::SetImmediate | Action::ClearNewMk => 0,
            _ => continue,
        };
        let Some(unit) = live
            .instances
            .iter()
            .find(|i| i.id.eq_ignore_ascii_case(&step.instance))
            .and_then(|i| i.unit(step.unit.as_deref().unwrap_or_default()))
        else {
            continue;
        };
        let needed = if needed == 0 {
            usize::from(unit.signature_threshold)
        } else {
            needed
        };
        for signer in signers {
            let ski = hex::encode(signer.ski());
            if let Some(known) = unit
                .administrators
                .iter()
                .find(|a| a.name == signer.administrator())
                && known.ski.as_str() != ski
            {
                return Err(Error::Other(format!(
                    "administrator {}'s key ({}) has SKI {ski}, but crypto unit {} knows {} by SKI {}: it is another administrator's key, or an old one. Give this administrator's own signature key in signature_keys. Nothing was touched",
                    signer.administrator(),
                    signer.source(),
                    unit.hsm_id,
                    signer.administrator(),
                    known.ski.as_str()
                )));
            }
        }
        let installed = |s: &&dyn Signer| {
            let ski = hex::encode(s.ski());
            unit.administrators.iter().any(|a| a.ski.as_str() == ski)
        };
        let usable: Vec<&str> = signers
            .iter()
            .map(Box::as_ref)
            .filter(installed)
            .map(|s| s.administrator())
            .collect();
        if usable.len() < needed {
            let strangers: Vec<&str> = signers
                .iter()
                .map(Box::as_ref)
                .filter(|s| !installed(s))
                .map(|s| s.administrator())
                .collect();
            return Err(Error::Other(format!(
                "step {} ({}) on crypto unit {} needs {needed} signature(s) (its signature threshold is {}), and signature_keys give keys of {} installed administrator(s){}{}. Add signature keys of installed administrators to signature_keys, or run with --manual. Nothing was touched",
                step.id,
                step.action,
                unit.hsm_id,
                unit.signature_threshold,
                usable.len(),
                if usable.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", usable.join(", "))
                },
                if strangers.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; not installed on it: {} (the crypto unit knows no administrator by that key's SKI)",
                        strangers.join(", ")
                    )
                }
            )));
        }
    }
    Ok(())
}
