//! `loadtest`: measures a Mercure hub over HTTP. See `loadtest --help`.

use std::process::ExitCode;
use std::time::Duration;

use loadtest::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::try_parse_checked(std::env::args_os()).unwrap_or_else(|error| error.exit());

    // Each subscription is one socket: allow as many as the hard limit lets us.
    if let Err(error) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: could not raise the open-file limit: {error}");
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(loadtest::run(cli));
    // Tasks still blocked on a stuck hub must not hold the process open.
    runtime.shutdown_timeout(Duration::from_secs(1));

    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
