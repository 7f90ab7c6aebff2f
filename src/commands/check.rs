//! `kvrun check`: resolve every reference without running anything and report, per variable and
//! secret, where it came from, what was asked for, how it went and how long it took — never a
//! value. For CI and deploy pipelines: "will this pod start?" The exit code is a run's, with one
//! deliberate exception: finding no reference at all (no `.env`, no manifest, nothing in the
//! environment) fails with 66, so that a gate run in the wrong directory does not pass — a run
//! with nothing to fetch would still start its command. A value that resolves but that a run
//! would refuse (a NUL byte, too large for the environment) is reported in its row as such.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use super::run::preflight;
use super::{fetch_all, plan_run, print, vault_client};
use crate::error::{Error, Failure, FailureClass};
use crate::launch::environment::child_env;
use crate::plan::{self, Part};
use crate::settings::{Settings, Sources};
use crate::source::Location;
use crate::source::files::WhichManifest;

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// One secret of one variable.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub variable: String,
    /// Where the variable is defined: `file:line` or `environment`. Printed under ORIGIN, and
    /// `origin` in the JSON, the names users' scripts already read.
    #[serde(rename = "origin")]
    pub location: String,
    pub vault: String,
    pub secret: String,
    /// The field of the secret's JSON value the variable takes, if only one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The part of a certificate-backed secret the variable takes (`key`, `cert`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    /// The pinned version, or `latest`.
    pub version: String,
    /// The version that answered (for `latest`, what it resolved to); `None` when none did.
    pub resolved_version: Option<String>,
    /// `ok`, `optional, not found`, or the failure class.
    pub status: String,
    /// Why it failed; `None` when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Time spent on this secret's requests, retries included.
    pub latency_ms: Option<u64>,
}

impl Row {
    /// The row of a whole secret (no field, no part) for `variable` defined at `location`.
    fn of_secret(
        variable: String,
        location: String,
        (status, reason): (String, Option<String>),
        secret: &crate::reference::SecretRef,
        outcome: &crate::resolve::Outcome,
        client: &crate::vault::VaultClient,
    ) -> Row {
        Row {
            variable,
            location,
            vault: secret.vault_host().to_owned(),
            secret: secret.name.clone(),
            field: None,
            part: None,
            version: secret
                .version
                .clone()
                .unwrap_or_else(|| "latest".to_owned()),
            resolved_version: outcome
                .as_ref()
                .ok()
                .and_then(|value| value.version().map(str::to_owned)),
            status,
            reason,
            latency_ms: Row::latency(client.spent(secret)),
        }
    }

    /// The row of a plain setting from App Configuration (its origin, no secret); `None` for
    /// any other plain value.
    fn of_setting(var: &plan::Var) -> Option<Row> {
        if !matches!(var.location, Location::AppConfig { .. }) {
            return None;
        }
        Some(Row {
            variable: var.name.to_string_lossy().into_owned(),
            location: var.location.to_string(),
            vault: "-".to_owned(),
            secret: "-".to_owned(),
            field: None,
            part: None,
            version: "-".to_owned(),
            resolved_version: None,
            status: "ok".to_owned(),
            reason: None,
            latency_ms: None,
        })
    }

    #[must_use]
    pub(crate) fn latency(duration: Option<Duration>) -> Option<u64> {
        duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A table with aligned columns; failure reasons on their own indented lines below their row.
#[must_use]
pub(crate) fn table(rows: &[Row]) -> String {
    let header = [
        "VARIABLE", "ORIGIN", "VAULT", "SECRET", "VERSION", "STATUS", "LATENCY",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.variable.clone(),
                r.location.clone(),
                r.vault.clone(),
                match (&r.field, &r.part) {
                    (Some(field), _) => format!("{}?field={field}", r.secret),
                    (None, Some(part)) => format!("{}?part={part}", r.secret),
                    (None, None) => r.secret.clone(),
                },
                match (r.version.as_str(), &r.resolved_version) {
                    // A short form in the table, as git shows commits; the JSON has it whole.
                    ("latest", Some(resolved)) => {
                        format!("latest ({})", resolved.chars().take(8).collect::<String>())
                    }
                    (version, _) => version.to_owned(),
                },
                r.status.clone(),
                r.latency_ms
                    .map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms")),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, row: &[String]| {
        let mut text = String::new();
        for (cell, w) in row.iter().zip(widths) {
            let _ = write!(text, "{cell:<w$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, &header.map(str::to_owned));
    for (row, r) in cells.iter().zip(rows) {
        line(&mut out, row);
        if let Some(reason) = &r.reason {
            let _ = writeln!(out, "    {reason}");
        }
    }
    out
}

/// `kvrun check`: resolve as a run would, report every secret of every variable, exit as a run —
/// except with nothing to check at all, which fails (66): a deploy gate run in the wrong
/// directory must not pass. (A run with nothing to fetch still starts its command.)
pub(crate) fn check(
    json: bool,
    settings: &Settings,
    environment: &[(OsString, OsString)],
) -> Result<(), Error> {
    let plan = plan_run(&settings.sources, environment)?;
    // A literal the run would refuse fails the check the same way.
    preflight(&plan, &[])?;
    if plan.secrets.is_empty() && plan.stores.is_empty() && plan.settings.is_empty() {
        return Err(Error::NoReferences {
            looked: where_check_looked(&settings.sources),
        });
    }
    let client = Arc::new(vault_client(settings, environment)?.keeping_time_spent());
    let (plan, outcomes) = fetch_all(plan, settings, client.clone())?;
    // The run's verdict, computed first so that each row carries what would fail it (a value no
    // environment variable can hold resolves fine but fails the run).
    let verdict = child_env(&plan, &outcomes, settings.hidden).map(|_| ());
    let verdict = with_empty_stores(verdict, &plan);
    let refused: &[Failure] = match &verdict {
        Err(Error::Unresolved { failures }) => failures,
        _ => &[],
    };
    let mut rows = Vec::new();
    for var in &plan.vars {
        let (indices, optional) = match &var.value {
            plan::Value::Setting(_) => continue,
            plan::Value::Literal(_) => {
                rows.extend(Row::of_setting(var));
                continue;
            }
            plan::Value::Bundled { index, .. } => (vec![(*index, None)], false),
            plan::Value::Secret {
                index,
                pick,
                optional,
            } => (vec![(*index, pick.as_ref())], *optional),
            plan::Value::Template(parts) => (
                parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::Secret(i, pick) => Some((*i, pick.as_ref())),
                        Part::Text(_) => None,
                    })
                    .collect(),
                false,
            ),
        };
        for (index, pick) in indices {
            let secret = &plan.secrets[index];
            let variable = var.name.to_string_lossy();
            let shown = crate::reference::Shown(secret, pick).to_string();
            // What the assembly refused of a value that resolved: one no environment can hold, a
            // field the value does not have.
            let refusal = refused
                .iter()
                .find(|f| f.variable == variable && f.secret == shown);
            let optional_field_missing = optional
                && pick.is_some_and(|pick| {
                    outcomes[index].as_ref().is_ok_and(|value| {
                        pick.take(value.expose(), value.content_type())
                            .is_err_and(|missing| missing.is_absence())
                    })
                });
            let (status, reason) = match (&outcomes[index], refusal) {
                (Ok(_), _) if optional_field_missing => ("optional, not found".to_owned(), None),
                (Ok(_), Some(refusal)) => (
                    refusal.problem.class.to_string(),
                    Some(refusal.problem.to_string()),
                ),
                (Ok(_), None) => ("ok".to_owned(), None),
                (Err(e), _) if optional && e.problem.class == FailureClass::NotFound => {
                    ("optional, not found".to_owned(), None)
                }
                (Err(e), _) => (e.problem.class.to_string(), Some(e.problem.to_string())),
            };
            rows.push(Row {
                field: pick
                    .and_then(crate::pick::Pick::field)
                    .map(ToString::to_string),
                part: pick
                    .and_then(crate::pick::Pick::part)
                    .map(|part| part.as_str().to_owned()),
                ..Row::of_secret(
                    var.name.to_string_lossy().into_owned(),
                    var.location.to_string(),
                    (status, reason),
                    secret,
                    &outcomes[index],
                    &client,
                )
            });
        }
    }
    rows.extend(unused_bundles(&plan, &outcomes, refused, &client));
    rows.extend(store_rows(&plan, refused));
    let text = if json {
        let mut text = serde_json::to_string_pretty(&rows)
            .map_err(|e| Error::Internal(format!("cannot write JSON: {e}")))?;
        text.push('\n');
        text
    } else {
        table(&rows)
    };
    print(text.as_bytes())?;
    // The same verdict, and so the same exit code, as a run; in check's own words (nothing was
    // going to be started).
    verdict.map_err(|e| match e {
        Error::Unresolved { failures } => Error::CheckFailed { failures },
        other => other,
    })
}

/// A store whose selection matched nothing fails the check (a run only warns): a gate must not
/// pass with a selector that reads nothing.
fn with_empty_stores(verdict: Result<(), Error>, plan: &plan::Plan) -> Result<(), Error> {
    let empty = empty_stores(plan);
    match verdict {
        _ if empty.is_empty() => verdict,
        Ok(()) => Err(Error::Unresolved { failures: empty }),
        Err(Error::Unresolved { mut failures }) => {
            failures.extend(empty);
            Err(Error::Unresolved { failures })
        }
        Err(other) => Err(other),
    }
}

/// The failures of stores whose selection matched no key-values.
fn empty_stores(plan: &plan::Plan) -> Vec<Failure> {
    plan.empty_stores
        .iter()
        .map(|&i| {
            let store = &plan.stores[i];
            Failure {
                variable: store.label(),
                location: store.declared.to_string(),
                secret: store.endpoint.origin(),
                problem: crate::error::Problem::new(
                    FailureClass::NotFound,
                    "the selection matched no key-values",
                )
                .hint("check the selectors' keys and labels (no label selects key-values without one; @* any)"),
            }
        })
        .collect()
}

/// A row for each store whose list failed or matched nothing.
fn store_rows(plan: &plan::Plan, refused: &[Failure]) -> Vec<Row> {
    plan.stores
        .iter()
        .flat_map(|store| {
            let (label, location) = (store.label(), store.declared.to_string());
            refused
                .iter()
                .filter(move |f| f.variable == label && f.location == location)
                .map(move |f| Row {
                    variable: f.variable.clone(),
                    location: f.location.clone(),
                    vault: store.endpoint.host.clone(),
                    secret: "-".to_owned(),
                    field: None,
                    part: None,
                    version: "-".to_owned(),
                    resolved_version: None,
                    status: f.problem.class.to_string(),
                    reason: Some(f.problem.to_string()),
                    latency_ms: None,
                })
        })
        .collect()
}

/// A row for each bundle that gives the plan no variable (it failed, an optional one is missing,
/// or every one of its names is set elsewhere), so that it shows all the same.
fn unused_bundles(
    plan: &plan::Plan,
    outcomes: &[crate::resolve::Outcome],
    refused: &[Failure],
    client: &crate::vault::VaultClient,
) -> Vec<Row> {
    let gives = |bundle: &plan::Bundle, var: &plan::Var| match &var.location {
        Location::Bundle {
            secret, declared, ..
        } => *secret == bundle.declared.secret.name && **declared == bundle.declared.location,
        _ => false,
    };
    plan.bundles
        .iter()
        .filter(|bundle| !plan.vars.iter().any(|var| gives(bundle, var)))
        .map(|bundle| {
            let declared = &bundle.declared;
            let secret = &declared.secret;
            let outcome = &outcomes[bundle.index];
            let label = declared.label();
            let location = declared.location.to_string();
            let refusal = refused
                .iter()
                .find(|f| f.variable == label && f.location == location);
            let (status, reason) = match (outcome, refusal) {
                (Err(e), _) if declared.optional && e.problem.class == FailureClass::NotFound => {
                    ("optional, not found".to_owned(), None)
                }
                (_, Some(refusal)) => (
                    refusal.problem.class.to_string(),
                    Some(refusal.problem.to_string()),
                ),
                (Err(e), None) => (e.problem.class.to_string(), Some(e.problem.to_string())),
                (Ok(_), None) => ("ok".to_owned(), None),
            };
            Row::of_secret(label, location, (status, reason), secret, outcome, client)
        })
        .collect()
}

/// Where `check` looked for references: the `.env` files, the manifest, the environment.
fn where_check_looked(sources: &Sources) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let place = |path: &Path| {
        let shown = cwd.join(path).display().to_string();
        if path.is_file() {
            shown
        } else {
            format!("{shown} (no such file)")
        }
    };
    let mut places = Vec::new();
    if sources.default_dotenv && !sources.env_files.iter().any(|p| p == Path::new(".env")) {
        places.push(place(Path::new(".env")));
    }
    places.extend(sources.env_files.iter().map(|p| place(p)));
    match &sources.manifest {
        WhichManifest::Named(path) => places.push(place(path)),
        WhichManifest::Default => places.push(place(Path::new("kvrun.toml"))),
        WhichManifest::Off => {}
    }
    if !sources.no_resolve_env {
        places.push("its environment".to_owned());
    }
    match places.split_last() {
        None => "nothing (--no-dotenv, --no-manifest and --no-resolve-env)".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, others)) => format!("{} and {last}", others.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_reasons_follow_their_row() {
        let row = |variable: &str, status: &str, reason: Option<&str>| Row {
            variable: variable.into(),
            location: ".env:1".into(),
            vault: "kv.vault.azure.net".into(),
            secret: "db".into(),
            field: None,
            part: None,
            version: "latest".into(),
            resolved_version: None,
            status: status.into(),
            reason: reason.map(Into::into),
            latency_ms: Some(12),
        };
        let text = table(&[
            row("A_LONG_NAME", "ok", None),
            row("B", "not found", Some("404")),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].find("ORIGIN"), lines[1].find(".env:1"));
        assert_eq!(lines[3], "    404");
    }

    #[test]
    fn the_table_shows_what_latest_resolved_to_in_short() {
        let row = Row {
            variable: "DB".into(),
            location: ".env:1".into(),
            vault: "kv.vault.azure.net".into(),
            secret: "db".into(),
            field: None,
            part: None,
            version: "latest".into(),
            resolved_version: Some("4387e9f3d6e14c459867679a90fd0f79".into()),
            status: "ok".into(),
            reason: None,
            latency_ms: Some(3),
        };
        let pinned = Row {
            version: "0123456789abcdef0123456789abcdef".into(),
            resolved_version: Some("0123456789abcdef0123456789abcdef".into()),
            ..row.clone()
        };
        let text = table(&[row, pinned]);
        assert!(text.contains(" latest (4387e9f3) "), "{text}");
        assert!(
            text.contains(" 0123456789abcdef0123456789abcdef "),
            "{text}"
        );
    }
}
