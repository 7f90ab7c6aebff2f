//! The supervisor's decisions, as a state machine (after watchexec's `supervisor/src/job`):
//! [`Event`]s in, [`Action`]s out, and the deadlines the caller waits for. No I/O and no clock:
//! the caller passes `now`, so unit tests drive restarts, backoff and stop timeouts through any
//! span of time without waiting for it. [`super::supervise`] turns signals, `SIGCHLD`, timers and
//! finished `--watch` checks into events and carries the actions out (signals, spawns, files).
//!
//! The states: the command runs, or a restart is under way (SIGTERM sent, the new environment
//! waiting for the old command to exit, SIGKILL due at a deadline). Beside them: whether kvrun
//! is stopping (SIGTERM, SIGINT or SIGQUIT arrived: no more restarts), the shutdown grace
//! (`--stop-timeout` given: SIGKILL due after SIGTERM or SIGINT), and the watch — when the next
//! check is due, whether one is running, and how many failed in a row (the wait doubles, up to
//! eight intervals).

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::time::Instant;

use crate::time::after;

use super::ChildEnv;
use super::supervise::{Options, Refreshed, shutdown_grace};

/// What happened.
pub(crate) enum Event {
    /// A signal to kvrun; `from_kernel`: the terminal sent it to the whole process group.
    Signal { signal: Signal, from_kernel: bool },
    /// The command exited with this status (128+N for signal N).
    Exited(i32),
    /// [`Job::kill_deadline`] has come.
    KillDeadline,
    /// [`Job::check_due`] has come.
    CheckDue,
    /// A `--watch` check finished.
    Checked(Refreshed),
    /// The files of this environment were rewritten and the reload signal sent.
    Reloaded(ChildEnv),
}

/// What to do. No `Debug`: an environment holds secret values.
pub(crate) enum Action {
    /// Send this signal on to the command.
    Forward(Signal),
    /// Signal the command on kvrun's own account (SIGTERM for a restart, SIGKILL after a grace).
    Kill(Signal),
    /// Start the command with [`Job::environment`] (a restart, once the old one has exited).
    Start,
    /// Start a `--watch` check.
    StartCheck,
    /// Rewrite the secret files for this environment and send the command `signal`; then report
    /// [`Event::Reloaded`].
    Reload { env: ChildEnv, signal: Signal },
    /// kvrun exits with this status.
    Exit(i32),
}

/// A restart under way: the environment to start once the old command has exited, and when
/// SIGKILL is due if it has not.
struct Restart {
    env: ChildEnv,
    kill_at: Option<Instant>,
}

pub(crate) struct Job {
    options: Options,
    /// `--watch`, when there is something to watch.
    watch: Option<Duration>,
    /// Spreads check times (±10% in kvrun; the identity in tests).
    jitter: fn(Duration) -> Duration,
    current: ChildEnv,
    restart: Option<Restart>,
    stopping: bool,
    /// After SIGTERM or SIGINT with an explicit `--stop-timeout`: when SIGKILL is due, and for
    /// which signal.
    shutdown: Option<(Instant, Signal)>,
    next_check: Option<Instant>,
    checking: bool,
    failures: u32,
}

impl Job {
    /// The job of a command just started with `env` at `now`; `watching`: a `--watch` check
    /// exists (not every secret is pinned).
    pub(crate) fn new(
        env: ChildEnv,
        options: Options,
        watching: bool,
        now: Instant,
        jitter: fn(Duration) -> Duration,
    ) -> Job {
        let watch = options.watch.filter(|_| watching);
        Job {
            options,
            watch,
            jitter,
            current: env,
            restart: None,
            stopping: false,
            shutdown: None,
            next_check: watch.map(|interval| after(now, jitter(interval))),
            checking: false,
            failures: 0,
        }
    }

    /// The environment the command runs with, or is to be started with at a restart.
    pub(crate) fn environment(&self) -> &ChildEnv {
        &self.current
    }

    /// When SIGKILL is due (a restart's or the shutdown grace's), if at all.
    pub(crate) fn kill_deadline(&self) -> Option<Instant> {
        self.restart
            .as_ref()
            .and_then(|r| r.kill_at)
            .into_iter()
            .chain(self.shutdown.map(|(at, _)| at))
            .min()
    }

    /// When the next `--watch` check is due: never while one runs or a restart is under way.
    pub(crate) fn check_due(&self) -> Option<Instant> {
        self.next_check
            .filter(|_| !self.checking && self.restart.is_none())
    }

    /// The transition for `event` at `now`, and what to do.
    pub(crate) fn on(&mut self, event: Event, now: Instant) -> Vec<Action> {
        match event {
            Event::Signal {
                signal,
                from_kernel,
            } => self.signal(signal, from_kernel, now),
            Event::Exited(code) => self.exited(code, now),
            Event::KillDeadline => self.kill_deadline_passed(now),
            Event::CheckDue => {
                self.checking = true;
                self.next_check = None;
                vec![Action::StartCheck]
            }
            Event::Checked(result) => self.checked(result, now),
            Event::Reloaded(env) => {
                self.current = env;
                Vec::new()
            }
        }
    }

    fn signal(&mut self, signal: Signal, from_kernel: bool, now: Instant) -> Vec<Action> {
        if matches!(signal, Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT) {
            self.stopping = true;
        }
        if self.shutdown.is_none()
            && let Some(grace) = shutdown_grace(signal, self.options.shutdown_timeout)
        {
            self.shutdown = Some((after(now, grace), signal));
        }
        if from_kernel {
            tracing::debug!(
                signal = signal.as_str(),
                "sent by the kernel to the process group; not forwarded"
            );
            return Vec::new();
        }
        vec![Action::Forward(signal)]
    }

    fn exited(&mut self, code: i32, now: Instant) -> Vec<Action> {
        match self.restart.take() {
            Some(next) if !self.stopping => {
                self.current = next.env;
                self.next_check = self
                    .watch
                    .map(|interval| after(now, (self.jitter)(interval)));
                vec![Action::Start]
            }
            _ => {
                tracing::info!(code, "command exited");
                vec![Action::Exit(code)]
            }
        }
    }

    fn kill_deadline_passed(&mut self, now: Instant) -> Vec<Action> {
        match self.shutdown {
            Some((at, signal)) if at <= now => {
                self.shutdown = None;
                tracing::warn!(
                    "the command is still running {} after {}: sending SIGKILL (--stop-timeout)",
                    humantime::format_duration(self.options.shutdown_timeout.unwrap_or_default()),
                    signal.as_str()
                );
            }
            _ => tracing::warn!(
                "the command is still running {} after SIGTERM: sending SIGKILL",
                humantime::format_duration(self.options.stop_timeout)
            ),
        }
        if let Some(restart) = self.restart.as_mut() {
            restart.kill_at = None;
        }
        vec![Action::Kill(Signal::SIGKILL)]
    }

    fn checked(&mut self, result: Refreshed, now: Instant) -> Vec<Action> {
        self.checking = false;
        let mut actions = Vec::new();
        match result {
            Refreshed::Failed => self.failures = self.failures.saturating_add(1),
            // Compared with what the command runs with now: a reload whose files could not be
            // rewritten left it unchanged, so the next check tries again.
            Refreshed::Fresh(env) if env == self.current => self.failures = 0,
            Refreshed::Fresh(env) => {
                self.failures = 0;
                tracing::warn!(variables = %changed_names(&self.current, &env).join(", "), "--watch: secrets changed");
                if self.stopping {
                    return actions;
                }
                let files_only = env.vars == self.current.vars;
                match self.options.reload_signal {
                    Some(signal) if files_only => actions.push(Action::Reload { env, signal }),
                    reload => {
                        if reload.is_some() {
                            tracing::warn!(
                                "a changed secret is in an environment variable, which a running process cannot take: restarting the command"
                            );
                        } else {
                            tracing::warn!("secrets changed: restarting the command");
                        }
                        actions.push(Action::Kill(Signal::SIGTERM));
                        self.restart = Some(Restart {
                            env,
                            kill_at: Some(after(now, self.options.stop_timeout)),
                        });
                    }
                }
            }
        }
        // After failures, wait longer: 2, 4, 8 intervals at most.
        let interval = self.watch.unwrap_or(super::MIN_WATCH_INTERVAL);
        let factor = 1u32 << self.failures.min(3);
        self.next_check = Some(after(now, (self.jitter)(interval.saturating_mul(factor))));
        actions
    }
}

/// The names of the variables and files that differ between two environments (never a value).
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

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::launch::files::{FileSecret, FileSpec};

    const SECOND: Duration = Duration::from_secs(1);

    fn options(watch: Option<u64>) -> Options {
        Options {
            watch: watch.map(Duration::from_secs),
            reload_signal: None,
            stop_timeout: Duration::from_secs(10),
            shutdown_timeout: None,
        }
    }

    fn env(value: &str) -> ChildEnv {
        ChildEnv {
            vars: vec![(OsString::from("DB"), OsString::from(value))],
            files: Vec::new(),
        }
    }

    fn with_file(value: &str, contents: &[u8]) -> ChildEnv {
        ChildEnv {
            files: vec![FileSecret {
                var: "TLS_KEY_FILE".into(),
                contents: zeroize::Zeroizing::new(contents.to_vec()),
                spec: FileSpec::default(),
            }],
            ..env(value)
        }
    }

    fn same(wait: Duration) -> Duration {
        wait
    }

    fn started(options: Options, now: Instant) -> Job {
        Job::new(env("v1"), options, true, now, same)
    }

    /// The actions, as words (an action holds no `Debug`: environments hold values).
    fn names(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Forward(s) => format!("forward {s}"),
                Action::Kill(s) => format!("kill {s}"),
                Action::Start => "start".to_owned(),
                Action::StartCheck => "check".to_owned(),
                Action::Reload { signal, .. } => format!("reload {signal}"),
                Action::Exit(code) => format!("exit {code}"),
            })
            .collect()
    }

    #[test]
    fn signals_are_forwarded_except_what_the_kernel_sent_to_the_group() {
        let t0 = Instant::now();
        let mut job = started(options(None), t0);
        let usr1 = Event::Signal {
            signal: Signal::SIGUSR1,
            from_kernel: false,
        };
        assert_eq!(names(&job.on(usr1, t0)), ["forward SIGUSR1"]);
        let winch = Event::Signal {
            signal: Signal::SIGWINCH,
            from_kernel: true,
        };
        assert!(job.on(winch, t0).is_empty());
        assert_eq!(names(&job.on(Event::Exited(0), t0)), ["exit 0"]);
    }

    #[test]
    fn a_changed_secret_restarts_the_command_and_the_watch_starts_again() {
        let t0 = Instant::now();
        let mut job = started(options(Some(60)), t0);
        assert_eq!(job.check_due(), Some(t0 + 60 * SECOND));
        let t1 = t0 + 60 * SECOND;
        assert_eq!(names(&job.on(Event::CheckDue, t1)), ["check"]);
        assert_eq!(job.check_due(), None, "one check at a time");
        let t2 = t1 + 2 * SECOND;
        let actions = job.on(Event::Checked(Refreshed::Fresh(env("v2"))), t2);
        assert_eq!(names(&actions), ["kill SIGTERM"]);
        assert_eq!(job.kill_deadline(), Some(t2 + 10 * SECOND));
        assert_eq!(job.check_due(), None, "no check during a restart");
        let t3 = t2 + SECOND;
        assert_eq!(names(&job.on(Event::Exited(143), t3)), ["start"]);
        assert_eq!(job.environment().vars[0].1, "v2", "the new environment");
        assert_eq!(job.kill_deadline(), None);
        assert_eq!(job.check_due(), Some(t3 + 60 * SECOND));
    }

    #[test]
    fn a_command_that_ignores_sigterm_at_a_restart_gets_sigkill_at_the_stop_timeout() {
        let t0 = Instant::now();
        let mut job = started(options(Some(60)), t0);
        let _ = job.on(Event::CheckDue, t0);
        let _ = job.on(Event::Checked(Refreshed::Fresh(env("v2"))), t0);
        let due = job.kill_deadline().expect("a deadline");
        assert_eq!(due, t0 + 10 * SECOND);
        assert_eq!(names(&job.on(Event::KillDeadline, due)), ["kill SIGKILL"]);
        assert_eq!(job.kill_deadline(), None, "SIGKILL once");
        assert_eq!(names(&job.on(Event::Exited(137), due)), ["start"]);
        assert_eq!(job.environment().vars[0].1, "v2", "the new environment");
    }

    #[test]
    fn failed_checks_back_off_to_eight_intervals_and_a_good_one_resets() {
        let t0 = Instant::now();
        let mut job = started(options(Some(10)), t0);
        let mut now = t0;
        for expected in [20, 40, 80, 80] {
            let _ = job.on(Event::CheckDue, now);
            let actions = job.on(Event::Checked(Refreshed::Failed), now);
            assert!(
                actions.is_empty(),
                "a failed check leaves the command alone"
            );
            assert_eq!(job.check_due(), Some(now + expected * SECOND));
            now += expected * SECOND;
        }
        let _ = job.on(Event::CheckDue, now);
        let unchanged = job.on(Event::Checked(Refreshed::Fresh(env("v1"))), now);
        assert!(unchanged.is_empty(), "the same environment: nothing to do");
        assert_eq!(job.check_due(), Some(now + 10 * SECOND));
    }

    /// A watched job with a file (`old`), a variable (`v1`) and SIGHUP as its reload signal.
    fn reloading_job(t0: Instant) -> Job {
        let reload = Options {
            reload_signal: Some(Signal::SIGHUP),
            ..options(Some(10))
        };
        Job::new(with_file("v1", b"old"), reload, true, t0, same)
    }

    #[test]
    fn changed_files_go_by_the_reload_signal_and_changed_variables_by_a_restart() {
        let t0 = Instant::now();
        let mut job = reloading_job(t0);
        let _ = job.on(Event::CheckDue, t0);
        let actions = job.on(
            Event::Checked(Refreshed::Fresh(with_file("v1", b"new"))),
            t0,
        );
        let [Action::Reload { env, signal }] = actions.as_slice() else {
            panic!("a reload: {:?}", names(&actions));
        };
        assert_eq!(*signal, Signal::SIGHUP);
        let _ = job.on(Event::Reloaded(env.clone()), t0);
        assert_eq!(job.kill_deadline(), None, "no restart");
        // A variable changed: a running process cannot take it, so the command restarts.
        let _ = job.on(Event::CheckDue, t0);
        let actions = job.on(
            Event::Checked(Refreshed::Fresh(with_file("v2", b"new"))),
            t0,
        );
        assert_eq!(names(&actions), ["kill SIGTERM"]);
    }

    #[test]
    fn the_changed_names_are_the_new_or_different_variables_and_files() {
        let old = with_file("v1", b"old");
        assert!(changed_names(&old, &old).is_empty());
        assert_eq!(changed_names(&old, &with_file("v2", b"old")), ["DB"]);
        assert_eq!(
            changed_names(&old, &with_file("v2", b"new")),
            ["DB", "TLS_KEY_FILE"]
        );
    }

    #[test]
    fn a_reload_whose_files_could_not_be_written_is_tried_again_at_the_next_check() {
        let t0 = Instant::now();
        let mut job = reloading_job(t0);
        for _ in 0..2 {
            // No `Reloaded` follows: the supervisor could not rewrite the files.
            let _ = job.on(Event::CheckDue, t0);
            let actions = job.on(
                Event::Checked(Refreshed::Fresh(with_file("v1", b"new"))),
                t0,
            );
            assert!(
                matches!(actions.as_slice(), [Action::Reload { .. }]),
                "{:?}",
                names(&actions)
            );
        }
    }

    #[test]
    fn once_stopping_there_is_no_restart() {
        let t0 = Instant::now();
        let mut job = started(options(Some(10)), t0);
        let _ = job.on(Event::CheckDue, t0);
        let _ = job.on(Event::Checked(Refreshed::Fresh(env("v2"))), t0);
        let term = Event::Signal {
            signal: Signal::SIGTERM,
            from_kernel: false,
        };
        assert_eq!(names(&job.on(term, t0)), ["forward SIGTERM"]);
        assert_eq!(names(&job.on(Event::Exited(143), t0)), ["exit 143"]);
        // And a change found while stopping starts nothing.
        let mut job = Job::new(env("v1"), options(Some(10)), true, t0, same);
        let int = Event::Signal {
            signal: Signal::SIGINT,
            from_kernel: true,
        };
        assert!(job.on(int, t0).is_empty());
        let _ = job.on(Event::CheckDue, t0);
        assert!(
            job.on(Event::Checked(Refreshed::Fresh(env("v2"))), t0)
                .is_empty()
        );
    }

    #[test]
    fn sighup_is_forwarded_and_does_not_stop_a_restart() {
        let t0 = Instant::now();
        let mut job = started(options(Some(10)), t0);
        let _ = job.on(Event::CheckDue, t0);
        let _ = job.on(Event::Checked(Refreshed::Fresh(env("v2"))), t0);
        let hup = Event::Signal {
            signal: Signal::SIGHUP,
            from_kernel: false,
        };
        assert_eq!(names(&job.on(hup, t0)), ["forward SIGHUP"]);
        assert_eq!(names(&job.on(Event::Exited(143), t0)), ["start"]);
        assert_eq!(job.environment().vars[0].1, "v2", "the new environment");
    }

    #[test]
    fn an_explicit_stop_timeout_kills_after_sigterm_to_kvrun() {
        let t0 = Instant::now();
        let given = Options {
            shutdown_timeout: Some(Duration::from_secs(3)),
            ..options(None)
        };
        let mut job = started(given, t0);
        let term = Event::Signal {
            signal: Signal::SIGTERM,
            from_kernel: false,
        };
        assert_eq!(names(&job.on(term, t0)), ["forward SIGTERM"]);
        assert_eq!(job.kill_deadline(), Some(t0 + 3 * SECOND));
        // A second SIGTERM does not move the deadline.
        let again = Event::Signal {
            signal: Signal::SIGTERM,
            from_kernel: false,
        };
        let _ = job.on(again, t0 + SECOND);
        assert_eq!(job.kill_deadline(), Some(t0 + 3 * SECOND));
        let due = t0 + 3 * SECOND;
        assert_eq!(names(&job.on(Event::KillDeadline, due)), ["kill SIGKILL"]);
        assert_eq!(job.kill_deadline(), None);
        // Without --stop-timeout the orchestrator's grace decides: no deadline.
        let mut job = started(options(None), t0);
        let term = Event::Signal {
            signal: Signal::SIGTERM,
            from_kernel: false,
        };
        let _ = job.on(term, t0);
        assert_eq!(job.kill_deadline(), None);
    }
}
