//! The `kvrun.toml` manifest: which variables hold which secrets.
//!
//! ```toml
//! vault = "https://myvault.vault.azure.net"      # the default vault for bare names
//!
//! [env]
//! DB_PASSWORD = "db-password"                    # a bare secret name in the default vault
//! API_KEY = "https://other.vault.azure.net/secrets/api-key/4387e9f3d6e14c459867679a90fd0f79"
//! LEGACY = "@Microsoft.KeyVault(VaultName=other;SecretName=legacy)"
//! FEATURE_KEY = { secret = "feature-key", optional = true }
//! PINNED = { secret = "db", version = "4387e9f3d6e14c459867679a90fd0f79", vault = "https://b.vault.azure.net" }
//! SDK_SECRET_ID = { value = "https://myvault.vault.azure.net/secrets/x" }   # kept literal
//! TLS_CERT_FILE = { secret = "tls-cert", file = true, mode = "0440", owner = "1000:1000" }
//! ```
//!
//! `file = true` delivers the value in a file and puts the file's path in the variable (the
//! `*_FILE` convention); `mode` (octal, default `0400`) and `owner` (`user[:group]`, names or
//! numbers) set its permissions. See [`crate::launch::files`] for where the file lives.
//!
//! Every string in `[env]` is a secret (the manifest exists to name secrets): a bare name, a
//! secret identifier, App Service syntax or a `{{ … }}` template. Plain values go in a table as
//! `{ value = "…" }`. Unknown keys are errors, so a typo (`optinal = true`) cannot silently make a
//! secret required or not. Pure: takes the file's text, returns entries; reads nothing itself.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::Origin;
use crate::error::Error;
use crate::launch::files::FileSpec;
use crate::reference::{self, Classified, Piece, SecretRef, VaultHosts, VaultOrigin};

/// The value a manifest entry gives its variable.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// A secret, replaced whole. An optional secret that does not exist leaves the variable unset.
    Secret { secret: SecretRef, optional: bool },
    /// A template with secrets inside a larger value.
    Template(Vec<Piece>),
    /// A plain value, never resolved.
    Literal(String),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret { secret, optional } => f
                .debug_struct("Secret")
                .field("secret", secret)
                .field("optional", optional)
                .finish(),
            Self::Template(pieces) => f.debug_tuple("Template").field(&pieces.len()).finish(),
            Self::Literal(_) => f.write_str("Literal([redacted])"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub value: Value,
    pub origin: Origin,
    /// `file = true`: deliver the value as a file, its path in the variable.
    pub file: Option<FileSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    vault: Option<Spanned<String>>,
    allowed_vaults: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, Spanned<Spec>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Spec {
    Short(String),
    Table(Table),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    secret: Option<String>,
    vault: Option<String>,
    version: Option<String>,
    #[serde(default)]
    optional: bool,
    value: Option<String>,
    #[serde(default)]
    file: bool,
    mode: Option<Mode>,
    owner: Option<String>,
}

/// A file mode: `"0440"` (octal text) or a TOML integer (`0o440`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Mode {
    Number(u32),
    Text(String),
}

/// The file options of a table entry, checked.
fn file_spec(
    file: bool,
    mode: Option<Mode>,
    owner: Option<String>,
) -> Result<Option<FileSpec>, Problem> {
    if !file {
        return if mode.is_some() || owner.is_some() {
            Err((
                "'mode' and 'owner' only go with file = true".to_owned(),
                None,
            ))
        } else {
            Ok(None)
        };
    }
    let mode = match mode {
        None => FileSpec::DEFAULT_MODE,
        Some(Mode::Number(n)) => n,
        Some(Mode::Text(text)) => {
            u32::from_str_radix(text.trim_start_matches("0o"), 8).map_err(|_| {
                (
                    format!("mode '{text}' is not an octal file mode such as \"0440\""),
                    None,
                )
            })?
        }
    };
    FileSpec::new(mode, owner).map(Some).map_err(|m| (m, None))
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// Parse a manifest's text.
///
/// # Errors
/// Invalid TOML, unknown keys, malformed references, a bare name without a default vault.
pub fn parse(text: &str, path: &Path, hosts: &VaultHosts) -> Result<Vec<Entry>, Error> {
    parse_manifest(text, path, hosts).map(|m| m.entries)
}

/// A whole manifest: its entries and its vault allow-list.
#[derive(Debug, Default)]
pub struct Manifest {
    pub entries: Vec<Entry>,
    /// `allowed_vaults = [...]`: the only vaults (host and port) kvrun may contact, when given.
    pub allowed_vaults: Option<Vec<VaultOrigin>>,
}

/// Parse a manifest's text, allow-list included.
///
/// # Errors
/// As [`parse`], and an `allowed_vaults` entry that is not a vault host.
pub fn parse_manifest(text: &str, path: &Path, hosts: &VaultHosts) -> Result<Manifest, Error> {
    let at = |span: Range<usize>| {
        let (line, col) = line_col(text, span.start);
        format!("{}:{line}:{col}", path.display())
    };
    // toml's own Display quotes the offending line, which could hold a literal value: report the
    // message and position only.
    let file: File = toml::from_str(text).map_err(|e| {
        let location = e.span().map_or_else(|| path.display().to_string(), at);
        Error::bad_input(location, e.message().trim().to_owned())
    })?;
    let default_vault = file
        .vault
        .map(|v| {
            let span = v.span();
            vault_url(v.get_ref(), hosts).map_err(|message| Error::bad_input(at(span), message))
        })
        .transpose()?;
    let allowed_vaults = file
        .allowed_vaults
        .map(|list| {
            list.into_iter()
                .map(|v| {
                    let span = v.span();
                    allowed_vault(v.get_ref(), hosts)
                        .map_err(|message| Error::bad_input(at(span), message))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;

    let mut entries = Vec::with_capacity(file.env.len());
    for (name, spec) in file.env {
        let location = at(spec.span());
        let bad = |message: String, hint: Option<String>| Error::BadInput {
            location: location.clone(),
            message,
            hint,
        };
        let name_text = name.get_ref();
        if name_text.is_empty() || name_text.contains(['=', '\0']) {
            return Err(Error::bad_input(
                at(name.span()),
                format!("'{name_text}' cannot be an environment variable name"),
            ));
        }
        let (value, file) = entry_value(spec.into_inner(), default_vault.as_deref(), hosts)
            .map_err(|(message, hint)| bad(format!("{name_text}: {message}"), hint))?;
        let (line, _) = line_col(text, name.span().start);
        entries.push(Entry {
            name: name.into_inner(),
            value,
            origin: Origin::Manifest {
                path: path.to_owned(),
                line,
            },
            file,
        });
    }
    Ok(Manifest {
        entries,
        allowed_vaults,
    })
}

type Problem = (String, Option<String>);

/// The value and file options of one `[env]` entry.
fn entry_value(
    spec: Spec,
    default_vault: Option<&str>,
    hosts: &VaultHosts,
) -> Result<(Value, Option<FileSpec>), Problem> {
    match spec {
        Spec::Short(text) => {
            secret_value(&text, default_vault, None, false, hosts).map(|v| (v, None))
        }
        Spec::Table(Table {
            value: Some(literal),
            secret: None,
            vault: None,
            version: None,
            optional: false,
            file: false,
            mode: None,
            owner: None,
        }) => Ok((Value::Literal(literal), None)),
        Spec::Table(Table { value: Some(_), .. }) => Err((
            "'value' is a plain value and cannot be combined with other keys".to_owned(),
            None,
        )),
        Spec::Table(Table { secret: None, .. }) => Err((
            "a table entry needs 'secret' (or 'value' for a plain value)".to_owned(),
            None,
        )),
        Spec::Table(Table {
            secret: Some(secret),
            vault,
            version,
            optional,
            value: None,
            file,
            mode,
            owner,
        }) => {
            let spec = file_spec(file, mode, owner);
            if vault.is_some() && !reference::is_valid_secret_name(&secret) {
                Err((
                    "'vault' and 'version' only go with a bare secret name".to_owned(),
                    None,
                ))
            } else {
                vault
                    .map(|v| vault_url(&v, hosts).map_err(|m| (m, None)))
                    .transpose()
                    .and_then(|vault| {
                        let vault = vault.or_else(|| default_vault.map(str::to_owned));
                        secret_value(&secret, vault.as_deref(), version, optional, hosts)
                    })
                    .and_then(|value| Ok((value, spec?)))
            }
        }
    }
}

/// A manifest string: a bare name in `vault`, or any reference form.
fn secret_value(
    text: &str,
    vault: Option<&str>,
    version: Option<String>,
    optional: bool,
    hosts: &VaultHosts,
) -> Result<Value, Problem> {
    if reference::is_valid_secret_name(text) {
        let vault_url = vault.ok_or_else(|| {
            (
                format!("'{text}' is a bare secret name but the manifest has no default vault"),
                Some(
                    "add vault = \"https://VAULT.vault.azure.net\" at the top of the manifest"
                        .to_owned(),
                ),
            )
        })?;
        let version = version.filter(|v| !v.is_empty());
        if let Some(version) = &version
            && !reference::is_valid_version(version)
        {
            return Err((format!("'{version}' is not a valid secret version"), None));
        }
        let secret = SecretRef {
            vault_url: vault_url.to_owned(),
            name: text.to_owned(),
            version,
        };
        return Ok(Value::Secret { secret, optional });
    }
    let too_specific = || {
        (
            "'vault' and 'version' only go with a bare secret name".to_owned(),
            None,
        )
    };
    match reference::classify(text, hosts) {
        Ok(Classified::Reference(secret)) => {
            if version.is_some() {
                return Err(too_specific());
            }
            Ok(Value::Secret { secret, optional })
        }
        Ok(Classified::Template(pieces)) if !optional && version.is_none() => {
            Ok(Value::Template(pieces))
        }
        Ok(Classified::Template(_)) => Err((
            "'optional' and 'version' do not apply to a template".to_owned(),
            None,
        )),
        Ok(Classified::Literal) => Err((
            "not a secret name or a Key Vault reference".to_owned(),
            Some("a plain value goes in a table: NAME = { value = \"…\" }".to_owned()),
        )),
        Err(e) => Err((e.message, e.hint)),
    }
}

/// An allow-list entry: a vault host with an optional port (`myvault.vault.azure.net[:8443]`), or
/// the same as a URL; without a port it means 443.
///
/// # Errors
/// When it names no vault host and port.
pub fn allowed_vault(text: &str, hosts: &VaultHosts) -> Result<VaultOrigin, String> {
    reference::parse_vault_origin(text, hosts).ok_or_else(|| {
        format!(
            "'{text}' is not a vault host like myvault.vault.azure.net[:port] (for other vault hosts, add --vault-suffix)"
        )
    })
}

/// A vault URL: `https://{vault}.{suffix}[:port]`, nothing after the host but an optional `/`.
fn vault_url(text: &str, hosts: &VaultHosts) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("'{text}' is not a vault URL ({e})"))?;
    let host = url.host_str().unwrap_or_default();
    if url.scheme() != "https" || hosts.suffix_of(host).is_none() || url.path() != "/" {
        return Err(format!(
            "'{text}' is not a vault URL like https://VAULT.vault.azure.net (for other vault hosts, add --vault-suffix)"
        ));
    }
    Ok(match url.port() {
        Some(port) => format!("https://{host}:{port}"),
        None => format!("https://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<Entry> {
        parse(text, Path::new("kvrun.toml"), &VaultHosts::default()).unwrap()
    }

    fn parse_err(text: &str) -> String {
        let err = parse(text, Path::new("kvrun.toml"), &VaultHosts::default()).unwrap_err();
        let hint = err.hint().unwrap_or_default().to_owned();
        format!("{err} {hint}")
    }

    fn secret(vault_url: &str, name: &str, version: Option<&str>) -> SecretRef {
        SecretRef {
            vault_url: vault_url.into(),
            name: name.into(),
            version: version.map(Into::into),
        }
    }

    #[test]
    fn every_entry_form() {
        let entries = parse_ok(
            r#"
vault = "https://main.vault.azure.net/"

[env]
A = "db-pass"
B = "https://other.vault.azure.net/secrets/api/abc123"
C = { secret = "flag", optional = true }
D = { secret = "db", version = "v1", vault = "https://pin.vault.azure.net" }
E = { value = "https://main.vault.azure.net/secrets/x" }
F = "@Microsoft.KeyVault(VaultName=legacy;SecretName=old)"
G = "postgres://u:{{ https://main.vault.azure.net/secrets/p }}@db"
"#,
        );
        let by_name = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
        assert_eq!(
            by_name("A").value,
            Value::Secret {
                secret: secret("https://main.vault.azure.net", "db-pass", None),
                optional: false
            }
        );
        assert_eq!(
            by_name("A").origin,
            Origin::Manifest {
                path: "kvrun.toml".into(),
                line: 5
            }
        );
        assert_eq!(
            by_name("B").value,
            Value::Secret {
                secret: secret("https://other.vault.azure.net", "api", Some("abc123")),
                optional: false
            }
        );
        assert_eq!(
            by_name("C").value,
            Value::Secret {
                secret: secret("https://main.vault.azure.net", "flag", None),
                optional: true
            }
        );
        assert_eq!(
            by_name("D").value,
            Value::Secret {
                secret: secret("https://pin.vault.azure.net", "db", Some("v1")),
                optional: false
            }
        );
        assert_eq!(
            by_name("E").value,
            Value::Literal("https://main.vault.azure.net/secrets/x".into())
        );
        assert_eq!(
            by_name("F").value,
            Value::Secret {
                secret: secret("https://legacy.vault.azure.net", "old", None),
                optional: false
            }
        );
        assert!(matches!(by_name("G").value, Value::Template(_)));
    }

    #[test]
    fn mistakes_name_the_line() {
        for (text, needle) in [
            (
                "[env]\nA = \"db\"\n",
                "kvrun.toml:2:5: A: 'db' is a bare secret name but the manifest has no default vault",
            ),
            ("vault = \"https://example.com\"\n", "kvrun.toml:1:9"),
            (
                "[env]\nA = { secret = \"x\", optinal = true }\n",
                "kvrun.toml:2",
            ),
            ("[env]\nA = \"has spaces\"\n", "not a secret name"),
            (
                "[env]\nA = \"http://v12.vault.azure.net/secrets/x\"\n",
                "https",
            ),
            (
                "[env]\nA = { value = \"x\", optional = true }\n",
                "cannot be combined",
            ),
            ("[env]\nA = { optional = true }\n", "needs 'secret'"),
            (
                "vault = \"https://v12.vault.azure.net\"\n[env]\nA = { secret = \"db\", version = \"../x\" }\n",
                "not a valid secret version",
            ),
            (
                "[env]\nA = { secret = \"https://v12.vault.azure.net/secrets/x\", vault = \"https://v13.vault.azure.net\" }\n",
                "only go with a bare secret name",
            ),
            ("colour = 1\n", "kvrun.toml:1:1"),
            ("[env\n", "kvrun.toml:1"),
        ] {
            let err = parse_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn toml_errors_do_not_quote_the_line() {
        let err = parse_err("[env]\nA = { value = \"hunter2\" \n");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
