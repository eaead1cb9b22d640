//! `pkcshsm_mk_change list`, read in the layout openCryptoki prints it
//! (usr/sbin/pkcshsm_mk_change/pkcshsm_mk_change.c `perform_list_cb`, commit 9915205e93a6),
//! one block per open operation, a blank line between blocks:
//!
//! ```text
//! Operation:       6d7d3e
//!     State:       Key objects have been re-enciphered,
//!                  new master key(s) can now be set/activated
//!     APQNs:
//!         03.0006
//!     New master key verification patterns:
//!         Type:    EP11
//!         MKVP:    B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2
//!     Affected slots:
//!         Slot: 3 Label: payroll
//!             Current master key verification patterns:
//!                 Type:    EP11
//!                 MKVP:    A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1
//! ```
//!
//! APQNs `%02X.%04X`; types `EP11`, `CCA SYM`, `CCA ASYM`, `CCA AES`, `CCA APKA`; an MKVP
//! as many bytes as the type has in openCryptoki (EP11 16, CCA 8, ASYM too), upper-case
//! hex; `Label:` only for a token that is present. A line that is none of these is an
//! error: mkplan reads the tool's output whole or refuses.

use std::collections::BTreeMap;

use crate::model::domain_group::Apqn;
use crate::model::domain_group_inventory::FoundOperation;
use crate::model::registers::{MkType, Mkvp};

/// One open `pkcshsm_mk_change` operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OckOperation {
    pub id: String,
    pub state: String,
    pub apqns: Vec<Apqn>,
    /// The new keys of the types tokens use (EP11 WK; CCA SYM, AES, APKA).
    pub new: BTreeMap<MkType, Mkvp>,
    /// A `CCA ASYM` line's MKVP (8 bytes, lower-case): no token uses it, so it moves none.
    pub new_asym: Option<String>,
    /// The slots whose tokens it re-enciphered; `None` when the listing shows no section.
    pub slots: Option<Vec<u64>>,
    /// Per affected slot, the MKVPs its `Current master key verification patterns:` show
    /// (lower-case), when openCryptoki recorded them.
    pub current: BTreeMap<u64, Vec<(String, String)>>,
}

impl OckOperation {
    /// Whether every key object has its copy under the new keys: "Key objects have been
    /// re-enciphered…", and the states a finalize or cancel passes through or stops in
    /// ("Finalizing", "Canceling", "Finalizing or canceling has errored"), which
    /// `pkcshsm_mk_change` accepts only after the re-encipherment.
    pub fn reenciphered(&self) -> bool {
        [
            "Key objects have been re-enciphered",
            "Finalizing",
            "Canceling",
        ]
        .iter()
        .any(|s| self.state.starts_with(s))
    }

    /// The operation in the model's words.
    pub fn found(self) -> FoundOperation {
        let closable = [
            "Key objects have been re-enciphered",
            "Finalizing or canceling has errored",
        ]
        .iter()
        .any(|s| self.state.starts_with(s));
        FoundOperation {
            reenciphered: self.reenciphered(),
            stuck: (!closable).then(|| self.state.clone()),
            id: self.id,
            apqns: self.apqns,
            new: self.new,
            slots: self.slots,
        }
    }
}

/// Where in an operation's block a line is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    State,
    Apqns,
    NewMkvps,
    Slots,
    SlotMkvps,
}

/// `perform_list_cb`'s type words.
fn type_of(word: &str) -> Option<&'static str> {
    ["EP11", "CCA SYM", "CCA ASYM", "CCA AES", "CCA APKA"]
        .into_iter()
        .find(|t| *t == word)
}

/// The MKVP of a `type_word` line: 16 bytes for EP11, 8 for every CCA type.
fn mkvp_of(type_word: &str, hex: &str) -> Option<String> {
    let len = if type_word == "EP11" { 32 } else { 16 };
    (hex.len() == len && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

pub fn parse_ock_list(stdout: &str) -> Result<Vec<OckOperation>, String> {
    let mut operations: Vec<OckOperation> = Vec::new();
    let mut section = None;
    let mut pending_type: Option<&'static str> = None;
    for line in stdout.lines() {
        let unknown = || {
            format!(
                "pkcshsm_mk_change list: unknown line {}",
                crate::quote::quote(line)
            )
        };
        let field = |indent: usize, label: &str| {
            let rest = line.strip_prefix(&" ".repeat(indent))?;
            (!rest.starts_with(' ')).then_some(())?;
            rest.strip_prefix(label)?.strip_prefix(':').map(str::trim)
        };
        if line.trim().is_empty() {
            section = None;
            continue;
        }
        if let Some(id) = field(0, "Operation") {
            if id.is_empty() || pending_type.is_some() {
                return Err(unknown());
            }
            operations.push(OckOperation {
                id: id.to_string(),
                state: String::new(),
                apqns: Vec::new(),
                new: BTreeMap::new(),
                new_asym: None,
                slots: None,
                current: BTreeMap::new(),
            });
            section = None;
            continue;
        }
        let Some(op) = operations.last_mut() else {
            return Err(unknown());
        };
        // Each section's lines, then the next section's heading.
        let (type_indent, mkvp_indent) = match section {
            Some(Section::SlotMkvps) => (16, 16),
            _ => (8, 8),
        };
        if let Some(word) = field(type_indent, "Type")
            && matches!(section, Some(Section::NewMkvps | Section::SlotMkvps))
            && pending_type.is_none()
        {
            pending_type = Some(type_of(word).ok_or_else(unknown)?);
            continue;
        }
        if let Some(hex) = field(mkvp_indent, "MKVP")
            && let Some(type_word) = pending_type.take()
        {
            let vp = mkvp_of(type_word, hex).ok_or_else(|| {
                format!(
                    "pkcshsm_mk_change list: {} is not a {type_word} MKVP of openCryptoki's length",
                    crate::quote::quote(line)
                )
            })?;
            if section == Some(Section::SlotMkvps) {
                let slot = op.slots.as_ref().and_then(|s| s.last()).copied();
                let slot = slot.ok_or_else(unknown)?;
                op.current
                    .entry(slot)
                    .or_default()
                    .push((type_word.to_string(), vp));
            } else if type_word == "CCA ASYM" {
                op.new_asym = Some(vp);
            } else {
                let mk_type = match type_word {
                    "EP11" => MkType::Wk,
                    "CCA SYM" => MkType::Sym,
                    "CCA AES" => MkType::Aes,
                    _ => MkType::Apka,
                };
                op.new.insert(mk_type, Mkvp::parse(mk_type, &vp)?);
            }
            continue;
        }
        if pending_type.is_some() {
            return Err(unknown());
        }
        if let Some(state) = field(4, "State") {
            op.state = state.to_string();
            section = Some(Section::State);
        } else if section == Some(Section::State)
            && let Some(more) = line.strip_prefix(&" ".repeat(17))
            && !more.starts_with(' ')
        {
            op.state = format!("{} {}", op.state, more.trim_end());
        } else if field(4, "APQNs") == Some("") {
            section = Some(Section::Apqns);
        } else if section == Some(Section::Apqns)
            && let Some(apqn) = line.strip_prefix("        ")
            && !apqn.starts_with(' ')
        {
            op.apqns
                .push(apqn.trim_end().parse().map_err(|_| unknown())?);
        } else if field(4, "New master key verification patterns") == Some("") {
            section = Some(Section::NewMkvps);
        } else if field(4, "Affected slots") == Some("") {
            op.slots = Some(Vec::new());
            section = Some(Section::Slots);
        } else if let Some(rest) = field(8, "Slot")
            && matches!(section, Some(Section::Slots | Section::SlotMkvps))
        {
            let number = rest.split(' ').next().unwrap_or("");
            let after = rest[number.len()..].trim_start();
            let slot = number.parse::<u64>().map_err(|_| unknown())?;
            if !(after.is_empty() || after.starts_with("Label:")) {
                return Err(unknown());
            }
            op.slots.get_or_insert_with(Vec::new).push(slot);
            section = Some(Section::Slots);
        } else if field(12, "Current master key verification patterns") == Some("")
            && section == Some(Section::Slots)
        {
            section = Some(Section::SlotMkvps);
        } else {
            return Err(unknown());
        }
    }
    if pending_type.is_some() {
        return Err("pkcshsm_mk_change list: a `Type:` line without its `MKVP:` line".into());
    }
    Ok(operations)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two operations as `perform_list_cb`'s printf calls print them: an EP11 one with its
    /// state on two lines and a token whose current MKVPs openCryptoki recorded, and a CCA
    /// one with every CCA type and a slot whose token is not present (no label).
    const REAL: &str = "Operation:       6d7d3e
    State:       Key objects have been re-enciphered,
                 new master key(s) can now be set/activated
    APQNs:
        03.0006
        04.0006
    New master key verification patterns:
        Type:    EP11
        MKVP:    B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2
    Affected slots:
        Slot: 3 Label: payroll                         
            Current master key verification patterns:
                Type:    EP11
                MKVP:    A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1
        Slot: 7 Label: archive: one

Operation:       0a1b2c
    State:       Finalizing or canceling has errored
    APQNs:
        05.0006
        0A.00E0
    New master key verification patterns:
        Type:    CCA SYM
        MKVP:    7272727272727272
        Type:    CCA ASYM
        MKVP:    3232323232323232
        Type:    CCA AES
        MKVP:    E5E5E5E5E5E5E5E5
        Type:    CCA APKA
        MKVP:    F6F6F6F6F6F6F6F6
    Affected slots:
        Slot: 4
";

    #[test]
    fn the_real_layout_is_read_whole() {
        let ops = parse_ock_list(REAL).unwrap();
        assert_eq!(ops.len(), 2);
        let ep11 = &ops[0];
        assert_eq!(ep11.id, "6d7d3e");
        assert_eq!(
            ep11.state,
            "Key objects have been re-enciphered, new master key(s) can now be set/activated"
        );
        assert!(ep11.reenciphered());
        assert_eq!(ep11.apqns.len(), 2);
        assert_eq!(ep11.new[&MkType::Wk].as_str(), "b2".repeat(16));
        assert_eq!(ep11.slots, Some(vec![3, 7]));
        assert_eq!(ep11.current[&3], [("EP11".to_string(), "a1".repeat(16))]);
        let cca = &ops[1];
        assert!(cca.reenciphered(), "errored counts as re-enciphered");
        assert_eq!(cca.apqns[1].to_string(), "0a.00e0");
        assert_eq!(
            cca.new.keys().copied().collect::<Vec<_>>(),
            [MkType::Sym, MkType::Aes, MkType::Apka]
        );
        assert_eq!(cca.new[&MkType::Aes].as_str(), "e5".repeat(8));
        assert_eq!(cca.new_asym.as_deref(), Some("3232323232323232"));
        assert_eq!(cca.slots, Some(vec![4]));
        assert!(parse_ock_list("").unwrap().is_empty());
        let ongoing = REAL.replace(
            "Key objects have been re-enciphered,\n                 new master key(s) can now be set/activated",
            "Re-enciphering of key objects ongoing",
        );
        assert!(!parse_ock_list(&ongoing).unwrap()[0].reenciphered());
        // Only a re-enciphered or errored operation can be closed.
        let found = |text: &str| parse_ock_list(text).unwrap().remove(0).found().stuck;
        assert_eq!(found(REAL), None);
        assert_eq!(
            parse_ock_list(REAL).unwrap().remove(1).found().stuck,
            None,
            "errored"
        );
        assert_eq!(
            found(&ongoing).as_deref(),
            Some("Re-enciphering of key objects ongoing")
        );
        let none = REAL.replace("    Affected slots:\n        Slot: 4\n", "");
        assert_eq!(parse_ock_list(&none).unwrap()[1].slots, None);
    }

    #[test]
    fn a_line_of_another_layout_is_an_error() {
        for (from, to) in [
            // mkplan's old guess at the layout.
            (
                "    APQNs:\n        03.0006\n        04.0006\n",
                "  APQNs: 03.0006 04.0006\n",
            ),
            (
                "        Type:    EP11\n        MKVP:    B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2B2\n",
                "  New EP11 WKVP: b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2\n",
            ),
            ("        Slot: 4\n", "        Slot: x\n"),
            ("        Type:    CCA AES\n", "        Type:    CCA DES\n"),
            (
                "        MKVP:    E5E5E5E5E5E5E5E5\n",
                "        MKVP:    E5E5\n",
            ),
            ("        MKVP:    E5E5E5E5E5E5E5E5\n", ""),
            ("        0A.00E0\n", "        0A.00E0 more\n"),
            ("    Affected slots:\n", "    Affected slots: 4\n"),
        ] {
            assert!(REAL.contains(from), "{from}");
            let changed = REAL.replace(from, to);
            assert!(parse_ock_list(&changed).is_err(), "{changed}");
        }
        assert!(parse_ock_list("Warning: something\n").is_err());
    }
}
