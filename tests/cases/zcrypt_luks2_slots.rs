//! A LUKS2 volume's old key slots after a change (zcrypt.md §4.2): `zkey-cryptsetup
//! reencipher --complete` leaves the key slots of the old volume key unbound in the header,
//! each still the volume's key under the old master key, unless its question is answered yes.
//! mkplan's complete step answers it (`--batch-mode`), so a converged change leaves no copy of
//! the volume key under the key it retired.

use crate::cases::zcrypt_fake_luks2::unbound_copies;
use crate::cases::zcrypt_scenarios::luks2_world;

#[test]
fn zcrypt_a_completed_luks2_volume_keeps_no_key_slot_under_the_old_master_key() {
    let world = luks2_world();
    world.assert_applies_and_converges();
    let world_json = std::fs::read_to_string(world.root.join("w/world.json")).unwrap();
    let unbound = unbound_copies(&world_json);
    assert!(unbound.is_empty(), "old key slots left: {unbound:?}");
    // The journal says what ran: the complete step answered the tool's question.
    let journal = std::fs::read_dir(world.root.join("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("zcrypt-")
        })
        .expect("the group's journal");
    let text = std::fs::read_to_string(journal).unwrap();
    let complete = text
        .lines()
        .find(|line| line.contains("zkey-cryptsetup reencipher") && line.contains("--complete"))
        .expect("the complete step's intent");
    assert!(complete.contains("--batch-mode"), "{complete}");
    assert!(!complete.contains("not the passphrase"), "{complete}");
}
