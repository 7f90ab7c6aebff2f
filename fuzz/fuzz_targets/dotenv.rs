//! `kvrun::source::dotenv::parse` on arbitrary bytes: never panic, well-formed keys and lines, and
//! warnings that never repeat a value (values are secrets).
#![no_main]

use std::collections::HashSet;
use std::sync::LazyLock;

use kvrun::source::dotenv;
use libfuzzer_sys::fuzz_target;

/// Values shorter than this may appear in a message by coincidence (`1`, `true`).
const MIN_SECRET_CHARS: usize = 8;

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// `message` cut into runs of key characters (words) and runs of other characters.
fn tokens(message: &str) -> Vec<&str> {
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

fn is_word(token: &str) -> bool {
    token.chars().next().is_some_and(is_key_char)
}

fn is_number(token: &str) -> bool {
    token.bytes().all(|b| b.is_ascii_digit())
}

/// A kind of warning: its tokens, `None` where the message names a key or a line number.
type Shape = Vec<Option<String>>;

/// The shapes of the warnings of an input that sets off every kind of warning: a message of one
/// of these shapes holds fixed text, keys and line numbers only.
static KNOWN_SHAPES: LazyLock<Vec<Shape>> = LazyLock::new(|| {
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
});

/// Whether `message` is of a known kind, with keys and numbers where its kind has them.
fn known_kind(message: &str, keys: &HashSet<&str>) -> bool {
    let tokens = tokens(message);
    KNOWN_SHAPES.iter().any(|shape| {
        shape.len() == tokens.len()
            && shape.iter().zip(&tokens).all(|(want, &got)| match want {
                Some(text) => text == got,
                None => is_word(got) && (keys.contains(got) || is_number(got)),
            })
    })
}

/// Whether `message` shows `value` (a secret) somewhere other than where it names a key. A message
/// of a known kind is only fixed text, keys and numbers, whatever it looks like.
fn leaks(message: &str, value: &str, keys: &HashSet<&str>) -> bool {
    if value.chars().count() < MIN_SECRET_CHARS || !message.contains(value) {
        return false;
    }
    if known_kind(message, keys) {
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

fuzz_target!(|data: &[u8]| {
    let result = dotenv::parse(data);
    let Ok(text) = std::str::from_utf8(data) else {
        let err = result.expect_err("invalid UTF-8 must be an error");
        assert!(err.line >= 1, "{err:?}");
        return;
    };
    let parsed = result.unwrap_or_else(|e| panic!("valid UTF-8 refused: {e}"));
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
            "bad key {:?}",
            entry.key
        );
        assert!(
            (1..=lines).contains(&entry.line),
            "{entry:?} of {lines} lines"
        );
        keys.insert(&entry.key);
    }
    assert_eq!(
        keys.len(),
        parsed.entries.len() + 1,
        "duplicate keys (or __proto__)"
    );
    for warning in &parsed.warnings {
        assert!(
            (1..=lines).contains(&warning.line),
            "{warning:?} of {lines} lines"
        );
        for entry in &parsed.entries {
            assert!(
                !leaks(&warning.message, &entry.value, &keys),
                "warning on line {} shows the value of {}: {:?}",
                warning.line,
                entry.key,
                warning.message
            );
        }
    }
    assert!(
        parsed.warnings.windows(2).all(|w| w[0].line <= w[1].line),
        "warnings out of line order"
    );
});
