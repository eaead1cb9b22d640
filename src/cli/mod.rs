//! The command line: clap definitions (raw flags) and the commands, each a thin function that
//! resolves its inputs once (`context`), calls the library, and hands the result to a view.

mod apply;
mod attest;
mod ceremony;
mod context;
mod conventions;
mod drill;
mod early_key_parts;
mod examples;
mod interrupt;
mod keypart;
mod output;
mod password_env;
pub(crate) mod plan;
mod saved_plan;
mod signature_keys;
mod sim;
mod state;
mod state_pull;
mod status;
mod validate;
mod zcrypt;
mod zcrypt_attest;
mod zcrypt_drill;
mod zcrypt_saved;
mod zcrypt_sim;
mod zcrypt_status;

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};

use crate::error::Result;
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "mkplan",
    version = conventions::VERSION,
    about = "Plan and apply HSM master key rotations safely (IBM Cloud Hyper Protect Crypto Services)",
    after_help = "Examples:\n  mkplan plan plans/three-units.yaml      # from the root of a clone\n  mkplan help plan                        # each command's flags and examples\n  mkplan man | man -l -                   # the manual page\nDocs: README.md and docs/ in the repository."
)]
pub struct Args {
    /// Where the journal, the lock and the audit trail are kept: a folder (default `.mkplan`;
    /// `MKPLAN_STATE_DIR` is read too), or a PostgreSQL database a team shares,
    /// `postgres://USER@HOST:PORT/DATABASE` (password from PGPASSWORD or ~/.pgpass).
    #[arg(
        long,
        global = true,
        alias = "state-dir",
        env = "MKPLAN_STATE",
        value_name = "FOLDER|URL",
        hide_env_values = true
    )]
    pub state: Option<String>,
    /// More on stderr: -v each HTTP/TKE request (method, path, status, time), -vv also sizes
    /// and the IAM token exchange. Never a token, API key, password or key part.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors and the report: no notes, no progress.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Colour: auto (on a terminal, off with NO_COLOR; CLICOLOR_FORCE forces it), always,
    /// never.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t)]
    pub color: conventions::ColorWhen,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a desired key-state file, its key part files and its backend, offline and
    /// without touching anything: the backend's spec, and for sim:FLEET.yaml that the fleet
    /// file exists, parses and holds every service instance (no request is sent).
    #[command(after_help = examples::VALIDATE)]
    Validate {
        desired: PathBuf,
        #[command(flatten)]
        backend: BackendArg,
    },
    /// Refresh the live state, diff it against the desired state, and show the checked plan.
    #[command(after_help = examples::PLAN)]
    Plan(PlanArgs),
    /// Run a saved plan, or plan DESIRED.yaml and run it after confirmation; rerun after any
    /// failure to resume.
    #[command(after_help = examples::APPLY)]
    Apply(ApplyArgs),
    /// Journal what the operator saw, to settle an operation whose outcome is unknown.
    #[command(subcommand)]
    Attest(AttestCommand),
    /// The journal in the state directory.
    #[command(subcommand)]
    Journal(JournalCommand),
    /// Release a lock (a state folder's) or a lease (a database's) left by a process that is
    /// gone, by its exact id (`mkplan status` and the refusal name it).
    #[command(after_help = examples::UNLOCK)]
    Unlock { lock_id: String },
    /// The state store named by --state: prepare a team's PostgreSQL database, move a state
    /// folder into it, or export it for archiving.
    #[command(subcommand)]
    State(StateCommand),
    /// The audit trail of applies.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The change window's checklist for a saved plan: every step with its instruction, who
    /// must be present, the state expected afterwards, and how mkplan checks it.
    #[command(after_help = examples::RUNBOOK)]
    Runbook {
        planfile: PathBuf,
        #[arg(long)]
        markdown: bool,
    },
    /// Show a saved plan file.
    #[command(after_help = examples::SHOW)]
    Show {
        planfile: PathBuf,
        #[arg(long, conflicts_with_all = ["markdown", "dot"])]
        json: bool,
        #[arg(long, conflicts_with = "dot")]
        markdown: bool,
        /// The step graph in Graphviz DOT.
        #[arg(long)]
        dot: bool,
    },
    /// The live register table of every crypto unit, like `ibmcloud tke cryptounit-mk`.
    #[command(after_help = examples::STATUS)]
    Status {
        desired: PathBuf,
        #[command(flatten)]
        backend: BackendArg,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        only: InstanceArg,
        /// Also write the live state as a simulator fleet file (for drills), its key storage
        /// inferred from the evidence.
        #[arg(long, value_name = "FILE")]
        export_fleet: Option<PathBuf>,
    },
    /// Rehearse the rotation on copies of a fleet under many seeded fault schedules, and
    /// prove every run ends converged or safely refused with zero incidents.
    #[command(after_help = examples::DRILL)]
    Drill(drill::DrillArgs),
    /// Key part files: create one, or compute the VP that parts combine into.
    #[command(subcommand)]
    Keypart(KeypartCommand),
    /// Smart card readers (PC/SC): names, card presence, ATR.
    #[command(after_help = examples::CARDS)]
    Cards {
        /// Keep watching and print every insertion and removal (Ctrl-C stops).
        #[arg(long)]
        watch: bool,
        #[arg(long, conflicts_with = "watch")]
        json: bool,
    },
    /// The simulators: serve a fleet file over HTTP, or the fake Crypto Express platform.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    #[command(after_help = examples::COMPLETIONS)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page mkplan(1) in roff, or write one page per command into a folder.
    #[command(after_help = examples::MAN)]
    Man {
        /// Write mkplan.1, mkplan-plan.1, … into this folder (created if missing).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve a simulated fleet over an HTTP JSON API laid out like the TKE API
    /// (docs/http-api.md), for `--backend http://HOST:PORT`. Prints its URL on stdout.
    #[command(after_help = examples::SIM_SERVE)]
    Serve(sim::ServeArgs),
    /// Fold the operation log beside a fleet file (FLEET.yaml.oplog, left by an apply or a
    /// `sim serve` that was killed) into the fleet file. Every reader replays the log anyway;
    /// the next apply or `sim serve` compacts it too.
    #[command(after_help = examples::SIM_COMPACT)]
    Compact(sim::CompactArgs),
    /// The fake Linux on IBM Z Crypto Express platform (docs/zcrypt-sim.md): a world of
    /// cards, APQNs and key stores, its fake zkey and openCryptoki tools, and the TKE's
    /// ceremony steps.
    #[command(subcommand)]
    Zcrypt(zcrypt_sim::ZcryptCommand),
    /// Signature keys for rehearsals against `sim serve --protocol tke`.
    #[command(subcommand)]
    Sigkey(SigkeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum SigkeyCommand {
    /// Write a new P-521 signature key file in the TKE CLI's format (as `ibmcloud tke
    /// sigkey-add` writes one), for tests and rehearsals. Prints the administrator's line for
    /// a simulator fleet: its SKI and public_key. Real administrators make their keys with the
    /// TKE CLI.
    #[command(after_help = examples::SIM_SIGKEY_NEW)]
    New {
        /// The file to write (never overwritten).
        file: PathBuf,
        /// The administrator's name, for the fleet line.
        #[arg(long)]
        administrator: String,
        /// The environment variable that holds the file's password (else a prompt).
        #[arg(long, value_name = "VARIABLE")]
        password_env: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Journal what you know about the rewrap of a rotation that the journal cannot settle
    /// (a crash or a lost response; a rotation interrupted after its commits; a rotation run
    /// elsewhere), on a service that reports no rotation status. Bound to the backend, the
    /// instance and the rotation the live registers show.
    #[command(after_help = examples::ATTEST_REWRAP)]
    Rewrap(AttestRewrapArgs),
    /// Journal that the openCryptoki operation a domain group's change relied on was
    /// finalized outside mkplan, when no tool can tell a finalize from a cancel (every APQN
    /// set, no operation open). Only on the syslog's word for every slot: the next plan
    /// takes the tokens' objects as under the new key.
    #[command(after_help = examples::ATTEST_FINALIZED)]
    Finalized(AttestFinalizedArgs),
}

#[derive(Debug, ClapArgs)]
pub struct AttestFinalizedArgs {
    /// The domain group file.
    pub desired: PathBuf,
    /// What showed it finalized: the syslog lines (`Slot N: Concurrent HSM master key change
    /// operation ID is finalized`), or who ran the finalize. Journaled.
    #[arg(long, value_name = "TEXT")]
    pub evidence: String,
    #[command(flatten)]
    pub backend: BackendArg,
}

#[derive(Debug, ClapArgs)]
pub struct AttestRewrapArgs {
    /// The service instance GUID.
    pub instance: String,
    /// The service reported "KMS CRK rewrap successful, waiting on cryptounit-mk-setimm":
    /// the key storage is under the new master key. Only on that evidence: the next plan
    /// sets immediate, which would make the key storage unusable if the rewrap had not run.
    #[arg(long, conflicts_with = "not_run", required_unless_present = "not_run")]
    pub completed: bool,
    /// Nobody sent a rewrap of this rotation (you checked with everyone who can act on the
    /// instance, and the TKE CLI output). Holds until the next apply run begins.
    #[arg(long)]
    pub not_run: bool,
    /// The desired file of the rotation (it names the backend).
    #[arg(long)]
    pub desired: PathBuf,
    /// What the service showed (IBM support's word, the service's status). Journaled. With
    /// --not-run after mkplan's own rewrap went unanswered; with --completed after a rewrap
    /// mkplan did not send ran once this rotation's own had completed.
    #[arg(long, value_name = "TEXT")]
    pub service_evidence: Option<String>,
    #[command(flatten)]
    pub backend: BackendArg,
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Close the journal's open rotation of every instance the live state shows finished
    /// (every current register one key, every new register Empty): older records then say
    /// nothing more about it.
    #[command(after_help = examples::JOURNAL_CLOSE)]
    Close {
        desired: PathBuf,
        #[command(flatten)]
        backend: BackendArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of the audit trail and report the first broken link; and every
    /// domain group journal's seals (or checksums) and chain, naming the file and line.
    #[command(after_help = examples::AUDIT_VERIFY)]
    Verify,
}

#[derive(Debug, ClapArgs)]
pub struct BackendArg {
    /// sim:FLEET.yaml (embedded simulator) or http://HOST:PORT; default: `backend:` in the desired file.
    #[arg(long, env = "MKPLAN_BACKEND")]
    pub backend: Option<String>,
    /// Operations (and requests) in flight at most; operations on one crypto unit always run
    /// one at a time.
    #[arg(long, env = "MKPLAN_PARALLELISM", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..=crate::apply::executor::PARALLELISM_MAX as i64))]
    pub parallelism: u16,
    /// For tke:REGION: another TKE base URL (a private endpoint, or `mkplan sim serve
    /// --protocol tke` for a rehearsal).
    #[arg(long, env = "MKPLAN_TKE_ENDPOINT")]
    pub tke_endpoint: Option<String>,
    /// Not a flag: set for `apply` (unless --manual), which sends the key parts of the desired
    /// file's key part files to an `http://` backend: opening it then applies the rule for
    /// credentials (see `backend::endpoint`).
    #[arg(skip)]
    pub loads_key_parts: bool,
}

/// `--instance ID`, repeatable, like Terraform's `-target`.
#[derive(Debug, Default, ClapArgs)]
pub struct InstanceArg {
    /// Only this service instance of the desired file (repeat for several): only the named
    /// instances are refreshed, planned, applied and shown; the plan names those left out.
    #[arg(long = "instance", value_name = "ID")]
    pub instances: Vec<String>,
}

#[derive(Debug, ClapArgs)]
pub struct ApplyArgs {
    /// A plan file from `plan --out`, or a desired key-state YAML file (named .yaml or .yml,
    /// in any case).
    pub target: PathBuf,
    #[command(flatten)]
    pub backend: BackendArg,
    /// With a plan file: the desired file to check it against instead of the one the plan
    /// file names (same content, or exit 4); it also gives the backend unless --backend does.
    #[arg(long, value_name = "DESIRED.yaml")]
    pub desired: Option<PathBuf>,
    #[command(flatten)]
    pub only: InstanceArg,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Perform every step by hand (TKE CLI or TKE application): mkplan shows each step,
    /// waits for "done" on stdin, and checks the live state before it journals the step.
    #[arg(long)]
    pub manual: bool,
    /// Seconds the live state may take to show a step done by hand.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub verify_timeout_s: u64,
}

#[derive(Debug, ClapArgs)]
pub struct PlanArgs {
    pub desired: PathBuf,
    #[command(flatten)]
    pub backend: BackendArg,
    #[command(flatten)]
    pub only: InstanceArg,
    /// Save the plan (JSON, no secrets) for `show` and `apply`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the plan (or its refusal) as JSON on stdout (docs/json.md).
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print the plan (or its refusal) as Markdown on stdout, for a pull request.
    #[arg(long)]
    pub markdown: bool,
    /// Exit 2 when the plan has changes, 0 when it has none.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeypartCommand {
    /// Create a random 32-byte key part in a new password-protected file; prints its VP.
    #[command(after_help = examples::KEYPART_NEW)]
    New {
        #[arg(long)]
        out: PathBuf,
        /// Environment variable holding the password (otherwise: a prompt on the terminal).
        #[arg(long)]
        password_env: Option<String>,
    },
    /// Print the VP of the master key that these key part files combine into.
    #[command(after_help = examples::KEYPART_VP)]
    Vp {
        #[arg(required = true, num_args = 2..=3)]
        files: Vec<PathBuf>,
        /// Environment variable holding a password: once for all files, or once per file in order.
        #[arg(long)]
        password_env: Vec<String>,
    },
}

/// The state folder when none is named.
pub const STATE_DIR_DEFAULT: &str = ".mkplan";

impl Args {
    /// The store `--state` names, else `MKPLAN_STATE_DIR`, else `.mkplan`.
    pub fn store(&self) -> Result<Store> {
        let named = self
            .state
            .clone()
            .or_else(|| {
                std::env::var("MKPLAN_STATE_DIR")
                    .ok()
                    .filter(|s| !s.is_empty())
            })
            .unwrap_or_else(|| STATE_DIR_DEFAULT.into());
        Store::parse(&named).map_err(crate::error::Error::Other)
    }
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Create or upgrade mkplan's schema in the database (every command also does it on
    /// first use; a database with a newer schema is refused).
    #[command(after_help = examples::STATE_INIT)]
    Init,
    /// Move a state folder's journal and audit trail into the database: refused unless your
    /// journal key vouches for every record, they are about one backend, and the database
    /// holds nothing of that backend yet.
    #[command(after_help = examples::STATE_PUSH)]
    Push {
        /// The state folder to move (it is left as it is, as an archive).
        #[arg(long)]
        from: PathBuf,
    },
    /// Export every journal and audit trail of the database, domain groups' too, to a new
    /// folder, for archiving.
    #[command(after_help = examples::STATE_PULL)]
    Pull {
        /// A folder that does not exist yet.
        #[arg(long)]
        to: PathBuf,
    },
}

pub use conventions::{colour_stderr, quiet};

pub async fn run(args: Args) -> Result<u8> {
    conventions::setup(args.color, args.verbose, args.quiet);
    let store = args.store()?;
    match args.command {
        // A domain group file (first key `domain_group:`) goes to the zcrypt: commands.
        Command::Validate { desired, .. } if zcrypt::is_group_file(&desired) => {
            zcrypt::validate(&desired)
        }
        Command::Validate { desired, backend } => validate::validate(&desired, &backend).await,
        Command::Plan(plan_args) if zcrypt::is_group_file(&plan_args.desired) => {
            zcrypt::plan(&plan_args, &store).await
        }
        Command::Plan(plan_args) => plan::plan(&plan_args, &store).await,
        // A domain group's saved plan, before its group file: `apply PLANFILE --desired
        // GROUP.yaml` checks the plan against that file.
        Command::Apply(apply_args) if zcrypt_saved::is_group_plan_file(&apply_args.target) => {
            zcrypt_saved::apply_saved(&apply_args.target, &apply_args, &store).await
        }
        Command::Apply(apply_args)
            if zcrypt::is_group_file(apply_args.desired.as_ref().unwrap_or(&apply_args.target)) =>
        {
            zcrypt::apply(&apply_args, &store).await
        }
        Command::Apply(mut apply_args) => {
            apply_args.backend.loads_key_parts = !apply_args.manual;
            apply::apply(&apply_args, &store).await
        }
        Command::Attest(AttestCommand::Rewrap(attest_args)) => {
            attest::attest_rewrap(&attest_args, &store).await
        }
        Command::Attest(AttestCommand::Finalized(attest_args)) => {
            zcrypt_attest::attest_finalized(&attest_args, &store)
        }
        Command::Journal(JournalCommand::Close { desired, backend }) => {
            attest::journal_close(&desired, &backend, &store).await
        }
        Command::Unlock { lock_id } => apply::unlock(&lock_id, &store),
        Command::State(StateCommand::Init) => state::init(&store),
        Command::State(StateCommand::Push { from }) => state::push(&store, &from),
        Command::State(StateCommand::Pull { to }) => state_pull::pull(&store, &to),
        Command::Audit(AuditCommand::Verify) => apply::audit_verify(&store),
        // A group's ceremony steps are shown by `show` and walked through by `apply`.
        Command::Runbook { planfile, .. } if zcrypt_saved::is_group_plan_file(&planfile) => {
            Err(crate::error::Error::Other(format!(
                "{} is a domain group's plan, and `runbook` writes the checklist of an HPCS rotation only.\n  fix: `mkplan show {} --markdown` shows its steps, ceremony steps included, for a change ticket; `mkplan apply` shows each ceremony step's instructions when it comes to it",
                planfile.display(),
                planfile.display()
            )))
        }
        Command::Runbook { planfile, markdown } => plan::runbook(&planfile, markdown),
        Command::Show {
            planfile,
            json,
            markdown,
            dot,
        } if zcrypt_saved::is_group_plan_file(&planfile) => {
            zcrypt_saved::show(&planfile, json, markdown, dot)
        }
        Command::Show {
            planfile,
            json,
            markdown,
            dot,
        } => plan::show(&planfile, json, markdown, dot),
        Command::Status {
            desired,
            backend,
            json,
            ..
        } if zcrypt::is_group_file(&desired) => {
            zcrypt_status::status(&desired, &backend, json, &store).await
        }
        Command::Status {
            desired,
            backend,
            json,
            only,
            export_fleet,
        } => {
            status::status(
                &desired,
                &backend,
                json,
                &only.instances,
                export_fleet.as_deref(),
                &store,
            )
            .await
        }
        Command::Drill(drill_args) if zcrypt::is_group_file(&drill_args.desired) => {
            zcrypt_drill::drill(&drill_args)
        }
        Command::Drill(drill_args) => drill::drill(&drill_args, &store).await,
        Command::Keypart(KeypartCommand::New { out, password_env }) => {
            keypart::new(&out, password_env.as_deref())
        }
        Command::Keypart(KeypartCommand::Vp {
            files,
            password_env,
        }) => keypart::vp(&files, &password_env),
        Command::Sim(SimCommand::Serve(serve)) => sim::serve(serve).await,
        Command::Sim(SimCommand::Zcrypt(zcrypt)) => zcrypt_sim::run(zcrypt),
        Command::Sim(SimCommand::Sigkey(SigkeyCommand::New {
            file,
            administrator,
            password_env,
        })) => keypart::new_signature_key(&file, &administrator, password_env.as_deref()),
        Command::Sim(SimCommand::Compact(compact)) => sim::compact(&compact),
        Command::Cards { watch, json } => ceremony::cards(watch, json).await,
        Command::Completions { shell } => conventions::completions(shell),
        Command::Man { out } => conventions::man(out.as_deref()),
    }
}
