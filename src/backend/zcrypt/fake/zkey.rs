//! The fake `zkey`: `validate`, `list` and `reencipher` over the world's repository, with the
//! real tool's option names, per-key lines, last lines and exit codes (zcrypt.md §4.1, S390
//! zkey/keystore.c). Like the real tool it reads its repository from `ZKEY_REPOSITORY` and
//! sysfs below `SYSFS_ROOT`; this fake serves only its world's, so both must name the world's
//! `zkey` and `sys` folders. Keys with no associated APQNs are checked against the APQNs zkey
//! discovers under the fixed `/sys/devices/ap`: none of the world's (zcrypt.md §2.6 quirk).

use std::path::Path;

use clap::{Args, Parser, Subcommand};

use super::incidents::mixed_groups;
use super::render::{SYSFS_DIR, ZKEY_DIR};
use super::world::{Mk, World, ZkeyKey, same_mk};
use super::{Output, Session, glob, now, parse_args};

#[derive(Parser)]
#[command(name = "zkey", about = "Fake zkey (mkplan's zcrypt simulator)")]
struct Zkey {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate secure keys in the repository.
    #[command(visible_alias = "val")]
    Validate(Filter),
    /// List secure keys in the repository.
    #[command(visible_alias = "li")]
    List(Filter),
    /// Re-encipher secure keys with a new master key.
    #[command(visible_alias = "re")]
    Reencipher(Reencipher),
}

#[derive(Args)]
struct Filter {
    /// Keys whose name matches (wildcards allowed).
    #[arg(short = 'n', long)]
    name: Option<String>,
    /// Keys associated with one of these APQNs (comma-separated, wildcards allowed).
    #[arg(short = 'a', long)]
    apqns: Option<String>,
    #[arg(short = 'V', long)]
    verbose: bool,
    #[arg(long)]
    noapqncheck: bool,
}

#[derive(Args)]
struct Reencipher {
    #[command(flatten)]
    filter: Filter,
    /// Re-encipher from the CURRENT to the NEW master key.
    #[arg(short = 'N', long)]
    to_new: bool,
    /// Re-encipher from the OLD to the CURRENT master key (CCA).
    #[arg(short = 'O', long)]
    from_old: bool,
    #[arg(short = 'i', long, conflicts_with_all = ["staged", "complete"])]
    in_place: bool,
    #[arg(short = 's', long, conflicts_with = "complete")]
    staged: bool,
    /// Complete a staged re-enciphering.
    #[arg(short = 'p', long, conflicts_with_all = ["to_new", "from_old"])]
    complete: bool,
}

/// The environment the real zkey reads, which must name this world's folders.
pub fn check_environment(dir: &Path, tool: &str) -> Result<(), Output> {
    for (variable, folder, default) in [
        ("ZKEY_REPOSITORY", ZKEY_DIR, "/etc/zkey/repository"),
        ("SYSFS_ROOT", SYSFS_DIR, "/sys"),
    ] {
        let expected = dir.join(folder);
        let given = std::env::var_os(variable);
        let same = given.as_ref().is_some_and(|g| {
            std::fs::canonicalize(g).ok() == std::fs::canonicalize(&expected).ok()
        });
        if !same {
            let shown = given.map_or_else(
                || format!("unset, so {tool} would read {default}"),
                |g| format!("{}", Path::new(&g).display()),
            );
            return Err(Output::failure(
                tool,
                format!(
                    "{variable} is {shown}; this fake {tool} serves only its world's: set {variable}={}",
                    expected.display()
                ),
            ));
        }
    }
    Ok(())
}

pub fn run(dir: &Path, args: &[String]) -> Output {
    let zkey: Zkey = match parse_args("zkey", args) {
        Ok(zkey) => zkey,
        Err(output) => return output,
    };
    if let Err(output) = check_environment(dir, "zkey") {
        return output;
    }
    let (label, filter) = match &zkey.command {
        Command::Validate(f) => ("zkey validate", f),
        Command::List(f) => ("zkey list", f),
        Command::Reencipher(r) => ("zkey reencipher", &r.filter),
    };
    let mut session = match Session::open(dir, label) {
        Ok(session) => session,
        Err(message) => return Output::failure("zkey", message),
    };
    let _repository_lock = match super::world::lock(&session.dir.join(ZKEY_DIR).join(".lock")) {
        Ok(lock) => lock,
        Err(message) => return Output::failure("zkey", message),
    };
    let names = selected(&session.world, filter);
    match zkey.command {
        Command::Validate(_) => validate(&session.world, &names, &session.dir),
        Command::List(_) => super::zkey_list::list(&session.world, &names, &session.dir),
        Command::Reencipher(r) => reencipher(&mut session, &names, &r),
    }
}

/// The keys the filters select, in name order.
fn selected(world: &World, filter: &Filter) -> Vec<String> {
    let mut names: Vec<String> = world
        .keys
        .iter()
        .filter(|k| filter.name.as_deref().is_none_or(|p| glob(p, &k.name)))
        .filter(|k| {
            filter.apqns.as_deref().is_none_or(|list| {
                list.split(',')
                    .any(|p| k.apqns.iter().any(|a| glob(p.trim(), a)))
            })
        })
        .map(|k| k.name.clone())
        .collect();
    names.sort();
    names
}

/// The APQNs zkey checks a key with: its associated ones; with none, those it discovers
/// under the fixed `/sys/devices/ap`, which holds none of this world's.
fn checked_apqns(key: &ZkeyKey) -> Vec<String> {
    key.apqns.clone()
}

/// Under which register of which usable APQN the MK `mkvp` is, as `validate_secure_key` decides.
#[derive(Debug, PartialEq, Eq)]
pub enum Under {
    Current(String),
    Old(String),
    Unknown,
}

pub fn under(world: &World, apqns: &[String], mk: Mk, mkvp: &str) -> Under {
    let usable: Vec<&String> = apqns.iter().filter(|a| world.usable(a, mk)).collect();
    for apqn in &usable {
        let regs = world.registers(apqn, mk).expect("usable APQN of the type");
        if regs.current.as_deref().is_some_and(|c| same_mk(c, mkvp)) {
            return Under::Current((*apqn).clone());
        }
    }
    if !mk.is_ep11() {
        for apqn in &usable {
            let regs = world.registers(apqn, mk).expect("usable APQN of the type");
            if regs.old.as_deref().is_some_and(|o| same_mk(o, mkvp)) {
                return Under::Old((*apqn).clone());
            }
        }
    }
    Under::Unknown
}

fn shown(key: &ZkeyKey, mkvp: &str) -> String {
    mkvp[..key.key_type.mkvp_hex_len()].to_string()
}

fn validate(world: &World, names: &[String], dir: &Path) -> Output {
    let mut output = Output::default();
    let (mut valid, mut invalid, mut warnings) = (0, 0, 0);
    for name in names {
        let key = world.selected_key(name);
        let mk = key.key_type.mk();
        let apqns = checked_apqns(key);
        let status = under(world, &apqns, mk, &key.skey);
        let vp = shown(key, &key.skey);
        let validation = super::zkey_list::Validation {
            valid: status != Under::Unknown,
            enciphered_with: match &status {
                Under::Current(_) => format!("CURRENT master key (MKVP: {vp})"),
                Under::Old(_) => format!("OLD master key (MKVP: {vp})"),
                Under::Unknown => format!("(unknown, MKVP: {vp})"),
            },
        };
        let fields = super::zkey_list::fields(key, dir, Some(&validation));
        output
            .stdout
            .push_str(&super::zkey_list::record(&key.name, &fields));
        if matches!(status, Under::Old(_)) {
            output.out("WARNING: The secure key is currently enciphered with the OLD master key. To mitigate the danger of data loss re-encipher it with the CURRENT master key");
            warnings += 1;
        }
        // zkey ends the APQNs' warnings with a blank line (keystore.c
        // `_keystore_display_apqn_status`).
        let apqn_warnings = cross_check(world, &apqns, mk, &key.skey, &mut output);
        if apqn_warnings > 0 {
            output.out("");
        }
        warnings += apqn_warnings;
        if status == Under::Unknown {
            invalid += 1;
        } else {
            valid += 1;
        }
    }
    output.out(format!(
        "{valid} keys are valid, {invalid} keys are invalid, {warnings} warnings"
    ));
    output
}

/// zkey's APQN cross-check (zcrypt.md §7), the warnings only: returns how many it printed.
fn cross_check(world: &World, apqns: &[String], mk: Mk, mkvp: &str, output: &mut Output) -> usize {
    let mut warnings = 0;
    let usable: Vec<&String> = apqns.iter().filter(|a| world.usable(a, mk)).collect();
    let held = |register: fn(&super::world::Registers) -> Option<&str>| {
        usable.iter().any(|a| {
            world
                .registers(a, mk)
                .and_then(register)
                .is_some_and(|vp| same_mk(vp, mkvp))
        })
    };
    if !held(|r| r.current.as_deref()) {
        if !mk.is_ep11() && held(|r| r.old.as_deref()) {
            output.out("INFO: The master key has been changed to a new master key, but the secure key has not yet been re-enciphered");
        } else if held(|r| r.new.key()) {
            output.out("INFO: A new master key has been loaded but not yet been set (made active)");
        }
    }
    let mut currents = std::collections::BTreeSet::new();
    let mut news = std::collections::BTreeSet::new();
    for apqn in apqns {
        if !world.usable(apqn, mk) {
            output.out(format!(
                "WARNING: APQN {apqn}: The APQN is not available or not of the right type"
            ));
            warnings += 1;
            continue;
        }
        let regs = world.registers(apqn, mk).expect("usable");
        match &regs.current {
            None => {
                output.out(format!("WARNING: APQN {apqn}: No master key is set"));
                warnings += 1;
            }
            Some(vp) => {
                currents.insert(vp.clone());
            }
        }
        if let Some(vp) = regs.new.key() {
            news.insert(vp.to_string());
        }
    }
    if currents.len() > 1 {
        output.out("WARNING: Not all APQNs have the same master key or fulfill the requirements");
        warnings += 1;
    }
    if news.len() > 1 {
        output.out("WARNING: Not all APQNs have the same NEW master key: an APQN has a different master key than the NEW register of other APQNs");
        warnings += 1;
    }
    warnings
}

/// How one key fared.
enum Fate {
    Reenciphered,
    Skipped,
    Failed,
}

fn reencipher(session: &mut Session, names: &[String], args: &Reencipher) -> Output {
    let mut output = Output::default();
    let (mut done, mut skipped, mut failed) = (0, 0, 0);
    let mut changed = Vec::new();
    let mut groups = Vec::new();
    for name in names {
        let index = session
            .world
            .keys
            .iter()
            .position(|k| &k.name == name)
            .expect("selected");
        let fate = if args.complete {
            complete_one(&mut session.world, index, &mut output)
        } else {
            reencipher_one(&mut session.world, index, args, &mut output)
        };
        match fate {
            Fate::Reenciphered => {
                done += 1;
                changed.push(name.clone());
                let key = &session.world.keys[index];
                groups.push((
                    format!("zkey key {name}"),
                    key.key_type.mk(),
                    key.apqns.clone(),
                ));
                if let Some(volume) = key.volume.as_ref().filter(|v| v.luks2) {
                    output.out(format!(
                        "Note: The secure key '{name}' is associated with LUKS2 volume '{}'. Run 'zkey-cryptsetup reencipher {}' to re-encipher the volume key in its LUKS2 header as well.",
                        volume.device, volume.device
                    ));
                }
            }
            Fate::Skipped => skipped += 1,
            Fate::Failed => failed += 1,
        }
    }
    let action = format!(
        "zkey reencipher{} ({})",
        if args.complete {
            " --complete"
        } else if args.from_old && !args.to_new {
            " --from-old"
        } else {
            ""
        },
        if changed.is_empty() {
            "no key".to_string()
        } else {
            changed.join(", ")
        }
    );
    let warnings = mixed_groups(&session.world, &action, &groups);
    if !changed.is_empty()
        && let Err(message) = session.commit(&action, &warnings)
    {
        return Output::failure("zkey", message);
    }
    output.out(format!(
        "{done} keys re-enciphered, {skipped} keys skipped, {failed} keys failed to re-encipher"
    ));
    output.code = u8::from(failed > 0);
    output
}

fn complete_one(world: &mut World, index: usize, output: &mut Output) -> Fate {
    let key = &world.keys[index];
    let name = key.name.clone();
    let Some(renc) = key.renc.clone() else {
        output.out(format!(
            "Staged re-enciphering is not pending for key '{name}', skipping"
        ));
        return Fate::Skipped;
    };
    if under(world, &checked_apqns(key), key.key_type.mk(), &renc) == Under::Unknown {
        output.err(format!(
            "zkey: Key '{name}' is not valid, re-enciphering is not completed"
        ));
        output.err("zkey: The new master key might yet have to be set as the CURRENT master key.");
        return Fate::Failed;
    }
    let key = &mut world.keys[index];
    key.skey = renc;
    key.renc = None;
    key.reencipher_time = Some(now());
    output.out(format!("Completing re-enciphering for key '{name}'"));
    output.out(format!(
        "Staged re-enciphering is completed for key '{name}'"
    ));
    Fate::Reenciphered
}

fn reencipher_one(world: &mut World, index: usize, args: &Reencipher, output: &mut Output) -> Fate {
    let key = world.keys[index].clone();
    let name = &key.name;
    let mk = key.key_type.mk();
    let apqns = checked_apqns(&key);
    let status = under(world, &apqns, mk, &key.skey);
    if status == Under::Unknown {
        output.out(format!(
            "Key '{name}' is not valid, it is not re-enciphered"
        ));
        return Fate::Skipped;
    }
    let (mut to_new, mut from_old) = (args.to_new, args.from_old);
    if !to_new && !from_old {
        match status {
            Under::Current(_) => to_new = true,
            _ => from_old = true,
        }
    }
    if from_old && mk.is_ep11() {
        output.err(format!(
            "zkey: ERROR: Key '{name}': an EP11 APQN has no OLD master key register, re-enciphering from OLD is not possible"
        ));
        return Fate::Failed;
    }
    if matches!(status, Under::Old(_)) && !from_old {
        output.err(format!(
            "zkey: Key '{name}' is enciphered with the OLD master key: re-encipher it with option '--from-old' first"
        ));
        return Fate::Failed;
    }
    output.out(format!("Re-enciphering key '{name}'"));
    let mut mkvp = key.skey.clone();
    if let (true, Under::Old(apqn)) = (from_old, &status) {
        let current = world.registers(apqn, mk).and_then(|r| r.current.clone());
        let Some(current) = current else {
            output.err(format!(
                "zkey: Key '{name}': APQN {apqn} has no CURRENT master key"
            ));
            return Fate::Failed;
        };
        mkvp = current;
        world.keys[index].skey = mkvp.clone();
        world.keys[index].reencipher_time = Some(now());
    }
    if !to_new {
        return Fate::Reenciphered;
    }
    let target = world.new_for(&apqns, mk, &mkvp);
    let Some(new) = target else {
        output.err("zkey: No APQN found that is suitable for re-enciphering this secure AES key and has the NEW master key loaded");
        // A from-old part already done stays done.
        return if from_old {
            Fate::Reenciphered
        } else {
            Fate::Failed
        };
    };
    let key = &mut world.keys[index];
    if args.in_place {
        key.skey = new;
        key.reencipher_time = Some(now());
    } else {
        key.renc = Some(new);
        output.out(format!(
            "Staged re-enciphering is initiated for key '{name}'. After the NEW master key has been set to become the CURRENT master key run 'zkey reencipher' with option '--complete' to complete the re-enciphering process"
        ));
    }
    Fate::Reenciphered
}
