//! The loss rule (zcrypt.md §6): a store's key is recoverable only while some register of
//! its APQNs (NEW, CURRENT, or for CCA OLD) holds the MK that the key, or its staged copy, is
//! enciphered under. After every action each newly lost key is recorded in the world, with
//! what destroyed it, in the same write as the effect, and shown in `DIR/incidents` (JSON
//! lines); conditions that are outages or risks rather than losses (a group with mixed
//! registers) go to `DIR/warnings`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::world::{Mk, World};

pub const INCIDENTS_FILE: &str = "incidents";
pub const WARNINGS_FILE: &str = "warnings";

/// One lost key, or one warning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    /// `zkey`, `luks2`, `opencryptoki`.
    pub store: String,
    /// The key's name, device or `slot N TYPE`.
    pub key: String,
    /// The MK (VP) of each copy that was lost.
    pub mk: Vec<String>,
    /// The action that destroyed it (or raised the warning).
    pub action: String,
    pub description: String,
}

/// One copy-holding item of a store: all the MKs its copies are under, and its APQNs.
struct Item {
    id: String,
    store: &'static str,
    key: String,
    mk: Mk,
    copies: Vec<String>,
    apqns: Vec<String>,
}

fn items(world: &World) -> Vec<Item> {
    let mut items = Vec::new();
    let apqns_of = |apqns: &[String], mk: Mk| {
        if apqns.is_empty() {
            world.apqns_of(mk)
        } else {
            apqns.to_vec()
        }
    };
    for key in &world.keys {
        let mk = key.key_type.mk();
        let mut copies = vec![key.skey.clone()];
        copies.extend(key.renc.clone());
        items.push(Item {
            id: format!("zkey/{}", key.name),
            store: "zkey",
            key: key.name.clone(),
            mk,
            copies,
            apqns: apqns_of(&key.apqns, mk),
        });
    }
    for header in &world.luks2 {
        let Some(key) = world.keys.iter().find(|k| k.name == header.key_name) else {
            continue;
        };
        let mk = key.key_type.mk();
        let mut copies = vec![header.active.clone()];
        copies.extend(header.staged.clone());
        items.push(Item {
            id: format!("luks2/{}", header.device),
            store: "luks2",
            key: header.device.clone(),
            mk,
            copies,
            apqns: apqns_of(&key.apqns, mk),
        });
    }
    for app in &world.applications {
        let mut copies = vec![app.mkvp.clone()];
        copies.extend(app.staged.clone());
        items.push(Item {
            id: format!("application/{}", app.name),
            store: "application",
            key: app.name.clone(),
            mk: app.mk,
            copies,
            apqns: app.apqns.clone(),
        });
    }
    for token in &world.tokens {
        for (mk, vp) in &token.objects {
            let mut copies = vec![vp.clone()];
            copies.extend(token.staged.get(mk).cloned());
            items.push(Item {
                id: format!("opencryptoki/{}/{}", token.slot, mk.name()),
                store: "opencryptoki",
                key: format!("slot {} {}", token.slot, mk.name()),
                mk: *mk,
                copies,
                apqns: token.apqns.clone(),
            });
        }
    }
    items
}

fn recoverable(world: &World, item: &Item, vp: &str) -> bool {
    item.apqns.iter().any(|apqn| {
        world
            .registers(apqn, item.mk)
            .is_some_and(|regs| regs.holds(item.mk, vp))
    })
}

/// Applies the loss rule after `action`: records each newly lost key in the world (so it is
/// recorded once) and returns the incidents to append.
pub fn newly_lost(world: &mut World, action: &str) -> Vec<Incident> {
    let mut found = Vec::new();
    for item in items(world) {
        if world.lost.contains(&item.id) {
            continue;
        }
        if item.copies.iter().any(|vp| recoverable(world, &item, vp)) {
            continue;
        }
        found.push((item.id.clone(), Incident {
            store: item.store.into(),
            key: item.key.clone(),
            mk: item.copies.clone(),
            action: action.into(),
            description: format!(
                "no register of {} holds the {} master key of any copy of this key any more: the key is lost",
                item.apqns.join(","),
                item.mk.name()
            ),
        }));
    }
    // An open pkcshsm_mk_change operation whose re-enciphered copies lost their NEW MK can
    // neither be finalized nor recover those copies (zcrypt.md §6, "clearing or replacing NEW
    // … after pkcshsm_mk_change reencipher without cancel").
    for token in &world.tokens {
        for (mk, vp) in &token.staged {
            let id = format!("opencryptoki/{}/{}/staged/{vp}", token.slot, mk.name());
            if world.lost.contains(&id) {
                continue;
            }
            let item = Item {
                id: id.clone(),
                store: "opencryptoki",
                key: format!("slot {} {} (re-enciphered copies)", token.slot, mk.name()),
                mk: *mk,
                copies: vec![vp.clone()],
                apqns: token.apqns.clone(),
            };
            if !recoverable(world, &item, vp) {
                found.push((id, Incident {
                    store: item.store.into(),
                    key: item.key.clone(),
                    mk: item.copies.clone(),
                    action: action.into(),
                    description: "the NEW master key of an open pkcshsm_mk_change operation was cleared or replaced before the operation was canceled: its re-enciphered key objects are lost".into(),
                }));
            }
        }
    }
    let mut incidents = Vec::new();
    for (id, incident) in found {
        world.lost.insert(id);
        incidents.push(incident);
    }
    incidents
}

/// Groups whose APQNs disagree on a register (zcrypt.md §6 "APQNs of one group with different
/// CURRENT or NEW"), as warnings after a store action that leaves them so.
pub fn mixed_groups(
    world: &World,
    action: &str,
    apqn_sets: &[(String, Mk, Vec<String>)],
) -> Vec<Incident> {
    let mut warnings = Vec::new();
    for (key, mk, apqns) in apqn_sets {
        let currents: std::collections::BTreeSet<Option<String>> = apqns
            .iter()
            .filter_map(|a| world.registers(a, *mk))
            .map(|r| r.current.clone())
            .collect();
        let news: std::collections::BTreeSet<Option<String>> = apqns
            .iter()
            .filter_map(|a| world.registers(a, *mk))
            .map(|r| r.new.key().map(str::to_string))
            .collect();
        for (what, count) in [("CURRENT", currents.len()), ("NEW", news.len())] {
            if count > 1 {
                warnings.push(Incident {
                    store: "group".into(),
                    key: key.clone(),
                    mk: Vec::new(),
                    action: action.into(),
                    description: format!(
                        "the APQNs {} hold different {what} {} master keys: keys work on some of them only",
                        apqns.join(","),
                        mk.name()
                    ),
                });
            }
        }
    }
    warnings
}

/// One JSON object a line.
pub fn json_lines(entries: &[Incident]) -> String {
    let mut text = String::new();
    for entry in entries {
        text.push_str(&serde_json::to_string(entry).expect("an incident serializes"));
        text.push('\n');
    }
    text
}

/// The incidents and warnings recorded in the world in `dir`, oldest first (read from the
/// truth; `DIR/incidents` and `DIR/warnings` are views of it).
pub fn recorded(dir: &Path) -> Result<(Vec<Incident>, Vec<Incident>), String> {
    let world = World::load(dir)?;
    Ok((world.incidents, world.warnings))
}
