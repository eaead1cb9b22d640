//! The ceremony side: what the TKE (EP11 and CCA domain groups) or `panel.exe` (CCA, one card
//! at a time) does to the registers (zcrypt.md §3). No Linux tool does these; an operator or a
//! scripted test runs `mkplan sim zcrypt tke …` in their place.
//!
//! - EP11: load → NEW uncommitted; commit → committed; set (finalize) → CURRENT = NEW, the
//!   previous CURRENT destroyed (there is no OLD); clear → NEW empty.
//! - CCA: load the first or middle part → NEW partial, the last (or a whole key) → full; no
//!   commit; set → OLD = CURRENT (the previous OLD destroyed), CURRENT = NEW, NEW empty.
//!
//! Every APQN named is checked before any is changed: one that cannot take the step refuses
//! the whole action (whether the real TKE stops at the first failure is unknown, zcrypt.md §9).

use super::world::{Mk, NewRegister, Registers};
use super::world_file::vp_of;
use super::{Output, Session};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Action {
    Load,
    Commit,
    Set,
    Clear,
}

/// Which key part a CCA load is (CSNBMKP FIRST, MIDDLE, LAST); none: the whole key at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    First,
    Middle,
    Last,
}

pub struct Request {
    pub action: Action,
    pub apqns: Vec<String>,
    pub mk: Mk,
    pub vp: Option<String>,
    pub part: Option<Part>,
}

/// Runs one ceremony action: `Ok` with the new registers, `Err` with why nothing changed.
pub fn run(dir: &std::path::Path, request: &Request) -> Output {
    let tool = "tke";
    let action_name = format!("{:?}", request.action).to_ascii_lowercase();
    let mut session = match Session::open(dir, &format!("tke {action_name}")) {
        Ok(session) => session,
        Err(message) => return Output::failure(tool, message),
    };
    let vp = match &request.vp {
        Some(vp) => match vp_of(vp, request.mk.vp_hex_len(), "--vp") {
            Ok(vp) => Some(vp),
            Err(message) => return Output::failure(tool, message),
        },
        None => None,
    };
    let mut updates = Vec::new();
    for apqn in &request.apqns {
        let apqn = apqn.to_ascii_lowercase();
        let Some(regs) = session.world.registers(&apqn, request.mk) else {
            return Output::failure(
                tool,
                format!(
                    "APQN {apqn} is not in this world or has no {} master key",
                    request.mk.name()
                ),
            );
        };
        match step(regs, request, vp.as_deref()) {
            Ok(next) => updates.push((apqn, next)),
            Err(why) => {
                return Output::failure(tool, format!("APQN {apqn}: {why}; nothing was changed"));
            }
        }
    }
    let mut output = Output::default();
    for (apqn, next) in &updates {
        let (card, index) = session.world.find_mut(apqn).expect("checked above");
        card.domains[index]
            .registers
            .insert(request.mk, next.clone());
        output.out(format!(
            "{apqn}: {} NEW {}, CURRENT {}{}",
            request.mk.name(),
            describe_new(&next.new),
            next.current.as_deref().unwrap_or("invalid"),
            if request.mk.is_ep11() {
                String::new()
            } else {
                format!(", OLD {}", next.old.as_deref().unwrap_or("invalid"))
            }
        ));
    }
    let action = format!(
        "tke {action_name} {} on {}",
        request.mk.name(),
        updates
            .iter()
            .map(|(a, _)| a.as_str())
            .collect::<Vec<_>>()
            .join(",")
    );
    match session.commit(&action, &[]) {
        Ok(incidents) => {
            for incident in incidents {
                output.err(format!(
                    "INCIDENT: {} key {} lost: {}",
                    incident.store, incident.key, incident.description
                ));
            }
            output
        }
        Err(message) => Output::failure(tool, message),
    }
}

fn describe_new(new: &NewRegister) -> String {
    match new {
        NewRegister::Empty => "empty".into(),
        NewRegister::Partial => "partial".into(),
        NewRegister::Uncommitted(vp) => format!("uncommitted {vp}"),
        NewRegister::Committed(vp) => format!("committed {vp}"),
        NewRegister::Full(vp) => format!("full {vp}"),
    }
}

/// The registers after the step, or why the card refuses it.
fn step(regs: &Registers, request: &Request, vp: Option<&str>) -> Result<Registers, String> {
    let mk = request.mk;
    let mut next = regs.clone();
    let check_vp = |held: &str| match vp {
        Some(vp) if vp != held => Err(format!("the NEW register holds {held}, not the {vp} given")),
        _ => Ok(()),
    };
    match (request.action, mk.is_ep11()) {
        (Action::Load, true) => {
            if request.part.is_some() {
                return Err("EP11 loads all key parts in one request: no --part".into());
            }
            if regs.new != NewRegister::Empty {
                return Err("the NEW register is not empty: clear it first".into());
            }
            let vp = vp.ok_or("load needs --vp, the new master key's verification pattern")?;
            next.new = NewRegister::Uncommitted(vp.into());
        }
        (Action::Commit, true) => match &regs.new {
            NewRegister::Uncommitted(held) => {
                check_vp(held)?;
                next.new = NewRegister::Committed(held.clone());
            }
            other => {
                return Err(format!(
                    "the NEW register is {}, not uncommitted",
                    describe_new(other)
                ));
            }
        },
        (Action::Commit, false) => {
            return Err("CCA has no commit: the last key part makes NEW full".into());
        }
        (Action::Load, false) => {
            next.new = match (request.part, &regs.new) {
                (None, NewRegister::Empty) | (Some(Part::Last), NewRegister::Partial) => {
                    let vp = vp.ok_or(
                        "the last key part needs --vp, the new master key's verification pattern",
                    )?;
                    NewRegister::Full(vp.into())
                }
                (Some(Part::First), NewRegister::Empty) => NewRegister::Partial,
                (Some(Part::Middle), NewRegister::Partial) => NewRegister::Partial,
                (part, other) => {
                    return Err(format!(
                        "a {} key part needs NEW {}, and it is {}",
                        part.map_or("whole".to_string(), |p| format!("{p:?}")
                            .to_ascii_lowercase()),
                        if matches!(part, None | Some(Part::First)) {
                            "empty"
                        } else {
                            "partial"
                        },
                        describe_new(other)
                    ));
                }
            };
        }
        (Action::Set, ep11) => {
            let Some(held) = regs.new.ready() else {
                return Err(format!(
                    "the NEW register is {}, not {}",
                    describe_new(&regs.new),
                    if ep11 { "committed" } else { "full" }
                ));
            };
            check_vp(held)?;
            if !ep11 {
                next.old = regs.current.clone();
            }
            next.current = Some(held.to_string());
            next.new = NewRegister::Empty;
        }
        (Action::Clear, _) => next.new = NewRegister::Empty,
    }
    Ok(next)
}
