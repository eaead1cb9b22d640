//! Fleet and desired state generation: the cases the benchmark plans.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    Fresh,
    Mixed,
}

impl Variant {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Mixed => "mixed",
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Stage {
    Fresh,
    PartStaged,
    Committed,
    AfterRewrap,
    Converged,
}

pub(crate) const MIXED_STAGES: [Stage; 5] = [
    Stage::Fresh,
    Stage::PartStaged,
    Stage::Committed,
    Stage::AfterRewrap,
    Stage::Converged,
];

pub(crate) fn vp(hex: &str) -> VerificationPattern {
    VerificationPattern::parse(hex).expect("a valid VP constant")
}

/// Spreads an index over 32 bits (a bijection), so that generated ids differ in their first
/// characters as random GUIDs do, and string comparisons stop as early as on a real fleet.
pub(crate) fn scramble(index: usize) -> u32 {
    (index as u32).wrapping_mul(0x9e37_79b1)
}

pub(crate) fn instance_id(index: usize) -> String {
    format!("{:08x}-0c1d-4e8f-9a3b-{index:012x}", scramble(index))
}

pub(crate) fn hsm_id(index: usize, unit: usize) -> String {
    format!(
        "{:08x}-{:04x}-4000-8000-{index:012x}",
        scramble(index ^ 0x5555_5555),
        unit + 1
    )
}

pub(crate) fn unit_registers(stage: Stage, unit: usize) -> (NewRegister, CurrentRegister) {
    let (a, b, c) = (vp(VP_A), vp(VP_B), vp(VP_C));
    match (stage, unit) {
        (Stage::Fresh, _) => (NewRegister::Empty, CurrentRegister::Valid(a)),
        (Stage::PartStaged, 0) => (NewRegister::FullUncommitted(b), CurrentRegister::Valid(a)),
        (Stage::PartStaged, 1) => (NewRegister::FullUncommitted(c), CurrentRegister::Valid(a)),
        (Stage::PartStaged, _) => (NewRegister::Empty, CurrentRegister::Valid(a)),
        (Stage::Committed, _) => (NewRegister::FullCommitted(b), CurrentRegister::Valid(a)),
        (Stage::AfterRewrap, 0) => (NewRegister::Empty, CurrentRegister::Valid(b)),
        (Stage::AfterRewrap, _) => (NewRegister::FullCommitted(b), CurrentRegister::Valid(a)),
        (Stage::Converged, _) => (NewRegister::Empty, CurrentRegister::Valid(b)),
    }
}

pub(crate) fn build_fleet(n: usize, variant: Variant) -> Fleet {
    let administrators: Vec<Administrator> = ADMINS
        .iter()
        .map(|(name, ski)| Administrator {
            name: (*name).into(),
            ski: Ski::parse(ski).expect("a valid SKI constant"),
            public_key: None,
        })
        .collect();
    let instances = (0..n)
        .map(|index| {
            let stage = match variant {
                Variant::Fresh => Stage::Fresh,
                Variant::Mixed => MIXED_STAGES[index % MIXED_STAGES.len()],
            };
            let storage = match stage {
                Stage::AfterRewrap | Stage::Converged => vp(VP_B),
                _ => vp(VP_A),
            };
            let crypto_units = (0..UNITS)
                .map(|unit| {
                    let (new_register, current_register) = unit_registers(stage, unit);
                    CryptoUnit {
                        hsm_id: hsm_id(index, unit),
                        unit_type: UnitType::Operational,
                        location: format!(
                            "[us-south].[AZ{0}-CS{0}].[{1:02}].[{2:02}]",
                            unit + 1,
                            index % 100,
                            unit + 1
                        ),
                        mode: Mode::Admin,
                        signature_threshold: 2,
                        revocation_threshold: 2,
                        administrators: administrators.clone(),
                        new_register,
                        current_register,
                    }
                })
                .collect();
            SimInstance {
                id: instance_id(index),
                region: "us-south".into(),
                key_storage: KeyStorage {
                    verification_pattern: storage,
                    keys: 3000,
                    rewrap_ms_per_key: 0,
                    unusable: false,
                    // As the simulator records it between the rewrap and the last set immediate.
                    rewrapped_from: matches!(stage, Stage::AfterRewrap).then(|| vp(VP_A)),
                    rewrap_in_progress: None,
                },
                reports_rotation_status: true,
                crypto_units,
            }
        })
        .collect();
    Fleet {
        instances,
        incidents: Vec::new(),
    }
}

/// The desired file's text: every instance to B, from two key part files.
pub(crate) fn desired_yaml(n: usize, fleet_file: &str) -> String {
    let mut text = format!("version: 1\nbackend: sim:{fleet_file}\ninstances:\n");
    for index in 0..n {
        let _ = write!(
            text,
            "  - id: {}\n    crypto_units: all\n    signature_threshold: 2\n    revocation_threshold: 2\n    administrators: [alice, bob]\n    master_key:\n      verification_pattern: \"{VP_B}\"\n      key_parts:\n        - file: {}\n          password_env: MKPLAN_PART1_PASSWORD\n        - file: {}\n          password_env: MKPLAN_PART2_PASSWORD\n",
            instance_id(index),
            KEY_PART_FILES[0],
            KEY_PART_FILES[1],
        );
    }
    text
}

/// A key part file that `plan` accepts (format, algorithms, KDF cost, lengths) but that no
/// password opens: the ciphertext is not a sealed key.
pub(crate) fn dummy_key_part(seed: u8) -> String {
    let file = KeyPartFile {
        format: keypart::FILE_FORMAT.into(),
        version: keypart::FILE_VERSION,
        verification_pattern: VerificationPattern::from_bytes(&[seed; 32]),
        kdf: Kdf {
            algorithm: "argon2id".into(),
            memory_kib: keypart::KDF_MEMORY_KIB,
            iterations: keypart::KDF_ITERATIONS,
            parallelism: keypart::KDF_PARALLELISM,
            salt: hex::encode([seed; keypart::SALT_LEN]),
        },
        cipher: Cipher {
            algorithm: "xchacha20poly1305".into(),
            nonce: hex::encode([seed; keypart::NONCE_LEN]),
        },
        ciphertext: hex::encode([seed; keypart::KEY_LEN + 16]),
    };
    serde_json::to_string_pretty(&file).expect("a key part file serializes")
}

/// One fleet size and variant, written to its own folder: `fleet.yaml`, `desired.yaml` and
/// the two key part files.
pub(crate) struct Case {
    pub(crate) n: usize,
    pub(crate) folder: PathBuf,
    pub(crate) desired_path: PathBuf,
    pub(crate) fleet_path: PathBuf,
    pub(crate) fleet_bytes: usize,
    pub(crate) desired_bytes: usize,
}

pub(crate) fn write_case(root: &Path, n: usize, variant: Variant) -> Case {
    let folder = root.join(format!("{}-{n}", variant.name()));
    fs::create_dir_all(folder.join("keyparts")).expect("create the case folder");
    for (seed, file) in KEY_PART_FILES.iter().enumerate() {
        fs::write(folder.join(file), dummy_key_part(seed as u8 + 1))
            .expect("write a key part file");
    }
    let fleet_text = build_fleet(n, variant).to_yaml();
    let desired_text = desired_yaml(n, "fleet.yaml");
    let fleet_path = folder.join("fleet.yaml");
    let desired_path = folder.join("desired.yaml");
    fs::write(&fleet_path, &fleet_text).expect("write the fleet file");
    fs::write(&desired_path, &desired_text).expect("write the desired file");
    Case {
        n,
        folder,
        desired_path,
        fleet_path,
        fleet_bytes: fleet_text.len(),
        desired_bytes: desired_text.len(),
    }
}
