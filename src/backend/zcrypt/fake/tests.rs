//! The fake platform's views read back through the real readers, and its ceremony and loss
//! rule on the example world (plans/zcrypt-world.yaml).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ceremony::{self, Action, Part, Request};
use super::incidents;
use super::world::{Mk, World};
use crate::backend::zcrypt::mkvps::{MkType, Register, State};
use crate::backend::zcrypt::sysfs::{CardMode, Sysfs};

const EXAMPLE: &str = include_str!("../../../../plans/zcrypt-world.yaml");
const KEY_FILE: &[u8] = include_bytes!("../../../../plans/keys/dasdb1.key");
const A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const B: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";
const EP11: &[&str] = &["03.0006", "04.0006"];

fn world(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("world.yaml");
    std::fs::write(&file, yaml).unwrap();
    std::fs::create_dir_all(temp.path().join("keys")).unwrap();
    std::fs::write(temp.path().join("keys/dasdb1.key"), KEY_FILE).unwrap();
    let dir = temp.path().join("w");
    super::init::init(&dir, &file, Path::new("/usr/bin/false")).unwrap();
    (temp, dir)
}

fn tke(dir: &Path, action: Action, apqns: &[&str], mk: Mk, vp: Option<&str>, part: Option<Part>) {
    let output = ceremony::run(
        dir,
        &Request {
            action,
            apqns: apqns.iter().map(ToString::to_string).collect(),
            mk,
            vp: vp.map(str::to_string),
            part,
        },
    );
    assert_eq!(output.code, 0, "{action:?}: {}", output.stderr);
}

fn lost(dir: &Path) -> Vec<String> {
    incidents::recorded(dir)
        .unwrap()
        .0
        .into_iter()
        .map(|i| format!("{} {}", i.store, i.key))
        .collect()
}

#[test]
fn the_sysfs_tree_reads_back_through_the_reader() {
    let (_temp, dir) = world(EXAMPLE);
    let cards = Sysfs::new(dir.join("sys")).cards().unwrap();
    assert_eq!(
        cards.iter().map(|c| c.number).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert!(cards.iter().all(|c| c.usable()));
    assert_eq!(
        (cards[0].mode.clone(), cards[0].generation),
        (CardMode::Ep11, Some(8))
    );
    assert_eq!(cards[2].mode, CardMode::Cca);
    assert_eq!(cards[0].serial.as_deref(), Some("93AABC0300000001"));
    let ep11 = cards[1].queues[0].mkvps.as_ref().unwrap();
    let current = ep11.get(MkType::Wk, Register::Current).unwrap();
    assert_eq!(
        (current.state, current.pattern.as_deref()),
        (State::Valid, Some(A))
    );
    assert_eq!(
        ep11.get(MkType::Wk, Register::New).unwrap().state,
        State::Empty
    );
    let cca = cards[2].queues[0].mkvps.as_ref().unwrap();
    assert_eq!(cca.types(), [MkType::Aes, MkType::Apka, MkType::Asym]);
    let old = cca.get(MkType::Aes, Register::Old).unwrap();
    assert_eq!(
        (old.state, old.pattern.as_deref()),
        (State::Valid, Some("c0c0c0c0c0c0c0c0"))
    );
    assert_eq!(
        cca.get(MkType::Asym, Register::Current).unwrap().state,
        State::Invalid
    );
    // bus/ap/devices links to the same folders.
    assert!(dir.join("sys/bus/ap/devices/03.0006/mkvps").exists());
}

#[test]
fn ceremony_steps_and_an_offline_queue_show_in_mkvps() {
    let (_temp, dir) = world(EXAMPLE);
    tke(&dir, Action::Load, EP11, Mk::Wk, Some(B), None);
    let read = |card: u8| Sysfs::new(dir.join("sys")).card(card).unwrap().queues[0].clone();
    let new = |card: u8| {
        read(card)
            .mkvps
            .unwrap()
            .get(MkType::Wk, Register::New)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (new(3).state, new(3).pattern.as_deref()),
        (State::Uncommitted, Some(B))
    );
    tke(&dir, Action::Commit, EP11, Mk::Wk, None, None);
    assert_eq!(new(4).state, State::Committed);
    tke(
        &dir,
        Action::Load,
        &["05.0006"],
        Mk::Aes,
        None,
        Some(Part::First),
    );
    let aes = Sysfs::new(dir.join("sys")).card(5).unwrap().queues[0]
        .mkvps
        .clone()
        .unwrap();
    let aes_new = aes.get(MkType::Aes, Register::New).unwrap();
    assert_eq!(
        (aes_new.state, aes_new.pattern.as_deref()),
        (State::Partial, None)
    );

    let mut w = World::load(&dir).unwrap();
    let (card, index) = w.find_mut("04.0006").unwrap();
    card.domains[index].online = false;
    w.save(&dir).unwrap();
    super::render::render(&dir, &w).unwrap();
    let queue = read(4);
    assert!(!queue.online);
    assert_eq!(
        queue
            .mkvps
            .unwrap()
            .get(MkType::Wk, Register::Current)
            .unwrap()
            .state,
        State::Unknown
    );
}

#[test]
fn the_zkey_repository_is_in_zkeys_format() {
    let (_temp, dir) = world(EXAMPLE);
    let repository = dir.join("zkey");
    let xts = std::fs::read(repository.join("disk-root.skey")).unwrap();
    assert_eq!(xts.len(), 2 * 336);
    assert_eq!(hex::encode(&xts[48..64]), &A[..32]);
    assert_eq!(hex::encode(&xts[336 + 48..336 + 64]), &A[..32]);
    let data = std::fs::read(repository.join("db-data.skey")).unwrap();
    assert_eq!(
        (data.len(), hex::encode(&data[8..16])),
        (64, "c1c1c1c1c1c1c1c1".to_string())
    );
    let info = std::fs::read_to_string(repository.join("disk-root.info")).unwrap();
    let mut hash = Sha256::new();
    let mut stated = None;
    for line in info.lines() {
        let (name, value) = line.split_once('=').unwrap();
        if name == "__hash__" {
            stated = Some(value.to_string());
        } else {
            hash.update(name.as_bytes());
            hash.update(value.as_bytes());
        }
    }
    assert_eq!(stated.unwrap(), hex::encode(hash.finalize()));
    assert!(info.contains("key-type=EP11-AES\n") && info.contains("apqns=03.0006,04.0006\n"));
    assert!(!repository.join("disk-root.renc").exists());
}

#[test]
fn setting_ep11_before_the_stores_are_staged_loses_every_key_once() {
    let (_temp, dir) = world(EXAMPLE);
    tke(&dir, Action::Load, EP11, Mk::Wk, Some(B), None);
    tke(&dir, Action::Commit, EP11, Mk::Wk, None, None);
    tke(&dir, Action::Set, &["03.0006"], Mk::Wk, None, None);
    assert!(lost(&dir).is_empty(), "04.0006 still holds the old WK");
    tke(&dir, Action::Set, &["04.0006"], Mk::Wk, None, None);
    let mut keys = lost(&dir);
    keys.sort();
    assert_eq!(
        keys,
        [
            "luks2 /dev/dasdb1",
            "opencryptoki slot 3 WK",
            "zkey backup",
            "zkey disk-root"
        ]
    );
    tke(&dir, Action::Clear, EP11, Mk::Wk, None, None);
    assert_eq!(lost(&dir).len(), 4, "each loss is recorded once");
}

#[test]
fn a_second_cca_set_before_the_keys_left_old_loses_them() {
    let (_temp, dir) = world(EXAMPLE);
    let cca = &["05.0006"];
    tke(
        &dir,
        Action::Load,
        cca,
        Mk::Aes,
        Some("c2c2c2c2c2c2c2c2"),
        None,
    );
    tke(&dir, Action::Set, cca, Mk::Aes, None, None);
    assert!(lost(&dir).is_empty(), "db-data works through OLD");
    tke(&dir, Action::Load, cca, Mk::Aes, None, Some(Part::First));
    tke(
        &dir,
        Action::Load,
        cca,
        Mk::Aes,
        Some("c3c3c3c3c3c3c3c3"),
        Some(Part::Last),
    );
    tke(&dir, Action::Set, cca, Mk::Aes, None, None);
    // The key and the copy in its LUKS2 volume's header, both still under OLD.
    let mut lost = lost(&dir);
    lost.sort();
    assert_eq!(lost, ["luks2 /dev/dasdc1", "zkey db-data"]);
}

#[test]
fn the_ceremony_refuses_steps_the_card_refuses_and_changes_nothing() {
    let (_temp, dir) = world(EXAMPLE);
    let before = std::fs::read(dir.join("world.json")).unwrap();
    for (action, mk, part) in [
        (Action::Set, Mk::Wk, None),
        (Action::Commit, Mk::Wk, None),
        (Action::Commit, Mk::Aes, None),
        (Action::Load, Mk::Aes, Some(Part::Last)),
    ] {
        let apqns = if mk.is_ep11() {
            vec!["03.0006".to_string()]
        } else {
            vec!["05.0006".to_string()]
        };
        let output = ceremony::run(
            &dir,
            &Request {
                action,
                apqns,
                mk,
                vp: Some("c2c2c2c2c2c2c2c2".into()),
                part,
            },
        );
        assert_eq!(output.code, 1, "{action:?} {mk:?}");
        assert!(
            output.stderr.contains("nothing was changed")
                || output.stderr.contains("verification pattern"),
            "{}",
            output.stderr
        );
    }
    assert_eq!(std::fs::read(dir.join("world.json")).unwrap(), before);
}

#[test]
fn world_file_mistakes_are_placed_and_refused() {
    let temp = tempfile::tempdir().unwrap();
    for (yaml, expected) in [
        (
            "cards:\n  - card: \"03\"\n    type: CEX8P\n    colour: red\n",
            "4:5: unknown key `colour`",
        ),
        (
            "cards:\n  - card: \"03\"\n    type: CEX8P\n    domains:\n      - domain: \"0006\"\nzkey:\n  - {name: k, key_type: EP11-AES, apqns: [\"04.0006\"], mkvp: \"a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1\"}\n",
            "7:",
        ),
        ("cards:\n  - card: \"03\"\n    type: CEX9X\n", "is not CEXn"),
    ] {
        let file = temp.path().join("w.yaml");
        std::fs::write(&file, yaml).unwrap();
        let error = super::world_file::parse("w.yaml", yaml, temp.path(), PathBuf::new())
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{yaml}: {error}");
    }
}

#[test]
fn globs_match_as_zkeys_filters() {
    assert!(super::glob("disk-*", "disk-root"));
    assert!(super::glob("03.*", "03.0006"));
    assert!(!super::glob("03.*", "04.0006"));
    assert!(super::glob("?4.0006", "04.0006"));
}

#[test]
fn an_older_kernel_shows_what_it_had_and_the_reader_reads_it() {
    let (_temp, dir) = world(&format!("kernel: \"5.4\"\n{EXAMPLE}"));
    let cards = Sysfs::new(dir.join("sys")).cards().unwrap();
    assert_eq!(
        (cards[0].config, cards[0].chkstop, cards[0].serial.clone()),
        (None, None, None)
    );
    assert!(cards[0].usable());
    assert_eq!(cards[0].queues[0].mkvps, None, "EP11 mkvps came with 5.6");
    let cca = cards[2].queues[0].mkvps.clone().unwrap();
    assert_eq!(cca.types(), [MkType::Aes]);
    assert_eq!(cards[2].serial.as_deref(), Some("93AAC005"));

    let (_temp, dir) = world(&format!("kernel: \"5.10\"\n{EXAMPLE}"));
    let cards = Sysfs::new(dir.join("sys")).cards().unwrap();
    assert_eq!((cards[0].config, cards[0].chkstop), (Some(true), None));
    assert_eq!(
        cards[2].queues[0].mkvps.clone().unwrap().types(),
        [MkType::Aes, MkType::Apka]
    );
    assert!(cards[0].queues[0].mkvps.is_some());
}
