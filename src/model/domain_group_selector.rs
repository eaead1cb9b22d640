//! Which APQNs a domain group is: listed (`apqns: [03.0006, 04.0006]`) or chosen by a
//! selector (`apqns: { domain: "0006" }`) that the backend resolves against the live sysfs at
//! every plan and apply (docs/zcrypt.md, "Choosing the APQNs with a selector").
//!
//! A selector matches on what a card *is*, never on how it is doing: every card that has a
//! queue of the domain is selected whether it is online, configured, check-stopped or
//! answering, because a group that silently lost an offline card would be set without it and
//! leave it holding keys under another master key. The pre-checks then refuse the card by
//! name (`apqns_online`). Only a card known to run another mode (a CCA coprocessor for an EP11
//! group, an accelerator) is passed over: it cannot hold the group's keys. A card whose type
//! mkplan cannot tell is selected, and refused (`apqns_present`). With `cards:` the listed
//! cards are taken whatever they are, as an explicit list is. The resolution is shown in the
//! plan, and the journal binds a change to it (`apqns_unchanged`). Pure: the backend reads
//! the cards.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde_saphyr::Spanned;

use super::InputError;
use super::domain_group::{Apqn, GroupMode};
use super::domain_group_desired::{ErrorAt, GROUP_APQNS_MAX, at};

/// A selector: the usage domain, and the cards to look at (`None`: every card of the
/// group's mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApqnSelector {
    pub domain: u16,
    pub cards: Option<Vec<u8>>,
}

impl fmt::Display for ApqnSelector {
    /// As the group file writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{ domain: \"{:04x}\"", self.domain)?;
        if let Some(cards) = &self.cards {
            let cards: Vec<String> = cards.iter().map(|c| format!("\"{c:02x}\"")).collect();
            write!(f, ", cards: [{}]", cards.join(", "))?;
        }
        f.write_str(" }")
    }
}

/// The group's APQNs as the file gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupApqns {
    Listed(Vec<Apqn>),
    Selected(ApqnSelector),
}

/// A card as the backend read it, for the selector: its number, `type`, what it runs as
/// (`None`: not a coprocessor mkplan knows), and the domains it has queues for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenCard {
    pub number: u8,
    pub kind: String,
    pub mode: Option<GroupMode>,
    pub accelerator: bool,
    pub domains: Vec<u16>,
}

/// An APQN of the domain that the selector did not take, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PassedOver {
    pub apqn: Apqn,
    pub why: String,
}

/// What a selector resolved to on the machine: shown in the plan (text and JSON).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApqnSelection {
    /// The selector as written: `{ domain: "0006" }`.
    pub selector: String,
    pub selected: Vec<Apqn>,
    pub passed_over: Vec<PassedOver>,
}

impl ApqnSelection {
    /// One line for people: what was taken and what was not.
    pub fn describe(&self, mode: GroupMode) -> String {
        let mut text = format!(
            "selected by `apqns: {}`: every {mode} card with that domain, online or not",
            self.selector
        );
        if !self.passed_over.is_empty() {
            let passed: Vec<String> = self
                .passed_over
                .iter()
                .map(|p| format!("{} ({})", p.apqn, p.why))
                .collect();
            text.push_str(&format!("; passed over: {}", passed.join(", ")));
        }
        text
    }
}

/// Resolves `selector` over `cards` for a group of `mode`.
pub fn select(selector: &ApqnSelector, mode: GroupMode, cards: &[SeenCard]) -> ApqnSelection {
    let mut selected = Vec::new();
    let mut passed_over = Vec::new();
    match &selector.cards {
        // Listed cards are the operator's word, as an explicit APQN list is: taken whatever
        // they are, and refused by the pre-checks if they are not there or not of the mode.
        Some(listed) => selected.extend(listed.iter().map(|&card| Apqn {
            card,
            domain: selector.domain,
        })),
        None => {
            for card in cards {
                if !card.domains.contains(&selector.domain) {
                    continue;
                }
                let apqn = Apqn {
                    card: card.number,
                    domain: selector.domain,
                };
                match card.mode {
                    Some(other) if other != mode => passed_over.push(PassedOver {
                        apqn,
                        why: format!("{other} coprocessor {}", card.kind),
                    }),
                    None if card.accelerator => passed_over.push(PassedOver {
                        apqn,
                        why: format!("accelerator {}, no master keys", card.kind),
                    }),
                    _ => selected.push(apqn),
                }
            }
        }
    }
    selected.sort();
    selected.dedup();
    ApqnSelection {
        selector: selector.to_string(),
        selected,
        passed_over,
    }
}

/// `apqns:` as written: a list, or a mapping (a selector).
pub(super) enum RawApqns {
    Listed(Vec<Spanned<String>>),
    Selector(RawSelector),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSelector {
    domain: Spanned<String>,
    #[serde(default)]
    cards: Option<Spanned<Vec<Spanned<String>>>>,
}

impl<'de> Deserialize<'de> for RawApqns {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> serde::de::Visitor<'de> for Either {
            type Value = RawApqns;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "the group's APQNs: a list, [03.0006, 04.0006], or a selector, { domain: \"0006\" }",
                )
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<RawApqns, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(RawApqns::Listed)
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawApqns, A::Error> {
                RawSelector::deserialize(MapAccessDeserializer::new(map)).map(RawApqns::Selector)
            }
        }
        deserializer.deserialize_any(Either)
    }
}

/// Hex digits of exactly `len`, as lszcrypt and zkey print them: `domain: 6` or `10` could be
/// read as decimal or hex, so only the printed form is taken.
fn hex_exact(
    word: &Spanned<String>,
    len: usize,
    error: ErrorAt,
    what: &str,
) -> Result<u32, InputError> {
    let value = &word.value;
    if value.len() == len && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(u32::from_str_radix(value, 16).expect("hex digits"));
    }
    Err(error(
        at(word),
        format!(
            "{} is not {what} as lszcrypt prints it: {len} hex digits",
            crate::quote::quote(value)
        ),
        &format!(
            "write it with {len} hex digits and quotes, as in {}",
            if len == 4 {
                "domain: \"0006\""
            } else {
                "cards: [\"03\", \"04\"]"
            }
        ),
    ))
}

pub(super) fn parse_apqns(
    raw: &Spanned<RawApqns>,
    error: ErrorAt,
) -> Result<GroupApqns, InputError> {
    match &raw.value {
        RawApqns::Listed(words) => parse_listed(raw, words, error).map(GroupApqns::Listed),
        RawApqns::Selector(selector) => {
            let domain = hex_exact(&selector.domain, 4, error, "a domain")?;
            let domain = u16::try_from(domain).expect("four hex digits");
            let cards = match &selector.cards {
                None => None,
                Some(list) => {
                    if list.value.is_empty() || list.value.len() > GROUP_APQNS_MAX {
                        return Err(error(
                            at(list),
                            format!(
                                "a selector names 1 to {GROUP_APQNS_MAX} cards, found {}",
                                list.value.len()
                            ),
                            "list the cards, as in cards: [\"03\", \"04\"], or leave cards: out for every card of the group's mode",
                        ));
                    }
                    let mut seen = BTreeSet::new();
                    for word in &list.value {
                        let card = hex_exact(word, 2, error, "a card")?;
                        if !seen.insert(u8::try_from(card).expect("two hex digits")) {
                            return Err(error(
                                at(word),
                                format!("card {card:02x} is listed twice"),
                                "list each card once",
                            ));
                        }
                    }
                    Some(seen.into_iter().collect())
                }
            };
            Ok(GroupApqns::Selected(ApqnSelector { domain, cards }))
        }
    }
}

fn parse_listed<T>(
    raw: &Spanned<T>,
    words: &[Spanned<String>],
    error: ErrorAt,
) -> Result<Vec<Apqn>, InputError> {
    if words.is_empty() || words.len() > GROUP_APQNS_MAX {
        return Err(error(
            at(raw),
            format!(
                "a group names 1 to {GROUP_APQNS_MAX} APQNs, found {}",
                words.len()
            ),
            "list the group's APQNs, e.g. apqns: [03.0006, 04.0006], or select them: apqns: { domain: \"0006\" }",
        ));
    }
    let mut seen = BTreeSet::new();
    let mut apqns = Vec::new();
    for word in words {
        let apqn: Apqn = word.value.parse().map_err(|why: String| {
            error(at(word), why, "write card.domain in hex, as in 03.0006")
        })?;
        if !seen.insert(apqn) {
            return Err(error(
                at(word),
                format!("APQN {apqn} is listed twice"),
                "list each APQN once",
            ));
        }
        apqns.push(apqn);
    }
    apqns.sort();
    Ok(apqns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(number: u8, kind: &str, mode: Option<GroupMode>, domains: &[u16]) -> SeenCard {
        SeenCard {
            number,
            kind: kind.into(),
            mode,
            accelerator: kind.ends_with('A'),
            domains: domains.to_vec(),
        }
    }

    #[test]
    fn a_selector_takes_every_card_of_the_mode_with_the_domain_and_shows_the_others() {
        let cards = [
            card(3, "CEX8P", Some(GroupMode::Ep11), &[6]),
            card(4, "CEX8P", Some(GroupMode::Ep11), &[6, 7]),
            card(5, "CEX7C", Some(GroupMode::Cca), &[6]),
            card(6, "CEX7A", None, &[6]),
            card(7, "CEX9X", None, &[6]),
            card(8, "CEX8P", Some(GroupMode::Ep11), &[7]),
        ];
        let selector = ApqnSelector {
            domain: 6,
            cards: None,
        };
        let selection = select(&selector, GroupMode::Ep11, &cards);
        let shown: Vec<String> = selection.selected.iter().map(ToString::to_string).collect();
        // The unknown type is taken, to be refused by name; never silently dropped.
        assert_eq!(shown, ["03.0006", "04.0006", "07.0006"]);
        assert_eq!(selection.passed_over.len(), 2);
        assert!(selection.describe(GroupMode::Ep11).contains(
            "passed over: 05.0006 (CCA coprocessor CEX7C), 06.0006 (accelerator CEX7A, no master keys)"
        ));
        let listed = ApqnSelector {
            domain: 6,
            cards: Some(vec![5, 9]),
        };
        let selection = select(&listed, GroupMode::Ep11, &cards);
        assert_eq!(selection.selected.len(), 2);
        assert!(selection.passed_over.is_empty());
        assert_eq!(
            listed.to_string(),
            "{ domain: \"0006\", cards: [\"05\", \"09\"] }"
        );
    }
}
