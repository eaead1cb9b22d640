//! The conventions operators bring from other command-line tools: shell completions, man pages,
//! `-v`/`-q`, colour that goes off when piped or with `NO_COLOR`, and `--version` with the
//! commit it was built from.
//!
//! The choices are made once, from the global flags, before a command runs; the views ask
//! `colour_stdout`/`colour_stderr` and `quiet` instead of reading flags.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{CommandFactory, ValueEnum};

use super::output;
use crate::error::{Error, Result};

/// `mkplan --version`: the package version and the commit (build.rs; "-dirty" when the tree
/// had changes, "unknown" outside git).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MKPLAN_COMMIT"),
    ")"
);

/// `--color WHEN`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless NO_COLOR is set (CLICOLOR_FORCE forces it on).
    #[default]
    Auto,
    Always,
    Never,
}

static COLOUR_STDOUT: AtomicBool = AtomicBool::new(false);
static COLOUR_STDERR: AtomicBool = AtomicBool::new(false);
static QUIET: AtomicBool = AtomicBool::new(false);

/// Resolves the global flags once: colour per stream, quiet, and the `-v` log of requests.
pub fn setup(color: ColorWhen, verbose: u8, quiet: bool) {
    COLOUR_STDOUT.store(
        wants_colour(color, std::io::stdout().is_terminal()),
        Ordering::Relaxed,
    );
    COLOUR_STDERR.store(
        wants_colour(color, std::io::stderr().is_terminal()),
        Ordering::Relaxed,
    );
    QUIET.store(quiet, Ordering::Relaxed);
    log_requests(verbose);
}

/// Whether the report on stdout may carry colour.
pub fn colour_stdout() -> bool {
    COLOUR_STDOUT.load(Ordering::Relaxed)
}

/// Whether stderr (errors, apply's plan and progress) may carry colour.
pub fn colour_stderr() -> bool {
    COLOUR_STDERR.load(Ordering::Relaxed)
}

/// `-q`: only errors and the report; no notes, progress or other diagnostics.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// The width of the terminal stdout goes to, if it goes to one: tables are fitted to it.
pub fn terminal_width() -> Option<u16> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    terminal_size::terminal_size().map(|(terminal_size::Width(width), _)| width)
}

/// The usual rules (no-color.org, bixense.com/clicolors): an explicit `--color` wins, then
/// `NO_COLOR` (set, whatever its value) turns colour off, `CLICOLOR_FORCE` (not "0") turns it
/// on, and otherwise a terminal that is not "dumb" gets it.
fn wants_colour(color: ColorWhen, terminal: bool) -> bool {
    match color {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            if std::env::var_os("NO_COLOR").is_some() {
                false
            } else if std::env::var_os("CLICOLOR_FORCE").is_some_and(|v| v != "0") {
                true
            } else {
                terminal && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
            }
        }
    }
}

/// `-v`: the HTTP and TKE requests on stderr (method, URL path, status, time); `-vv` adds
/// their sizes and the IAM token exchange's steps; `-vvv` everything mkplan traces. Only
/// mkplan's own events: the HTTP and TLS crates' logs could show headers. The request sites
/// (`backend::http`, `backend::tke`) never put a body, a token or a header value in an event.
fn log_requests(verbose: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let level = match verbose {
        0 => return,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(colour_stderr())
                .with_target(false)
                .without_time(),
        )
        .with(Targets::new().with_target("mkplan", level))
        .try_init();
}

/// `mkplan completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut command = super::Args::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "mkplan", &mut script);
    output::report(&String::from_utf8_lossy(&script))?;
    Ok(0)
}

/// `mkplan man`: the page mkplan(1) in roff on stdout; with `--out DIR`, one page per command
/// (mkplan.1, mkplan-plan.1, mkplan-attest-rewrap.1, …) written into DIR, as git and cargo
/// install theirs.
pub fn man(out: Option<&Path>) -> Result<u8> {
    let command = super::Args::command();
    let Some(dir) = out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut page)
            .map_err(|e| Error::Other(format!("cannot render the man page: {e}")))?;
        output::report(&String::from_utf8_lossy(&page))?;
        return Ok(0);
    };
    let cannot = |e: std::io::Error| {
        Error::Other(format!(
            "cannot write the man pages into {}: {e}; name a folder you can write, e.g. --out man/",
            crate::quote::name(&dir.display().to_string())
        ))
    };
    std::fs::create_dir_all(dir).map_err(cannot)?;
    clap_mangen::generate_to(command, dir).map_err(cannot)?;
    let pages = std::fs::read_dir(dir)
        .map_err(cannot)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".1"))
        .count();
    output::note(&format!(
        "Wrote {pages} man pages into {}: `man -l {}/mkplan.1`, or add the folder's parent to MANPATH.",
        dir.display(),
        dir.display()
    ));
    Ok(0)
}
