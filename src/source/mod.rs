//! Where variables come from: the process environment, `.env` files and the `kvrun.toml` manifest.
//!
//! Each reader turns its input into a list of (name, raw value, location) and changes nothing: no
//! reader loads anything into kvrun's own environment or decides precedence. Layering and
//! reference classification are [`crate::plan`]'s job.

pub mod dotenv;
pub mod files;
pub mod manifest;

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// kvrun's one snapshot of its process environment, read by name (the last assignment wins; an
/// empty or non-UTF-8 value counts as unset).
pub struct Env<'e>(pub &'e [(OsString, OsString)]);

impl<'e> Env<'e> {
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&'e str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.to_str())
            .filter(|v| !v.is_empty())
    }
}

/// Where a variable is defined (its winning value came from), for error messages, `-v` logs and
/// `kvrun check`. ("Origin" is kept for its URL sense: scheme, host and port.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Inherited from kvrun's own environment.
    Environment,
    /// A line of a `.env` file.
    DotEnv { path: PathBuf, line: usize },
    /// An `[env]` entry of the manifest.
    Manifest { path: PathBuf, line: usize },
    /// A command-line option (`--env-from`, also set by its `KVRUN_*` variable).
    Flag(&'static str),
    /// A key-value of an App Configuration store: the store's name, the key and its label.
    AppConfig {
        store: String,
        key: String,
        label: Option<String>,
    },
    /// A setting of a bundle (`[[env_from]]`, `--env-from`): the bundle's secret, the line of a
    /// dotenv bundle, and where the bundle is declared.
    Bundle {
        secret: String,
        line: Option<usize>,
        declared: Box<Location>,
    },
}

impl Location {
    /// Where a bad value is, for an error message: `environment variable NAME` or
    /// `file:line: NAME`.
    #[must_use]
    pub fn naming(&self, name: &std::ffi::OsStr) -> String {
        match self {
            Self::Environment => format!("environment variable {}", name.to_string_lossy()),
            other => format!("{other}: {}", name.to_string_lossy()),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => f.write_str("environment"),
            Self::DotEnv { path, line } | Self::Manifest { path, line } => {
                write!(f, "{}:{line}", path.display())
            }
            Self::Flag(flag) => f.write_str(flag),
            Self::AppConfig { store, key, label } => {
                write!(f, "appconfig:{store}/{}", crate::http::untrusted(key))?;
                match label {
                    Some(label) => write!(f, "@{}", crate::http::untrusted(label)),
                    None => Ok(()),
                }
            }
            Self::Bundle {
                secret,
                line,
                declared,
            } => {
                write!(f, "env_from {secret}")?;
                if let Some(line) = line {
                    write!(f, " line {line}")?;
                }
                write!(f, " ({declared})")
            }
        }
    }
}

/// How a variable's value is to be written as a file (manifest `file = true`, `--file-var`):
/// what the sources ask for; [`crate::launch::files`] writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub mode: u32,
    /// `user[:group]`, names or numbers; `None`: kvrun's own user.
    pub owner: Option<String>,
}

impl FileSpec {
    pub const DEFAULT_MODE: u32 = 0o400;

    /// # Errors
    /// A mode beyond `0777` (no set-id or sticky bits on a secret), an empty owner.
    pub fn new(mode: u32, owner: Option<String>) -> Result<Self, String> {
        if mode > 0o777 {
            return Err(format!(
                "mode {mode:o} is not a permission mode between 0000 and 0777"
            ));
        }
        if owner.as_deref().is_some_and(|o| {
            o.is_empty() || o.starts_with(':') || o.ends_with(':') || o.matches(':').count() > 1
        }) {
            return Err("owner is written user or user:group (names or numbers)".to_owned());
        }
        Ok(Self { mode, owner })
    }
}

impl Default for FileSpec {
    fn default() -> Self {
        Self {
            mode: Self::DEFAULT_MODE,
            owner: None,
        }
    }
}
