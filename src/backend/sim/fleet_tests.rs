//! The quick reader (`quick_yaml`) must read every fleet it accepts exactly as the full parser
//! does, give way to the full parser on anything else, and take the fleets the simulator
//! writes; an error keeps its file, line and column either way.

use proptest::prelude::*;

use super::*;
use crate::model::{Administrator, CurrentRegister, Mode, NewRegister, Ski, UnitType};

const EXAMPLE_FLEETS: [&str; 4] = [
    include_str!("../../../examples/fleets/three-units.yaml"),
    include_str!("../../../examples/fleets/interrupted-after-rewrap.yaml"),
    include_str!("../../../examples/fleets/mixed-types.yaml"),
    include_str!("../../../examples/fleets/several-instances.yaml"),
];

/// What the full parser reads, with no check after it.
fn fully(text: &str) -> Option<Fleet> {
    crate::model::from_yaml_str(text).ok()
}

/// The quick reader agrees with the full parser: whatever it reads, the full parser reads
/// the same (compared by the simulator's own writing, which shows every VP digit).
fn assert_agree(text: &str) -> Option<Fleet> {
    let quick = Fleet::parse_quickly(text)?;
    let full = fully(text)
        .unwrap_or_else(|| panic!("the quick reader read what the full parser refuses:\n{text}"));
    assert_eq!(quick.to_yaml(), full.to_yaml(), "{text}");
    assert_eq!(quick, full);
    Some(quick)
}

#[test]
fn the_quick_reader_reads_the_example_fleets_as_the_full_parser_does() {
    for text in EXAMPLE_FLEETS {
        // Two examples have comments after a value, which only the full parser reads.
        assert_agree(text);
        // As the simulator writes them back.
        let written = fully(text).unwrap().to_yaml();
        assert_agree(&written).expect("the quick reader reads what the simulator writes");
    }
}

#[test]
fn a_fleet_the_quick_reader_gives_up_on_still_errs_at_its_line_and_column() {
    let text = fully(EXAMPLE_FLEETS[0]).unwrap().to_yaml();
    let (line, _) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("region:"))
        .unwrap();
    // An unknown key, a value of the wrong type, a duplicate key: each at its place.
    for (broken, column) in [
        (text.replacen("region:", "regoin:", 1), 5),
        (text.replacen("region: us-south", "region: [1]", 1), 13),
        (
            text.replacen(
                "  region: us-south",
                "  region: us-south\n  region: eu-de",
                1,
            ),
            3,
        ),
    ] {
        assert!(Fleet::parse_quickly(&broken).is_none());
        let error = Fleet::parse("fleet.yaml", &broken).unwrap_err();
        let at = error.position.expect("the error has a line and column");
        assert!(
            at.0 == line as u64 + 1 || at.0 == line as u64 + 2,
            "{error} at {at:?}, expected line {}",
            line + 1
        );
        assert!(at.1 >= 1 && at.1 <= column, "{error} at {at:?}");
        assert!(error.to_string().contains("fleet.yaml"), "{error}");
    }
    // A contradiction the checks after the parse find is located as before.
    let lost = EXAMPLE_FLEETS[0].replace(
        "current_register: { status: Valid, verification_pattern: \"c2ad",
        "current_register: { status: Valid, verification_pattern: \"d2ad",
    );
    assert!(Fleet::parse_quickly(&lost).is_some());
    let error = Fleet::parse("fleet.yaml", &lost).unwrap_err();
    assert!(error.position.is_some(), "{error}");
    assert!(error.to_string().contains("no register holds"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Generated fleets, and the same fleets with their text damaged.

/// Text that YAML reads in many ways: words the schemas type, indicators, quotes, escapes,
/// comments, non-ASCII and control characters.
fn tricky_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,12}",
        "[ -~]{0,10}",
        prop::sample::select(vec![
            "",
            "~",
            "null",
            "Null",
            "true",
            "False",
            "yes",
            "No",
            "on",
            "y",
            "0",
            "007",
            "12",
            "1e3",
            "0x1F",
            "0o7",
            ".inf",
            "-1",
            "+1",
            "1_000",
            "1:30",
            "2026-12-01",
            "-",
            "- a",
            "a: b",
            "a:b",
            "a #b",
            "a# b",
            "'a'",
            "\"a\"",
            "a\\b",
            "&a",
            "*a",
            "!a",
            "|",
            ">",
            "{a: b}",
            "[a]",
            "a, b",
            "%a",
            "@a",
            "`a",
            "?a",
            "? a",
            "…",
            "é",
            " a",
            "a ",
            "a  b",
            "\t",
            "a\tb",
            "\u{85}",
            "\u{2028}",
            "\u{feff}a",
            "a\nb",
            "a\rb",
            "<<",
            "---",
            "...",
        ])
        .prop_map(str::to_string),
    ]
}

fn vp_text() -> impl Strategy<Value = VerificationPattern> {
    "[0-9a-fA-F]{64}".prop_map(|hex| VerificationPattern::parse(&hex).unwrap())
}

fn new_register() -> impl Strategy<Value = NewRegister> {
    prop_oneof![
        Just(NewRegister::Empty),
        vp_text().prop_map(NewRegister::FullUncommitted),
        vp_text().prop_map(NewRegister::FullCommitted),
    ]
}

fn current_register() -> impl Strategy<Value = CurrentRegister> {
    prop_oneof![
        Just(CurrentRegister::Empty),
        vp_text().prop_map(CurrentRegister::Valid),
    ]
}

fn unit() -> impl Strategy<Value = CryptoUnit> {
    (
        (tricky_text(), tricky_text(), 0u8..=255, 0u8..=8),
        prop::collection::vec((tricky_text(), "[0-9a-f]{64}"), 0..3),
        (new_register(), current_register(), any::<bool>()),
    )
        .prop_map(
            |((hsm_id, location, s, r), admins, (new, current, admin))| CryptoUnit {
                hsm_id,
                unit_type: UnitType::Operational,
                location,
                mode: if admin { Mode::Admin } else { Mode::Imprint },
                signature_threshold: s,
                revocation_threshold: r,
                administrators: admins
                    .into_iter()
                    .map(|(name, ski)| Administrator {
                        name,
                        ski: Ski::parse(&ski).unwrap(),
                        public_key: None,
                    })
                    .collect(),
                new_register: new,
                current_register: current,
            },
        )
}

fn instance() -> impl Strategy<Value = SimInstance> {
    (
        (tricky_text(), tricky_text(), any::<bool>()),
        (vp_text(), any::<u64>(), 0u64..100, any::<bool>()),
        prop::option::of(vp_text()),
        prop::option::of((vp_text(), vp_text(), any::<u64>())),
        prop::collection::vec(unit(), 0..3),
    )
        .prop_map(
            |((id, region, reports), (vp, keys, ms, unusable), from, running, units)| SimInstance {
                id,
                region,
                key_storage: KeyStorage {
                    verification_pattern: vp,
                    keys,
                    rewrap_ms_per_key: ms,
                    unusable,
                    rewrapped_from: from,
                    rewrap_in_progress: running.map(|(from, to, completes_at_ms)| {
                        RewrapInProgress {
                            from,
                            to,
                            completes_at_ms,
                        }
                    }),
                },
                reports_rotation_status: reports,
                crypto_units: units,
            },
        )
}

fn fleet() -> impl Strategy<Value = Fleet> {
    (
        prop::collection::vec(instance(), 0..3),
        prop::collection::vec(
            (
                tricky_text(),
                prop::option::of(tricky_text()),
                tricky_text(),
                tricky_text(),
            ),
            0..2,
        ),
    )
        .prop_map(|(instances, incidents)| Fleet {
            instances,
            incidents: incidents
                .into_iter()
                .map(|(instance, unit, operation, description)| Incident {
                    instance,
                    unit,
                    operation,
                    description,
                })
                .collect(),
        })
}

/// One damage to a fleet's text: a character put in, taken out, or a line repeated.
fn damage(text: &str, at: usize, what: u8, with: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return with.to_string();
    }
    let at = at % chars.len();
    match what % 3 {
        0 => {
            chars.splice(at..at, with.chars());
        }
        1 => {
            chars.remove(at);
        }
        _ => {
            let start = chars[..at]
                .iter()
                .rposition(|c| *c == '\n')
                .map_or(0, |p| p + 1);
            let end = chars[at..]
                .iter()
                .position(|c| *c == '\n')
                .map_or(chars.len(), |p| at + p + 1);
            let line: Vec<char> = chars[start..end].to_vec();
            chars.splice(end..end, line);
        }
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20261201),
        ..ProptestConfig::default()
    })]

    /// Any fleet the simulator writes reads back the same by both parsers, and the quick
    /// reader takes it unless it holds text only the full parser reads exactly.
    #[test]
    fn a_written_fleet_reads_the_same_by_both_parsers(fleet in fleet()) {
        let text = fleet.to_yaml();
        if let Some(quick) = assert_agree(&text) {
            prop_assert_eq!(quick.to_yaml(), text);
        }
    }

    /// Damaged, the text is read the same by both, or the quick reader gives way.
    #[test]
    fn a_damaged_fleet_is_never_read_differently(
        fleet in fleet(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), tricky_text()), 1..3),
    ) {
        let mut text = fleet.to_yaml();
        for (at, what, with) in &edits {
            text = damage(&text, *at, *what, with);
        }
        assert_agree(&text);
    }
}

/// A fleet of `INSTANCES_MAX` instances of 3 units is about 1.6 million YAML events, which the
/// full parser's default budget (1,000,000 events) refused, and the quick reader gave way to
/// it: a desired file of the largest size could never be planned on the simulator (found by
/// `bench_scale`, which now plans 10,000 instances). The whole fleet takes a minute to parse
/// in a debug build, so this shows it by parts: an instance of 3 units fits in 200 events, and
/// the budget holds `INSTANCES_MAX` of them.
#[test]
fn the_budget_holds_a_fleet_of_the_largest_size() {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 200;
    let one: Fleet = crate::model::from_yaml_str_within(EXAMPLE_FLEETS[0], budget.clone())
        .expect("an instance of 3 units fits in 200 events");
    assert_eq!(one.instances[0].crypto_units.len(), 3);
    let two = EXAMPLE_FLEETS[3];
    assert!(
        crate::model::from_yaml_str_within::<Fleet>(two, budget).is_err(),
        "the small budget refuses a bigger fleet, so it is counting"
    );
    const { assert!(crate::model::YAML_EVENTS_MAX > 200 * crate::model::desired::INSTANCES_MAX) };
}
