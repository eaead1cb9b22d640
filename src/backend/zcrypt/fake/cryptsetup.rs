//! The fake `zkey-cryptsetup reencipher DEVICE`: re-enciphers the copy of the secure volume
//! key in a LUKS2 header (zcrypt.md §4.2). `--staged` (the default for CURRENT→NEW) puts the
//! new copy in an unbound keyslot; `--complete` makes it the active one; `--in-place` replaces
//! the active copy at once; `--from-old` (CCA) moves it from OLD to CURRENT. The messages
//! follow zkey's; the exact texts of zkey-cryptsetup are not in our sources.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use super::incidents::mixed_groups;
use super::world::same_mk;
use super::zkey::{Under, under};
use super::{Output, Session, parse_args};

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
        #[arg(short = 'p', long, conflicts_with_all = ["to_new", "from_old"])]
        complete: bool,
        /// The LUKS2 passphrase's file (read by the real tool; not needed here).
        #[arg(short = 'd', long)]
        key_file: Option<PathBuf>,
        #[arg(short = 'q', long)]
        batch_mode: bool,
    },
}

pub fn run(dir: &Path, args: &[String]) -> Output {
    let parsed: ZkeyCryptsetup = match parse_args("zkey-cryptsetup", args) {
        Ok(parsed) => parsed,
        Err(output) => return output,
    };
    if let Err(output) = super::zkey::check_environment(dir, "zkey-cryptsetup") {
        return output;
    }
    let Command::Reencipher {
        device,
        to_new,
        from_old,
        in_place,
        complete,
        ..
    } = parsed.command;
    let tool = "zkey-cryptsetup";
    let mut session = match Session::open(dir, "zkey-cryptsetup reencipher") {
        Ok(session) => session,
        Err(message) => return Output::failure(tool, message),
    };
    let world = &mut session.world;
    let Some(index) = world.luks2.iter().position(|h| h.device == device) else {
        return Output::failure(
            tool,
            format!(
                "Device '{device}' is not a LUKS2 volume with a secure volume key of the zkey repository"
            ),
        );
    };
    let header = world.luks2[index].clone();
    let Some(key) = world
        .keys
        .iter()
        .find(|k| k.name == header.key_name)
        .cloned()
    else {
        return Output::failure(
            tool,
            format!("Device '{device}': its key is not in the repository"),
        );
    };
    let mk = key.key_type.mk();
    let mut output = Output::default();
    let action;
    if complete {
        let Some(staged) = header.staged.clone() else {
            return Output::failure(
                tool,
                format!("Staged re-enciphering is not pending for device '{device}'"),
            );
        };
        if under(world, &key.apqns, mk, &staged) == Under::Unknown {
            let mut output = Output::failure(
                tool,
                format!(
                    "The re-enciphered secure volume key of device '{device}' is not valid, re-enciphering is not completed"
                ),
            );
            output.err(format!(
                "{tool}: The new master key might yet have to be set as the CURRENT master key."
            ));
            return output;
        }
        world.luks2[index].active = staged;
        world.luks2[index].staged = None;
        output.out(format!(
            "Staged re-enciphering is completed for device '{device}'"
        ));
        action = format!("zkey-cryptsetup reencipher {device} --complete");
    } else {
        let status = under(world, &key.apqns, mk, &header.active);
        if status == Under::Unknown {
            return Output::failure(
                tool,
                format!(
                    "The secure volume key of device '{device}' is not valid, it is not re-enciphered"
                ),
            );
        }
        let from_old = from_old || (!to_new && matches!(status, Under::Old(_)));
        let to_new = to_new || !from_old;
        if from_old && mk.is_ep11() {
            return Output::failure(tool, "ERROR: an EP11 APQN has no OLD master key register");
        }
        if matches!(status, Under::Old(_)) && !from_old {
            return Output::failure(
                tool,
                format!(
                    "The secure volume key of device '{device}' is enciphered with the OLD master key: use option '--from-old'"
                ),
            );
        }
        let mut mkvp = header.active.clone();
        if let (true, Under::Old(apqn)) = (from_old, &status) {
            let Some(current) = world.registers(apqn, mk).and_then(|r| r.current.clone()) else {
                return Output::failure(tool, format!("APQN {apqn} has no CURRENT master key"));
            };
            mkvp = current;
        }
        let mut staged = None;
        if to_new {
            let target = key
                .apqns
                .iter()
                .filter(|a| world.usable(a, mk))
                .find_map(|apqn| {
                    let regs = world.registers(apqn, mk)?;
                    regs.current
                        .as_deref()
                        .filter(|c| same_mk(c, &mkvp))
                        .and(regs.new.ready().map(str::to_string))
                });
            let Some(new) = target else {
                return Output::failure(
                    tool,
                    "No APQN found that is suitable for re-enciphering this secure AES key and has the NEW master key loaded",
                );
            };
            if in_place {
                mkvp = new;
            } else {
                staged = Some(new);
            }
        }
        world.luks2[index].active = mkvp;
        if staged.is_some() {
            world.luks2[index].staged = staged;
            output.out(format!(
                "Staged re-enciphering is initiated for device '{device}'. After the NEW master key has been set to become the CURRENT master key run 'zkey-cryptsetup reencipher' with option '--complete' to complete the re-enciphering process"
            ));
        } else {
            output.out(format!(
                "The secure volume key of device '{device}' is re-enciphered"
            ));
        }
        action = format!("zkey-cryptsetup reencipher {device}");
    }
    let groups = [(format!("LUKS2 volume {device}"), mk, key.apqns.clone())];
    let warnings = mixed_groups(&session.world, &action, &groups);
    if let Err(message) = session.commit(&action, &warnings) {
        return Output::failure(tool, message);
    }
    output
}
