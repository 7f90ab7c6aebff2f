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
        if listed.items.is_empty() {
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
    for item in &listed.items {
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
