//! A domain group's plan for a reviewer and as a saved file, through the binary on the fake
//! platform: `plan --markdown` (and its refusal), `plan --out`, `show PLANFILE` in every
//! view, and `apply PLANFILE`, which runs only while the group file, the backend and the
//! machine are those the plan was made from. Every apply ends with no incident.

use std::process::Output;

use super::zcrypt::{NEW, OLD, Operator, World};
use crate::support::schemas::{Document, check};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mkvps(world: &World, card: &str) -> String {
    std::fs::read_to_string(
        world
            .root
            .join(format!("w/sys/devices/ap/card{card}/{card}.0006/mkvps")),
    )
    .unwrap()
}

/// Nothing was done to the machine: the APQNs online still show only the old key, and no
/// key was staged.
fn assert_untouched(world: &World) {
    assert_untouched_on(world, &["03", "04"]);
}

fn assert_untouched_on(world: &World, cards: &[&str]) {
    for card in cards {
        let mkvps = mkvps(world, card);
        assert!(mkvps.contains(&format!("WK CUR: valid 0x{OLD}")), "{mkvps}");
        assert!(!mkvps.contains(NEW), "{mkvps}");
    }
    assert!(!world.root.join("w/zkey/backup.renc").exists());
}

#[test]
fn zcrypt_saved_plan_markdown_shows_the_counts_the_registers_the_stores_and_the_steps() {
    let world = World::new(true);
    let out = world.run(&["plan", "group.yaml", "--markdown"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let markdown = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "### mkplan plan: domain group `payroll` (EP11, re-encipher, then set): changes",
        "| `load_new_mk` | operator (TKE or panel.exe), verified in `mkvps` | 2 |",
        "| `stage_reencipher` | mkplan, verified by reading the store again | 2 |",
        "| **total** | 6 by the operator, 4 by mkplan | **10** |",
        "**Irreversible steps:** 2",
        &format!(
            "| 03.0006 | WK | - | {} |  | 93AABC0300000001 |",
            &OLD[..32]
        ),
        &format!("| zkey key \"backup\" | WK | {} | - |", &OLD[..32]),
        "| z5 | `stage_reencipher` | mkplan | z1, z2, z3, z4 | re-encipher zkey key",
        "live state fingerprint `",
    ] {
        assert!(markdown.contains(expected), "{expected}\n---\n{markdown}");
    }
    let out = world.run(&["plan", "group.yaml", "--json"]);
    check(
        Document::GroupPlan,
        &serde_json::from_slice(&out.stdout).unwrap(),
    );
    assert_untouched(&world);
}

#[test]
fn zcrypt_saved_plan_a_refusal_is_shown_in_the_format_asked_for_and_exits_3() {
    let world = World::new(false);
    let out = world.run(&["plan", "group.yaml", "--markdown"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let markdown = String::from_utf8_lossy(&out.stdout);
    assert!(
        markdown.contains("### mkplan plan: refused for safety, domain group `payroll`"),
        "{markdown}"
    );
    assert!(markdown.contains("- **pre-check** `"), "{markdown}");
    assert!(markdown.contains("04.0006"), "{markdown}");
    let out = world.run(&["plan", "group.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    check(Document::GroupRefusal, &json);
    let name = json["refusals"][0]["check"].as_str().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(name),
        "{}",
        text(&out)
    );
    // Card 04 is offline: its mkvps shows dashes.
    assert_untouched_on(&world, &["03"]);
}

#[test]
fn zcrypt_saved_plan_is_shown_in_every_view_and_applies_while_the_machine_is_unchanged() {
    let world = World::new(true);
    let out = world.run(&["plan", "group.yaml", "--out", "p.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("Saved the plan to p.json"),
        "{}",
        text(&out)
    );
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(world.root.join("p.json")).unwrap()).unwrap();
    check(Document::GroupPlan, &saved);
    assert_eq!(saved["desired_file"], "group.yaml");
    assert_eq!(saved["steps"].as_array().unwrap().len(), 10);

    // `runbook` is the HPCS checklist: a group's plan is named as such, with where its steps
    // are shown (it was "damaged plan file … do not edit them").
    let runbook = world.run(&["runbook", "p.json"]);
    assert_eq!(runbook.status.code(), Some(1), "{}", text(&runbook));
    assert!(
        text(&runbook).contains("p.json is a domain group's plan")
            && text(&runbook).contains("mkplan show p.json --markdown")
            && !text(&runbook).contains("damaged"),
        "{}",
        text(&runbook)
    );

    let shown = world.run(&["show", "p.json"]);
    assert!(
        text(&shown).contains("Plan: 10 steps (6 ceremony steps"),
        "{}",
        text(&shown)
    );
    let json = world.run(&["show", "p.json", "--json"]);
    let reread: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(reread, saved, "show --json gives the saved plan back");
    let markdown = world.run(&["show", "p.json", "--markdown"]);
    assert!(
        text(&markdown).contains("The registers and stores are not in a saved plan"),
        "{}",
        text(&markdown)
    );
    let dot = world.run(&["show", "p.json", "--dot"]);
    assert!(text(&dot).contains("\"z1\" -> \"z2\";"), "{}", text(&dot));

    let (code, stderr) = world
        .apply_with(&["apply", "p.json", "--verify-timeout-s", "20"], |_, _| {
            Operator::Performs
        });
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("Applying the saved plan p.json"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Apply this plan?"),
        "a saved plan was reviewed: {stderr}"
    );
    world.assert_no_incidents();
    world.assert_converged();
}

#[test]
fn zcrypt_saved_plan_is_stale_once_the_machine_the_group_file_or_the_backend_changed() {
    let world = World::new(true);
    let out = world.run(&["plan", "group.yaml", "--out", "p.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Another backend: a second world, given on the command line.
    let other = World::new(true);
    let other_sys = format!("zcrypt:{}", other.root.join("w/sys").display());
    let out = world.run(&["apply", "p.json", "--backend", &other_sys]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("it was made against"), "{}", text(&out));
    assert_untouched(&other);

    // The machine: someone loaded the new key on one APQN with the TKE since.
    world.tke("load", "03.0006");
    let loaded = mkvps(&world, "03");
    let out = world.run(&["apply", "p.json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("is stale: the machine changed since it was made"),
        "{}",
        text(&out)
    );
    assert_eq!(mkvps(&world, "03"), loaded, "nothing was done");
    assert!(!world.root.join("w/zkey/backup.renc").exists());

    // The group file: `--desired` names it, and the saved plan is still what is checked
    // (the plan file comes first, never the group file alone).
    let edited = std::fs::read_to_string(world.root.join("group.yaml")).unwrap() + "# edited\n";
    std::fs::write(world.root.join("edited.yaml"), edited).unwrap();
    let out = world.run(&["apply", "p.json", "--desired", "edited.yaml"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("its SHA-256 differs"), "{}", text(&out));
    assert_eq!(mkvps(&world, "03"), loaded, "nothing was done");
    world.assert_no_incidents();
}

#[test]
fn zcrypt_saved_plan_a_file_edited_to_name_other_steps_is_not_applied() {
    let world = World::new(true);
    let out = world.run(&["plan", "group.yaml", "--out", "p.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The steps edited to set immediately, before any store is staged.
    let path = world.root.join("p.json");
    let mut saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let steps = saved["steps"].as_array_mut().unwrap();
    steps.retain(|s| s["action"] != "stage_reencipher");
    std::fs::write(&path, saved.to_string()).unwrap();
    let out = world.run(&["apply", "p.json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("planning again from the machine and the journal gives other steps"),
        "{}",
        text(&out)
    );
    assert_untouched(&world);
}
