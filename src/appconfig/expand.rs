//! A store's listed key-values into the plan: one variable per key (or per JSON leaf, or per
//! feature flag, when asked), between the manifest's `[env]` and the `.env` files.
//!
//! - **Selectors:** the same key listed by two selectors, or two keys equal once trimmed, are one
//!   setting: the later selector's (as the providers). Two *different* trimmed keys that give one
//!   name are an error naming both ([`crate::names::Names::claim`]).
//! - **Layering:** a store's variable replaces the manifest's `[env]` entry of that name (the
//!   manifest's `file = true` still applies); `.env` files, the environment and command-line
//!   options win over it. A bundle's variables are placed after this, below all of them.
//! - **Key Vault references** become secrets of the plan (deduplicated with every other), parsed
//!   with the reference grammar — the same vault hosts, then the same allow-lists
//!   ([`crate::plan::check_allowed`]) before anything is fetched. Any other value is data.

use std::collections::HashMap;
use std::ffi::OsString;

use zeroize::Zeroizing;

use super::client::{Item, Listed};
use super::{Content, Json, Store, trimmed, variable_name};
use crate::bundle::Context;
use crate::error::{Failure, FailureClass, Problem};
use crate::names::Names;
use crate::plan::{self, Plan, Value};
use crate::reference::{self, Classified, Reference};
use crate::source::Location;

/// One setting a store gives: the variable, where it came from, its value.
struct Setting {
    name: String,
    location: Location,
    value: Value,
}

/// The plan with the stores' variables in place (`listings`: one per store of the plan), and its
/// `@Microsoft.AppConfiguration(…)` variables read (`lookups`: one per key-value of the plan). A
/// list that failed, a key that is not there, or a key-value kvrun cannot use is a failure of the
/// plan ([`Plan::refused`]).
pub(crate) fn expand(
    mut plan: Plan,
    listings: &[super::Listing],
    lookups: &[super::Lookup],
    context: &Context,
) -> Plan {
    let mut keys: HashMap<(String, String, String), usize> = plan
        .secrets
        .iter()
        .enumerate()
        .map(|(i, s)| (s.key(), i))
        .collect();
    if !lookups.is_empty() {
        read_settings(&mut plan, lookups, context, &mut keys);
    }
    let stores = plan.stores.clone();
    for (index, (store, listing)) in stores.iter().zip(listings).enumerate() {
        let listed = match listing {
            Ok(listed) => listed,
            Err(failed) => {
                for (what, problem) in failed {
                    plan.refused.push(Failure {
                        variable: store.label(),
                        location: store.declared.to_string(),
                        secret: format!("{} {what}", store.endpoint),
                        problem: problem.clone(),
                    });
                }
                continue;
            }
        };
        let settings = settings(store, listed, context, &mut plan, &mut keys);
        if listed.items().next().is_none() {
            plan.empty_stores.push(index);
            tracing::warn!(
                "{} ({}): the selection matched no key-values",
                store.label(),
                store.declared
            );
        }
        for setting in settings {
            place(&mut plan, &setting, context);
        }
    }
    plan
}

/// Replace each variable that names a key-value (`@Microsoft.AppConfiguration(…)`) with what it
/// read: the value (data, as it is), or the secret its Key Vault reference names; a key that is
/// not there, or could not be read, is a failure of the plan and its variable goes.
fn read_settings(
    plan: &mut Plan,
    lookups: &[super::Lookup],
    context: &Context,
    keys: &mut HashMap<(String, String, String), usize>,
) {
    let mut vars = std::mem::take(&mut plan.vars);
    vars.retain_mut(|var| {
        let Value::Setting(index) = var.value else {
            return true;
        };
        let setting = plan.settings[index].clone();
        let failure = |problem: Problem| Failure {
            variable: var.name.to_string_lossy().into_owned(),
            location: var.location.to_string(),
            secret: setting.shown(),
            problem,
        };
        let item = match &lookups[index] {
            Ok(Some(item)) => item,
            Ok(None) => {
                let label = setting
                    .label
                    .as_deref()
                    .map_or_else(|| "--label \\0".to_owned(), |l| format!("--label {l}"));
                let problem = Problem::new(
                    FailureClass::NotFound,
                    "404: the store has no such key with this label",
                )
                .hint(format!(
                    "check the key and label: az appconfig kv show -n {} --key {} {label}",
                    setting.endpoint.name, setting.key
                ));
                plan.refused.push(failure(problem));
                return false;
            }
            Err(problem) => {
                plan.refused.push(failure(problem.clone()));
                return false;
            }
        };
        let text = item.value.as_ref().map_or("", |v| v.as_str());
        let value = match Content::of(&item.key, item.content_type.as_deref()) {
            Content::KeyVaultReference => match key_vault_reference(text, context) {
                Ok(reference) => Value::Secret {
                    index: intern(plan, keys, &reference.secret),
                    pick: reference.pick,
                    optional: false,
                },
                Err(problem) => {
                    plan.refused
                        .push(failure(Problem::new(FailureClass::BadValue, problem)));
                    return false;
                }
            },
            _ => Value::Literal(OsString::from(text)),
        };
        var.value = value;
        true
    });
    plan.vars = vars;
}

/// The index of `secret` in the plan's secrets, added if new.
fn intern(
    plan: &mut Plan,
    keys: &mut HashMap<(String, String, String), usize>,
    secret: &crate::reference::SecretRef,
) -> usize {
    *keys.entry(secret.key()).or_insert_with(|| {
        plan.secrets.push(secret.clone());
        plan.secrets.len() - 1
    })
}

/// The settings of one store's list, in the order listed (a later selector's item for the same
/// trimmed key takes the earlier's place); the failures go to the plan.
fn settings(
    store: &Store,
    listed: &Listed,
    context: &Context,
    plan: &mut Plan,
    keys: &mut HashMap<(String, String, String), usize>,
) -> Vec<Setting> {
    let mut chosen: Vec<&Item> = Vec::new();
    let mut at: HashMap<&str, usize> = HashMap::new();
    for item in listed.items() {
        let kind = Content::of(&item.key, item.content_type.as_deref());
        if kind == Content::FeatureFlag && !store.feature_flags {
            continue;
        }
        let key = trimmed(&item.key, &store.trim);
        if let Some(&i) = at.get(key) {
            chosen[i] = item;
        } else {
            at.insert(key, chosen.len());
            chosen.push(item);
        }
    }
    let mut names = Names::default();
    let mut out = Vec::new();
    for item in chosen {
        let location = Location::AppConfig {
            store: store.endpoint.name.clone(),
            key: item.key.clone(),
            label: item.label.clone(),
        };
        let fail = |plan: &mut Plan, class, problem: String| {
            plan.refused.push(Failure {
                variable: variable_name(&item.key, &store.trim, store.upper_snake),
                location: location.to_string(),
                secret: store.endpoint.origin(),
                problem: Problem::new(class, problem),
            });
        };
        let made = match values(store, item, context, plan, keys) {
            Ok(made) => made,
            Err(problem) => {
                fail(plan, FailureClass::BadValue, problem);
                continue;
            }
        };
        for (name, shown, value) in made {
            if let Err(collision) = names.claim(&name, &shown) {
                fail(plan, FailureClass::BadValue, collision);
                continue;
            }
            out.push(Setting {
                name,
                location: location.clone(),
                value,
            });
        }
    }
    out
}

/// The variables one key-value gives: (name, the key as shown in a collision, value).
fn values(
    store: &Store,
    item: &Item,
    context: &Context,
    plan: &mut Plan,
    keys: &mut HashMap<(String, String, String), usize>,
) -> Result<Vec<(String, String, Value)>, String> {
    let text = item.value.as_ref().map_or("", |v| v.as_str());
    let key = trimmed(&item.key, &store.trim);
    let name = |key: &str| variable_name(key, &[], store.upper_snake);
    let literal = |text: &str| Value::Literal(OsString::from(text));
    match Content::of(&item.key, item.content_type.as_deref()) {
        Content::KeyVaultReference => {
            let secret = key_vault_reference(text, context)?;
            let index = intern(plan, keys, &secret.secret);
            Ok(vec![(
                name(key),
                item.key.clone(),
                Value::Secret {
                    index,
                    pick: secret.pick,
                    optional: false,
                },
            )])
        }
        Content::FeatureFlag => {
            let flag: FeatureFlag = serde_json::from_str(text)
                .map_err(|_| "the feature flag's value is not a feature flag's JSON".to_owned())?;
            let id = flag.id.unwrap_or_else(|| {
                item.key
                    .strip_prefix(super::FEATURE_FLAG_PREFIX)
                    .unwrap_or(&item.key)
                    .to_owned()
            });
            let key = format!("FeatureManagement:{id}");
            let value = if flag.enabled { "true" } else { "false" };
            Ok(vec![(name(&key), item.key.clone(), literal(value))])
        }
        Content::Json if store.json == Json::Flatten => {
            let raw: &serde_json::value::RawValue = serde_json::from_str(text)
                .map_err(|_| "the value's content type is JSON, but the value is not".to_owned())?;
            let mut leaves = Vec::new();
            crate::bundle::flatten(raw, &mut Vec::new(), &mut leaves).map_err(|()| {
                "the value's content type is JSON, but the value is not".to_owned()
            })?;
            Ok(leaves
                .into_iter()
                .map(|(path, leaf): (Vec<String>, Zeroizing<String>)| {
                    let under = |key: &str| {
                        std::iter::once(key.to_owned())
                            .chain(path.iter().cloned())
                            .collect::<Vec<_>>()
                            .join(":")
                    };
                    (name(&under(key)), under(&item.key), literal(&leaf))
                })
                .collect())
        }
        Content::Json | Content::Text => Ok(vec![(name(key), item.key.clone(), literal(text))]),
    }
}

/// A feature flag's value, the fields kvrun reads.
#[derive(serde::Deserialize)]
struct FeatureFlag {
    id: Option<String>,
    #[serde(default)]
    enabled: bool,
}

/// The secret a Key Vault reference's value (`{"uri":"https://…/secrets/name[/version]"}`)
/// names, by the reference grammar: a whole reference on a vault host, nothing else.
fn key_vault_reference(text: &str, context: &Context) -> Result<Reference, String> {
    #[derive(serde::Deserialize)]
    struct Uri {
        uri: String,
    }
    let Ok(Uri { uri }) = serde_json::from_str::<Uri>(text) else {
        return Err("the Key Vault reference's value is not {\"uri\":\"https://…\"}".to_owned());
    };
    match reference::classify(&uri, &context.hosts) {
        Ok(Classified::Reference(reference)) if uri.starts_with("https://") => Ok(reference),
        Ok(_) => Err(format!(
            "the Key Vault reference names '{}', which is not a secret identifier on a vault host",
            crate::http::untrusted(&uri.chars().take(200).collect::<String>())
        )),
        Err(e) => Err(format!("the Key Vault reference: {}", e.message)),
    }
}

/// Put a store's variable in the plan: it replaces a manifest entry of its name (keeping the
/// entry's file delivery) and a variable an earlier store gave; anything else named explicitly
/// wins over it.
fn place(plan: &mut Plan, setting: &Setting, context: &Context) {
    let name = OsString::from(&setting.name);
    let existing = plan.vars.iter().position(|v| v.name == name);
    let file_by_flag = || {
        context
            .file_vars
            .contains(&setting.name)
            .then(|| context.file_spec.clone())
    };
    let secret = !matches!(setting.value, Value::Literal(_));
    let var = |file| plan::Var {
        name: name.clone(),
        value: setting.value.clone(),
        location: setting.location.clone(),
        file: if secret { file } else { None },
    };
    let misplaced = |file: &Option<crate::source::FileSpec>| {
        plan::pkcs12_misplaced(&setting.value, file.is_some()).map(|problem| Failure {
            variable: setting.name.clone(),
            location: setting.location.to_string(),
            secret: String::new(),
            problem: Problem::new(FailureClass::BadValue, problem),
        })
    };
    let Some(i) = existing else {
        let file = file_by_flag();
        if let Some(failure) = misplaced(&file) {
            plan.refused.push(failure);
            return;
        }
        let var = var(file);
        plan.vars.push(var);
        return;
    };
    match &plan.vars[i].location {
        Location::Manifest { .. } | Location::AppConfig { .. } => {
            let file = plan.vars[i].file.clone().or_else(file_by_flag);
            if let Some(failure) = misplaced(&file) {
                plan.refused.push(failure);
                return;
            }
            plan.vars[i] = var(file);
        }
        winner => {
            tracing::info!(
                "{}: {} is set at {winner}, which wins over App Configuration",
                setting.location,
                setting.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::appconfig::{Auth, Selection, StoreHosts};
    use crate::reference::VaultHosts;
    use crate::source::FileSpec;

    fn store(trim: &[&str], json: Json) -> Store {
        Store {
            endpoint: StoreHosts::default()
                .endpoint("https://cfg.azconfig.io")
                .unwrap(),
            selection: Selection::Select(Vec::new()),
            trim: trim.iter().map(|t| (*t).to_owned()).collect(),
            upper_snake: false,
            json,
            feature_flags: false,
            auth: Auth::Entra,
            declared: Location::Flag("--app-config"),
        }
    }

    fn item(key: &str, label: Option<&str>, value: &str, content_type: Option<&str>) -> Item {
        Item {
            key: key.to_owned(),
            label: label.map(str::to_owned),
            value: Some(Zeroizing::new(value.to_owned())),
            content_type: content_type.map(str::to_owned),
        }
    }

    fn context() -> Context {
        Context {
            hosts: VaultHosts::default(),
            file_vars: Vec::new(),
            file_spec: FileSpec::default(),
        }
    }

    fn expanded(plan: Plan, store: Store, items: Vec<Item>) -> Plan {
        let mut plan = plan;
        plan.stores.push(Arc::new(store));
        let listed = Listed {
            selections: vec![vec![crate::appconfig::client::PageOf {
                items,
                ..Default::default()
            }]],
        };
        expand(plan, &[Ok(listed)], &[], &context())
    }

    fn literal<'p>(plan: &'p Plan, name: &str) -> Option<&'p str> {
        plan.vars
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| match &v.value {
                Value::Literal(text) => text.to_str(),
                _ => None,
            })
    }

    const KV_REF: &str = "application/vnd.microsoft.appconfig.keyvaultref+json;charset=utf-8";

    #[test]
    fn the_later_selector_wins_and_trimmed_keys_are_one_setting() {
        let items = vec![
            item("myapp:Db:Host", Some("prod"), "prod-host", None),
            item("shared:Db:Host", None, "shared-host", None),
            item("myapp:Port", Some("prod"), "443", None),
        ];
        let plan = expanded(
            Plan::default(),
            store(&["myapp:", "shared:"], Json::Keep),
            items,
        );
        assert!(plan.refused.is_empty(), "{:?}", plan.refused);
        assert_eq!(literal(&plan, "Db__Host"), Some("shared-host"));
        assert_eq!(literal(&plan, "Port"), Some("443"));
        let var = plan.vars.iter().find(|v| v.name == "Db__Host").unwrap();
        assert_eq!(var.location.to_string(), "appconfig:cfg/shared:Db:Host");
    }

    #[test]
    fn different_keys_for_one_name_are_an_error_naming_both() {
        let items = vec![
            item("Db:Host", None, "a", None),
            item("Db__Host", None, "b", None),
        ];
        let plan = expanded(Plan::default(), store(&[], Json::Keep), items);
        assert_eq!(plan.refused.len(), 1);
        assert_eq!(
            plan.refused[0].problem.to_string(),
            "keys 'Db:Host' and 'Db__Host' both become variable Db__Host"
        );
        assert_eq!(plan.refused[0].problem.class, FailureClass::BadValue);
    }

    #[test]
    fn key_vault_references_are_secrets_deduplicated_with_the_plan() {
        let mut plan = Plan::default();
        plan.secrets.push(crate::reference::SecretRef {
            vault_url: "https://kv2.vault.azure.net".into(),
            name: "db".into(),
            version: None,
        });
        let items = vec![
            item(
                "Db:Password",
                None,
                r#"{"uri":"https://KV2.vault.azure.net/secrets/DB"}"#,
                Some(KV_REF),
            ),
            item(
                "Api:Key",
                None,
                r#"{"uri":"https://kv2.vault.azure.net/secrets/api"}"#,
                Some(KV_REF),
            ),
            item(
                "Bad",
                None,
                r#"{"uri":"https://example.com/secrets/x"}"#,
                Some(KV_REF),
            ),
        ];
        let plan = expanded(plan, store(&[], Json::Keep), items);
        assert_eq!(plan.secrets.len(), 2, "db deduplicated, api added");
        let index = |name: &str| match plan.vars.iter().find(|v| v.name == name).unwrap().value {
            Value::Secret { index, .. } => index,
            _ => panic!("{name} is no secret"),
        };
        assert_eq!(index("Db__Password"), 0);
        assert_eq!(index("Api__Key"), 1);
        assert_eq!(plan.refused.len(), 1);
        assert!(
            plan.refused[0]
                .problem
                .to_string()
                .contains("not a secret identifier on a vault host"),
            "{}",
            plan.refused[0].problem
        );
    }

    #[test]
    fn values_are_data_json_kept_or_flattened_and_feature_flags_left_out() {
        let items = || {
            vec![
                item(
                    "Db",
                    None,
                    r#"{"host":"h","ports":[1,2]}"#,
                    Some("application/json"),
                ),
                item(
                    "Looks:Like",
                    None,
                    "https://kv.vault.azure.net/secrets/x",
                    None,
                ),
                item(
                    ".appconfig.featureflag/Beta",
                    None,
                    r#"{"id":"Beta","enabled":true}"#,
                    Some("application/vnd.microsoft.appconfig.ff+json;charset=utf-8"),
                ),
            ]
        };
        let plan = expanded(Plan::default(), store(&[], Json::Keep), items());
        assert_eq!(literal(&plan, "Db"), Some(r#"{"host":"h","ports":[1,2]}"#));
        assert_eq!(
            literal(&plan, "Looks__Like"),
            Some("https://kv.vault.azure.net/secrets/x"),
            "a store's value is never parsed for references"
        );
        assert!(plan.secrets.is_empty());
        assert_eq!(plan.vars.len(), 2, "no feature flag");

        let mut flags = store(&[], Json::Flatten);
        flags.feature_flags = true;
        let plan = expanded(Plan::default(), flags, items());
        assert_eq!(literal(&plan, "Db__host"), Some("h"));
        assert_eq!(literal(&plan, "Db__ports__1"), Some("2"));
        assert_eq!(literal(&plan, "FeatureManagement__Beta"), Some("true"));
    }

    #[test]
    fn a_store_replaces_the_manifest_and_loses_to_env_files_and_the_environment() {
        let mut plan = Plan::default();
        for (name, location) in [
            (
                "FROM_MANIFEST",
                Location::Manifest {
                    path: "kvrun.toml".into(),
                    line: 3,
                },
            ),
            (
                "FROM_DOTENV",
                Location::DotEnv {
                    path: ".env".into(),
                    line: 1,
                },
            ),
            ("INHERITED", Location::Environment),
        ] {
            plan.vars.push(plan::Var {
                name: name.into(),
                value: Value::Literal("explicit".into()),
                location,
                file: None,
            });
        }
        let items = vec![
            item("FROM_MANIFEST", None, "store", None),
            item("FROM_DOTENV", None, "store", None),
            item("INHERITED", None, "store", None),
        ];
        let plan = expanded(plan, store(&[], Json::Keep), items);
        assert_eq!(literal(&plan, "FROM_MANIFEST"), Some("store"));
        assert_eq!(literal(&plan, "FROM_DOTENV"), Some("explicit"));
        assert_eq!(literal(&plan, "INHERITED"), Some("explicit"));
        assert_eq!(plan.vars.len(), 3);
    }

    #[test]
    fn a_failed_list_and_an_empty_one() {
        let mut plan = Plan::default();
        plan.stores.push(Arc::new(store(&[], Json::Keep)));
        plan.stores.push(Arc::new(store(&[], Json::Keep)));
        let failed = Err(vec![(
            "key=* (no label)".to_owned(),
            Problem::new(FailureClass::Authorization, "403 Forbidden"),
        )]);
        let plan = expand(plan, &[failed, Ok(Listed::default())], &[], &context());
        assert_eq!(plan.refused.len(), 1);
        assert_eq!(plan.refused[0].variable, "appconfig:cfg");
        assert_eq!(
            plan.refused[0].secret,
            "https://cfg.azconfig.io key=* (no label)"
        );
        assert_eq!(plan.empty_stores, vec![1]);
    }
}
