//! The README's "More to try" block, run as it stands: extracted from README.md, each
//! `cargo run -q --` replaced by the built binary, run with `bash -e` from a copy of the
//! repository's `examples/` and `plans/` (a fresh clone, as far as the block can tell), with
//! a fresh HOME, TMPDIR and journal key and none of mkplan's variables. Every command must exit
//! as the README says it does (0; a command that is meant to fail would say `|| test $? -eq N`
//! in the block), and the outcomes its comments describe are checked afterwards.

use std::fs;
use std::path::Path;

use mkplan::backend::sim::Fleet as SimFleet;

use crate::support::*;

/// The first fenced `sh` block after "More to try" in README.md.
fn more_to_try() -> String {
    let readme = fs::read_to_string(repo_file("README.md")).expect("README.md");
    let after = &readme[readme
        .find("More to try")
        .expect("a \"More to try\" section")..];
    let open = after
        .find("```sh\n")
        .expect("a ```sh block after \"More to try\"")
        + "```sh\n".len();
    let length = after[open..].find("\n```").expect("the block ends");
    after[open..open + length + 1].to_string()
}

fn copy_folder(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("make a folder");
    for entry in fs::read_dir(from).expect("list a folder") {
        let entry = entry.expect("a folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_folder(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

#[test]
fn the_readme_more_to_try_block_runs_top_to_bottom_as_written() {
    let block = more_to_try();
    let binary = assert_cmd::cargo::cargo_bin("mkplan");
    let script = block.replace("cargo run -q -- ", "\"$MKPLAN\" ");
    // A release build (the planner's benchmark) takes minutes: it stays out of the block.
    assert!(
        !script.contains("cargo"),
        "the block runs a cargo command this test cannot replace by the built binary (a benchmark or a release build belongs outside the block):\n{block}"
    );
    let root = tempfile::tempdir().expect("a temporary folder");
    let clone = root.path().join("clone");
    for folder in ["examples", "plans"] {
        copy_folder(&repo_file(folder), &clone.join(folder));
    }
    let (home, tmp) = (root.path().join("home"), root.path().join("tmp"));
    fs::create_dir_all(&home).unwrap();
    fs::create_dir_all(&tmp).unwrap();
    let journal_key = root.path().join("journal.key");
    let output = std::process::Command::new("bash")
        .args(["-e", "-x", "-c", &script])
        .current_dir(&clone)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .env("MKPLAN_JOURNAL_KEY", &journal_key)
        .env("MKPLAN", &binary)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run bash");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "the block stopped (exit {:?}) at the last command traced:\n{stderr}",
        output.status.code()
    );
    let shown = format!("{stdout}{stderr}");
    for (what, expected) in [
        ("the apply", "Apply complete: 10 steps"),
        ("audit verify", "Audit trail .mkplan/audit.jsonl is intact"),
        ("plan --markdown", "| action | steps |"),
        ("plan --json", "\"format_version\""),
        ("plan --out", "Saved the plan to plan.json"),
        ("show --dot", "digraph"),
        (
            "status",
            "KMS CRK rewrap successful, waiting on cryptounit-mk-setimm",
        ),
        ("the domain group's drill", "2 runs in"),
        (
            "the domain group's drill",
            "2 converged, 0 refused safely, 0 failed; 0 incidents.",
        ),
    ] {
        assert!(
            shown.contains(expected),
            "{what}: no {expected:?} in:\n{shown}"
        );
    }
    // The apply rotated the copy, with zero incidents, and nothing else.
    let copies: Vec<_> = fs::read_dir(&tmp)
        .expect("the work copy")
        .map(|e| e.expect("an entry").path())
        .collect();
    assert_eq!(copies.len(), 1, "one work copy: {copies:?}");
    let rotated = copies[0].join("examples/fleets/three-units.yaml");
    let fleet = SimFleet::parse("three-units.yaml", &fs::read_to_string(&rotated).unwrap())
        .expect("the rotated copy reads");
    assert!(
        fleet.incidents.is_empty(),
        "incidents: {:#?}",
        fleet.incidents
    );
    for unit in &fleet.instances[0].crypto_units {
        assert_eq!(
            unit.current_register
                .verification_pattern()
                .map(|vp| vp.as_str()),
            Some(B),
            "{unit:?}"
        );
        assert_eq!(unit.new_register.status(), "Empty", "{unit:?}");
    }
    for fleet in [
        "three-units.yaml",
        "interrupted-after-rewrap.yaml",
        "several-instances.yaml",
        "mixed-types.yaml",
    ] {
        let path = format!("examples/fleets/{fleet}");
        assert_eq!(
            fs::read(clone.join(&path)).unwrap(),
            fs::read(repo_file(&path)).unwrap(),
            "the block changed {path} of the clone"
        );
    }
    assert!(
        journal_key.exists(),
        "the journal key was not made where MKPLAN_JOURNAL_KEY says"
    );
    assert!(
        !home.join(".config").exists(),
        "something was written under HOME/.config"
    );
}
