//! The properties the fuzz targets check, shared by the targets themselves (`fuzz_targets/*.rs`,
//! under cargo-fuzz) and by `tests/it/fuzz_corpus.rs`, which replays the kept corpus on stable Rust in
//! every `cargo test`. Each `check_*` panics, naming `label`, when a property does not hold.
//!
//! - `reference`: every secret `classify` gives is `https://{label}.{known vault suffix}[:port]`
//!   with a valid name and version, and its canonical form classifies as itself;
//!   `parse_secret_identifier` gives an https vault URL, a name and a version without `/`.
//! - `dotenv`: `parse` refuses exactly the invalid UTF-8; keys are non-empty without `=` or NUL,
//!   unique; lines are in range; no warning shows a value of 8 or more characters (a message of a
//!   known kind, learnt from a probe input, holds only fixed text, keys and line numbers; any other
//!   must not contain a value outside the keys it names).
//! - `manifest`: an error names `kvrun.toml` and never shows a plain value (`{ value = "…" }`) of 8
//!   or more characters (one written nowhere else in the input, and still shown when changed, so
//!   that coincidences with the message's own text do not count).

use std::collections::HashSet;
use std::path::Path;

use kvrun::reference::{self, Classified, Piece, Reference, VaultHosts};
use kvrun::source::{dotenv, manifest};

/// Values shorter than this may appear in a message by coincidence (`1`, `true`).
pub(crate) const MIN_SECRET_CHARS: usize = 8;

/// The suffixes [`hosts`] accepts, spelled out here rather than asked of `VaultHosts`.
pub(crate) const KNOWN_SUFFIXES: [&str; 5] = [
    "vault.localhost",
    "vault.azure.net",
    "vault.azure.cn",
    "vault.usgovcloudapi.net",
    "vault.microsoftazure.de",
];

pub(crate) fn hosts() -> VaultHosts {
    VaultHosts::new(&["vault.localhost".to_owned()])
}

// ---------------------------------------------------------------------------------------------
// reference

/// `https://{label}.{known suffix}[:port]` in lower case, a valid name and version, and a canonical
/// form that classifies as the same secret.
pub(crate) fn check_secret(wanted: &Reference, hosts: &VaultHosts, file: &str) {
    let secret = &wanted.secret;
    let authority = secret
        .vault_url
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("{file}: vault_url {:?} is not https", secret.vault_url));
    let host = match authority.rsplit_once(':') {
        Some((host, port)) => {
            assert!(
                port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok(),
                "{file}: bad port in {:?}",
                secret.vault_url
            );
            host
        }
        None => authority,
    };
    assert!(
        KNOWN_SUFFIXES.iter().any(|suffix| {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }),
        "{file}: host {host:?} is not under a known vault suffix"
    );
    assert!(
        !host
            .bytes()
            .any(|b| b.is_ascii_uppercase() || matches!(b, b'/' | b'@' | b'?' | b'#' | b'\\')),
        "{file}: host {host:?} is not a plain lower-case host name"
    );
    assert!(
        (1..=127).contains(&secret.name.len())
            && secret
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "{file}: bad secret name {:?}",
        secret.name
    );
    if let Some(version) = &secret.version {
        assert!(
            (1..=64).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{file}: bad version {version:?}"
        );
    }
    // The canonical form, `?field=` included, classifies as the same reference.
    let canonical = wanted.to_string();
    assert_eq!(
        reference::classify(&canonical, hosts),
        Ok(Classified::Reference(wanted.clone())),
        "{file}: {canonical:?} does not classify as itself"
    );
}

pub(crate) fn check_reference(input: &str, hosts: &VaultHosts, file: &str) {
    match reference::classify(input, hosts) {
        Ok(Classified::Literal) | Err(_) => {}
        Ok(Classified::Reference(secret)) => check_secret(&secret, hosts, file),
        Ok(Classified::Template(pieces)) => {
            assert!(
                pieces.iter().any(|p| matches!(p, Piece::Secret(_))),
                "{file}: a template without a secret"
            );
            for piece in &pieces {
                match piece {
                    Piece::Secret(secret) => check_secret(secret, hosts, file),
                    Piece::Text(text) => assert!(!text.is_empty(), "{file}: empty text piece"),
                }
            }
        }
    }
    if let Ok(id) = reference::parse_secret_identifier(input) {
        assert_eq!(id.source_id, input, "{file}");
        assert!(id.vault_url.starts_with("https://"), "{file}: {id:?}");
        assert!(
            !id.name.is_empty() && !id.name.contains('/'),
            "{file}: {id:?}"
        );
        assert!(
            id.version
                .as_deref()
                .is_none_or(|v| !v.is_empty() && !v.contains('/')),
            "{file}: {id:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// dotenv

pub(crate) fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// `message` cut into runs of key characters (words) and runs of other characters.
pub(crate) fn tokens(message: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_word = None;
    for (i, c) in message.char_indices() {
        let word = is_key_char(c);
        if in_word.is_some_and(|w| w != word) {
            out.push(&message[start..i]);
            start = i;
        }
        in_word = Some(word);
    }
    if start < message.len() {
        out.push(&message[start..]);
    }
    out
}

pub(crate) fn is_word(token: &str) -> bool {
    token.chars().next().is_some_and(is_key_char)
}

pub(crate) fn is_number(token: &str) -> bool {
    token.bytes().all(|b| b.is_ascii_digit())
}

/// A kind of warning: its tokens, `None` where the message names a key or a line number.
pub(crate) type Shape = Vec<Option<String>>;

/// The shapes of the warnings of an input that sets off every kind of warning: a message of one
/// of these shapes holds fixed text, keys and line numbers only.
pub(crate) fn known_shapes() -> Vec<Shape> {
    let probe = "PROBE_HASH=ab#cd\nPROBE_TWICE=1\nPROBE_TWICE=2\nPROBE_COLON:\nPROBE_X=1\n\
                 PROBE_EMPTY=\n  'q'\nPROBE_QUOTE=\"a\" b\n__proto__=x\njust text\n";
    let parsed = dotenv::parse(probe.as_bytes()).expect("probe is UTF-8");
    let mut keys: HashSet<&str> = HashSet::from(["__proto__"]);
    keys.extend(parsed.entries.iter().map(|e| e.key.as_str()));
    let mut shapes: Vec<Shape> = Vec::new();
    for warning in &parsed.warnings {
        let shape: Shape = tokens(&warning.message)
            .into_iter()
            .map(|t| (!(is_word(t) && (keys.contains(t) || is_number(t)))).then(|| t.to_owned()))
            .collect();
        if !shapes.contains(&shape) {
            shapes.push(shape);
        }
    }
    assert!(
        shapes.len() >= 6,
        "the probe sets off too few kinds of warning: {shapes:?}"
    );
    shapes
}

/// Whether `message` is of a known kind, with keys and numbers where its kind has them.
pub(crate) fn known_kind(message: &str, keys: &HashSet<&str>, shapes: &[Shape]) -> bool {
    let tokens = tokens(message);
    shapes.iter().any(|shape| {
        shape.len() == tokens.len()
            && shape.iter().zip(&tokens).all(|(want, &got)| match want {
                Some(text) => text == got,
                None => is_word(got) && (keys.contains(got) || is_number(got)),
            })
    })
}

/// Whether `message` shows `value` (a secret) somewhere other than where it names a key. A message
/// of a known kind is only fixed text, keys and numbers, whatever it looks like.
pub(crate) fn leaks(message: &str, value: &str, keys: &HashSet<&str>, shapes: &[Shape]) -> bool {
    if value.chars().count() < MIN_SECRET_CHARS || !message.contains(value) {
        return false;
    }
    if known_kind(message, keys, shapes) {
        return false;
    }
    let mut key_spans = Vec::new();
    let mut at = 0;
    for token in tokens(message) {
        if is_word(token) && keys.contains(token) {
            key_spans.push((at, at + token.len()));
        }
        at += token.len();
    }
    message.match_indices(value).any(|(at, _)| {
        let end = at + value.len();
        !key_spans.iter().any(|&(s, e)| s < end && at < e)
    })
}

pub(crate) fn check_dotenv(bytes: &[u8], shapes: &[Shape], file: &str) {
    let result = dotenv::parse(bytes);
    let Ok(text) = std::str::from_utf8(bytes) else {
        let err = result.expect_err("invalid UTF-8 must be an error");
        assert!(err.line >= 1, "{file}: {err:?}");
        return;
    };
    let parsed = result.unwrap_or_else(|e| panic!("{file}: valid UTF-8 refused: {e}"));
    let lines = text
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .matches('\n')
        .count()
        + 1;
    let mut keys: HashSet<&str> = HashSet::from(["__proto__"]);
    for entry in &parsed.entries {
        assert!(
            !entry.key.is_empty() && !entry.key.contains(['=', '\0']),
            "{file}: bad key {:?}",
            entry.key
        );
        assert!(keys.insert(&entry.key), "{file}: key {:?} twice", entry.key);
        assert!(
            (1..=lines).contains(&entry.line),
            "{file}: {entry:?} of {lines} lines"
        );
    }
    for warning in &parsed.warnings {
        assert!(
            (1..=lines).contains(&warning.line),
            "{file}: {warning:?} of {lines} lines"
        );
        for entry in &parsed.entries {
            assert!(
                !leaks(&warning.message, &entry.value, &keys, shapes),
                "{file}: the warning on line {} shows the value of {}",
                warning.line,
                entry.key
            );
        }
    }
    assert!(
        parsed.warnings.windows(2).all(|w| w[0].line <= w[1].line),
        "{file}: warnings out of line order"
    );
}

// ---------------------------------------------------------------------------------------------
// manifest

/// Every string under a key `value`, at any depth.
pub(crate) fn toml_values(table: &toml::Table) -> Vec<String> {
    fn walk(key: Option<&str>, item: &toml::Value, out: &mut Vec<String>) {
        match item {
            toml::Value::String(s) if key == Some("value") => out.push(s.clone()),
            toml::Value::Table(t) => t.iter().for_each(|(k, v)| walk(Some(k), v, out)),
            toml::Value::Array(a) => a.iter().for_each(|v| walk(None, v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    table.iter().for_each(|(k, v)| walk(Some(k), v, &mut out));
    out
}

/// When the text is not TOML: the contents of `value = "…"` and `value = '…'` as written (basic
/// strings without escapes only).
pub(crate) fn lexical_values(text: &str) -> Vec<String> {
    let mut out = Vec::new();
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
    out
}

/// `text` with each ASCII letter and digit moved on by one (`a`→`b`, `z`→`a`, `9`→`0`): the same
/// length, and the same TOML where it is inside a string.
pub(crate) fn shifted(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a'..='y' | 'A'..='Y' | '0'..='8' => char::from_u32(u32::from(c) + 1).unwrap_or(c),
            'z' => 'a',
            'Z' => 'A',
            '9' => '0',
            _ => c,
        })
        .collect()
}

/// The plain values of `text`: from its TOML when it parses, else as written.
pub(crate) fn plain_values(text: &str) -> Vec<String> {
    match text.parse::<toml::Table>() {
        Ok(table) => toml_values(&table),
        Err(_) => lexical_values(text),
    }
}

/// Whether the error for `text` shows the plain value `value`. An error message may contain the
/// same characters by coincidence (its fixed text, or a key or reference spelled the same): so
/// the value must be the only place in the input it is written, and the error for the input with
/// that value changed must show the changed value too.
pub(crate) fn shows(
    text: &str,
    shown: &str,
    value: &str,
    values: &[String],
    hosts: &VaultHosts,
) -> bool {
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

pub(crate) fn check_manifest(text: &str, hosts: &VaultHosts, file: &str) {
    match manifest::parse(text, Path::new("kvrun.toml"), hosts) {
        Ok(entries) => {
            for entry in &entries {
                assert!(
                    !entry.name.is_empty() && !entry.name.contains(['=', '\0']),
                    "{file}: bad name {:?}",
                    entry.name
                );
            }
        }
        Err(err) => {
            let shown = err.to_string();
            assert!(
                shown.starts_with("kvrun.toml"),
                "{file}: no location: {shown:?}"
            );
            let values = plain_values(text);
            for value in &values {
                assert!(
                    !shows(text, &shown, value, &values, hosts),
                    "{file}: the error shows a plain value: {shown:?}"
                );
            }
        }
    }
}
