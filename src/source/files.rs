//! Finding and reading the files kvrun takes variables from: `.env` files and the manifest. What
//! they say is [`super::dotenv`]'s and [`super::manifest`]'s business; this module only decides
//! which files are read (`./.env` and `./kvrun.toml` when present, unless told otherwise) and
//! turns a file that cannot be read into an error that names it.

use std::path::{Path, PathBuf};

use super::{dotenv, manifest};
use crate::error::Error;
use crate::reference::VaultHosts;

/// A `.env` file that has been read: its path (for locations) and its entries.
pub struct DotEnvFile {
    pub path: PathBuf,
    pub parsed: dotenv::Parsed,
}

/// Which manifest is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhichManifest {
    /// `./kvrun.toml` when it exists.
    Default,
    /// `--manifest PATH`: it must exist.
    Named(PathBuf),
    /// `--no-manifest`.
    Off,
}

fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::MissingFile {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The manifest named by `--manifest`, else `./kvrun.toml` if there is one (unless
/// `--no-manifest`); an empty one when none is read.
///
/// # Errors
/// A named manifest that cannot be read, is not UTF-8, or does not parse.
pub fn read_manifest(
    which: &WhichManifest,
    hosts: &VaultHosts,
) -> Result<manifest::Manifest, Error> {
    let path = match which {
        WhichManifest::Named(path) => path.clone(),
        WhichManifest::Off => return Ok(manifest::Manifest::default()),
        WhichManifest::Default => {
            let default = PathBuf::from("kvrun.toml");
            if !default.is_file() {
                return Ok(manifest::Manifest::default());
            }
            default
        }
    };
    let bytes = read_file(&path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::bad_input(path.display().to_string(), "not valid UTF-8"))?;
    tracing::info!(path = %path.display(), "reading manifest");
    manifest::parse_manifest(&text, &path, hosts)
}

/// `./.env` if there is one (unless `--no-dotenv`, or it is also named), then every `--env-file`,
/// in order; their warnings logged.
///
/// # Errors
/// A named file that cannot be read, or that is not UTF-8 (naming the line).
pub fn read_dotenv_files(
    default_dotenv: bool,
    named: &[PathBuf],
) -> Result<Vec<DotEnvFile>, Error> {
    let mut paths = Vec::new();
    let default = PathBuf::from(".env");
    if default_dotenv && default.is_file() && !named.contains(&default) {
        paths.push(default);
    }
    paths.extend(named.iter().cloned());
    paths
        .into_iter()
        .map(|path| {
            let bytes = read_file(&path)?;
            let parsed = dotenv::parse(&bytes).map_err(|e| {
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
