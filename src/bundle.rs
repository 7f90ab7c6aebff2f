//! Bundles: one secret as many variables (`[[env_from]]`, `--env-from`, `KVRUN_ENV_FROM`), as
//! Kubernetes' `envFrom` does for a `ConfigMap`.
//!
//! A bundle's value is a JSON object (the default format) or a `.env` file (`format = "dotenv"`).
//! JSON: each top-level key becomes a variable; nested objects and arrays are flattened with `__`
//! (`{"db":{"host":"x"}}` → `db__host`, `{"items":["a"]}` → `items__0`), the separator .NET's
//! configuration reads back as `:`. A string leaf is used as it is, a number or boolean as its
//! JSON text as written; a `null` leaf or an empty object or array gives no variable. dotenv: the
//! value is read by kvrun's own `.env` reader ([`crate::source::dotenv`], the one that agrees
//! with npm `dotenv`), and a reference in it is resolved like any other, one level deep: it names
//! a secret, never another bundle. Every name goes through [`crate::names`] (one rule for all
//! generated names) after the bundle's prefix; two keys that give one name are an error.
//!
//! Bundles are the lowest layer ([`expand`]): any variable named explicitly anywhere — the
//! manifest's `[env]`, a `.env` file, the environment — wins over a bundle's (a warning names it),
//! and of two bundles the later declared wins (the manifest's in order, then `--env-from` in
//! order). A bundle's names are known only once it is fetched, so a bundle is always fetched, and
//! its values are values: `--literal` and `--no-resolve-env` do not apply to them.
//!
//! Written by hand: flattening follows .NET's JSON configuration provider (`__` for its `:`),
//! which no crate implements, and it keeps every leaf's text as the secret holds it (see
//! [`crate::field`] for why not `serde_json::Value`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::error::{Failure, FailureClass, Problem};
use crate::names::{self, Names};
use crate::plan::{self, Plan, Value};
use crate::reference::{self, Classified, Reference, SecretRef, Shown, VaultHosts};
use crate::resolve::Outcome;
use crate::source::{FileSpec, Location, dotenv};

/// How a bundle's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// A JSON object, flattened.
    #[default]
    Json,
    /// A `.env` file.
    Dotenv,
}

impl Format {
    /// `json` or `dotenv`.
    ///
    /// # Errors
    /// Any other word.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "json" => Ok(Self::Json),
            "dotenv" => Ok(Self::Dotenv),
            other => Err(format!(
                "'{other}' is not a bundle format: write \"json\" or \"dotenv\""
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Json => "json",
            Self::Dotenv => "dotenv",
        })
    }
}

/// One bundle as declared: a manifest `[[env_from]]` table, or one `--env-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFrom {
    pub secret: SecretRef,
    /// Put before every name; a valid name itself (or empty).
    pub prefix: String,
    pub format: Format,
    /// A bundle that does not exist gives no variables (a warning) instead of failing the run.
    pub optional: bool,
    /// Where it is declared.
    pub location: Location,
}

impl EnvFrom {
    /// How a bundle is named in failures and logs: `env_from`, or `env_from APP_*` with a prefix.
    #[must_use]
    pub fn label(&self) -> String {
        if self.prefix.is_empty() {
            "env_from".to_owned()
        } else {
            format!("env_from {}*", self.prefix)
        }
    }
}

/// A bundle's prefix: empty, or a name by [`names::is_plain_name`].
///
/// # Errors
/// Anything else.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || names::is_plain_name(prefix) {
        Ok(())
    } else {
        Err(format!(
            "prefix '{prefix}' is not a variable name: letters, digits and _, not starting with a digit"
        ))
    }
}

/// One `--env-from` (or `KVRUN_ENV_FROM` item): `[PREFIX=][FORMAT:]REFERENCE`, e.g.
/// `APP_=dotenv:https://myvault.vault.azure.net/secrets/app-env`. Unambiguous: a prefix is a
/// plain name followed by `=` (no reference starts so), and `json:` or `dotenv:` cannot begin a
/// reference (`https:`, `@Microsoft.KeyVault(`, a bare name without `:`). A bare secret name needs
/// the manifest's `vault`.
///
/// # Errors
/// A bad prefix or format, a reference that is not one, one with `?field=`.
pub fn parse_flag(
    text: &str,
    default_vault: Option<&str>,
    hosts: &VaultHosts,
) -> Result<EnvFrom, String> {
    let (prefix, rest) = match text.split_once('=') {
        Some((prefix, rest)) if names::is_plain_name(prefix) => (prefix, rest),
        _ => ("", text),
    };
    let (format, reference) = match rest.split_once(':') {
        Some((format @ ("json" | "dotenv"), reference)) => (Format::parse(format)?, reference),
        _ => (Format::Json, rest),
    };
    let secret = whole_secret(reference, default_vault, hosts)?;
    Ok(EnvFrom {
        secret,
        prefix: prefix.to_owned(),
        format,
        optional: false,
        location: Location::Flag("--env-from"),
    })
}

/// The secret a bundle names: a bare name in `default_vault`, or any reference form, whole.
///
/// # Errors
/// Not a reference; a template; a `?field=`.
pub fn whole_secret(
    text: &str,
    default_vault: Option<&str>,
    hosts: &VaultHosts,
) -> Result<SecretRef, String> {
    if reference::is_valid_secret_name(text) {
        let vault_url = default_vault.ok_or_else(|| {
            format!("'{text}' is a bare secret name, but no default vault is set (the manifest's vault = \"https://…\"); write the secret's identifier")
        })?;
        return Ok(SecretRef {
            vault_url: vault_url.to_owned(),
            name: text.to_owned(),
            version: None,
        });
    }
    match reference::classify(text, hosts) {
        Ok(Classified::Reference(Reference { secret, pick: None })) => Ok(secret),
        Ok(Classified::Reference(_)) => {
            Err("a bundle takes a whole secret: ?field= and ?part= do not apply".to_owned())
        }
        Ok(Classified::Template(_)) => {
            Err("a bundle names one secret, not a {{ }} template".to_owned())
        }
        Ok(Classified::Literal) => Err(format!(
            "'{text}' is not a secret name or a Key Vault reference"
        )),
        Err(e) => Err(e.message),
    }
}

/// Why a bundle's value gives no variables. Never holds any part of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    NotJson,
    /// Valid JSON, but an array, string, number, boolean or null at the top.
    NotObject,
    /// Two keys give one name (the message names both).
    Collision(String),
    /// A key that gives an empty name.
    EmptyName(String),
    /// A `.env` value that is not valid UTF-8, at this line.
    DotenvUtf8(usize),
    /// A `.env` value that looks like a reference but is not a valid one, at this line.
    BadReference {
        line: usize,
        key: String,
    },
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson => f.write_str(
                "the bundle's value is not JSON (for a .env file, write format = \"dotenv\")",
            ),
            Self::NotObject => f.write_str("the bundle's JSON value is not an object of settings"),
            Self::Collision(message) => f.write_str(message),
            Self::EmptyName(key) => write!(f, "key '{key}' gives an empty variable name"),
            Self::DotenvUtf8(line) => write!(f, "line {line} of the bundle is not valid UTF-8"),
            Self::BadReference { line, key } => write!(
                f,
                "line {line} of the bundle: {key} looks like a Key Vault reference but is not a valid one"
            ),
        }
    }
}

/// One setting of a bundle: its variable name, where in the bundle (a dotenv line), its value.
pub struct Setting {
    pub name: String,
    pub line: Option<usize>,
    pub value: Zeroizing<String>,
}

/// The settings of a bundle's `value`, in the order written.
///
/// # Errors
/// A value that is not of the format, two keys with one name.
pub fn settings(value: &str, format: Format, prefix: &str) -> Result<Vec<Setting>, Unfit> {
    let mut names = Names::default();
    let mut out = Vec::new();
    let mut add = |key: &str, shown: &str, line, value| {
        let name = names::variable_name(prefix, key);
        if name.is_empty() {
            return Err(Unfit::EmptyName(shown.to_owned()));
        }
        names.claim(&name, shown).map_err(Unfit::Collision)?;
        out.push(Setting { name, line, value });
        Ok(())
    };
    match format {
        Format::Json => {
            let raw: &RawValue = serde_json::from_str(value).map_err(|_| Unfit::NotJson)?;
            if !raw.get().starts_with('{') {
                return Err(Unfit::NotObject);
            }
            let mut leaves = Vec::new();
            flatten(raw, &mut Vec::new(), &mut leaves).map_err(|()| Unfit::NotJson)?;
            for (path, leaf) in leaves {
                let key = path.join("__");
                let shown = match path.as_slice() {
                    [one] => one.clone(),
                    _ => path.iter().fold(String::new(), |mut pointer, key| {
                        pointer.push('/');
                        pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                        pointer
                    }),
                };
                add(&key, &shown, None, leaf)?;
            }
        }
        Format::Dotenv => {
            let parsed = dotenv::parse(value.as_bytes()).map_err(|e| Unfit::DotenvUtf8(e.line))?;
            for entry in parsed.entries {
                add(
                    &entry.key,
                    &entry.key,
                    Some(entry.line),
                    Zeroizing::new(entry.value),
                )?;
            }
        }
    }
    Ok(out)
}

/// Every leaf under `raw`, with its key path. `Err` only for text `serde_json` validated but
/// cannot split again (never expected).
pub(crate) fn flatten(
    raw: &RawValue,
    path: &mut Vec<String>,
    leaves: &mut Vec<(Vec<String>, Zeroizing<String>)>,
) -> Result<(), ()> {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'{') => {
            let Members(members) = serde_json::from_str(text).map_err(|_| ())?;
            for (key, value) in members {
                path.push(key);
                flatten(value, path, leaves)?;
                path.pop();
            }
        }
        Some(b'[') => {
            let Elements(elements) = serde_json::from_str(text).map_err(|_| ())?;
            for (i, value) in elements.into_iter().enumerate() {
                path.push(i.to_string());
                flatten(value, path, leaves)?;
                path.pop();
            }
        }
        Some(b'n') => {}
        Some(b'"') => {
            let string: String = serde_json::from_str(text).map_err(|_| ())?;
            leaves.push((path.clone(), Zeroizing::new(string)));
        }
        _ => leaves.push((path.clone(), Zeroizing::new(text.to_owned()))),
    }
    Ok(())
}

/// An object's members in the order written (a map type would sort or dedupe them).
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Ordered)
    }
}

/// An array's elements.
struct Elements<'a>(Vec<&'a RawValue>);

impl<'de> serde::Deserialize<'de> for Elements<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Each;
        impl<'de> Visitor<'de> for Each {
            type Value = Elements<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut elements = Vec::new();
                while let Some(element) = seq.next_element::<&'de RawValue>()? {
                    elements.push(element);
                }
                Ok(Elements(elements))
            }
        }
        deserializer.deserialize_seq(Each)
    }
}

/// What placing a bundle's variables needs to know (owned: a `--watch` check keeps it).
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub hosts: VaultHosts,
    /// `--file-var` names (a bundle's variable may be one), and how their files are written.
    pub file_vars: Vec<String>,
    pub file_spec: FileSpec,
}

impl Context {
    pub(crate) fn new(sources: &crate::settings::Sources) -> Context {
        Context {
            hosts: sources.hosts.clone(),
            file_vars: sources.file_vars.clone(),
            file_spec: sources.file_spec.clone(),
        }
    }
}

/// The plan with its bundles' variables in place, below every explicitly named variable, once the
/// bundles have been fetched (`outcomes`: one per secret of `plan`). A dotenv bundle's references
/// become secrets of the plan to fetch next (those not fetched already). A bundle that failed, or
/// whose value is unfit, is a failure of the plan ([`Plan::refused`]): nothing starts.
pub(crate) fn expand(mut plan: Plan, outcomes: &[Outcome], context: &Context) -> Plan {
    if plan.bundles.is_empty() {
        return plan;
    }
    let explicit: HashMap<OsString, Location> = plan
        .vars
        .iter()
        .map(|v| (v.name.clone(), v.location.clone()))
        .collect();
    let mut layer = Layer {
        keys: plan
            .secrets
            .iter()
            .enumerate()
            .map(|(i, s)| (s.key(), i))
            .collect(),
        vars: Vec::new(),
        placed: HashMap::new(),
    };
    let mut bundles = std::mem::take(&mut plan.bundles);
    for bundle in &mut bundles {
        let from = &bundle.declared;
        let shown = Shown(&from.secret, None).to_string();
        let settings = match settings_of(from, &shown, &outcomes[bundle.index]) {
            None => continue,
            Some(Ok(settings)) => settings,
            Some(Err(problem)) => {
                plan.refused.push(bundle_failure(from, &shown, problem));
                continue;
            }
        };
        for setting in settings {
            bundle.names.push(setting.name.clone());
            let location = Location::Bundle {
                secret: from.secret.name.clone(),
                line: setting.line,
                declared: Box::new(from.location.clone()),
            };
            if let Some(winner) = explicit.get(OsString::from(&setting.name).as_os_str()) {
                tracing::warn!(
                    "{location}: {} is set at {winner}, which wins over the bundle",
                    setting.name
                );
                continue;
            }
            let value = match from.format {
                Format::Json => Value::Bundled {
                    index: bundle.index,
                    value: setting.value,
                },
                Format::Dotenv => {
                    match layer.dotenv_value(
                        bundle.index,
                        &setting,
                        &context.hosts,
                        &mut plan.secrets,
                    ) {
                        Ok(value) => value,
                        Err(unfit) => {
                            let problem = Problem::new(FailureClass::BadValue, unfit.to_string());
                            plan.refused.push(bundle_failure(from, &shown, problem));
                            continue;
                        }
                    }
                }
            };
            let file = context
                .file_vars
                .contains(&setting.name)
                .then(|| context.file_spec.clone());
            if let Some(problem) = plan::pkcs12_misplaced(&value, file.is_some()) {
                let problem = Problem::new(
                    FailureClass::BadValue,
                    format!("{}: {problem}", setting.name),
                );
                plan.refused.push(bundle_failure(from, &shown, problem));
                continue;
            }
            layer.place(plan::Var {
                name: setting.name.into(),
                value,
                location,
                file,
            });
        }
    }
    plan.bundles = bundles;
    layer.vars.append(&mut plan.vars);
    plan.vars = layer.vars;
    plan
}

/// The settings of a fetched bundle; `None` for an optional bundle that does not exist (a
/// warning).
fn settings_of(
    from: &EnvFrom,
    shown: &str,
    outcome: &Outcome,
) -> Option<Result<Vec<Setting>, Problem>> {
    match outcome {
        Err(e) if from.optional && e.problem.class == FailureClass::NotFound => {
            tracing::warn!(
                "{}: optional bundle {shown} not used: {}",
                from.location,
                e.problem
            );
            None
        }
        Err(e) => Some(Err(e.problem.clone())),
        Ok(value) => Some(
            settings(value.expose(), from.format, &from.prefix)
                .map_err(|unfit| Problem::new(FailureClass::BadValue, unfit.to_string())),
        ),
    }
}

/// The bundles' variables as they are placed, and the plan's secrets by key.
struct Layer {
    keys: HashMap<(String, String, String), usize>,
    vars: Vec<plan::Var>,
    /// Where each name is in `vars`.
    placed: HashMap<OsString, usize>,
}

impl Layer {
    /// Add `var`: a later bundle's replaces an earlier's in place, with a warning.
    fn place(&mut self, var: plan::Var) {
        if let Some(&i) = self.placed.get(&var.name) {
            tracing::warn!(
                "{}: {} replaces the one from {} (the later bundle wins)",
                var.location,
                var.name.to_string_lossy(),
                self.vars[i].location
            );
            self.vars[i] = var;
        } else {
            self.placed.insert(var.name.clone(), self.vars.len());
            self.vars.push(var);
        }
    }

    /// A dotenv bundle's value: plain, or a reference (or template) to fetch, one level deep
    /// (a secret of the plan already is not fetched again).
    fn dotenv_value(
        &mut self,
        bundle: usize,
        setting: &Setting,
        hosts: &VaultHosts,
        secrets: &mut Vec<SecretRef>,
    ) -> Result<Value, Unfit> {
        let mut intern = |secret: &SecretRef| {
            *self.keys.entry(secret.key()).or_insert_with(|| {
                secrets.push(secret.clone());
                secrets.len() - 1
            })
        };
        match reference::classify(&setting.value, hosts) {
            Ok(Classified::Literal) => Ok(Value::Bundled {
                index: bundle,
                value: setting.value.clone(),
            }),
            Ok(Classified::Reference(Reference { secret, pick })) => Ok(Value::Secret {
                index: intern(&secret),
                pick,
                optional: false,
            }),
            Ok(Classified::Template(pieces)) => {
                Ok(Value::Template(plan::parts(&pieces, &mut intern)))
            }
            // The message of a reference error may quote the value, which is a secret's: name the
            // line and key only.
            Err(_) => Err(Unfit::BadReference {
                line: setting.line.unwrap_or_default(),
                key: setting.name.clone(),
            }),
        }
    }
}

fn bundle_failure(from: &EnvFrom, shown: &str, problem: Problem) -> Failure {
    Failure {
        variable: from.label(),
        location: from.location.to_string(),
        secret: shown.to_owned(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_and_values(value: &str, format: Format, prefix: &str) -> Vec<(String, String)> {
        settings(value, format, prefix)
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.value.as_str().to_owned()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn json_is_flattened_with_double_underscores_in_the_order_written() {
        let value = r#"{"user":"app","port":5432,"tls":true,"ratio":1e3,
            "db":{"host":"x","replicas":["r1","r2"]},"skip":null,"none":{},"empty":[],
            "nested":[{"a":1},[2]]}"#;
        assert_eq!(
            names_and_values(value, Format::Json, "APP_"),
            pairs(&[
                ("APP_user", "app"),
                ("APP_port", "5432"),
                ("APP_tls", "true"),
                ("APP_ratio", "1e3"),
                ("APP_db__host", "x"),
                ("APP_db__replicas__0", "r1"),
                ("APP_db__replicas__1", "r2"),
                ("APP_nested__0__a", "1"),
                ("APP_nested__1__0", "2"),
            ])
        );
    }

    #[test]
    fn json_keys_follow_the_generated_name_rule() {
        assert_eq!(
            names_and_values(r#"{"db.host":"h","2fa":"t","a b":"s"}"#, Format::Json, ""),
            pairs(&[("db_host", "h"), ("_2fa", "t"), ("a_b", "s")])
        );
    }

    #[test]
    fn two_keys_for_one_name_are_an_error_naming_both() {
        let err = |value: &str| settings(value, Format::Json, "").err().unwrap().to_string();
        assert_eq!(
            err(r#"{"db.host":"a","db-host":"b"}"#),
            "keys 'db.host' and 'db-host' both become variable db_host"
        );
        assert_eq!(
            err(r#"{"db":{"host":"a"},"db__host":"b"}"#),
            "keys '/db/host' and 'db__host' both become variable db__host"
        );
        assert_eq!(
            err(r#"{"a":"1","a":"2"}"#),
            "keys 'a' and 'a' both become variable a"
        );
        assert_eq!(err(r#"{"":"x"}"#), "key '' gives an empty variable name");
    }

    #[test]
    fn a_value_that_is_no_json_object_is_unfit_and_says_nothing_of_the_value() {
        for (value, unfit) in [
            ("hunter2", Unfit::NotJson),
            ("{\"a\":", Unfit::NotJson),
            ("[\"hunter2\"]", Unfit::NotObject),
            ("\"hunter2\"", Unfit::NotObject),
            ("null", Unfit::NotObject),
        ] {
            let got = settings(value, Format::Json, "").err().unwrap();
            assert_eq!(got, unfit, "{value}");
            assert!(!got.to_string().contains("hunter2"));
        }
    }

    #[test]
    fn dotenv_bundles_are_read_as_dotenv_reads_them() {
        let value = "# app settings\nexport USER=app\nPASS=\"a#b\"\nlog.level=debug\n";
        assert_eq!(
            names_and_values(value, Format::Dotenv, ""),
            pairs(&[("USER", "app"), ("PASS", "a#b"), ("log_level", "debug")])
        );
        let lines: Vec<Option<usize>> = settings(value, Format::Dotenv, "")
            .unwrap()
            .iter()
            .map(|s| s.line)
            .collect();
        assert_eq!(lines, [Some(2), Some(3), Some(4)]);
    }

    #[test]
    fn the_flag_syntax() {
        let hosts = VaultHosts::default();
        let id = "https://myvault.vault.azure.net/secrets/app";
        let parse = |text: &str| parse_flag(text, Some("https://default.vault.azure.net"), &hosts);
        let plain = parse(id).unwrap();
        assert_eq!((plain.prefix.as_str(), plain.format), ("", Format::Json));
        assert_eq!(plain.secret.vault_url, "https://myvault.vault.azure.net");
        let full = parse(&format!("APP_=dotenv:{id}")).unwrap();
        assert_eq!(
            (full.prefix.as_str(), full.format),
            ("APP_", Format::Dotenv)
        );
        let json = parse(&format!("json:{id}")).unwrap();
        assert_eq!(json.format, Format::Json);
        let bare = parse("APP_=app-settings").unwrap();
        assert_eq!(bare.secret.vault_url, "https://default.vault.azure.net");
        assert_eq!(bare.secret.name, "app-settings");
        let service = parse("@Microsoft.KeyVault(VaultName=myvault;SecretName=app)").unwrap();
        assert_eq!(service.prefix, "");
        assert_eq!(service.secret.name, "app");
        assert_eq!(
            parse(&format!("{id}?field=x")).unwrap_err(),
            "a bundle takes a whole secret: ?field= and ?part= do not apply"
        );
        assert_eq!(
            parse("yaml:app").unwrap_err(),
            "'yaml:app' is not a secret name or a Key Vault reference"
        );
        assert!(
            parse_flag("app", None, &hosts)
                .unwrap_err()
                .contains("no default vault")
        );
    }
}
