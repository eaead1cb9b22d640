//! A domain group whose APQNs a selector chooses (`apqns: { domain: "0006" }`), through the
//! binary on the fake platform: the resolution shown in the plan (text and JSON), an apply
//! through it, a card that came between two runs of one change (refused, then settled by
//! naming the cards), an offline card that matches (refused, never dropped), and selector
//! mistakes (exit 1, at their line and column, nothing touched). Every apply ends with no
//! incident.

use std::process::Output;

use super::zcrypt::{NEW, OLD, World, world_yaml};
use crate::support::schemas::{Document, check};

const SELECTOR: &str = "apqns: { domain: \"0006\" }";
/// A CCA card with domain 0006 too: an EP11 group's selector passes over it.
const CCA_CARD: &str = "  - card: \"05\"
    type: CEX7C
    serialnr: \"93AAC005\"
    domains:
      - domain: \"0006\"
        AES: { current: \"c1c1c1c1c1c1c1c1\" }
";

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn selecting(card_04_online: bool, extra_card: &str) -> World {
    let world = world_yaml(card_04_online).replace("zkey:\n", &format!("{extra_card}zkey:\n"));
    let group = super::zcrypt::ep11_group().replace("apqns: [03.0006, 04.0006]", SELECTOR);
    World::with(&world, &group, "EP11", NEW)
}

fn edit_group(world: &World, from: &str, to: &str) {
    let path = world.root.join("group.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{text}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

/// Card `card` with domain 0006 joins the world, its WK CURRENT the old key (as a card the
/// TKE added to the domain group would hold): its sysfs folder shows from the next action.
fn add_ep11_card(world: &World, card: &str) {
    let path = world.root.join("w/world.json");
    let mut truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let cards = truth["cards"].as_array_mut().unwrap();
    let mut added = cards
        .iter()
        .find(|c| c["card"] == 3)
        .expect("card 03")
        .clone();
    added["card"] = u8::from_str_radix(card, 16).unwrap().into();
    added["serialnr"] = format!("93AABC{card}00000009").into();
    cards.push(added);
    std::fs::write(&path, serde_json::to_string(&truth).unwrap()).unwrap();
    // Any action of the fake writes its views again; clearing an empty NEW changes nothing.
    world.tke_with("clear", &format!("{card}.0006"), None);
    assert!(
        world
            .root
            .join(format!("w/sys/devices/ap/card{card}/{card}.0006/mkvps"))
            .exists()
    );
}

#[test]
fn zcrypt_selector_resolution_is_shown_in_the_plan_and_an_apply_through_it_converges() {
    let world = selecting(true, CCA_CARD);
    let out = world.run(&["plan", "group.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains(
            "APQNs: 03.0006, 04.0006 (selected by `apqns: { domain: \"0006\" }`: every EP11 card with that domain, online or not; passed over: 05.0006 (CCA coprocessor CEX7C))"
        ),
        "{shown}"
    );
    let out = world.run(&["plan", "group.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    check(Document::GroupPlan, &json);
    assert_eq!(json["apqns"], serde_json::json!(["03.0006", "04.0006"]));
    assert_eq!(
        json["apqn_selection"]["passed_over"],
        serde_json::json!([{"apqn": "05.0006", "why": "CCA coprocessor CEX7C"}])
    );
    assert_eq!(world.planned().len(), 10);

    world.assert_applies_and_converges();
    // A listed group shows its APQNs, with no selection.
    edit_group(&world, SELECTOR, "apqns: [03.0006, 04.0006]");
    let out = world.run(&["plan", "group.yaml", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    check(Document::GroupPlan, &json);
    assert!(json.get("apqn_selection").is_none(), "{json}");
}

/// A card that came between two runs of one change is refused by name (`apqns_unchanged`),
/// not loaded and set as if it had been in the change from its first step; naming the cards
/// the change began on settles it, and the change converges.
#[test]
fn zcrypt_selector_a_card_added_mid_change_is_refused_until_the_group_is_the_one_begun() {
    let world = selecting(true, "");
    world.apply_until_the_first_set();
    add_ep11_card(&world, "06");
    world.assert_refused(&[
        "`apqns_unchanged`",
        "are 03.0006, 04.0006, 06.0006 now, but this change began on 03.0006, 04.0006",
        "06.0006 came",
        "Evidence that would settle it",
        "apqns: [03.0006, 04.0006]",
    ]);
    edit_group(
        &world,
        SELECTOR,
        "apqns: { domain: \"0006\", cards: [\"03\", \"04\"] }",
    );
    world.assert_apply_converges();
}

/// A matching card that is offline is selected and refused by name, never left out.
#[test]
fn zcrypt_selector_an_offline_matching_card_is_refused_not_dropped() {
    let world = selecting(false, "");
    let said = world.assert_refused(&["`apqns_online`", "APQN(s) 04.0006 are offline"]);
    assert!(
        said.contains("APQNs 03.0006, 04.0006, selected by"),
        "{said}"
    );
}

#[test]
fn zcrypt_selector_mistakes_are_errors_at_their_place_with_nothing_touched() {
    let world = selecting(true, "");
    for (wrong, place, needle) in [
        (
            "apqns: { domain: 6 }",
            "group.yaml:4:18",
            "\"6\" is not a domain",
        ),
        (
            "apqns: { domain: \"0006\", cards: [4] }",
            "group.yaml:4:34",
            "\"4\" is not a card",
        ),
        ("apqns: { domian: \"0006\" }", "group.yaml:4:10", "domian"),
        ("apqns: \"0006\"", "group.yaml:4", "selector"),
    ] {
        std::fs::write(
            world.root.join("group.yaml"),
            super::zcrypt::ep11_group().replace("apqns: [03.0006, 04.0006]", wrong),
        )
        .unwrap();
        for command in ["validate", "plan", "apply"] {
            let out = world.run(
                &[command, "group.yaml", "--auto-approve"]
                    [..if command == "apply" { 3 } else { 2 }],
            );
            let shown = text(&out);
            // Bad input is exit 1, as every desired-file mistake (docs/exit-codes.md: 2
            // always means "changes").
            assert_eq!(out.status.code(), Some(1), "{command} {wrong}: {shown}");
            assert!(
                shown.contains(place) && shown.contains(needle),
                "{command} {wrong}: {shown}"
            );
        }
    }
    assert!(!world.root.join("state").exists());
    let mkvps =
        std::fs::read_to_string(world.root.join("w/sys/devices/ap/card03/03.0006/mkvps")).unwrap();
    assert!(mkvps.contains(&format!("WK CUR: valid 0x{OLD}")) && !mkvps.contains(NEW));
    world.assert_no_incidents();
}

/// A saved plan binds the APQNs the selector chose: once it chooses others, `apply PLANFILE`
/// is stale (exit 4) and touches nothing.
#[test]
fn zcrypt_selector_a_saved_plan_is_stale_once_the_selector_chooses_other_apqns() {
    let world = selecting(true, "");
    let out = world.run(&["plan", "group.yaml", "--out", "p.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(world.root.join("p.json")).unwrap()).unwrap();
    check(Document::GroupPlan, &saved);
    assert_eq!(saved["apqns"], serde_json::json!(["03.0006", "04.0006"]));
    add_ep11_card(&world, "06");
    let out = world.run(&["apply", "p.json"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("is stale"), "{}", text(&out));
    let mkvps =
        std::fs::read_to_string(world.root.join("w/sys/devices/ap/card03/03.0006/mkvps")).unwrap();
    assert!(!mkvps.contains(NEW), "{mkvps}");
    world.assert_no_incidents();
}

/// A card that comes while an apply runs stops that apply before its next step
/// (`apqns_unchanged`), rather than at the next run: the selector is resolved again before
/// every step. Nothing is set, and the next run, with the cards named, converges.
#[test]
fn zcrypt_selector_a_card_that_comes_during_an_apply_stops_it_before_the_next_step() {
    let world = selecting(true, "");
    let added = std::cell::Cell::new(false);
    let (code, said) = world.apply_as(|action, _| {
        if action == "commit_new_mk" && !added.get() {
            add_ep11_card(&world, "06");
            added.set(true);
        }
        super::zcrypt::Operator::Performs
    });
    assert_eq!(code, Some(3), "{said}");
    for needle in [
        "`apqns_unchanged`",
        "selected 03.0006, 04.0006 when this apply began, and selects 03.0006, 04.0006, 06.0006 now: 06.0006 came",
        "stopped before its next step",
        "Evidence that would settle it",
    ] {
        assert!(said.contains(needle), "{needle}: {said}");
    }
    assert!(
        !said.contains("(set_immediate) on APQN"),
        "no set was asked: {said}"
    );
    let mkvps =
        std::fs::read_to_string(world.root.join("w/sys/devices/ap/card03/03.0006/mkvps")).unwrap();
    assert!(mkvps.contains(&format!("WK CUR: valid 0x{OLD}")), "{mkvps}");
    world.assert_no_incidents();
    edit_group(
        &world,
        SELECTOR,
        "apqns: { domain: \"0006\", cards: [\"03\", \"04\"] }",
    );
    world.assert_apply_converges();
}
