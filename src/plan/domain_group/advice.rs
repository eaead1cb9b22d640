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
            "check which key slot is usable (zkey-cryptsetup validate {name} --key-file F) before removing anything: only while the active one shows `Enciphered with: CURRENT master key` is the staged one not needed; then remove it by hand (`cryptsetup luksDump {name}` shows the unbound key slot and the paes-reencipher token; `cryptsetup luksKillSlot {name} SLOT`, `cryptsetup token remove --token-id ID {name}`) and plan again, and mkplan stages the volume under this change's key; or stage it again yourself while every APQN of the machine that holds the active key slot's key as CURRENT has this change's key ready in NEW (`zkey-cryptsetup reencipher {name} --staged --batch-mode --key-file F` cancels the pending staging)"
        ),
        (_, true) => format!(
            "the staged copy's key is CURRENT, so it is the usable copy: complete it first (zkey reencipher --complete --name {name}); do not remove {name}.renc"
        ),
        (_, false) => format!(
            "check which copy is usable (zkey validate --name {name}) before removing anything: remove {name}.renc only when the key's .skey validates under the CURRENT master key"
        ),
    }
}
