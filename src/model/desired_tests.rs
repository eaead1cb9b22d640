//! Tests of the desired file: what it reads, and every error with its place and fix.

use super::*;

const VP: &str = "5c1b924542fecd099a9568826bce5018476b3c2a29944c9c7ff6e47f00000000";

fn doc(extra: &str) -> String {
    format!(
        "version: 1\ninstances:\n  - id: 5b2e6f7a-0c1d-4e8f-9a3b-2c4d6e8f0a1b\n    crypto_units: all\n    signature_threshold: 2\n    revocation_threshold: 2\n    administrators: [alice, bob]\n    master_key:\n      verification_pattern: \"{VP}\"\n{extra}"
    )
}

fn parse(text: &str) -> Result<DesiredState, InputError> {
    parse_desired("d.yaml", text, Path::new("plans"))
}

#[test]
fn reads_a_valid_file_and_resolves_key_parts() {
    let desired = parse(&doc(
        "      key_parts:\n        - file: k/1.json\n          password_env: P1\n        - file: k/2.json\n",
    ))
    .unwrap();
    let instance = &desired.instances[0];
    assert_eq!(instance.administrators, ["alice", "bob"]);
    let KeyPartSource::File { file, .. } = &instance.master_key.key_parts[0] else {
        panic!("a file key part");
    };
    assert_eq!(file, Path::new("plans/k/1.json"));
}

#[test]
fn smart_card_key_parts_are_read_and_checked() {
    let cards = "      key_parts:\n        - smart_card: { holder: dana, reader: \"Key part reader\" }\n        - smart_card: { holder: eli, reader: \"Key part reader\" }\n";
    let desired = parse(&doc(cards)).unwrap();
    assert!(
        desired.instances[0]
            .master_key
            .key_parts
            .iter()
            .all(KeyPartSource::is_smart_card)
    );
    for (extra, message) in [
        (
            "      key_parts:\n        - smart_card: { holder: dana, reader: r }\n        - file: k/2.json\n",
            "mixed",
        ),
        (
            "      key_parts:\n        - smart_card: { holder: dana, reader: r }\n          password_env: P\n        - smart_card: { holder: eli, reader: r }\n",
            "password_env given for a key part on a smart card",
        ),
        (
            "      key_parts:\n        - password_env: P\n        - smart_card: { holder: eli, reader: r }\n",
            "exactly one of file: and smart_card:",
        ),
        (
            "      key_parts:\n        - smart_card: { holder: dana, reader: r }\n        - smart_card: { holder: Dana, reader: r }\n",
            "holds two key parts",
        ),
    ] {
        let error = parse(&doc(extra)).unwrap_err();
        assert!(error.message.contains(message), "{error}");
        assert!(error.position.is_some() && error.fix.is_some(), "{error}");
    }
}

#[test]
fn unknown_key_names_line_and_column() {
    let error = parse(&doc("      colour: blue\n")).unwrap_err();
    assert_eq!(error.position, Some((10, 7)), "{error}");
    assert!(error.message.contains("colour"), "{error}");
}

#[test]
fn wrong_vp_length_names_line() {
    let error = parse(&doc("").replace(VP, "abcd")).unwrap_err();
    assert_eq!(error.position.map(|p| p.0), Some(9), "{error}");
    assert!(error.message.contains("64 hex"), "{error}");
}

#[test]
fn thresholds_admins_and_selection_are_checked() {
    let cases = [
        ("signature_threshold: 2", "signature_threshold: 9", "1 to 8"),
        (
            "crypto_units: all",
            "crypto_units: some",
            "crypto_units: all",
        ),
        ("[alice, bob]", "[alice]", "at least as many"),
        ("[alice, bob]", "[alice, alice]", "listed twice"),
        (
            "[alice, bob]",
            "[alice, abcdefghijabcdefghijabcdefghijk]",
            "1 to 30",
        ),
    ];
    for (from, to, needle) in cases {
        let error = parse(&doc("").replace(from, to)).unwrap_err();
        assert!(error.to_string().contains(needle), "{from}->{to}: {error}");
        assert!(error.position.is_some());
    }
}

#[test]
fn key_part_count_and_env_name() {
    let one = parse(&doc("      key_parts:\n        - file: a.json\n")).unwrap_err();
    assert!(one.to_string().contains("2 or 3"), "{one}");
    let env = parse(&doc(
        "      key_parts:\n        - file: a.json\n          password_env: \"hunter 2\"\n        - file: b.json\n",
    ))
    .unwrap_err();
    assert!(env.to_string().contains("environment variable"), "{env}");
}

#[test]
fn names_and_paths_with_control_characters_are_refused_and_values_are_cut() {
    for (from, to) in [
        ("[alice, bob]", "[alice, \"b\\e[2Jo\\nb\"]"),
        ("[alice, bob]", "[alice, \"b\\u202eob\"]"),
    ] {
        let error = parse(&doc("").replace(from, to)).unwrap_err();
        assert!(error.message.contains("control character"), "{error}");
        assert!(!error.to_string().contains('\u{1b}'), "{error}");
    }
    let big = "A".repeat(1 << 20);
    let error = parse(&doc("").replace("id: 5b2e", &format!("id: {big}5b2e"))).unwrap_err();
    assert!(
        error.to_string().len() < 1000,
        "{} bytes",
        error.to_string().len()
    );
    let not_desired = parse("password: hunter2\n").unwrap_err().to_string();
    assert!(
        not_desired.contains("is not a desired key-state file"),
        "{not_desired}"
    );
    assert!(!not_desired.contains("hunter2"), "{not_desired}");
}

/// Regression: the YAML parser's default budget (250,000 nodes) refused desired files
/// far below `INSTANCES_MAX` instances.
#[test]
fn reads_a_desired_file_of_instances_max_instances() {
    let mut text = String::from("version: 1\ninstances:\n");
    for n in 0..INSTANCES_MAX {
        text.push_str(&format!(
            "  - id: 5b2e6f7a-0c1d-4e8f-9a3b-{n:012x}\n    crypto_units: all\n    signature_threshold: 2\n    revocation_threshold: 2\n    administrators: [alice, bob]\n    master_key:\n      verification_pattern: \"{VP}\"\n      key_parts:\n        - file: a.json\n        - file: b.json\n"
        ));
    }
    assert_eq!(parse(&text).unwrap().instances.len(), INSTANCES_MAX);
}

/// Found by fuzzing (`fuzz/fuzz_targets/desired_yaml.rs`): a wrong line whose key follows a
/// character of several bytes (here a byte order mark) panicked while the message named the
/// key (`parser_words::last_key` cut inside the character), instead of reporting the line.
#[test]
fn a_key_after_a_byte_order_mark_is_reported_not_a_panic() {
    let text = "# Rstera\ninstances:\n  - [d: 2-672raef0at# Rrst,ereader:tnstances: \"Key part reader\" \n  :-id tnstances:\nevreer:tnstances: \"Key part reader\" \n  :-id tnstances:\nev` rcation_thresho\u{feff}che: \"Kin";
    let error = parse(text).unwrap_err();
    assert_eq!(error.file, "d.yaml");
}
