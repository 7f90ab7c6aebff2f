//! Azure App Configuration as a source: a store's key-values become variables
//! (`[app_configuration]` in the manifest, `--app-config`), its Key Vault references secrets of
//! the run (docs/protocol.md §8).
//!
//! - [`Store`]: what a run reads — the endpoint (only hosts under the App Configuration suffixes,
//!   built in or added with `--app-config-suffix`: a token goes nowhere else), the selectors or a
//!   snapshot, the prefixes to trim, how names and values are made, and how kvrun authenticates
//!   (Entra ID through the credential chain, scope from the host; or an access key);
//! - [`client`]: the list requests, every page followed on the store's own origin, retried as
//!   every request of kvrun is ([`crate::vault::retry`]);
//! - [`hmac`]: access keys, signed exactly as the service verifies them;
//! - [`expand`]: the listed key-values into the plan, between the manifest's `[env]` and the
//!   `.env` files.
//!
//! Names ([`variable_name`]): the longest matching `trim_prefix` is removed (as the JS provider
//! does), `:` becomes `__` (what .NET reads back as `:`), then the one generated-name rule of
//! [`crate::names`]; `upper_snake` upper-cases the result. Values by content type
//! ([`Content::of`]): a Key Vault reference is a secret of the run; JSON is kept as it is or
//! flattened on request; feature flags are left out unless asked for; everything else is a plain
//! string, never parsed for references (the store says by content type what is one).

pub mod client;
pub mod expand;
pub mod hmac;

use std::fmt;
use std::sync::Arc;

use crate::source::Location;

/// What listing one store gave: its key-values, or every selector that failed and why.
pub type Listing = Result<client::Listed, Vec<(String, crate::error::Problem)>>;

/// What reading one `@Microsoft.AppConfiguration(…)` key-value gave (`None`: no such key).
pub type Lookup = Result<Option<client::Item>, crate::error::Problem>;

/// The REST API version kvrun speaks: page `ETag`s (from 2023-10-01) and tag filters.
pub const API_VERSION: &str = "2023-11-01";

/// The App Configuration host suffixes and the Entra audience of each cloud.
const BUILT_IN: [(&str, &str); 4] = [
    ("azconfig.io", PUBLIC_AUDIENCE),
    ("appconfig.azure.com", PUBLIC_AUDIENCE),
    ("azconfig.azure.us", "https://appconfig.azure.us"),
    ("azconfig.azure.cn", "https://appconfig.azure.cn"),
];
const PUBLIC_AUDIENCE: &str = "https://appconfig.azure.com";

/// The connection string variable the Azure SDKs' samples read.
pub const CONNECTION_STRING_VARIABLE: &str = "AZURE_APPCONFIG_CONNECTION_STRING";

/// Which hosts are App Configuration stores, and the audience of a token for each.
#[derive(Debug, Clone, Default)]
pub struct StoreHosts {
    /// `--app-config-suffix`, normalised (lower case, no leading dot).
    added: Vec<String>,
    /// `--app-config-audience`: the audience for hosts under an added suffix.
    audience: Option<String>,
}

impl StoreHosts {
    #[must_use]
    pub fn new(added: &[String], audience: Option<String>) -> Self {
        Self {
            added: added
                .iter()
                .map(|s| s.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
            audience: audience.map(|a| a.trim_end_matches('/').to_owned()),
        }
    }

    /// The Entra audience for `host` when it is a store host (`{store}.{suffix}`, one label
    /// before a known suffix), else `None`.
    #[must_use]
    pub fn audience(&self, host: &str) -> Option<String> {
        let host = host.to_ascii_lowercase();
        let under = |suffix: &str| {
            host.strip_suffix(suffix)
                .and_then(|rest| rest.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.'))
        };
        if let Some((_, audience)) = BUILT_IN.iter().find(|(suffix, _)| under(suffix)) {
            return Some((*audience).to_owned());
        }
        self.added.iter().any(|s| under(s)).then(|| {
            self.audience
                .clone()
                .unwrap_or_else(|| PUBLIC_AUDIENCE.to_owned())
        })
    }

    /// The endpoint `text` (`https://{store}.{suffix}[:port][/]`), if it names a store host.
    ///
    /// # Errors
    /// Not `https://` and a host under an App Configuration suffix, or a path, query, fragment
    /// or user name after the host.
    pub fn endpoint(&self, text: &str) -> Result<Endpoint, String> {
        let url = url::Url::parse(text.trim())
            .map_err(|e| format!("'{}' is not a URL ({e})", crate::http::untrusted(text)))?;
        if url.scheme() != "https" {
            return Err(format!(
                "'{}': an App Configuration endpoint is https://",
                crate::http::untrusted(text)
            ));
        }
        if !url.username().is_empty()
            || url.password().is_some()
            || !matches!(url.path(), "" | "/")
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(format!(
                "'{}': write the endpoint alone, https://NAME.azconfig.io",
                crate::http::untrusted(text)
            ));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let Some(audience) = self.audience(&host) else {
            return Err(format!(
                "{host} is not an App Configuration host (*.azconfig.io, *.appconfig.azure.com, \
                 *.azconfig.azure.us, *.azconfig.azure.cn{}); kvrun sends its token to no other",
                self.added
                    .iter()
                    .fold(String::new(), |list, s| format!("{list}, *.{s}"))
            ));
        };
        Ok(Endpoint {
            name: host.split('.').next().unwrap_or_default().to_owned(),
            port: url.port_or_known_default().unwrap_or(443),
            host,
            audience,
        })
    }
}

/// A store's endpoint, checked: `https://{host}:{port}`, and the audience of its tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Lower case.
    pub host: String,
    pub port: u16,
    /// The first label of the host: the store's name, in locations (`appconfig:NAME/key`).
    pub name: String,
    /// The Entra audience (scope without `/.default`).
    pub audience: String,
}

impl Endpoint {
    /// The origin, `https://host` or `https://host:port`.
    #[must_use]
    pub fn origin(&self) -> String {
        if self.port == 443 {
            format!("https://{}", self.host)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }

    /// The scope a token for this store is asked for.
    #[must_use]
    pub fn scope(&self) -> String {
        format!("{}/.default", self.audience)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin())
    }
}

/// The labels a selector asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    /// Key-values without a label (`label=%00`): a selector that names none, as the providers.
    None,
    /// The service's label filter as written: `*` (any), `prod`, `prod*`, `a,b`.
    Filter(String),
}

/// Which key-values to read: a key filter (`*`, `app:*`, `a,b`) and a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub key: String,
    pub label: Label,
}

impl Selector {
    /// A selector from its parts; an empty label is no label.
    #[must_use]
    pub fn new(key: &str, label: Option<&str>) -> Self {
        Self {
            key: key.to_owned(),
            label: match label {
                None | Some("") => Label::None,
                Some(filter) => Label::Filter(filter.to_owned()),
            },
        }
    }

    /// `KEYFILTER[@LABEL]` (`--app-config-select`): the label after the last `@`.
    ///
    /// # Errors
    /// An empty key filter.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (key, label) = match text.rsplit_once('@') {
            Some((key, label)) => (key, Some(label)),
            None => (text, None),
        };
        if key.is_empty() {
            return Err(format!(
                "'{text}': a selector is KEYFILTER[@LABEL], such as 'myapp:*@prod'"
            ));
        }
        Ok(Self::new(key, label))
    }

    /// The default selection: every key with no label.
    #[must_use]
    pub fn everything_unlabelled() -> Self {
        Self::new("*", None)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.label {
            Label::None => write!(f, "key={} (no label)", self.key),
            Label::Filter(label) => write!(f, "key={} label={label}", self.key),
        }
    }
}

/// What a store's list reads: selectors (the later wins for a key), or one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Select(Vec<Selector>),
    Snapshot(String),
}

/// How a store's JSON values become variables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Json {
    /// The value as it is, one variable.
    #[default]
    Keep,
    /// One variable per leaf, `key__prop__0`, as .NET flattens JSON into `key:prop:0`.
    Flatten,
}

/// How kvrun authenticates to a store.
#[derive(Clone)]
pub enum Auth {
    /// A token from the credential chain, for the endpoint's audience, in the credential's own
    /// tenant.
    Entra,
    /// An access key of the store (a connection string's `Id` and `Secret`).
    AccessKey(Arc<hmac::AccessKey>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Entra => f.write_str("Entra"),
            Self::AccessKey(key) => write!(f, "AccessKey({key:?})"),
        }
    }
}

/// A store a run reads, and how.
#[derive(Debug, Clone)]
pub struct Store {
    pub endpoint: Endpoint,
    pub selection: Selection,
    /// Prefixes removed from keys; the longest that matches.
    pub trim: Vec<String>,
    /// Upper-case generated names (`Db__Host` → `DB__HOST`).
    pub upper_snake: bool,
    pub json: Json,
    /// Feature flags (`.appconfig.featureflag/NAME`) as `FeatureManagement__NAME=true|false`.
    pub feature_flags: bool,
    pub auth: Auth,
    /// Where the store is declared (`kvrun.toml:4`, `--app-config`).
    pub declared: Location,
}

impl Store {
    /// The label of failures and `check` rows for the store's list: `appconfig:NAME`.
    #[must_use]
    pub fn label(&self) -> String {
        format!("appconfig:{}", self.endpoint.name)
    }
}

/// What the command line and the environment say about App Configuration (`--app-config*`,
/// `AZURE_APPCONFIG_CONNECTION_STRING`), before the manifest is read.
#[derive(Default)]
pub struct Options {
    pub endpoint: Option<String>,
    pub select: Vec<String>,
    pub snapshot: Option<String>,
    pub trim: Vec<String>,
    pub upper_snake: bool,
    pub flatten_json: bool,
    pub feature_flags: bool,
    pub hosts: StoreHosts,
    /// `AZURE_APPCONFIG_CONNECTION_STRING`, from kvrun's environment snapshot.
    pub connection_string: Option<zeroize::Zeroizing<String>>,
    /// `--app-config-connection-string-file`.
    pub connection_string_file: Option<std::path::PathBuf>,
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("appconfig::Options")
            .field("endpoint", &self.endpoint)
            .field("select", &self.select)
            .field("snapshot", &self.snapshot)
            .field("trim", &self.trim)
            .field("hosts", &self.hosts)
            .field(
                "connection_string",
                &self.connection_string.as_ref().map(|_| "[set]"),
            )
            .field("connection_string_file", &self.connection_string_file)
            .finish_non_exhaustive()
    }
}

/// The store a run reads, if any: the command line's options over the manifest's
/// `[app_configuration]`, field by field. A store is read only when an endpoint is named (a
/// connection string alone reads nothing: an app may use one itself).
///
/// # Errors
/// An endpoint that is not a store host, a bad selector, a connection string that cannot be read
/// or names another store.
pub fn store(
    options: &Options,
    manifest: Option<&(crate::source::manifest::AppConfiguration, Location)>,
) -> Result<Option<Store>, crate::error::Error> {
    use crate::error::Error;
    let table = manifest.map(|(table, _)| table);
    let (endpoint, declared) = match (&options.endpoint, manifest) {
        (Some(endpoint), _) => (endpoint.clone(), Location::Flag("--app-config")),
        (None, Some((table, location))) => match &table.endpoint {
            Some(endpoint) => (endpoint.clone(), location.clone()),
            None => {
                return Err(Error::bad_input(
                    location.to_string(),
                    "app_configuration: 'endpoint' is missing (https://NAME.azconfig.io)",
                ));
            }
        },
        (None, None) => return Ok(None),
    };
    let at = declared.to_string();
    let endpoint = options
        .hosts
        .endpoint(&endpoint)
        .map_err(|message| Error::BadInput {
            location: at.clone(),
            message,
            hint: Some("add the store's domain with --app-config-suffix if it is one".into()),
        })?;
    let selection = if !options.select.is_empty() {
        let selectors = options
            .select
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| {
                Selector::parse(s).map_err(|m| Error::Usage(format!("--app-config-select {m}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Selection::Select(selectors)
    } else if let Some(snapshot) = options.snapshot.clone() {
        Selection::Snapshot(snapshot)
    } else if let Some(select) = table.and_then(|t| t.select.as_ref()) {
        Selection::Select(
            select
                .iter()
                .map(|s| Selector::new(&s.key, s.label.as_deref()))
                .collect(),
        )
    } else if let Some(snapshot) = table.and_then(|t| t.snapshot.clone()) {
        Selection::Snapshot(snapshot)
    } else {
        Selection::Select(vec![Selector::everything_unlabelled()])
    };
    if matches!(&selection, Selection::Select(s) if s.is_empty()) {
        return Err(Error::bad_input(at, "app_configuration: 'select' is empty"));
    }
    let trim = if options.trim.is_empty() {
        table.map(|t| t.trim_prefix.clone()).unwrap_or_default()
    } else {
        options.trim.clone()
    };
    Ok(Some(Store {
        auth: auth(options, &endpoint)?,
        endpoint,
        selection,
        trim,
        upper_snake: options.upper_snake || table.is_some_and(|t| t.upper_snake),
        json: if options.flatten_json || table.is_some_and(|t| t.flatten_json) {
            Json::Flatten
        } else {
            Json::Keep
        },
        feature_flags: options.feature_flags || table.is_some_and(|t| t.feature_flags),
        declared,
    }))
}

/// An access key when a connection string is given (the file first), else Entra ID.
fn auth(options: &Options, endpoint: &Endpoint) -> Result<Auth, crate::error::Error> {
    use crate::error::Error;
    let (text, source) = match &options.connection_string_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::MissingFile {
                path: path.clone(),
                message: format!("cannot read the App Configuration connection string: {e}"),
            })?;
            (zeroize::Zeroizing::new(text), path.display().to_string())
        }
        None => match &options.connection_string {
            Some(text) => (text.clone(), CONNECTION_STRING_VARIABLE.to_owned()),
            None => return Ok(Auth::Entra),
        },
    };
    let key = hmac::AccessKey::from_connection_string(&text)
        .map_err(|message| Error::bad_input(source.clone(), message))?;
    let named = options.hosts.endpoint(&key.endpoint).ok();
    if named.as_ref().map(Endpoint::origin) != Some(endpoint.origin()) {
        return Err(Error::bad_input(
            source,
            format!(
                "the connection string is for {}, not for the store {endpoint}",
                named.map_or_else(|| "another endpoint".to_owned(), |e| e.origin())
            ),
        ));
    }
    Ok(Auth::AccessKey(Arc::new(key)))
}

/// One key-value named by App Service's syntax in a variable,
/// `@Microsoft.AppConfiguration(Endpoint=https://x.azconfig.io; Key=k; Label=l)`: read with one
/// GET of that key.
#[derive(Debug, Clone)]
pub struct SettingRef {
    pub endpoint: Endpoint,
    pub key: String,
    /// `None`: the key-value with no label.
    pub label: Option<String>,
    /// Entra ID, or the access key when the connection string is this store's (set once the
    /// plan is made).
    pub auth: Auth,
}

impl SettingRef {
    /// What makes two the same (one GET for both).
    #[must_use]
    pub fn key(&self) -> (String, String, Option<String>) {
        (self.endpoint.origin(), self.key.clone(), self.label.clone())
    }

    /// `appconfig:NAME/KEY[@LABEL]`, as origins show it.
    #[must_use]
    pub fn shown(&self) -> String {
        Location::AppConfig {
            store: self.endpoint.name.clone(),
            key: self.key.clone(),
            label: self.label.clone(),
        }
        .to_string()
    }

    /// A store that reads just this key, for the client.
    #[must_use]
    pub fn store(&self) -> Store {
        Store {
            endpoint: self.endpoint.clone(),
            selection: Selection::Select(Vec::new()),
            trim: Vec::new(),
            upper_snake: false,
            json: Json::Keep,
            feature_flags: false,
            auth: self.auth.clone(),
            declared: Location::Flag("@Microsoft.AppConfiguration"),
        }
    }
}

const APP_SERVICE_PREFIX: &str = "@Microsoft.AppConfiguration";

/// `text` as App Service's `@Microsoft.AppConfiguration(…)`, when it starts so (the whole value).
///
/// # Errors
/// A malformed body, a missing `Endpoint` or `Key`, an endpoint that is not a store host.
#[must_use]
pub fn setting_reference(text: &str, hosts: &StoreHosts) -> Option<Result<SettingRef, String>> {
    let trimmed = text.trim();
    let head = trimmed.get(..APP_SERVICE_PREFIX.len())?;
    if !head.eq_ignore_ascii_case(APP_SERVICE_PREFIX) {
        return None;
    }
    Some(parse_setting_reference(
        &trimmed[APP_SERVICE_PREFIX.len()..],
        hosts,
    ))
}

fn parse_setting_reference(rest: &str, hosts: &StoreHosts) -> Result<SettingRef, String> {
    let body = rest
        .trim_start()
        .strip_prefix('(')
        .and_then(|b| b.strip_suffix(')'))
        .ok_or("write @Microsoft.AppConfiguration(…) with its parentheses around the whole rest of the value")?;
    let (mut endpoint, mut key, mut label) = (None, None, None);
    for part in body.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=').ok_or_else(|| {
            format!("'{part}' in @Microsoft.AppConfiguration(…) is not a Key=Value pair")
        })?;
        let slot = match name.trim().to_ascii_lowercase().as_str() {
            "endpoint" => &mut endpoint,
            "key" => &mut key,
            "label" => &mut label,
            other => {
                return Err(format!(
                    "unknown key '{other}' in @Microsoft.AppConfiguration(…): use Endpoint=…; Key=…[; Label=…]"
                ));
            }
        };
        if slot.replace(value.trim().to_owned()).is_some() {
            return Err(format!(
                "'{}' appears twice in @Microsoft.AppConfiguration(…)",
                name.trim()
            ));
        }
    }
    let endpoint =
        endpoint.ok_or("@Microsoft.AppConfiguration(…) needs Endpoint=https://NAME.azconfig.io")?;
    let key = key
        .filter(|k| !k.is_empty())
        .ok_or("@Microsoft.AppConfiguration(…) needs Key=…")?;
    Ok(SettingRef {
        endpoint: hosts.endpoint(&endpoint)?,
        key,
        label: label.filter(|l| !l.is_empty()),
        auth: Auth::Entra,
    })
}

/// The auth for a store a variable names: the access key when the connection string is that
/// store's, else Entra ID.
#[must_use]
pub fn auth_for(options: &Options, endpoint: &Endpoint) -> Auth {
    auth(options, endpoint).unwrap_or(Auth::Entra)
}

/// The key prefix of feature flags.
pub const FEATURE_FLAG_PREFIX: &str = ".appconfig.featureflag/";

/// What a key-value's content type says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    KeyVaultReference,
    FeatureFlag,
    Json,
    Text,
}

impl Content {
    /// The kind of a key-value, by its media type (compared case-insensitively, parameters
    /// ignored, as .NET compares it) and, for feature flags, its key.
    #[must_use]
    pub fn of(key: &str, content_type: Option<&str>) -> Self {
        let media = content_type
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if media == "application/vnd.microsoft.appconfig.keyvaultref+json" {
            return Self::KeyVaultReference;
        }
        if key.starts_with(FEATURE_FLAG_PREFIX)
            || media == "application/vnd.microsoft.appconfig.ff+json"
        {
            return Self::FeatureFlag;
        }
        match media.split_once('/') {
            Some(("application", subtype)) if subtype.split('+').any(|part| part == "json") => {
                Self::Json
            }
            _ => Self::Text,
        }
    }
}

/// The variable name for a store key: the longest matching prefix of `trim` removed, `:` → `__`,
/// then the generated-name rule ([`crate::names::variable_name`]); upper case when asked.
#[must_use]
pub fn variable_name(key: &str, trim: &[String], upper_snake: bool) -> String {
    let trimmed = trimmed(key, trim);
    let name = crate::names::variable_name("", &trimmed.replace(':', "__"));
    if upper_snake {
        name.to_ascii_uppercase()
    } else {
        name
    }
}

/// `key` without the longest prefix of `trim` it starts with.
#[must_use]
pub fn trimmed<'k>(key: &'k str, trim: &[String]) -> &'k str {
    trim.iter()
        .filter(|prefix| key.starts_with(prefix.as_str()))
        .max_by_key(|prefix| prefix.len())
        .map_or(key, |prefix| &key[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_trim_the_longest_prefix_and_turn_colons_into_double_underscores() {
        let trim = ["myapp:".to_owned(), "myapp:db:".to_owned()];
        assert_eq!(variable_name("myapp:db:Host", &trim, false), "Host");
        assert_eq!(variable_name("myapp:Db:Host", &trim, false), "Db__Host");
        assert_eq!(
            variable_name("Logging:LogLevel:Default", &[], false),
            "Logging__LogLevel__Default"
        );
        assert_eq!(variable_name("db.host", &[], false), "db_host");
        assert_eq!(variable_name("2fa", &[], false), "_2fa");
        assert_eq!(variable_name("myapp:Db:Host", &trim, true), "DB__HOST");
    }

    #[test]
    fn content_types_by_media_type_case_insensitively() {
        let kv = "application/vnd.microsoft.appconfig.keyvaultref+json;charset=utf-8";
        assert_eq!(Content::of("k", Some(kv)), Content::KeyVaultReference);
        assert_eq!(
            Content::of(
                "k",
                Some("Application/VND.microsoft.appconfig.KeyVaultRef+JSON")
            ),
            Content::KeyVaultReference
        );
        assert_eq!(
            Content::of(
                ".appconfig.featureflag/Beta",
                Some("application/vnd.microsoft.appconfig.ff+json;charset=utf-8")
            ),
            Content::FeatureFlag
        );
        assert_eq!(Content::of("k", Some("application/json")), Content::Json);
        assert_eq!(
            Content::of("k", Some("application/activity+json; charset=utf-8")),
            Content::Json
        );
        assert_eq!(Content::of("k", Some("text/plain")), Content::Text);
        assert_eq!(Content::of("k", Some("application/jsonx")), Content::Text);
        assert_eq!(Content::of("k", None), Content::Text);
    }

    #[test]
    fn store_hosts_and_their_audiences() {
        let hosts = StoreHosts::new(&[".AzConfig.localhost".to_owned()], None);
        assert_eq!(
            hosts.audience("cfg.azconfig.io").as_deref(),
            Some("https://appconfig.azure.com")
        );
        assert_eq!(
            hosts.audience("CFG.azconfig.azure.us").as_deref(),
            Some("https://appconfig.azure.us")
        );
        assert_eq!(
            hosts.audience("cfg.azconfig.azure.cn").as_deref(),
            Some("https://appconfig.azure.cn")
        );
        assert_eq!(
            hosts.audience("cfg.azconfig.localhost").as_deref(),
            Some("https://appconfig.azure.com")
        );
        assert_eq!(hosts.audience("a.b.azconfig.io"), None);
        assert_eq!(hosts.audience("azconfig.io"), None);
        assert_eq!(hosts.audience("cfg.azconfig.io.evil.com"), None);
        let own = StoreHosts::new(
            &["stack.local".to_owned()],
            Some("https://ac.stack/".into()),
        );
        assert_eq!(
            own.audience("cfg.stack.local").as_deref(),
            Some("https://ac.stack")
        );
        let endpoint = hosts.endpoint("https://Cfg.azconfig.io/").unwrap();
        assert_eq!(endpoint.origin(), "https://cfg.azconfig.io");
        assert_eq!(endpoint.name, "cfg");
        assert_eq!(endpoint.scope(), "https://appconfig.azure.com/.default");
        for bad in [
            "http://cfg.azconfig.io",
            "https://cfg.example.com",
            "https://cfg.azconfig.io/kv",
            "https://user@cfg.azconfig.io",
            "https://cfg.azconfig.io?x=1",
        ] {
            assert!(hosts.endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn app_service_references_to_a_key() {
        let hosts = StoreHosts::default();
        let setting = setting_reference(
            " @Microsoft.AppConfiguration(Endpoint=https://cfg.azconfig.io; Key=myapp:Db:Host; Label=prod) ",
            &hosts,
        )
        .unwrap()
        .unwrap();
        assert_eq!(setting.key, "myapp:Db:Host");
        assert_eq!(setting.label.as_deref(), Some("prod"));
        assert_eq!(setting.shown(), "appconfig:cfg/myapp:Db:Host@prod");
        let unlabelled = setting_reference(
            "@microsoft.appconfiguration(endpoint=https://cfg.azconfig.io;key=k)",
            &hosts,
        )
        .unwrap()
        .unwrap();
        assert_eq!(unlabelled.label, None);
        assert!(setting_reference("https://cfg.azconfig.io", &hosts).is_none());
        for (bad, says) in [
            ("@Microsoft.AppConfiguration(Key=k)", "needs Endpoint"),
            (
                "@Microsoft.AppConfiguration(Endpoint=https://cfg.azconfig.io)",
                "needs Key",
            ),
            (
                "@Microsoft.AppConfiguration(Endpoint=https://evil.example; Key=k)",
                "not an App Configuration host",
            ),
            (
                "@Microsoft.AppConfiguration(Endpoint=https://cfg.azconfig.io; Key=k; Secret=x)",
                "unknown key 'secret'",
            ),
            ("@Microsoft.AppConfiguration Endpoint=x", "parentheses"),
        ] {
            let err = setting_reference(bad, &hosts).unwrap().unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn selectors_from_the_command_line() {
        assert_eq!(
            Selector::parse("myapp:*@prod").unwrap(),
            Selector::new("myapp:*", Some("prod"))
        );
        assert_eq!(Selector::parse("shared:*").unwrap().label, Label::None);
        assert_eq!(Selector::parse("a@b@*").unwrap().key, "a@b");
        assert_eq!(Selector::parse("x@").unwrap().label, Label::None);
        assert!(Selector::parse("@prod").is_err());
    }
}
