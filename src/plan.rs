//! From sources to a plan: layer the variables, classify each winning value, dedupe secrets.
//!
//! Precedence, lowest to highest (a higher layer replaces a variable of a lower one whole):
//!
//! 1. the manifest's `[env]` (`kvrun.toml`);
//! 2. `./.env`, then each `--env-file` in the order given (a later file wins);
//! 3. the process environment kvrun inherited.
//!
//! This is what users of the npm `dotenv` package and of 12-factor containers expect: a file
//! baked into an image sets defaults, and whatever the deployer sets in the environment wins.
//! Only the winning value is classified, so a reference overridden by a plain value is never
//! fetched. Pure: no I/O, no network; bad input fails here, before any request.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;

use crate::bundle::EnvFrom;
use crate::error::{Error, Failure};
use crate::pick::Pick;
use crate::reference::{self, Classified, Piece, Reference, SecretRef, VaultHosts, VaultOrigin};
use crate::source::FileSpec;
use crate::source::files::DotEnvFile;
use crate::source::{Location, manifest};

/// What kvrun will do: the child's variables, in order, and the distinct secrets to fetch.
#[derive(Debug, Default, Clone)]
pub(crate) struct Plan {
    pub vars: Vec<Var>,
    /// Deduplicated by [`SecretRef::key`]; [`Value::Secret`] indexes into this.
    pub secrets: Vec<SecretRef>,
    /// Bundles, in the order declared (the later wins); their variables join [`Plan::vars`] once
    /// they are fetched ([`crate::bundle::expand`]).
    pub bundles: Vec<Bundle>,
    /// App Configuration stores to list (at most one today); their variables join
    /// [`Plan::vars`] once listed ([`crate::appconfig::expand`]).
    pub stores: Vec<std::sync::Arc<crate::appconfig::Store>>,
    /// Key-values named by `@Microsoft.AppConfiguration(…)`, deduplicated; [`Value::Setting`]
    /// indexes into this. Fetched with the first round, placed by [`crate::appconfig::expand`].
    pub settings: Vec<crate::appconfig::SettingRef>,
    /// The stores (by index) whose selection matched no key-values: a warning in a run, a
    /// failure of `check`.
    pub empty_stores: Vec<usize>,
    /// Bundles that could not be used (fetch failed, value unfit): failures of the run.
    pub refused: Vec<Failure>,
    /// The vault allow-lists, each with where it came from: every secret, a bundle's references
    /// too, must be on each.
    pub allowed: Vec<(&'static str, Vec<VaultOrigin>)>,
}

/// A bundle of the plan: the secret it is ([`Plan::secrets`] index), as declared, and once
/// expanded the names it gave (shadowed ones too), for `check`.
#[derive(Debug, Clone)]
pub(crate) struct Bundle {
    pub index: usize,
    pub declared: EnvFrom,
    pub names: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Var {
    pub name: OsString,
    pub value: Value,
    pub location: Location,
    /// Deliver the value as a file (manifest `file = true`, `--file-var`). Only a value with a
    /// secret in it is written to a file; a plain value (a path set by hand) passes as it is.
    pub file: Option<FileSpec>,
}

impl Var {
    /// Whether kvrun manages this variable: it comes from a `.env` file or the manifest, or holds
    /// a reference. The rest is inherited environment passed along as it is.
    #[must_use]
    pub(crate) fn is_managed(&self) -> bool {
        self.location != Location::Environment || !matches!(self.value, Value::Literal(_))
    }
}

#[derive(Clone)]
pub(crate) enum Value {
    /// A plain value; may itself be sensitive (an inherited client secret), so `Debug` hides it.
    Literal(OsString),
    /// A setting of the bundle that is secret `index`, fetched: a secret's value, delivered as a
    /// file when asked.
    Bundled {
        index: usize,
        value: zeroize::Zeroizing<String>,
    },
    Secret {
        index: usize,
        /// Only this field of the secret's JSON value, or part of its certificate.
        pick: Option<Pick>,
        optional: bool,
    },
    Template(Vec<Part>),
    /// A key-value of App Configuration (an index into [`Plan::settings`]), replaced by its value
    /// (or the secret its Key Vault reference names) once it is read.
    Setting(usize),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Literal(_) => f.write_str("Literal([redacted])"),
            Self::Bundled { index, .. } => f
                .debug_struct("Bundled")
                .field("index", index)
                .finish_non_exhaustive(),
            Self::Secret {
                index,
                pick,
                optional,
            } => f
                .debug_struct("Secret")
                .field("index", index)
                .field("pick", pick)
                .field("optional", optional)
                .finish(),
            Self::Template(parts) => f.debug_tuple("Template").field(parts).finish(),
            Self::Setting(index) => f.debug_tuple("Setting").field(index).finish(),
        }
    }
}

#[derive(Clone)]
pub(crate) enum Part {
    Text(String),
    /// A secret (an index into [`Plan::secrets`]), or one field or part of it.
    Secret(usize, Option<Pick>),
}

/// The inputs to planning, all already read.
pub(crate) struct Inputs<'a> {
    pub environment: &'a [(OsString, OsString)],
    pub dotenv_files: &'a [DotEnvFile],
    pub manifest: &'a [manifest::Entry],
    pub hosts: &'a VaultHosts,
    /// Do not resolve references in inherited variables.
    pub no_resolve_env: bool,
    /// Variables whose values stay literal whatever they look like.
    pub literal: &'a [String],
    /// `--file-var` names, and how their files are written.
    pub file_vars: &'a [String],
    pub file_spec: &'a FileSpec,
    /// Bundles, in the order declared.
    pub env_from: &'a [EnvFrom],
    /// The App Configuration hosts `@Microsoft.AppConfiguration(Endpoint=…)` may name.
    pub store_hosts: &'a crate::appconfig::StoreHosts,
}

enum Raw<'a> {
    Text(&'a OsStr),
    Manifest(&'a manifest::Value),
}

/// Layer the inputs and classify every winning value.
///
/// # Errors
/// A malformed reference in any winning value, naming where it is defined.
pub(crate) fn build(inputs: &Inputs<'_>) -> Result<Plan, Error> {
    let mut plan = Plan::default();
    let mut keys: HashMap<(String, String, String), usize> = HashMap::new();
    let mut intern = |secret: &SecretRef| {
        *keys.entry(secret.key()).or_insert_with(|| {
            plan.secrets.push(secret.clone());
            plan.secrets.len() - 1
        })
    };
    let mut settings: Vec<crate::appconfig::SettingRef> = Vec::new();
    let mut vars = Vec::new();
    for (name, raw, location) in layer(inputs) {
        let literal = inputs.literal.iter().any(|l| OsStr::new(l) == name)
            || (inputs.no_resolve_env && location == Location::Environment);
        let value = match raw {
            Raw::Text(text) if literal => Value::Literal(text.to_owned()),
            Raw::Manifest(manifest::Value::Literal(text)) => Value::Literal(text.into()),
            Raw::Manifest(_) if literal => {
                // A manifest entry is a secret by definition; --literal cannot turn it into text.
                return Err(Error::bad_input(
                    location.to_string(),
                    format!(
                        "--literal {} names a manifest secret; write {{ value = \"…\" }} there instead",
                        name.to_string_lossy()
                    ),
                ));
            }
            Raw::Manifest(manifest::Value::Secret {
                reference,
                optional,
            }) => Value::Secret {
                index: intern(&reference.secret),
                pick: reference.pick.clone(),
                optional: *optional,
            },
            Raw::Manifest(manifest::Value::Template(pieces)) => {
                Value::Template(parts(pieces, &mut intern))
            }
            Raw::Text(text) => match text
                .to_str()
                .and_then(|t| crate::appconfig::setting_reference(t, inputs.store_hosts))
            {
                Some(Ok(setting)) => {
                    let index = settings
                        .iter()
                        .position(|s| s.key() == setting.key())
                        .unwrap_or_else(|| {
                            settings.push(setting);
                            settings.len() - 1
                        });
                    Value::Setting(index)
                }
                Some(Err(message)) => return Err(Error::bad_input(location.naming(name), message)),
                None => text_value(name, text, &location, inputs.hosts, &mut intern)?,
            },
        };
        let file = match value {
            Value::Literal(_) => None,
            _ => file_spec(inputs, name),
        };
        if let Some(problem) = pkcs12_misplaced(&value, file.is_some()) {
            return Err(Error::bad_input(location.naming(name), problem));
        }
        vars.push(Var {
            name: name.to_owned(),
            value,
            location,
            file,
        });
    }
    let bundles = inputs
        .env_from
        .iter()
        .map(|declared| Bundle {
            index: intern(&declared.secret),
            declared: declared.clone(),
            names: Vec::new(),
        })
        .collect();
    plan.vars = vars;
    plan.bundles = bundles;
    plan.settings = settings;
    Ok(plan)
}

/// `?part=pkcs12` is the binary PFX: a file's contents, never an environment variable's value
/// nor a piece of a template.
pub(crate) fn pkcs12_misplaced(value: &Value, file: bool) -> Option<&'static str> {
    let pkcs12 =
        |pick: &Option<Pick>| pick.as_ref().and_then(Pick::part) == Some(crate::part::Part::Pkcs12);
    match value {
        Value::Secret { pick, .. } if pkcs12(pick) && !file => Some(
            "?part=pkcs12 is binary: deliver it as a file (file = true in the manifest, or --file-var)",
        ),
        Value::Template(parts)
            if parts
                .iter()
                .any(|p| matches!(p, Part::Secret(_, pick) if pkcs12(pick))) =>
        {
            Some("?part=pkcs12 is binary and cannot be part of a {{ }} template")
        }
        _ => None,
    }
}

/// How `name` is delivered as a file, if it is: the manifest's entry for it, else `--file-var`.
fn file_spec(inputs: &Inputs<'_>, name: &OsStr) -> Option<FileSpec> {
    inputs
        .manifest
        .iter()
        .rev()
        .find(|e| OsStr::new(&e.name) == name)
        .and_then(|e| e.file.clone())
        .or_else(|| {
            inputs
                .file_vars
                .iter()
                .any(|v| OsStr::new(v) == name)
                .then(|| inputs.file_spec.clone())
        })
}

/// The variables in precedence order: later writes win, the first position is kept so the child's
/// order is stable.
fn layer<'a>(inputs: &Inputs<'a>) -> Layered<'a> {
    let mut order: Layered<'a> = Vec::new();
    let mut index: HashMap<&OsStr, usize> = HashMap::new();
    let mut set = |name, raw, location| assign(&mut order, &mut index, name, raw, location);
    for entry in inputs.manifest {
        set(
            OsStr::new(&entry.name),
            Raw::Manifest(&entry.value),
            entry.location.clone(),
        );
    }
    for file in inputs.dotenv_files {
        for entry in &file.parsed.entries {
            let location = Location::DotEnv {
                path: file.path.clone(),
                line: entry.line,
            };
            set(
                OsStr::new(&entry.key),
                Raw::Text(OsStr::new(&entry.value)),
                location,
            );
        }
    }
    for (name, value) in inputs.environment {
        set(name, Raw::Text(value), Location::Environment);
    }
    order
}

/// Classify a value from the environment or a `.env` file.
fn text_value(
    name: &OsStr,
    text: &OsStr,
    location: &Location,
    hosts: &VaultHosts,
    intern: &mut dyn FnMut(&SecretRef) -> usize,
) -> Result<Value, Error> {
    let Some(utf8) = text.to_str() else {
        // Not UTF-8: passed through, unless it holds something meant as a reference.
        return match reference::classify(&text.to_string_lossy(), hosts) {
            Ok(Classified::Literal) => Ok(Value::Literal(text.to_owned())),
            _ => Err(Error::bad_input(
                location.naming(name),
                "the value is not valid UTF-8 but holds a Key Vault reference",
            )),
        };
    };
    match reference::classify(utf8, hosts) {
        Ok(Classified::Literal) => Ok(Value::Literal(text.to_owned())),
        Ok(Classified::Reference(Reference { secret, pick })) => Ok(Value::Secret {
            index: intern(&secret),
            pick,
            optional: false,
        }),
        Ok(Classified::Template(pieces)) => Ok(Value::Template(parts(&pieces, intern))),
        Err(e) => {
            let hint = e.hint.or_else(|| {
                (*location == Location::Environment).then(|| {
                    format!(
                        "to pass it to the command as it is, use --literal {}",
                        name.to_string_lossy()
                    )
                })
            });
            Err(Error::BadInput {
                location: location.naming(name),
                message: e.message,
                hint,
            })
        }
    }
}

/// Refuse every secret whose vault (host and port) is not on each of the plan's allow-lists, with
/// the name of where the list came from. Nothing is contacted before this check (and a bundle's
/// references are checked before they are fetched).
///
/// # Errors
/// Names every refused vault and the variables (or bundles) that wanted it.
pub(crate) fn check_allowed(plan: &Plan) -> Result<(), Error> {
    let mut refused: Vec<(String, &str, Vec<String>)> = Vec::new();
    for (index, secret) in plan.secrets.iter().enumerate() {
        let Some((list_name, _)) = plan
            .allowed
            .iter()
            .find(|(_, list)| !list.iter().any(|entry| entry.admits(secret)))
        else {
            continue;
        };
        let (host, port) = secret.origin();
        let host = VaultOrigin {
            host: host.to_ascii_lowercase(),
            port,
        }
        .to_string();
        let users = plan
            .vars
            .iter()
            .filter(|v| match &v.value {
                Value::Secret { index: i, .. } => *i == index,
                Value::Template(parts) => parts
                    .iter()
                    .any(|p| matches!(p, Part::Secret(i, _) if *i == index)),
                Value::Literal(_) | Value::Bundled { .. } | Value::Setting(_) => false,
            })
            .map(|v| format!("{} ({})", v.name.to_string_lossy(), v.location))
            .chain(
                plan.bundles
                    .iter()
                    .filter(|b| b.index == index)
                    .map(|b| format!("{} ({})", b.declared.label(), b.declared.location)),
            );
        match refused.iter_mut().find(|(h, _, _)| *h == host) {
            Some((_, _, vars)) => vars.extend(users),
            None => refused.push((host, list_name, users.collect())),
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    let mut message =
        String::from("references name vaults outside the vault allow-list; nothing was fetched");
    for (host, list_name, vars) in refused {
        let _ = write!(
            message,
            "\n  {host} (not in {list_name}): {}",
            vars.join(", ")
        );
    }
    Err(Error::VaultNotAllowed { message })
}

type Layered<'a> = Vec<(&'a OsStr, Raw<'a>, Location)>;

impl std::fmt::Debug for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(_) => f.write_str("Text([redacted])"),
            Self::Secret(index, pick) => f.debug_tuple("Secret").field(index).field(pick).finish(),
        }
    }
}

fn assign<'a>(
    order: &mut Layered<'a>,
    index: &mut HashMap<&'a OsStr, usize>,
    name: &'a OsStr,
    raw: Raw<'a>,
    location: Location,
) {
    if let Some(&i) = index.get(name) {
        order[i] = (name, raw, location);
    } else {
        index.insert(name, order.len());
        order.push((name, raw, location));
    }
}

/// A template's pieces as the plan's parts, each secret interned.
pub(crate) fn parts(pieces: &[Piece], intern: &mut dyn FnMut(&SecretRef) -> usize) -> Vec<Part> {
    pieces
        .iter()
        .map(|piece| match piece {
            Piece::Text(text) => Part::Text(text.clone()),
            Piece::Secret(reference) => {
                Part::Secret(intern(&reference.secret), reference.pick.clone())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn dotenv_file(path: &str, text: &str) -> DotEnvFile {
        DotEnvFile {
            path: PathBuf::from(path),
            parsed: crate::source::dotenv::parse(text.as_bytes()).unwrap(),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn plan(
        environment: &[(OsString, OsString)],
        files: &[DotEnvFile],
        manifest_text: &str,
    ) -> Result<Plan, Error> {
        let hosts = VaultHosts::default();
        let manifest = manifest::parse(manifest_text, Path::new("kvrun.toml"), &hosts).unwrap();
        build(&Inputs {
            environment,
            dotenv_files: files,
            manifest: &manifest,
            hosts: &hosts,
            no_resolve_env: false,
            literal: &[],
            file_vars: &["FROM_FLAG".to_owned(), "PLAIN".to_owned()],
            file_spec: &FileSpec::default(),
            env_from: &[],
            store_hosts: &crate::appconfig::StoreHosts::default(),
        })
    }

    fn literal_of<'p>(plan: &'p Plan, name: &str) -> Option<&'p OsStr> {
        plan.vars
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| match &v.value {
                Value::Literal(s) => Some(s.as_os_str()),
                _ => None,
            })
    }

    #[test]
    fn environment_beats_later_env_file_beats_earlier_beats_manifest() {
        let manifest = "vault = \"https://main.vault.azure.net\"\n[env]\nA = \"sa\"\nB = \"sb\"\nC = \"sc\"\nD = \"sd\"\n";
        let files = [
            dotenv_file(".env", "B=from-dotenv\nC=from-dotenv\nD=from-dotenv\n"),
            dotenv_file("prod.env", "C=from-prod\nD=from-prod\n"),
        ];
        let plan = plan(&env(&[("D", "from-env")]), &files, manifest).unwrap();
        assert!(matches!(
            plan.vars.iter().find(|v| v.name == "A").unwrap().value,
            Value::Secret { .. }
        ));
        assert_eq!(literal_of(&plan, "B"), Some(OsStr::new("from-dotenv")));
        assert_eq!(literal_of(&plan, "C"), Some(OsStr::new("from-prod")));
        assert_eq!(literal_of(&plan, "D"), Some(OsStr::new("from-env")));
        // Only the secret still wanted is fetched.
        assert_eq!(plan.secrets.len(), 1);
        assert_eq!(
            plan.vars.iter().find(|v| v.name == "C").unwrap().location,
            Location::DotEnv {
                path: "prod.env".into(),
                line: 1
            }
        );
    }

    #[test]
    fn one_secret_referenced_three_ways_is_fetched_once() {
        let manifest = "vault = \"https://main.vault.azure.net\"\n[env]\nA = \"db\"\n";
        let files = [dotenv_file(
            ".env",
            "B=https://MAIN.vault.azure.net/secrets/DB\n",
        )];
        let environment = env(&[(
            "C",
            "x{{ @Microsoft.KeyVault(VaultName=main;SecretName=db) }}y",
        )]);
        let plan = plan(&environment, &files, manifest).unwrap();
        assert_eq!(plan.secrets.len(), 1);
        assert_eq!(plan.vars.len(), 3);
    }

    #[test]
    fn literal_and_no_resolve_env_keep_values() {
        let hosts = VaultHosts::default();
        let environment = env(&[
            ("SDK_ID", "https://main.vault.azure.net/secrets/x"),
            ("OTHER", "https://main.vault.azure.net/secrets/y"),
        ]);
        let build_with = |no_resolve_env, literal: &[String]| {
            build(&Inputs {
                environment: &environment,
                dotenv_files: &[],
                manifest: &[],
                hosts: &hosts,
                no_resolve_env,
                literal,
                file_vars: &[],
                file_spec: &FileSpec::default(),
                env_from: &[],
                store_hosts: &crate::appconfig::StoreHosts::default(),
            })
            .unwrap()
        };
        let plan = build_with(false, &["SDK_ID".to_owned()]);
        assert!(literal_of(&plan, "SDK_ID").is_some());
        assert_eq!(plan.secrets.len(), 1);
        let plan = build_with(true, &[]);
        assert!(plan.secrets.is_empty());
    }

    #[test]
    fn a_malformed_reference_names_where_it_is() {
        let files = [dotenv_file(
            "app/.env",
            "X=1\nDB=http://main.vault.azure.net/secrets/db\n",
        )];
        let err = plan(&[], &files, "").unwrap_err();
        assert_eq!(err.exit_code(), crate::error::ExitCode::BAD_INPUT);
        assert!(err.to_string().starts_with("app/.env:2: DB: "), "{err}");
        let err = plan(
            &env(&[("DB", "https://main.vault.azure.net/secrets/")]),
            &[],
            "",
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("environment variable DB: "),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("--literal DB"));
    }

    #[test]
    fn debug_output_hides_literal_values() {
        let plan = plan(&env(&[("AZURE_CLIENT_SECRET", "hunter2")]), &[], "").unwrap();
        assert!(!format!("{plan:?}").contains("hunter2"));
    }

    #[test]
    fn non_utf8_values_pass_through() {
        use std::os::unix::ffi::OsStringExt;
        let environment = vec![(OsString::from("BIN"), OsString::from_vec(vec![0xff, b'x']))];
        let plan = plan(&environment, &[], "").unwrap();
        assert_eq!(literal_of(&plan, "BIN").unwrap().len(), 2);
    }

    #[test]
    fn file_delivery_follows_the_name_and_skips_plain_values() {
        let environment = env(&[
            ("FROM_FLAG", "https://main.vault.azure.net/secrets/a"),
            ("PLAIN", "/run/secrets/by-hand"),
        ]);
        let manifest = "vault = \"https://main.vault.azure.net\"\n[env]\n\
                        CERT_FILE = { secret = \"cert\", file = true, mode = \"0440\", owner = \"1000\" }\n\
                        NOT_FILE = \"b\"\n";
        let plan = plan(&environment, &[], manifest).unwrap();
        let file_of = |name: &str| {
            plan.vars
                .iter()
                .find(|v| v.name == name)
                .unwrap()
                .file
                .clone()
        };
        assert_eq!(
            file_of("CERT_FILE"),
            Some(FileSpec::new(0o440, Some("1000".into())).unwrap())
        );
        assert_eq!(file_of("FROM_FLAG"), Some(FileSpec::default()));
        assert_eq!(file_of("PLAIN"), None);
        assert_eq!(file_of("NOT_FILE"), None);
    }
}
