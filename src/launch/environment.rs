//! The child's environment, assembled from the plan and the outcomes of the resolution: pure (no
//! I/O, no network), and fail closed — if any required secret failed, or a value cannot be
//! delivered (a NUL byte, too large for exec), the result is every such failure, by variable, and
//! no environment at all.

use std::ffi::OsStr;

use crate::error::{Error, Failure, FailureClass, Problem};
use crate::launch::files::{self, FileSecret};
use crate::launch::{ChildEnv, ExecLimits};
use crate::pick::Pick;
use crate::plan::{self, Part, Plan, Value};
use crate::reference::Shown;
use crate::resolve::Outcome;

/// The child's environment from a plan and its outcomes (fail closed), without the variables
/// named in `hidden` (`--hide-credentials`: kvrun's own credential secrets).
///
/// # Errors
/// [`Error::Unresolved`] with every failure: a required secret that failed, a value that cannot be
/// delivered.
pub(crate) fn child_env(
    plan: &Plan,
    outcomes: &[Outcome],
    hidden: &[&str],
) -> Result<ChildEnv, Error> {
    let mut env = assemble(plan, outcomes)?;
    env.vars
        .retain(|(name, _)| !hidden.iter().any(|h| name == h));
    Ok(env)
}

/// The child's environment from the plan and the outcomes; fail closed if anything required failed.
fn assemble(plan: &Plan, outcomes: &[Outcome]) -> Result<ChildEnv, Error> {
    let mut env = Vec::with_capacity(plan.vars.len());
    let mut files = Vec::new();
    // A bundle that could not be used comes first: it may be why a variable is missing.
    let mut failures = plan.refused.clone();
    let failure = |var: &plan::Var, index: usize, pick: Option<&Pick>, problem: Problem| {
        let secret = &plan.secrets[index];
        Failure {
            variable: var.name.to_string_lossy().into_owned(),
            location: var.location.to_string(),
            secret: Shown(secret, pick).to_string(),
            problem,
        }
    };
    for var in &plan.vars {
        // The resolved value, its content type, and the first secret in it (for error messages).
        let (value, content_type, first) = match &var.value {
            Value::Literal(value) => {
                env.push((var.name.clone(), value.clone()));
                continue;
            }
            Value::Setting(index) => {
                failures.push(unread(plan, var, *index));
                continue;
            }
            Value::Bundled { index, value } => (value.clone(), None, *index),
            Value::Secret {
                index,
                pick,
                optional,
            } => match given(
                var,
                &plan.secrets[*index],
                pick.as_ref(),
                *optional,
                &outcomes[*index],
            ) {
                Given::Value(value, content_type) => (value, content_type, *index),
                Given::Skipped => continue,
                Given::Failed(problem) => {
                    failures.push(failure(var, *index, pick.as_ref(), problem));
                    continue;
                }
            },
            Value::Template(parts) => {
                let mut value = zeroize::Zeroizing::new(String::new());
                let mut first = None;
                let mut ok = true;
                for part in parts {
                    match part {
                        Part::Text(text) => value.push_str(text),
                        Part::Secret(index, pick) => {
                            first.get_or_insert(*index);
                            let secret = &plan.secrets[*index];
                            let taken = given(var, secret, pick.as_ref(), false, &outcomes[*index]);
                            match taken {
                                Given::Value(taken, _) => value.push_str(&taken),
                                Given::Failed(problem) => {
                                    ok = false;
                                    failures.push(failure(var, *index, pick.as_ref(), problem));
                                }
                                Given::Skipped => unreachable!("a template's secret is required"),
                            }
                        }
                    }
                }
                if !ok {
                    continue;
                }
                (value, None, first.unwrap_or_default())
            }
        };
        let delivered = match &var.file {
            Some(spec) => files::decode(&value, content_type).map(|contents| {
                files.push(FileSecret {
                    var: var.name.clone(),
                    contents,
                    spec: spec.clone(),
                });
            }),
            None => unfit_for_environment(&var.name, value.as_bytes())
                .map_or(Ok(()), Err)
                .map(|()| env.push((var.name.clone(), value.as_str().into()))),
        };
        if let Err(reason) = delivered {
            // The field or part the value came from, so the failure names what `check` shows.
            let pick = pick_of(var, first);
            failures.push(failure(
                var,
                first,
                pick,
                Problem::new(FailureClass::BadValue, reason),
            ));
        }
    }
    if failures.is_empty() {
        Ok(ChildEnv { vars: env, files })
    } else {
        Err(Error::Unresolved { failures })
    }
}

/// A variable whose App Configuration key-value was not read: never expected (the key-values are
/// read and put in place before assembly), and never started without.
fn unread(plan: &Plan, var: &plan::Var, index: usize) -> Failure {
    Failure {
        variable: var.name.to_string_lossy().into_owned(),
        location: var.location.to_string(),
        secret: plan.settings[index].shown(),
        problem: crate::error::Problem::new(
            crate::error::FailureClass::Protocol,
            "the App Configuration key-value was not read",
        ),
    }
}

/// The field or part of secret `index` that `var` takes, if it takes one.
fn pick_of(var: &plan::Var, index: usize) -> Option<&Pick> {
    match &var.value {
        Value::Secret { pick, .. } => pick.as_ref(),
        Value::Template(parts) => parts.iter().find_map(|part| match part {
            Part::Secret(i, pick) if *i == index => pick.as_ref(),
            _ => None,
        }),
        Value::Literal(_) | Value::Bundled { .. } | Value::Setting(_) => None,
    }
}

/// What one secret (or one field of it) gives a variable.
enum Given<'o> {
    /// The value, and the secret's content type when the variable takes it whole.
    Value(zeroize::Zeroizing<String>, Option<&'o str>),
    /// Optional and not there: warned about, the variable stays unset.
    Skipped,
    Failed(Problem),
}

/// The value `secret`'s outcome gives `var`: all of it, or `pick` of it.
fn given<'o>(
    var: &plan::Var,
    secret: &crate::reference::SecretRef,
    pick: Option<&Pick>,
    optional: bool,
    outcome: &'o Outcome,
) -> Given<'o> {
    let name = var.name.to_string_lossy();
    let value = match outcome {
        Ok(value) => value,
        Err(e) if optional && e.problem.class == FailureClass::NotFound => {
            tracing::warn!(
                "{}: optional secret {secret} for {name} not used: {}",
                var.location,
                e.problem
            );
            return Given::Skipped;
        }
        Err(e) => return Given::Failed(e.problem.clone()),
    };
    let Some(pick) = pick else {
        return Given::Value(
            zeroize::Zeroizing::new(value.expose().to_owned()),
            value.content_type(),
        );
    };
    match pick.take(value.expose(), value.content_type()) {
        // The PFX is delivered as the secret is, base64 decoded into its file.
        Ok(taken) if pick.part() == Some(crate::part::Part::Pkcs12) => {
            Given::Value(taken, value.content_type())
        }
        Ok(taken) => Given::Value(taken, None),
        Err(missing) if optional && missing.is_absence() => {
            tracing::warn!(
                "{}: optional field '{pick}' of {secret} for {name} not used: {}",
                var.location,
                pick.describe(&missing)
            );
            Given::Skipped
        }
        Err(missing) => Given::Failed(Problem::new(missing.class(), pick.describe(&missing))),
    }
}

/// Linux refuses one environment string (`NAME=value` and its NUL) over 128 KiB
/// (`MAX_ARG_STRLEN`), and no environment string can hold a NUL byte: say so by name instead of
/// failing at exec.
pub(crate) fn unfit_for_environment(name: &OsStr, value: &[u8]) -> Option<String> {
    const MAX_ARG_STRLEN: usize = ExecLimits::MAX_ARG_STRLEN;
    if value.contains(&0) {
        return Some(
            "the value contains a NUL byte, which no environment variable can hold".into(),
        );
    }
    if name.len() + 1 + value.len() + 1 > MAX_ARG_STRLEN {
        return Some(format!(
            "the value is {} bytes, more than an environment variable can hold (128 KiB with its name)",
            value.len()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::reference::SecretRef;
    use crate::source::Location;
    use crate::vault::{FetchError, SecretValue};

    fn secret(name: &str) -> SecretRef {
        SecretRef {
            vault_url: "https://kv.vault.azure.net".into(),
            name: name.into(),
            version: None,
        }
    }

    fn var(name: &str, value: Value) -> plan::Var {
        plan::Var {
            name: name.into(),
            value,
            location: Location::DotEnv {
                path: ".env".into(),
                line: 1,
            },
            file: None,
        }
    }

    #[expect(
        clippy::unnecessary_wraps,
        reason = "an outcome, as the resolution hands it over"
    )]
    fn ok(value: &str) -> Outcome {
        Ok(SecretValue::answered(value, None))
    }

    fn failed(class: FailureClass, reason: &str) -> Outcome {
        Err(FetchError {
            problem: Problem::new(class, reason),
            vault_wide: false,
        })
    }

    fn vars(env: &ChildEnv) -> Vec<(String, String)> {
        env.vars
            .iter()
            .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
            .collect()
    }

    #[test]
    fn literals_secrets_and_templates_become_variables_in_plan_order() {
        let plan = Plan {
            vars: vec![
                var("PLAIN", Value::Literal(OsString::from("as is"))),
                var(
                    "DB_PASSWORD",
                    Value::Secret {
                        index: 0,
                        pick: None,
                        optional: false,
                    },
                ),
                var(
                    "URL",
                    Value::Template(vec![
                        Part::Text("postgres://app:".into()),
                        Part::Secret(0, None),
                        Part::Text("@db".into()),
                    ]),
                ),
            ],
            secrets: vec![secret("db")],
            ..Plan::default()
        };
        let env = child_env(&plan, &[ok("pw")], &[]).expect("assembled");
        assert_eq!(
            vars(&env),
            [
                ("PLAIN".into(), "as is".into()),
                ("DB_PASSWORD".into(), "pw".into()),
                ("URL".into(), "postgres://app:pw@db".into()),
            ]
        );
        assert!(env.files.is_empty());
    }

    #[test]
    fn one_outcome_yields_many_variables_by_field() {
        let field = |text: &str| Some(Pick::Field(crate::field::Field::parse(text).unwrap()));
        let take = |name: &str, text: &str, optional: bool| {
            var(
                name,
                Value::Secret {
                    index: 0,
                    pick: field(text),
                    optional,
                },
            )
        };
        let json = r#"{"user":"app","pass":"pw","port":5432,"tls":{"on":true}}"#;
        let plan = Plan {
            vars: vec![
                take("USER", "user", false),
                take("TLS", "/tls", false),
                take("GONE", "gone", true),
                var(
                    "DSN",
                    Value::Template(vec![
                        Part::Secret(0, field("user")),
                        Part::Text(":".into()),
                        Part::Secret(0, field("pass")),
                        Part::Text("@db:".into()),
                        Part::Secret(0, field("/port")),
                    ]),
                ),
            ],
            secrets: vec![secret("db")],
            ..Plan::default()
        };
        let env = child_env(&plan, &[ok(json)], &[]).expect("assembled");
        assert_eq!(
            vars(&env),
            [
                ("USER".into(), "app".into()),
                ("TLS".into(), r#"{"on":true}"#.into()),
                ("DSN".into(), "app:pw@db:5432".into()),
            ]
        );
        // Required: a missing field fails by name, with the field in the secret's column.
        let plan = Plan {
            vars: vec![take("GONE", "gone", false)],
            secrets: vec![secret("db")],
            ..Plan::default()
        };
        let Err(Error::Unresolved { failures }) = child_env(&plan, &[ok(json)], &[]) else {
            panic!("a required field is missing");
        };
        assert_eq!(
            failures[0].secret,
            "https://kv.vault.azure.net/secrets/db?field=gone"
        );
        assert_eq!(failures[0].problem.class, FailureClass::NotFound);
        assert_eq!(
            failures[0].problem.to_string(),
            "the secret's JSON value has no field 'gone'"
        );
    }

    #[test]
    fn any_failure_yields_no_environment_but_every_failure() {
        let plan = Plan {
            vars: vec![
                var(
                    "A",
                    Value::Secret {
                        index: 0,
                        pick: None,
                        optional: false,
                    },
                ),
                var("B", Value::Template(vec![Part::Secret(1, None)])),
                var(
                    "C",
                    Value::Secret {
                        index: 2,
                        pick: None,
                        optional: true,
                    },
                ),
            ],
            secrets: vec![secret("a"), secret("b"), secret("c")],
            ..Plan::default()
        };
        let outcomes = [
            failed(FailureClass::NotFound, "not found"),
            failed(FailureClass::Authorization, "forbidden"),
            failed(FailureClass::NotFound, "not found"),
        ];
        let Err(Error::Unresolved { failures }) = child_env(&plan, &outcomes, &[]) else {
            panic!("a required secret failed: no environment");
        };
        let named: Vec<(&str, &str, FailureClass)> = failures
            .iter()
            .map(|f| (f.variable.as_str(), f.secret.as_str(), f.problem.class))
            .collect();
        // C is optional and not found: left out, not a failure.
        assert_eq!(
            named,
            [
                (
                    "A",
                    "https://kv.vault.azure.net/secrets/a",
                    FailureClass::NotFound
                ),
                (
                    "B",
                    "https://kv.vault.azure.net/secrets/b",
                    FailureClass::Authorization
                ),
            ]
        );
    }

    #[test]
    fn an_optional_secret_not_found_leaves_its_variable_unset() {
        let plan = Plan {
            vars: vec![var(
                "C",
                Value::Secret {
                    index: 0,
                    pick: None,
                    optional: true,
                },
            )],
            secrets: vec![secret("c")],
            ..Plan::default()
        };
        let env = child_env(&plan, &[failed(FailureClass::NotFound, "not found")], &[])
            .expect("optional");
        assert!(env.vars.is_empty());
    }

    #[test]
    fn a_value_exec_cannot_carry_fails_by_name() {
        let plan = Plan {
            vars: vec![var(
                "NUL",
                Value::Secret {
                    index: 0,
                    pick: None,
                    optional: false,
                },
            )],
            secrets: vec![secret("nul")],
            ..Plan::default()
        };
        let Err(Error::Unresolved { failures }) = child_env(&plan, &[ok("a\0b")], &[]) else {
            panic!("a NUL byte cannot be delivered");
        };
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].variable, "NUL");
        assert_eq!(failures[0].problem.class, FailureClass::BadValue);
    }

    #[test]
    fn hidden_variables_are_left_out_and_only_they() {
        let plan = Plan {
            vars: vec![
                var("AZURE_CLIENT_SECRET", Value::Literal("s".into())),
                var("AZURE_CLIENT_ID", Value::Literal("id".into())),
            ],
            secrets: vec![],
            ..Plan::default()
        };
        let shown = child_env(&plan, &[], &[]).expect("assembled");
        assert_eq!(shown.vars.len(), 2);
        let hidden = child_env(&plan, &[], &["AZURE_CLIENT_SECRET"]).expect("assembled");
        assert_eq!(vars(&hidden), [("AZURE_CLIENT_ID".into(), "id".into())]);
    }

    #[test]
    fn values_exec_cannot_carry_are_named() {
        assert_eq!(unfit_for_environment("A".as_ref(), b"ok"), None);
        let limit = ExecLimits::MAX_ARG_STRLEN;
        // NAME=value and its NUL: exactly the limit fits, one byte more does not.
        assert_eq!(
            unfit_for_environment("A".as_ref(), &vec![b'x'; limit - 3]),
            None
        );
        assert_eq!(
            unfit_for_environment("A".as_ref(), &vec![b'x'; limit - 2]).as_deref(),
            Some(
                "the value is 131070 bytes, more than an environment variable can hold (128 KiB with its name)"
            )
        );
        assert!(unfit_for_environment("A".as_ref(), b"a\0b").is_some());
    }
}
