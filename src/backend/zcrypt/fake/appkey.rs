//! The fake `appkey`: a declared application key store (zcrypt.md §4.4 (inf): secure keys an
//! application keeps itself, invisible to zkey and openCryptoki, which the operator declares
//! with a command and a check). Not a real tool: a stand-in for such a command, with zkey's
//! rules. `appkey check NAME` exits 0 while the key is valid (under CURRENT, or OLD for CCA);
//! `appkey mkvps NAME` prints the MKVP of each copy as a group file's `check` must
//! (`active: VP`, and `staged: VP` while staged), exit 0 whatever they are under;
//! `appkey reencipher NAME --to-new [--in-place] | --from-old | --complete` moves it.

use std::path::Path;

use clap::{Parser, Subcommand};

use super::zkey::{Under, under};
use super::{Output, Session, parse_args};

const TOOL: &str = "appkey";

#[derive(Parser)]
#[command(
    name = "appkey",
    about = "A declared application key (mkplan's zcrypt simulator)"
)]
struct AppKey {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Exit 0 while the key is valid; print the MK of each copy.
    Check { name: String },
    /// Print `active: VP` and, while staged, `staged: VP`: a group file's `check`.
    Mkvps { name: String },
    /// Re-encipher the key: CURRENT→NEW (staged unless --in-place), OLD→CURRENT, or complete.
    Reencipher {
        name: String,
        #[arg(long, conflicts_with_all = ["from_old", "complete"])]
        to_new: bool,
        #[arg(long, conflicts_with = "complete")]
        from_old: bool,
        #[arg(long, requires = "to_new")]
        in_place: bool,
        #[arg(long)]
        complete: bool,
    },
}

pub fn run(dir: &Path, args: &[String]) -> Output {
    let parsed: AppKey = match parse_args(TOOL, args) {
        Ok(parsed) => parsed,
        Err(output) => return output,
    };
    let (label, name) = match &parsed.command {
        Command::Check { name } => ("appkey check", name.clone()),
        Command::Mkvps { name } => ("appkey mkvps", name.clone()),
        Command::Reencipher { name, .. } => ("appkey reencipher", name.clone()),
    };
    let mut session = match Session::open(dir, label) {
        Ok(session) => session,
        Err(message) => return Output::failure(TOOL, message),
    };
    let Some(index) = session
        .world
        .applications
        .iter()
        .position(|a| a.name == name)
    else {
        return Output::failure(TOOL, format!("no application key '{name}' in this world"));
    };
    let key = session.world.applications[index].clone();
    let world = &session.world;
    let status = under(world, &key.apqns, key.mk, &key.mkvp);
    let mut output = Output::default();
    let action = match parsed.command {
        Command::Check { .. } => {
            output.out(match &status {
                Under::Current(_) => {
                    format!("{name}: valid, CURRENT master key (MKVP: {})", key.mkvp)
                }
                Under::Old(_) => format!("{name}: valid, OLD master key (MKVP: {})", key.mkvp),
                Under::Unknown => format!("{name}: invalid (MKVP: {})", key.mkvp),
            });
            if let Some(staged) = &key.staged {
                output.out(format!("{name}: staged copy (MKVP: {staged})"));
            }
            output.code = u8::from(status == Under::Unknown);
            return output;
        }
        Command::Mkvps { .. } => {
            output.out(format!("active: {}", key.mkvp));
            if let Some(staged) = &key.staged {
                output.out(format!("staged: {staged}"));
            }
            return output;
        }
        Command::Reencipher { complete: true, .. } => {
            let Some(staged) = key.staged.clone() else {
                return Output::failure(TOOL, format!("no staged copy of '{name}' to complete"));
            };
            if under(world, &key.apqns, key.mk, &staged) == Under::Unknown {
                return Output::failure(
                    TOOL,
                    format!(
                        "the staged copy of '{name}' is not valid yet: set the new master key first"
                    ),
                );
            }
            let app = &mut session.world.applications[index];
            app.mkvp = staged;
            app.staged = None;
            format!("appkey reencipher {name} --complete")
        }
        Command::Reencipher { from_old: true, .. } => {
            let Under::Old(apqn) = &status else {
                return Output::failure(TOOL, format!("'{name}' is not under an OLD master key"));
            };
            let current = world
                .registers(apqn, key.mk)
                .and_then(|r| r.current.clone());
            session.world.applications[index].mkvp = current.expect("an OLD implies a set");
            format!("appkey reencipher {name} --from-old")
        }
        Command::Reencipher { in_place, .. } => {
            let Under::Current(_) = status else {
                return Output::failure(
                    TOOL,
                    format!("'{name}' is not valid under a CURRENT master key"),
                );
            };
            let target = world.new_for(&key.apqns, key.mk, &key.mkvp);
            let Some(new) = target else {
                return Output::failure(TOOL, "no APQN has the NEW master key loaded and ready");
            };
            let app = &mut session.world.applications[index];
            if in_place {
                app.mkvp = new;
            } else {
                app.staged = Some(new);
            }
            format!("appkey reencipher {name} --to-new")
        }
    };
    if let Err(message) = session.commit(&action, &[]) {
        return Output::failure(TOOL, message);
    }
    output.out(format!("{action}: done"));
    output
}
