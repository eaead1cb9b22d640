//! `attest rewrap` and `journal close`: the operator's evidence, journaled. Where the service
//! does not report its rotation status and the journal did not witness everything, only a
//! person can say whether a rewrap ran: what they saw is journaled as an attestation, bound
//! like every rotation record to the backend, the instance, its crypto units and the
//! rotation's from → to. `--auto-approve` never answers it.

use std::path::Path;

use super::context::{evidence_for, open_backend, read_desired, refresh_backend, scope_for};
use super::{AttestRewrapArgs, BackendArg};
use crate::apply::attest::{Attestation, attestation_records};
use crate::apply::resume::{close_finished, finished, kept_open};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::store::Store;

pub async fn attest_rewrap(args: &AttestRewrapArgs, store: &Store) -> Result<u8> {
    let desired = read_desired(&args.desired)?;
    let backend = open_backend(&desired, &args.backend)?;
    let scope = scope_for(store, &desired, &backend).await?;
    let mut writer = store.writer(
        &scope,
        std::slice::from_ref(&args.instance),
        "attest rewrap",
    )?;
    let journal = &mut writer.journal;
    let live = refresh_backend(&desired, &backend).await?;
    let Some(found) = live.instance(&args.instance.to_ascii_lowercase()) else {
        return Err(Error::Other(format!(
            "service instance {} is not in {}; name one of its instances",
            args.instance,
            desired.path.display()
        )));
    };
    let target = desired
        .state
        .instances
        .iter()
        .find(|i| i.id.eq_ignore_ascii_case(&found.id))
        .map(|i| i.master_key.verification_pattern.clone())
        .expect("the live state holds the desired file's instances");
    let (records, statement) = attestation_records(
        journal.records(),
        found,
        &target,
        &backend.identity(),
        &store.journal_named(&scope),
        &Attestation {
            ran: args.completed,
            service_evidence: args.service_evidence.clone(),
            // Read for every attestation: they refuse a plain `--not-run`, and whatever is
            // attested names the rewraps they held, the only ones it speaks for.
            other_folders: crate::store::files::other_folders_of(store, &scope),
        },
    )
    .map_err(|refused| Error::Unsafe(refused.0))?;
    journal
        .append_all(records)
        .map_err(|e| Error::Unsafe(e.to_string()))?;
    eprintln!(
        "Journaled in {} for service instance {} on {}: {statement}. `mkplan plan {}` now plans from this evidence{}.",
        store.shown(),
        found.id,
        backend.describe(),
        desired.path.display(),
        if args.completed {
            ""
        } else {
            " until the next apply run begins, for 15 minutes at most (an interruption after it needs a new attestation)"
        }
    );
    Ok(0)
}

/// `journal close DESIRED.yaml`: closes the open rotation records of every instance that the
/// live state shows finished; an unfinished one is refused with what it shows.
pub async fn journal_close(desired: &Path, flag: &BackendArg, store: &Store) -> Result<u8> {
    let desired = read_desired(desired)?;
    let backend = open_backend(&desired, flag)?;
    let scope = scope_for(store, &desired, &backend).await?;
    let mut writer = store.writer(&scope, &desired.instance_ids(), "journal close")?;
    let journal = &mut writer.journal;
    let live = refresh_backend(&desired, &backend).await?;
    let evidence = evidence_for(journal.records(), &backend, store, &desired);
    let unfinished: Vec<String> = live
        .instances
        .iter()
        .filter(|i| evidence.rotation(&i.id).is_some() && finished(i).is_none())
        .map(|i| {
            format!(
                "service instance {}: {}",
                i.id,
                i.crypto_units
                    .iter()
                    .map(|u| format!(
                        "{} new {:#}, current {:#}",
                        u.hsm_id, u.new_register, u.current_register
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
        .collect();
    if !unfinished.is_empty() {
        return Err(Error::Unsafe(format!(
            "refused: the live state does not show these rotations finished (every current register one key, every new register Empty), so their records are still evidence. Nothing was closed.\n  {}",
            unfinished.join("\n  ")
        )));
    }
    // Registers that look finished do not settle a rewrap the journal sent (an abort looks
    // the same, and a queued rewrap may still land): such a rotation is never closed here.
    let kept: Vec<String> = live
        .instances
        .iter()
        .filter_map(|i| kept_open(i, evidence.rotation(&i.id)?))
        .collect();
    if !kept.is_empty() {
        return Err(Error::Unsafe(format!(
            "refused: the registers look finished, but they do not settle the rewrap the journal holds. Nothing was closed.\n  {}",
            kept.join("\n  ")
        )));
    }
    let closed = close_finished(journal, &live.instances, &backend.identity())
        .map_err(|e| Error::Unsafe(e.to_string()))?;
    if closed.is_empty() {
        eprintln!(
            "{} has no open rotation of these instances on {}: nothing to close.",
            evidence.witness,
            backend.describe()
        );
    }
    for line in closed {
        eprintln!("{line}");
    }
    Ok(0)
}
