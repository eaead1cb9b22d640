//! The simulator must be a faithful adversary: it refuses what the HSM refuses, performs what
//! the HSM performs even when that destroys data, records every loss, persists every change
//! before it answers, and injects the four faults.

use std::path::Path;
use std::process::Command;

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

fn fleet_yaml(units: &[(&str, &str)], storage: &VerificationPattern) -> String {
    let mut yaml = format!(
        "instances:\n  - id: {INSTANCE}\n    region: us-south\n    key_storage: {{ verification_pattern: \"{storage}\", keys: 3000 }}\n    reports_rotation_status: true\n    crypto_units:\n"
    );
    for (n, (new, current)) in units.iter().enumerate() {
        yaml.push_str(&format!(
            "      - {{ hsm_id: {}, type: operational, location: \"[us-south].[AZ1-CS1].[01].[0{n}]\", mode: admin, signature_threshold: 1, revocation_threshold: 1, administrators: [], new_register: {new}, current_register: {current} }}\n",
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

fn op_unit(n: usize, make: fn(String, String) -> SimOperation) -> SimOperation {
    make(INSTANCE.into(), unit_id(n))
}

fn set_immediate(n: usize) -> SimOperation {
    op_unit(n, |instance, unit| SimOperation::SetImmediate {
        instance,
        unit,
        verification_pattern: key(0xB),
        signers: Vec::new(),
    })
}

fn rewrap() -> SimOperation {
    SimOperation::RewrapKeyStorage {
        instance: INSTANCE.into(),
    }
}

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
        hsm::perform(
            &mut fleet,
            &op_unit(n, |instance, unit| SimOperation::ClearNewMk {
                instance,
                unit,
            }),
        )
        .unwrap();
    }
    assert_eq!(fleet.incidents.len(), 1, "{:?}", fleet.incidents);
    assert_eq!(fleet.incidents[0].operation, "clear_new_mk");
    assert!(fleet.instances[0].key_storage.unusable);
}

#[test]
fn refuses_what_the_hsm_refuses() {
    let (a, b) = (key(0xA), key(0xB));
    let empty = ("{ status: Empty }".to_string(), reg("Valid", &a));
    let units = vec![(empty.0.as_str(), empty.1.as_str()); 2];
    let mut fleet = Fleet::parse("f.yaml", &fleet_yaml(&units, &a)).unwrap();
    let commit = |vp: &VerificationPattern| SimOperation::CommitNewMk {
        instance: INSTANCE.into(),
        unit: unit_id(1),
        verification_pattern: vp.clone(),
        signers: Vec::new(),
    };
    assert!(
        hsm::perform(&mut fleet, &commit(&b))
            .unwrap_err()
            .0
            .contains("Empty")
    );
    assert!(
        hsm::perform(&mut fleet, &rewrap())
            .unwrap_err()
            .0
            .contains("rewrap refused")
    );
    assert!(
        hsm::perform(&mut fleet, &set_immediate(1))
            .unwrap_err()
            .0
            .contains("not Full Committed")
    );
    let load = SimOperation::LoadNewMk {
        instance: INSTANCE.into(),
        unit: unit_id(1),
        verification_pattern: b.clone(),
    };
    hsm::perform(&mut fleet, &load).unwrap();
    assert!(
        hsm::perform(&mut fleet, &load)
            .unwrap_err()
            .0
            .contains("clear it before loading")
    );
    assert!(
        hsm::perform(&mut fleet, &commit(&key(0xC)))
            .unwrap_err()
            .0
            .contains("does not match")
    );
    fleet.instances[0].crypto_units[1].mode = Mode::Imprint;
    let clear = op_unit(2, |instance, unit| SimOperation::ClearNewMk {
        instance,
        unit,
    });
    assert!(
        hsm::perform(&mut fleet, &clear)
            .unwrap_err()
            .0
            .contains("imprint")
    );
    assert!(fleet.incidents.is_empty());
    assert_eq!(
        fleet.instances[0].crypto_units[0].new_register,
        NewRegister::FullUncommitted(b)
    );
}

fn simulator_on(folder: &Path, fleet: &Fleet, faults: &str) -> Simulator {
    let path = folder.join("fleet.yaml");
    std::fs::write(&path, fleet.to_yaml()).unwrap();
    Simulator::open(&path, Faults::parse(faults).unwrap()).unwrap()
}

#[test]
fn every_operation_is_persisted_before_it_returns() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator_on(folder.path(), &committed(), "");
    block_on(simulator.perform(&rewrap())).unwrap();
    let reread = Fleet::parse("f", &std::fs::read_to_string(simulator.path()).unwrap()).unwrap();
    assert_eq!(
        reread.instances[0].key_storage.verification_pattern,
        key(0xB)
    );
    assert_eq!(
        reread.instances[0].key_storage.rewrapped_from,
        Some(key(0xA))
    );
    // The fleet round-trips through YAML exactly.
    assert_eq!(Fleet::parse("f", &reread.to_yaml()).unwrap(), reread);
}

#[test]
fn fail_op_has_no_effect_and_lose_response_op_has_its_effect() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator_on(folder.path(), &committed(), "fail_op=1,lose_response_op=2");
    let failed = block_on(simulator.perform(&rewrap())).unwrap_err();
    assert!(matches!(failed, BackendError::Transient(_)), "{failed}");
    assert_eq!(
        simulator.read().unwrap().instances[0]
            .key_storage
            .verification_pattern,
        key(0xA)
    );
    let lost = block_on(simulator.perform(&rewrap())).unwrap_err();
    assert!(matches!(lost, BackendError::Transient(_)), "{lost}");
    assert_eq!(
        simulator.read().unwrap().instances[0]
            .key_storage
            .verification_pattern,
        key(0xB)
    );
    // Operation 3 has no fault.
    block_on(simulator.perform(&set_immediate(1))).unwrap();
}

#[test]
fn latency_ms_delays_every_operation() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator_on(folder.path(), &committed(), "latency_ms=30");
    let started = std::time::Instant::now();
    block_on(simulator.perform(&rewrap())).unwrap();
    block_on(simulator.perform(&set_immediate(1))).unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(60));
}

/// The crash fault aborts the process, so it runs in a child: this same test binary,
/// re-entered with an environment variable that makes the test below act as the child.
#[test]
fn crash_after_op_persists_the_operation_then_aborts() {
    if let Ok(folder) = std::env::var("MKPLAN_TEST_CRASH_CHILD") {
        let simulator = Simulator::open(
            &Path::new(&folder).join("fleet.yaml"),
            Faults::parse("crash_after_op=2").unwrap(),
        )
        .unwrap();
        block_on(simulator.perform(&rewrap())).unwrap();
        let _ = block_on(simulator.perform(&set_immediate(1)));
        unreachable!("crash_after_op=2 must abort during the second operation");
    }
    let folder = tempfile::tempdir().unwrap();
    simulator_on(folder.path(), &committed(), "");
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "backend::sim::tests::crash_after_op_persists_the_operation_then_aborts",
            "--nocapture",
        ])
        .env("MKPLAN_TEST_CRASH_CHILD", folder.path())
        .status()
        .unwrap();
    #[cfg(unix)]
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(6),
        "{status:?}"
    );
    let fleet = Fleet::parse(
        "f",
        &std::fs::read_to_string(folder.path().join("fleet.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        fleet.instances[0].crypto_units[0].current_register,
        CurrentRegister::Valid(key(0xB)),
        "operation 2 took effect"
    );
    assert_eq!(
        fleet.instances[0].crypto_units[1].new_register,
        NewRegister::FullCommitted(key(0xB)),
        "nothing after it"
    );
    assert!(fleet.incidents.is_empty());
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
        .block_on(future)
}
