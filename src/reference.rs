//! The reference grammar: which configuration values name a Key Vault secret, and which do not.
//!
//! Pure: no I/O, no environment, no network. Everything that decides "is this a secret reference?"
//! lives here, so the rules can be read (and tested) in one place.
//!
//! A value is one of three things ([`Classified`]):
//!
//! - a whole-value reference: an `https` secret identifier on a Key Vault host
//!   (`https://{vault}.vault.azure.net/secrets/{name}[/{version}]`, or another built-in cloud suffix,
//!   or a suffix added with `--vault-suffix`), or App Service's `@Microsoft.KeyVault(…)` syntax;
//! - a template: a larger value with one or more `{{ reference }}` placeholders;
//! - a literal, passed to the child untouched: URLs on other hosts, vault URLs that are not secret
//!   identifiers (`https://myvault.vault.azure.net/`), key and certificate identifiers.
//!
//! A value that is clearly *meant* as a reference but is malformed (`http://` on a vault host, a
//! `/secrets/` path without a name or with extra segments, a bad `@Microsoft.KeyVault(…)` body, an
//! unterminated `{{ https://…`) is an error, never a literal: handing the app the reference text
//! instead of its secret would start it with broken configuration.
//!
//! The grammar only matches Key Vault hosts, never "any URL whose path starts with /secrets/", so a
//! configuration value cannot make kvrun send requests (and tokens) to a host of its choosing.

use std::fmt;

use url::Url;

use crate::pick::Pick;

/// Vault host suffixes of the public, China and US Government clouds, and the retired German cloud.
pub const BUILTIN_VAULT_SUFFIXES: [&str; 4] = [
    "vault.azure.net",
    "vault.azure.cn",
    "vault.usgovcloudapi.net",
    "vault.microsoftazure.de",
];

/// The host suffixes that make a URL a Key Vault URL: the built-in clouds plus those added by the
/// user. Lower-case, without a leading dot.
#[derive(Debug, Clone)]
pub struct VaultHosts {
    suffixes: Vec<String>,
}

impl Default for VaultHosts {
    fn default() -> Self {
        Self::new(&[])
    }
}

impl VaultHosts {
    /// The built-in suffixes followed by `extra` (normalised: lower case, no leading dot). The first
    /// extra suffix, when there is one, is the domain that `@Microsoft.KeyVault(VaultName=…)` names.
    #[must_use]
    pub fn new(extra: &[String]) -> Self {
        let mut suffixes: Vec<String> = extra
            .iter()
            .map(|s| s.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        suffixes.extend(BUILTIN_VAULT_SUFFIXES.iter().map(|s| (*s).to_owned()));
        Self { suffixes }
    }

    /// The domain a bare vault name lives under (`VaultName=` in App Service syntax).
    #[must_use]
    pub fn default_domain(&self) -> &str {
        &self.suffixes[0]
    }

    /// The suffix `host` ends with, if it is a vault host (`{label}.{suffix}`).
    #[must_use]
    pub fn suffix_of(&self, host: &str) -> Option<&str> {
        let host = host.as_bytes();
        self.suffixes
            .iter()
            .find(|suffix| {
                let Some(label_end) = host.len().checked_sub(suffix.len() + 1) else {
                    return false;
                };
                label_end > 0
                    && host[label_end] == b'.'
                    && host[label_end + 1..].eq_ignore_ascii_case(suffix.as_bytes())
            })
            .map(String::as_str)
    }
}

/// A secret to fetch: `{vault_url}/secrets/{name}[/{version}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// `https://host[:port]`, host in lower case, no trailing slash.
    pub vault_url: String,
    pub name: String,
    /// `None` means the latest version.
    pub version: Option<String>,
}

impl SecretRef {
    /// Identity for deduplication: Key Vault compares vaults, names and versions case-insensitively.
    #[must_use]
    pub fn key(&self) -> (String, String, String) {
        (
            self.vault_url.to_ascii_lowercase(),
            self.name.to_ascii_lowercase(),
            self.version.as_deref().unwrap_or("").to_ascii_lowercase(),
        )
    }

    /// The vault's host name, without port.
    #[must_use]
    pub fn vault_host(&self) -> &str {
        self.origin().0
    }

    /// The vault's host name and port (443 unless the URL names another).
    #[must_use]
    pub fn origin(&self) -> (&str, u16) {
        let rest = self.vault_url.trim_start_matches("https://");
        match rest.rsplit_once(':') {
            Some((host, port)) if !rest.ends_with(']') => (host, port.parse().unwrap_or(443)),
            _ => (rest, 443),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/secrets/{}", self.vault_url, self.name)?;
        if let Some(version) = &self.version {
            write!(f, "/{version}")?;
        }
        Ok(())
    }
}

/// A vault as an allow-list names it: a host and a port (443 unless the entry names another).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultOrigin {
    /// Lower case.
    pub host: String,
    pub port: u16,
}

impl VaultOrigin {
    /// Does this entry admit the vault `secret` lives in? Host and port must both match: an entry
    /// for `kv1.vault.azure.net:8443` does not send tokens to `kv1.vault.azure.net` on 443.
    #[must_use]
    pub fn admits(&self, secret: &SecretRef) -> bool {
        let (host, port) = secret.origin();
        host.eq_ignore_ascii_case(&self.host) && port == self.port
    }
}

impl fmt::Display for VaultOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)?;
        if self.port != 443 {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// An allow-list entry: `{vault}.{suffix}[:port]`, optionally written as a vault URL
/// (`https://…[:port][/]`). `None` when it is anything else (another host, a path, a bad port).
#[must_use]
pub fn parse_vault_origin(text: &str, hosts: &VaultHosts) -> Option<VaultOrigin> {
    let text = text.trim();
    let rest = text
        .get(..8)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
        .map_or(text, |_| &text[8..]);
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '\\', '?', '#', '@']) {
        return None;
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, port.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => (authority, 443),
    };
    let host = host.to_ascii_lowercase();
    let suffix = hosts.suffix_of(&host)?;
    let valid = is_valid_vault_name(&host[..host.len() - suffix.len() - 1]);
    valid.then_some(VaultOrigin { host, port })
}

/// A secret and what to take of its value: all of it, one field of a JSON value (`?field=`) or
/// one part of a certificate (`?part=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub secret: SecretRef,
    pub pick: Option<Pick>,
}

impl From<SecretRef> for Reference {
    fn from(secret: SecretRef) -> Self {
        Self { secret, pick: None }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Shown(&self.secret, self.pick.as_ref()))
    }
}

/// A secret, or one field or part of it, written as its identifier (`…/secrets/db?field=username`,
/// `…/secrets/tls?part=key`): what failures and `kvrun check` show, and what classifies back as
/// the same reference.
pub(crate) struct Shown<'a>(pub &'a SecretRef, pub Option<&'a Pick>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        if let Some(pick) = self.1 {
            write!(f, "?{}", pick.query())?;
        }
        Ok(())
    }
}

/// What a configuration value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// Not a reference: passed through as it is.
    Literal,
    /// The whole value is replaced by the secret (or one field of it).
    Reference(Reference),
    /// Placeholders inside a larger value.
    Template(Vec<Piece>),
}

/// A part of a template value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Secret(Reference),
}

/// A value that is meant as a reference but cannot be one. The message names what is wrong, never
/// the whole value (which may hold a secret in the template's literal parts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReferenceError {
    pub message: String,
    pub hint: Option<String>,
}

impl ReferenceError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The result of parsing a secret identifier on any host, as the JS SDK's
/// `parseKeyVaultSecretIdentifier` returns it (`version` is `None` where JS gives `undefined` or "").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identifier {
    pub source_id: String,
    pub vault_url: String,
    pub name: String,
    pub version: Option<String>,
    /// kvrun's addition: the `?field=` of a JSON secret, when the query names one (the SDK
    /// ignores the query).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// kvrun's addition: the `?part=` of a certificate-backed secret, when the query names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
}

/// Parse a Key Vault secret identifier on any host, as `parseKeyVaultSecretIdentifier` does, but
/// stricter: only `https`, only the `secrets` collection, a non-empty name.
///
/// # Errors
/// When `id` is not an https secret identifier; the message says why.
pub fn parse_secret_identifier(id: &str) -> Result<Identifier, ReferenceError> {
    let trimmed = id.trim();
    let url =
        Url::parse(trimmed).map_err(|e| ReferenceError::new(format!("not a valid URL ({e})")))?;
    identifier_of(id, &url)
}

/// [`parse_secret_identifier`] of `id`, already parsed as `url`.
fn identifier_of(id: &str, url: &Url) -> Result<Identifier, ReferenceError> {
    let host = url
        .host_str()
        .ok_or_else(|| ReferenceError::new("the URL has no host"))?;
    let segments: Vec<&str> = url.path().split('/').collect();
    // `/secrets/name` → ["", "secrets", "name"]; `/secrets/name/version` → 4 segments.
    let collection = segments.get(1).copied().unwrap_or("");
    match collection {
        "secrets" => {}
        "keys" => {
            return Err(
                ReferenceError::new("this is a key identifier, not a secret identifier").hint(
                    "kvrun reads secrets; a key's private material cannot be exported as a value",
                ),
            );
        }
        "certificates" => {
            return Err(ReferenceError::new(
                "this is a certificate identifier, not a secret identifier",
            )
            .hint(
                "a certificate's private key is the secret of the same name: use /secrets/NAME",
            ));
        }
        _ => {
            return Err(ReferenceError::new(
                "the path must be /secrets/{name} or /secrets/{name}/{version}",
            ));
        }
    }
    if url.scheme() != "https" {
        return Err(
            ReferenceError::new(format!("the scheme must be https, not {}", url.scheme()))
                .hint("Key Vault only serves https, and kvrun never sends a token over plain http"),
        );
    }
    if segments.len() != 3 && segments.len() != 4 {
        return Err(ReferenceError::new(format!(
            "the path must be /secrets/{{name}} or /secrets/{{name}}/{{version}}, found {} segments after the host",
            segments.len() - 1
        )));
    }
    let name = segments[2];
    if name.is_empty() {
        return Err(ReferenceError::new("the secret name is empty"));
    }
    let version = segments.get(3).filter(|v| !v.is_empty());
    let vault_url = match url.port() {
        Some(port) => format!("https://{host}:{port}"),
        None => format!("https://{host}"),
    };
    let pick = url
        .query()
        .and_then(|query| crate::pick::from_query(query).ok());
    Ok(Identifier {
        source_id: id.to_owned(),
        vault_url,
        name: name.to_owned(),
        version: version.map(|v| (*v).to_owned()),
        field: pick
            .as_ref()
            .and_then(Pick::field)
            .map(|field| field.as_str().to_owned()),
        part: pick
            .as_ref()
            .and_then(Pick::part)
            .map(|part| part.as_str().to_owned()),
    })
}

/// Key Vault secret names: 1–127 characters of `0-9 a-z A-Z -`.
#[must_use]
pub fn is_valid_secret_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Versions are system-generated (32 hex characters today); accept any alphanumeric string so a
/// format change does not break kvrun, but reject path junk.
pub(crate) fn is_valid_version(version: &str) -> bool {
    (1..=64).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Vault names: 3–24 characters of `0-9 a-z A-Z -`, starting with a letter, ending with a letter or
/// digit, without consecutive hyphens (so no punycode `xn--` label either).
#[must_use]
pub fn is_valid_vault_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=24).contains(&bytes.len())
        && bytes[0].is_ascii_alphabetic()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && !name.contains("--")
}

/// A secret name with an optional version, as `name` or `name/version`.
fn check_name_version(name: &str, version: Option<&str>) -> Result<(), ReferenceError> {
    if !is_valid_secret_name(name) {
        return Err(ReferenceError::new(format!(
            "'{name}' is not a valid secret name (1-127 characters of 0-9, a-z, A-Z and -)"
        )));
    }
    if let Some(version) = version
        && !is_valid_version(version)
    {
        return Err(ReferenceError::new(format!(
            "'{version}' is not a valid secret version"
        )));
    }
    Ok(())
}

/// What a value that may be a URL is, as far as vault hosts go.
enum VaultUrl {
    /// Not an http(s) URL on a vault host.
    No,
    Url(Url),
    /// Clearly aimed at a vault host, but not a valid URL: never a literal.
    Malformed(ReferenceError),
}

/// Is `value` (trimmed) an http(s) URL on a vault host? The host is found by hand first, so a URL
/// that does not parse (`https:/v.vault.azure.net/…`, a port out of range) is still recognised as
/// aimed at a vault, and refused, rather than passed on as text.
///
/// Two things are judged on the text as written, before the `url` crate normalises it:
///
/// - the path: `url` resolves `.`/`..` segments and their encoded forms, so
///   `/secrets/%2e%2e/keys/x` would become the pass-through `/keys/x` and `/keys/../secrets/x` a
///   reference; a path that normalisation would rewrite is refused instead;
/// - the host: one that is not a vault host as written but becomes one once decoded
///   (`kv1%2evault%2eazure%2enet`, ideographic or full-width dots and letters) is refused, never
///   a literal that the app would take for its configuration, never a reference to a host the
///   user did not write plainly.
fn vault_url(value: &str, hosts: &VaultHosts) -> VaultUrl {
    let value = value.trim();
    let lower = value.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https:")
        .or_else(|| lower.strip_prefix("http:"))
    else {
        return VaultUrl::No;
    };
    let after_slashes = rest.trim_start_matches(['/', '\\']);
    let authority_end = after_slashes
        .find(['/', '\\', '?', '#'])
        .unwrap_or(after_slashes.len());
    let authority = &after_slashes[..authority_end];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host_port.split(':').next().unwrap_or_default();
    if hosts.suffix_of(host.trim_end_matches('.')).is_none() {
        return disguised_vault_host(value, hosts).map_or(VaultUrl::No, VaultUrl::Malformed);
    }
    if !rest.starts_with("//") {
        return VaultUrl::Malformed(ReferenceError::new("a vault URL must start with https://"));
    }
    let tail = &after_slashes[authority_end..];
    let raw_path = &tail[..tail.find(['?', '#']).unwrap_or(tail.len())];
    match Url::parse(value) {
        Ok(url) if !is_plain_path(raw_path) => VaultUrl::Malformed(
            ReferenceError::new(
                "the path must be written plainly: no '.' or '..' segment, no %2e or %2f, no backslash, space or control character",
            )
            .hint(format!(
                "write it as {}/secrets/NAME[/VERSION]",
                https_origin(&url)
            )),
        ),
        // A vault host as written, but not plainly (`ｋv1.vault.azure.net`, `k%761.…`).
        Ok(url) if url.host_str() != Some(host) && is_valid_vault_name(vault_label(&url, hosts)) => {
            VaultUrl::Malformed(disguised(&url))
        }
        Ok(url) => VaultUrl::Url(url),
        Err(e) => VaultUrl::Malformed(ReferenceError::new(format!("not a valid vault URL ({e})"))),
    }
}

/// A path (lower-cased, as written) that URL normalisation leaves as it is, segment for segment.
fn is_plain_path(path: &str) -> bool {
    !path.contains(|c: char| c == '\\' || c <= ' ' || c == '\u{7f}')
        && path.split('/').all(|segment| {
            segment != "."
                && segment != ".."
                && !segment.contains("%2e")
                && !segment.contains("%2f")
        })
}

/// A URL whose host is not a vault host as written but is one once the `url` crate has decoded
/// and normalised it: an error asking for the plain spelling.
fn disguised_vault_host(value: &str, hosts: &VaultHosts) -> Option<ReferenceError> {
    let url = Url::parse(value).ok()?;
    hosts.suffix_of(url.host_str()?.trim_end_matches('.'))?;
    Some(disguised(&url))
}

fn disguised(url: &Url) -> ReferenceError {
    let host = url.host_str().unwrap_or_default().trim_end_matches('.');
    ReferenceError::new(format!(
        "the host normalises to the vault host {host}: it is spelled with percent-encoding or characters that are not plain ASCII"
    ))
    .hint(format!("write the host plainly, as {}/…", https_origin(url)))
}

/// The vault's name: the host's labels before its vault suffix (empty when there is none).
fn vault_label<'u>(url: &'u Url, hosts: &VaultHosts) -> &'u str {
    let host = url.host_str().unwrap_or_default().trim_end_matches('.');
    hosts
        .suffix_of(host)
        .map_or("", |suffix| &host[..host.len() - suffix.len() - 1])
}

/// `https://host[:port]` of a URL, for hints.
fn https_origin(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default().trim_end_matches('.');
    match url.port() {
        Some(port) => format!("https://{host}:{port}"),
        None => format!("https://{host}"),
    }
}

/// Interpret a whole value that is a URL on a vault host. `Ok(None)` when it is a vault URL that is
/// not a secret identifier (a bare vault URL, a key or certificate identifier): a literal.
fn secret_from_vault_url(
    url: &Url,
    hosts: &VaultHosts,
) -> Result<Option<Reference>, ReferenceError> {
    let path = url.path();
    let first = path.split('/').nth(1).unwrap_or_default();
    let collection = path.trim_start_matches('/').split('/').next().unwrap_or("");
    // The documented pass-throughs: the vault URL itself, key and certificate identifiers.
    if path == "/"
        || first.eq_ignore_ascii_case("keys")
        || first.eq_ignore_ascii_case("certificates")
    {
        return Ok(None);
    }
    if !collection.eq_ignore_ascii_case("secrets") {
        // `/secret/db`, `/db`: meant as a reference; handing the app this text as its value would
        // start it with broken configuration.
        return Err(ReferenceError::new(
            "not a secret identifier: on a vault host only /secrets/NAME[/VERSION] is a reference, and only the vault URL itself, /keys/… and /certificates/… pass through as text",
        )
        .hint(format!(
            "a secret identifier looks like {}/secrets/NAME[/VERSION]",
            https_origin(url)
        )));
    }
    if !path.starts_with("/secrets") {
        return Err(ReferenceError::new(
            "the path of a secret identifier is /secrets/{name}[/{version}], in lower case, one slash each",
        ));
    }
    if url.scheme() != "https" {
        return Err(ReferenceError::new(format!(
            "a secret identifier must use https, not {}",
            url.scheme()
        ))
        .hint("Key Vault only serves https, and kvrun never sends a token over plain http"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ReferenceError::new(
            "a secret identifier must not carry user information",
        ));
    }
    if url.fragment().is_some() {
        return Err(ReferenceError::new(
            "a secret identifier must not have a fragment",
        ));
    }
    let pick = match url.query() {
        None => None,
        Some(query) => Some(crate::pick::from_query(query).map_err(ReferenceError::new)?),
    };
    let host = url.host_str().unwrap_or_default();
    if host.ends_with('.') {
        return Err(ReferenceError::new(
            "the vault's host name must not end with a dot",
        ));
    }
    let suffix = hosts.suffix_of(host).unwrap_or_default();
    let vault = &host[..host.len() - suffix.len() - 1];
    if !is_valid_vault_name(vault) {
        return Err(ReferenceError::new(format!(
            "'{vault}' is not a valid vault name (3-24 letters, digits and single hyphens, starting with a letter)"
        )));
    }
    let id = identifier_of(url.as_str(), url)?;
    check_name_version(&id.name, id.version.as_deref())?;
    Ok(Some(Reference {
        secret: SecretRef {
            vault_url: id.vault_url,
            name: id.name,
            version: id.version,
        },
        pick,
    }))
}

const APP_SERVICE_PREFIX: &str = "@microsoft.keyvault";

/// Does `text` start with App Service's `@Microsoft.KeyVault` (in any case)?
fn is_app_service(text: &str) -> bool {
    text.trim_start()
        .get(..APP_SERVICE_PREFIX.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(APP_SERVICE_PREFIX))
}

/// Parse App Service's `@Microsoft.KeyVault(…)` syntax (the whole value).
fn app_service_reference(value: &str, hosts: &VaultHosts) -> Result<SecretRef, ReferenceError> {
    let body = value
        .trim()
        .get(APP_SERVICE_PREFIX.len()..)
        .map(str::trim_start)
        .and_then(|rest| rest.strip_prefix('('))
        .and_then(|rest| rest.strip_suffix(')'))
        .ok_or_else(|| {
            ReferenceError::new("write @Microsoft.KeyVault(…) with its parentheses around the whole rest of the value")
        })?;
    let mut secret_uri = None;
    let mut vault_name = None;
    let mut secret_name = None;
    let mut secret_version = None;
    for part in body.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, val) = part.split_once('=').ok_or_else(|| {
            ReferenceError::new(format!(
                "'{part}' in @Microsoft.KeyVault(…) is not a Key=Value pair"
            ))
        })?;
        let slot = match key.trim().to_ascii_lowercase().as_str() {
            "secreturi" => &mut secret_uri,
            "vaultname" => &mut vault_name,
            "secretname" => &mut secret_name,
            "secretversion" => &mut secret_version,
            other => {
                return Err(ReferenceError::new(format!(
                    "unknown key '{other}' in @Microsoft.KeyVault(…)"
                ))
                .hint("use SecretUri=… or VaultName=…;SecretName=…[;SecretVersion=…]"));
            }
        };
        if slot.replace(val.trim()).is_some() {
            return Err(ReferenceError::new(format!(
                "'{}' appears twice in @Microsoft.KeyVault(…)",
                key.trim()
            )));
        }
    }
    match (secret_uri, vault_name, secret_name) {
        (Some(uri), None, None) if secret_version.is_none() => match vault_url(uri, hosts) {
            VaultUrl::Url(url) if url.query().is_some() => Err(ReferenceError::new(
                "SecretUri must not have a query: App Service's syntax takes the whole secret",
            )
            .hint("for one field of a JSON secret, write the identifier with ?field=NAME instead")),
            VaultUrl::Url(url) => secret_from_vault_url(&url, hosts)?
                .map(|reference| reference.secret)
                .ok_or_else(|| ReferenceError::new("SecretUri is not a secret identifier")),
            VaultUrl::Malformed(e) => Err(e),
            VaultUrl::No => Err(
                ReferenceError::new("SecretUri is not a URL on a Key Vault host").hint(
                    "for a vault host outside the Azure clouds, add its suffix with --vault-suffix",
                ),
            ),
        },
        (None, Some(vault), Some(name)) => {
            if !is_valid_vault_name(vault) {
                return Err(ReferenceError::new(format!(
                    "'{vault}' is not a valid vault name (3-24 letters, digits and single hyphens, starting with a letter)"
                )));
            }
            let version = secret_version.filter(|v| !v.is_empty());
            check_name_version(name, version)?;
            Ok(SecretRef {
                vault_url: format!(
                    "https://{}.{}",
                    vault.to_ascii_lowercase(),
                    hosts.default_domain()
                ),
                name: name.to_owned(),
                version: version.map(str::to_owned),
            })
        }
        _ => Err(ReferenceError::new(
            "@Microsoft.KeyVault(…) needs SecretUri=… alone, or VaultName=… with SecretName=…",
        )),
    }
}

/// Parse a reference that must be one (a template placeholder, a manifest entry): a secret
/// identifier on a vault host or the App Service syntax.
///
/// # Errors
/// When `text` is not a reference.
pub fn parse_reference(text: &str, hosts: &VaultHosts) -> Result<Reference, ReferenceError> {
    let text = text.trim();
    if is_app_service(text) {
        return app_service_reference(text, hosts).map(Reference::from);
    }
    match vault_url(text, hosts) {
        VaultUrl::Url(url) => secret_from_vault_url(&url, hosts)?.ok_or_else(|| {
            ReferenceError::new("this vault URL is not a secret identifier")
                .hint("a secret identifier looks like https://VAULT.vault.azure.net/secrets/NAME")
        }),
        VaultUrl::Malformed(e) => Err(e),
        VaultUrl::No => Err(ReferenceError::new("not a Key Vault secret reference").hint(
            "write https://VAULT.vault.azure.net/secrets/NAME; for other vault hosts add --vault-suffix",
        )),
    }
}

const OPEN: &str = "{{";
const CLOSE: &str = "}}";

/// Does the text inside `{{ … }}` look like it is meant as a reference?
fn looks_like_reference(inner: &str) -> bool {
    let inner = inner.trim_start();
    let lower: String = inner
        .chars()
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    lower.starts_with("https:") || lower.starts_with("http:") || is_app_service(inner)
}

/// Split `value` into template pieces. `Ok(None)` when no placeholder is meant as a reference
/// (`{{ .Values.x }}` in a Go template stays a literal).
fn template(value: &str, hosts: &VaultHosts) -> Result<Option<Vec<Piece>>, ReferenceError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = value;
    let mut any = false;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        if !looks_like_reference(after) {
            text.push_str(&rest[..start + OPEN.len()]);
            rest = after;
            continue;
        }
        let Some(end) = after.find(CLOSE) else {
            return Err(ReferenceError::new(
                "'{{' opens a reference that no '}}' closes",
            ));
        };
        let inner = &after[..end];
        let secret = parse_reference(inner, hosts).map_err(|e| ReferenceError {
            message: format!("in {{{{ … }}}}: {}", e.message),
            hint: e.hint,
        })?;
        text.push_str(&rest[..start]);
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(Piece::Secret(secret));
        any = true;
        rest = &after[end + CLOSE.len()..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(any.then_some(pieces))
}

/// Classify a configuration value.
///
/// # Errors
/// When the value is clearly meant as a reference but malformed.
pub fn classify(value: &str, hosts: &VaultHosts) -> Result<Classified, ReferenceError> {
    if is_app_service(value) {
        return app_service_reference(value, hosts)
            .map(|secret| Classified::Reference(secret.into()));
    }
    match vault_url(value, hosts) {
        VaultUrl::Url(url) => {
            if let Some(secret) = secret_from_vault_url(&url, hosts)? {
                return Ok(Classified::Reference(secret));
            }
            // A vault URL that is not a secret identifier may still hold placeholders.
        }
        VaultUrl::Malformed(e) => return Err(e),
        VaultUrl::No => {}
    }
    Ok(match template(value, hosts)? {
        Some(pieces) => Classified::Template(pieces),
        None => Classified::Literal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> VaultHosts {
        VaultHosts::new(&["vault.localhost".to_owned()])
    }

    fn secret(vault_url: &str, name: &str, version: Option<&str>) -> SecretRef {
        SecretRef {
            vault_url: vault_url.to_owned(),
            name: name.to_owned(),
            version: version.map(str::to_owned),
        }
    }

    #[test]
    fn whole_value_references() {
        let cases = [
            (
                "https://myvault.vault.azure.net/secrets/db",
                secret("https://myvault.vault.azure.net", "db", None),
            ),
            (
                "https://myvault.vault.azure.net/secrets/db/",
                secret("https://myvault.vault.azure.net", "db", None),
            ),
            (
                "https://myvault.vault.azure.net/secrets/db/4387e9f3d6e14c459867679a90fd0f79",
                secret(
                    "https://myvault.vault.azure.net",
                    "db",
                    Some("4387e9f3d6e14c459867679a90fd0f79"),
                ),
            ),
            (
                "https://MyVault.Vault.Azure.Net/secrets/Db",
                secret("https://myvault.vault.azure.net", "Db", None),
            ),
            (
                "https://v01.vault.azure.cn/secrets/x",
                secret("https://v01.vault.azure.cn", "x", None),
            ),
            (
                "https://gov.vault.usgovcloudapi.net/secrets/x",
                secret("https://gov.vault.usgovcloudapi.net", "x", None),
            ),
            (
                "https://old.vault.microsoftazure.de/secrets/x",
                secret("https://old.vault.microsoftazure.de", "x", None),
            ),
            (
                "https://kv1.vault.localhost:8443/secrets/x",
                secret("https://kv1.vault.localhost:8443", "x", None),
            ),
            (
                "https://kv1.vault.azure.net:443/secrets/x",
                secret("https://kv1.vault.azure.net", "x", None),
            ),
            (
                "  https://kv1.vault.azure.net/secrets/x  ",
                secret("https://kv1.vault.azure.net", "x", None),
            ),
        ];
        for (value, want) in cases {
            assert_eq!(
                classify(value, &hosts()),
                Ok(Classified::Reference(want.into())),
                "{value}"
            );
        }
    }

    #[test]
    fn literals_pass_through() {
        for value in [
            "",
            "plain",
            "https://example.com/secrets/x",
            "https://myvault.vault.azure.net/",
            "https://myvault.vault.azure.net",
            "https://myvault.vault.azure.net/keys/k/1",
            "https://myvault.vault.azure.net/certificates/c",
            "https://myvault.vault.azure.net/Keys/k",
            "https://myvault.vault.azure.net/keys",
            "https://myvault.vault.azure.net/?k=v",
            "https://example.com/secret/x",
            "https://example.com/secrets/%2e%2e/keys/x",
            "https://example.com/a/../secrets/x",
            "https://b\u{fc}cher.example/secrets/x",
            "https://kv1%2eexample.com/secrets/x",
            "https://vault.azure.net/secrets/x",
            "https://hostvault.azure.net/secrets/x",
            "https://evil.com/x.vault.azure.net/secrets/y",
            "https://myvault.vault.azure.net.evil.com/secrets/x",
            "postgres://u:p@db/app",
            "{{ .Values.password }}",
            "hello {{name}}",
            "vault.azure.net/secrets/x",
        ] {
            assert_eq!(
                classify(value, &hosts()),
                Ok(Classified::Literal),
                "{value}"
            );
        }
    }

    #[test]
    fn malformed_references_are_errors() {
        for value in [
            "http://myvault.vault.azure.net/secrets/x",
            "https://myvault.vault.azure.net/secrets/",
            "https://myvault.vault.azure.net/secrets",
            "https://myvault.vault.azure.net/secrets/a/b/c",
            "https://myvault.vault.azure.net/secrets//v1",
            "https://myvault.vault.azure.net/secrets/bad_name",
            "https://myvault.vault.azure.net/secrets/x?api-version=1",
            "https://user:pw@myvault.vault.azure.net/secrets/x",
            "https://a.b.vault.azure.net/secrets/x",
            "https://ab.vault.azure.net/secrets/x",
            "@Microsoft.KeyVault(SecretUri=https://v12.vault.azure.net/secrets/x",
            "@Microsoft.KeyVault(VaultName=v12)",
            "@Microsoft.KeyVault(Vault=v12;SecretName=x)",
            "@Microsoft.KeyVault(SecretUri=https://example.com/secrets/x)",
            "@Microsoft.KeyVault(SecretUri=https://v12.vault.azure.net/keys/x)",
            "@Microsoft.KeyVault(VaultName=v12;SecretName=x;VaultName=v13)",
            "@Microsoft.KeyVault(junk)",
            "postgres://app:{{ https://myvault.vault.azure.net/secrets/db-pass @db",
            "x{{ https://example.com/secrets/x }}",
            "x{{ http://myvault.vault.azure.net/secrets/x }}",
            "x{{ @Microsoft.KeyVault(VaultName=v) }}",
            "@Microsoft.KeyVault (SecretUri=https://v12.vault.azure.net/secrets/x",
            "@microsoft.keyvault(junk)",
            "x{{ @microsoft.keyvault(junk) }}",
            "https://myvault.vault.azure.net./secrets/x",
            "https://myvault.vault.azure.net//secrets/x",
            "https:/myvault.vault.azure.net/secrets/x",
            "https:myvault.vault.azure.net/secrets/x",
            "https://myvault.vault.azure.net:99999/secrets/x",
            "{{ https://abcdefghijk\u{e4}.vault.azure.net/secrets/x }}",
            "https://myvault.vault.azure.net/?k={{ https://myvault.vault.azure.net/secrets/bad_name }}",
        ] {
            assert!(
                classify(value, &hosts()).is_err(),
                "{value} should be an error"
            );
        }
    }

    #[test]
    #[expect(clippy::too_many_lines, reason = "one table of cases")]
    fn near_misses_on_a_vault_host_say_what_is_wrong() {
        const NOT_AN_IDENTIFIER: &str = "not a secret identifier: on a vault host only /secrets/NAME[/VERSION] is a reference, and only the vault URL itself, /keys/… and /certificates/… pass through as text";
        const NOT_PLAIN: &str = "the path must be written plainly: no '.' or '..' segment, no %2e or %2f, no backslash, space or control character";
        const DISGUISED: &str = "the host normalises to the vault host kv1.vault.azure.net: it is spelled with percent-encoding or characters that are not plain ASCII";
        let identifier_hint =
            "a secret identifier looks like https://myvault.vault.azure.net/secrets/NAME[/VERSION]";
        let plain_hint = "write it as https://myvault.vault.azure.net/secrets/NAME[/VERSION]";
        let disguised_hint = "write the host plainly, as https://kv1.vault.azure.net/…";
        for (value, message, hint) in [
            (
                "https://myvault.vault.azure.net/secret/db-password",
                NOT_AN_IDENTIFIER,
                identifier_hint,
            ),
            (
                "https://myvault.vault.azure.net/db-password",
                NOT_AN_IDENTIFIER,
                identifier_hint,
            ),
            (
                "https://myvault.vault.azure.net/deletedsecrets/x",
                NOT_AN_IDENTIFIER,
                identifier_hint,
            ),
            (
                "https://myvault.vault.azure.net/secrets/%2e%2e/keys/x",
                NOT_PLAIN,
                plain_hint,
            ),
            (
                "https://myvault.vault.azure.net/secrets/%2E%2E/keys/x",
                NOT_PLAIN,
                plain_hint,
            ),
            (
                "https://myvault.vault.azure.net/keys/../secrets/x",
                NOT_PLAIN,
                plain_hint,
            ),
            (
                "https://myvault.vault.azure.net/keys/%2e./secrets/x",
                NOT_PLAIN,
                plain_hint,
            ),
            (
                "https://myvault.vault.azure.net/secrets/./x",
                NOT_PLAIN,
                plain_hint,
            ),
            ("https://myvault.vault.azure.net/./", NOT_PLAIN, plain_hint),
            (
                "https://myvault.vault.azure.net/secrets/x%2f1",
                NOT_PLAIN,
                plain_hint,
            ),
            (
                "https://myvault.vault.azure.net/keys/k%2F..",
                NOT_PLAIN,
                plain_hint,
            ),
            (
                "https://myvault.vault.azure.net\\secrets\\x",
                NOT_PLAIN,
                plain_hint,
            ),
            (
                "https://myvault.vault.azure.net/sec\trets/x",
                NOT_PLAIN,
                plain_hint,
            ),
            (
                "https://myvault.vault.azure.net/secrets/x\ny",
                NOT_PLAIN,
                plain_hint,
            ),
            (
                "https://myvault.vault.azure.net/secrets/a b",
                NOT_PLAIN,
                plain_hint,
            ),
            (
                "https://kv1%2evault%2eazure%2enet/secrets/db-password",
                DISGUISED,
                disguised_hint,
            ),
            (
                "https://kv1%2Evault.azure.net/secrets/x",
                DISGUISED,
                disguised_hint,
            ),
            (
                "https://kv1\u{3002}vault\u{3002}azure\u{3002}net/secrets/x",
                DISGUISED,
                disguised_hint,
            ),
            (
                "https://kv1\u{ff0e}vault\u{ff0e}azure\u{ff0e}net/",
                DISGUISED,
                disguised_hint,
            ),
            (
                "https://kv1\u{ff61}vault.azure.net/keys/k",
                DISGUISED,
                disguised_hint,
            ),
            (
                "https://\u{ff2b}V1.vault.azure.net/secrets/x",
                DISGUISED,
                disguised_hint,
            ),
            (
                "https://kv1.vault.azure.n\u{ff45}t/secrets/x",
                DISGUISED,
                disguised_hint,
            ),
            (
                "https://kv1.va\u{ad}ult.azure.net/secrets/x",
                DISGUISED,
                disguised_hint,
            ),
            (
                "https://k%761.vault.azure.net/secrets/x",
                DISGUISED,
                disguised_hint,
            ),
        ] {
            let want = Err(ReferenceError::new(message).hint(hint));
            assert_eq!(classify(value, &hosts()), want, "{value}");
            let template = format!("x{{{{ {value} }}}}");
            let want = Err(ReferenceError::new(format!("in {{{{ … }}}}: {message}")).hint(hint));
            assert_eq!(classify(&template, &hosts()), want, "{template}");
            let app_service = format!("@Microsoft.KeyVault(SecretUri={value})");
            if message != NOT_AN_IDENTIFIER && !value.contains(['\t', '\n', ' ']) {
                let want = Err(ReferenceError::new(message).hint(hint));
                assert_eq!(classify(&app_service, &hosts()), want, "{app_service}");
            }
        }
    }

    fn field(text: &str) -> Option<Pick> {
        crate::field::Field::parse(text).ok().map(Pick::Field)
    }

    #[test]
    fn a_field_of_a_json_secret_in_the_query() {
        let db = || secret("https://myvault.vault.azure.net", "db", None);
        let cases = [
            (
                "https://myvault.vault.azure.net/secrets/db?field=username",
                "username",
            ),
            (
                "https://myvault.vault.azure.net/secrets/db/?field=%2Fdb%2Fprimary%2Fhost",
                "/db/primary/host",
            ),
            (
                "https://myvault.vault.azure.net/secrets/db?field=/db/primary/host",
                "/db/primary/host",
            ),
            (
                "https://myvault.vault.azure.net/secrets/db?field=a~1b",
                "a~1b",
            ),
        ];
        for (text, want) in cases {
            let want = Reference {
                secret: db(),
                pick: field(want),
            };
            assert_eq!(
                classify(text, &hosts()),
                Ok(Classified::Reference(want.clone())),
                "{text}"
            );
            assert_eq!(
                parse_reference(text, &hosts()).as_ref(),
                Ok(&want),
                "{text}"
            );
        }
        // Inside a template, each placeholder takes its own field of the one secret.
        let dsn = "postgres://{{ https://myvault.vault.azure.net/secrets/db?field=username }}:{{ https://myvault.vault.azure.net/secrets/db?field=password }}@db";
        assert_eq!(
            classify(dsn, &hosts()),
            Ok(Classified::Template(vec![
                Piece::Text("postgres://".into()),
                Piece::Secret(Reference {
                    secret: db(),
                    pick: field("username")
                }),
                Piece::Text(":".into()),
                Piece::Secret(Reference {
                    secret: db(),
                    pick: field("password")
                }),
                Piece::Text("@db".into()),
            ]))
        );
        // Any other query stays an error, and App Service's syntax takes none.
        let error = |text: &str| classify(text, &hosts()).unwrap_err().message;
        assert_eq!(
            error("https://myvault.vault.azure.net/secrets/db?api-version=7.4"),
            "a secret identifier's query may only be ?field=NAME or ?part=PART, not 'api-version'"
        );
        assert_eq!(
            error("https://myvault.vault.azure.net/secrets/db?field=a&field=b"),
            "?field= appears twice in the secret identifier"
        );
        assert_eq!(
            error("https://myvault.vault.azure.net/secrets/db#frag"),
            "a secret identifier must not have a fragment"
        );
        assert_eq!(
            error(
                "@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/db?field=username)"
            ),
            "SecretUri must not have a query: App Service's syntax takes the whole secret"
        );
        // kvrun parse: what the SDK prints, and the field.
        let id = parse_secret_identifier("https://myvault.vault.azure.net/secrets/db?field=%2Fa")
            .unwrap();
        assert_eq!((id.name.as_str(), id.field.as_deref()), ("db", Some("/a")));
        let id = parse_secret_identifier("https://myvault.vault.azure.net/secrets/db?x=1").unwrap();
        assert_eq!(id.field, None);
        let id = parse_secret_identifier("https://myvault.vault.azure.net/secrets/tls?part=key")
            .unwrap();
        assert_eq!((id.field, id.part.as_deref()), (None, Some("key")));
    }

    #[test]
    fn app_service_syntax() {
        let cases = [
            (
                "@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/db/)",
                secret("https://myvault.vault.azure.net", "db", None),
            ),
            (
                "@Microsoft.KeyVault(SecretUri=https://myvault.vault.azure.net/secrets/db/abc123)",
                secret("https://myvault.vault.azure.net", "db", Some("abc123")),
            ),
            (
                "@Microsoft.KeyVault(VaultName=myvault;SecretName=db)",
                secret("https://myvault.vault.localhost", "db", None),
            ),
            (
                "@Microsoft.KeyVault(VaultName=MyVault; SecretName=db; SecretVersion=abc123)",
                secret("https://myvault.vault.localhost", "db", Some("abc123")),
            ),
        ];
        for (value, want) in cases {
            assert_eq!(
                classify(value, &hosts()),
                Ok(Classified::Reference(want.into())),
                "{value}"
            );
        }
        assert_eq!(
            classify(
                "@microsoft.keyvault (VaultName=myvault;SecretName=db)",
                &hosts()
            ),
            Ok(Classified::Reference(
                secret("https://myvault.vault.localhost", "db", None).into()
            ))
        );
        // Without an added suffix, VaultName= is a vault in the public cloud.
        assert_eq!(
            classify(
                "@Microsoft.KeyVault(VaultName=myvault;SecretName=db)",
                &VaultHosts::default()
            ),
            Ok(Classified::Reference(
                secret("https://myvault.vault.azure.net", "db", None).into()
            ))
        );
    }

    #[test]
    fn templates() {
        let value = "postgres://app:{{ https://myvault.vault.azure.net/secrets/db-pass }}@db/app";
        assert_eq!(
            classify(value, &hosts()),
            Ok(Classified::Template(vec![
                Piece::Text("postgres://app:".into()),
                Piece::Secret(secret("https://myvault.vault.azure.net", "db-pass", None).into()),
                Piece::Text("@db/app".into()),
            ]))
        );
        let value = "{{https://a12.vault.azure.net/secrets/u}}:{{ @Microsoft.KeyVault(VaultName=a12;SecretName=p) }}";
        assert_eq!(
            classify(value, &hosts()),
            Ok(Classified::Template(vec![
                Piece::Secret(secret("https://a12.vault.azure.net", "u", None).into()),
                Piece::Text(":".into()),
                Piece::Secret(secret("https://a12.vault.localhost", "p", None).into()),
            ]))
        );
        // A vault URL that is not a secret identifier may carry a placeholder.
        let value =
            "https://myvault.vault.azure.net/?k={{ https://myvault.vault.azure.net/secrets/k }}";
        assert_eq!(
            classify(value, &hosts()),
            Ok(Classified::Template(vec![
                Piece::Text("https://myvault.vault.azure.net/?k=".into()),
                Piece::Secret(secret("https://myvault.vault.azure.net", "k", None).into()),
            ]))
        );
        // A Go-template placeholder beside a reference stays text.
        let value = "{{ .x }}-{{ https://a12.vault.azure.net/secrets/u }}";
        assert_eq!(
            classify(value, &hosts()),
            Ok(Classified::Template(vec![
                Piece::Text("{{ .x }}-".into()),
                Piece::Secret(secret("https://a12.vault.azure.net", "u", None).into()),
            ]))
        );
    }

    #[test]
    fn errors_do_not_echo_template_text() {
        let value = "hunter2-literal-part{{ https://myvault.vault.azure.net/secrets/bad_name }}";
        let err = classify(value, &hosts()).unwrap_err();
        assert!(!err.message.contains("hunter2"), "{}", err.message);
    }

    #[test]
    fn parse_matches_the_js_sdk() {
        let cases: [(&str, &str, &str, Option<&str>); 8] = [
            (
                "https://myvault.vault.azure.net/secrets/db",
                "https://myvault.vault.azure.net",
                "db",
                None,
            ),
            (
                "https://myvault.vault.azure.net/secrets/db/",
                "https://myvault.vault.azure.net",
                "db",
                None,
            ),
            (
                "https://MYVAULT.vault.azure.net/secrets/DB/V1",
                "https://myvault.vault.azure.net",
                "DB",
                Some("V1"),
            ),
            (
                "https://example.com:8443/secrets/x/y",
                "https://example.com:8443",
                "x",
                Some("y"),
            ),
            (
                "https://example.com:443/secrets/x?a=b#c",
                "https://example.com",
                "x",
                None,
            ),
            (
                " https://example.com/secrets/x ",
                "https://example.com",
                "x",
                None,
            ),
            // `new URL()` decodes the host and resolves dot segments; `parse` does as JS does.
            (
                "https://kv1%2evault%2eazure%2enet/secrets/x",
                "https://kv1.vault.azure.net",
                "x",
                None,
            ),
            (
                "https://example.com/keys/../secrets/x/y",
                "https://example.com",
                "x",
                Some("y"),
            ),
        ];
        for (id, vault_url, name, version) in cases {
            let parsed = parse_secret_identifier(id).unwrap();
            assert_eq!(parsed.source_id, id);
            assert_eq!(parsed.vault_url, vault_url, "{id}");
            assert_eq!(parsed.name, name, "{id}");
            assert_eq!(parsed.version.as_deref(), version, "{id}");
        }
    }

    #[test]
    fn parse_rejects_what_is_not_an_https_secret_identifier() {
        for (id, needle) in [
            ("https://v.vault.azure.net/keys/k/1", "key identifier"),
            ("https://v.vault.azure.net/certificates/c", "same name"),
            ("http://v.vault.azure.net/secrets/x", "https"),
            ("ftp://v.vault.azure.net/secrets/x", "https"),
            ("https://v.vault.azure.net/secrets", "segments"),
            ("https://v.vault.azure.net/secrets/a/b/c", "segments"),
            ("https://v.vault.azure.net/secrets/", "empty"),
            ("not a url", "not a valid URL"),
        ] {
            let err = parse_secret_identifier(id).unwrap_err();
            let text = format!("{} {}", err.message, err.hint.unwrap_or_default());
            assert!(text.contains(needle), "{id}: {text}");
        }
    }

    #[test]
    fn suffix_matching_is_label_aligned() {
        let hosts = hosts();
        assert_eq!(
            hosts.suffix_of("a.vault.azure.net"),
            Some("vault.azure.net")
        );
        assert_eq!(
            hosts.suffix_of("A.VAULT.AZURE.NET"),
            Some("vault.azure.net")
        );
        assert_eq!(hosts.suffix_of("vault.azure.net"), None);
        assert_eq!(hosts.suffix_of("xvault.azure.net"), None);
        assert_eq!(
            hosts.suffix_of("kv.vault.localhost"),
            Some("vault.localhost")
        );
        assert_eq!(
            VaultHosts::new(&[".Vault.Example".into()]).default_domain(),
            "vault.example"
        );
    }

    #[test]
    fn allow_list_entries_name_a_host_and_a_port() {
        let origin = |host: &str, port| {
            Some(VaultOrigin {
                host: host.to_owned(),
                port,
            })
        };
        for (text, want) in [
            ("kv1.vault.azure.net", origin("kv1.vault.azure.net", 443)),
            (" KV1.Vault.Azure.Net ", origin("kv1.vault.azure.net", 443)),
            (
                "kv1.vault.azure.net:8443",
                origin("kv1.vault.azure.net", 8443),
            ),
            (
                "https://kv1.vault.azure.net",
                origin("kv1.vault.azure.net", 443),
            ),
            (
                "https://kv1.vault.azure.net/",
                origin("kv1.vault.azure.net", 443),
            ),
            (
                "HTTPS://kv1.vault.azure.net:443/",
                origin("kv1.vault.azure.net", 443),
            ),
            (
                "https://kv1.vault.localhost:47501",
                origin("kv1.vault.localhost", 47501),
            ),
            ("http://kv1.vault.azure.net", None),
            ("https://kv1.vault.azure.net/secrets/x", None),
            ("https://u@kv1.vault.azure.net", None),
            ("kv1.vault.azure.net:0", None),
            ("kv1.vault.azure.net:99999", None),
            ("kv1.vault.azure.net:", None),
            ("example.com", None),
            ("vault.azure.net", None),
            ("a.b.vault.azure.net", None),
            ("", None),
        ] {
            assert_eq!(parse_vault_origin(text, &hosts()), want, "{text:?}");
        }
        let entry = parse_vault_origin("kv1.vault.azure.net:8443", &hosts()).unwrap();
        assert!(entry.admits(&secret("https://kv1.vault.azure.net:8443", "x", None)));
        assert!(!entry.admits(&secret("https://kv1.vault.azure.net", "x", None)));
        assert_eq!(entry.to_string(), "kv1.vault.azure.net:8443");
        let entry = parse_vault_origin("kv1.vault.azure.net", &hosts()).unwrap();
        assert!(entry.admits(&secret("https://kv1.vault.azure.net", "x", None)));
        assert!(!entry.admits(&secret("https://kv1.vault.azure.net:8443", "x", None)));
        assert_eq!(entry.to_string(), "kv1.vault.azure.net");
    }

    #[test]
    fn dedupe_key_ignores_case() {
        let a = secret("https://v.vault.azure.net", "Db", Some("ABC"));
        let b = secret("https://V.vault.azure.net", "db", Some("abc"));
        assert_eq!(a.key(), b.key());
        assert_eq!(a.vault_host(), "v.vault.azure.net");
        assert_eq!(
            secret("https://v.vault.localhost:8443", "x", None).vault_host(),
            "v.vault.localhost"
        );
    }
}
