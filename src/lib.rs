//! kvrun starts a program with its Azure Key Vault secrets in its environment.
//!
//! The pipeline, one module per stage:
//!
//! 1. [`cli`]: the command line (every option also a `KVRUN_*` variable);
//! 2. [`source`]: read the inherited environment, `.env` files and `kvrun.toml` — nothing else;
//! 3. [`plan`]: layer them, classify each winning value with the [`reference`] grammar, dedupe the
//!    secrets — all before any network call, so bad input fails in milliseconds;
//! 4. [`resolve`]: fetch every distinct secret concurrently through [`vault`] (challenge auth,
//!    tokens from Entra ID), collecting every failure;
//! 5. [`launch`]: if anything required failed, report it all and start nothing; otherwise build the
//!    child's environment and `exec` the command, keeping kvrun's PID.
//!
//! No async runtime is built when there is nothing to fetch.

pub mod cli;
pub mod error;
pub mod launch;
pub mod plan;
pub mod reference;
pub mod resolve;
pub mod source;
pub mod vault;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cli::{Cli, Command, RunArgs};
use error::{Error, Failure, FailureClass};
use plan::{DotEnvFile, Part, Plan, Value};
use reference::VaultHosts;
use resolve::Outcome;

/// Run kvrun. Returns only on failure or after a subcommand; a successful run execs.
///
/// # Errors
/// Every failure, with its exit code.
pub fn run(cli: Cli, environment: &[(OsString, OsString)]) -> Result<(), Error> {
    init_logging(cli.run.verbose, environment);
    match cli.subcommand {
        Some(Command::Parse { ids }) => parse_ids(&ids),
        None => {
            if cli.command.is_empty() {
                return Err(Error::Usage(
                    "no command given: write kvrun [OPTIONS] -- COMMAND [ARGS]...".into(),
                ));
            }
            let child_env = prepare(&cli.run, environment)?;
            Err(launch::exec(&cli.command, child_env))
        }
    }
}

fn init_logging(verbose: u8, environment: &[(OsString, OsString)]) {
    use std::io::IsTerminal as _;
    // Colours only for a person at a terminal, and never when NO_COLOR is set (no-color.org).
    let ansi =
        std::io::stderr().is_terminal() && source::Env(environment).get("NO_COLOR").is_none();
    // KVRUN_LOG takes a full filter (`trace`, `kvrun=debug,hyper=trace`) for debugging below
    // kvrun; the no-leak test runs with `trace`, every crate included.
    let custom = source::Env(environment).get("KVRUN_LOG");
    let level = match verbose {
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

/// `kvrun parse`: one JSON object per identifier; errors after all of them.
fn parse_ids(ids: &[String]) -> Result<(), Error> {
    let mut first_error = None;
    for id in ids {
        match reference::parse_secret_identifier(id) {
            Ok(parsed) => println!(
                "{}",
                serde_json::to_string(&parsed).map_err(|e| Error::Internal(e.to_string()))?
            ),
            Err(e) => {
                let err = Error::BadInput {
                    location: id.clone(),
                    message: e.message,
                    hint: e.hint,
                };
                if first_error.is_some() {
                    eprintln!("{}", error::Report(&err));
                } else {
                    first_error = Some(err);
                }
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Read the sources, plan, resolve: the child's environment, or every reason it cannot start.
fn prepare(
    args: &RunArgs,
    environment: &[(OsString, OsString)],
) -> Result<Vec<(OsString, OsString)>, Error> {
    let hosts = VaultHosts::new(&args.vault_suffix);
    let manifest = read_manifest(args, &hosts)?;
    let allowed_by_flag: Vec<String> = args
        .allow_vault
        .iter()
        .map(|v| {
            source::manifest::vault_host(v, &hosts)
                .map_err(|message| Error::Usage(format!("--allow-vault: {message}")))
        })
        .collect::<Result<_, _>>()?;
    let dotenv_files = read_dotenv_files(args)?;
    let plan = plan::build(&plan::Inputs {
        environment,
        dotenv_files: &dotenv_files,
        manifest: &manifest.entries,
        hosts: &hosts,
        no_resolve_env: args.no_resolve_env,
        literal: &args.literal,
    })?;
    let mut lists: Vec<(&str, &[String])> = Vec::new();
    if !args.allow_vault.is_empty() {
        lists.push(("--allow-vault", &allowed_by_flag));
    }
    if let Some(list) = &manifest.allowed_vaults {
        lists.push(("the manifest's allowed_vaults", list));
    }
    plan::check_allowed(&plan, &lists)?;
    tracing::info!(
        variables = plan.vars.len(),
        secrets = plan.secrets.len(),
        "planned"
    );
    let outcomes = if plan.secrets.is_empty() {
        Vec::new()
    } else {
        fetch_all(&plan, args, environment)?
    };
    let mut env = assemble(&plan, &outcomes)?;
    if args.hide_credentials {
        env.retain(|(name, _)| {
            !vault::credential::SECRET_VARIABLES
                .iter()
                .any(|s| name == s)
        });
    }
    Ok(env)
}

fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::MissingFile {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn read_manifest(args: &RunArgs, hosts: &VaultHosts) -> Result<source::manifest::Manifest, Error> {
    let path = match &args.manifest {
        Some(path) => path.clone(),
        None if args.no_manifest => return Ok(source::manifest::Manifest::default()),
        None => {
            let default = PathBuf::from("kvrun.toml");
            if !default.is_file() {
                return Ok(source::manifest::Manifest::default());
            }
            default
        }
    };
    let bytes = read_file(&path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::bad_input(path.display().to_string(), "not valid UTF-8"))?;
    tracing::info!(path = %path.display(), "reading manifest");
    source::manifest::parse_manifest(&text, &path, hosts)
}

fn read_dotenv_files(args: &RunArgs) -> Result<Vec<DotEnvFile>, Error> {
    let mut paths = Vec::new();
    let default = PathBuf::from(".env");
    if !args.no_dotenv && default.is_file() && !args.env_file.contains(&default) {
        paths.push(default);
    }
    paths.extend(args.env_file.iter().cloned());
    paths
        .into_iter()
        .map(|path| {
            let bytes = read_file(&path)?;
            let parsed = source::dotenv::parse(&bytes).map_err(|e| {
                Error::bad_input(format!("{}:{}", path.display(), e.line), "not valid UTF-8")
            })?;
            for warning in &parsed.warnings {
                tracing::warn!("{}:{}: {}", path.display(), warning.line, warning.message);
            }
            tracing::info!(path = %path.display(), variables = parsed.entries.len(), "reading .env file");
            Ok(DotEnvFile { path, parsed })
        })
        .collect()
}

/// Build a runtime, resolve every secret, drop the runtime. SIGTERM or SIGINT while resolving
/// stops everything: nothing is started.
fn fetch_all(
    plan: &Plan,
    args: &RunArgs,
    environment: &[(OsString, OsString)],
) -> Result<Vec<Outcome>, Error> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))?;
    let http = vault::http_client()
        .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
    let transport = vault::transport::Transport::new(environment)
        .map_err(|e| Error::Internal(format!("cannot set up TLS: {e}")))?;
    let credentials = vault::credential::Credentials::from_env(environment, http, args.credential);
    let deadline = std::time::Instant::now() + args.timeout;
    let client = Arc::new(vault::VaultClient::new(transport, credentials, deadline));
    let options = resolve::Options {
        concurrency: usize::from(args.concurrency),
        sequential: args.sequential,
        timeout: args.timeout,
    };
    let started = std::time::Instant::now();
    let result = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let signals = signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
        let (mut term, mut int) = signals.map_err(|e| Error::Internal(format!("cannot watch signals: {e}")))?;
        tokio::select! {
            outcomes = resolve::resolve(client, &plan.secrets, options) => Ok(outcomes),
            _ = term.recv() => Err(Error::Interrupted { signal: libc_signal::SIGTERM, name: "SIGTERM" }),
            _ = int.recv() => Err(Error::Interrupted { signal: libc_signal::SIGINT, name: "SIGINT" }),
        }
    });
    // Do not wait for stragglers (a hung connection, a DNS lookup) once the answer is known.
    runtime.shutdown_background();
    tracing::info!(
        secrets = plan.secrets.len(),
        elapsed_ms = started.elapsed().as_millis(),
        "resolved"
    );
    result
}

mod libc_signal {
    pub const SIGINT: i32 = nix::sys::signal::Signal::SIGINT as i32;
    pub const SIGTERM: i32 = nix::sys::signal::Signal::SIGTERM as i32;
}

/// The child's environment from the plan and the outcomes; fail closed if anything required failed.
fn assemble(plan: &Plan, outcomes: &[Outcome]) -> Result<Vec<(OsString, OsString)>, Error> {
    let mut env = Vec::with_capacity(plan.vars.len());
    let mut failures = Vec::new();
    let failure =
        |var: &plan::Var, index: usize, class, reason: String, hint: Option<String>| Failure {
            variable: var.name.to_string_lossy().into_owned(),
            origin: var.origin.to_string(),
            secret: plan.secrets[index].to_string(),
            class,
            reason,
            hint,
        };
    for var in &plan.vars {
        // The resolved value, and the first secret in it (for error messages).
        let (value, first) = match &var.value {
            Value::Literal(value) => {
                env.push((var.name.clone(), value.clone()));
                continue;
            }
            Value::Secret { index, optional } => match &outcomes[*index] {
                Ok(value) => (value.expose().to_owned(), *index),
                Err(e) if *optional && e.class == FailureClass::NotFound => {
                    tracing::warn!(
                        "{}: optional secret {} for {} not used: {}",
                        var.origin,
                        plan.secrets[*index],
                        var.name.to_string_lossy(),
                        e.reason
                    );
                    continue;
                }
                Err(e) => {
                    failures.push(failure(
                        var,
                        *index,
                        e.class,
                        e.reason.clone(),
                        e.hint.clone(),
                    ));
                    continue;
                }
            },
            Value::Template(parts) => {
                let mut value = String::new();
                let mut first = None;
                let mut ok = true;
                for part in parts {
                    match part {
                        Part::Text(text) => value.push_str(text),
                        Part::Secret(index) => {
                            first.get_or_insert(*index);
                            match &outcomes[*index] {
                                Ok(secret) => value.push_str(secret.expose()),
                                Err(e) => {
                                    ok = false;
                                    failures.push(failure(
                                        var,
                                        *index,
                                        e.class,
                                        e.reason.clone(),
                                        e.hint.clone(),
                                    ));
                                }
                            }
                        }
                    }
                }
                if !ok {
                    continue;
                }
                (value, first.unwrap_or_default())
            }
        };
        match unfit_for_environment(&var.name, &value) {
            None => env.push((var.name.clone(), value.into())),
            Some(reason) => {
                failures.push(failure(var, first, FailureClass::BadValue, reason, None));
            }
        }
    }
    if failures.is_empty() {
        Ok(env)
    } else {
        Err(Error::Unresolved { failures })
    }
}

/// Linux refuses one environment string (`NAME=value` and its NUL) over 128 KiB
/// (`MAX_ARG_STRLEN`), and no environment string can hold a NUL byte: say so by name instead of
/// failing at exec.
fn unfit_for_environment(name: &std::ffi::OsStr, value: &str) -> Option<String> {
    const MAX_ARG_STRLEN: usize = 128 * 1024;
    if value.contains('\0') {
        return Some(
            "the value contains a NUL byte, which no environment variable can hold".into(),
        );
    }
    if name.len() + 1 + value.len() + 1 > MAX_ARG_STRLEN {
        return Some(format!(
            "the value is {} bytes, more than an environment variable can hold (128 KiB with its name)",
            value.len()
        ));
    }
    None
}
