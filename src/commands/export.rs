//! `kvrun export`: the resolved variables, quoted for one consumer.
//!
//! A variable from an App Configuration store is preceded by a comment naming its origin,
//! `# appconfig:myconfig/myapp:Db:Host@prod` (a Key Vault reference's also names the secret,
//! `… -> myvault.vault.azure.net/secrets/db-password`), in every format but `json`, which has no
//! comments (`kvrun check --json` gives every origin).
//!
//! What is exported: the variables kvrun manages — everything from `.env` files and the manifest,
//! and every inherited variable that held a reference — not the rest of the inherited environment.
//! A secret that a run delivers as a file (`file = true`, `--file-var`) is refused by name: in a
//! run the variable holds the file's path, and printing the value instead would hand key material
//! to an app that expects a path (refused before any request; a plain path set by hand in such a
//! variable is exported as it is). A format that cannot hold a value exactly is
//! refused with the variable's name; nothing is ever written wrongly:
//!
//! | format | quoting | refused |
//! |---|---|---|
//! | `dotenv` | `'…'`, else `"…"`, else `` `…` `` (the npm dotenv package's three quotes, multi-line inside) | a value with all three quote characters; a `\r` (dotenv turns it into `\n`); `\n`/`\r` escapes inside `"…"`, which dotenv expands |
//! | `shell` | `export NAME='…'` (`'` as `'\''`) for POSIX shells | a name that is not a shell identifier |
//! | `json` | one object, `{"NAME": "value"}` | a name or value that is not UTF-8 |
//! | `docker` | `NAME=value`, as `docker run --env-file` reads it: no quoting at all | a line break in a value; a name with whitespace or `=`, or starting with `#` |

use super::{plan_run, print, resolve_plan, several};
pub(crate) use crate::cli::Format;
use crate::error::Error;
use crate::launch::environment::child_env;
use crate::plan::{self, Value};
use crate::settings::Settings;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;

/// Why a variable cannot be written in a format. Names the variable, never shows the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused {
    pub variable: String,
    pub reason: &'static str,
}

/// The variables in `format`, or every variable it cannot hold. A variable that `origins` names
/// is preceded by a comment line `# ORIGIN` (in `dotenv`, `shell` and `docker`; JSON has no
/// comments); line breaks in an origin become spaces.
///
/// # Errors
/// Each variable the format cannot represent exactly.
pub(crate) fn render(
    format: Format,
    vars: &[(OsString, OsString)],
    origins: &HashMap<&OsStr, String>,
) -> Result<String, Vec<Refused>> {
    let mut out = String::new();
    let mut refused = Vec::new();
    let mut json = serde_json::Map::new();
    for (name, value) in vars {
        let refuse = |reason| Refused {
            variable: name.to_string_lossy().into_owned(),
            reason,
        };
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            refused.push(refuse("not UTF-8"));
            continue;
        };
        let line = match format {
            Format::Dotenv => dotenv_line(name, value),
            Format::Shell => shell_line(name, value),
            Format::Docker => docker_line(name, value),
            Format::Json => {
                json.insert(name.to_owned(), serde_json::Value::String(value.to_owned()));
                continue;
            }
        };
        match line {
            Ok(line) => {
                if let Some(origin) = origins.get(OsStr::new(name)) {
                    let _ = writeln!(out, "# {}", origin.replace(['\n', '\r'], " "));
                }
                out.push_str(&line);
                out.push('\n');
            }
            Err(reason) => refused.push(refuse(reason)),
        }
    }
    if format == Format::Json && refused.is_empty() {
        out = serde_json::to_string_pretty(&json).unwrap_or_default();
        out.push('\n');
    }
    if refused.is_empty() {
        Ok(out)
    } else {
        Err(refused)
    }
}

/// dotenv's key pattern (`[\w.-]+`).
fn is_dotenv_key(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn dotenv_line(name: &str, value: &str) -> Result<String, &'static str> {
    if !is_dotenv_key(name) {
        return Err("the name is not a dotenv key ([A-Za-z0-9_.-]+)");
    }
    if value.contains('\r') {
        return Err("a carriage return, which dotenv turns into a line feed");
    }
    // dotenv expands \n and \r escapes inside double quotes only.
    let quote = if !value.contains('\'') {
        '\''
    } else if !value.contains('"') && !value.contains("\\n") && !value.contains("\\r") {
        '"'
    } else if !value.contains('`') {
        '`'
    } else {
        return Err("the value holds all three of dotenv's quote characters");
    };
    Ok(format!("{name}={quote}{value}{quote}"))
}

fn is_shell_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn shell_line(name: &str, value: &str) -> Result<String, &'static str> {
    if !is_shell_name(name) {
        return Err("the name is not a shell variable name ([A-Za-z_][A-Za-z0-9_]*)");
    }
    let mut line = format!("export {name}='");
    for c in value.chars() {
        if c == '\'' {
            line.push_str("'\\''");
        } else {
            line.push(c);
        }
    }
    line.push('\'');
    Ok(line)
}

fn docker_line(name: &str, value: &str) -> Result<String, &'static str> {
    if name.is_empty()
        || name.starts_with('#')
        || name.contains(['=', '\0'])
        || name.chars().any(char::is_whitespace)
    {
        return Err("docker --env-file cannot hold this name");
    }
    if value.contains(['\n', '\r']) {
        return Err("docker --env-file has no quoting and cannot hold a line break");
    }
    let mut line = String::new();
    let _ = write!(line, "{name}={value}");
    Ok(line)
}

/// Refuse, by name, the variables a run would deliver as files.
fn refuse_files<'p>(vars: impl Iterator<Item = &'p plan::Var>) -> Result<(), Error> {
    let refused: Vec<Error> = vars
        .map(|var| Error::BadInput {
            location: var.location.naming(&var.name),
            message: "a run delivers this secret as a file and puts the file's path in the variable; export cannot write a file, so it refuses the variable".into(),
            hint: Some("leave the variable out of the export (or drop --file-var / `file = true` for it)".into()),
        })
        .collect();
    if refused.is_empty() {
        Ok(())
    } else {
        Err(several(refused))
    }
}

/// `kvrun export`: resolve as a run would, print the managed variables in `format`.
pub(crate) fn export(
    format: Format,
    settings: &Settings,
    environment: &[(OsString, OsString)],
) -> Result<(), Error> {
    use std::io::IsTerminal as _;
    let plan = plan_run(&settings.sources, environment)?;
    // A variable that a run delivers as a file holds the file's *path* in a run: printing its
    // value would hand key material to an app that expects a path. Refused by name, before any
    // request (a bundle's, once it is known). (A plain value there, a path set by hand, is
    // exported as it is.)
    let as_file = |var: &plan::Var| {
        var.is_managed() && var.file.is_some() && !matches!(var.value, Value::Literal(_))
    };
    refuse_files(plan.vars.iter().filter(|var| as_file(var)))?;
    let (mut plan, outcomes) = resolve_plan(plan, settings, environment)?;
    refuse_files(plan.vars.iter().filter(|var| as_file(var)))?;
    // Only now: an inherited variable that is left out still wins over a bundle's.
    plan.vars.retain(plan::Var::is_managed);
    let env = child_env(&plan, &outcomes, settings.hidden)?;
    // A store's variables appear from nowhere a reader of the output could see: each is preceded
    // by its origin (and, for a Key Vault reference, the secret).
    let origins: HashMap<&OsStr, String> = plan
        .vars
        .iter()
        .filter(|var| matches!(var.location, crate::source::Location::AppConfig { .. }))
        .map(|var| {
            let origin = match &var.value {
                Value::Secret { index, .. } => {
                    let secret = &plan.secrets[*index];
                    format!(
                        "{} -> {}/secrets/{}",
                        var.location,
                        secret.vault_host(),
                        secret.name
                    )
                }
                _ => var.location.to_string(),
            };
            (var.name.as_os_str(), origin)
        })
        .collect();
    let text = render(format, &env.vars, &origins).map_err(|refused| {
        several(
            refused
                .into_iter()
                .map(|r| Error::bad_input(r.variable, r.reason))
                .collect(),
        )
    })?;
    let text = zeroize::Zeroizing::new(text);
    if std::io::stdout().is_terminal() {
        tracing::warn!("writing secret values to a terminal");
    }
    print(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    /// dotenv output read back by kvrun's own reader (which agrees with npm dotenv, see
    /// `tests/dotenv_differential.rs`) gives the same values; the npm package itself reads it back
    /// in `tests/it/export.rs`.
    #[test]
    fn dotenv_round_trips_through_the_reader() {
        let values = [
            "plain",
            "it's",
            "it's \"both\"",
            "it's \"all\" `three`",
            "multi\nline\n",
            "back\\nslash",
            "  padded  ",
            "# not a comment",
            "",
            "$HOME ${X}",
        ];
        for value in values {
            let input = vars(&[("KEY", value)]);
            match render(Format::Dotenv, &input, &HashMap::new()) {
                Ok(text) => {
                    let parsed = crate::source::dotenv::parse(text.as_bytes()).unwrap();
                    assert_eq!(parsed.entries.len(), 1, "{text:?}");
                    assert_eq!(parsed.entries[0].value, value, "{text:?}");
                }
                Err(refused) => {
                    assert_eq!(value, "it's \"all\" `three`", "{refused:?}");
                }
            }
        }
    }

    #[test]
    fn refusals_name_the_variable_never_the_value() {
        let input = vars(&[("OK", "x"), ("BAD", "a\nb"), ("has space", "v")]);
        let refused = render(Format::Docker, &input, &HashMap::new()).unwrap_err();
        assert_eq!(
            refused
                .iter()
                .map(|r| r.variable.as_str())
                .collect::<Vec<_>>(),
            ["BAD", "has space"]
        );
        assert!(refused.iter().all(|r| !r.reason.contains("a\nb")));
        assert!(render(Format::Shell, &vars(&[("1X", "v")]), &HashMap::new()).is_err());
        assert!(render(Format::Dotenv, &vars(&[("K", "a\rb")]), &HashMap::new()).is_err());
    }

    #[test]
    fn shell_and_docker_and_json() {
        let input = vars(&[("A", "it's $x"), ("B", "two words")]);
        assert_eq!(
            render(Format::Shell, &input, &HashMap::new()).unwrap(),
            "export A='it'\\''s $x'\nexport B='two words'\n"
        );
        assert_eq!(
            render(Format::Docker, &input, &HashMap::new()).unwrap(),
            "A=it's $x\nB=two words\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(Format::Json, &input, &HashMap::new()).unwrap()).unwrap();
        assert_eq!(json["A"], "it's $x");
    }

    #[test]
    fn origins_are_one_comment_line_before_their_variable_and_none_in_json() {
        let input = vars(&[("A", "1"), ("B", "2")]);
        let origins = HashMap::from([(OsStr::new("B"), "appconfig:s/k\nX=1".to_owned())]);
        assert_eq!(
            render(Format::Dotenv, &input, &origins).unwrap(),
            "A='1'\n# appconfig:s/k X=1\nB='2'\n"
        );
        assert_eq!(
            render(Format::Docker, &input, &origins).unwrap(),
            "A=1\n# appconfig:s/k X=1\nB=2\n"
        );
        let json = render(Format::Json, &input, &origins).unwrap();
        assert!(!json.contains('#'), "{json}");
    }
}
