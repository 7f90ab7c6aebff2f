//! Supervisor mode (`--init`): kvrun stays as the parent of the command instead of becoming it.
//!
//! What it does, as tini and dumb-init do:
//!
//! - **Signals.** Every catchable signal in [`FORWARDED`] is blocked before any thread starts and
//!   read from a `signalfd`, then sent on to the command. The exception: a signal the *kernel*
//!   sent (`si_code == SI_KERNEL`: the terminal's ^C, ^\, ^Z, a window resize, a hangup) has
//!   already gone to the terminal's foreground process group, which the command shares with
//!   kvrun, so sending it again would deliver it twice. Signals from processes (`kill`, `docker
//!   stop`, systemd, the kubelet) are always forwarded. `SIGKILL` and `SIGSTOP` cannot be caught;
//!   the synchronous signals (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`, `SIGTRAP`, `SIGSYS`,
//!   `SIGABRT`) and `SIGTTIN`/`SIGTTOU` keep their default action; real-time signals are not
//!   forwarded.
//! - **Zombies.** kvrun makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`; PID 1 is one
//!   anyway), so orphans of the command are re-parented to kvrun, and it reaps every child that
//!   exits — except the `az`/`azd` processes it runs itself for tokens, which their own code waits
//!   for (see [`crate::children`]).
//! - **Status.** kvrun exits with the command's exit status, or 128+N when a signal N killed it.
//! - **Files.** Secret files live in a private tmpfs directory that is removed when the command
//!   exits (see [`super::files`]).
//! - **Watch.** With `--watch`, unpinned secrets are fetched again every interval (jittered); a
//!   change is delivered by a reload signal (files) or a restart (TERM, a grace period, KILL). A
//!   failed check never touches the running command: it is logged and tried again with backoff.

use std::ffi::OsString;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::time::Instant;

use super::ChildEnv;
use super::files::SecretDir;
use super::job::{Action, Event, Job};
use crate::error::{Error, ExitCode};

/// The signals kvrun forwards to the command.
pub(crate) const FORWARDED: [Signal; 19] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGPIPE,
    Signal::SIGALRM,
    Signal::SIGTERM,
    Signal::SIGSTKFLT,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGURG,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGWINCH,
    Signal::SIGIO,
    Signal::SIGPWR,
];

/// Signals that stop kvrun while it is still resolving (no command to forward them to yet).
const STOPPING: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
];

/// `si_code` of a signal the kernel generated (a terminal's ^C, for one).
const SI_KERNEL: i32 = 0x80;

/// Block the forwarded signals in this thread, before any other thread exists (threads inherit
/// the mask, so none of them runs a handler), and open a (blocking) `signalfd` for them.
///
/// # Errors
/// The kernel refused.
pub(crate) fn block_signals() -> Result<SignalFd, Error> {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(signal);
    }
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(Error::system("cannot block signals"))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)
        .map_err(Error::system("cannot open a signalfd"))
}

/// What a `--watch` check found.
pub(crate) enum Refreshed {
    /// Every secret resolved: the environment they make now ([`Job`] compares it with the
    /// command's).
    Fresh(ChildEnv),
    /// Something failed (already logged): the command keeps what it has.
    Failed,
}

/// A `--watch` check: fetch the secrets that can change again and build the environment they
/// make. `launch` knows nothing of vaults; the run command implements this.
pub(crate) trait Watch: Send + Sync + 'static {
    fn check(self: Arc<Self>) -> impl Future<Output = Refreshed> + Send + 'static;
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// `--watch`: how often to check, before jitter.
    pub watch: Option<Duration>,
    /// `--reload-signal`: deliver changed files with this signal instead of a restart.
    pub reload_signal: Option<Signal>,
    /// `--stop-timeout`: how long a restart waits after SIGTERM before SIGKILL.
    pub stop_timeout: Duration,
    /// `--stop-timeout` when given explicitly: after SIGTERM or SIGINT to kvrun, how long the
    /// command may take to exit before SIGKILL. `None`: as long as it likes (the orchestrator's
    /// own grace period decides).
    pub shutdown_timeout: Option<Duration>,
}

/// Whether `signal`, sent to kvrun, starts the shutdown grace period: SIGTERM and SIGINT do when
/// `--stop-timeout` was given. SIGHUP (apps reload on it) and SIGQUIT (thread dumps, drains) never
/// do.
#[must_use]
pub(crate) fn shutdown_grace(
    signal: Signal,
    shutdown_timeout: Option<Duration>,
) -> Option<Duration> {
    shutdown_timeout.filter(|_| matches!(signal, Signal::SIGTERM | Signal::SIGINT))
}

pub(crate) struct Supervisor {
    /// Signals read from the signalfd by a thread of their own: (signal, sent by the kernel).
    signals: tokio::sync::mpsc::UnboundedReceiver<(Signal, bool)>,
    command: Vec<OsString>,
    dir: Option<SecretDir>,
    secrets_base: Option<PathBuf>,
    runtime_dir: Option<PathBuf>,
}

impl Supervisor {
    /// Take over the blocked signals; become a subreaper.
    ///
    /// # Errors
    /// The runtime cannot watch the signalfd.
    pub(crate) fn new(
        signals: SignalFd,
        command: Vec<OsString>,
        secrets_base: Option<PathBuf>,
        runtime_dir: Option<PathBuf>,
    ) -> Result<Self, Error> {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!("cannot become a child subreaper ({e}): orphans go to PID 1");
        }
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        // A blocking read in a thread of its own (the mask it inherits blocks the same signals),
        // so that no unsafe registration of the descriptor with the runtime is needed.
        std::thread::Builder::new()
            .name("kvrun-signals".into())
            .spawn(move || {
                while let Ok(Some(info)) = signals.read_signal() {
                    let signal = i32::try_from(info.ssi_signo)
                        .ok()
                        .and_then(|n| Signal::try_from(n).ok());
                    if let Some(signal) = signal
                        && sender.send((signal, info.ssi_code == SI_KERNEL)).is_err()
                    {
                        break;
                    }
                }
            })
            .map_err(Error::system("cannot start the signal thread"))?;
        let signals = receiver;
        Ok(Self {
            signals,
            command,
            dir: None,
            secrets_base,
            runtime_dir,
        })
    }

    /// Every signal waiting in the signalfd: (signal, sent by the kernel).
    async fn next_signals(&mut self) -> Vec<(Signal, bool)> {
        let Some(first) = self.signals.recv().await else {
            return std::future::pending().await;
        };
        let mut got = vec![first];
        while let Ok(more) = self.signals.try_recv() {
            got.push(more);
        }
        got
    }

    /// While resolving: wait for a signal that means stop; the others are dropped (there is no
    /// command yet to forward them to).
    pub(crate) async fn interrupted(&mut self) -> Error {
        loop {
            for (signal, _) in self.next_signals().await {
                if STOPPING.contains(&signal) {
                    return Error::Interrupted {
                        signal: signal as i32,
                        name: signal.as_str(),
                    };
                }
                tracing::debug!(signal = signal.as_str(), "ignored while resolving");
            }
        }
    }

    /// Write the files and start the command; its pid.
    fn spawn(&mut self, env: &ChildEnv) -> Result<Pid, Error> {
        let mut vars = env.vars.clone();
        if !env.files.is_empty() {
            if self.dir.is_none() {
                let shared = env.files.iter().any(|f| f.spec.owner.is_some());
                let dir = SecretDir::create(
                    self.secrets_base.as_deref(),
                    self.runtime_dir.as_deref(),
                    shared,
                )
                .map_err(|message| Error::bad_input("secret files", message))?;
                tracing::info!(dir = %dir.path().display(), "secret files");
                self.dir = Some(dir);
            }
            if let Some(dir) = &self.dir {
                for file in &env.files {
                    let path = dir.write(file).map_err(|message| {
                        Error::bad_input(file.var.to_string_lossy().into_owned(), message)
                    })?;
                    vars.push((file.var.clone(), path.into_os_string()));
                }
            }
        }
        let pid = spawn(&self.command, &vars)?;
        super::panic_guard::set_command(Some(pid.as_raw()));
        tracing::info!(pid = pid.as_raw(), "started");
        Ok(pid)
    }

    /// Rewrite the files in place (same paths), for a reload by signal.
    fn rewrite(&self, env: &ChildEnv) -> Result<(), String> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        for file in &env.files {
            dir.write(file)?;
        }
        Ok(())
    }

    /// Run the command to its end; its exit code (128+N for signal N). The decisions are
    /// [`Job`]'s; this loop turns what happens into its events and carries out its actions.
    ///
    /// # Errors
    /// The command could not be started (then, or at a restart).
    pub(crate) async fn run(
        mut self,
        env: ChildEnv,
        options: Options,
        watch: Option<Arc<impl Watch>>,
    ) -> Result<i32, Error> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigchld =
            signal(SignalKind::child()).map_err(Error::system("cannot watch SIGCHLD"))?;
        let mut pid = self.spawn(&env)?;
        let mut job = Job::new(env, options, watch.is_some(), Instant::now(), jittered);
        let mut check: Option<tokio::task::JoinHandle<Refreshed>> = None;
        loop {
            let events: Vec<Event> = tokio::select! {
                signals = self.next_signals() => signals
                    .into_iter()
                    .map(|(signal, from_kernel)| Event::Signal { signal, from_kernel })
                    .collect(),
                _ = sigchld.recv() => {
                    reap_orphans(pid);
                    exited(pid).map(|code| {
                        super::panic_guard::set_command(None);
                        Event::Exited(code)
                    }).into_iter().collect()
                }
                () = sleep_until_opt(job.kill_deadline()) => vec![Event::KillDeadline],
                () = sleep_until_opt(job.check_due()) => vec![Event::CheckDue],
                result = join_opt(&mut check) => {
                    check = None;
                    vec![Event::Checked(result)]
                }
            };
            for event in events {
                for action in job.on(event, Instant::now()) {
                    match action {
                        Action::Forward(signal) => {
                            tracing::debug!(
                                signal = signal.as_str(),
                                pid = pid.as_raw(),
                                "forwarding"
                            );
                            let _ = kill(pid, signal);
                        }
                        Action::Kill(signal) => {
                            tracing::debug!(
                                signal = signal.as_str(),
                                pid = pid.as_raw(),
                                "signalling"
                            );
                            let _ = kill(pid, signal);
                        }
                        Action::Start => pid = self.spawn(job.environment())?,
                        Action::StartCheck => {
                            if let Some(watch) = &watch {
                                check = Some(tokio::spawn(watch.clone().check()));
                            }
                        }
                        Action::Reload { env, signal } => match self.rewrite(&env) {
                            Ok(()) => {
                                tracing::warn!(
                                    signal = signal.as_str(),
                                    "secrets changed: files rewritten, signalling the command"
                                );
                                let _ = kill(pid, signal);
                                let _ = job.on(Event::Reloaded(env), Instant::now());
                            }
                            Err(e) => tracing::warn!(
                                "secrets changed but the files cannot be rewritten: {e}; keeping the running command"
                            ),
                        },
                        Action::Exit(code) => return Ok(code),
                    }
                }
            }
        }
    }
}

/// Start `command` with exactly `vars`, no signal blocked and `SIGPIPE` at its default (as exec
/// mode's command starts); kvrun reaps it. `posix_spawn` sets the child's mask itself, so kvrun's
/// blocked signals never reach the command, with no window in which kvrun has them unblocked.
fn spawn(command: &[OsString], vars: &[(OsString, OsString)]) -> Result<Pid, Error> {
    use std::ffi::CString;
    use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
    let Some(program) = command.first() else {
        return Err(Error::Usage("no command given".into()));
    };
    let failed = |source: std::io::Error| Error::Exec {
        program: program.to_string_lossy().into_owned(),
        source,
    };
    let nul = || {
        failed(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a NUL byte in an argument",
        ))
    };
    let path = super::find_program(program, super::path_of(vars)).map_err(failed)?;
    let path = CString::new(path.into_os_string().into_vec()).map_err(|_| nul())?;
    let args: Vec<CString> = command
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| nul())?;
    let envp: Vec<CString> = vars
        .iter()
        .map(|(k, v)| {
            let mut pair = k.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(v.as_bytes());
            CString::new(pair)
        })
        .collect::<Result<_, _>>()
        .map_err(|_| nul())?;
    let errno = |e: Errno| failed(std::io::Error::from_raw_os_error(e as i32));
    let mut attr = nix::spawn::PosixSpawnAttr::init().map_err(errno)?;
    let mut pipe_default = SigSet::empty();
    pipe_default.add(Signal::SIGPIPE);
    attr.set_sigmask(&SigSet::empty()).map_err(errno)?;
    attr.set_sigdefault(&pipe_default).map_err(errno)?;
    attr.set_flags(
        nix::spawn::PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | nix::spawn::PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )
    .map_err(errno)?;
    let actions = nix::spawn::PosixSpawnFileActions::init().map_err(errno)?;
    let pid = {
        // Tracked like the token tools' children, so an orphan sweep cannot race the start.
        let (pid, _tracked) = crate::children::spawn_tracked(
            || {
                nix::spawn::posix_spawn(path.as_c_str(), &actions, &attr, &args, &envp)
                    .map_err(std::io::Error::from)
            },
            |pid| u32::try_from(pid.as_raw()).ok(),
        )
        .map_err(failed)?;
        pid
    };
    Ok(pid)
}

/// A wait of about `interval`: uniformly within ±10%, so that replicas started together drift
/// apart instead of checking in step.
fn jittered(interval: Duration) -> Duration {
    let unit = f64::from(u32::try_from(crate::jitter::random() % 10_001).unwrap_or(0)) / 10_000.0;
    interval.mul_f64(0.9 + 0.2 * unit)
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn join_opt(check: &mut Option<tokio::task::JoinHandle<Refreshed>>) -> Refreshed {
    match check {
        Some(handle) => handle.await.unwrap_or(Refreshed::Failed),
        None => std::future::pending().await,
    }
}

/// The command's exit code if it has exited (and is now reaped).
fn exited(pid: Pid) -> Option<i32> {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => Some(code),
        Ok(WaitStatus::Signaled(_, signal, _)) => Some(ExitCode::SIGNAL_BASE + signal as i32),
        Err(Errno::ECHILD) => Some(ExitCode::INTERNAL),
        _ => None,
    }
}

/// Reap every exited child that is neither the command nor a process kvrun waits for itself.
fn reap_orphans(command: Pid) {
    for pid in crate::children::list() {
        if pid == command.as_raw() || crate::children::is_tracked(pid) {
            continue;
        }
        if let Ok(status) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
            && status != WaitStatus::StillAlive
        {
            tracing::debug!(pid, "reaped an orphan");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_term_and_int_start_the_shutdown_grace_and_only_when_asked() {
        let grace = Some(Duration::from_secs(3));
        assert_eq!(shutdown_grace(Signal::SIGTERM, grace), grace);
        assert_eq!(shutdown_grace(Signal::SIGINT, grace), grace);
        for signal in [Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1] {
            assert_eq!(shutdown_grace(signal, grace), None, "{signal}");
        }
        assert_eq!(shutdown_grace(Signal::SIGTERM, None), None, "not given");
    }
}
