//! `mkplan sim zcrypt …`: the fake Crypto Express platform (src/backend/zcrypt/fake): create a
//! world, run the fake tools (hidden: `DIR/bin` scripts exec them), perform the TKE's
//! ceremony steps, and show the incidents.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Subcommand};

use crate::backend::zcrypt::fake::{self, ceremony, incidents, init::InitError, world::Mk};
use crate::error::{Error, Result};

const INIT_EXAMPLES: &str = "\
Examples:
  mkplan sim zcrypt init zworld --world plans/zcrypt-world.yaml
  export SYSFS_ROOT=$PWD/zworld/sys ZKEY_REPOSITORY=$PWD/zworld/zkey PATH=$PWD/zworld/bin:$PATH";

const TOOL_EXAMPLES: &str = "\
Examples:
  SYSFS_ROOT=zworld/sys ZKEY_REPOSITORY=zworld/zkey \\
      mkplan sim zcrypt tool zkey --world-dir zworld validate
  zworld/bin/pkcshsm_mk_change list     # the same, through the script init wrote";

const TKE_EXAMPLES: &str = "\
Examples:
  mkplan sim zcrypt tke --world-dir zworld load --apqns 03.0006,04.0006 --type EP11 \\
      --vp b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2
  mkplan sim zcrypt tke --world-dir zworld commit --apqns 03.0006,04.0006 --type EP11
  mkplan sim zcrypt tke --world-dir zworld load --apqns 05.0006 --type AES --part first";

const INCIDENTS_EXAMPLES: &str = "\
Examples:
  mkplan sim zcrypt incidents --world-dir zworld          # exit 0: no key lost
  mkplan sim zcrypt incidents --world-dir zworld --json";

#[derive(Debug, Subcommand)]
pub enum ZcryptCommand {
    /// Create a world folder from a world file: DIR/sys (sysfs, for SYSFS_ROOT), DIR/zkey (the
    /// zkey repository, for ZKEY_REPOSITORY), DIR/opencryptoki (token configs), DIR/bin (the
    /// fake zkey, zkey-cryptsetup and pkcshsm_mk_change) and DIR/world.json (the truth).
    #[command(after_help = INIT_EXAMPLES)]
    Init {
        dir: PathBuf,
        #[arg(long, value_name = "WORLD.yaml")]
        world: PathBuf,
    },
    /// Run a fake tool (what DIR/bin/NAME execs).
    #[command(hide = true, after_help = TOOL_EXAMPLES)]
    Tool {
        name: String,
        #[arg(long)]
        world_dir: PathBuf,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Perform a ceremony step on APQNs, as the TKE (or panel.exe for CCA) would.
    #[command(after_help = TKE_EXAMPLES)]
    Tke(TkeArgs),
    /// The keys the world lost (DIR/incidents) and its warnings; exit 0 when none was lost,
    /// 1 otherwise.
    #[command(after_help = INCIDENTS_EXAMPLES)]
    Incidents {
        #[arg(long)]
        world_dir: PathBuf,
        /// One JSON object a line, the incidents only.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, ClapArgs)]
pub struct TkeArgs {
    #[arg(long)]
    pub world_dir: PathBuf,
    #[arg(value_enum)]
    pub action: ceremony::Action,
    /// The APQNs, comma-separated: 03.0006,04.0006.
    #[arg(long, required = true, value_delimiter = ',')]
    pub apqns: Vec<String>,
    /// The master key type: EP11 (the wrapping key), AES, APKA, ASYM or SYM.
    #[arg(long = "type", value_name = "TYPE")]
    pub mk_type: String,
    /// The new master key's verification pattern, in hex: EP11 64 digits, AES, APKA and
    /// SYM 16, ASYM 32. Needed by load (the last part for CCA); checked by commit and set.
    #[arg(long)]
    pub vp: Option<String>,
    /// CCA load: which key part (first, middle, last); none loads a whole key.
    #[arg(long, value_enum)]
    pub part: Option<ceremony::Part>,
}

pub fn run(command: ZcryptCommand) -> Result<u8> {
    match command {
        ZcryptCommand::Init { dir, world } => {
            let mkplan = std::env::current_exe()
                .map_err(|e| Error::Other(format!("cannot find the mkplan binary: {e}")))?;
            match fake::init::init(&dir, &world, &mkplan) {
                Ok(world) => {
                    eprintln!(
                        "A world of {} cards, {} zkey keys and {} openCryptoki tokens in {}. Point the tools at it:\n  export SYSFS_ROOT={dir}/sys ZKEY_REPOSITORY={dir}/zkey PATH={dir}/bin:$PATH",
                        world.cards.len(),
                        world.keys.len(),
                        world.tokens.len(),
                        crate::quote::path(&dir),
                        dir = std::path::absolute(&dir).unwrap_or(dir.clone()).display()
                    );
                    Ok(0)
                }
                Err(InitError::Input(e)) => Err(Error::Input(e)),
                Err(InitError::Other(e)) => Err(Error::Other(e)),
            }
        }
        ZcryptCommand::Tool {
            name,
            world_dir,
            args,
        } => {
            let output = fake::run_tool(&name, &world_dir, &args);
            output.print();
            Ok(output.code)
        }
        ZcryptCommand::Tke(args) => {
            let mk = Mk::parse(&args.mk_type).ok_or_else(|| {
                Error::Other(format!(
                    "--type {}: one of EP11, AES, APKA, ASYM, SYM",
                    crate::quote::quote(&args.mk_type)
                ))
            })?;
            let output = ceremony::run(
                &args.world_dir,
                &ceremony::Request {
                    action: args.action,
                    apqns: args.apqns,
                    mk,
                    vp: args.vp,
                    part: args.part,
                },
            );
            output.print();
            Ok(output.code)
        }
        ZcryptCommand::Incidents { world_dir, json } => {
            let (lost, warnings) = incidents::recorded(&world_dir).map_err(Error::Other)?;
            if json {
                for incident in &lost {
                    println!("{}", serde_json::to_string(incident).expect("serializes"));
                }
            } else {
                for incident in &lost {
                    println!(
                        "INCIDENT {} {}: {} (master key {}), after `{}`",
                        incident.store,
                        incident.key,
                        incident.description,
                        incident.mk.join(" / "),
                        incident.action
                    );
                }
                for warning in &warnings {
                    println!(
                        "warning {}: {}, after `{}`",
                        warning.key, warning.description, warning.action
                    );
                }
                println!("{} keys lost, {} warnings", lost.len(), warnings.len());
            }
            Ok(u8::from(!lost.is_empty()))
        }
    }
}
