//! The inventory checks (zcrypt.md §5, §7): a change is done only when every store using the
//! group's APQNs has moved, so every store found on them must be one the group file declares
//! and one mkplan can move. Each refusal names the stores and what to write or do.
//!
//! - `opencryptoki_from_old`: openCryptoki tokens under `set_then_from_old`. No tool mkplan
//!   runs moves a token's objects from OLD (`pkcscca` is offline and not modelled), and
//!   without an open `pkcshsm_mk_change` operation nothing shows which key they are under.
//! - `undeclared_stores`: a zkey key, an openCryptoki token (by its config) or an open
//!   `pkcshsm_mk_change` operation on the group's APQNs that no declared store covers; or a
//!   kind of store that could not be listed.
//! - `key_apqns_in_group`: a zkey key with no associated APQNs (zkey then uses every online
//!   APQN of its type), or associated with APQNs outside the group as well.
//! - `luks2_volumes`: a key with a LUKS2 volume (`zkey list`'s volumes), whose header holds
//!   its own copy of the key, that the group file does not declare as a `luks2_volume` with
//!   its key file; or an APQN outside the group that `zkey-cryptsetup`, which picks among
//!   every APQN of the machine, could move a volume with to a key this change does not set.
//! - `opencryptoki_operation_covers`: an open `pkcshsm_mk_change` operation on the group's
//!   APQNs that leaves out a token on them (its slot is not among the affected slots) or a
//!   type the group changes (`model::ock_tokens::uncovered`). mkplan cannot stage the rest
//!   while it is open (one operation per APQN), and a set would leave them behind.

use super::precheck::GroupRefusal;
use crate::model::domain_group::{Apqn, LiveGroup, StoreKind, StoreState};
use crate::model::domain_group_desired::{DesiredGroup, DesiredStore, Procedure};
use crate::model::domain_group_inventory::FoundZkeyKey;
use crate::model::ock_tokens::{GroupTokens, token_changing, uncovered};
use crate::model::registers::{HeldMk, MkType, Mkvp, NewMk};
use crate::quote::quote;

fn listed(items: impl IntoIterator<Item = String>) -> String {
    items.into_iter().collect::<Vec<_>>().join("; ")
}

fn apqn_list(apqns: impl IntoIterator<Item = Apqn>) -> String {
    apqns
        .into_iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn refusal(check: &'static str, message: String, settle: Option<String>) -> GroupRefusal {
    GroupRefusal {
        check,
        message,
        settle,
    }
}

pub(super) fn check(desired: &DesiredGroup, live: &LiveGroup) -> Result<(), GroupRefusal> {
    let declared = |store: &DesiredStore| desired.stores.contains(store);
    if desired.procedure == Procedure::SetThenFromOld && declared(&DesiredStore::OpenCryptoki) {
        return Err(refusal(
            "opencryptoki_from_old",
            "the group declares openCryptoki tokens but uses procedure set_then_from_old: no tool mkplan runs moves a token's objects from the OLD master key (pkcscca -m keys is offline), and with no pkcshsm_mk_change operation open nothing shows which key the objects are under".into(),
            Some("use procedure: reencipher_then_set, whose pkcshsm_mk_change operation shows the tokens' state at every step".into()),
        ));
    }
    let inventory = &live.inventory;
    if !inventory.unreadable.is_empty() {
        return Err(refusal(
            "undeclared_stores",
            format!(
                "cannot list every store on the group's APQNs: {}",
                listed(inventory.unreadable.iter().cloned())
            ),
            Some("the tool listing its stores (zkey list, pkcshsm_mk_change list) succeeding, and openCryptoki's opencryptoki.conf and token configs readable, so that no store on these APQNs is left behind".into()),
        ));
    }
    let ours: Vec<&FoundZkeyKey> = inventory
        .zkey_keys
        .iter()
        .filter(|k| k.depends_on(&desired.apqns, desired.mode))
        .collect();
    check_key_apqns(desired, &ours)?;
    check_luks2(desired, &ours)?;
    check_luks2_owners(desired, &inventory.zkey_keys)?;
    check_luks2_apqns(desired, live)?;
    check_declared(desired, &ours, live)?;
    check_kms_plugin(desired, live)?;
    check_asym_token_keys(desired, live)?;
    check_operation_covers(desired, live)
}

/// `opencryptoki_asym_keys`: a change of CCA's ASYM master key while CCA tokens use the
/// group's APQNs. openCryptoki up to 3.14 kept RSA private keys as RSA-CRT key tokens under
/// ASYM (its `pkcscca` says so, and converts them: `pkcscca -m oldrsakeys`); pkcshsm_mk_change
/// moves none of them, no tool mkplan runs shows them, and the SET leaves them under OLD,
/// where the next ASYM change drops them. Only the operator can say none is left.
fn check_asym_token_keys(desired: &DesiredGroup, live: &LiveGroup) -> Result<(), GroupRefusal> {
    if desired.mode != crate::model::domain_group::GroupMode::Cca
        || !desired.master_keys.contains_key(&MkType::Asym)
        || desired.cca_token_asym_keys_none
    {
        return Ok(());
    }
    let group = group_tokens(desired, live);
    if group.tokens.is_empty() {
        return Ok(());
    }
    Err(refusal(
        "opencryptoki_asym_keys",
        format!(
            "the group changes the ASYM master key, and CCA tokens use its APQNs ({}): a token made by openCryptoki 3.14 or older keeps its RSA private keys as RSA-CRT key tokens under ASYM, which pkcshsm_mk_change does not move and no tool mkplan runs shows; the SET would leave them under OLD, and the next ASYM change would drop them",
            listed(group.tokens.iter().map(|t| match t.slot {
                Some(slot) => format!("slot {slot}, {}", t.config),
                None => t.config.clone(),
            }))
        ),
        Some("each CCA token's RSA-CRT keys converted first (`pkcscca -m oldrsakeys`, as the token's owner), or the token's owner's word that it has none (made by openCryptoki 3.15 or later, no RSA keys imported from an older one); then `cca_token_asym_keys: none` in the group file".into()),
    ))
}

/// `undeclared_stores` for a KMS plug-in the zkey repository is bound to on the group's
/// APQNs: its own secure keys (a KMIP plug-in's identity key) are under their master key,
/// and only `zkey kms reencipher` moves them. An application store whose `stage` runs it
/// covers them: its `check` is the operator's, since no tool mkplan knows shows their key.
fn check_kms_plugin(desired: &DesiredGroup, live: &LiveGroup) -> Result<(), GroupRefusal> {
    let Some(kms) = &live.inventory.kms_plugin else {
        return Ok(());
    };
    let shared: Vec<Apqn> = kms
        .apqns
        .iter()
        .copied()
        .filter(|a| desired.apqns.contains(a))
        .collect();
    let covered = desired.stores.iter().any(|s| {
        matches!(s, DesiredStore::Application { stage, .. }
            if stage.len() >= 3
                && std::path::Path::new(&stage[0]).file_name().is_some_and(|n| n == "zkey")
                && stage[1] == "kms"
                && stage[2] == "reencipher")
    });
    if shared.is_empty() || covered {
        return Ok(());
    }
    let mk_type = desired
        .master_keys
        .keys()
        .next()
        .map_or_else(|| "TYPE".to_string(), ToString::to_string);
    Err(refusal(
        "undeclared_stores",
        format!(
            "the zkey repository {} is bound to KMS plug-in {} ({}) on APQNs {}, {} of them the group's: the plug-in keeps secure keys of its own (a KMIP plug-in's identity key) under their master key, which only `zkey kms reencipher` moves and which no store the group declares covers. The set would leave them under a key that is leaving",
            crate::quote::path(&desired.zkey_repository),
            quote(&kms.plugin),
            kms.config,
            apqn_list(kms.apqns.iter().copied()),
            apqn_list(shared)
        ),
        Some(format!(
            "the plug-in's keys declared as an application store that moves them with zkey's own commands, with a check of yours that prints the key they are under (`active: VP`, and `staged: VP` while staged): `- application: {{name: zkey-kms, type: {mk_type}, check: [YOUR-CHECK], stage: [zkey, kms, reencipher, --to-new, --staged], complete: [zkey, kms, reencipher, --complete]}}`; or the repository unbound from the plug-in, if it no longer serves"
        )),
    ))
}

/// The tokens and open operations on the group's APQNs.
fn group_tokens<'a>(desired: &DesiredGroup, live: &'a LiveGroup) -> GroupTokens<'a> {
    let inventory = &live.inventory;
    GroupTokens::of(
        &inventory.tokens,
        &inventory.operations,
        &desired.apqns,
        desired.mode,
    )
}

fn check_operation_covers(desired: &DesiredGroup, live: &LiveGroup) -> Result<(), GroupRefusal> {
    if !desired.stores.contains(&DesiredStore::OpenCryptoki) {
        return Ok(());
    }
    let group = group_tokens(desired, live);
    let changing = token_changing(desired.mode, desired.master_keys.keys().copied());
    for op in &group.operations {
        if let Some(state) = &op.stuck {
            return Err(refusal(
                "opencryptoki_operation_state",
                format!(
                    "open pkcshsm_mk_change operation {} on the group's APQNs is in state {}: pkcshsm_mk_change finalizes or cancels an operation only once it is re-enciphered or has errored, so neither mkplan nor anyone can close it now, and its tokens may be half done",
                    op.id,
                    quote(state)
                ),
                Some(format!(
                    "`pkcshsm_mk_change list --id {id}` showing it re-enciphered or errored: a run that is still going ends there (wait for it); one that was stopped (killed, a crash) leaves it in this state, and its tokens' owners and openCryptoki's support must bring it to an end before mkplan plans this group's tokens again",
                    id = op.id
                )),
            ));
        }
        // Every APQN of the group has the operation's new key of each type as CURRENT.
        let all_set = changing.iter().all(|t| {
            op.new.get(t).is_some_and(|new| {
                desired.apqns.iter().all(|a| {
                    live.apqns
                        .iter()
                        .find(|l| l.apqn == *a)
                        .and_then(|l| l.registers.as_ref()?.get(t))
                        .is_some_and(|r| r.current.vp() == Some(new))
                })
            })
        });
        if let Some(refused) = uncovered(op, &group.tokens, &changing, all_set) {
            return Err(refusal(
                "opencryptoki_operation_covers",
                refused.why,
                Some(refused.settle),
            ));
        }
    }
    Ok(())
}

fn check_key_apqns(desired: &DesiredGroup, keys: &[&FoundZkeyKey]) -> Result<(), GroupRefusal> {
    let group = apqn_list(desired.apqns.iter().copied());
    let mut problems = Vec::new();
    for key in keys {
        let outside: Vec<Apqn> = key
            .apqns
            .iter()
            .copied()
            .filter(|a| !desired.apqns.contains(a))
            .collect();
        if key.apqns.is_empty() {
            problems.push(format!(
                "zkey key {} ({}) has no associated APQNs, so zkey uses every online {} APQN, this group's and any other: associate it with the group's APQNs (zkey change --name {} --apqns +{group})",
                quote(&key.name), key.key_type, desired.mode, key.name
            ));
        } else if !outside.is_empty() {
            let outside = apqn_list(outside);
            problems.push(format!(
                "zkey key {} is associated with APQN(s) {outside} outside the group as well: a change of this group would re-encipher it and leave it usable on part of its APQNs only; add {outside} to the group's apqns, or remove the association (zkey change --name {} --apqns -{outside})",
                quote(&key.name), key.name
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(refusal("key_apqns_in_group", listed(problems), None))
}

fn check_luks2(desired: &DesiredGroup, keys: &[&FoundZkeyKey]) -> Result<(), GroupRefusal> {
    let declared = |device: &str| {
        desired
            .stores
            .iter()
            .any(|s| matches!(s, DesiredStore::Luks2Volume { device: d, .. } if d == device))
    };
    let mut problems = Vec::new();
    for key in keys {
        for volume in &key.luks2_volumes {
            // `zkey list` shows DEVICE:DM_NAME.
            let device = volume.split_once(':').map_or(volume.as_str(), |(d, _)| d);
            if !declared(device) {
                problems.push(format!(
                    "zkey key {} has LUKS2 volume {device} ({volume})",
                    quote(&key.name)
                ));
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(refusal(
        "luks2_volumes",
        format!(
            "{}: a LUKS2 header holds its own copy of the volume key, and a change that leaves it out would lose it",
            listed(problems)
        ),
        Some("declare each volume with the file holding a passphrase of its key slots: `- luks2_volume: {device: DEVICE, key_file: PATH}` under stores: (mkplan passes the file to zkey-cryptsetup --key-file and never reads the passphrase)".into()),
    ))
}

/// A declared LUKS2 volume whose zkey key is not this group's (associated only with APQNs
/// outside it, or of the other mode): the change would re-encipher its header through the
/// group's APQNs while its key and the APQNs it belongs to stay under their own master key
/// (adversarial round 15z, F1: a volume of a key on 07.0006 was moved by the group of
/// 03.0006 and 04.0006, and lost).
fn check_luks2_owners(desired: &DesiredGroup, all: &[FoundZkeyKey]) -> Result<(), GroupRefusal> {
    let mut problems = Vec::new();
    for store in &desired.stores {
        let DesiredStore::Luks2Volume { device, .. } = store else {
            continue;
        };
        let owners = all.iter().filter(|key| {
            key.luks2_volumes
                .iter()
                .any(|v| v.split_once(':').map_or(v.as_str(), |(d, _)| d) == device)
        });
        for key in owners {
            if !key.depends_on(&desired.apqns, desired.mode) {
                problems.push(format!(
                    "LUKS2 volume {device} belongs to zkey key {} ({}), associated with {}, none of this group's",
                    quote(&key.name),
                    key.key_type,
                    if key.apqns.is_empty() {
                        "no APQN".to_string()
                    } else {
                        apqn_list(key.apqns.iter().copied())
                    }
                ));
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(refusal(
        "luks2_volumes",
        format!(
            "{}: this group's change would re-encipher the volume's header through its own APQNs while the volume's key stays with those APQNs' master key, and the volume would be lost",
            listed(problems)
        ),
        Some("remove the volume from this group's stores: it moves with the group of its key's APQNs".into()),
    ))
}

/// zkey-cryptsetup picks among every APQN of the machine, not the key's associated ones. It
/// stages a volume with the NEW of the first APQN whose CURRENT holds the volume's key, and
/// moves it from OLD to the CURRENT of the first APQN whose OLD holds it: an APQN outside the
/// group with that CURRENT and another key ready in NEW, or (set, then from OLD) with that
/// OLD and another CURRENT, could move the volume to a key this change never sets.
fn check_luks2_apqns(desired: &DesiredGroup, live: &LiveGroup) -> Result<(), GroupRefusal> {
    let from_old = desired.procedure == Procedure::SetThenFromOld;
    let mut problems = Vec::new();
    for store in &live.stores {
        if store.id.kind != StoreKind::Luks2Volume {
            continue;
        }
        let active: Vec<(MkType, &Mkvp)> = match &store.state {
            StoreState::Known(copies) => copies.iter().map(|(t, c)| (*t, &c.active)).collect(),
            StoreState::Unknown { .. } => continue,
        };
        for (mk_type, vp) in active {
            let target = desired.master_keys.get(&mk_type);
            for (apqn, registers) in &live.inventory.other_apqns {
                let Some(r) = registers.get(&mk_type) else {
                    continue;
                };
                if let (false, NewMk::Ready(new)) = (from_old, &r.new)
                    && r.current.vp() == Some(vp)
                    && Some(new) != target
                {
                    problems.push(format!(
                        "APQN {apqn}, outside the group, holds {store}'s key {vp} as CURRENT and {new} ready in NEW",
                        store = store.id
                    ));
                }
                // zkey-cryptsetup takes a volume whose key some APQN holds as CURRENT as
                // under CURRENT, and moves nothing from OLD: after the group's SET the
                // volume would stay under its OLD for every rerun (round 13z, F2).
                if from_old && r.current.vp() == Some(vp) && Some(vp) != target {
                    problems.push(format!(
                        "APQN {apqn}, outside the group, holds {store}'s key {vp} as CURRENT, so once the group is set zkey-cryptsetup would not move the volume from OLD (it takes it as under CURRENT)",
                        store = store.id
                    ));
                }
                if let (true, Some(old), current) = (
                    from_old,
                    r.old.as_ref().and_then(HeldMk::vp),
                    r.current.vp(),
                ) && old == vp
                    && current != target
                {
                    problems.push(format!(
                        "APQN {apqn}, outside the group, holds {store}'s key {vp} as OLD and {} as CURRENT",
                        current.map_or("no key".into(), ToString::to_string),
                        store = store.id
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(refusal(
        "luks2_volumes",
        format!(
            "{}: zkey-cryptsetup picks the APQN it re-enciphers a LUKS2 volume with among every APQN of the machine (the first whose CURRENT, staged, or OLD, from OLD, holds the volume's key), so another domain's registers decide where the volume goes, or whether it moves at all",
            listed(problems)
        ),
        Some("that APQN's NEW register cleared, or holding this change's key, while the group's volumes are staged; under set_then_from_old, that APQN set to this change's key too, or its OLD or CURRENT no longer holding the volume's key, before the volumes move from OLD; or procedure: reencipher_then_set, which stages the volumes through the group's APQNs before any set".into()),
    ))
}

fn check_declared(
    desired: &DesiredGroup,
    keys: &[&FoundZkeyKey],
    live: &LiveGroup,
) -> Result<(), GroupRefusal> {
    let associated = desired.stores.contains(&DesiredStore::ZkeyAssociated);
    let mut missing = Vec::new();
    for key in keys {
        let covered = (associated && !key.apqns.is_empty())
            || desired
                .stores
                .contains(&DesiredStore::ZkeyKey(key.name.clone()));
        if !covered {
            missing.push(format!(
                "zkey key {} on APQN(s) {} (add `- zkey_key: {}` or `- zkey_keys: associated` to stores:)",
                quote(&key.name),
                apqn_list(key.apqns.iter().copied()),
                key.name
            ));
        }
    }
    if !desired.stores.contains(&DesiredStore::OpenCryptoki) {
        for token in &live.inventory.tokens {
            if token.depends_on(&desired.apqns, desired.mode) {
                missing.push(format!(
                    "the openCryptoki token of {} (add `- opencryptoki: tokens` to stores:)",
                    token.config
                ));
            }
        }
        for op in &live.inventory.operations {
            if op.apqns.iter().any(|a| desired.apqns.contains(a)) {
                missing.push(format!(
                    "openCryptoki tokens with open pkcshsm_mk_change operation {} on APQN(s) {} (add `- opencryptoki: tokens` to stores:)",
                    quote(&op.id),
                    apqn_list(op.apqns.iter().copied())
                ));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(refusal(
        "undeclared_stores",
        format!(
            "stores on the group's APQNs that the group file does not declare would be left under a key the change destroys: {}",
            listed(missing)
        ),
        None,
    ))
}
