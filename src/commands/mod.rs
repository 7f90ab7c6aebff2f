//! The subcommands, one module each, and what they share: reading and planning
//! ([`plan_run`]: no network), the vault client, and one resolution ([`resolve_plan`]: nothing to
//! fetch, or every secret at once).
//!
//! - [`run`]: `kvrun [OPTIONS] -- COMMAND`: exec, or supervise (`--init`, `--watch`, PID 1);
//! - [`check`]: resolve and report, start nothing;
//! - [`export`]: resolve and print the variables for one consumer;
//! - [`parse`]: `parseKeyVaultSecretIdentifier`, offline;
//! - [`generate`]: shell completions and the man page.

pub(crate) mod check;
pub(crate) mod export;
pub(crate) mod generate;
pub(crate) mod parse;
pub(crate) mod run;

use std::ffi::OsString;
use std::sync::Arc;

use crate::error::Error;
use crate::plan::{self, Plan};
use crate::resolve::{self, Outcome};
use crate::settings::{self, Settings};
use crate::source::files;
use crate::{appconfig, bundle, http, reference, timing, vault};

/// Every secret of `plan`, resolved as a run resolves them, its bundles expanded: the plan with
/// every variable in place, and one outcome per secret of it. No runtime when there is nothing to
/// fetch.
pub(crate) fn resolve_plan(
    plan: Plan,
    settings: &Settings,
    environment: &[(OsString, OsString)],
) -> Result<(Plan, Vec<Outcome>), Error> {
    if plan.secrets.is_empty() && plan.stores.is_empty() && plan.settings.is_empty() {
        return Ok((plan, Vec::new()));
    }
    fetch_all(
        plan,
        settings,
        Arc::new(vault_client(settings, environment)?),
    )
}

/// What the first round of a resolution gave: one outcome per secret asked for, one listing
/// per store, one answer per `@Microsoft.AppConfiguration(…)` key-value.
pub(crate) struct First {
    pub(crate) outcomes: Vec<Outcome>,
    pub(crate) listings: Vec<appconfig::Listing>,
    pub(crate) settings: Vec<appconfig::Lookup>,
}

/// The first round of a resolution: `secrets` fetched, every store of the plan listed (with the
/// `ETag`s of its `previous` list, under `--watch`) and every key-value it names read, all at once (the Key Vault references of App Configuration are
/// known only then: the second round).
pub(crate) async fn first_round(
    client: Arc<vault::VaultClient>,
    secrets: &[reference::SecretRef],
    plan: &Plan,
    previous: &[Option<Arc<appconfig::client::Listed>>],
    options: resolve::Options,
) -> First {
    let lists = async {
        let mut listings = Vec::with_capacity(plan.stores.len());
        for (i, store) in plan.stores.iter().enumerate() {
            let started = std::time::Instant::now();
            let before = previous.get(i).cloned().flatten();
            let listed = appconfig::client::list(client.clone(), store.clone(), before).await;
            tracing::info!(
                store = %store.endpoint,
                key_values = listed.as_ref().map_or(0, |l| l.items().count()),
                pages = listed.as_ref().map_or(0, appconfig::client::Listed::pages),
                unchanged = listed.as_ref().map_or(0, appconfig::client::Listed::unchanged),
                elapsed_ms = started.elapsed().as_millis(),
                "listed"
            );
            listings.push(listed);
        }
        listings
    };
    let lookups = async {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, setting) in plan.settings.iter().enumerate() {
            let (client, setting) = (client.clone(), setting.clone());
            tasks.spawn(async move { (i, appconfig::client::get_one(client, setting).await) });
        }
        let mut answers: Vec<appconfig::Lookup> = (0..plan.settings.len())
            .map(|_| {
                Err(crate::error::Problem::new(
                    crate::error::FailureClass::Protocol,
                    "the read was cut short",
                ))
            })
            .collect();
        while let Some(Ok((i, answer))) = tasks.join_next().await {
            answers[i] = answer;
        }
        answers
    };
    let secrets = async {
        if secrets.is_empty() {
            Vec::new()
        } else {
            resolve_logged(client.clone(), secrets, options).await
        }
    };
    let (outcomes, listings, settings) = tokio::join!(secrets, lists, lookups);
    First {
        outcomes,
        listings,
        settings,
    }
}

/// After the first round (the plan's own secrets, one outcome each, and its stores' lists): its
/// stores' and bundles' variables put in place, and the Key Vault references of its stores and
/// dotenv bundles fetched (one level deep, allow-lists checked first). The plan with every variable, and one outcome per secret of it.
pub(crate) async fn with_bundles(
    client: Arc<vault::VaultClient>,
    plan: Plan,
    first: First,
    context: &bundle::Context,
    options: resolve::Options,
) -> Result<(Plan, Vec<Outcome>), Error> {
    let First {
        outcomes: first,
        listings,
        settings,
    } = first;
    let fetched = first.len();
    // The stores' variables first: a bundle's go below them.
    let plan = appconfig::expand::expand(plan, &listings, &settings, context);
    let plan = bundle::expand(plan, &first, context);
    let mut outcomes = first;
    if plan.secrets.len() > fetched {
        plan::check_allowed(&plan)?;
        outcomes.extend(resolve_logged(client, &plan.secrets[fetched..], options).await);
    }
    Ok((plan, outcomes))
}

/// One error, or several printed one after the other.
pub(crate) fn several(mut errors: Vec<Error>) -> Error {
    if errors.len() == 1 {
        errors.remove(0)
    } else {
        Error::Several(errors)
    }
}

/// Write to stdout: every byte kvrun prints goes through here. A reader that went away
/// (`| head -1`) stops kvrun quietly with 141, as `SIGPIPE` would in a shell pipeline (Rust
/// ignores `SIGPIPE`, so the write fails with `EPIPE` instead); any other failure is 74.
pub(crate) fn print(bytes: &[u8]) -> Result<(), Error> {
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

/// Read the manifest and `.env` files, plan, check the allow-lists; no network.
pub(crate) fn plan_run(
    sources: &settings::Sources,
    environment: &[(OsString, OsString)],
) -> Result<Plan, Error> {
    let manifest = files::read_manifest(&sources.manifest, &sources.hosts)?;
    let dotenv_files = files::read_dotenv_files(sources.default_dotenv, &sources.env_files)?;
    let mut env_from = manifest.env_from.clone();
    for text in sources.env_from.iter().filter(|t| !t.is_empty()) {
        let flag = bundle::parse_flag(text, manifest.default_vault.as_deref(), &sources.hosts)
            .map_err(|message| Error::Usage(format!("--env-from {text}: {message}")))?;
        env_from.push(flag);
    }
    let mut plan = plan::build(&plan::Inputs {
        environment,
        dotenv_files: &dotenv_files,
        manifest: &manifest.entries,
        hosts: &sources.hosts,
        no_resolve_env: sources.no_resolve_env,
        literal: &sources.literal,
        file_vars: &sources.file_vars,
        file_spec: &sources.file_spec,
        env_from: &env_from,
        store_hosts: &sources.app_config.hosts,
    })?;
    for setting in &mut plan.settings {
        setting.auth = appconfig::auth_for(&sources.app_config, &setting.endpoint);
    }
    if let Some(store) = appconfig::store(&sources.app_config, manifest.app_configuration.as_ref())?
    {
        plan.stores.push(Arc::new(store));
    }
    if !sources.allowed_vaults.is_empty() {
        plan.allowed
            .push(("--allow-vault", sources.allowed_vaults.clone()));
    }
    if let Some(list) = manifest.allowed_vaults {
        plan.allowed.push(("the manifest's allowed_vaults", list));
    }
    plan::check_allowed(&plan)?;
    if let Some(keep) = &sources.clear_env {
        plan.vars
            .retain(|var| var.is_managed() || kept_by_clear_env(&var.name, keep));
    }
    tracing::info!(
        variables = plan.vars.len(),
        secrets = plan.secrets.len(),
        bundles = plan.bundles.len(),
        stores = plan.stores.len(),
        "planned"
    );
    Ok(plan)
}

/// What `--clear-env` keeps of the inherited plain variables: what a program needs to run at all,
/// systemd's notify socket, and `--keep-env` names.
pub(crate) fn kept_by_clear_env(name: &std::ffi::OsStr, keep: &[String]) -> bool {
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

/// One thread: the work is waiting on the network. Measured with `scripts/bench` (N = 50 and
/// 1,000, 21 runs each): the same medians as two worker threads, ~1.2 MB less peak RSS at N = 1,000
/// (one malloc arena instead of three, no worker stacks); the TLS handshakes take turns on the one
/// core, which did not show at 20 ms round trips. Measured again with h2 (2026-12-04,
/// docs/performance.md): two workers gave the same wall time, ~1 ms more CPU at N = 50 and
/// 0.9 MB more peak RSS at N = 1,000.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::system("cannot start the async runtime"))
}

/// The run's vault client: its HTTP client, its credential chain (`environment` is what `az` and
/// `azd` are started with), its deadline.
pub(crate) fn vault_client(
    settings: &Settings,
    environment: &[(OsString, OsString)],
) -> Result<vault::VaultClient, Error> {
    let http = http::Client::new(http_settings(settings)?);
    let credentials = vault::credential::Credentials::new(
        &settings.credentials,
        environment,
        http.clone(),
        settings.fetch.only,
    );
    let deadline = crate::time::after(std::time::Instant::now(), settings.fetch.resolve.timeout);
    Ok(vault::VaultClient::new(http, credentials, deadline))
}

/// The HTTP client's settings, from the command line and the environment's.
pub(crate) fn http_settings(settings: &Settings) -> Result<http::Settings, Error> {
    Ok(http::Settings {
        tls: http::tls::config(settings.trust_store)
            .map_err(|e| Error::Internal(format!("cannot set up TLS: {e}")))?,
        proxy: settings.proxy.clone(),
        per_origin: settings.fetch.resolve.concurrency,
    })
}

/// Resolve `secrets` and log how long it took.
pub(crate) async fn resolve_logged(
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

/// Exec mode: build a runtime, resolve every secret (bundles expanded, their references too), drop
/// the runtime. SIGTERM or SIGINT while resolving stops everything: nothing is started.
pub(crate) fn fetch_all(
    plan: Plan,
    settings: &Settings,
    client: Arc<vault::VaultClient>,
) -> Result<(Plan, Vec<Outcome>), Error> {
    let options = settings.fetch.resolve;
    let context = bundle::Context::new(&settings.sources);
    let _timing = timing::Run::start();
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let signals = signal(SignalKind::terminate()).and_then(|t| Ok((t, signal(SignalKind::interrupt())?)));
        let (mut term, mut int) = signals.map_err(Error::system("cannot watch signals"))?;
        tokio::select! {
            resolved = async {
                let first = first_round(client.clone(), &plan.secrets, &plan, &[], options).await;
                with_bundles(client, plan, first, &context, options).await
            } => resolved,
            _ = term.recv() => Err(Error::Interrupted { signal: signal_number::SIGTERM, name: "SIGTERM" }),
            _ = int.recv() => Err(Error::Interrupted { signal: signal_number::SIGINT, name: "SIGINT" }),
        }
    });
    // Do not wait for stragglers (a hung connection, a DNS lookup) once the answer is known.
    runtime.shutdown_background();
    result
}

/// The signal numbers `Error::Interrupted` reports.
mod signal_number {
    pub(super) const SIGINT: i32 = nix::sys::signal::Signal::SIGINT as i32;
    pub(super) const SIGTERM: i32 = nix::sys::signal::Signal::SIGTERM as i32;
}
