//! The `mkplan` binary: parse the arguments, run the command, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = mkplan::cli::Args::parse();
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
            // control character that slipped through anyway.
            eprintln!("error: {}", mkplan::quote::inert(&error.to_string()));
            ExitCode::from(error.exit_code())
        }
    }
}
