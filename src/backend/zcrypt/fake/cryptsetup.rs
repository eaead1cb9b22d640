//! The fake `zkey-cryptsetup`: the copy of the secure volume key in a LUKS2 header
//! (zcrypt.md §4.2; S390 zkey/zkey-cryptsetup.c and its man page).
//!
//! - `validate DEVICE --key-file F`: the active keyslot's key, `Enciphered with: CURRENT|OLD
//!   master key (MKVP: …)` or `(unknown, MKVP: …)`, and `Volume key re-enciphering is
//!   pending` while a staged keyslot exists. Like the real tool it does **not** show which
//!   master key the staged (unbound) keyslot is under. Exit 1 when the key is not valid.
//! - `reencipher DEVICE --key-file F`: `--staged` (the default for CURRENT→NEW) puts the new
//!   copy in an unbound keyslot; `--complete` makes it the active one once its key is CURRENT
//!   (before the set: "not valid … might yet have to be set"); `--in-place` replaces the
//!   active copy at once; `--from-old` (CCA) moves it from OLD to the CURRENT of the first
//!   APQN whose OLD holds it, in place unless `--staged`, and fails with nothing changed when
//!   no APQN's OLD holds it (a volume already moved). A second `--staged` or an `--in-place`
//!   while a staging is pending asks whether to cancel it, and without `--batch-mode` (stdin
//!   is no terminal here) the device is left unchanged; with neither, any `reencipher` while
//!   one is pending completes it, as the real tool does.
//!
//! Every command opens a keyslot first: the passphrase is the whole content of `--key-file`
//! (as cryptsetup reads a key file), checked against the SHA-256 the world keeps; without a
//! key file the real tool reads stdin, which gives none here. A wrong one fails as the real
//! tool does, with nothing changed.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use sha2::{Digest, Sha256};

use super::incidents::mixed_groups;
use super::world::{Luks2Header, World, ZkeyKey};
use super::zkey::{Under, under};
use super::{Output, Session, parse_args};

/// Bytes of a key file read at most (cryptsetup's default key file size limit is 8 MiB).
const KEY_FILE_BYTES_MAX: u64 = 8 * 1024 * 1024;
const TOOL: &str = "zkey-cryptsetup";

#[derive(Parser)]
#[command(
    name = "zkey-cryptsetup",
    about = "Fake zkey-cryptsetup (mkplan's zcrypt simulator)"
)]
struct ZkeyCryptsetup {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the secure volume key of a LUKS2 volume.
    #[command(visible_alias = "val")]
    Validate {
        device: String,
        /// The file holding the LUKS2 passphrase.
        #[arg(short = 'd', long)]
        key_file: Option<PathBuf>,
    },
    /// Re-encipher the secure volume key of a LUKS2 volume.
    #[command(visible_alias = "re")]
    Reencipher {
        device: String,
        #[arg(short = 'N', long)]
        to_new: bool,
        #[arg(short = 'O', long)]
        from_old: bool,
        #[arg(short = 'i', long, conflicts_with_all = ["staged", "complete"])]
        in_place: bool,
        #[arg(short = 's', long, conflicts_with = "complete")]
        staged: bool,
        #[arg(short = 'p', visible_short_alias = 'c', long, conflicts_with_all = ["to_new", "from_old"])]
        complete: bool,
        /// The file holding the LUKS2 passphrase.
        #[arg(short = 'd', long)]
        key_file: Option<PathBuf>,
        /// Answer yes to every question.
        #[arg(short = 'q', long)]
        batch_mode: bool,
    },
}

/// The SHA-256 of a key file's bytes, as the world keeps a volume's passphrase.
pub fn passphrase_sha256(path: &Path) -> Result<String, String> {
    let bytes = crate::bounded_read::read(path, KEY_FILE_BYTES_MAX)
        .map_err(|e| format!("Failed to stat key file '{}': {e}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// Opens a keyslot of `header` with the passphrase in `key_file`, as `open_keyslot` does.
fn open_keyslot(header: &Luks2Header, key_file: Option<&Path>) -> Result<(), Output> {
    let matches = match key_file {
        Some(path) => passphrase_sha256(path)
            .map_err(|why| Output::failure(TOOL, why))?
            .eq(&header.passphrase_sha256),
        // The real tool reads the passphrase from stdin, which is no terminal here.
        None => false,
    };
    if matches {
        return Ok(());
    }
    let mut output = Output::failure(TOOL, "No key available with this passphrase");
    output.err(format!(
        "{TOOL}: Failed to get volume key of device '{}': Operation not permitted",
        header.device
    ));
    Err(output)
}

pub fn run(dir: &Path, args: &[String]) -> Output {
    let parsed: ZkeyCryptsetup = match parse_args(TOOL, args) {
        Ok(parsed) => parsed,
        Err(output) => return output,
    };
    if let Err(output) = super::zkey::check_environment(dir, TOOL) {
        return output;
    }
    let (label, device, key_file) = match &parsed.command {
        Command::Validate {
            device, key_file, ..
        } => ("zkey-cryptsetup validate", device, key_file),
        Command::Reencipher {
            device, key_file, ..
        } => ("zkey-cryptsetup reencipher", device, key_file),
    };
    let mut session = match Session::open(dir, label) {
        Ok(session) => session,
        Err(message) => return Output::failure(TOOL, message),
    };
    let world = &session.world;
    let Some(index) = world.luks2.iter().position(|h| &h.device == device) else {
        return Output::failure(
            TOOL,
            format!("Device '{device}' is not a LUKS2 volume with a secure volume key"),
        );
    };
    let header = world.luks2[index].clone();
    if let Err(output) = open_keyslot(&header, key_file.as_deref()) {
        return output;
    }
    let Some(key) = world
        .keys
        .iter()
        .find(|k| k.name == header.key_name)
        .cloned()
    else {
        return Output::failure(
            TOOL,
            format!("Device '{device}': its key is not in the repository"),
        );
    };
    match parsed.command {
        Command::Validate { .. } => validate(world, &header, &key),
        Command::Reencipher {
            to_new,
            from_old,
            in_place,
            staged,
            complete,
            batch_mode,
            ..
        } => {
            let how = How {
                to_new,
                from_old,
                in_place,
                staged,
                batch_mode,
            };
            // As `command_reencipher`: with a staging pending and neither `--staged` nor
            // `--in-place`, any `reencipher` (`--from-old` too) completes it.
            let result = if complete || (header.staged.is_some() && !staged && !in_place) {
                reencipher_complete(&mut session.world, index, &key, batch_mode)
            } else {
                reencipher_prepare(&mut session.world, index, &key, &how)
            };
            let (output, action) = match result {
                Ok(done) => done,
                Err(output) => return output,
            };
            let groups = [(
                format!("LUKS2 volume {device}"),
                key.key_type.mk(),
                key.apqns.clone(),
            )];
            let warnings = mixed_groups(&session.world, &action, &groups);
            if let Err(message) = session.commit(&action, &warnings) {
                return Output::failure(TOOL, message);
            }
            output
        }
    }
}

/// The APQNs zkey-cryptsetup chooses among: every online APQN of the machine of the key's
/// type, whatever the key's association (zkey-cryptsetup.c passes no APQN list to its pkey
/// calls, and pkey.c then takes "all online APQNs of the matching type"), in card.domain
/// order.
fn machine_apqns(world: &World, mk: super::world::Mk) -> Vec<String> {
    world.apqns_of(mk)
}

/// What `validate` prints (zkey-cryptsetup.c `command_validate`).
fn validate(world: &World, header: &Luks2Header, key: &ZkeyKey) -> Output {
    let mk = key.key_type.mk();
    let status = under(world, &machine_apqns(world, mk), mk, &header.active);
    let valid = status != Under::Unknown;
    let mkvp = &header.active[..key.key_type.mkvp_hex_len()];
    let token_bytes = if mk.is_ep11() { 336 } else { 64 };
    let mut output = Output::default();
    output.out(format!(
        "Validation of secure volume key of device '{}':",
        header.device
    ));
    output.out("  Encryption key:");
    let line = |name: &str, value: String| format!("    {:<23}{value}", format!("{name}:"));
    output.out(line(
        "Status",
        if valid { "Valid" } else { "Invalid" }.into(),
    ));
    output.out(line(
        "Secure key size",
        format!("{} bytes", token_bytes * if key.xts { 2 } else { 1 }),
    ));
    output.out(line(
        "XTS type key",
        if key.xts { "Yes" } else { "No" }.into(),
    ));
    output.out(line("Key type", key.key_type.name().into()));
    output.out(line(
        "Clear key size",
        if valid {
            format!("{} bits", if key.xts { 512 } else { 256 })
        } else {
            "(unknown)".into()
        },
    ));
    output.out(line(
        "Enciphered with",
        match status {
            Under::Current(_) => format!("CURRENT master key (MKVP: {mkvp})"),
            Under::Old(_) => format!("OLD master key (MKVP: {mkvp})"),
            Under::Unknown => format!("(unknown, MKVP: {mkvp})"),
        },
    ));
    let pattern: String = key.verification_pattern.chars().take(32).collect();
    let (first, second) = pattern.split_at(pattern.len().min(16));
    output.out(line("Verification pattern", first.into()));
    output.out(format!("    {:<23}{second}", ""));
    if header.staged.is_some() {
        output.out("  Volume key re-enciphering is pending");
    }
    if !valid {
        output.out("");
        output.out("ATTENTION: The secure volume key is not valid.");
        output.code = 1;
    }
    if matches!(status, Under::Old(_)) {
        output.out("");
        output.out("WARNING: The secure volume key is currently enciphered with the OLD master key. To mitigate the danger of data loss re-encipher the volume key with the CURRENT master key.");
    }
    output
}

struct How {
    to_new: bool,
    from_old: bool,
    in_place: bool,
    staged: bool,
    batch_mode: bool,
}

/// A staged or in-place re-encipherment (`reencipher_prepare`): the output and the action
/// to record, or the failure with nothing changed.
fn reencipher_prepare(
    world: &mut World,
    index: usize,
    key: &ZkeyKey,
    how: &How,
) -> Result<(Output, String), Output> {
    let header = world.luks2[index].clone();
    let device = &header.device;
    let mut output = Output::default();
    if header.staged.is_some() {
        output.out(format!("Staged volume key re-enciphering is already initiated for device '{device}'. Do you want to cancel the pending re-enciphering and start a new re-enciphering process [y/N]?"));
        if !how.batch_mode {
            let mut failed = Output::failure(TOOL, format!("Device '{device}' is left unchanged"));
            failed.stdout = output.stdout;
            return Err(failed);
        }
        output.out("(yes implied because '--batch-mode' | '-q' option is specified)");
    }
    let mk = key.key_type.mk();
    let status = under(world, &machine_apqns(world, mk), mk, &header.active);
    if status == Under::Unknown {
        return Err(Output::failure(
            TOOL,
            format!("The secure encryption key of device '{device}' is not valid"),
        ));
    }
    let is_old = matches!(status, Under::Old(_));
    let from_old = how.from_old || (!how.to_new && is_old);
    let to_new = how.to_new || !from_old;
    if from_old && mk.is_ep11() {
        return Err(Output::failure(
            TOOL,
            "ERROR: an EP11 APQN has no OLD master key register",
        ));
    }
    let mut mkvp = header.active.clone();
    if from_old {
        let Under::Old(apqn) = &status else {
            return Err(Output::failure(
                TOOL,
                "No APQN found that is suitable for re-enciphering the secure encryption key from the OLD to the CURRENT master key.",
            ));
        };
        mkvp = world
            .registers(apqn, mk)
            .and_then(|r| r.current.clone())
            .ok_or_else(|| {
                Output::failure(TOOL, format!("APQN {apqn} has no CURRENT master key"))
            })?;
    }
    if to_new {
        let new = world.new_for(&machine_apqns(world, mk), mk, &mkvp);
        mkvp = new.ok_or_else(|| Output::failure(TOOL, "No APQN found that is suitable for re-enciphering the secure encryption key from the CURRENT to the NEW master key."))?;
    }
    let in_place = (!is_old && how.in_place) || (is_old && !how.staged);
    if in_place {
        if !how.in_place {
            output.out("An in-place re-enciphering is performed.");
        }
        let done = format!("Re-enciphering has completed successfully for device '{device}'");
        activate(
            &mut world.luks2[index],
            mkvp,
            &done,
            how.batch_mode,
            &mut output,
        );
    } else {
        let header = &mut world.luks2[index];
        header.staged = Some(mkvp);
        output.out(format!("Staged re-enciphering is initiated for device '{device}'. After the NEW master key has been set to become the CURRENT master key, run 'zkey-cryptsetup reencipher' with option '--complete' to complete the re-enciphering process."));
    }
    Ok((output, format!("zkey-cryptsetup reencipher {device}")))
}

/// The re-enciphered key becomes the active key slot (`activate_unbound_keyslot`): every key
/// slot of the old key is then unbound, and the tool asks whether to remove them. Only a yes
/// (`--batch-mode`; stdin gives none here) removes them, with every other unbound key slot
/// but the new one; otherwise the header keeps each, the volume key under its old MK.
fn activate(
    header: &mut Luks2Header,
    active: String,
    done: &str,
    batch_mode: bool,
    output: &mut Output,
) {
    let old = std::mem::replace(&mut header.active, active);
    header.staged = None;
    header.unbound.push(old);
    output.out(done);
    output.out("All key slots containing the old volume key are now in unbound state. Do you want to remove these key slots [y/N]?");
    if batch_mode {
        output.out("(yes implied because '--batch-mode' | '-q' option is specified)");
        header.unbound.clear();
    }
}

/// `--complete` (`reencipher_complete`): the staged keyslot becomes the active one once its
/// key is valid, i.e. CURRENT (or OLD, after a question) on a usable APQN.
fn reencipher_complete(
    world: &mut World,
    index: usize,
    key: &ZkeyKey,
    batch_mode: bool,
) -> Result<(Output, String), Output> {
    let header = world.luks2[index].clone();
    let device = &header.device;
    let Some(staged) = header.staged.clone() else {
        return Err(Output::failure(
            TOOL,
            format!("Staged volume key re-enciphering is not pending for device '{device}'"),
        ));
    };
    let mk = key.key_type.mk();
    let mut output = Output::default();
    let mut active = staged.clone();
    match under(world, &machine_apqns(world, mk), mk, &staged) {
        Under::Unknown => {
            let mut failed = Output::failure(
                TOOL,
                format!("The re-enciphered secure volume key for device '{device}' is not valid."),
            );
            failed.err("The new master key might yet have to be set as the CURRENT master key.");
            return Err(failed);
        }
        Under::Old(apqn) => {
            output.out(format!("The re-enciphered secure volume key of device '{device}' is enciphered with the master key from the OLD master key register. The master key might have changed again, before the previous volume key re-enciphering was completed.\nDo you want to re-encipher the secure key with the master key in the CURRENT master key register [y/N]?"));
            if !batch_mode {
                let mut failed = Output::failure(TOOL, "Re-enciphering was aborted");
                failed.stdout = output.stdout;
                return Err(failed);
            }
            output.out("(yes implied because '--batch-mode' | '-q' option is specified)");
            active = world
                .registers(&apqn, mk)
                .and_then(|r| r.current.clone())
                .unwrap_or(staged);
        }
        Under::Current(_) => {}
    }
    let done = format!("Re-enciphering has completed successfully for device '{device}'.");
    activate(
        &mut world.luks2[index],
        active,
        &done,
        batch_mode,
        &mut output,
    );
    Ok((
        output,
        format!("zkey-cryptsetup reencipher {device} --complete"),
    ))
}
