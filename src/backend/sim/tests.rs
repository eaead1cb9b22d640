//! The simulator must be a faithful adversary: it refuses what the HSM refuses, performs what
//! the HSM performs even when that destroys data, records every loss, persists every change
//! before it answers, injects the four faults, and takes as long to rewrap as the service.
//! Each rule of `hsm` and `rewrap` has a test here that fails without it.

use super::*;
use crate::keypart::Secret32;
use crate::model::{CurrentRegister, Mode, NewRegister, RewrapStatus, VerificationPattern};

const INSTANCE: &str = "5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b";

fn key(byte: u8) -> VerificationPattern {
    Secret32::from_bytes([byte; 32]).verification_pattern()
}

fn unit_id(n: usize) -> String {
    format!("0a1b2c3d-0000-4000-8000-{n:012}")
}

const ALICE: &str =
    "{ name: alice, ski: \"3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a3f0a\" }";
const BOB: &str =
    "{ name: bob, ski: \"7c217c217c217c217c217c217c217c217c217c217c217c217c217c217c217c21\" }";

/// One instance, its key storage under `storage` (3,000 keys, rewrapped at once), units with
/// the given (new, current) registers, threshold 2, administrators alice and bob.
fn fleet_yaml(units: &[(&str, &str)], storage: &VerificationPattern) -> String {
    fleet_text(units, storage, &[])
}

/// `fleet_yaml` with `extra` lines under `key_storage`, from line 8 of the file on
/// (`verification_pattern` is on line 5).
fn fleet_text(units: &[(&str, &str)], storage: &VerificationPattern, extra: &[&str]) -> String {
    let mut yaml = format!(
        "instances:\n  - id: {INSTANCE}\n    region: us-south\n    key_storage:\n      verification_pattern: \"{storage}\"\n      keys: 3000\n      rewrap_ms_per_key: 0\n"
    );
    for line in extra {
        yaml.push_str(&format!("      {line}\n"));
    }
    yaml.push_str("    reports_rotation_status: true\n    crypto_units:\n");
    for (n, (new, current)) in units.iter().enumerate() {
        yaml.push_str(&format!(
            "      - {{ hsm_id: {}, type: operational, location: \"[us-south].[AZ1-CS1].[01].[0{n}]\", mode: admin, signature_threshold: 2, revocation_threshold: 2, administrators: [{ALICE}, {BOB}], new_register: {new}, current_register: {current} }}\n",
            unit_id(n + 1)
        ));
    }
    yaml
}

fn reg(status: &str, vp: &VerificationPattern) -> String {
    format!("{{ status: {status}, verification_pattern: \"{vp}\" }}")
}

/// Three units rotating A → B, all loaded and committed, not rewrapped.
fn committed() -> Fleet {
    let (a, b) = (key(0xA), key(0xB));
    let unit = (reg("Full Committed", &b), reg("Valid", &a));
    let units = vec![(unit.0.as_str(), unit.1.as_str()); 3];
    Fleet::parse("f.yaml", &fleet_yaml(&units, &a)).unwrap()
}

/// `committed()` with a rewrap that takes `keys × ms_per_key` ms.
fn committed_slow(keys: u64, ms_per_key: u64) -> Fleet {
    let mut fleet = committed();
    fleet.instances[0].key_storage.keys = keys;
    fleet.instances[0].key_storage.rewrap_ms_per_key = ms_per_key;
    fleet
}

/// Two units holding A, new registers Empty.
fn fresh() -> Fleet {
    let a = key(0xA);
    let unit = ("{ status: Empty }".to_string(), reg("Valid", &a));
    let units = vec![(unit.0.as_str(), unit.1.as_str()); 2];
    Fleet::parse("f.yaml", &fleet_yaml(&units, &a)).unwrap()
}

fn signers(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn op_unit(n: usize, make: fn(String, String) -> SimOperation) -> SimOperation {
    make(INSTANCE.into(), unit_id(n))
}

fn load(n: usize, vp: &VerificationPattern) -> SimOperation {
    SimOperation::LoadNewMk {
        instance: INSTANCE.into(),
        unit: unit_id(n),
        verification_pattern: vp.clone(),
    }
}

fn commit_by(n: usize, vp: &VerificationPattern, by: &[&str]) -> SimOperation {
    SimOperation::CommitNewMk {
        instance: INSTANCE.into(),
        unit: unit_id(n),
        verification_pattern: vp.clone(),
        signers: signers(by),
    }
}

fn set_immediate_by(n: usize, vp: &VerificationPattern, by: &[&str]) -> SimOperation {
    SimOperation::SetImmediate {
        instance: INSTANCE.into(),
        unit: unit_id(n),
        verification_pattern: vp.clone(),
        signers: signers(by),
    }
}

fn set_immediate(n: usize) -> SimOperation {
    set_immediate_by(n, &key(0xB), &["alice", "bob"])
}

fn clear_new(n: usize) -> SimOperation {
    op_unit(n, |instance, unit| SimOperation::ClearNewMk {
        instance,
        unit,
        verification_pattern: None,
    })
}

fn rewrap() -> SimOperation {
    SimOperation::RewrapKeyStorage {
        instance: INSTANCE.into(),
    }
}

/// The refusal's sentence.
#[track_caller]
fn refusal(fleet: &mut Fleet, operation: &SimOperation) -> String {
    let before = fleet.clone();
    let refused = hsm::perform(fleet, operation).expect_err("must be refused");
    assert_eq!(*fleet, before, "a refusal changes nothing");
    refused.to_string()
}

// ---------------------------------------------------------------------------------------------
// Losses, performed and recorded

#[test]
fn a_full_rotation_causes_no_incident() {
    let mut fleet = committed();
    hsm::perform(&mut fleet, &rewrap()).unwrap();
    assert_eq!(fleet.instances[0].rewrap_status(), RewrapStatus::Rewrapped);
    for n in 1..=3 {
        hsm::perform(&mut fleet, &set_immediate(n)).unwrap();
    }
    assert!(fleet.incidents.is_empty(), "{:?}", fleet.incidents);
    let instance = &fleet.instances[0];
    assert_eq!(instance.key_storage.verification_pattern, key(0xB));
    assert_eq!(instance.rewrap_status(), RewrapStatus::NotRewrapped);
    assert_eq!(instance.key_storage.rewrapped_from, None);
}

#[test]
fn set_immediate_before_the_rewrap_is_performed_and_recorded() {
    let mut fleet = committed();
    hsm::perform(&mut fleet, &set_immediate(1)).unwrap();
    assert_eq!(
        fleet.instances[0].crypto_units[0].current_register,
        CurrentRegister::Valid(key(0xB))
    );
    assert_eq!(fleet.incidents.len(), 1);
    assert!(
        fleet.incidents[0]
            .description
            .contains("set immediate before the rewrap")
    );
    // Promoting the others too loses the last holder of A: a second incident.
    hsm::perform(&mut fleet, &set_immediate(2)).unwrap();
    hsm::perform(&mut fleet, &set_immediate(3)).unwrap();
    assert!(fleet.instances[0].key_storage.unusable);
    assert!(
        fleet
            .incidents
            .iter()
            .any(|i| i.description.contains("no register of the instance holds"))
    );
}

#[test]
fn a_second_rewrap_is_performed_and_destroys_the_key_storage() {
    let mut fleet = committed();
    hsm::perform(&mut fleet, &rewrap()).unwrap();
    assert!(fleet.incidents.is_empty());
    hsm::perform(&mut fleet, &rewrap()).unwrap();
    assert!(fleet.instances[0].key_storage.unusable);
    assert!(
        fleet.incidents[0]
            .description
            .contains("rewrap started again after it completed")
    );
}

#[test]
fn clearing_the_last_holder_after_the_rewrap_loses_the_key_storage() {
    let mut fleet = committed();
    hsm::perform(&mut fleet, &rewrap()).unwrap();
    for n in 1..=3 {
        hsm::perform(&mut fleet, &clear_new(n)).unwrap();
    }
    assert!(fleet.instances[0].key_storage.unusable);
    let last = fleet.incidents.last().unwrap();
    assert_eq!(last.operation, "clear_new_mk");
    assert_eq!(last.unit.as_deref(), Some(unit_id(3).as_str()));
    assert!(last.description.contains("is unusable"), "{last:?}");
}

/// Rule 7: after the rewrap, a new register holding the key storage's key is never cleared,
/// even while other units hold it too: that unit can no longer be promoted without a reload.
#[test]
fn clearing_a_staged_key_after_the_rewrap_is_an_incident_while_others_still_hold_it() {
    let mut fleet = committed();
    hsm::perform(&mut fleet, &rewrap()).unwrap();
    hsm::perform(&mut fleet, &clear_new(1)).unwrap();
    assert!(
        !fleet.instances[0].key_storage.unusable,
        "units 2 and 3 hold B"
    );
    assert_eq!(fleet.incidents.len(), 1, "{:?}", fleet.incidents);
    let incident = &fleet.incidents[0];
    assert_eq!(incident.operation, "clear_new_mk");
    assert_eq!(incident.unit.as_deref(), Some(unit_id(1).as_str()));
    assert!(
        incident
            .description
            .contains("can no longer be promoted to it without loading it again"),
        "{incident:?}"
    );
    // Before the rewrap, the same clear costs nothing: the key storage is under A.
    let mut fleet = committed();
    hsm::perform(&mut fleet, &clear_new(1)).unwrap();
    assert!(fleet.incidents.is_empty(), "{:?}", fleet.incidents);
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[test]
fn refuses_what_the_hsm_refuses() {
    let b = key(0xB);
    let mut fleet = fresh();
    assert!(refusal(&mut fleet, &commit_by(1, &b, &["alice", "bob"])).contains("Empty"));
    assert!(refusal(&mut fleet, &rewrap()).contains("rewrap refused"));
    assert!(refusal(&mut fleet, &set_immediate(1)).contains("not Full Committed"));
    hsm::perform(&mut fleet, &load(1, &b)).unwrap();
    assert!(refusal(&mut fleet, &load(1, &b)).contains("clear it before loading"));
    assert!(
        refusal(&mut fleet, &commit_by(1, &key(0xC), &["alice", "bob"])).contains("does not match")
    );
    fleet.instances[0].crypto_units[1].mode = Mode::Imprint;
    assert!(refusal(&mut fleet, &clear_new(2)).contains("imprint"));
    assert!(fleet.incidents.is_empty());
    assert_eq!(
        fleet.instances[0].crypto_units[0].new_register,
        NewRegister::FullUncommitted(b)
    );
}

/// Rule 1: a commit or a set immediate carries the unit's signature threshold of signatures,
/// from different administrators.
#[test]
fn signed_commands_need_the_signature_threshold_of_different_administrators() {
    let b = key(0xB);
    let mut fleet = fresh();
    hsm::perform(&mut fleet, &load(1, &b)).unwrap();
    let one = refusal(&mut fleet, &commit_by(1, &b, &["alice"]));
    assert!(one.contains("needs 2 signatures"), "{one}");
    assert!(one.contains("has 1 (alice)"), "{one}");
    let twice = refusal(&mut fleet, &commit_by(1, &b, &["alice", "alice"]));
    assert!(
        twice.contains("has 1 (alice)"),
        "the same name counts once: {twice}"
    );
    hsm::perform(&mut fleet, &commit_by(1, &b, &["alice", "bob"])).unwrap();

    let mut fleet = committed();
    hsm::perform(&mut fleet, &rewrap()).unwrap();
    let unsigned = refusal(&mut fleet, &set_immediate_by(1, &b, &[]));
    assert!(
        unsigned.contains("set immediate on crypto unit"),
        "{unsigned}"
    );
    assert!(unsigned.contains("needs 2 signatures"), "{unsigned}");
    hsm::perform(&mut fleet, &set_immediate_by(1, &b, &["bob", "alice"])).unwrap();
}

/// Rule 1: every signer is an administrator installed on that very unit.
#[test]
fn a_signer_must_be_an_administrator_of_the_unit() {
    let b = key(0xB);
    let mut fleet = fresh();
    hsm::perform(&mut fleet, &load(1, &b)).unwrap();
    hsm::perform(&mut fleet, &load(2, &b)).unwrap();
    let stranger = refusal(&mut fleet, &commit_by(1, &b, &["alice", "bob", "mallory"]));
    assert!(
        stranger.contains("\"mallory\" signed it but is not an administrator"),
        "{stranger}"
    );
    assert!(
        stranger.contains("alice, bob"),
        "names the installed ones: {stranger}"
    );
    // Bob is not installed on unit 2: his signature counts there for nothing.
    fleet.instances[0].crypto_units[1]
        .administrators
        .retain(|a| a.name != "bob");
    let elsewhere = refusal(&mut fleet, &commit_by(2, &b, &["alice", "bob"]));
    assert!(elsewhere.contains(&unit_id(2)), "{elsewhere}");
    assert!(elsewhere.contains("\"bob\""), "{elsewhere}");
    hsm::perform(&mut fleet, &commit_by(1, &b, &["alice", "bob"])).unwrap();
}

/// Rule 2: set immediate names the key it promotes; the service refuses another.
#[test]
fn set_immediate_promotes_only_the_key_it_names() {
    let mut fleet = committed();
    hsm::perform(&mut fleet, &rewrap()).unwrap();
    let other = refusal(
        &mut fleet,
        &set_immediate_by(1, &key(0xC), &["alice", "bob"]),
    );
    assert!(other.contains(&format!("names {}", key(0xC))), "{other}");
    assert!(other.contains(&format!("holds {}", key(0xB))), "{other}");
    hsm::perform(&mut fleet, &set_immediate(1)).unwrap();
    assert!(fleet.incidents.is_empty());
}

/// Rule 3: a load of the unit's current key is no rotation.
#[test]
fn loading_the_current_key_is_refused() {
    let mut fleet = fresh();
    let same = refusal(&mut fleet, &load(1, &key(0xA)));
    assert!(same.contains("the unit's current master key"), "{same}");
    hsm::perform(&mut fleet, &load(1, &key(0xB))).unwrap();
}

/// Rule 4: the rewrap's pre-checks include equal signature thresholds.
#[test]
fn a_rewrap_is_refused_when_signature_thresholds_differ() {
    let mut fleet = committed();
    fleet.instances[0].crypto_units[2].signature_threshold = 1;
    let differ = refusal(&mut fleet, &rewrap());
    assert!(differ.contains("signature thresholds differ"), "{differ}");
    assert!(differ.contains(&unit_id(3)), "{differ}");
}

/// Rule 4: and a common administrator set (same name and same signature key on every unit)
/// at least as large as the threshold.
#[test]
fn a_rewrap_is_refused_without_enough_common_administrators() {
    let mut fleet = committed();
    let other_key = crate::model::Ski::parse(&"e".repeat(64)).unwrap();
    fleet.instances[0].crypto_units[1].administrators[1].ski = other_key;
    let few = refusal(&mut fleet, &rewrap());
    assert!(few.contains("1 administrator(s) (alice)"), "{few}");
    assert!(
        few.contains("fewer than the signature threshold 2"),
        "{few}"
    );
    // With threshold 1 everywhere, alice alone is enough.
    for unit in &mut fleet.instances[0].crypto_units {
        unit.signature_threshold = 1;
    }
    hsm::perform(&mut fleet, &rewrap()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The slow rewrap (rule 5)

#[test]
fn a_rewrap_runs_for_its_keys_and_completes_when_the_clock_passes_its_end() {
    let mut fleet = committed_slow(3000, 20);
    let accepted = hsm::perform_at(&mut fleet, &rewrap(), 1_000).unwrap();
    assert_eq!(
        accepted,
        Accepted::RewrapRunning {
            completes_at_ms: 61_000
        }
    );
    let instance = &fleet.instances[0];
    assert_eq!(instance.rewrap_status(), RewrapStatus::InProgress);
    assert_eq!(instance.key_storage.verification_pattern, key(0xA));
    assert!(!hsm::complete_rewraps(&mut fleet, 60_999));
    assert!(hsm::complete_rewraps(&mut fleet, 61_000));
    let storage = &fleet.instances[0].key_storage;
    assert_eq!(storage.verification_pattern, key(0xB));
    assert_eq!(storage.rewrapped_from, Some(key(0xA)));
    assert_eq!(storage.rewrap_in_progress, None);
    assert_eq!(fleet.instances[0].rewrap_status(), RewrapStatus::Rewrapped);
    assert!(fleet.incidents.is_empty());
}

#[test]
fn while_a_rewrap_runs_the_instance_takes_no_command() {
    let mut fleet = committed_slow(3000, 20);
    hsm::perform_at(&mut fleet, &rewrap(), 0).unwrap();
    let running = fleet.clone();
    for operation in [rewrap(), set_immediate(1), clear_new(2)] {
        let refused = hsm::perform_at(&mut fleet, &operation, 30_000).unwrap_err();
        assert!(matches!(refused, Refused::Busy(_)), "{refused:?}");
        assert!(refused.reason().contains("in progress"), "{refused}");
        assert!(refused.reason().contains("about 30 s"), "{refused}");
        assert_eq!(fleet, running, "nothing changed");
    }
    // Once the clock passes its end, the next command finds it complete.
    hsm::perform_at(&mut fleet, &set_immediate(1), 60_000).unwrap();
    assert!(fleet.incidents.is_empty(), "{:?}", fleet.incidents);
}

#[test]
fn a_service_that_does_not_report_its_status_hides_a_running_rewrap() {
    let mut fleet = committed_slow(3000, 20);
    fleet.instances[0].reports_rotation_status = false;
    hsm::perform_at(&mut fleet, &rewrap(), 0).unwrap();
    assert_eq!(
        fleet.instances[0].rewrap_status(),
        RewrapStatus::NotReported
    );
}

#[test]
fn a_rewrap_started_again_is_judged_when_it_is_accepted() {
    let mut fleet = committed_slow(3000, 20);
    hsm::perform_at(&mut fleet, &rewrap(), 0).unwrap();
    hsm::perform_at(&mut fleet, &rewrap(), 60_000).unwrap();
    assert!(fleet.instances[0].key_storage.unusable);
    assert_eq!(fleet.incidents.len(), 1);
    assert!(
        fleet.incidents[0]
            .description
            .contains("rewrap started again after it completed")
    );
    let running = fleet.instances[0].key_storage.rewrap_in_progress.as_ref();
    assert!(running.is_some(), "the second rewrap is still running");
    // Whatever the simulator writes, it reads back.
    assert_eq!(Fleet::parse("f", &fleet.to_yaml()).unwrap(), fleet);
}

// ---------------------------------------------------------------------------------------------
// A fleet that contradicts itself (rule 6)

#[track_caller]
fn contradiction(yaml: &str, says: &str) -> crate::model::InputError {
    let error = Fleet::parse("f.yaml", yaml).expect_err("must be refused");
    assert!(
        error.message.contains(INSTANCE),
        "names the instance: {error}"
    );
    assert!(error.message.contains(says), "{error}");
    assert!(error.fix.is_some(), "{error}");
    error
}

#[test]
fn a_fleet_that_contradicts_itself_is_refused_at_its_line() {
    let (a, b, c) = (key(0xA), key(0xB), key(0xC));
    let (staged, current_a, current_b) = (
        reg("Full Committed", &b),
        reg("Valid", &a),
        reg("Valid", &b),
    );
    let waiting = vec![(staged.as_str(), current_a.as_str()); 3];
    let promoted = vec![("{ status: Empty }", current_b.as_str()); 3];
    let from = |vp: &VerificationPattern| format!("rewrapped_from: \"{vp}\"");
    let running =
        format!("rewrap_in_progress: {{ from: \"{a}\", to: \"{b}\", completes_at_ms: 5 }}");

    let text = fleet_text(&promoted, &b, &[&from(&a)]);
    let error = contradiction(&text, "every current register already holds");
    assert_eq!(error.position.map(|p| p.0), Some(8), "{error}");

    let text = fleet_text(&waiting, &b, &[&from(&b)]);
    let error = contradiction(&text, "rewrapped_from is the key storage's own master key");
    assert_eq!(error.position.map(|p| p.0), Some(8), "{error}");

    let text = fleet_text(&waiting, &b, &[&from(&a), &running]);
    let error = contradiction(&text, "a rewrap is in progress and rewrapped_from");
    assert_eq!(error.position.map(|p| p.0), Some(9), "{error}");

    let text = fleet_text(&waiting, &b, &[&running]);
    let error = contradiction(&text, "a rewrap from");
    assert!(
        error.message.contains("but the key storage is under"),
        "{error}"
    );
    assert_eq!(error.position.map(|p| p.0), Some(8), "{error}");

    let fresh = vec![("{ status: Empty }", current_a.as_str()); 3];
    let text = fleet_text(&fresh, &a, &[&running]);
    let error = contradiction(&text, "every new register Full Committed with the second");
    assert_eq!(error.position.map(|p| p.0), Some(8), "{error}");

    let text = fleet_text(&waiting, &c, &[]);
    let error = contradiction(&text, "no register holds the key storage's master key");
    assert_eq!(error.position.map(|p| p.0), Some(5), "{error}");
    // Marked unusable, the same fleet is what the simulator writes after the loss.
    Fleet::parse("f.yaml", &fleet_text(&waiting, &c, &["unusable: true"])).unwrap();
    // And a fleet the simulator wrote mid-rewrap reads back.
    Fleet::parse("f.yaml", &fleet_text(&waiting, &a, &[&running])).unwrap();
}

#[test]
fn the_rewrap_status_is_derived_from_the_key_storage_and_the_registers() {
    let (a, b) = (key(0xA), key(0xB));
    let (staged, current_a) = (reg("Full Committed", &b), reg("Valid", &a));
    let units = vec![(staged.as_str(), current_a.as_str()); 3];
    // Under B, which no current register holds, without rewrapped_from: mid-rotation.
    let fleet = Fleet::parse("f.yaml", &fleet_yaml(&units, &b)).unwrap();
    assert_eq!(fleet.instances[0].rewrap_status(), RewrapStatus::Rewrapped);
    // Under A: the same registers say nothing happened yet.
    let fleet = Fleet::parse("f.yaml", &fleet_yaml(&units, &a)).unwrap();
    assert_eq!(
        fleet.instances[0].rewrap_status(),
        RewrapStatus::NotRewrapped
    );
    // A rewrap in progress, read from the file: in progress until the clock passes its end.
    let running =
        format!("rewrap_in_progress: {{ from: \"{a}\", to: \"{b}\", completes_at_ms: 5 }}");
    let mut fleet = Fleet::parse("f.yaml", &fleet_text(&units, &a, &[&running])).unwrap();
    assert_eq!(fleet.instances[0].rewrap_status(), RewrapStatus::InProgress);
    hsm::complete_rewraps(&mut fleet, 5);
    assert_eq!(fleet.instances[0].rewrap_status(), RewrapStatus::Rewrapped);
}

mod operation_log;
mod simulator;
