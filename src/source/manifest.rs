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
//! DB_USER = { secret = "db", field = "username" }              # one field of a JSON secret
//! TLS_KEY_FILE = { secret = "tls", part = "key", file = true }  # a certificate's key
//!
//! [[env_from]]                                   # every setting of one secret (crate::bundle)
//! secret = "app-settings"
//! prefix = "APP_"
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

use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::FileSpec;
use super::Location;
use crate::bundle::{self, EnvFrom};
use crate::error::Error;
use crate::field::Field;
use crate::part::Part;
use crate::pick::Pick;
use crate::reference::{self, Classified, Piece, Reference, SecretRef, VaultHosts, VaultOrigin};

/// The value a manifest entry gives its variable.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// A secret (or one field of it), replaced whole. An optional secret that does not exist (or
    /// has no such field) leaves the variable unset.
    Secret {
        reference: Reference,
        optional: bool,
    },
    /// A template with secrets inside a larger value.
    Template(Vec<Piece>),
    /// A plain value, never resolved.
    Literal(String),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret {
                reference,
                optional,
            } => f
                .debug_struct("Secret")
                .field("reference", reference)
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
    pub location: Location,
    /// `file = true`: deliver the value as a file, its path in the variable.
    pub file: Option<FileSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    vault: Option<Spanned<String>>,
    allowed_vaults: Option<Vec<Spanned<String>>>,
    /// Read from the spanned document instead ([`env_entries`]), where every key and value keeps
    /// its position.
    #[expect(dead_code, reason = "only accepted here; read by env_entries")]
    env: Option<serde::de::IgnoredAny>,
    env_from: Option<Vec<Spanned<RawEnvFrom>>>,
    app_configuration: Option<Spanned<AppConfiguration>>,
}

/// `[app_configuration]` as written (checked against the store hosts by
/// [`crate::appconfig`], which knows the added suffixes).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfiguration {
    pub endpoint: Option<String>,
    /// Later selectors win for a key; none: every key with no label.
    pub select: Option<Vec<AppConfigSelector>>,
    /// Instead of `select`.
    pub snapshot: Option<String>,
    #[serde(default)]
    pub trim_prefix: Vec<String>,
    #[serde(default)]
    pub upper_snake: bool,
    #[serde(default)]
    pub flatten_json: bool,
    #[serde(default)]
    pub feature_flags: bool,
}

/// One `select` entry: `{ key = "myapp:*", label = "prod" }` (no label: key-values without one).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfigSelector {
    pub key: String,
    pub label: Option<String>,
}

/// One `[[env_from]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvFrom {
    secret: Spanned<String>,
    vault: Option<Spanned<String>>,
    version: Option<String>,
    prefix: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    #[serde(default)]
    optional: bool,
}

/// One `[env]` entry as written, checked by hand ([`table`]) rather than by serde: an untagged
/// enum's only error is "data did not match any variant", which names neither the unknown key nor
/// the wrong type, nor where they are.
#[derive(Clone, Copy)]
enum RawEntry<'t, 'i> {
    Text(&'t str),
    Table(&'t DeTable<'i>),
    /// Any other TOML type, named with its article ("an integer").
    Other(&'static str),
}

/// The keys a table entry may have.
const TABLE_KEYS: [&str; 10] = [
    "secret", "vault", "version", "field", "part", "optional", "value", "file", "mode", "owner",
];

/// A table entry's keys, typed.
#[derive(Default)]
struct Table {
    secret: Option<String>,
    /// With the span of its value, for errors.
    vault: Option<Spanned<String>>,
    version: Option<String>,
    field: Option<String>,
    part: Option<String>,
    optional: bool,
    value: Option<String>,
    file: bool,
    mode: Option<Mode>,
    owner: Option<String>,
}

/// A file mode: `"0440"` (octal text) or a TOML integer (`0o440`).
enum Mode {
    Number(u32),
    Text(String),
}

const MODE: &str = "an octal file mode such as \"0440\" or 0o440";

/// A TOML value's type with its article, for messages.
fn kind(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Check a table entry's keys and their types; a problem comes with the span it is about.
fn table(entries: &DeTable<'_>) -> Result<Table, (Range<usize>, Problem)> {
    let mut table = Table::default();
    for (key, value) in entries {
        let span = value.span();
        let key_span = key.span();
        let key = key.get_ref().as_ref();
        let value = value.get_ref();
        let wrong = |wanted: &str| {
            (
                span.clone(),
                (
                    format!("'{key}' must be {wanted}, not {}", kind(value)),
                    None,
                ),
            )
        };
        let string = || match value {
            DeValue::String(text) => Ok(text.to_string()),
            _ => Err(wrong("a string")),
        };
        let boolean = || match value {
            DeValue::Boolean(on) => Ok(*on),
            _ => Err(wrong("true or false")),
        };
        match key {
            "secret" => table.secret = Some(string()?),
            "vault" => table.vault = Some(Spanned::new(span.clone(), string()?)),
            "version" => table.version = Some(string()?),
            "field" => table.field = Some(string()?),
            "part" => table.part = Some(string()?),
            "optional" => table.optional = boolean()?,
            "value" => table.value = Some(string()?),
            "file" => table.file = boolean()?,
            "owner" => table.owner = Some(string()?),
            "mode" => {
                table.mode = Some(match value {
                    DeValue::String(text) => Mode::Text(text.to_string()),
                    DeValue::Integer(n) => match u32::from_str_radix(n.as_str(), n.radix()) {
                        Ok(n) => Mode::Number(n),
                        Err(_) => return Err((span, (format!("'mode' must be {MODE}"), None))),
                    },
                    _ => return Err(wrong(MODE)),
                });
            }
            _ => {
                let guess = TABLE_KEYS
                    .iter()
                    .find(|known| edit_distance(known, key) <= 2)
                    .map_or_else(String::new, |known| format!(" (did you mean '{known}'?)"));
                return Err((
                    key_span,
                    (
                        format!("unknown key '{key}'{guess}"),
                        Some(format!(
                            "the keys of an entry are {} and {}",
                            TABLE_KEYS[..TABLE_KEYS.len() - 1].join(", "),
                            TABLE_KEYS[TABLE_KEYS.len() - 1]
                        )),
                    ),
                ));
            }
        }
    }
    Ok(table)
}

/// An `[env]` entry: its name (with span), the span of its value, and the value as written.
type EnvEntry<'t, 'i> = (&'t Spanned<DeString<'i>>, Range<usize>, RawEntry<'t, 'i>);

/// The `[env]` table's entries from the spanned document: each name and value with its span.
fn env_entries<'t, 'i>(
    document: &'t DeTable<'i>,
) -> Result<Vec<EnvEntry<'t, 'i>>, (Range<usize>, String)> {
    let Some(env) = document.get("env") else {
        return Ok(Vec::new());
    };
    let DeValue::Table(env) = env.get_ref() else {
        return Err((
            env.span(),
            format!("'env' must be a table, not {}", kind(env.get_ref())),
        ));
    };
    Ok(env
        .iter()
        .map(|(name, value)| {
            let raw = match value.get_ref() {
                DeValue::String(text) => RawEntry::Text(text.as_ref()),
                DeValue::Table(table) => RawEntry::Table(table),
                other => RawEntry::Other(kind(other)),
            };
            (name, value.span(), raw)
        })
        .collect())
}

/// Levenshtein distance, for "did you mean" on a mistyped key.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
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

/// A whole manifest: its entries, its bundles, its default vault and its vault allow-list.
#[derive(Debug, Default)]
pub struct Manifest {
    pub entries: Vec<Entry>,
    /// `[[env_from]]`, in order.
    pub env_from: Vec<EnvFrom>,
    /// `vault = "…"`: where bare secret names are (`--env-from` uses it too).
    pub default_vault: Option<String>,
    /// `allowed_vaults = [...]`: the only vaults (host and port) kvrun may contact, when given.
    pub allowed_vaults: Option<Vec<VaultOrigin>>,
    /// `[app_configuration]`, and where it is.
    pub app_configuration: Option<(AppConfiguration, Location)>,
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
    let toml_error = |e: toml::de::Error| {
        let location = e.span().map_or_else(|| path.display().to_string(), at);
        Error::bad_input(location, e.message().trim().to_owned())
    };
    let file: File = toml::from_str(text).map_err(toml_error)?;
    let document = DeTable::parse(text).map_err(toml_error)?;
    let default_vault = file
        .vault
        .map(|v| {
            let span = v.span();
            vault_url(v.get_ref(), hosts).map_err(|(message, hint)| Error::BadInput {
                location: at(span),
                message,
                hint,
            })
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

    let env = env_entries(document.get_ref())
        .map_err(|(span, message)| Error::bad_input(at(span), message))?;
    let mut entries = Vec::with_capacity(env.len());
    for (name, span, raw) in env {
        let name_text = name.get_ref().as_ref();
        if name_text.is_empty() || name_text.contains(['=', '\0']) {
            return Err(Error::bad_input(
                at(name.span()),
                format!("'{name_text}' cannot be an environment variable name"),
            ));
        }
        let (value, file) = entry_value(name_text, raw, default_vault.as_deref(), hosts).map_err(
            |(at_span, (message, hint))| Error::BadInput {
                location: at(at_span.unwrap_or_else(|| span.clone())),
                message: format!("{name_text}: {message}"),
                hint,
            },
        )?;
        let (line, _) = line_col(text, name.span().start);
        entries.push(Entry {
            name: name_text.to_owned(),
            value,
            location: Location::Manifest {
                path: path.to_owned(),
                line,
            },
            file,
        });
    }
    let env_from = file
        .env_from
        .unwrap_or_default()
        .into_iter()
        .map(|table| {
            let (line, _) = line_col(text, table.span().start);
            let location = Location::Manifest {
                path: path.to_owned(),
                line,
            };
            env_from_entry(
                table.into_inner(),
                location,
                default_vault.as_deref(),
                hosts,
            )
            .map_err(|(span, message)| Error::bad_input(at(span), message))
        })
        .collect::<Result<_, _>>()?;
    let app_configuration = file
        .app_configuration
        .map(|table| app_configuration(table, text, path))
        .transpose()?;
    Ok(Manifest {
        entries,
        env_from,
        default_vault,
        allowed_vaults,
        app_configuration,
    })
}

/// `[app_configuration]` and where it is: `snapshot` or `select`, not both.
fn app_configuration(
    table: Spanned<AppConfiguration>,
    text: &str,
    path: &Path,
) -> Result<(AppConfiguration, Location), Error> {
    let (line, _) = line_col(text, table.span().start);
    let location = Location::Manifest {
        path: path.to_owned(),
        line,
    };
    let table = table.into_inner();
    if table.snapshot.is_some() && table.select.is_some() {
        return Err(Error::bad_input(
            location.to_string(),
            "app_configuration: 'snapshot' is instead of 'select'; give one of them",
        ));
    }
    Ok((table, location))
}

/// One `[[env_from]]`: its secret (a bare name in `vault`, or any reference form, whole), prefix,
/// format and whether it is optional. A problem names the span of the key it is about.
fn env_from_entry(
    raw: RawEnvFrom,
    location: Location,
    default_vault: Option<&str>,
    hosts: &VaultHosts,
) -> Result<EnvFrom, (Range<usize>, String)> {
    let span = raw.secret.span();
    let text = raw.secret.into_inner();
    let bare = reference::is_valid_secret_name(&text);
    if !bare && (raw.vault.is_some() || raw.version.is_some()) {
        return Err((
            span,
            "env_from: 'vault' and 'version' only go with a bare secret name".to_owned(),
        ));
    }
    let vault = match raw.vault {
        Some(v) => Some(vault_url(v.get_ref(), hosts).map_err(|(message, _)| (v.span(), message))?),
        None => default_vault.map(str::to_owned),
    };
    let mut secret = bundle::whole_secret(&text, vault.as_deref(), hosts)
        .map_err(|message| (span.clone(), format!("env_from: {message}")))?;
    if let Some(version) = raw.version.filter(|v| !v.is_empty()) {
        if !reference::is_valid_version(&version) {
            return Err((
                span,
                format!("env_from: '{version}' is not a valid secret version"),
            ));
        }
        secret.version = Some(version);
    }
    let prefix = match raw.prefix {
        Some(prefix) => {
            bundle::check_prefix(prefix.get_ref())
                .map_err(|message| (prefix.span(), format!("env_from: {message}")))?;
            prefix.into_inner()
        }
        None => String::new(),
    };
    let format = match raw.format {
        Some(format) => bundle::Format::parse(format.get_ref())
            .map_err(|message| (format.span(), format!("env_from: {message}")))?,
        None => bundle::Format::Json,
    };
    Ok(EnvFrom {
        secret,
        prefix,
        format,
        optional: raw.optional,
        location,
    })
}

type Problem = (String, Option<String>);

/// A problem with the span it is about, when that is narrower than the whole entry.
type Located = (Option<Range<usize>>, Problem);

/// The value and file options of one `[env]` entry. A problem names the span it is about when that
/// is narrower than the entry (a key, a key's value).
fn entry_value(
    name: &str,
    raw: RawEntry<'_, '_>,
    default_vault: Option<&str>,
    hosts: &VaultHosts,
) -> Result<(Value, Option<FileSpec>), Located> {
    let whole = |problem| (None, problem);
    let entries = match raw {
        RawEntry::Text(text) => {
            return secret_value(text, default_vault, None, None, false, hosts)
                .map(|v| (v, None))
                .map_err(whole);
        }
        RawEntry::Other(kind) => {
            return Err(whole((
                format!(
                    "an entry is a string (a secret name or a reference) or a table, not {kind}"
                ),
                Some(format!(
                    "a plain value goes in a table: {name} = {{ value = \"…\" }}"
                )),
            )));
        }
        RawEntry::Table(entries) => entries,
    };
    match table(entries).map_err(|(span, problem)| (Some(span), problem))? {
        Table {
            value: Some(literal),
            secret: None,
            vault: None,
            version: None,
            field: None,
            part: None,
            optional: false,
            file: false,
            mode: None,
            owner: None,
        } => Ok((Value::Literal(literal), None)),
        Table { value: Some(_), .. } => Err(whole((
            "'value' is a plain value and cannot be combined with other keys".to_owned(),
            None,
        ))),
        Table { secret: None, .. } => Err(whole((
            "a table entry needs 'secret' (or 'value' for a plain value)".to_owned(),
            None,
        ))),
        Table {
            secret: Some(secret),
            vault,
            version,
            field,
            part,
            optional,
            value: None,
            file,
            mode,
            owner,
        } => {
            if vault.is_some() && !reference::is_valid_secret_name(&secret) {
                return Err(whole((
                    "'vault' and 'version' only go with a bare secret name".to_owned(),
                    None,
                )));
            }
            let vault = match vault {
                Some(v) => Some(vault_url(v.get_ref(), hosts).map_err(|p| (Some(v.span()), p))?),
                None => default_vault.map(str::to_owned),
            };
            let field = field
                .map(|f| Field::parse(&f).map_err(|e| (format!("'field': {e}"), None)))
                .transpose()
                .map_err(whole)?
                .map(Pick::Field);
            let part = part
                .map(|p| Part::parse(&p).map_err(|e| (format!("'part': {e}"), None)))
                .transpose()
                .map_err(whole)?
                .map(Pick::Part);
            let pick = match (field, part) {
                (Some(_), Some(_)) => {
                    return Err(whole((
                        "'field' and 'part' do not go together: a field is a JSON secret's, a part a certificate's".to_owned(),
                        None,
                    )));
                }
                (field, part) => field.or(part),
            };
            let value = secret_value(&secret, vault.as_deref(), version, pick, optional, hosts)
                .map_err(whole)?;
            Ok((value, file_spec(file, mode, owner).map_err(whole)?))
        }
    }
}

/// A manifest string: a bare name in `vault`, or any reference form.
fn secret_value(
    text: &str,
    vault: Option<&str>,
    version: Option<String>,
    pick: Option<Pick>,
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
        let reference = Reference { secret, pick };
        return Ok(Value::Secret {
            reference,
            optional,
        });
    }
    let too_specific = || {
        (
            "'vault' and 'version' only go with a bare secret name".to_owned(),
            None,
        )
    };
    match reference::classify(text, hosts) {
        Ok(Classified::Reference(mut reference)) => {
            if version.is_some() {
                return Err(too_specific());
            }
            if let Some(pick) = pick {
                if let Some(named) = &reference.pick {
                    let message = match (named, &pick) {
                        (Pick::Field(_), Pick::Field(_)) => {
                            "the field is named twice: in the identifier's ?field= and in 'field'"
                        }
                        _ => "the identifier's query and the entry's 'field' or 'part' both say what to take of the secret",
                    };
                    return Err((message.to_owned(), None));
                }
                reference.pick = Some(pick);
            }
            Ok(Value::Secret {
                reference,
                optional,
            })
        }
        Ok(Classified::Template(pieces))
            if !optional && version.is_none() && pick.is_none() =>
        {
            Ok(Value::Template(pieces))
        }
        Ok(Classified::Template(_)) => Err((
            "'optional', 'version', 'field' and 'part' do not apply to a template (write ?field= inside each {{ }})".to_owned(),
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

/// A vault URL: `https://{vault}.{suffix}[:port]`, nothing after the host but an optional `/`,
/// the host written plainly (no percent-encoding, no non-ASCII look-alikes).
fn vault_url(text: &str, hosts: &VaultHosts) -> Result<String, Problem> {
    let trimmed = text.trim();
    if !trimmed.contains("://") {
        // `vault = "myvault"` or a bare host: say what a vault URL looks like.
        let host = trimmed.to_ascii_lowercase();
        let url = if reference::parse_vault_origin(&host, hosts).is_some() {
            Some(format!("https://{host}"))
        } else {
            reference::is_valid_vault_name(trimmed)
                .then(|| format!("https://{host}.{}", hosts.default_domain()))
        };
        let hint = url.map_or_else(
            || "a vault URL looks like https://myvault.vault.azure.net".to_owned(),
            |url| format!("write it as a URL: {url}"),
        );
        return Err((format!("'{text}' is not a vault URL"), Some(hint)));
    }
    let origin = trimmed
        .get(..8)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
        .and_then(|_| reference::parse_vault_origin(trimmed, hosts));
    match origin {
        Some(origin) if origin.port == 443 => Ok(format!("https://{}", origin.host)),
        Some(origin) => Ok(format!("https://{}:{}", origin.host, origin.port)),
        None => Err((
            format!(
                "'{text}' is not a vault URL like https://VAULT.vault.azure.net (for other vault hosts, add --vault-suffix)"
            ),
            None,
        )),
    }
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
    fn a_part_in_either_form() {
        let entries = parse_ok(
            "vault = \"https://main.vault.azure.net\"\n[env]\nK = { secret = \"tls\", part = \"key\", file = true }\nC = \"https://main.vault.azure.net/secrets/tls?part=chain\"\n",
        );
        let parts: Vec<_> = entries
            .iter()
            .map(|e| match &e.value {
                Value::Secret { reference, .. } => reference.pick.as_ref().and_then(Pick::part),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            parts,
            [Some(Part::Chain), Some(Part::Key)],
            "C, K: in name order"
        );
        assert_eq!(
            parse_err(
                "vault = \"https://main.vault.azure.net\"\n[env]\nX = { secret = \"tls\", part = \"key\", field = \"a\" }\n"
            ),
            "kvrun.toml:3:5: X: 'field' and 'part' do not go together: a field is a JSON secret's, a part a certificate's "
        );
        assert_eq!(
            parse_err(
                "vault = \"https://main.vault.azure.net\"\n[env]\nX = { secret = \"tls\", part = \"tls.key\" }\n"
            ),
            "kvrun.toml:3:5: X: 'part': 'tls.key' is not a certificate part: write key, cert, chain or pkcs12 "
        );
        assert_eq!(
            parse_err(
                "[env]\nX = { secret = \"https://main.vault.azure.net/secrets/tls?part=cert\", part = \"key\" }\n"
            ),
            "kvrun.toml:2:5: X: the identifier's query and the entry's 'field' or 'part' both say what to take of the secret "
        );
    }

    #[test]
    fn a_field_in_either_form() {
        let entries = parse_ok(
            "vault = \"https://main.vault.azure.net\"\n[env]\nU = { secret = \"db\", field = \"username\" }\nH = { secret = \"db\", field = \"/db/host\", optional = true, version = \"v1\" }\nP = \"https://main.vault.azure.net/secrets/db?field=password\"\n",
        );
        let fields: Vec<_> = entries
            .iter()
            .map(|e| match &e.value {
                Value::Secret {
                    reference,
                    optional,
                } => (
                    reference.secret.name.as_str(),
                    reference
                        .pick
                        .as_ref()
                        .and_then(Pick::field)
                        .map(crate::field::Field::as_str),
                    *optional,
                ),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            fields,
            [
                ("db", Some("/db/host"), true),
                ("db", Some("password"), false),
                ("db", Some("username"), false)
            ]
        );
        assert_eq!(
            parse_err(
                "[env]\nX = { secret = \"https://main.vault.azure.net/secrets/db?field=a\", field = \"b\" }\n"
            ),
            "kvrun.toml:2:5: X: the field is named twice: in the identifier's ?field= and in 'field' "
        );
        assert_eq!(
            parse_err(
                "[env]\nX = { secret = \"https://main.vault.azure.net/secrets/db\", field = \"\" }\n"
            ),
            "kvrun.toml:2:5: X: 'field': the field is empty: name a top-level key or a JSON Pointer (/a/b) "
        );
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
                reference: secret("https://main.vault.azure.net", "db-pass", None).into(),
                optional: false
            }
        );
        assert_eq!(
            by_name("A").location,
            Location::Manifest {
                path: "kvrun.toml".into(),
                line: 5
            }
        );
        assert_eq!(
            by_name("B").value,
            Value::Secret {
                reference: secret("https://other.vault.azure.net", "api", Some("abc123")).into(),
                optional: false
            }
        );
        assert_eq!(
            by_name("C").value,
            Value::Secret {
                reference: secret("https://main.vault.azure.net", "flag", None).into(),
                optional: true
            }
        );
        assert_eq!(
            by_name("D").value,
            Value::Secret {
                reference: secret("https://pin.vault.azure.net", "db", Some("v1")).into(),
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
                reference: secret("https://legacy.vault.azure.net", "old", None).into(),
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
    fn typos_and_wrong_types_name_the_key_the_type_and_the_column() {
        let keys = "the keys of an entry are secret, vault, version, field, part, optional, value, file, mode and owner";
        let entry_kind = |kind: &str| {
            format!(
                "A: an entry is a string (a secret name or a reference) or a table, not {kind} a plain value goes in a table: A = {{ value = \"…\" }}"
            )
        };
        for (entry, want) in [
            (
                "A = { secret = \"x\", optinal = true }",
                format!("kvrun.toml:3:21: A: unknown key 'optinal' (did you mean 'optional'?) {keys}"),
            ),
            (
                "A = { secrte = \"x\" }",
                format!("kvrun.toml:3:7: A: unknown key 'secrte' (did you mean 'secret'?) {keys}"),
            ),
            (
                "A = { secret = \"x\", Optional = true }",
                format!("kvrun.toml:3:21: A: unknown key 'Optional' (did you mean 'optional'?) {keys}"),
            ),
            (
                "A = { secret = \"x\", required = true }",
                format!("kvrun.toml:3:21: A: unknown key 'required' {keys}"),
            ),
            ("A = 5", format!("kvrun.toml:3:5: {}", entry_kind("an integer"))),
            ("A = 0.5", format!("kvrun.toml:3:5: {}", entry_kind("a float"))),
            ("A = true", format!("kvrun.toml:3:5: {}", entry_kind("a boolean"))),
            ("A = [\"x\"]", format!("kvrun.toml:3:5: {}", entry_kind("an array"))),
            ("A = 1979-05-27", format!("kvrun.toml:3:5: {}", entry_kind("a date-time"))),
            (
                "A = { secret = 1979-05-27T07:32:00Z }",
                "kvrun.toml:3:16: A: 'secret' must be a string, not a date-time ".to_owned(),
            ),
            (
                "A = { secret = \"x\", file = true, mode = 0o440, owner = \"1000\" }",
                String::new(),
            ),
            (
                "A = { secret = 5 }",
                "kvrun.toml:3:16: A: 'secret' must be a string, not an integer ".to_owned(),
            ),
            (
                "A = { secret = \"x\", version = 2 }",
                "kvrun.toml:3:31: A: 'version' must be a string, not an integer ".to_owned(),
            ),
            (
                "A = { secret = \"x\", optional = \"yes\" }",
                "kvrun.toml:3:32: A: 'optional' must be true or false, not a string ".to_owned(),
            ),
            (
                "A = { secret = \"x\", file = 1 }",
                "kvrun.toml:3:28: A: 'file' must be true or false, not an integer ".to_owned(),
            ),
            (
                "A = { secret = \"x\", file = true, mode = [1] }",
                "kvrun.toml:3:41: A: 'mode' must be an octal file mode such as \"0440\" or 0o440, not an array ".to_owned(),
            ),
            (
                "A = { secret = \"x\", file = true, mode = 4294967296 }",
                "kvrun.toml:3:41: A: 'mode' must be an octal file mode such as \"0440\" or 0o440 ".to_owned(),
            ),
            (
                "A = { secret = \"x\", vault = { url = \"https://v12.vault.azure.net\" } }",
                "kvrun.toml:3:29: A: 'vault' must be a string, not a table ".to_owned(),
            ),
            (
                "A = { secret = \"x\", vault = \"v12\" }",
                "kvrun.toml:3:29: A: 'v12' is not a vault URL write it as a URL: https://v12.vault.azure.net".to_owned(),
            ),
            (
                "A = { secret = \"x\", vault = \"https://v12.vault.azure.net/secrets\" }",
                "kvrun.toml:3:29: A: 'https://v12.vault.azure.net/secrets' is not a vault URL like https://VAULT.vault.azure.net (for other vault hosts, add --vault-suffix) ".to_owned(),
            ),
        ] {
            let text = format!("vault = \"https://main.vault.azure.net\"\n[env]\n{entry}\n");
            if want.is_empty() {
                parse_ok(&text);
                continue;
            }
            assert_eq!(parse_err(&text), want, "{entry}");
        }
    }

    #[test]
    fn the_default_vault_must_be_a_plain_vault_url() {
        for (vault, want) in [
            (
                "myvault",
                "kvrun.toml:1:9: 'myvault' is not a vault URL write it as a URL: https://myvault.vault.azure.net",
            ),
            (
                "MyVault.vault.azure.net",
                "kvrun.toml:1:9: 'MyVault.vault.azure.net' is not a vault URL write it as a URL: https://myvault.vault.azure.net",
            ),
            (
                "my_vault",
                "kvrun.toml:1:9: 'my_vault' is not a vault URL a vault URL looks like https://myvault.vault.azure.net",
            ),
            (
                "https://kv1%2evault%2eazure%2enet",
                "kvrun.toml:1:9: 'https://kv1%2evault%2eazure%2enet' is not a vault URL like https://VAULT.vault.azure.net (for other vault hosts, add --vault-suffix) ",
            ),
            (
                "https://kv1\u{3002}vault\u{3002}azure\u{3002}net",
                "kvrun.toml:1:9: 'https://kv1\u{3002}vault\u{3002}azure\u{3002}net' is not a vault URL like https://VAULT.vault.azure.net (for other vault hosts, add --vault-suffix) ",
            ),
            (
                "http://kv1.vault.azure.net",
                "kvrun.toml:1:9: 'http://kv1.vault.azure.net' is not a vault URL like https://VAULT.vault.azure.net (for other vault hosts, add --vault-suffix) ",
            ),
        ] {
            let text = format!("vault = \"{vault}\"\n");
            assert_eq!(parse_err(&text), want, "{vault}");
        }
        let manifest = parse_manifest(
            "vault = \"HTTPS://Main.vault.azure.net:443/\"\n[env]\nA = \"db\"\n",
            Path::new("kvrun.toml"),
            &VaultHosts::default(),
        )
        .unwrap();
        assert_eq!(
            manifest.entries[0].value,
            Value::Secret {
                reference: secret("https://main.vault.azure.net", "db", None).into(),
                optional: false
            }
        );
    }

    #[test]
    fn env_sections_and_dotted_keys_are_entries_too() {
        let entries = parse_ok(
            "vault = \"https://main.vault.azure.net\"\n[env.A]\nsecret = \"a\"\noptional = true\n[env]\nB.secret = \"b\"\n",
        );
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["A", "B"]);
        assert!(matches!(
            entries[0].value,
            Value::Secret { optional: true, .. }
        ));
        assert_eq!(
            parse_err(
                "vault = \"https://main.vault.azure.net\"\n[env.A]\nsecret = \"a\"\noptinal = true\n"
            ),
            "kvrun.toml:4:1: A: unknown key 'optinal' (did you mean 'optional'?) the keys of an entry are secret, vault, version, field, part, optional, value, file, mode and owner"
        );
        assert_eq!(
            parse_err("env = 5\n"),
            "kvrun.toml:1:7: 'env' must be a table, not an integer "
        );
    }

    #[test]
    fn toml_errors_do_not_quote_the_line() {
        let err = parse_err("[env]\nA = { value = \"hunter2\" \n");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
