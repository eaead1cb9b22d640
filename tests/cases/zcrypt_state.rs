//! A domain group's journal under `state pull` and `audit verify`, through the binary: pull
//! brings the group journals of a PostgreSQL store into a new folder, sealed with the journal
//! key and ending with a sealed `pulled` record (an archive no plan takes, which `audit verify`
//! vouches for); a journal the database lost records of is refused and leaves no folder, so
//! the pull is simply run again. `audit verify` checks a folder's group journals (every seal,
//! the chain, the head) and the database's (checksums, chain, head), naming the file and line
//! or the journal on failure. `status` of a group on a PostgreSQL store shows who holds the
//! group's lease, since when and until when.

use crate::cases::zcrypt::{Operator, World};
use crate::cases::zcrypt_postgres::{give_word, on_postgres, restore_older_backup};
use crate::support::postgres::column;

/// The one group journal file in `folder` (under the world's root).
fn group_journal(world: &World, folder: &str) -> std::path::PathBuf {
    let mut found: Vec<_> = std::fs::read_dir(world.root.join(folder))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with("zcrypt-") && name.ends_with(".jsonl")
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

/// Runs `args`; returns the exit code and stderr.
fn run(world: &World, args: &[&str]) -> (Option<i32>, String) {
    let out = world.run(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `audit verify` of a state folder vouches for its group journal, and names the file and
/// the line of a record edited, and a journal cut back against its head.
#[test]
fn zcrypt_audit_verify_checks_a_folders_group_journal_naming_the_file_and_line() {
    let world = World::new(true);
    world.apply_until_the_first_set();
    let journal = group_journal(&world, "state");
    let name = journal.file_name().unwrap().to_string_lossy().to_string();
    let (code, said) = run(&world, &["audit", "verify"]);
    assert_eq!(code, Some(0), "{said}");
    for needle in [
        name.as_str(),
        "is intact",
        "each sealed with your journal key",
    ] {
        assert!(said.contains(needle), "{needle:?} not in: {said}");
    }

    let text = std::fs::read_to_string(&journal).unwrap();
    let edited: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, line)| match i {
            1 => line.replacen("\"at\":\"", "\"at\":\"1", 1),
            _ => line.to_string(),
        })
        .collect();
    assert_ne!(edited.join("\n") + "\n", text, "line 2 was edited");
    std::fs::write(&journal, edited.join("\n") + "\n").unwrap();
    let (code, said) = run(&world, &["audit", "verify"]);
    assert_eq!(code, Some(1), "{said}");
    for needle in [name.as_str(), "line 2", "cannot be trusted"] {
        assert!(said.contains(needle), "{needle:?} not in: {said}");
    }

    let cut: Vec<&str> = text.lines().collect();
    std::fs::write(&journal, cut[..cut.len() - 1].join("\n") + "\n").unwrap();
    let (code, said) = run(&world, &["audit", "verify"]);
    assert_eq!(code, Some(1), "{said}");
    let held = format!(
        "it holds {} records, but mkplan last left it with {}",
        cut.len() - 1,
        cut.len()
    );
    assert!(said.contains(&held), "{held:?} not in: {said}");
}

/// `state pull` of a database holding a group's journal mid-change: the folder holds it sealed,
/// ending with `pulled`; `audit verify` vouches for it, no plan takes it, and the change goes
/// on in the database. A journal the database lost records of is refused (exit 3) with no
/// folder made, and `audit verify` of the database names it; the pull then runs again.
#[test]
fn zcrypt_postgres_state_pull_brings_group_journals_into_a_folder_that_audit_verify_vouches_for() {
    let Some((world, url)) = on_postgres() else {
        return;
    };
    world.apply_until_the_first_set();
    let (code, said) = run(&world, &["audit", "verify"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("Domain group journal of zcrypt:") && said.contains("is intact"),
        "{said}"
    );
    let (code, said) = run(&world, &["state", "pull", "--to", "archive"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("1 domain group journal(s)"), "{said}");
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(world.root.join("archive/index.json")).unwrap(),
    )
    .unwrap();
    let records = column(&url, "SELECT count(*) FROM mkplan_group_journal")[0].clone();
    let group = &index["domain_groups"][0];
    assert_eq!(group["folder"], "1", "{index}");
    assert_eq!(group["journal_records"].to_string(), records, "{index}");
    let pulled = group_journal(&world, "archive/1");
    let text = std::fs::read_to_string(&pulled).unwrap();
    assert_eq!(
        text.lines().count().to_string(),
        (records.parse::<usize>().unwrap() + 1).to_string()
    );
    assert!(
        text.lines().last().unwrap().contains("\"pulled\""),
        "{text}"
    );
    assert!(
        text.contains("93AABC0400000002"),
        "the serial numbers came along"
    );

    let (code, said) = run(&world, &["audit", "verify", "--state", "archive/1"]);
    assert_eq!(code, Some(0), "{said}");
    for needle in ["is intact", "pulled from postgres://", "extends the head"] {
        assert!(said.contains(needle), "{needle:?} not in: {said}");
    }
    let (code, said) = run(&world, &["plan", "group.yaml", "--state", "archive/1"]);
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("is a copy pulled from postgres://"), "{said}");
    let (code, said) = run(&world, &["state", "pull", "--to", "archive"]);
    assert_eq!(code, Some(1), "pull never writes over a folder: {said}");

    restore_older_backup(&url, 2);
    let (code, said) = run(&world, &["state", "pull", "--to", "again"]);
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("cannot be trusted"), "{said}");
    let left: Vec<_> = std::fs::read_dir(&world.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|name| name.contains("again"))
        .collect();
    assert!(left.is_empty(), "a refused pull leaves nothing: {left:?}");
    let (code, said) = run(&world, &["audit", "verify"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("but mkplan last saw it hold"), "{said}");

    // The operator's word, as the refusal says; then the same pull runs again.
    give_word(&world, &said);
    let (code, said) = run(&world, &["state", "pull", "--to", "again"]);
    assert_eq!(code, Some(0), "{said}");
}

/// `status` of the group while an apply waits for the operator: who holds the lease on the
/// group's APQNs, since when, until when (text and `--json`); once it ended, nobody.
#[test]
fn zcrypt_postgres_status_of_a_group_shows_who_holds_its_lease() {
    let Some((world, _url)) = on_postgres() else {
        return;
    };
    let status = |json: bool| {
        let args = [
            &["status", "group.yaml"][..],
            if json { &["--json"] } else { &[] },
        ]
        .concat();
        let out = world.run(&args);
        let said = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{said}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let mut seen = None;
    let (code, stderr) = world.apply_as(|_, _| {
        if seen.is_none() {
            seen = Some((status(false), status(true)));
        }
        Operator::Performs
    });
    assert_eq!(code, Some(0), "{stderr}");
    let (text, json) = seen.expect("the apply met a ceremony step");
    for needle in [
        "State: the domain group journal of zcrypt:",
        "Lock: held by lease ",
        "(apply by ",
        "since 20",
        "expires 20",
        "unless renewed) on 03.0006, 04.0006",
    ] {
        assert!(text.contains(needle), "{needle:?} not in: {text}");
    }
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let lock = &json["state"]["locks"][0];
    assert_eq!(lock["command"], "apply", "{json}");
    assert_eq!(lock["holder_gone"], false, "{json}");
    assert_eq!(lock["instances"], serde_json::json!(["03.0006", "04.0006"]));
    for field in ["holder", "host", "started", "expires"] {
        assert!(
            !lock[field].as_str().unwrap_or_default().is_empty(),
            "{field}: {json}"
        );
    }

    assert!(status(false).contains("  Lock: not held."));
    let json: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(json["state"]["locks"], serde_json::json!([]), "{json}");
}
