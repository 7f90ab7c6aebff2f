//! kvrun starts a program with its Azure Key Vault secrets in its environment.
//!
//! The pipeline, one module per stage:
//!
//! 1. [`cli`]: the command line (every option also a `KVRUN_*` variable); [`commands`]: one
//!    module per subcommand, which runs the stages below;
//! 2. [`source`]: read the inherited environment, `.env` files and `kvrun.toml` — nothing else;
//! 3. [`plan`]: layer them, classify each winning value with the [`reference`] grammar, dedupe the
//!    secrets — all before any network call, so bad input fails in milliseconds;
//! 4. [`resolve`]: fetch every distinct secret concurrently through [`vault`] (challenge auth,
//!    tokens from Entra ID), collecting every failure;
//! 5. [`launch`]: if anything required failed, report it all and start nothing; otherwise build the
//!    child's environment and `exec` the command, keeping kvrun's PID.
//!
//! No async runtime is built when there is nothing to fetch.

pub mod appconfig;
pub mod bundle;
pub(crate) mod children;
pub mod cli;
pub(crate) mod commands;
pub mod error;
pub mod field;
pub mod http;
pub(crate) mod jitter;
pub(crate) mod launch;
pub mod names;
pub mod part;
pub mod pick;
pub(crate) mod plan;
pub mod reference;
pub(crate) mod resolve;
pub(crate) mod settings;
pub mod source;
pub(crate) mod time;
pub(crate) mod timing;
pub mod vault;

use std::ffi::OsString;

use cli::{Cli, Command};
use error::Error;

/// A panic is a bug in kvrun, in whichever thread: print it (the standard message: where, and the
/// panic's own text, which never holds a value) and exit 70, as the exit-code table says. The
/// release profile aborts on panic instead of unwinding, so no destructor runs: under `--init` the
/// hook itself kills the command and removes the secret directory first
/// ([`launch::panic_guard`]), so that a supervisor never dies before its child or leaves a secret
/// file behind.
pub fn install_panic_hook() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        #[cfg(target_os = "linux")]
        launch::panic_guard::after_panic();
        std::process::exit(error::ExitCode::INTERNAL);
    }));
}

/// Run kvrun: the exit code of a subcommand, or (in supervisor mode) of the command. In exec mode
/// a successful run never returns.
///
/// # Errors
/// Every failure, with its exit code.
pub fn run(cli: Cli, environment: &[(OsString, OsString)]) -> Result<i32, Error> {
    let verbose = match &cli.subcommand {
        Some(Command::Export { run, .. } | Command::Check { run, .. }) => run.verbose,
        _ => cli.run.verbose,
    };
    init_logging(&settings::Log::new(verbose, environment));
    match cli.subcommand {
        Some(Command::Parse { ids }) => commands::parse::parse_ids(&ids).map(|()| 0),
        Some(Command::Export { format, run }) => {
            let settings = settings::Settings::new(&run, environment)?;
            commands::export::export(format, &settings, environment).map(|()| 0)
        }
        Some(Command::Check { json, run }) => {
            let settings = settings::Settings::new(&run, environment)?;
            commands::check::check(json, &settings, environment).map(|()| 0)
        }
        Some(Command::Completions { shell }) => commands::generate::completions(shell).map(|()| 0),
        Some(Command::Man) => commands::generate::man().map(|()| 0),
        None => {
            let settings = settings::Settings::new(&cli.run, environment)?;
            // Supervisor mode blocks the signals it forwards before any thread exists (nothing
            // above starts one), so that no thread runs a handler for them.
            #[cfg(target_os = "linux")]
            let signals = if settings.supervise.enabled {
                Some(launch::supervise::block_signals()?)
            } else {
                None
            };
            #[cfg(not(target_os = "linux"))]
            if settings.supervise.enabled {
                return Err(Error::Usage("--init and --watch need Linux".into()));
            }
            commands::run::run(
                &cli.command,
                &settings,
                environment,
                #[cfg(target_os = "linux")]
                signals,
            )
        }
    }
}

fn init_logging(log: &settings::Log) {
    use std::io::IsTerminal as _;
    // Colours only for a person at a terminal, and never when NO_COLOR is set (no-color.org).
    let ansi = std::io::stderr().is_terminal() && !log.no_color;
    // KVRUN_LOG takes a full filter (`trace`, `kvrun=debug,hyper=trace`) for debugging below
    // kvrun; the no-leak test runs with `trace`, every crate included.
    let custom = log.filter.as_deref();
    let level = match log.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    // By default only kvrun's own events; KVRUN_LOG opens the crates below, for debugging.
    let filter = tracing_subscriber::EnvFilter::new(
        custom.map_or_else(|| format!("kvrun={level}"), str::to_owned),
    );
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(ansi)
        .with_env_filter(filter)
        .try_init();
}
