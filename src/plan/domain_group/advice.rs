//! What a refusal tells the operator to do, per kind of store, in words that cannot lose a
//! key: a staged copy may be a key's only usable copy (after an EP11 set, the `.skey` is
//! under a key no register holds), so no advice discards one without saying how to check.

use crate::model::domain_group::{LiveStore, StoreKind};

/// `no_earlier_staged_stores`: a store holds a copy staged under another key than this
/// change's. `staged_is_current`: an APQN of the group holds the staged copy's key as
/// CURRENT, so the staged copy is usable and the earlier change only needs completing.
pub fn earlier_staged(store: &LiveStore, staged_is_current: bool) -> String {
    let name = &store.id.name;
    let operation = store.handle.as_deref().unwrap_or("ID");
    match (store.id.kind, staged_is_current) {
        (StoreKind::OpenCryptoki, true) => format!(
            "the earlier change's key is CURRENT, so finish its operation first: set EXPECTED_WKVP / EXPECTED_MKVPS in the token configs to it, then pkcshsm_mk_change finalize --id {operation}"
        ),
        (StoreKind::OpenCryptoki, false) => format!(
            "the earlier change was not set: cancel its operation first (pkcshsm_mk_change cancel --id {operation}, which openCryptoki refuses once an APQN was set)"
        ),
        (StoreKind::Application, true) => format!(
            "the staged copy's key is CURRENT, so it is the usable copy: complete it with application {name}'s complete command first"
        ),
        (StoreKind::Application, false) => format!(
            "check with application {name}'s check which copy is usable before discarding anything; discard the staged copy only when the active copy's key is CURRENT on every APQN"
        ),
        (StoreKind::Luks2Volume, true) => format!(
            "the staged key slot's key is CURRENT, so it is the usable copy: complete it first (zkey-cryptsetup reencipher {name} --complete --key-file F); remove no key slot"
        ),
        (StoreKind::Luks2Volume, false) => format!(
            "check which key slot is usable (zkey-cryptsetup validate {name} --key-file F) before removing anything: remove the staged key slot only while the active one shows `Enciphered with: CURRENT master key`"
        ),
        (_, true) => format!(
            "the staged copy's key is CURRENT, so it is the usable copy: complete it first (zkey reencipher --complete --name {name}); do not remove {name}.renc"
        ),
        (_, false) => format!(
            "check which copy is usable (zkey validate --name {name}) before removing anything: remove {name}.renc only when the key's .skey validates under the CURRENT master key"
        ),
    }
}

/// `no_earlier_staged_stores` for a store whose staged copy no tool shows (a LUKS2 volume's
/// unbound keyslot): how to find out, or to discard the staging without losing the key.
pub fn unseen_staging(store: &LiveStore) -> String {
    let device = &store.id.name;
    format!(
        "rerun with the state folder (--state) of the apply that staged it, whose journal shows under which key; or, while `zkey-cryptsetup validate {device} --key-file F` shows the active key slot `Enciphered with: CURRENT master key` on every APQN, the staged key slot is not needed: remove it by hand (cryptsetup luksDump {device} shows the unbound key slot and the zkey-reencipher token; cryptsetup luksKillSlot {device} SLOT, cryptsetup token remove --token-id ID {device}), then plan again"
    )
}
