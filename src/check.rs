//! `kvrun check`: resolve every reference without running anything and report, per variable and
//! secret, where it came from, what was asked for, how it went and how long it took — never a
//! value. For CI and deploy pipelines: "will this pod start?" The exit code is a run's, with one
//! deliberate exception: finding no reference at all (no `.env`, no manifest, nothing in the
//! environment) fails with 66, so that a gate run in the wrong directory does not pass — a run
//! with nothing to fetch would still start its command. A value that resolves but that a run
//! would refuse (a NUL byte, too large for the environment) is reported in its row as such.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// One secret of one variable.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub variable: String,
    /// `file:line` or `environment`.
    pub origin: String,
    pub vault: String,
    pub secret: String,
    /// The pinned version, or `latest`.
    pub version: String,
    /// `ok`, `optional, not found`, or the failure class.
    pub status: String,
    /// Why it failed; `None` when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Time spent on this secret's requests, retries included.
    pub latency_ms: Option<u64>,
}

impl Row {
    #[must_use]
    pub fn latency(duration: Option<Duration>) -> Option<u64> {
        duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A table with aligned columns; failure reasons on their own indented lines below their row.
#[must_use]
pub fn table(rows: &[Row]) -> String {
    let header = [
        "VARIABLE", "ORIGIN", "VAULT", "SECRET", "VERSION", "STATUS", "LATENCY",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.variable.clone(),
                r.origin.clone(),
                r.vault.clone(),
                r.secret.clone(),
                r.version.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_reasons_follow_their_row() {
        let row = |variable: &str, status: &str, reason: Option<&str>| Row {
            variable: variable.into(),
            origin: ".env:1".into(),
            vault: "kv.vault.azure.net".into(),
            secret: "db".into(),
            version: "latest".into(),
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
}
