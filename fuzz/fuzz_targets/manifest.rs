//! `kvrun::source::manifest::parse` on arbitrary text: an `Ok` or an `Err`, never a panic, and an
//! error never shows a plain value (`NAME = { value = "…" }`), which may be a secret.
#![no_main]

use std::path::Path;

use kvrun::reference::VaultHosts;
use kvrun::source::manifest;
use libfuzzer_sys::fuzz_target;

/// Shorter plain values may appear in a message by coincidence.
const MIN_SECRET_CHARS: usize = 8;

/// Every string under a key `value`, at any depth, when `text` is TOML.
fn toml_values(table: &toml::Table, out: &mut Vec<String>) {
    fn walk(key: Option<&str>, item: &toml::Value, out: &mut Vec<String>) {
        match item {
            toml::Value::String(s) if key == Some("value") => out.push(s.clone()),
            toml::Value::Table(t) => t.iter().for_each(|(k, v)| walk(Some(k), v, out)),
            toml::Value::Array(a) => a.iter().for_each(|v| walk(None, v, out)),
            _ => {}
        }
    }
    table.iter().for_each(|(k, v)| walk(Some(k), v, out));
}

/// When `text` is not TOML: the contents of `value = "…"` and `value = '…'` as written (basic
/// strings without escapes only).
fn lexical_values(text: &str, out: &mut Vec<String>) {
    for (at, _) in text.match_indices("value") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '"' | '\'')) {
            continue;
        }
        let rest = text[at + "value".len()..].trim_start_matches([' ', '\t']);
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start_matches([' ', '\t']);
        let Some(quote) = rest.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
            continue;
        };
        let body = &rest[1..];
        if let Some(end) = body.find([quote, '\n']) {
            let content = &body[..end];
            if body[end..].starts_with(quote) && !(quote == '"' && content.contains('\\')) {
                out.push(content.to_owned());
            }
        }
    }
}

/// `text` with each ASCII letter and digit moved on by one (`a`→`b`, `z`→`a`, `9`→`0`): the same
/// length, and the same TOML where it is inside a string.
fn shifted(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a'..='y' | 'A'..='Y' | '0'..='8' => char::from(c as u8 + 1),
            'z' => 'a',
            'Z' => 'A',
            '9' => '0',
            _ => c,
        })
        .collect()
}

/// The plain values of `text`: from its TOML when it parses, else as written.
fn plain_values(text: &str) -> Vec<String> {
    let mut values = Vec::new();
    match text.parse::<toml::Table>() {
        Ok(table) => toml_values(&table, &mut values),
        Err(_) => lexical_values(text, &mut values),
    }
    values
}

/// Whether the error for `text` shows the plain value `value`. An error message may contain the
/// same characters by coincidence (its fixed text, or a key or reference spelled the same): so
/// the value must be the only place in the input it is written, and the error for the input with
/// that value changed must show the changed value too.
fn shows(text: &str, shown: &str, value: &str, values: &[String], hosts: &VaultHosts) -> bool {
    if value.chars().count() < MIN_SECRET_CHARS || !shown.contains(value) {
        return false;
    }
    let written = text.matches(value).count();
    if written == 0 || written > values.iter().filter(|v| v.contains(value)).count() {
        return false;
    }
    let other = shifted(value);
    if other == value {
        return false;
    }
    match manifest::parse(&text.replace(value, &other), Path::new("kvrun.toml"), hosts) {
        Ok(_) => false,
        Err(err) => err.to_string().contains(&other),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let hosts = VaultHosts::new(&["vault.localhost".to_owned()]);
    match manifest::parse(text, Path::new("kvrun.toml"), &hosts) {
        Ok(entries) => {
            for entry in &entries {
                assert!(
                    !entry.name.is_empty() && !entry.name.contains(['=', '\0']),
                    "bad name {:?}",
                    entry.name
                );
            }
        }
        Err(err) => {
            let shown = err.to_string();
            assert!(shown.starts_with("kvrun.toml"), "no location: {shown:?}");
            let values = plain_values(text);
            for value in &values {
                assert!(
                    !shows(text, &shown, value, &values, &hosts),
                    "the error shows the plain value {value:?}: {shown:?}"
                );
            }
        }
    }
});
