//! `kvrun`: parse the command line, run, map the outcome to an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    kvrun::install_panic_hook();
    let cli = match kvrun::cli::parse(&std::env::args_os().collect::<Vec<_>>()) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit_byte(kvrun::error::ExitCode::USAGE)
            } else {
                0
            });
        }
    };
    // One snapshot of the environment, passed down; kvrun never reads or changes it again.
    #[expect(
        clippy::disallowed_methods,
        reason = "the one place the environment is read"
    )]
    let environment: Vec<_> = std::env::vars_os().collect();
    match kvrun::run(cli, &environment) {
        // A subcommand's status, or the supervised command's (0..=255, 128+N for signal N).
        Ok(code) => ExitCode::from(exit_byte(code)),
        // A closed stdout (`| head -1`) is not worth a word: the reader has what it wanted.
        Err(err @ kvrun::error::Error::StdoutClosed) => ExitCode::from(exit_byte(err.exit_code())),
        Err(err) => {
            eprintln!("{}", kvrun::error::Report(&err));
            ExitCode::from(exit_byte(err.exit_code()))
        }
    }
}

fn exit_byte(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(1)
}
