//! Where variables come from: the process environment, `.env` files and the `kvrun.toml` manifest.
//!
//! Each reader turns its input into a list of (name, raw value, origin) and changes nothing: no
//! reader loads anything into kvrun's own environment or decides precedence. Layering and
//! reference classification are [`crate::plan`]'s job.

pub mod dotenv;
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

/// Where a variable's winning value came from, for error messages and `-v` logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Inherited from kvrun's own environment.
    Environment,
    /// A line of a `.env` file.
    DotEnv { path: PathBuf, line: usize },
    /// An `[env]` entry of the manifest.
    Manifest { path: PathBuf, line: usize },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment => f.write_str("environment"),
            Self::DotEnv { path, line } | Self::Manifest { path, line } => {
                write!(f, "{}:{line}", path.display())
            }
        }
    }
}
