//! The fake `pkcshsm_mk_change` (openCryptoki, zcrypt.md §4.3): `reencipher` re-enciphers the
//! key objects of every token on the given APQNs under the NEW master key and opens an
//! operation; `finalize` makes those copies the tokens' objects once the MK is set and the
//! token configs pin the new VP (or pin none); `cancel` drops them while every APQN still has
//! the key the objects were under (as openCryptoki, which saved it at `reencipher`: so never
//! once an APQN is set); `list` shows
//! the open operations. The tokens' configs, `DIR/opencryptoki/ep11tok<SLOT>.conf` and
//! `ccatok<SLOT>.conf` (or the `confname` the world file gives, which `opencryptoki.conf`
//! names), are the operator's: `finalize` reads their `EXPECTED_*` pins, as openCryptoki
//! does, and an EP11 token's where `OCK_EP11_TOKEN_DIR` moves it, as the real token does. `reencipher`, `finalize` and `cancel` log in to each affected slot first with a USER
//! PIN read from stdin, as the real tool does (`ock_login`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};

use super::world::{Mk, Operation, OperationState, Registers, Token, TokenKind, World, same_mk};
use super::world_file::vp_of;
use super::{Output, Session, parse_args};
use crate::backend::zcrypt::inventory::ep11_token_dir;
use crate::backend::zcrypt::ock_conf::{EP11_TOKEN_DIR_VARIABLE, ep11_config_candidates};

/// The tokens' config folder under the world folder.
pub const OCK_DIR: &str = "opencryptoki";
const TOOL: &str = "pkcshsm_mk_change";

#[derive(Parser)]
#[command(
    name = "pkcshsm_mk_change",
    about = "Fake pkcshsm_mk_change (mkplan's zcrypt simulator)"
)]
struct MkChange {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Re-encipher the key objects of the tokens using these APQNs.
    Reencipher {
        #[arg(short = 'a', long, required = true)]
        apqns: String,
        #[arg(short = 'e', long)]
        ep11_wkvp: Option<String>,
        #[arg(short = 's', long)]
        cca_sym_mkvp: Option<String>,
        #[arg(short = 'S', long)]
        cca_asym_mkvp: Option<String>,
        #[arg(short = 'A', long)]
        cca_aes_mkvp: Option<String>,
        #[arg(short = 'p', long)]
        cca_apka_mkvp: Option<String>,
    },
    /// Finalize an operation after the new master keys are set.
    Finalize {
        #[arg(short = 'i', long)]
        id: String,
    },
    /// Cancel an operation before any APQN is set.
    Cancel {
        #[arg(short = 'i', long)]
        id: String,
    },
    /// List the open operations.
    List {
        #[arg(short = 'i', long)]
        id: Option<String>,
    },
}

pub fn run(dir: &Path, args: &[String]) -> Output {
    let parsed: MkChange = match parse_args(TOOL, args) {
        Ok(parsed) => parsed,
        Err(output) => return output,
    };
    let label = match &parsed.command {
        Command::Reencipher { .. } => "pkcshsm_mk_change reencipher",
        Command::Finalize { .. } => "pkcshsm_mk_change finalize",
        Command::Cancel { .. } => "pkcshsm_mk_change cancel",
        Command::List { .. } => "pkcshsm_mk_change list",
    };
    let mut session = match Session::open(dir, label) {
        Ok(session) => session,
        Err(message) => return Output::failure(TOOL, message),
    };
    let result = match parsed.command {
        Command::Reencipher {
            apqns,
            ep11_wkvp,
            cca_sym_mkvp,
            cca_asym_mkvp,
            cca_aes_mkvp,
            cca_apka_mkvp,
        } => reencipher(
            &mut session,
            &apqns,
            [
                (Mk::Wk, ep11_wkvp),
                (Mk::Sym, cca_sym_mkvp),
                (Mk::Asym, cca_asym_mkvp),
                (Mk::Aes, cca_aes_mkvp),
                (Mk::Apka, cca_apka_mkvp),
            ],
        ),
        Command::Finalize { id } => finish(&mut session, &id, true),
        Command::Cancel { id } => finish(&mut session, &id, false),
        Command::List { id } => list(&session.world, id.as_deref()),
    };
    result.unwrap_or_else(|message| Output::failure(TOOL, message))
}

fn reencipher(
    session: &mut Session,
    apqns: &str,
    vps: [(Mk, Option<String>); 5],
) -> Result<Output, String> {
    let world = &session.world;
    let apqns: Vec<String> = apqns
        .split(',')
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .collect();
    for apqn in &apqns {
        if world.find(apqn).is_none() {
            return Err(format!("APQN {apqn} is not available"));
        }
    }
    let mut new = BTreeMap::new();
    let mut warnings = Vec::new();
    for (mk, vp) in vps {
        if let Some(vp) = vp {
            let (vp, warning) = mkvp_option(mk, &vp)?;
            warnings.extend(warning);
            new.insert(mk, vp);
        }
    }
    if new.is_empty() {
        return Err("give at least one of --ep11-wkvp, --cca-sym-mkvp, --cca-asym-mkvp, --cca-aes-mkvp, --cca-apka-mkvp".into());
    }
    if let Some(open) = world
        .operations
        .iter()
        .find(|op| op.apqns.iter().any(|a| apqns.contains(a)))
    {
        return Err(format!(
            "Master key change operation '{}' is already active for some of these APQNs",
            open.id
        ));
    }
    // The NEW register of every APQN holds the given MK, ready to be set, and the CURRENT is set.
    let mut full = BTreeMap::new();
    for (mk, vp) in &new {
        for apqn in &apqns {
            let Some(regs) = world.registers(apqn, *mk) else {
                continue;
            };
            let Some(ready) = regs.new.ready().filter(|n| same_mk(n, vp)) else {
                return Err(format!(
                    "APQN {apqn}: the NEW {} master key is not loaded and committed with verification pattern {vp}",
                    mk.name()
                ));
            };
            if regs.current.is_none() {
                return Err(format!(
                    "APQN {apqn}: no CURRENT {} master key is set",
                    mk.name()
                ));
            }
            full.insert(*mk, ready.to_string());
        }
    }
    // openCryptoki's rule (`ep11tok_mk_change_is_affected`, `cca_mk_change_is_affected`): a
    // token using one of the APQNs, for a type its mode uses (EP11: WK; CCA: SYM, AES, APKA,
    // never ASYM), whatever objects it holds.
    let configured = configured_slots(&session.dir)?;
    let affected: Vec<&Token> = world
        .tokens
        .iter()
        .filter(|t| configured.as_ref().is_none_or(|c| c.contains(&t.slot)))
        .filter(|t| t.apqns.iter().any(|a| apqns.contains(a)))
        .filter(|t| new.keys().any(|mk| t.kind.uses(*mk)))
        .collect();
    if affected.is_empty() {
        return Err("No token is affected by this master key change, aborting".into());
    }
    for token in &affected {
        if let Some(problem) = apqn_left_out(token, &apqns) {
            return Err(problem);
        }
        for (mk, old) in &token.objects {
            if !new.contains_key(mk) {
                continue;
            }
            for apqn in &token.apqns {
                let current = world.registers(apqn, *mk).and_then(|r| r.current.clone());
                if !current.as_deref().is_some_and(|c| same_mk(c, old)) {
                    return Err(format!(
                        "Slot {}: APQN {apqn} does not have the expected CURRENT {} master key {old}",
                        token.slot,
                        mk.name()
                    ));
                }
            }
        }
    }
    let slots: Vec<u32> = affected.iter().map(|t| t.slot).collect();
    for token in &affected {
        loads(&session.dir, token)?;
    }
    super::ock_login::login(world, &slots)?;
    let world = &mut session.world;
    let seed = format!("{}:{}", session.dir.display(), world.next_operation);
    world.next_operation += 1;
    let id = hex::encode(&Sha256::digest(seed.as_bytes())[..3]);
    for token in world.tokens.iter_mut().filter(|t| slots.contains(&t.slot)) {
        for (mk, vp) in &full {
            if token.objects.contains_key(mk) {
                token.staged.insert(*mk, vp.clone());
            }
        }
    }
    world.operations.push(Operation {
        id: id.clone(),
        state: OperationState::Reenciphered,
        apqns,
        new: full,
        slots,
    });
    session.commit(
        &format!("pkcshsm_mk_change reencipher (operation {id})"),
        &[],
    )?;
    let mut output = Output::default();
    for warning in warnings {
        output.err(format!("{TOOL}: {warning}"));
    }
    output.out(format!("Master key change operation '{id}' created."));
    Ok(output)
}

/// An `--ep11-wkvp` / `--cca-*-mkvp` value as the real tool reads it (`parse_mkvp`): an
/// optional `0x`, then at least 16 bytes (EP11) or 8 (CCA, ASYM too) of hex; more is
/// ignored with a warning. The value kept and the warning.
fn mkvp_option(mk: Mk, text: &str) -> Result<(String, Option<String>), String> {
    let option = match mk {
        Mk::Wk => "--ep11-wkvp",
        Mk::Sym => "--cca-sym-mkvp",
        Mk::Asym => "--cca-asym-mkvp",
        Mk::Aes => "--cca-aes-mkvp",
        Mk::Apka => "--cca-apka-mkvp",
    };
    let bytes = if mk.is_ep11() { 16 } else { 8 };
    let digits = match text.get(..2) {
        Some(prefix) if prefix.eq_ignore_ascii_case("0x") => &text[2..],
        _ => text,
    };
    if digits.len() < bytes * 2 {
        return Err(format!(
            "option {option} must specify at least {bytes} bytes"
        ));
    }
    let kept = vp_of(&digits[..bytes * 2], bytes * 2, option)
        .map_err(|_| format!("option {option} does not specify a valid hex string"))?;
    let warning = (digits.len() > bytes * 2).then(|| {
        format!("option {option} specifies more than {bytes} bytes, remaining bytes are ignored")
    });
    Ok((kept, warning))
}

/// The `EXPECTED_*` pins of the config a token reads (`token_config`): MK type → VP,
/// lower-case without `0x`; and that config's path.
pub fn expected_pins(dir: &Path, token: &Token) -> Result<(BTreeMap<Mk, String>, PathBuf), String> {
    let (path, text) = token_config(dir, token)?;
    let mut pins = BTreeMap::new();
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || c == '{' || c == '}' || c == '=')
        .filter(|w| !w.is_empty())
        .collect();
    let strip = |w: &str| {
        w.trim_matches('"')
            .trim_start_matches("0x")
            .to_ascii_lowercase()
    };
    for pair in words.windows(2) {
        let mk = match pair[0] {
            "EXPECTED_WKVP" => Some(Mk::Wk),
            "SYM" => Some(Mk::Sym),
            "AES" => Some(Mk::Aes),
            "APKA" => Some(Mk::Apka),
            _ => None,
        };
        if let Some(mk) = mk
            && pair[1].starts_with('"')
        {
            pins.insert(mk, strip(pair[1]));
        }
    }
    Ok((pins, path))
}

/// The config a token reads, and its text, as openCryptoki's tokens find it: a CCA token its
/// `confname` in the world's `opencryptoki/`; an EP11 token the same unless
/// `OCK_EP11_TOKEN_DIR` is set, and then the file name of its `confname` in that folder, else
/// `ep11tok.conf` there (`ock_conf::ep11_config_candidates`, the rule mkplan's reader
/// follows). The first that can be read; none is an error naming every one tried.
fn token_config(dir: &Path, token: &Token) -> Result<(PathBuf, String), String> {
    let token_dir = match token.kind {
        TokenKind::Ep11 => ep11_token_dir()?,
        TokenKind::Cca => None,
    };
    let name = config_name(token);
    let candidates = match &token_dir {
        Some(token_dir) => ep11_config_candidates(&dir.join(OCK_DIR), Some(token_dir), Some(&name)),
        None => vec![config_path(dir, token)],
    };
    let mut failed = Vec::new();
    for path in candidates {
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok((path, text)),
            Err(e) => failed.push(format!("{}: {e}", crate::quote::path(&path))),
        }
    }
    Err(format!(
        "slot {}: cannot read the token config ({}){}",
        token.slot,
        failed.join("; "),
        match token_dir {
            Some(_) => format!(", read from {EP11_TOKEN_DIR_VARIABLE} as the EP11 token reads it"),
            None => String::new(),
        }
    ))
}

/// Whether the token can load its config. A CCA token refuses an `APQN_ALLOWLIST` (or
/// `APQN_WHITELIST`), which its config does not have (OCK `cca_config_parse`: "unexpected
/// token"); a config it cannot read is `token_config`'s error. EP11 configs are not checked.
fn loads(dir: &Path, token: &Token) -> Result<(), String> {
    if token.kind != TokenKind::Cca {
        return Ok(());
    }
    let (path, text) = token_config(dir, token)?;
    let listed = text.lines().enumerate().find_map(|(at, line)| {
        let word = line.split('#').next()?.split_whitespace().next()?;
        ["APQN_ALLOWLIST", "APQN_WHITELIST"]
            .contains(&word)
            .then(|| (at + 1, word.to_string()))
    });
    match listed {
        Some((line, word)) => Err(format!(
            "Slot {}: Error parsing config file '{}': unexpected token '{word}' at line {line}",
            token.slot,
            path.display()
        )),
        None => Ok(()),
    }
}

pub fn config_path(dir: &Path, token: &Token) -> std::path::PathBuf {
    dir.join(OCK_DIR).join(config_name(token))
}

fn config_name(token: &Token) -> String {
    match (&token.confname, token.kind) {
        (Some(name), _) => name.clone(),
        (None, TokenKind::Ep11) => format!("ep11tok{}.conf", token.slot),
        (None, TokenKind::Cca) => format!("ccatok{}.conf", token.slot),
    }
}

/// The slots `DIR/opencryptoki/opencryptoki.conf` configures with an EP11 or CCA library: the
/// tokens pkcsslotd starts, so the only ones a `pkcshsm_mk_change` run counts (`None`: no
/// such file, a world written before it, where every token counts).
fn configured_slots(dir: &Path) -> Result<Option<Vec<u32>>, String> {
    let path = dir
        .join(OCK_DIR)
        .join(crate::backend::zcrypt::ock_conf::OPENCRYPTOKI_CONF);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let slots = crate::backend::zcrypt::ock_conf::token_slots(&text)
        .map_err(|e| format!("{}:{}: {}", path.display(), e.line, e.why))?;
    Ok(Some(
        slots
            .iter()
            .filter_map(|s| u32::try_from(s.slot).ok())
            .collect(),
    ))
}

/// `opencryptoki.conf` as pkcsslotd reads it: one slot per token, with its library and the
/// name of its config (`confname`).
pub fn slots_text(world: &World) -> String {
    let mut text = String::from(
        "# Written by mkplan sim zcrypt init: the world's openCryptoki slots.\nversion opencryptoki-3.27\n",
    );
    for token in &world.tokens {
        let library = match token.kind {
            TokenKind::Ep11 => "libpkcs11_ep11.so",
            TokenKind::Cca => "libpkcs11_cca.so",
        };
        text.push_str(&format!(
            "\nslot {}\n{{\n    stdll = {library}\n    confname = \"{}\"\n    tokversion = 3.12\n}}\n",
            token.slot,
            config_name(token)
        ));
    }
    text
}

/// A token's config as the operator would find it, pinning its objects' MKs. An EP11
/// config lists the token's APQNs (`APQN_ALLOWLIST`); a CCA config has no such setting
/// (openCryptoki's ccatok.conf: the CCA library picks the adapters, as the world's `apqns`
/// say), and a CCA token would refuse to load a config with one.
pub fn config_text(world: &World, token: &Token) -> String {
    let mut text = String::from(
        "# Written by mkplan sim zcrypt init; edit EXPECTED_* as the procedure says.\n",
    );
    match token.kind {
        TokenKind::Ep11 => {
            text.push_str("APQN_ALLOWLIST\n");
            for apqn in &token.apqns {
                if let Some((card, domain)) = world.find(apqn) {
                    text.push_str(&format!("  {} {}\n", card.card, domain.domain));
                }
            }
            text.push_str("END\n");
            if let Some(vp) = token.objects.get(&Mk::Wk) {
                text.push_str(&format!("EXPECTED_WKVP \"0x{}\"\n", &vp[..32]));
            }
        }
        TokenKind::Cca => {
            text.push_str("EXPECTED_MKVPS {\n");
            // SYM, AES and APKA (OCK `cca_config_parse_exp_mkvps`).
            for (mk, vp) in &token.objects {
                text.push_str(&format!("  {} = \"0x{}\"\n", mk.name(), &vp[..16]));
            }
            text.push_str("}\n");
        }
    }
    text
}

fn finish(session: &mut Session, id: &str, finalize: bool) -> Result<Output, String> {
    let verb = if finalize { "finalize" } else { "cancel" };
    let Some(index) = session.world.operations.iter().position(|op| op.id == id) else {
        return Err(format!("Master key change operation '{id}' does not exist"));
    };
    let op = session.world.operations[index].clone();
    if op.state == OperationState::Finalizing {
        // `perform_finalize_cancel`: only a re-enciphered or errored operation.
        return Err(format!(
            "The HSM master key change operation '{id}' is in a state where\nit can not be {}.",
            if finalize { "finalized" } else { "canceled" }
        ));
    }
    let configured = configured_slots(&session.dir)?;
    let mut now: Vec<u32> = session
        .world
        .tokens
        .iter()
        .filter(|t| configured.as_ref().is_none_or(|c| c.contains(&t.slot)))
        .filter(|t| t.apqns.iter().any(|a| op.apqns.contains(a)))
        .filter(|t| op.new.keys().any(|mk| t.kind.uses(*mk)))
        .map(|t| t.slot)
        .collect();
    now.sort_unstable();
    let mut began = op.slots.clone();
    began.sort_unstable();
    if now != began {
        // `perform_finalize_cancel`: the slots the tokens' queries count now must be the
        // operation's, for a cancel as for a finalize.
        return Err("The list of slots affected by this master key change has changed\nsince initiating this master key change operation.".into());
    }
    for token in session
        .world
        .tokens
        .iter()
        .filter(|t| op.slots.contains(&t.slot))
    {
        loads(&session.dir, token)?;
    }
    super::ock_login::login(&session.world, &op.slots)?;
    let mut problem = None;
    for slot in &op.slots {
        let token = session
            .world
            .tokens
            .iter()
            .find(|t| t.slot == *slot)
            .expect("slot of an operation")
            .clone();
        let (pins, config) = expected_pins(&session.dir, &token)?;
        if problem.is_none() {
            problem = apqn_left_out(&token, &op.apqns);
        }
        for (mk, new) in op
            .new
            .iter()
            .filter(|(mk, _)| token.objects.contains_key(mk))
        {
            let currents: Vec<(&String, Registers)> = token
                .apqns
                .iter()
                .map(|apqn| {
                    let regs = session.world.registers(apqn, *mk).cloned();
                    (apqn, regs.unwrap_or_default())
                })
                .collect();
            let found = if finalize {
                finalize_problem(*slot, *mk, new, &currents, pins.get(mk), &config)
            } else {
                let old = &token.objects[mk];
                cancel_problem(*slot, *mk, old, &currents, pins.get(mk), &config)
            };
            if problem.is_none() {
                problem = found;
            }
        }
    }
    if let Some(problem) = problem {
        if finalize {
            session.world.operations[index].state = OperationState::Errored;
            session.commit(
                &format!("pkcshsm_mk_change {verb} --id {id} (errored)"),
                &[],
            )?;
        }
        return Err(problem);
    }
    for token in session
        .world
        .tokens
        .iter_mut()
        .filter(|t| op.slots.contains(&t.slot))
    {
        let staged = std::mem::take(&mut token.staged);
        if finalize {
            token.objects.extend(staged);
        }
    }
    session.world.operations.remove(index);
    session.commit(&format!("pkcshsm_mk_change {verb} --id {id}"), &[])?;
    let mut output = Output::default();
    output.out(format!(
        "Master key change operation '{id}' successfully {}.",
        if finalize { "finalized" } else { "canceled" }
    ));
    Ok(output)
}

/// openCryptoki's first check of every APQN a token uses, when an operation is created,
/// finalized or canceled (`mk_change_apqn_check_handler`, ep11_mkchange.c 349-360;
/// `cca_mk_change_apqn_check_cb`, cca_mkchange.c 1006-1015): each must be one of the
/// operation's, even an offline one. Its words, APQN in upper-case hex (`%02X.%04X`).
fn apqn_left_out(token: &Token, apqns: &[String]) -> Option<String> {
    token
        .apqns
        .iter()
        .find(|a| !apqns.contains(a))
        .map(|missing| {
            format!(
                "Slot {}: APQN {} must be included into this operation.",
                token.slot,
                missing.to_ascii_uppercase()
            )
        })
}

/// Why openCryptoki's finalize query refuses `slot`'s `mk` (`ep11tok_mk_change_finalize_query`,
/// `cca_mk_change_apqn_check_mk_state`): every APQN's CURRENT must be the operation's new key
/// (a CCA APQN's NEW empty too), and a pin in the token's config must name it. A config with
/// no pin is not checked (`check_token_config_expected_wkvp`: "No 'EXPECTED_WKVP'").
fn finalize_problem(
    slot: u32,
    mk: Mk,
    new: &str,
    currents: &[(&String, Registers)],
    pin: Option<&String>,
    config: &Path,
) -> Option<String> {
    for (apqn, regs) in currents {
        let current = regs.current.as_deref().unwrap_or("");
        if !same_mk(current, new) || !(mk.is_ep11() || regs.new.key().is_none()) {
            return Some(format!(
                "Slot {slot}: APQN {apqn} does not have the new {} master key set as CURRENT{}",
                mk.name(),
                if mk.is_ep11() { "" } else { " with NEW empty" }
            ));
        }
    }
    pin.filter(|pin| !same_mk(pin, new)).map(|_| {
        format!(
            "Slot {slot}: {} does not yet name the new {} master key verification pattern: update its EXPECTED_* setting first",
            config.display(),
            mk.name()
        )
    })
}

/// Why openCryptoki's cancel query refuses `slot`'s `mk` (`ep11tok_mk_change_cancel_query`,
/// `cca_mk_change_cancel_query`): every APQN's CURRENT must be the key the token expects. With
/// an operation open, a token takes that key from the file `reencipher` saved for its slot
/// (`hsm_mk_change_token_mkvps_load` in `ep11tok_mk_change_check_pending_ops` and its CCA
/// twin): the key its objects were under, `old`. So a cancel is refused once any APQN is set,
/// pinned or not; a config that pins a key must pin that one
/// (`check_token_config_expected_wkvp(…, FALSE)`).
fn cancel_problem(
    slot: u32,
    mk: Mk,
    old: &str,
    currents: &[(&String, Registers)],
    pin: Option<&String>,
    config: &Path,
) -> Option<String> {
    for (apqn, regs) in currents {
        let current = regs.current.as_deref().unwrap_or("");
        if current.is_empty() {
            return Some(format!(
                "Slot {slot}: No current {} master key is set on APQN {apqn}",
                mk.name()
            ));
        }
        if !same_mk(current, old) {
            return Some(format!(
                "Slot {slot}: The current {} master key on APQN {apqn} does not match the expected one",
                mk.name()
            ));
        }
    }
    pin.filter(|pin| !same_mk(pin, old)).map(|_| {
        format!(
            "Expected {} MKVP in config file '{}' does not specify the current MKVP.",
            mk.name(),
            config.display()
        )
    })
}

/// `list [--id ID]` in openCryptoki's layout (`perform_list_cb`): per operation its id,
/// state, APQNs one per line in upper-case hex, its new MKVPs as `Type:`/`MKVP:` pairs (EP11
/// 16 bytes, CCA 8), its affected slots with each token's label and the MKVPs its objects
/// were under when the operation began; a blank line between operations.
fn list(world: &World, id: Option<&str>) -> Result<Output, String> {
    let mut output = Output::default();
    let ops: Vec<&Operation> = world
        .operations
        .iter()
        .filter(|op| id.is_none_or(|id| op.id == id))
        .collect();
    if let (Some(id), true) = (id, ops.is_empty()) {
        return Err(format!("HSM master key change operation '{id}' not found."));
    }
    let type_word = |mk: &Mk| match mk {
        Mk::Wk => "EP11".to_string(),
        other => format!("CCA {}", other.name()),
    };
    let mkvp = |mk: &Mk, vp: &str| vp[..if mk.is_ep11() { 32 } else { 16 }].to_ascii_uppercase();
    for (index, op) in ops.iter().enumerate() {
        if index > 0 {
            output.out("");
        }
        output.out(format!("Operation:       {}", op.id));
        match op.state {
            OperationState::Reenciphered => {
                output.out("    State:       Key objects have been re-enciphered,");
                output.out("                 new master key(s) can now be set/activated");
            }
            OperationState::Finalizing => output.out("    State:       Finalizing"),
            OperationState::Errored => {
                output.out("    State:       Finalizing or canceling has errored");
            }
        }
        output.out("    APQNs:");
        for apqn in &op.apqns {
            output.out(format!("        {}", apqn.to_ascii_uppercase()));
        }
        output.out("    New master key verification patterns:");
        for (mk, vp) in &op.new {
            output.out(format!("        Type:    {}", type_word(mk)));
            output.out(format!("        MKVP:    {}", mkvp(mk, vp)));
        }
        output.out("    Affected slots:");
        for slot in &op.slots {
            let token = world.tokens.iter().find(|t| t.slot == *slot);
            output.out(format!(
                "        Slot: {slot} Label: {:<32}",
                format!("token{slot}")
            ));
            let current: Vec<(&Mk, &String)> = token
                .map(|t| {
                    t.objects
                        .iter()
                        .filter(|(mk, _)| op.new.contains_key(mk))
                        .collect()
                })
                .unwrap_or_default();
            if !current.is_empty() {
                output.out("            Current master key verification patterns:");
                for (mk, vp) in current {
                    output.out(format!("                Type:    {}", type_word(mk)));
                    output.out(format!("                MKVP:    {}", mkvp(mk, vp)));
                }
            }
        }
    }
    Ok(output)
}
