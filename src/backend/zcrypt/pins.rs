//! The openCryptoki USER PINs, read from the sources the group file names
//! (`model::domain_group_pins`) when an apply needs them (and by `validate` and `plan`, with
//! the same rule, to find a source that cannot be read before `apply` does), and given to `pkcshsm_mk_change`
//! on its stdin, one line per prompt, as the real tool reads them (OCK `pin_prompt`: a line
//! of stdin, cut at the first CR or LF; no option or variable takes a PIN). A PIN is held
//! in a buffer that is zeroed when dropped, has no `Debug` or `Display`, and never reaches an
//! argument, the journal, a plan, a log line or an error message: those name the slot and
//! its source only.

use std::collections::BTreeMap;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::model::domain_group_desired::DesiredGroup;
use crate::model::domain_group_inventory::Inventory;
use crate::model::domain_group_pins::PinSource;

/// Bytes of a PIN file read at most (a PKCS #11 PIN is far shorter).
const PIN_FILE_BYTES_MAX: u64 = 4096;

/// The prompt `pkcshsm_mk_change` writes before it reads a slot's PIN (`login_tokens`).
pub const USER_PIN_PROMPT: &str = "Enter the USER PIN for slot ";

/// One slot's USER PIN.
pub struct UserPin(Zeroizing<String>);

impl UserPin {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The PINs of an apply, by slot.
#[derive(Default)]
pub struct UserPins(BTreeMap<u64, UserPin>);

impl std::fmt::Debug for UserPins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserPins(slots {:?})", self.0.keys().collect::<Vec<_>>())
    }
}

/// Two sets of PINs are alike when they are for the same slots (the PINs are not compared).
impl PartialEq for UserPins {
    fn eq(&self, other: &Self) -> bool {
        self.0.keys().eq(other.0.keys())
    }
}

impl Eq for UserPins {}

impl UserPins {
    /// The one rule for the PIN sources, used by `validate`, `plan` and `apply` alike: every
    /// source the group names is read (a missing, unreadable or empty file, a variable not
    /// set or empty, is a problem naming the slot, the source and the entry's line), and
    /// every slot in `affected` (a token on the group's APQNs, which `pkcshsm_mk_change` will
    /// ask about) must have one. All problems are reported at once; no PIN is in any.
    pub fn read(
        desired: &DesiredGroup,
        affected: &[AffectedSlot],
    ) -> Result<Arc<Self>, PinSourceErrors> {
        let sources = &desired.user_pins;
        let mut problems = Vec::new();
        if sources.is_empty() {
            let slots = affected
                .iter()
                .map(|a| a.slot.to_string())
                .collect::<Vec<_>>();
            let which = match slots.is_empty() {
                true => String::new(),
                false => format!(
                    " (the tokens of slot(s) {} use the group's APQNs)",
                    slots.join(", ")
                ),
            };
            problems.push(PinSourceProblem {
                slot: None,
                at: None,
                what: format!("the group declares `opencryptoki: tokens`, and pkcshsm_mk_change asks for the USER PIN of every token it re-enciphers or finalizes, but the group file names no PIN source{which}"),
                fix: "add `opencryptoki_user_pins:` with `- {slot: N, file: PATH}` or `- {slot: N, env: NAME}` for each token's slot (never the PIN itself)".into(),
            });
        }
        for token in affected {
            if sources.get(token.slot).is_none() && !sources.is_empty() {
                let slot = token.slot;
                problems.push(PinSourceProblem {
                    slot: Some(slot),
                    at: None,
                    what: format!("slot {slot}'s token ({}) uses the group's APQNs, so pkcshsm_mk_change will ask for its USER PIN, and the group file names no source for slot {slot}", token.config),
                    fix: format!("add `- {{slot: {slot}, file: PATH}}` or `- {{slot: {slot}, env: NAME}}` under opencryptoki_user_pins:"),
                });
            }
        }
        let mut pins = BTreeMap::new();
        for (slot, placed) in &sources.slots {
            match read_one(*slot, &placed.source, placed.bare) {
                Ok(pin) => {
                    pins.insert(*slot, pin);
                }
                Err((what, fix)) => problems.push(PinSourceProblem {
                    slot: Some(*slot),
                    at: Some((placed.line, placed.column)),
                    what,
                    fix,
                }),
            }
        }
        problems.sort_by_key(|p| p.slot);
        match problems.is_empty() {
            true => Ok(Arc::new(Self(pins))),
            false => Err(PinSourceErrors {
                file: sources.file.clone(),
                problems,
            }),
        }
    }

    pub fn get(&self, slot: u64) -> Option<&UserPin> {
        self.0.get(&slot)
    }
}

/// `validate`: [`UserPins::read`] with no slot known to be affected (it reads no machine), the
/// PINs read dropped (and zeroed) at once.
pub fn check_sources(
    desired: &DesiredGroup,
    affected: &[AffectedSlot],
) -> Result<(), PinSourceErrors> {
    UserPins::read(desired, affected).map(drop)
}

/// A slot whose token uses the group's APQNs: `pkcshsm_mk_change` asks for its USER PIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AffectedSlot {
    pub slot: u64,
    /// The token's config, as the plan shows it.
    pub config: String,
}

/// The slots of the tokens on the group's APQNs that `opencryptoki.conf` numbers (a config
/// found by its file name has no slot: the prompt for it is checked when the tool asks).
pub fn affected_slots(desired: &DesiredGroup, inventory: &Inventory) -> Vec<AffectedSlot> {
    let mut slots: Vec<AffectedSlot> = inventory
        .tokens
        .iter()
        .filter(|t| t.depends_on(&desired.apqns, desired.mode))
        .filter_map(|t| {
            t.slot.map(|slot| AffectedSlot {
                slot,
                config: t.config.clone(),
            })
        })
        .collect();
    slots.sort_by_key(|a| a.slot);
    slots.dedup_by_key(|a| a.slot);
    slots
}

/// One reason a slot's USER PIN cannot be given, at the entry of the group file that names
/// its source when there is one, with the fix.
#[derive(Debug)]
struct PinSourceProblem {
    slot: Option<u64>,
    at: Option<(u64, u64)>,
    what: String,
    fix: String,
}

/// Every reason the group's USER PINs cannot be given to `pkcshsm_mk_change`.
#[derive(Debug)]
pub struct PinSourceErrors {
    file: String,
    problems: Vec<PinSourceProblem>,
}

impl std::fmt::Display for PinSourceErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { file, problems } = self;
        write!(
            f,
            "pkcshsm_mk_change cannot be given the openCryptoki USER PINs of {file}:"
        )?;
        for problem in problems {
            match problem.at {
                Some((line, column)) => write!(f, "\n  {file}:{line}:{column}: ")?,
                None => write!(f, "\n  {file}: ")?,
            }
            write!(f, "{}\n    fix: {}", problem.what, problem.fix)?;
        }
        Ok(())
    }
}

/// A slot's PIN, or what is wrong with its source and how to fix it (never the PIN, nor
/// anything of the file's content; nor a `bare` file name that names no file, which may be
/// the PIN written where its file's path belongs).
fn read_one(slot: u64, source: &PinSource, bare: bool) -> Result<UserPin, (String, String)> {
    let what = |why: String| format!("the USER PIN of slot {slot}: {source} {why}");
    let text = match source {
        PinSource::File(path) => {
            let bytes = crate::bounded_read::read(path, PIN_FILE_BYTES_MAX)
                .map(Zeroizing::new)
                .map_err(|e| {
                    let why = match e.kind() {
                        std::io::ErrorKind::NotFound if bare => format!(
                            "the USER PIN of slot {slot}: the file its `file:` names does not exist ({e}); its value is not shown, in case it is not a path but the PIN (a path names its folder: `./slot{slot}.pin`, `/etc/mkplan/slot{slot}.pin`)"
                        ),
                        _ => what(format!("cannot be read: {e}")),
                    };
                    (why, file_fix(&e))
                })?;
            Zeroizing::new(String::from_utf8_lossy(&bytes).into_owned())
        }
        PinSource::Env(name) => Zeroizing::new(std::env::var(name).map_err(|e| {
            let why = match e {
                std::env::VarError::NotPresent => "is not set",
                std::env::VarError::NotUnicode(_) => "is not UTF-8",
            };
            (
                what(why.into()),
                format!("set {name} to the token's USER PIN in the environment that runs mkplan (pkcshsm_mk_change gets it on its stdin), or name a file instead (`file: PATH`)"),
            )
        })?),
    };
    // As `pin_prompt` reads it: up to the first CR or LF.
    let line = text.split(['\r', '\n']).next().unwrap_or_default();
    if line.is_empty() {
        return Err((
            what("holds an empty PIN (pkcshsm_mk_change would ask again)".into()),
            match source {
                PinSource::File(_) => "write the token's USER PIN on the file's first line".into(),
                PinSource::Env(name) => format!("set {name} to the token's USER PIN"),
            },
        ));
    }
    Ok(UserPin(Zeroizing::new(line.to_string())))
}

fn file_fix(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "create it with the token's USER PIN on its first line, readable by the user who runs mkplan only, or correct the path (a relative path starts at the group file's folder)".into(),
        std::io::ErrorKind::PermissionDenied => "make it readable by the user who runs mkplan (and by no one else)".into(),
        _ => "name a regular file whose first line is the token's USER PIN".into(),
    }
}

/// What to write when a tool prompts with the text it has printed so far: the slot a USER
/// PIN prompt names, if its last line is one.
pub fn prompted_slot(printed: &str) -> Option<u64> {
    let last = printed.rsplit('\n').next()?;
    last.strip_prefix(USER_PIN_PROMPT)?
        .strip_suffix(": ")?
        .parse()
        .ok()
}
