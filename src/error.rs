//! kvrun's errors, their exit codes and their user-facing text.
//!
//! Every failure kvrun can report is a variant of [`Error`]; each maps to one documented exit code
//! (sysexits.h vocabulary, 126/127 as `env(1)`), listed in [`ExitCode`] and in `docs/failures.md`. Messages
//! are lowercase fragments; hints follow on their own line. Nothing here ever holds a secret value
//! or a token: failures carry names, vaults, statuses and Key Vault's error codes only.

use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::sync::Arc;

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

/// Why something kvrun asked a server for could not be had — a token, a secret — in one shape
/// from the leaf that failed to the report: its class (the exit code), kvrun's own words, the
/// error that caused it, and what to do about it.
///
/// `Display` joins the parts with `": "`: the reason, then each error of the cause's `source()`
/// chain (their text may come from a server, so it passes through [`untrusted`]), then what the
/// retries tried. The reason is empty where the cause says it all (`TLS: …`, a refused
/// challenge).
///
/// [`untrusted`]: crate::http::untrusted
#[derive(Clone, Debug)]
pub struct Problem {
    pub class: FailureClass,
    reason: String,
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
    /// How the retries ended: `gave up after 6 attempts`.
    retried: Option<String>,
    pub hint: Option<String>,
}

impl Problem {
    pub(crate) fn new(class: FailureClass, reason: impl Into<String>) -> Self {
        Self {
            class,
            reason: reason.into(),
            cause: None,
            retried: None,
            hint: None,
        }
    }

    /// The error this problem comes from; its text follows the reason.
    #[must_use]
    pub(crate) fn caused_by(
        mut self,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    #[must_use]
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    #[must_use]
    pub(crate) fn maybe_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Says how the retries ended (the reason stays what the last attempt said).
    pub(crate) fn retried(&mut self, how: String) {
        self.retried = Some(how);
    }

    /// The error this problem comes from, if a typed one does.
    #[must_use]
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)?;
        let mut first = self.reason.is_empty();
        if let Some(cause) = self.cause() {
            first = write_chain(f, cause, first)?;
        }
        if let Some(retried) = &self.retried {
            if !first {
                f.write_str(" ")?;
            }
            write!(f, "({retried})")?;
        }
        Ok(())
    }
}

/// `error` and its `source()` chain as one line (`http2 error: stream error received: …`), for
/// a library error kvrun keeps only as text.
pub(crate) fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    struct Text<'a>(&'a (dyn std::error::Error + 'static));
    impl fmt::Display for Text<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_chain(f, self.0, true).map(|_| ())
        }
    }
    Text(error).to_string()
}

/// Writes `error` and its `source()` chain, each through [`untrusted`](crate::http::untrusted),
/// with `": "` before every one but a `first`; returns whether nothing was written.
fn write_chain(
    f: &mut fmt::Formatter<'_>,
    error: &(dyn std::error::Error + 'static),
    mut first: bool,
) -> Result<bool, fmt::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        let text = crate::http::untrusted(&error.to_string());
        if !text.is_empty() {
            if !first {
                f.write_str(": ")?;
            }
            f.write_str(&text)?;
            first = false;
        }
        next = error.source();
    }
    Ok(first)
}

/// One failed reference: which variable wanted it, from where, and what went wrong.
#[derive(Debug, Clone)]
pub struct Failure {
    pub variable: String,
    /// Where the variable is defined: `file:line` or `environment`.
    pub location: String,
    /// `https://vault…/secrets/name[/version]`.
    pub secret: String,
    pub problem: Problem,
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

    /// The report adds the cause: `nope: No such file or directory (os error 2)`.
    #[error("{program}")]
    Exec {
        program: String,
        source: std::io::Error,
    },

    #[error("interrupted by signal {name} while resolving; the command was not started")]
    Interrupted { signal: i32, name: &'static str },

    #[error("internal error: {0}")]
    Internal(String),

    /// The system would not give kvrun something it needs (a runtime, a signalfd, a thread):
    /// `doing` says what kvrun tried (`cannot open a signalfd`), the report adds the cause.
    #[error("{doing}")]
    System {
        doing: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },

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
    #[error("{}", .0.iter().map(|e| Chain(e).to_string()).collect::<Vec<_>>().join("; "))]
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
            f.variable, f.location, f.secret, f.problem
        );
        if let Some(hint) = &f.problem.hint {
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
                .map(|f| f.problem.class)
                .min()
                .map_or(ExitCode::INTERNAL, FailureClass::exit_code),
            Self::Exec { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound => ExitCode::COMMAND_NOT_FOUND,
                _ => ExitCode::CANNOT_EXECUTE,
            },
            Self::Interrupted { signal, .. } => ExitCode::SIGNAL_BASE + signal,
            Self::Internal(_) => ExitCode::INTERNAL,
            Self::System { .. } => ExitCode::OS_ERROR,
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

    /// The system refused kvrun something it needs.
    pub(crate) fn system<E: std::error::Error + Send + Sync + 'static>(
        doing: &'static str,
    ) -> impl FnOnce(E) -> Self {
        move |source| Self::System {
            doing,
            source: Box::new(source),
        }
    }
}

/// An error and its `source()` chain, joined with `": "` (what [`Report`] prints after
/// `kvrun: error: `).
struct Chain<'a>(&'a Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        if let Some(cause) = std::error::Error::source(self.0) {
            write_chain(f, cause, false)?;
        }
        Ok(())
    }
}

/// Prints `kvrun: error: …`, walking the `source()` chain, and the hint.
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
        write!(f, "kvrun: error: {}", Chain(self.0))?;
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
            problem: Problem::new(class, "403 Forbidden (AccessDenied)").hint("grant the role"),
        }
    }

    /// A leaf error with a cause of its own, its text from a hostile server.
    #[derive(Debug, thiserror::Error)]
    #[error("proxy said \u{1b}[2Jgone")]
    struct Leaf(#[source] std::io::Error);

    #[test]
    fn a_problem_joins_its_reason_its_cause_chain_and_its_retries() {
        let mut problem = Problem::new(FailureClass::Unavailable, "could not reach the vault")
            .caused_by(Leaf(std::io::Error::other("connection reset")))
            .hint("check the network");
        assert_eq!(
            problem.to_string(),
            "could not reach the vault: proxy said \\u{1b}[2Jgone: connection reset"
        );
        problem.retried("after 3 attempts over 2s".into());
        assert_eq!(
            problem.to_string(),
            "could not reach the vault: proxy said \\u{1b}[2Jgone: connection reset (after 3 attempts over 2s)"
        );
        assert!(
            problem
                .cause()
                .is_some_and(|cause| cause.source().is_some())
        );
        // Where the cause says it all, the reason is empty and no separator leads.
        let tls = Problem::new(FailureClass::Protocol, "").caused_by(
            crate::http::Error::Untrusted("invalid peer certificate: UnknownIssuer".into()),
        );
        assert_eq!(
            tls.to_string(),
            "TLS: invalid peer certificate: UnknownIssuer"
        );
    }

    #[test]
    fn the_report_walks_the_source_chain() {
        let exec = Error::Exec {
            program: "nope".into(),
            source: std::io::Error::from_raw_os_error(2),
        };
        assert_eq!(
            Report(&exec).to_string(),
            "kvrun: error: nope: No such file or directory (os error 2)"
        );
        let several = Error::Several(vec![
            exec,
            Error::system("cannot open a signalfd")(std::io::Error::other("EMFILE")),
        ]);
        assert_eq!(
            several.to_string(),
            "nope: No such file or directory (os error 2); cannot open a signalfd: EMFILE"
        );
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
        let refused = Error::system("cannot start the async runtime")(std::io::Error::other(
            "out of threads",
        ));
        assert_eq!(refused.exit_code(), 71);
        assert_eq!(
            Report(&refused).to_string(),
            "kvrun: error: cannot start the async runtime: out of threads"
        );
    }
}
