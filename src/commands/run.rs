//! `kvrun [OPTIONS] -- COMMAND [ARGS]...`: resolve, then exec the command (same PID), or, in
//! supervisor mode (`--init`, `--watch`, or as PID 1), start it and supervise it to its end.
//! Everything that exec would refuse is checked before a single secret is fetched
//! ([`preflight`]) and again once the values are known ([`fits_exec`]).

use std::ffi::OsString;
use std::sync::Arc;

use super::{first_round, plan_run, resolve_plan, runtime, several, vault_client, with_bundles};
use crate::cli;
use crate::error::{self, Error};
use crate::launch::environment::{child_env, unfit_for_environment};
use crate::launch::{self, ChildEnv};
use crate::plan::{self, Plan, Value};
use crate::resolve::Outcome;
use crate::settings::Settings;
use crate::{bundle, reference, resolve, timing, vault};

/// Run `command`: exec it (a successful run never returns), or supervise it when `signals` says
/// kvrun is the supervisor.
pub(crate) fn run(
    command: &[OsString],
    settings: &Settings,
    environment: &[(OsString, OsString)],
    #[cfg(target_os = "linux")] signals: Option<nix::sys::signalfd::SignalFd>,
) -> Result<i32, Error> {
    if command.is_empty() {
        return Err(Error::Usage(
            "no command given: write kvrun [OPTIONS] -- COMMAND [ARGS]...".into(),
        ));
    }
    #[cfg(target_os = "linux")]
    if let Some(signals) = signals {
        return supervise(command, settings, environment, signals);
    }
    let child_env = prepare(command, settings, environment)?;
    Err(launch::exec(command, child_env))
}

/// Exec mode: read the sources, plan, check the command, resolve: the child's environment, or
/// every reason it cannot start.
fn prepare(
    command: &[OsString],
    settings: &Settings,
    environment: &[(OsString, OsString)],
) -> Result<ChildEnv, Error> {
    let plan = plan_run(&settings.sources, environment)?;
    preflight(&plan, command)?;
    let (plan, outcomes) = resolve_plan(plan, settings, environment)?;
    let env = child_env(&plan, &outcomes, settings.hidden)?;
    fits_exec(command, &env)?;
    Ok(env)
}

/// Before any request: the command exists, and is executable, on the `PATH` the child will have
/// (which a `.env` or the manifest may set); and what exec will carry fits Linux's limits as far
/// as the plan knows it — every literal, every argument, and the total with the secrets' names.
/// Same errors (126/127) as exec would give, but before a single secret is fetched. Without a
/// command (`check`), the literals only.
pub(crate) fn preflight(plan: &Plan, command: &[OsString]) -> Result<(), Error> {
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
                    problems.push(Error::bad_input(var.location.naming(&var.name), reason));
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
pub(crate) fn fits_exec(command: &[OsString], env: &ChildEnv) -> Result<(), Error> {
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

/// Supervisor mode: resolve (a stop signal ends it), start the command, supervise it to its end.
#[cfg(target_os = "linux")]
fn supervise(
    command: &[OsString],
    settings: &Settings,
    environment: &[(OsString, OsString)],
    signals: nix::sys::signalfd::SignalFd,
) -> Result<i32, Error> {
    use launch::supervise::{Options, Supervisor};
    let wanted = &settings.supervise;
    let plan = Arc::new(plan_run(&settings.sources, environment)?);
    preflight(&plan, command)?;
    let runtime = runtime()?;
    let result = runtime.block_on(async {
        let mut supervisor = Supervisor::new(
            signals,
            command.to_vec(),
            wanted.secrets_dir.clone(),
            wanted.runtime_dir.clone(),
        )?;
        let mut watcher = None;
        let (expanded, outcomes) = if plan.secrets.is_empty()
            && plan.stores.is_empty()
            && plan.settings.is_empty()
        {
            (plan.clone(), Vec::new())
        } else {
            let client = Arc::new(vault_client(settings, environment)?);
            let timing = timing::Run::start();
            let options = settings.fetch.resolve;
            let first = tokio::select! {
                first = first_round(client.clone(), &plan.secrets, &plan, &[], options) => first,
                stop = supervisor.interrupted() => return Err(stop),
            };
            if wanted.watch.is_some() {
                watcher =
                    Watcher::new(&plan, &first, client.clone(), settings, command).map(Arc::new);
            }
            let context = bundle::Context::new(&settings.sources);
            let resolved = tokio::select! {
                resolved = expanded(client, &plan, first, &context, options) => resolved,
                stop = supervisor.interrupted() => return Err(stop),
            };
            drop(timing);
            resolved?
        };
        let env = child_env(&expanded, &outcomes, settings.hidden)?;
        fits_exec(command, &env)?;
        let options = Options {
            watch: wanted.watch,
            reload_signal: wanted.reload_signal,
            stop_timeout: wanted.stop_timeout.unwrap_or(cli::DEFAULT_STOP_TIMEOUT),
            shutdown_timeout: wanted.stop_timeout,
        };
        supervisor.run(env, options, watcher).await
    });
    runtime.shutdown_background();
    result
}

/// The plan with its bundles' variables in place ([`with_bundles`]), after `first` (one outcome per
/// secret of `plan`): the same plan, not a copy, when it has no bundles.
#[cfg(target_os = "linux")]
async fn expanded(
    client: Arc<vault::VaultClient>,
    plan: &Arc<Plan>,
    first: super::First,
    context: &bundle::Context,
    options: resolve::Options,
) -> Result<(Arc<Plan>, Vec<Outcome>), Error> {
    if plan.bundles.is_empty() && plan.stores.is_empty() && plan.settings.is_empty() {
        return Ok((plan.clone(), first.outcomes));
    }
    let (plan, outcomes) = with_bundles(client, (**plan).clone(), first, context, options).await?;
    Ok((Arc::new(plan), outcomes))
}

/// `--watch`: what a check needs to fetch the unpinned secrets again and build the environment
/// they make (the supervisor's [`launch::job::Job`] compares it with the command's). The pinned
/// secrets keep their first outcome. `None` when every secret is pinned to a version.
#[cfg(target_os = "linux")]
struct Watcher {
    plan: Arc<Plan>,
    client: Arc<vault::VaultClient>,
    /// The first resolution's outcomes, one per secret of the plan.
    first: Vec<Outcome>,
    /// Each store's last list: its pages' `ETag`s go back with the next check's.
    listed: std::sync::Mutex<Vec<Option<Arc<crate::appconfig::client::Listed>>>>,
    /// The secrets a check fetches again: those without a pinned version.
    unpinned: Vec<usize>,
    command: Vec<OsString>,
    options: resolve::Options,
    /// Where a check puts the bundles' variables.
    context: bundle::Context,
    hidden: &'static [&'static str],
}

#[cfg(target_os = "linux")]
impl Watcher {
    fn new(
        plan: &Arc<Plan>,
        first: &super::First,
        client: Arc<vault::VaultClient>,
        settings: &Settings,
        command: &[OsString],
    ) -> Option<Watcher> {
        let unpinned: Vec<usize> = plan
            .secrets
            .iter()
            .enumerate()
            .filter(|(_, s)| s.version.is_none())
            .map(|(i, _)| i)
            .collect();
        if unpinned.is_empty() && plan.stores.is_empty() && plan.settings.is_empty() {
            tracing::warn!("--watch: every secret is pinned to a version; nothing to watch");
            return None;
        }
        Some(Watcher {
            plan: plan.clone(),
            client,
            first: first.outcomes.clone(),
            listed: std::sync::Mutex::new(last_lists(&first.listings)),
            unpinned,
            command: command.to_vec(),
            options: settings.fetch.resolve,
            context: bundle::Context::new(&settings.sources),
            hidden: settings.hidden,
        })
    }
}

/// What a check keeps of each store's list for the next (a failed list: nothing, so the next
/// lists it whole).
#[cfg(target_os = "linux")]
fn last_lists(
    listings: &[crate::appconfig::Listing],
) -> Vec<Option<Arc<crate::appconfig::client::Listed>>> {
    listings
        .iter()
        .map(|l| l.as_ref().ok().map(|l| Arc::new(l.clone())))
        .collect()
}

#[cfg(target_os = "linux")]
impl launch::supervise::Watch for Watcher {
    async fn check(self: Arc<Self>) -> launch::supervise::Refreshed {
        use launch::supervise::Refreshed;
        let subset: Vec<reference::SecretRef> = self
            .unpinned
            .iter()
            .map(|&i| self.plan.secrets[i].clone())
            .collect();
        self.client.set_deadline(crate::time::after(
            std::time::Instant::now(),
            self.options.timeout,
        ));
        // Every store is listed again whole (its Key Vault references are fetched again too).
        let previous = self
            .listed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut fresh = first_round(
            self.client.clone(),
            &subset,
            &self.plan,
            &previous,
            self.options,
        )
        .await;
        *self
            .listed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = last_lists(&fresh.listings);
        let mut outcomes = self.first.clone();
        for (&index, outcome) in self.unpinned.iter().zip(fresh.outcomes) {
            outcomes[index] = outcome;
        }
        fresh.outcomes = outcomes;
        // A rotated bundle is read again whole: a rotation of every variable it gives (and the
        // references of a dotenv bundle are fetched again).
        let resolved = expanded(
            self.client.clone(),
            &self.plan,
            fresh,
            &self.context,
            self.options,
        )
        .await;
        // A rotated value that exec could not carry must not cost the running command its
        // restart: the check fails and the command keeps what it has.
        match resolved
            .and_then(|(plan, outcomes)| child_env(&plan, &outcomes, self.hidden))
            .and_then(|env| fits_exec(&self.command, &env).map(|()| env))
        {
            Ok(env) => Refreshed::Fresh(env),
            Err(e) => {
                tracing::warn!(
                    "--watch: the check failed; the command keeps running with what it has: {}",
                    error::Report(&e)
                );
                Refreshed::Failed
            }
        }
    }
}
