//! The domain group's journal (`zcrypt-<digest>.jsonl`), through the binary: its Begin record
//! holds the cards' serial numbers, the only evidence of a card swapped behind an APQN in the
//! middle of a change. Each record is sealed with the journal key and the journal's head kept
//! beside the key, so a journal deleted, emptied, cut back or edited is refused (exit 3) with
//! what would settle it, and never read as "no change under way". A last line cut by a crash
//! is still tolerated, and a change applied in two runs still converges without incidents.

use sha2::{Digest, Sha256};

use crate::cases::zcrypt::{NEW, World, ep11_group, world_yaml};

/// A world whose change began: loads, commits and stages ran, and the operator stopped at
/// the first set (the journal holds a Begin record with both cards' serial numbers).
fn started() -> World {
    let world = World::with(&world_yaml(true), &ep11_group(), "EP11", NEW);
    world.apply_until_the_first_set();
    assert!(
        std::fs::read_to_string(journal(&world))
            .unwrap()
            .contains("93AABC0400000002"),
        "the Begin record holds the serial numbers"
    );
    world
}

/// The group's journal file in the world's state folder.
fn journal(world: &World) -> std::path::PathBuf {
    let state = world.root.join("state");
    let mut found = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with("zcrypt-") && name.ends_with(".jsonl")
        });
    found.next().expect("the group's journal")
}

/// `plan` and `apply` both refuse with exit 3, the message naming the journal and `what`,
/// and how to settle it; no ceremony step is shown and the world records no incident.
fn assert_refused(world: &World, journal: &std::path::Path, what: &str) {
    let name = journal.file_name().unwrap().to_string_lossy().to_string();
    let out = world.run(&["plan", "group.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    for needle in [
        name.as_str(),
        what,
        "cannot be trusted",
        "restore the journal from a backup",
        "no card behind its APQNs was swapped",
        "mv ",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains(what), "{stderr}");
    assert!(!stderr.contains("Ceremony step"), "{stderr}");
    world.assert_no_incidents();
}

/// Rewrites line `index` (from 0) of the journal with `edit` applied to its record, and the
/// record's checksum made to match: only the seal can tell.
fn edit_record(world: &World, index: usize, edit: impl Fn(&str) -> String) {
    let path = journal(world);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let line = &lines[index];
    let at = line.find("\"record\":").unwrap() + "\"record\":".len();
    let record = edit(&line[at..line.len() - 1]);
    assert_ne!(record, line[at..line.len() - 1], "the edit changed nothing");
    let sha256 = hex::encode(Sha256::digest(record.as_bytes()));
    let seal_at = line.find(",\"seal\":").unwrap();
    lines[index] = format!(
        "{{\"sha256\":\"{sha256}\"{},\"record\":{record}}}",
        &line[seal_at..line[..at].rfind(",\"record\":").unwrap()]
    );
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

/// Regression (adversary u5): the journal deleted after a change's first step, and a card
/// swapped; plan used to go on as if no change had begun, and never saw the swap.
#[test]
fn zcrypt_journal_deleted_after_a_first_step_is_refused_not_read_as_no_change() {
    let world = started();
    world.swap_card("04", "93AABC04000000FF");
    let path = journal(&world);
    std::fs::remove_file(&path).unwrap();
    assert_refused(&world, &path, "it was deleted");
    // Neither run made a new journal in its place.
    assert!(!path.exists());
}

/// Regression (adversary u5): the journal emptied.
#[test]
fn zcrypt_journal_emptied_is_refused() {
    let world = started();
    let path = journal(&world);
    std::fs::write(&path, "").unwrap();
    assert_refused(
        &world,
        &path,
        "it holds 0 records, but mkplan last left it with",
    );
}

/// Regression (adversary u5): card 04's serial number cut out of the Begin record and card 04
/// swapped: as the adversary did it (a checksum that no longer matches), and with the checksum
/// made to match (only the seal can tell).
#[test]
fn zcrypt_journal_with_a_serial_edited_out_of_its_begin_record_is_refused() {
    let world = started();
    world.swap_card("04", "93AABC04000000FF");
    let path = journal(&world);
    let genuine = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        genuine.replacen(",\"04\":\"93AABC0400000002\"", "", 1),
    )
    .unwrap();
    assert_refused(&world, &path, "line 1 is not a record mkplan wrote");
    std::fs::write(&path, &genuine).unwrap();
    edit_record(&world, 0, |record| {
        record.replacen(",\"04\":\"93AABC0400000002\"", "", 1)
    });
    assert_refused(
        &world,
        &path,
        "its record at line 1 (begin) is not authenticated",
    );
    // The genuine journal back: the swap is seen, by its serial number.
    std::fs::write(&path, &genuine).unwrap();
    let out = world.run(&["plan", "group.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("card_serial_numbers"), "{stderr}");
}

/// Regression (adversary u5): any record edited (checksum made to match), moved, or written
/// without a seal is no evidence: the journal is refused, naming the line.
#[test]
fn zcrypt_journal_with_any_record_edited_moved_or_unsealed_is_refused_naming_the_line() {
    let world = started();
    let path = journal(&world);
    let genuine = std::fs::read_to_string(&path).unwrap();
    let count = genuine.lines().count();
    assert!(count >= 3, "{genuine}");
    for index in 0..count {
        edit_record(&world, index, |record| {
            record.replacen("\"at\":\"", "\"at\":\"1", 1)
        });
        assert_refused(
            &world,
            &path,
            &format!("its record at line {} (", index + 1),
        );
        std::fs::write(&path, &genuine).unwrap();
    }
    let lines: Vec<&str> = genuine.lines().collect();
    let mut moved = lines.clone();
    moved.swap(1, 2);
    std::fs::write(&path, moved.join("\n") + "\n").unwrap();
    assert_refused(&world, &path, "its record at line 2 (");
    let last = lines[count - 1];
    let seal_at = last.find(",\"seal\":").unwrap();
    let record_at = last.find(",\"record\":").unwrap();
    let unsealed = format!("{}{}", &last[..seal_at], &last[record_at..]);
    std::fs::write(&path, format!("{genuine}{unsealed}\n")).unwrap();
    assert_refused(&world, &path, "it carries no seal");
    // The genuine journal back: the change goes on and converges.
    std::fs::write(&path, &genuine).unwrap();
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(0), "{stderr}");
    world.assert_no_incidents();
    world.assert_converged();
}

/// A change applied in two runs, with a last line cut by a crash mid-write between them:
/// every record sealed, the head kept among the journal key's heads, the cut line tolerated, and the
/// change converges with no incident; a rerun has nothing to do.
#[test]
fn zcrypt_journal_sealed_across_runs_tolerates_a_cut_last_line_and_converges() {
    let world = started();
    let path = journal(&world);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.lines().all(|l| l.contains("\"seal\":\"jk-")), "{text}");
    // The heads are kept per journal key in the state home, not beside the key file.
    assert!(!world.journal_key().with_file_name("heads").exists());
    let heads = world.root.join("keys/state/mkplan/heads");
    assert_eq!(
        std::fs::read_dir(&heads).unwrap().count(),
        1,
        "{}",
        heads.display()
    );
    let mut cut = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut cut, b"{\"sha256\":\"0f\",\"seal\":\"jk-").unwrap();
    drop(cut);
    let out = world.run(&["plan", "group.yaml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(0), "{stderr}");
    world.assert_no_incidents();
    world.assert_converged();
    let (code, stderr) = world.apply();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("No changes"), "{stderr}");
    world.assert_no_incidents();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.ends_with('\n') && !text.contains("\"sha256\":\"0f\""),
        "{text}"
    );
}
