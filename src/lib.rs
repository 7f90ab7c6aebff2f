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

pub mod check;
pub mod children;
pub mod cli;
pub mod error;
pub mod export;
pub mod http;
pub mod launch;
pub mod plan;
pub mod reference;
pub mod resolve;
pub mod source;
pub mod timing;
pub mod vault;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cli::{Cli, Command, RunArgs};
use error::{Error, Failure, FailureClass};
use launch::ChildEnv;
use launch::files::FileSecret;
use plan::{DotEnvFile, Part, Plan, Value};
use reference::VaultHosts;
use resolve::Outcome;

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
    let supervised = cli.subcommand.is_none() && supervisor_mode(&cli.run);
    // Supervisor mode blocks the signals it forwards before any thread exists, so that no thread
    // runs a handler for them.
    #[cfg(target_os = "linux")]
    let signals = if supervised {
        Some(launch::supervise::block_signals()?)
    } else {
        None
    };
    #[cfg(not(target_os = "linux"))]
    if supervised {
        return Err(Error::Usage("--init and --watch need Linux".into()));
    }
    let verbose = match &cli.subcommand {
        Some(Command::Export { run, .. } | Command::Check { run, .. }) => run.verbose,
        _ => cli.run.verbose,
    };
    init_logging(verbose, environment);
    match cli.subcommand {
        Some(Command::Parse { ids }) => parse_ids(&ids).map(|()| 0),
        Some(Command::Export { format, run }) => export(format, &run, environment).map(|()| 0),
        Some(Command::Check { json, run }) => check(json, &run, environment).map(|()| 0),
        Some(Command::Completions { shell }) => {
            use clap::CommandFactory as _;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "kvrun", &mut script);
            print(&script).map(|()| 0)
        }
        Some(Command::Man) => {
            use clap::CommandFactory as _;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| Error::Internal(format!("cannot render the man page: {e}")))?;
            print(&page).map(|()| 0)
        }
        None => {
            if cli.command.is_empty() {
                return Err(Error::Usage(
                    "no command given: write kvrun [OPTIONS] -- COMMAND [ARGS]...".into(),
                ));
            }
            #[cfg(target_os = "linux")]
            if let Some(signals) = signals {
                return supervise(&cli, environment, signals);
            }
            let child_env = prepare(&cli.run, &cli.command, environment)?;
            Err(launch::exec(&cli.command, child_env))
        }
    }
}

/// `kvrun export`: resolve as a run would, print the managed variables in `format`.
fn export(
    format: export::Format,
    args: &RunArgs,
    environment: &[(OsString, OsString)],
) -> Result<(), Error> {
    use std::io::IsTerminal as _;
    let mut plan = plan_run(args, environment)?;
    plan.vars.retain(plan::Var::is_managed);
    // A variable that a run delivers as a file holds the file's *path* in a run: printing its
    // value would hand key material to an app that expects a path. Refused by name, before any
    // request. (A plain value there, a path set by hand, is exported as it is.)
    let refused: Vec<Error> = plan
        .vars
        .iter()
        .filter(|var| var.file.is_some() && !matches!(var.value, Value::Literal(_)))
        .map(|var| Error::BadInput {
            location: plan::location(&var.name, &var.origin),
            message: "a run delivers this secret as a file and puts the file's path in the variable; export cannot write a file, so it refuses the variable".into(),
            hint: Some("leave the variable out of the export (or drop --file-var / `file = true` for it)".into()),
        })
        .collect();
    if !refused.is_empty() {
        return Err(several(refused));
    }
    let outcomes = if plan.secrets.is_empty() {
        Vec::new()
    } else {
        fetch_all(&plan, args, vault_client(args, environment)?)?
    };
    let env = child_env(&plan, &outcomes, args.hide_credentials)?;
    let text = export::render(format, &env.vars).map_err(|refused| {
        several(
            refused
                .into_iter()
                .map(|r| Error::bad_input(r.variable, r.reason))
                .collect(),
        )
    })?;
    let text = zeroize::Zeroizing::new(text);
    if std::io::stdout().is_terminal() {
        tracing::warn!("writing secret values to a terminal");
    }
    print(text.as_bytes())
}

/// One error, or several printed one after the other.
fn several(mut errors: Vec<Error>) -> Error {
    if errors.len() == 1 {
        errors.remove(0)
    } else {
        Error::Several(errors)
    }
}

/// `kvrun check`: resolve as a run would, report every secret of every variable, exit as a run —
/// except with nothing to check at all, which fails (66): a deploy gate run in the wrong
/// directory must not pass. (A run with nothing to fetch still starts its command.)
fn check(json: bool, args: &RunArgs, environment: &[(OsString, OsString)]) -> Result<(), Error> {
    let plan = plan_run(args, environment)?;
    // A literal the run would refuse fails the check the same way.
    preflight(&plan, &[])?;
    if plan.secrets.is_empty() {
        return Err(Error::NoReferences {
            looked: where_check_looked(args),
        });
    }
    let client = vault_client(args, environment)?;
    let outcomes = fetch_all(&plan, args, client.clone())?;
    // The run's verdict, computed first so that each row carries what would fail it (a value no
    // environment variable can hold resolves fine but fails the run).
    let verdict = child_env(&plan, &outcomes, args.hide_credentials).map(|_| ());
    let refused: &[Failure] = match &verdict {
        Err(Error::Unresolved { failures }) => failures,
        _ => &[],
    };
    let mut rows = Vec::new();
    for var in &plan.vars {
        let (indices, optional) = match &var.value {
            plan::Value::Literal(_) => continue,
            plan::Value::Secret { index, optional } => (vec![*index], *optional),
            plan::Value::Template(parts) => (
                parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::Secret(i) => Some(*i),
                        Part::Text(_) => None,
                    })
                    .collect(),
                false,
            ),
        };
        for index in indices {
            let secret = &plan.secrets[index];
            let variable = var.name.to_string_lossy();
            let refusal = refused.iter().find(|f| {
                f.class == FailureClass::BadValue
                    && f.variable == variable
                    && f.secret == secret.to_string()
            });
            let (status, reason) = match &outcomes[index] {
                Ok(_) if refusal.is_some() => (
                    FailureClass::BadValue.to_string(),
                    refusal.map(|f| f.reason.clone()),
                ),
                Ok(_) => ("ok".to_owned(), None),
                Err(e) if optional && e.class == FailureClass::NotFound => {
                    ("optional, not found".to_owned(), None)
                }
                Err(e) => (e.class.to_string(), Some(e.reason.clone())),
            };
            rows.push(check::Row {
                variable: var.name.to_string_lossy().into_owned(),
                origin: var.origin.to_string(),
                vault: secret.vault_host().to_owned(),
                secret: secret.name.clone(),
                version: secret
                    .version
                    .clone()
                    .unwrap_or_else(|| "latest".to_owned()),
                status,
                reason,
                latency_ms: check::Row::latency(client.spent(secret)),
            });
        }
    }
    let text = if json {
        let mut text = serde_json::to_string_pretty(&rows)
            .map_err(|e| Error::Internal(format!("cannot write JSON: {e}")))?;
        text.push('\n');
        text
    } else {
        check::table(&rows)
    };
    print(text.as_bytes())?;
    // The same verdict, and so the same exit code, as a run; in check's own words (nothing was
    // going to be started).
    verdict.map_err(|e| match e {
        Error::Unresolved { failures } => Error::CheckFailed { failures },
        other => other,
    })
}

/// Where `check` looked for references: the `.env` files, the manifest, the environment.
fn where_check_looked(args: &RunArgs) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let place = |path: &Path| {
        let shown = cwd.join(path).display().to_string();
        if path.is_file() {
            shown
        } else {
            format!("{shown} (no such file)")
        }
    };
    let mut places = Vec::new();
    if !args.no_dotenv && !args.env_file.iter().any(|p| p == Path::new(".env")) {
        places.push(place(Path::new(".env")));
    }
    places.extend(args.env_file.iter().map(|p| place(p)));
    match &args.manifest {
        Some(path) => places.push(place(path)),
        None if !args.no_manifest => places.push(place(Path::new("kvrun.toml"))),
        None => {}
    }
    if !args.no_resolve_env {
        places.push("its environment".to_owned());
    }
    match places.split_last() {
        None => "nothing (--no-dotenv, --no-manifest and --no-resolve-env)".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, others)) => format!("{} and {last}", others.join(", ")),
    }
}

/// Write to stdout: every byte kvrun prints goes through here. A reader that went away
/// (`| head -1`) stops kvrun quietly with 141, as `SIGPIPE` would in a shell pipeline (Rust
/// ignores `SIGPIPE`, so the write fails with `EPIPE` instead); any other failure is 74.
fn print(bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Error::StdoutClosed,
            _ => Error::Stdout(e.to_string()),
        })
}

/// `--init`, `--watch`, or being PID 1 (where an exec'd app would get no default signal
/// actions and nobody would reap zombies), unless `--no-init`.
fn supervisor_mode(args: &RunArgs) -> bool {
    if args.no_init {
        return false;
    }
    args.init || args.watch.is_some() || (cfg!(target_os = "linux") && std::process::id() == 1)
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
            Ok(parsed) => {
                let mut line =
                    serde_json::to_string(&parsed).map_err(|e| Error::Internal(e.to_string()))?;
                line.push('\n');
                print(line.as_bytes())?;
            }
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

/// Exec mode: read the sources, plan, check the command, resolve: the child's environment, or
/// every reason it cannot start.
fn prepare(
    args: &RunArgs,
    command: &[OsString],
    environment: &[(OsString, OsString)],
) -> Result<ChildEnv, Error> {
    let plan = plan_run(args, environment)?;
    preflight(&plan, command)?;
    let outcomes = if plan.secrets.is_empty() {
        Vec::new()
    } else {
        fetch_all(&plan, args, vault_client(args, environment)?)?
    };
    let env = child_env(&plan, &outcomes, args.hide_credentials)?;
    fits_exec(command, &env)?;
    Ok(env)
}

/// Before any request: the command exists, and is executable, on the `PATH` the child will have
/// (which a `.env` or the manifest may set); and what exec will carry fits Linux's limits as far
/// as the plan knows it — every literal, every argument, and the total with the secrets' names.
/// Same errors (126/127) as exec would give, but before a single secret is fetched. Without a
/// command (`check`), the literals only.
fn preflight(plan: &Plan, command: &[OsString]) -> Result<(), Error> {
    // The child's PATH as planned: `Some(None)` when it has none; `None` when it comes from a
    // secret, and the command is looked for once that is known.
    let planned_path = match plan.vars.iter().rev().find(|v| v.name == "PATH") {
        None => Some(None),
        Some(plan::Var {
            value: Value::Literal(path),
            ..
        }) => Some(Some(path.as_os_str())),
        Some(_) => None,
    };
    let program_len = match (command.first(), planned_path) {
        (None, _) => None,
        (Some(program), None) => Some(program.len()),
        (Some(program), Some(path)) => launch::find_program(program, path)
            .map_err(|source| Error::Exec {
                program: program.to_string_lossy().into_owned(),
                source,
            })?
            .as_os_str()
            .len()
            .into(),
    };
    // Each argument reached kvrun through exec, so each fits on its own; together with the
    // environment they may not.
    let mut problems = Vec::new();
    let mut strings: Vec<usize> = command.iter().map(|a| a.len()).collect();
    for var in &plan.vars {
        match &var.value {
            Value::Literal(value) => {
                if let Some(reason) = unfit_for_environment(&var.name, value.as_encoded_bytes()) {
                    problems.push(Error::bad_input(
                        plan::location(&var.name, &var.origin),
                        reason,
                    ));
                }
                strings.push(var.name.len() + 1 + value.len());
            }
            _ => strings.push(var.name.len() + 1),
        }
    }
    match program_len {
        _ if !problems.is_empty() => Err(several(problems)),
        Some(program_len) => total_fits(program_len, strings),
        None => Ok(()),
    }
}

/// After resolving: the whole environment and the arguments within the kernel's total limit.
fn fits_exec(command: &[OsString], env: &ChildEnv) -> Result<(), Error> {
    let Some(program) = command.first() else {
        return Ok(());
    };
    let program_len = launch::find_program(program, launch::path_of(&env.vars))
        .map_or(program.len(), |p| p.as_os_str().len());
    // A file's path is not known yet: `/proc/self/fd/N`, or the secret directory's, well under
    // 256 bytes.
    let strings = command
        .iter()
        .map(|a| a.len())
        .chain(env.vars.iter().map(|(k, v)| k.len() + 1 + v.len()))
        .chain(env.files.iter().map(|f| f.var.len() + 1 + 256));
    total_fits(program_len, strings)
}

fn total_fits(program_len: usize, strings: impl IntoIterator<Item = usize>) -> Result<(), Error> {
    let limits = launch::ExecLimits::current();
    let total = launch::ExecLimits::needed(program_len, strings);
    if total > limits.max_total {
        return Err(Error::TooLarge(format!(
            "the command's environment and arguments take {total} bytes, more than the {} Linux allows a program (a quarter of the stack limit, `ulimit -s`, at least 128 KiB and at most 6 MiB)",
            limits.max_total
        )));
    }
    Ok(())
}

/// Read the manifest and `.env` files, plan, check the allow-lists; no network.
fn plan_run(args: &RunArgs, environment: &[(OsString, OsString)]) -> Result<Plan, Error> {
    let hosts = VaultHosts::new(&args.vault_suffix);
    let manifest = read_manifest(args, &hosts)?;
    let allowed_by_flag: Vec<reference::VaultOrigin> = args
        .allow_vault
        .iter()
        .map(|v| {
            source::manifest::allowed_vault(v, &hosts)
                .map_err(|message| Error::Usage(format!("--allow-vault: {message}")))
        })
        .collect::<Result<_, _>>()?;
    let file_spec = launch::files::FileSpec::new(args.file_mode, args.file_owner.clone())
        .map_err(|message| Error::Usage(format!("--file-owner/--file-mode: {message}")))?;
    let dotenv_files = read_dotenv_files(args)?;
    let mut plan = plan::build(&plan::Inputs {
        environment,
        dotenv_files: &dotenv_files,
        manifest: &manifest.entries,
        hosts: &hosts,
        no_resolve_env: args.no_resolve_env,
        literal: &args.literal,
        file_vars: &args.file_var,
        file_spec: &file_spec,
    })?;
    let mut lists: Vec<(&str, &[reference::VaultOrigin])> = Vec::new();
    if !args.allow_vault.is_empty() {
        lists.push(("--allow-vault", &allowed_by_flag));
    }
    if let Some(list) = &manifest.allowed_vaults {
        lists.push(("the manifest's allowed_vaults", list));
    }
    plan::check_allowed(&plan, &lists)?;
    if args.clear_env {
        plan.vars
            .retain(|var| var.is_managed() || kept_by_clear_env(&var.name, &args.keep_env));
    }
    tracing::info!(
        variables = plan.vars.len(),
        secrets = plan.secrets.len(),
        "planned"
    );
    Ok(plan)
}

/// What `--clear-env` keeps of the inherited plain variables: what a program needs to run at all,
/// systemd's notify socket, and `--keep-env` names.
fn kept_by_clear_env(name: &std::ffi::OsStr, keep: &[String]) -> bool {
    const KEPT: [&str; 12] = [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "TERM",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "HOSTNAME",
        "NOTIFY_SOCKET",
    ];
    let Some(name) = name.to_str() else {
        return false;
    };
    KEPT.contains(&name) || name.starts_with("LC_") || keep.iter().any(|k| k == name)
}

/// The child's environment from a plan and its outcomes (fail closed), with `--hide-credentials`.
fn child_env(plan: &Plan, outcomes: &[Outcome], hide_credentials: bool) -> Result<ChildEnv, Error> {
    let mut env = assemble(plan, outcomes)?;
    if hide_credentials {
        env.vars.retain(|(name, _)| {
            !vault::credential::SECRET_VARIABLES
                .iter()
                .any(|s| name == s)
        });
    }
    Ok(env)
}

/// One thread: the work is waiting on the network. Measured with `scripts/bench` (N = 50 and
/// 1,000, 21 runs each): the same medians as two worker threads, ~1.2 MB less peak RSS at N = 1,000
/// (one malloc arena instead of three, no worker stacks); the TLS handshakes take turns on the one
/// core, which did not show at 20 ms round trips.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))
}

fn vault_client(
    args: &RunArgs,
    environment: &[(OsString, OsString)],
) -> Result<Arc<vault::VaultClient>, Error> {
    let http = http::Client::new(http_settings(args, environment)?);
    let credentials =
        vault::credential::Credentials::from_env(environment, http.clone(), args.credential);
    let deadline = later(args.timeout);
    Ok(Arc::new(vault::VaultClient::new(
        http,
        credentials,
        deadline,
    )))
}

/// The HTTP client's settings, from the command line and the environment snapshot (the proxy
/// variables as curl reads them: upper case first).
fn http_settings(
    args: &RunArgs,
    environment: &[(OsString, OsString)],
) -> Result<http::Settings, Error> {
    let env = source::Env(environment);
    let either =
        |upper: &str, lower: &str| env.get(upper).or_else(|| env.get(lower)).map(str::to_owned);
    // rustls-native-certs reads these itself; the snapshot says whether they name the store.
    let store = if env.get("SSL_CERT_FILE").is_some() || env.get("SSL_CERT_DIR").is_some() {
        http::tls::Store::Named
    } else {
        http::tls::Store::System
    };
    Ok(http::Settings {
        tls: http::tls::config(store)
            .map_err(|e| Error::Internal(format!("cannot set up TLS: {e}")))?,
        proxy: http::Proxy {
            all: either("ALL_PROXY", "all_proxy"),
            https: either("HTTPS_PROXY", "https_proxy"),
            no: either("NO_PROXY", "no_proxy"),
        },
        per_origin: usize::from(args.concurrency),
    })
}

/// `now + after`, or a far future when that would overflow (`Instant + Duration` panics). The
/// command line bounds every duration; this keeps any other path from overflowing too.
fn later(after: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(after)
        .or_else(|| now.checked_add(std::time::Duration::from_secs(100 * 365 * 24 * 60 * 60)))
        .unwrap_or(now)
}

fn resolve_options(args: &RunArgs) -> resolve::Options {
    resolve::Options {
        concurrency: usize::from(args.concurrency),
        sequential: args.sequential,
        timeout: args.timeout,
    }
}

/// Resolve `secrets` and log how long it took.
async fn resolve_logged(
    client: Arc<vault::VaultClient>,
    secrets: &[reference::SecretRef],
    options: resolve::Options,
) -> Vec<Outcome> {
    let started = std::time::Instant::now();
    let outcomes = resolve::resolve(client, secrets, options).await;
    tracing::info!(
        secrets = secrets.len(),
        elapsed_ms = started.elapsed().as_millis(),
        "resolved"
    );
    outcomes
}

/// Exec mode: build a runtime, resolve every secret, drop the runtime. SIGTERM or SIGINT while
/// resolving stops everything: nothing is started.
fn fetch_all(
    plan: &Plan,
    args: &RunArgs,
    client: Arc<vault::VaultClient>,
) -> Result<Vec<Outcome>, Error> {
    let _timing = timing::Run::start();
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let signals = signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
        let (mut term, mut int) = signals.map_err(|e| Error::Internal(format!("cannot watch signals: {e}")))?;
        tokio::select! {
            outcomes = resolve_logged(client, &plan.secrets, resolve_options(args)) => Ok(outcomes),
            _ = term.recv() => Err(Error::Interrupted { signal: libc_signal::SIGTERM, name: "SIGTERM" }),
            _ = int.recv() => Err(Error::Interrupted { signal: libc_signal::SIGINT, name: "SIGINT" }),
        }
    });
    // Do not wait for stragglers (a hung connection, a DNS lookup) once the answer is known.
    runtime.shutdown_background();
    result
}

/// Supervisor mode: resolve (a stop signal ends it), start the command, supervise it to its end.
#[cfg(target_os = "linux")]
fn supervise(
    cli: &Cli,
    environment: &[(OsString, OsString)],
    signals: nix::sys::signalfd::SignalFd,
) -> Result<i32, Error> {
    use launch::supervise::{Options, Supervisor};
    let args = &cli.run;
    let plan = Arc::new(plan_run(args, environment)?);
    preflight(&plan, &cli.command)?;
    let runtime = runtime()?;
    let runtime_dir = source::Env(environment)
        .get("XDG_RUNTIME_DIR")
        .map(PathBuf::from);
    let result = runtime.block_on(async {
        let mut supervisor = Supervisor::new(
            signals,
            cli.command.clone(),
            args.secrets_dir.clone(),
            runtime_dir,
        )?;
        let mut refresh = None;
        let outcomes = if plan.secrets.is_empty() {
            Vec::new()
        } else {
            let client = vault_client(args, environment)?;
            let timing = timing::Run::start();
            let outcomes = tokio::select! {
                outcomes = resolve_logged(client.clone(), &plan.secrets, resolve_options(args)) => outcomes,
                stop = supervisor.interrupted() => return Err(stop),
            };
            drop(timing);
            if args.watch.is_some() {
                refresh = watcher(&plan, &outcomes, client, args, &cli.command)?;
            }
            outcomes
        };
        let env = child_env(&plan, &outcomes, args.hide_credentials)?;
        fits_exec(&cli.command, &env)?;
        let options = Options {
            watch: args.watch,
            reload_signal: args.reload_signal,
            stop_timeout: args.stop_timeout.unwrap_or(cli::DEFAULT_STOP_TIMEOUT),
            shutdown_timeout: args.stop_timeout,
        };
        supervisor.run(env, options, refresh).await
    });
    runtime.shutdown_background();
    result
}

/// `--watch`: a check that fetches the unpinned secrets again and answers whether the command's
/// environment or files changed. `None` when every secret is pinned to a version.
#[cfg(target_os = "linux")]
fn watcher(
    plan: &Arc<Plan>,
    outcomes: &[Outcome],
    client: Arc<vault::VaultClient>,
    args: &RunArgs,
    command: &[OsString],
) -> Result<Option<launch::supervise::Refresh>, Error> {
    use launch::supervise::Refreshed;
    use std::sync::Mutex;
    let command: Arc<Vec<OsString>> = Arc::new(command.to_vec());
    let unpinned: Arc<Vec<usize>> = Arc::new(
        plan.secrets
            .iter()
            .enumerate()
            .filter(|(_, s)| s.version.is_none())
            .map(|(i, _)| i)
            .collect(),
    );
    if unpinned.is_empty() {
        tracing::warn!("--watch: every secret is pinned to a version; nothing to watch");
        return Ok(None);
    }
    let settings = WatchSettings {
        options: resolve_options(args),
        hide_credentials: args.hide_credentials,
    };
    let current = child_env(plan, outcomes, args.hide_credentials)?;
    let state = Arc::new(Mutex::new((outcomes.to_vec(), current)));
    let plan = plan.clone();
    Ok(Some(Box::new(move || {
        let (plan, state, client, unpinned, command) = (
            plan.clone(),
            state.clone(),
            client.clone(),
            unpinned.clone(),
            command.clone(),
        );
        Box::pin(async move {
            let subset: Vec<reference::SecretRef> =
                unpinned.iter().map(|&i| plan.secrets[i].clone()).collect();
            client.set_deadline(later(settings.options.timeout));
            let fresh = resolve_logged(client, &subset, settings.options).await;
            let mut state = state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut outcomes = state.0.clone();
            for (&index, outcome) in unpinned.iter().zip(fresh) {
                outcomes[index] = outcome;
            }
            // A rotated value that exec could not carry must not cost the running command its
            // restart: the check fails and the command keeps what it has.
            let fresh = child_env(&plan, &outcomes, settings.hide_credentials)
                .and_then(|env| fits_exec(&command, &env).map(|()| env));
            match fresh {
                Err(e) => {
                    tracing::warn!(
                        "--watch: the check failed; the command keeps running with what it has: {}",
                        error::Report(&e)
                    );
                    Refreshed::Failed
                }
                Ok(env) if env == state.1 => Refreshed::Unchanged,
                Ok(env) => {
                    let changed = changed_names(&state.1, &env);
                    tracing::warn!(variables = %changed.join(", "), "--watch: secrets changed");
                    *state = (outcomes, env.clone());
                    Refreshed::Changed(env)
                }
            }
        })
    })))
}

/// What a `--watch` check needs of the options (the rest stay with the first run).
#[cfg(target_os = "linux")]
#[derive(Clone, Copy)]
struct WatchSettings {
    options: resolve::Options,
    hide_credentials: bool,
}

/// The names of the variables and files that differ between two environments.
#[cfg(target_os = "linux")]
fn changed_names(old: &ChildEnv, new: &ChildEnv) -> Vec<String> {
    let mut names: Vec<String> = new
        .vars
        .iter()
        .filter(|pair| !old.vars.contains(pair))
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    names.extend(
        new.files
            .iter()
            .filter(|file| !old.files.contains(file))
            .map(|file| file.var.to_string_lossy().into_owned()),
    );
    names
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

mod libc_signal {
    pub const SIGINT: i32 = nix::sys::signal::Signal::SIGINT as i32;
    pub const SIGTERM: i32 = nix::sys::signal::Signal::SIGTERM as i32;
}

/// The child's environment from the plan and the outcomes; fail closed if anything required failed.
fn assemble(plan: &Plan, outcomes: &[Outcome]) -> Result<ChildEnv, Error> {
    let mut env = Vec::with_capacity(plan.vars.len());
    let mut files = Vec::new();
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
        // The resolved value, its content type, and the first secret in it (for error messages).
        let (value, content_type, first) = match &var.value {
            Value::Literal(value) => {
                env.push((var.name.clone(), value.clone()));
                continue;
            }
            Value::Secret { index, optional } => match &outcomes[*index] {
                Ok(value) => (
                    zeroize::Zeroizing::new(value.expose().to_owned()),
                    value.content_type(),
                    *index,
                ),
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
                let mut value = zeroize::Zeroizing::new(String::new());
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
                (value, None, first.unwrap_or_default())
            }
        };
        let delivered = match &var.file {
            Some(spec) => launch::files::decode(&value, content_type).map(|contents| {
                files.push(FileSecret {
                    var: var.name.clone(),
                    contents,
                    spec: spec.clone(),
                });
            }),
            None => unfit_for_environment(&var.name, value.as_bytes())
                .map_or(Ok(()), Err)
                .map(|()| env.push((var.name.clone(), value.as_str().into()))),
        };
        if let Err(reason) = delivered {
            failures.push(failure(var, first, FailureClass::BadValue, reason, None));
        }
    }
    if failures.is_empty() {
        Ok(ChildEnv { vars: env, files })
    } else {
        Err(Error::Unresolved { failures })
    }
}

/// Linux refuses one environment string (`NAME=value` and its NUL) over 128 KiB
/// (`MAX_ARG_STRLEN`), and no environment string can hold a NUL byte: say so by name instead of
/// failing at exec.
fn unfit_for_environment(name: &std::ffi::OsStr, value: &[u8]) -> Option<String> {
    const MAX_ARG_STRLEN: usize = launch::ExecLimits::MAX_ARG_STRLEN;
    if value.contains(&0) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_never_overflows() {
        let year = std::time::Duration::from_secs(365 * 24 * 60 * 60);
        assert!(later(std::time::Duration::MAX) > std::time::Instant::now() + year);
        assert!(later(year) <= std::time::Instant::now() + year);
    }

    #[test]
    fn values_exec_cannot_carry_are_named() {
        assert_eq!(unfit_for_environment("A".as_ref(), b"ok"), None);
        let limit = launch::ExecLimits::MAX_ARG_STRLEN;
        // NAME=value and its NUL: exactly the limit fits, one byte more does not.
        assert_eq!(
            unfit_for_environment("A".as_ref(), &vec![b'x'; limit - 3]),
            None
        );
        assert_eq!(
            unfit_for_environment("A".as_ref(), &vec![b'x'; limit - 2]).as_deref(),
            Some(
                "the value is 131070 bytes, more than an environment variable can hold (128 KiB with its name)"
            )
        );
        assert!(unfit_for_environment("A".as_ref(), b"a\0b").is_some());
    }
}
