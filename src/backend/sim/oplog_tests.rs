use super::*;

const FLEET: &str = include_str!("../../../examples/fleets/three-units.yaml");

fn folder_with_fleet() -> (tempfile::TempDir, PathBuf) {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("fleet.yaml");
    fs::write(&path, FLEET).unwrap();
    (folder, path)
}

/// A change to instance 0: its key storage now has `keys` keys, with one incident.
fn changed(fleet: &mut Fleet, keys: u64) -> Entry {
    let from = fleet.incidents.len();
    fleet.instances[0].key_storage.keys = keys;
    fleet.incidents.push(Incident {
        instance: fleet.instances[0].id.clone(),
        unit: None,
        operation: "test".into(),
        description: format!("keys now {keys}"),
    });
    Entry::change(fleet, &[0], from)
}

#[test]
fn a_log_replays_exactly_and_compaction_retires_it() {
    let (_folder, path) = folder_with_fleet();
    let mut fleet = Fleet::parse("f", FLEET).unwrap();
    let mut writer = Writer::new(&path, sha256_hex(FLEET.as_bytes()));
    let first = changed(&mut fleet, 7);
    let second = changed(&mut fleet, 9);
    writer.append(&[first]).unwrap();
    writer.append(&[second]).unwrap();
    assert_eq!(read(&path).unwrap(), fleet, "replayed: incidents included");
    assert_eq!(fleet.incidents.len(), 2);
    writer.compact(&fleet).unwrap();
    assert!(!log_path(&path).exists());
    assert_eq!(
        Fleet::parse("f", &fs::read_to_string(&path).unwrap()).unwrap(),
        fleet
    );
    // The next change starts a log on the compacted file.
    let third = changed(&mut fleet, 11);
    writer.append(&[third]).unwrap();
    assert_eq!(read(&path).unwrap(), fleet);
    assert_eq!(
        read(&path).unwrap().incidents.len(),
        3,
        "no change applied twice"
    );
}

#[test]
fn a_torn_last_line_is_dropped_and_damage_before_whole_lines_is_refused() {
    let (_folder, path) = folder_with_fleet();
    let mut fleet = Fleet::parse("f", FLEET).unwrap();
    let mut writer = Writer::new(&path, sha256_hex(FLEET.as_bytes()));
    writer.append(&[changed(&mut fleet, 7)]).unwrap();
    let acknowledged = fleet.clone();
    writer.append(&[changed(&mut fleet, 9)]).unwrap();
    let whole = fs::read(log_path(&path)).unwrap();
    // Every cut inside the last line: that line was never fsynced, so never acknowledged.
    let last_start = whole[..whole.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    let cuts = (last_start..whole.len())
        .step_by(61)
        .chain([whole.len() - 1]);
    for cut in cuts {
        fs::write(log_path(&path), &whole[..cut]).unwrap();
        assert_eq!(read(&path).unwrap(), acknowledged, "cut at {cut}");
    }
    // Garbage (zeros from a crash) after the last whole line: dropped too.
    let mut zeros = whole.clone();
    zeros.extend([0u8; 100]);
    fs::write(log_path(&path), &zeros).unwrap();
    assert_eq!(read(&path).unwrap(), fleet);
    // A damaged line with a whole one after it: acknowledged changes were lost. Refused.
    let mut damaged = whole.clone();
    damaged[last_start - 5] ^= 0x01;
    fs::write(log_path(&path), &damaged).unwrap();
    let refused = read(&path).unwrap_err();
    assert!(
        refused.contains("damaged but later lines are whole"),
        "{refused}"
    );
}

#[test]
fn compaction_cut_short_by_a_crash_applies_nothing_twice() {
    let (_folder, path) = folder_with_fleet();
    let mut fleet = Fleet::parse("f", FLEET).unwrap();
    let mut writer = Writer::new(&path, sha256_hex(FLEET.as_bytes()));
    writer.append(&[changed(&mut fleet, 7)]).unwrap();
    let log = fs::read(log_path(&path)).unwrap();
    // Crash after the fleet file was replaced, before the log was removed.
    writer.compact(&fleet).unwrap();
    let compacted_log = {
        let mut text = log.clone();
        text.extend(
            Entry::Compacted {
                fleet_sha256: sha256_hex(fs::read(&path).unwrap().as_slice()),
            }
            .line(2)
            .as_bytes(),
        );
        text
    };
    fs::write(log_path(&path), &compacted_log).unwrap();
    assert_eq!(read(&path).unwrap(), fleet);
    assert_eq!(read(&path).unwrap().incidents.len(), 1);
    // Crash after the `compacted` line, before the fleet file was replaced.
    fs::write(&path, FLEET).unwrap();
    assert_eq!(read(&path).unwrap(), fleet);
    // The fleet file edited while a log was there: refused, nothing guessed.
    fs::write(&path, FLEET.replace("keys: 3000", "keys: 3001")).unwrap();
    let refused = read(&path).unwrap_err();
    assert!(refused.contains("is not that file"), "{refused}");
}
