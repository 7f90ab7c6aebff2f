//! The child's environment, assembled from the plan and the outcomes of the resolution: pure (no
//! I/O, no network), and fail closed — if any required secret failed, or a value cannot be
//! delivered (a NUL byte, too large for exec), the result is every such failure, by variable, and
//! no environment at all.

use std::ffi::OsStr;

use crate::error::{Error, Failure, FailureClass, Problem};
use crate::launch::files::{self, FileSecret};
use crate::launch::{ChildEnv, ExecLimits};
use crate::plan::{self, Part, Plan, Value};
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
    let mut failures = Vec::new();
    let failure = |var: &plan::Var, index: usize, problem: Problem| Failure {
        variable: var.name.to_string_lossy().into_owned(),
        location: var.location.to_string(),
        secret: plan.secrets[index].to_string(),
        problem,
    };
    for var in &plan.vars {
        // The resolved value, its content type, and the first secret in it (for error messages).
        let (value, content_type, first) = match &var.value {
            Value::Literal(value) => {
                env.push((var.name.clone(), value.clone()));
                continue;
            }
            Value::Secret { index, optional } => match &outcomes[*index] {
                Ok(value) => (
                    zeroize::Zeroizing::new(value.expose().to_owned()),
                    value.content_type(),
                    *index,
                ),
                Err(e) if *optional && e.problem.class == FailureClass::NotFound => {
                    tracing::warn!(
                        "{}: optional secret {} for {} not used: {}",
                        var.location,
                        plan.secrets[*index],
                        var.name.to_string_lossy(),
                        e.problem
                    );
                    continue;
                }
                Err(e) => {
                    failures.push(failure(var, *index, e.problem.clone()));
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
                        Part::Secret(index) => {
                            first.get_or_insert(*index);
                            match &outcomes[*index] {
                                Ok(secret) => value.push_str(secret.expose()),
                                Err(e) => {
                                    ok = false;
                                    failures.push(failure(var, *index, e.problem.clone()));
                                }
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
            failures.push(failure(
                var,
                first,
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
                        optional: false,
                    },
                ),
                var(
                    "URL",
                    Value::Template(vec![
                        Part::Text("postgres://app:".into()),
                        Part::Secret(0),
                        Part::Text("@db".into()),
                    ]),
                ),
            ],
            secrets: vec![secret("db")],
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
    fn any_failure_yields_no_environment_but_every_failure() {
        let plan = Plan {
            vars: vec![
                var(
                    "A",
                    Value::Secret {
                        index: 0,
                        optional: false,
                    },
                ),
                var("B", Value::Template(vec![Part::Secret(1)])),
                var(
                    "C",
                    Value::Secret {
                        index: 2,
                        optional: true,
                    },
                ),
            ],
            secrets: vec![secret("a"), secret("b"), secret("c")],
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
                    optional: true,
                },
            )],
            secrets: vec![secret("c")],
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
                    optional: false,
                },
            )],
            secrets: vec![secret("nul")],
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
