//! kvrun's errors, their exit codes and their user-facing text.
//!
//! Every failure kvrun can report is a variant of [`Error`]; each maps to one documented exit code
//! (sysexits.h vocabulary, 126/127 as `env(1)`), listed in [`ExitCode`] and in `docs/failures.md`. Messages
//! are lowercase fragments; hints follow on their own line. Nothing here ever holds a secret value
//! or a token: failures carry names, vaults, statuses and Key Vault's error codes only.

use std::fmt::{self, Write as _};
use std::path::PathBuf;

/// The process exit codes. `docs/failures.md` lists the same codes, kept in step by hand.
pub struct ExitCode;

impl ExitCode {
    /// The command line is wrong (`EX_USAGE`).
    pub const USAGE: i32 = 64;
    /// A file or value is malformed: a bad reference, `.env` or manifest (`EX_DATAERR`).
    pub const BAD_INPUT: i32 = 65;
    /// Something named does not exist: a secret or version (404), a disabled secret, or a file
    /// given on the command line (`EX_NOINPUT`).
    pub const NOT_FOUND: i32 = 66;
    /// kvrun could not get a token: no credential configured, or Entra ID refused it (`EX_NOUSER`).
    pub const AUTHENTICATION: i32 = 67;
    /// An internal error: a bug in kvrun, and nothing else (`EX_SOFTWARE`).
    pub const INTERNAL: i32 = 70;
    /// An operating-system facility kvrun needs could not be set up: the async runtime, a
    /// signalfd, a thread, signal handling (`EX_OSERR`).
    pub const OS_ERROR: i32 = 71;
    /// kvrun could not write its output: stdout failed for another reason than a closed pipe (a
    /// full disk, an I/O error) (`EX_IOERR`).
    pub const IO_ERROR: i32 = 74;
    /// Key Vault or Entra ID could not be reached in time: network errors, 5xx, throttling, the
    /// `--timeout` deadline (`EX_TEMPFAIL`: trying again later may work).
    pub const UNAVAILABLE: i32 = 75;
    /// A server broke the protocol or could not be trusted: TLS verification failed, a challenge
    /// for another domain, a redirect, a malformed response (`EX_PROTOCOL`). Not retried.
    pub const PROTOCOL: i32 = 76;
    /// The identity has a token but no access: 403 from the vault; or a reference names a vault
    /// outside the vault allow-list (`EX_NOPERM`).
    pub const AUTHORIZATION: i32 = 77;
    /// The command was found but could not be executed (as `env`).
    pub const CANNOT_EXECUTE: i32 = 126;
    /// The command was not found (as `env`).
    pub const COMMAND_NOT_FOUND: i32 = 127;
    /// kvrun was stopped by signal N while resolving: 128 + N (130 for SIGINT, 143 for SIGTERM).
    pub const SIGNAL_BASE: i32 = 128;
    /// stdout was closed (`kvrun parse … | head -1`): kvrun stops quietly with the status of a
    /// process killed by `SIGPIPE` in a shell pipeline (128 + 13).
    pub const STDOUT_CLOSED: i32 = 141;
}

/// Why one reference could not be resolved; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FailureClass {
    // Declaration order is precedence: when several classes fail in one run, the exit code is
    // that of the first class present (the one least likely to go away by itself).
    Authentication,
    Authorization,
    Protocol,
    /// The value cannot go into an environment variable (a NUL byte, too large).
    BadValue,
    NotFound,
    Unavailable,
}

impl FailureClass {
    #[must_use]
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Authentication => ExitCode::AUTHENTICATION,
            Self::Authorization => ExitCode::AUTHORIZATION,
            Self::Protocol => ExitCode::PROTOCOL,
            Self::BadValue => ExitCode::BAD_INPUT,
            Self::NotFound => ExitCode::NOT_FOUND,
            Self::Unavailable => ExitCode::UNAVAILABLE,
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Authentication => "authentication failed",
            Self::Authorization => "forbidden",
            Self::Protocol => "protocol error",
            Self::BadValue => "bad value",
            Self::NotFound => "not found",
            Self::Unavailable => "unavailable",
        })
    }
}

/// One failed reference: which variable wanted it, from where, and what the vault said.
#[derive(Debug, Clone)]
pub struct Failure {
    pub variable: String,
    /// Where the variable is defined: `file:line` or `environment`.
    pub location: String,
    /// `https://vault…/secrets/name[/version]`.
    pub secret: String,
    pub class: FailureClass,
    /// One line: HTTP status and Key Vault error code where there is one, else what went wrong.
    pub reason: String,
    pub hint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    #[error("{location}: {message}")]
    BadInput {
        /// Where the bad value is: `path:line: NAME`, or `environment variable NAME`.
        location: String,
        message: String,
        hint: Option<String>,
    },

    #[error("{path}: {message}", path = path.display())]
    MissingFile { path: PathBuf, message: String },

    #[error("{}", summary(.failures))]
    Unresolved { failures: Vec<Failure> },

    #[error("{message}")]
    VaultNotAllowed { message: String },

    #[error("{program}: {source}")]
    Exec {
        program: String,
        source: std::io::Error,
    },

    #[error("interrupted by signal {name} while resolving; the command was not started")]
    Interrupted { signal: i32, name: &'static str },

    #[error("internal error: {0}")]
    Internal(String),

    /// The system would not give kvrun something it needs (a runtime, a signalfd, a thread).
    #[error("{0}")]
    System(String),

    /// The reader of stdout went away; not printed.
    #[error("stdout was closed")]
    StdoutClosed,

    #[error("cannot write to stdout: {0}")]
    Stdout(String),

    /// `kvrun check` found nothing to check; `looked` says where it looked.
    #[error("no Key Vault references found; kvrun looked in {looked}")]
    NoReferences { looked: String },

    /// `kvrun check`: what a run would fail on (a run says more: nothing was started).
    #[error("{}", check_summary(.failures))]
    CheckFailed { failures: Vec<Failure> },

    /// What exec cannot carry: an argument, or the environment and arguments together.
    #[error("{0}")]
    TooLarge(String),

    /// Several errors, each printed as its own `kvrun: error:`; the first decides the exit code.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<Error>),
}

fn summary(failures: &[Failure]) -> String {
    list(
        format!(
            "{} reference{} could not be resolved; the command was not started",
            failures.len(),
            if failures.len() == 1 { "" } else { "s" }
        ),
        failures,
    )
}

fn check_summary(failures: &[Failure]) -> String {
    list(
        format!(
            "{} reference{} would fail a run",
            failures.len(),
            if failures.len() == 1 { "" } else { "s" }
        ),
        failures,
    )
}

fn list(mut out: String, failures: &[Failure]) -> String {
    for f in failures {
        let _ = write!(
            out,
            "\n  {} ({}): {}: {}",
            f.variable, f.location, f.secret, f.reason
        );
        if let Some(hint) = &f.hint {
            let _ = write!(out, "\n    hint: {hint}");
        }
    }
    out
}

impl Error {
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Usage(_) => ExitCode::USAGE,
            Self::BadInput { .. } | Self::TooLarge(_) => ExitCode::BAD_INPUT,
            Self::MissingFile { .. } | Self::NoReferences { .. } => ExitCode::NOT_FOUND,
            Self::VaultNotAllowed { .. } => ExitCode::AUTHORIZATION,
            Self::Unresolved { failures } | Self::CheckFailed { failures } => failures
                .iter()
                .map(|f| f.class)
                .min()
                .map_or(ExitCode::INTERNAL, FailureClass::exit_code),
            Self::Exec { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => ExitCode::COMMAND_NOT_FOUND,
                _ => ExitCode::CANNOT_EXECUTE,
            },
            Self::Interrupted { signal, .. } => ExitCode::SIGNAL_BASE + signal,
            Self::Internal(_) => ExitCode::INTERNAL,
            Self::System(_) => ExitCode::OS_ERROR,
            Self::StdoutClosed => ExitCode::STDOUT_CLOSED,
            Self::Stdout(_) => ExitCode::IO_ERROR,
            Self::Several(errors) => errors.first().map_or(ExitCode::INTERNAL, Self::exit_code),
        }
    }

    /// The `hint:` line printed after the message, if there is an obvious next step.
    #[must_use]
    pub fn hint(&self) -> Option<&str> {
        match self {
            Self::BadInput { hint, .. } => hint.as_deref(),
            Self::NoReferences { .. } => Some(
                "run check where the app's .env or kvrun.toml is, or name them with --env-file and --manifest",
            ),
            _ => None,
        }
    }

    pub(crate) fn bad_input(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self::BadInput {
            location: location.into(),
            message: message.into(),
            hint: None,
        }
    }
}

/// Prints `kvrun: error: …` and the hint, walking the `source()` chain.
pub struct Report<'a>(pub &'a Error);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Error::Several(errors) = self.0 {
            for (i, error) in errors.iter().enumerate() {
                if i > 0 {
                    f.write_str("\n")?;
                }
                write!(f, "{}", Report(error))?;
            }
            return Ok(());
        }
        write!(f, "kvrun: error: {}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        // `Exec` already shows its io::Error inline.
        if matches!(self.0, Error::Exec { .. }) {
            source = None;
        }
        while let Some(cause) = source {
            write!(f, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        if let Some(hint) = self.0.hint() {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(class: FailureClass) -> Failure {
        Failure {
            variable: "DB".into(),
            location: ".env:3".into(),
            secret: "https://v.vault.azure.net/secrets/db".into(),
            class,
            reason: "403 Forbidden (AccessDenied)".into(),
            hint: Some("grant the role".into()),
        }
    }

    #[test]
    fn the_least_transient_class_decides_the_exit_code() {
        let err = Error::Unresolved {
            failures: vec![
                failure(FailureClass::Unavailable),
                failure(FailureClass::NotFound),
                failure(FailureClass::Authorization),
            ],
        };
        assert_eq!(err.exit_code(), ExitCode::AUTHORIZATION);
        let err = Error::Unresolved {
            failures: vec![failure(FailureClass::Unavailable)],
        };
        assert_eq!(err.exit_code(), ExitCode::UNAVAILABLE);
    }

    #[test]
    fn unresolved_lists_every_failure_with_its_hint() {
        let err = Error::Unresolved {
            failures: vec![
                failure(FailureClass::NotFound),
                failure(FailureClass::Authorization),
            ],
        };
        let text = Report(&err).to_string();
        assert!(text.starts_with("kvrun: error: 2 references could not be resolved"));
        assert_eq!(text.matches("DB (.env:3)").count(), 2);
        assert_eq!(text.matches("hint: grant the role").count(), 2);
    }

    #[test]
    fn stdout_and_check_errors() {
        assert_eq!(Error::StdoutClosed.exit_code(), 141);
        let full = Error::Stdout("No space left on device (os error 28)".into());
        assert_eq!(full.exit_code(), 74);
        assert_eq!(
            Report(&full).to_string(),
            "kvrun: error: cannot write to stdout: No space left on device (os error 28)"
        );
        let check = Error::CheckFailed {
            failures: vec![failure(FailureClass::NotFound)],
        };
        assert_eq!(check.exit_code(), 66);
        assert_eq!(
            Report(&check).to_string(),
            "kvrun: error: 1 reference would fail a run\n  \
             DB (.env:3): https://v.vault.azure.net/secrets/db: 403 Forbidden (AccessDenied)\n    \
             hint: grant the role"
        );
        let several = Error::Several(vec![Error::bad_input("a", "x"), Error::Usage("y".into())]);
        assert_eq!(several.exit_code(), 65);
        assert_eq!(
            Report(&several).to_string(),
            "kvrun: error: a: x\nkvrun: error: y"
        );
    }

    #[test]
    fn exec_errors_follow_env() {
        let not_found = Error::Exec {
            program: "nope".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(not_found.exit_code(), 127);
        let denied = Error::Exec {
            program: "x".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(denied.exit_code(), 126);
        assert_eq!(
            Error::Interrupted {
                signal: 15,
                name: "SIGTERM"
            }
            .exit_code(),
            143
        );
    }

    #[test]
    fn seventy_is_a_bug_and_a_system_that_refuses_a_runtime_is_seventy_one() {
        assert_eq!(Error::Internal("a bug".into()).exit_code(), 70);
        let refused = Error::System("cannot start the async runtime: out of threads".into());
        assert_eq!(refused.exit_code(), 71);
        assert_eq!(
            refused.to_string(),
            "cannot start the async runtime: out of threads"
        );
    }
}
