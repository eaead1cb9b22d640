//! The `mkplan` binary: parse the arguments, run the command, map the outcome to an exit code.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let args = match mkplan::cli::Args::try_parse() {
        Ok(args) => args,
        // `--help` and `--version` print to stdout and exit 0. A usage error (an unknown flag,
        // a missing argument) exits 1, not clap's 2: with --detailed-exitcode, 2 means
        // "the plan has changes" and nothing else.
        Err(usage) => {
            let _ = usage.print();
            return ExitCode::from(if usage.exit_code() == 0 { 0 } else { 1 });
        }
    };
    // Two workers: HTTP responses keep arriving while the executor fsyncs its journal.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(mkplan::cli::run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            // Each piece of input in a message is quoted where it is put in; this catches a
            // control character that slipped through anyway. A closed stderr is not a panic.
            let message = format!("error: {}", mkplan::quote::inert(&error.to_string()));
            let message = if mkplan::cli::colour_stderr() {
                mkplan::render::paint::refusal(&message)
            } else {
                message
            };
            let _ = writeln!(std::io::stderr().lock(), "{message}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Rust ignores SIGPIPE, so a write to a closed pipe fails, and `println!`/`eprintln!` panic
/// on it ("failed printing to stdout: Broken pipe"). The reports go through
/// `cli::output`, which ends quietly when its reader goes; this hook covers every other
/// line printed: it ends the process quietly, with exit 1 (the command did not finish), instead
/// of a panic message nobody can read.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        let closed_pipe = message.is_some_and(|message| {
            message.starts_with("failed printing to std") && message.contains("Broken pipe")
        });
        if closed_pipe {
            std::process::exit(1);
        }
        default(info);
    }));
}
