//! What an openCryptoki token config tells mkplan: the APQNs the token uses and the keys it
//! pins, read as openCryptoki's tokens read them (commit 9915205e93a6).
//!
//! - EP11 (usr/lib/ep11_stdll/ep11_specific.c, `ep11_config_parse`): `APQN_ALLOWLIST` (or
//!   `APQN_WHITELIST`) … `END`, pairs of card and domain, or `APQN_ANY`; `EXPECTED_WKVP
//!   "0x…"`. The numbers are the configuration library's (usr/lib/config/cfglex.l): decimal
//!   `0|[1-9][0-9]*` or hex `0x…`, so `0006` is the four numbers 0, 0, 0, 6, and a pair
//!   never spans a line (cfgparse.y `numpairlist`); a card or domain above 255 is refused
//!   (`ep11_config_add_apqn`).
//! - CCA (usr/lib/cca_stdll/cca_specific.c, `cca_config_parse`): `EXPECTED_MKVPS { SYM AES
//!   APKA }`, `PKEY_MODE`, `AES_KEY_MODE`, `ML_DSA_KEY_MODE`, `FORCE_SENSITIVE`, and nothing
//!   else. The CCA token has no allow list: its APQNs come from the CCA library
//!   (`CSU_DEFAULT_ADAPTER` / `CSU_DEFAULT_DOMAIN`, DEV-ANY / DOM-ANY), which mkplan cannot
//!   see, so it is taken to use every CCA APQN of the machine. An `APQN_ALLOWLIST` in a CCA
//!   config is not believed: the token would refuse to load the file (unexpected token).

use std::collections::BTreeMap;

use crate::model::domain_group::{Apqn, GroupMode};
use crate::model::domain_group_inventory::FoundToken;
use crate::model::registers::MkType;

/// A token found by its config `config` (a path the operator can open), with what the
/// operator should know about the file (`notes`), or why its APQNs are not known.
pub fn found_token(
    config: String,
    mode: GroupMode,
    slot: Option<u64>,
    text: &str,
    notes: &mut Vec<String>,
) -> Result<FoundToken, String> {
    let listed = allow_list(text).map_err(|(line, why)| {
        format!("{config}:{line}: {why}: openCryptoki's EP11 token cannot load this config, so its APQNs are not known; correct the APQN_ALLOWLIST")
    });
    let apqns = match mode {
        GroupMode::Ep11 => {
            let listed = listed?;
            if let Some(list) = &listed
                && let Some(word) = list.zero_padded.first()
            {
                notes.push(format!(
                    "openCryptoki: {config} writes {} in its APQN_ALLOWLIST, which openCryptoki reads as {} numbers (a leading 0 is a number of its own); mkplan reads the list as the token does: {}. Write the numbers without leading zeros (3 6, or 0x3 0x6).",
                    crate::quote::quote(word),
                    word.len(),
                    list.apqns.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ));
            }
            listed.map(|l| l.apqns)
        }
        GroupMode::Cca => {
            if !matches!(listed, Ok(None)) {
                notes.push(format!(
                    "openCryptoki: {config} has an APQN_ALLOWLIST, which openCryptoki's CCA token does not have (it refuses to load such a config: unexpected token); its APQNs come from the CCA library (CSU_DEFAULT_ADAPTER, CSU_DEFAULT_DOMAIN), so mkplan counts this token on every CCA APQN. Remove the list from the file."
                ));
            }
            None
        }
    };
    Ok(FoundToken {
        config,
        mode,
        slot,
        apqns,
        pins: parse_token_pins(text),
    })
}

/// An allow list as openCryptoki reads it, and the words of it with a leading zero.
#[derive(Debug, PartialEq, Eq)]
pub struct AllowList {
    pub apqns: Vec<Apqn>,
    pub zero_padded: Vec<String>,
}

/// A config's `APQN_ALLOWLIST` (or `APQN_WHITELIST`) … `END` blocks, read as openCryptoki
/// reads them (`read_adapter_config_file`: every block adds its APQNs to the token's list, so
/// a second block is as much the token's as the first; round 12z, F1). `None`: no list
/// (`APQN_ANY`, or nothing: then mkplan takes every APQN of the mode). A config openCryptoki
/// would refuse is the line and the reason: a list it cannot read, lists that name no APQN at
/// all, or a list beside `APQN_ANY` ("Only one APQN mode can be present").
pub fn allow_list(text: &str) -> Result<Option<AllowList>, (usize, String)> {
    let lines: Vec<(usize, Vec<&str>)> = text
        .lines()
        .enumerate()
        .map(|(at, l)| {
            let words = l.split('#').next().unwrap_or("").split_whitespace();
            (at + 1, words.collect())
        })
        .collect();
    let mut list = AllowList {
        apqns: Vec::new(),
        zero_padded: Vec::new(),
    };
    // The line of the first block, and of the first APQN_ANY.
    let (mut first_block, mut any) = (None, None);
    // The line of the block being read, if one is open.
    let mut open: Option<usize> = None;
    for (line, words) in &lines {
        if open.is_none() {
            match words.first() {
                Some(&word) if word == "APQN_ALLOWLIST" || word == "APQN_WHITELIST" => {
                    if words.len() > 1 {
                        return Err((*line, format!("{word} must end its line")));
                    }
                    open = Some(*line);
                    first_block.get_or_insert(*line);
                }
                _ => {
                    if words.contains(&"APQN_ANY") {
                        any.get_or_insert(*line);
                    }
                }
            }
            continue;
        }
        let end = words.iter().position(|w| *w == "END");
        let mut numbers = Vec::new();
        for word in &words[..end.unwrap_or(words.len())] {
            numbers.extend(numbers_of(word).map_err(|why| (*line, why))?);
            if word.len() > 1 && word.starts_with('0') && !word.starts_with("0x") {
                list.zero_padded.push((*word).to_string());
            }
        }
        if numbers.len() % 2 == 1 {
            return Err((
                *line,
                format!(
                    "{} numbers on the line, not pairs of card and domain ({})",
                    numbers.len(),
                    numbers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        for pair in numbers.chunks(2) {
            let (Ok(card), Ok(domain)) = (u8::try_from(pair[0]), u8::try_from(pair[1])) else {
                return Err((
                    *line,
                    format!(
                        "card {} domain {}: each must be 255 at most",
                        pair[0], pair[1]
                    ),
                ));
            };
            list.apqns.push(Apqn {
                card,
                domain: domain.into(),
            });
        }
        if end.is_some() {
            open = None;
        }
    }
    if let Some(start) = open {
        return Err((start, "the APQN_ALLOWLIST has no END".into()));
    }
    let Some(first_block) = first_block else {
        return Ok(None);
    };
    if let Some(any) = any {
        return Err((
            any.max(first_block),
            format!(
                "APQN_ANY (line {any}) beside an APQN_ALLOWLIST (line {first_block}): openCryptoki takes only one of them (\"Only one APQN mode can be present\")"
            ),
        ));
    }
    if list.apqns.is_empty() {
        return Err((first_block, "the APQN_ALLOWLIST names no APQN".into()));
    }
    Ok(Some(list))
}

/// The numbers openCryptoki's lexer reads in `word`: `0`, `[1-9][0-9]*` or `0x[0-9a-fA-F]+`,
/// one after the other (`0006` is 0, 0, 0, 6); anything else is no number.
fn numbers_of(word: &str) -> Result<Vec<u64>, String> {
    let mut numbers = Vec::new();
    let mut rest = word;
    while !rest.is_empty() {
        let hex = rest
            .strip_prefix("0x")
            .map(|h| h.len() - h.trim_start_matches(|c: char| c.is_ascii_hexdigit()).len())
            .filter(|digits| *digits > 0);
        let (value, used) = if let Some(digits) = hex {
            (
                u64::from_str_radix(&rest[2..2 + digits], 16).ok(),
                2 + digits,
            )
        } else if rest.starts_with('0') {
            (Some(0), 1)
        } else {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            (rest[..digits].parse().ok(), digits)
        };
        match value {
            Some(n) if used > 0 && !rest[used..].starts_with('.') => numbers.push(n),
            _ => {
                return Err(format!(
                    "{} is not a pair of numbers openCryptoki reads (decimal, or hex with 0x)",
                    crate::quote::quote(word)
                ));
            }
        }
        rest = &rest[used..];
    }
    Ok(numbers)
}

/// A token config's pins (OCK ep11_specific.c, cca_specific.c `cca_config_parse_exp_mkvps`):
/// EP11 `EXPECTED_WKVP "0x…"`; CCA `EXPECTED_MKVPS { SYM = "0x…" AES = "0x…" APKA = "0x…" }`
/// (no ASYM: the CCA token pins none). Values as written, lower-cased, quotes and `0x` off;
/// whether each is a verification pattern of its type is for the reader to judge.
pub fn parse_token_pins(text: &str) -> BTreeMap<MkType, String> {
    let spaced: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
        .replace('{', " { ")
        .replace('}', " } ")
        .replace('=', " = ");
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let value = |w: &str| {
        let w = w.trim_matches('"').to_ascii_lowercase();
        w.strip_prefix("0x").unwrap_or(&w).to_string()
    };
    let mut pins = BTreeMap::new();
    let mut in_mkvps = false;
    let mut at = 0;
    while at < words.len() {
        let word = words[at];
        if word.eq_ignore_ascii_case("EXPECTED_WKVP") && !in_mkvps {
            // `EXPECTED_WKVP "0x…"`, or openCryptoki's `key = value` form.
            let skip = usize::from(words.get(at + 1) == Some(&"="));
            if let Some(vp) = words.get(at + 1 + skip) {
                pins.insert(MkType::Wk, value(vp));
                at += 1 + skip;
            }
        } else if word.eq_ignore_ascii_case("EXPECTED_MKVPS") {
            in_mkvps = true;
        } else if word == "}" {
            in_mkvps = false;
        } else if in_mkvps
            && words.get(at + 1) == Some(&"=")
            && let Some(mk_type) = ["SYM", "AES", "APKA"]
                .into_iter()
                .find(|t| word.eq_ignore_ascii_case(t))
                .and_then(MkType::parse)
            && let Some(vp) = words.get(at + 2)
        {
            pins.insert(mk_type, value(vp));
            at += 2;
        }
        at += 1;
    }
    pins
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> Vec<String> {
        allow_list(text)
            .unwrap()
            .unwrap()
            .apqns
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn an_allow_list_is_read_as_the_opencryptoki_lexer_reads_it() {
        assert_eq!(
            shown("APQN_ALLOWLIST\n  10 6\n 0x0a 0x6 # hex\nEND\n"),
            ["0a.0006", "0a.0006"]
        );
        assert_eq!(
            shown("APQN_ALLOWLIST\n 3 6 4 6\n5 6 END\n"),
            ["03.0006", "04.0006", "05.0006"]
        );
        // A leading zero is a number of its own: `03 06` is 0, 3, 0, 6.
        let padded = allow_list("APQN_ALLOWLIST\n  03 06\nEND\n")
            .unwrap()
            .unwrap();
        assert_eq!(padded.zero_padded, ["03", "06"]);
        assert_eq!(
            shown("APQN_ALLOWLIST\n  03 06\nEND\n"),
            ["00.0003", "00.0006"]
        );
        assert_eq!(allow_list("EXPECTED_WKVP \"0x1\"\nAPQN_ANY\n"), Ok(None));
        for (text, line, needle) in [
            (
                "APQN_ALLOWLIST\n  10 0006\nEND\n",
                2,
                "5 numbers on the line",
            ),
            (
                "APQN_ALLOWLIST\n  A 6\nEND\n",
                2,
                "\"A\" is not a pair of numbers",
            ),
            ("APQN_ALLOWLIST\n  3 0X6\nEND\n", 2, "\"0X6\" is not"),
            ("APQN_ALLOWLIST\n  3 256\nEND\n", 2, "255 at most"),
            ("APQN_ALLOWLIST\n  3 6\n", 1, "has no END"),
            ("APQN_ALLOWLIST\nEND\n", 1, "names no APQN"),
            (
                "APQN_ALLOWLIST\nEND\nAPQN_WHITELIST\nEND\n",
                1,
                "names no APQN",
            ),
            (
                "APQN_ALLOWLIST\n 3 6\nEND\nAPQN_WHITELIST\n 4 6\n",
                4,
                "has no END",
            ),
            (
                "APQN_ALLOWLIST\n 3 6\nEND\nAPQN_ANY\n",
                4,
                "Only one APQN mode",
            ),
            (
                "APQN_ANY\nAPQN_ALLOWLIST\n 3 6\nEND\n",
                2,
                "APQN_ANY (line 1)",
            ),
        ] {
            let (at, why) = allow_list(text).unwrap_err();
            assert_eq!(at, line, "{text:?}: {why}");
            assert!(why.contains(needle), "{text:?}: {why}");
        }
    }

    /// Round 12z, F1: a second block is as much the token's as the first (openCryptoki's
    /// `read_adapter_config_file` adds every block's APQNs); reading only the first hid a
    /// token on the group's APQNs, and the change lost its objects.
    #[test]
    fn every_allow_list_block_is_the_tokens_as_opencryptoki_adds_them_all() {
        assert_eq!(
            shown("APQN_ALLOWLIST\n  2 6\nEND\nAPQN_ALLOWLIST\n  3 6\n  4 6\nEND\n"),
            ["02.0006", "03.0006", "04.0006"]
        );
        // Either spelling, an empty block beside a full one, and other keys in between.
        assert_eq!(
            shown("APQN_WHITELIST\nEND\nEXPECTED_WKVP \"0x1\"\nAPQN_ALLOWLIST\n 5 6 END\n"),
            ["05.0006"]
        );
    }

    #[test]
    fn a_cca_config_gives_no_apqns_whatever_it_says_and_a_note() {
        let mut notes = Vec::new();
        let text =
            "APQN_ALLOWLIST\n  7 6\nEND\nEXPECTED_MKVPS {\n AES = \"0xc1c1c1c1c1c1c1c1\"\n}\n";
        let token = found_token(
            "ccatok4.conf".into(),
            GroupMode::Cca,
            Some(4),
            text,
            &mut notes,
        )
        .unwrap();
        assert_eq!(token.apqns, None);
        assert_eq!(token.pins[&MkType::Aes], "c1c1c1c1c1c1c1c1");
        assert!(
            notes[0].contains("ccatok4.conf has an APQN_ALLOWLIST"),
            "{notes:?}"
        );
        let ep11 = found_token(
            "ep11tok3.conf".into(),
            GroupMode::Ep11,
            Some(3),
            text,
            &mut notes,
        )
        .unwrap();
        assert_eq!(ep11.apqns.unwrap().len(), 1);
        let bad = "APQN_ALLOWLIST\n  10 0006\nEND\n";
        let why = found_token("e.conf".into(), GroupMode::Ep11, None, bad, &mut notes).unwrap_err();
        assert!(why.starts_with("e.conf:2: 5 numbers"), "{why}");
    }

    #[test]
    fn a_token_configs_pins_are_read_per_type() {
        let ep11 = parse_token_pins("APQN_ALLOWLIST\n 3 6\nEND\nEXPECTED_WKVP \"0xB2B2\" # new\n");
        assert_eq!(ep11, BTreeMap::from([(MkType::Wk, "b2b2".to_string())]));
        // openCryptoki's `key = value` form (adversarial round 11z, F2: read as a pin of "=").
        for text in ["EXPECTED_WKVP = \"0xB2B2\"\n", "EXPECTED_WKVP=\"0xB2B2\"\n"] {
            let ep11 = parse_token_pins(text);
            assert_eq!(
                ep11,
                BTreeMap::from([(MkType::Wk, "b2b2".to_string())]),
                "{text}"
            );
        }
        let cca = parse_token_pins(
            "EXPECTED_MKVPS {\n  SYM = \"0x71\"\n  AES=\"0xc1\"\n  # APKA = \"0xff\"\n}\nAPKA = \"0xd1\"\n",
        );
        assert_eq!(cca.get(&MkType::Aes).map(String::as_str), Some("c1"));
        assert_eq!(cca.get(&MkType::Sym).map(String::as_str), Some("71"));
        assert_eq!(
            cca.get(&MkType::Apka),
            None,
            "outside the block, or commented out"
        );
    }
}
