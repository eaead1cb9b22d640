use std::path::Path;

use super::*;

const EP11: &str = "domain_group: payroll
version: 1
backend: zcrypt:/
apqns: [03.0006, 04.0006]
master_keys:
  - type: WK
    verification_pattern: \"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"
zkey_repository: zkey
stores:
  - zkey_keys: associated
  - luks2_volume: { device: /dev/dasdb1, key_file: keys/dasdb1.key }
  - opencryptoki: tokens
";

fn parse(text: &str) -> Result<DesiredGroup, InputError> {
    parse_domain_group("g.yaml", text, Path::new("plans"))
}

#[test]
fn an_ep11_group_reads_with_relative_paths_under_its_folder() {
    assert!(is_domain_group(EP11));
    let group = parse(EP11).unwrap();
    assert_eq!(group.mode, GroupMode::Ep11);
    assert_eq!(group.apqns.len(), 2);
    assert_eq!(group.procedure, Procedure::ReencipherThenSet);
    assert_eq!(group.zkey_repository, Path::new("plans/zkey"));
    assert_eq!(group.master_keys[&MkType::Wk].as_str().len(), 32);
    assert_eq!(
        group.stores[1],
        DesiredStore::Luks2Volume {
            device: "/dev/dasdb1".into(),
            key_file: "plans/keys/dasdb1.key".into()
        }
    );
}

#[test]
fn an_unknown_key_is_an_error_at_its_line_and_column() {
    let text = EP11.replace("zkey_repository: zkey", "zkey_repo: zkey");
    let error = parse(&text).unwrap_err();
    assert_eq!(error.position.map(|p| p.0), Some(8), "{error:?}");
    assert!(error.message.contains("zkey_repo"), "{error:?}");
}

#[test]
fn wrong_lengths_mixed_modes_and_ep11_from_old_are_refused_where_written() {
    let short = EP11.replace(&"b".repeat(64), &"b".repeat(20));
    let error = parse(&short).unwrap_err();
    assert_eq!(error.position.map(|p| p.0), Some(7), "{error:?}");
    assert!(error.message.contains("32 or 64 hex"), "{error:?}");
    let mixed = EP11.replace(
        "zkey_repository",
        "  - type: AES\n    verification_pattern: \"1111111111111111\"\nzkey_repository",
    );
    assert!(parse(&mixed).unwrap_err().message.contains("one group"));
    let from_old = EP11.replace("version: 1", "version: 1\nprocedure: set_then_from_old");
    assert!(
        parse(&from_old)
            .unwrap_err()
            .message
            .contains("EP11 has none")
    );
    let twice = EP11.replace("[03.0006, 04.0006]", "[03.0006, 3.6]");
    assert!(parse(&twice).unwrap_err().message.contains("twice"));
}

#[test]
fn a_cca_group_names_its_types_and_procedure() {
    let text = "domain_group: ledger
version: 1
apqns: [05.0010]
procedure: set_then_from_old
master_keys:
  - { type: AES, verification_pattern: \"0x2222222222222222\" }
  - { type: APKA, verification_pattern: \"3333333333333333\" }
stores:
  - zkey_key: ledger-db
  - application: { name: vault, type: APKA, check: [vault-mk, check], stage: [vault-mk, stage], complete: [vault-mk, complete] }
";
    let group = parse(text).unwrap();
    assert_eq!(group.mode, GroupMode::Cca);
    assert_eq!(group.procedure, Procedure::SetThenFromOld);
    assert_eq!(group.master_keys.len(), 2);
    assert_eq!(group.zkey_repository, Path::new(ZKEY_REPOSITORY_DEFAULT));
    let sym = text.replace("type: APKA, verification", "type: SYM, verification");
    assert!(parse(&sym).unwrap_err().fix.unwrap().contains("SYM"));
}

#[test]
fn a_selector_reads_in_place_of_a_list_and_its_mistakes_are_placed() {
    let text = EP11.replace("[03.0006, 04.0006]", "{ domain: \"0006\" }");
    let group = parse(&text).unwrap();
    assert!(group.apqns.is_empty());
    assert_eq!(group.selector.as_ref().unwrap().domain, 6);
    let cards = EP11.replace(
        "[03.0006, 04.0006]",
        "\n  domain: \"000a\"\n  cards: [\"03\", \"0b\"]",
    );
    let group = parse(&cards).unwrap();
    assert_eq!(group.selector.unwrap().cards, Some(vec![3, 0x0b]));
    for (wrong, line, column, needle) in [
        ("{ domain: 6 }", 4, 18, "\"6\" is not a domain"),
        (
            "{ domain: \"0006\", cards: [3] }",
            4,
            34,
            "\"3\" is not a card",
        ),
        ("{ domian: \"0006\" }", 4, 10, "domian"),
        ("{ domain: \"0006\", cards: [] }", 4, 33, "1 to 256 cards"),
        (
            "{ domain: \"0006\", cards: [\"03\", \"03\"] }",
            4,
            40,
            "listed twice",
        ),
    ] {
        let error = parse(&EP11.replace("[03.0006, 04.0006]", wrong)).unwrap_err();
        assert!(error.message.contains(needle), "{wrong}: {error:?}");
        assert_eq!(error.position, Some((line, column)), "{wrong}: {error:?}");
    }
}
