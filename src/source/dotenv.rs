//! The `.env` reader: turns the bytes of a `.env` file into `KEY=value` entries exactly as the npm
//! `dotenv` package's `dotenv.parse` does, plus warnings about lines whose result is probably not
//! what the author meant.
//!
//! This module owns the `.env` syntax and nothing else. It is pure: it never reads or writes the
//! process environment, never expands `$VAR` or `${VAR}` (a `$` is an ordinary character, as in
//! dotenv), and never prints. Warnings are returned to the caller.
//!
//! # Why not `dotenvy`
//!
//! Our users' `.env` files are written for the npm `dotenv` package (the Azure Key Vault quickstart
//! for Node uses it), and `dotenvy` disagrees with it: it rejects unquoted values with inner spaces
//! (`GREETING=hello world`, `JSON={"a": "b"}`, `export X=two words`), turns `\n` into a newline in
//! unquoted values and expands `$VAR`. So this reader follows dotenv's own implementation instead:
//! the `LINE` regular expression and the `parse` function of dotenv's `lib/main.js` (dotenv 16
//! and 17; dotenv 18 ships the same code, minified, as the default parser in `dist/index.cjs`,
//! beside an opt-in `fast` parser that we do not follow). The regular expression is translated
//! faithfully — JavaScript's `\s`, `.`, `^` and `$` spelled out, since the `regex` crate gives
//! those other meanings — and the `regex` crate's leftmost-first semantics pick the same match a
//! backtracking JavaScript engine picks. `tests/dotenv_differential.rs` runs the real dotenv on a
//! corpus and compares.
//!
//! Rules that follow from dotenv's expression (all covered by the tests):
//! - `KEY=value`, `KEY = value`, `export KEY=value` and `KEY: value` (`:` needs a space after it);
//!   keys are `[A-Za-z0-9_.-]+`; lines that do not fit are silently skipped by dotenv.
//! - An unquoted value is trimmed and ends at the first `#`, with or without a space before it
//!   (`PASS=ab#cd` gives `ab`, `COLOR=#fff` gives an empty value).
//! - `'…'`, `"…"` and `` `…` `` values keep their inner spaces and `#`, may span several lines, and
//!   lose their quotes only when the closing quote ends the line (up to spaces and a comment);
//!   otherwise the whole rest of the line is the value, quotes included. Only double-quoted values
//!   turn `\n` and `\r` into a newline and a carriage return; no other escape is processed.
//! - A key assigned twice keeps its first position (a JavaScript object's key order) and its last
//!   value. As in a JavaScript object, keys that are array indices (`0`, `1`, … without leading
//!   zeros) come first, in numeric order, and the key `__proto__` is dropped.
//! - A value may start on the next line: `KEY:` ending a line takes the whole next line as its
//!   value, and `KEY=` ending a line takes a quoted value that starts the next line.
//! - `\r\n` and lone `\r` line endings are read as `\n` first.
//! - A leading byte-order mark is whitespace for dotenv's expression, so it never becomes part of
//!   the first key: we agree with dotenv there and need no special case.
//!
//! # Lines read by hand
//!
//! Compiling `LINE` (its Unicode classes, forwards and in reverse) took 2.1 of the 6.2 million
//! instructions kvrun ran before its first request (`scripts/count-instructions`, 50
//! references), and each search ~13,000 more per line; kvrun sits on every start of the app. So
//! the shapes nearly every line has — blank lines, comments, `KEY=value` with an unquoted value
//! and no `#` — are read by a small function that gives the expression's own answer (a unit test
//! compares the two on generated text), and the expression is compiled only when a line has
//! another shape. No crate parses dotenv's grammar; `regex` stays the reference for the rest.
//!
//! # Divergence from dotenv
//!
//! Invalid UTF-8 is an error ([`InvalidUtf8`], naming the line). dotenv decodes with Node's
//! `Buffer.toString()`, which silently replaces each invalid sequence with U+FFFD and so would
//! hand a mangled secret to the program; we refuse instead. For every valid UTF-8 input the names
//! and values are dotenv's.
//!
//! # Warnings
//!
//! [`parse`] also reports, by line, what dotenv accepts but probably not as meant: an unquoted
//! value cut at a `#` that has no space before it (`PASS=ab#cd`, `COLOR=#fff`; `KEY=v # note` is
//! dotenv's documented comment form and is not reported), a key assigned again (naming the earlier
//! line), a value taken from the next line, a value that starts with a quote dotenv does not treat
//! as quoting, the key `__proto__`, and every non-blank, non-comment line that dotenv skips.
//! Warnings and errors name keys and line numbers only, never any part of a value: values are
//! secrets.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// One `KEY=value` assignment, after dotenv's rules (last duplicate wins: only the last one is
/// kept, at its own line).
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// The variable name, `[A-Za-z0-9_.-]+`.
    pub key: String,
    /// The value, unquoted and with dotenv's escapes applied. A secret: never log it.
    pub value: String,
    /// 1-based line where the (last) assignment starts: the line of its key.
    pub line: usize,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field("value", &format_args!("[redacted]"))
            .field("line", &self.line)
            .finish()
    }
}

/// Something dotenv accepts but probably not as the author meant. The message names keys and
/// line numbers only, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line the warning is about.
    pub line: usize,
    /// Human-readable explanation, without the line number itself.
    pub message: String,
}

/// The result of [`parse`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    /// One entry per key, in the order of the keys of the object `dotenv.parse` returns: first
    /// appearance of each key, except that array-index keys (`0`, `1`, …) come first in numeric
    /// order, as in any JavaScript object.
    pub entries: Vec<Entry>,
    /// Warnings, in line order.
    pub warnings: Vec<Warning>,
}

/// The input is not valid UTF-8. dotenv would replace the bad bytes with U+FFFD; we refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidUtf8 {
    /// 1-based line of the first invalid byte.
    pub line: usize,
}

impl fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} is not valid UTF-8", self.line)
    }
}

impl std::error::Error for InvalidUtf8 {}

/// JavaScript's `\s` (and the set `String.prototype.trim` removes): `WhiteSpace` and
/// `LineTerminator`. Unlike the `regex` crate's `\s`, it has U+FEFF and lacks U+0085.
const JS_SPACE: &str = r"[\t\n\x0B\x0C\r \x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}]";
/// JavaScript's line terminators, which bound `^`, `$` and `.` in a multiline expression.
const JS_TERMINATOR: &str = r"[\n\r\x{2028}\x{2029}]";
/// JavaScript's `.` without the `s` flag.
const JS_DOT: &str = r"[^\n\r\x{2028}\x{2029}]";

/// dotenv's `LINE` expression,
///
/// ```text
/// /(?:^|^)\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)(\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?\s*(?:#.*)?(?:$|$)/mg
/// ```
///
/// translated for the `regex` crate. `^` becomes `\A`: the caller only tries positions where
/// JavaScript's multiline `^` holds, on the rest of the text. `$` becomes "end of text or one
/// consumed line terminator"; the `body` group ends where JavaScript's match ends. `bare` marks
/// the unquoted alternative and `comment` the `#…` part, for warnings.
static LINE: LazyLock<Regex> = LazyLock::new(|| {
    let pattern = format!(
        concat!(
            r"\A(?P<body>{s}*(?:export{s}+)?(?P<key>[A-Za-z0-9_.-]+)(?:{s}*={s}*?|:{s}+?)",
            r#"(?P<val>{s}*'(?:\\'|[^'])*'|{s}*"(?:\\"|[^"])*"|{s}*`(?:\\`|[^`])*`|(?P<bare>[^#\r\n]+))?"#,
            r"{s}*(?P<comment>#{dot}*)?)(?:\z|{end})",
        ),
        s = JS_SPACE,
        dot = JS_DOT,
        end = JS_TERMINATOR,
    );
    Regex::new(&pattern).expect("dotenv LINE expression compiles")
});

/// Where [`LINE`]'s groups matched, as byte ranges of the text the match was tried on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LineMatch {
    body: Range<usize>,
    key: Range<usize>,
    val: Option<Range<usize>>,
    bare: Option<Range<usize>>,
    comment: Option<Range<usize>>,
}

impl LineMatch {
    fn from_captures(caps: &Captures<'_>) -> Self {
        let range = |name| caps.name(name).map(|m| m.range());
        Self {
            body: range("body").expect("body always participates"),
            key: range("key").expect("key always participates"),
            val: range("val"),
            bare: range("bare"),
            comment: range("comment"),
        }
    }
}

/// What [`simple_line`] knows about [`LINE`] at a line start without running it.
#[derive(Debug, PartialEq, Eq)]
enum Simple {
    /// [`LINE`] matches exactly so.
    Match(LineMatch),
    /// [`LINE`] does not match here.
    NoMatch,
    /// Not a shape this function reads: ask [`LINE`].
    Ask,
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// [`LINE`] tried on `rest` (the text from a line start), for the shapes nearly every `.env` line
/// has: blank lines, comment lines and `KEY=value` with an unquoted value that has no `#`.
///
/// Why by hand: see the module documentation ("Lines read by hand"). The unit tests hold this
/// function to [`LINE`]'s answer on generated input.
///
/// The reasoning, step by step (`S` is JavaScript's `\s`):
/// - the leading `S*` can only end where a key or `export` starts, i.e. after the whole run of
///   spaces (which may cross blank lines); anything but a key character there, or the end of the
///   text, means no match;
/// - `KEY=` then a value that starts with neither a space nor a quote rules out the quoted
///   alternatives, and the unquoted one, `[^#\r\n]+`, takes the rest of the line when it has no
///   `#` (a U+2028 or U+2029 in it ends a line for JavaScript's `$`, not for this class);
/// - the tail `S*(#.*)?$` takes the longest run of spaces after the line that a `#` or the end of
///   the text follows, and otherwise backs off to the last line break in that run ([`tail`]).
fn simple_line(rest: &str) -> Simple {
    let start = rest.len() - rest.trim_start_matches(is_js_space).len();
    let key_len = rest[start..]
        .find(|c: char| !is_key_char(c))
        .unwrap_or(rest.len() - start);
    if key_len == 0 {
        return Simple::NoMatch;
    }
    let key = start..start + key_len;
    if rest.as_bytes().get(key.end) != Some(&b'=') {
        return Simple::Ask;
    }
    let value_start = key.end + 1;
    let value_end = rest[value_start..]
        .find('\n')
        .map_or(rest.len(), |i| value_start + i);
    let value = &rest[value_start..value_end];
    let plain = value
        .chars()
        .next()
        .is_some_and(|c| !is_js_space(c) && !matches!(c, '\'' | '"' | '`'))
        && !value.contains(['#', '\r']);
    if !plain {
        return Simple::Ask;
    }
    let (body_end, comment) = tail(rest, value_end);
    Simple::Match(LineMatch {
        body: 0..body_end,
        key,
        val: Some(value_start..value_end),
        bare: Some(value_start..value_end),
        comment,
    })
}

/// Where [`LINE`]'s tail `S*(?P<comment>#DOT*)?(?:\z|END)`, starting at `at`, ends its body,
/// and its comment.
fn tail(text: &str, at: usize) -> (usize, Option<Range<usize>>) {
    let spaces_end = text[at..]
        .find(|c: char| !is_js_space(c))
        .map_or(text.len(), |i| at + i);
    if spaces_end == text.len() {
        return (text.len(), None);
    }
    if text[spaces_end..].starts_with('#') {
        let end = text[spaces_end..]
            .find(is_js_terminator)
            .map_or(text.len(), |i| spaces_end + i);
        return (end, Some(spaces_end..end));
    }
    // Back off to the last line terminator in the run of spaces; the run starts at one.
    let last_break = text[at..spaces_end]
        .rfind(is_js_terminator)
        .map_or(at, |i| at + i);
    (last_break, None)
}

fn is_js_space(c: char) -> bool {
    let unicode_space = matches!(c, '\u{2000}'..='\u{200A}' | '\u{2028}' | '\u{2029}')
        || [
            '\u{A0}', '\u{1680}', '\u{202F}', '\u{205F}', '\u{3000}', '\u{FEFF}',
        ]
        .contains(&c);
    matches!(c, '\t'..='\r' | ' ') || unicode_space
}

fn is_js_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

/// Whether JavaScript's multiline `^` holds at byte `at` of `text`.
fn at_line_start(text: &str, at: usize) -> bool {
    at == 0 || text[..at].chars().next_back().is_some_and(is_js_terminator)
}

/// The first position at or after `at` where a multiline `^` holds, if any is before the end.
fn next_line_start(text: &str, at: usize) -> Option<usize> {
    if at >= text.len() {
        return None;
    }
    if at_line_start(text, at) {
        return Some(at);
    }
    text[at..]
        .char_indices()
        .find(|&(_, c)| is_js_terminator(c))
        .map(|(i, c)| at + i + c.len_utf8())
        .filter(|&start| start < text.len())
}

/// dotenv's unquoting,
///
/// ```text
/// value.replace(/^(['"`])([\s\S]*)\1$/mg, '$2')
/// ```
///
/// At each line start inside the value, a quote is dropped together with the *last* same quote
/// that ends a line (the `[\s\S]*` is greedy), and the search goes on after it.
fn strip_quotes(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut copied = 0;
    let mut pos = 0;
    while let Some(c) = value[pos..].chars().next() {
        if matches!(c, '\'' | '"' | '`') && at_line_start(value, pos) {
            let close = value[pos + 1..]
                .char_indices()
                .rfind(|&(i, q)| {
                    let after = pos + 1 + i + 1;
                    q == c && value[after..].chars().next().is_none_or(is_js_terminator)
                })
                .map(|(i, _)| pos + 1 + i);
            if let Some(close) = close {
                out.push_str(&value[copied..pos]);
                out.push_str(&value[pos + 1..close]);
                copied = close + 1;
                pos = close + 1;
                continue;
            }
        }
        pos += c.len_utf8();
    }
    out.push_str(&value[copied..]);
    out
}

/// dotenv's processing of the captured value: trim, unquote, expand `\n`/`\r` if double-quoted.
fn finish_value(raw: &str) -> String {
    let trimmed = raw.trim_matches(is_js_space);
    let double_quoted = trimmed.starts_with('"');
    let value = strip_quotes(trimmed);
    if double_quoted {
        value.replace("\\n", "\n").replace("\\r", "\r")
    } else {
        value
    }
}

/// The number an array-index key stands for: JavaScript orders such keys first, ascending.
fn array_index(key: &str) -> Option<u32> {
    let canonical = !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_digit())
        && (key == "0" || !key.starts_with('0'));
    if !canonical {
        return None;
    }
    key.parse::<u32>().ok().filter(|&n| n != u32::MAX)
}

/// 1-based line of byte `at`, given the byte positions of every `\n` in the text.
fn line_of(newlines: &[usize], at: usize) -> usize {
    newlines.partition_point(|&n| n < at) + 1
}

/// Number of line breaks (`\n`, `\r\n` or a lone `\r`) in `bytes[..end]`.
fn line_breaks_before(bytes: &[u8], end: usize) -> usize {
    (0..end)
        .filter(|&i| bytes[i] == b'\n' || (bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n')))
        .count()
}

/// Builds the result while matches come in.
struct Builder<'a> {
    text: &'a str,
    newlines: Vec<usize>,
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    warnings: Vec<Warning>,
    /// Lines (1-based) that some match took part in.
    covered: Vec<bool>,
}

impl<'a> Builder<'a> {
    fn new(text: &'a str) -> Self {
        let newlines: Vec<usize> = text.match_indices('\n').map(|(i, _)| i).collect();
        let lines = newlines.len() + 1;
        Self {
            text,
            newlines,
            entries: Vec::new(),
            index: HashMap::new(),
            warnings: Vec::new(),
            covered: vec![false; lines + 1],
        }
    }

    fn warn(&mut self, line: usize, message: String) {
        self.warnings.push(Warning { line, message });
    }

    /// Records one match found at byte `start`; returns where JavaScript's match ends.
    fn take(&mut self, start: usize, found: &LineMatch) -> usize {
        let key = self.part(start, &found.key);
        let line = self.line_at(start + found.key.start);
        self.cover(start + found.body.start, self.part(start, &found.body));
        self.check_shape(start, line, key, found);
        let value = finish_value(found.val.as_ref().map_or("", |val| self.part(start, val)));
        self.record(key, value, line);
        start + found.body.end
    }

    /// The text of a match's `range`, the match having been tried at byte `start`.
    fn part(&self, start: usize, range: &Range<usize>) -> &'a str {
        &self.text[start + range.start..start + range.end]
    }

    fn line_at(&self, at: usize) -> usize {
        line_of(&self.newlines, at)
    }

    /// Marks the lines a match spans, from its first non-space character to its end.
    fn cover(&mut self, start: usize, body: &str) {
        let first = body
            .char_indices()
            .find(|&(_, c)| !is_js_space(c))
            .map_or(0, |(i, _)| i);
        let from = self.line_at(start + first);
        let to = self.line_at(start + body.len() - 1);
        for covered in &mut self.covered[from..=to] {
            *covered = true;
        }
    }

    /// Warns about values dotenv reads in a way their author probably did not mean.
    fn check_shape(&mut self, start: usize, line: usize, key: &str, found: &LineMatch) {
        if let Some(comment) = &found.comment {
            let hash = start + comment.start;
            let touching = self.text[..hash]
                .chars()
                .next_back()
                .is_some_and(|c| !is_js_space(c));
            if touching && (found.bare.is_some() || found.val.is_none()) {
                self.warn(
                    self.line_at(hash),
                    format!(
                        "the unquoted value of {key} stops at a '#' with no space before it: \
                         dotenv reads the rest of the line as a comment (quote the value to keep it)"
                    ),
                );
            }
        }
        if let Some(val) = &found.val {
            let first = self
                .part(start, val)
                .find(|c: char| !is_js_space(c))
                .unwrap_or(0);
            let value_line = self.line_at(start + val.start + first);
            if value_line > line {
                self.warn(
                    line,
                    format!(
                        "{key} has no value on its own line, so dotenv takes its value from line \
                         {value_line}"
                    ),
                );
            }
        }
        if let Some(bare) = &found.bare {
            let text = self.part(start, bare).trim_start_matches(is_js_space);
            if text.starts_with(['\'', '"', '`']) {
                self.warn(
                    line,
                    format!(
                        "the value of {key} starts with a quote that is not closed at the end of \
                         its line, so dotenv reads it as an unquoted value"
                    ),
                );
            }
        }
    }

    /// Stores an assignment: a repeated key keeps its position and takes the new value and line.
    fn record(&mut self, key: &str, value: String, line: usize) {
        if key == "__proto__" {
            self.warn(
                line,
                "dotenv ignores the key __proto__ (it is a JavaScript object's prototype slot)"
                    .to_owned(),
            );
        } else if let Some(&i) = self.index.get(key) {
            let earlier = self.entries[i].line;
            self.warn(
                line,
                format!(
                    "{key} is assigned again (earlier on line {earlier}); dotenv keeps this later value"
                ),
            );
            self.entries[i].value = value;
            self.entries[i].line = line;
        } else {
            self.index.insert(key.to_owned(), self.entries.len());
            self.entries.push(Entry {
                key: key.to_owned(),
                value,
                line,
            });
        }
    }

    fn finish(mut self) -> Parsed {
        for (i, content) in self.text.split('\n').enumerate() {
            let line = i + 1;
            let content = content.trim_matches(is_js_space);
            if !self.covered[line] && !content.is_empty() && !content.starts_with('#') {
                self.warn(
                    line,
                    "dotenv ignores this line: it is not a KEY=value assignment".to_owned(),
                );
            }
        }
        self.warnings.sort_by_key(|w| w.line);
        self.entries
            .sort_by_key(|e| array_index(&e.key).map_or((1, 0), |n| (0, n)));
        Parsed {
            entries: self.entries,
            warnings: self.warnings,
        }
    }
}

/// Reads a `.env` file the way npm dotenv's `dotenv.parse` does.
///
/// Pure: touches no environment and expands nothing.
///
/// # Errors
///
/// [`InvalidUtf8`] with the line of the first invalid byte if `bytes` is not UTF-8 (dotenv would
/// substitute U+FFFD).
pub fn parse(bytes: &[u8]) -> Result<Parsed, InvalidUtf8> {
    let source = std::str::from_utf8(bytes).map_err(|e| InvalidUtf8 {
        line: line_breaks_before(bytes, e.valid_up_to()) + 1,
    })?;
    // dotenv: `lines.replace(/\r\n?/mg, '\n')` (no copy of a file without a carriage return).
    let text: std::borrow::Cow<'_, str> = if source.contains('\r') {
        source.replace("\r\n", "\n").replace('\r', "\n").into()
    } else {
        source.into()
    };

    let mut builder = Builder::new(&text);
    let mut at = 0;
    while let Some(start) = next_line_start(&text, at) {
        let rest = &text[start..];
        let found = match simple_line(rest) {
            Simple::Match(found) => Some(found),
            Simple::NoMatch => None,
            Simple::Ask => LINE
                .captures(rest)
                .map(|caps| LineMatch::from_captures(&caps)),
        };
        at = match found {
            Some(found) => builder.take(start, &found),
            None => start + rest.chars().next().map_or(1, char::len_utf8),
        };
    }
    Ok(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(input: &str) -> Vec<(String, String)> {
        parse(input.as_bytes())
            .expect("valid UTF-8")
            .entries
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    fn value_of(input: &str, key: &str) -> Option<String> {
        pairs(input)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn warnings(input: &str) -> Vec<(usize, String)> {
        parse(input.as_bytes())
            .expect("valid UTF-8")
            .warnings
            .into_iter()
            .map(|w| (w.line, w.message))
            .collect()
    }

    /// Each row: input, key, expected value (`None`: dotenv sets no such key).
    fn check(rows: &[(&str, &str, Option<&str>)]) {
        for &(input, key, expected) in rows {
            assert_eq!(
                value_of(input, key).as_deref(),
                expected,
                "input {input:?}, key {key}"
            );
        }
    }

    #[test]
    fn unquoted_values() {
        check(&[
            ("BASIC=basic", "BASIC", Some("basic")),
            ("EMPTY=", "EMPTY", Some("")),
            ("GREETING=hello world", "GREETING", Some("hello world")),
            (
                "T=    some spaced out string   ",
                "T",
                Some("some spaced out string"),
            ),
            ("T=\tx\t", "T", Some("x")),
            (r#"JSON={"a": "b"}"#, "JSON", Some(r#"{"a": "b"}"#)),
            ("EQ=equals==", "EQ", Some("equals==")),
            (
                "URL=postgres://u:p@h/db?x=1",
                "URL",
                Some("postgres://u:p@h/db?x=1"),
            ),
            (
                "U=therealnerdybeast@example.tld",
                "U",
                Some("therealnerdybeast@example.tld"),
            ),
            ("D=$HOME/x ${Y}", "D", Some("$HOME/x ${Y}")),
            (r"N=dont\nexpand", "N", Some(r"dont\nexpand")),
            ("UNI=héllo wörld ✓ 😀", "UNI", Some("héllo wörld ✓ 😀")),
            // A quote that does not close at the end of the line is kept.
            (r#"Q="abc" def"#, "Q", Some(r#""abc" def"#)),
            ("Q=it's", "Q", Some("it's")),
            ("Q='abc", "Q", Some("'abc")),
            ("Q=a'b'", "Q", Some("a'b'")),
            // Trimming is JavaScript's: a trailing BOM or NBSP goes, NEL stays.
            ("T=x\u{FEFF}\u{A0}", "T", Some("x")),
            ("T=x\u{85}", "T", Some("x\u{85}")),
        ]);
    }

    #[test]
    fn hash_ends_unquoted_values() {
        check(&[
            ("PASS=ab#cd", "PASS", Some("ab")),
            ("PASS=ab #cd", "PASS", Some("ab")),
            ("C=#fff", "C", Some("")),
            ("C= # just a comment", "C", Some("")),
            (
                "I=inline comments # work #very #well",
                "I",
                Some("inline comments"),
            ),
            ("I=a#number sign", "I", Some("a")),
            ("I=abc#", "I", Some("abc")),
            ("Q='in #single' # c", "Q", Some("in #single")),
            (r#"Q="in #double" # c"#, "Q", Some("in #double")),
            ("Q=`in #back` # c", "Q", Some("in #back")),
            ("Q='a'#c", "Q", Some("a")),
        ]);
    }

    #[test]
    fn key_forms() {
        check(&[
            ("export X=two words", "X", Some("two words")),
            ("export   X=parsed", "X", Some("parsed")),
            ("export\tX  =  v", "X", Some("v")),
            ("   SPACED_KEY = parsed", "SPACED_KEY", Some("parsed")),
            ("KEY: value", "KEY", Some("value")),
            ("KEY:  'quoted'", "KEY", Some("quoted")),
            ("KEY:value", "KEY", None),
            ("KEY :value", "KEY", None),
            ("a.b-c_D9=v", "a.b-c_D9", Some("v")),
            ("KEY\t=\tv", "KEY", Some("v")),
            ("export=v", "export", Some("v")),
            ("exportX=v", "exportX", Some("v")),
            ("export  =v", "export", Some("v")),
            ("KÉY=v", "KÉY", None),
            ("KÉY=v", "Y", None),
            ("MY KEY=v", "KEY", None),
            ("__proto__=x", "__proto__", None),
            ("constructor=x", "constructor", Some("x")),
            ("# COMMENTED=x", "COMMENTED", None),
        ]);
    }

    #[test]
    fn quoted_values() {
        check(&[
            ("E=''", "E", Some("")),
            (r#"E="""#, "E", Some("")),
            ("E=``", "E", Some("")),
            ("S='  single  '", "S", Some("  single  ")),
            (r#"D="  double  ""#, "D", Some("  double  ")),
            ("B=`  back  `", "B", Some("  back  ")),
            (
                r#"S='double "quotes" inside'"#,
                "S",
                Some(r#"double "quotes" inside"#),
            ),
            (
                r#"D="single 'quotes' inside""#,
                "D",
                Some("single 'quotes' inside"),
            ),
            (r#"B=`both "d" and 's'`"#, "B", Some(r#"both "d" and 's'"#)),
            (r#"B=`{"foo": "bar's"}`"#, "B", Some(r#"{"foo": "bar's"}"#)),
            (r"D='a\nb'", "D", Some(r"a\nb")),
            ("B=`a\\nb`", "B", Some(r"a\nb")),
            (r#"D="a\nb\rc""#, "D", Some("a\nb\rc")),
            (r#"D="a\tb\\c""#, "D", Some(r"a\tb\\c")),
            (r#"D="say \"hi\"""#, "D", Some(r#"say \"hi\""#)),
            (r"S='it\'s'", "S", Some(r"it\'s")),
            (
                r#"D="{ port: $MONGOLAB_PORT}""#,
                "D",
                Some("{ port: $MONGOLAB_PORT}"),
            ),
            ("S=   'lead'", "S", Some("lead")),
        ]);
    }

    #[test]
    fn multi_line_values() {
        check(&[
            (
                "M=\"THIS\nIS\nA\nMULTILINE\nSTRING\"",
                "M",
                Some("THIS\nIS\nA\nMULTILINE\nSTRING"),
            ),
            ("M='a\nb'\nN=1", "M", Some("a\nb")),
            ("M=`a\n\"b's\"\nc`", "M", Some("a\n\"b's\"\nc")),
            // The swallowed line is not an assignment of its own.
            ("A=\"x\nB=y\"", "B", None),
            // Unterminated: only the first line, quote included.
            ("U=\"abc\nB=def", "U", Some("\"abc")),
            ("U=\"abc\nB=def", "B", Some("def")),
            // A quoted value on the line after an empty `KEY=` belongs to that key.
            ("E=\n  \"q\"", "E", Some("q")),
            ("E=\nOTHER=1", "E", Some("")),
            // `:` followed directly by a line break takes the next line as its value.
            ("K:\nOTHER=1", "K", Some("OTHER=1")),
            ("K:\nOTHER=1", "OTHER", None),
            // `export` on its own line applies to the next one.
            ("export\nX=1", "X", Some("1")),
        ]);
    }

    #[test]
    fn line_endings_and_bom() {
        let expected = vec![
            ("SERVER".to_owned(), "localhost".to_owned()),
            ("PASSWORD".to_owned(), "password".to_owned()),
            ("DB".to_owned(), "tests".to_owned()),
        ];
        for input in [
            "SERVER=localhost\nPASSWORD=password\nDB=tests\n",
            "SERVER=localhost\r\nPASSWORD=password\r\nDB=tests\r\n",
            "SERVER=localhost\rPASSWORD=password\rDB=tests\r",
            "\u{FEFF}SERVER=localhost\r\nPASSWORD=password\r\nDB=tests",
        ] {
            assert_eq!(pairs(input), expected, "input {input:?}");
        }
        check(&[
            ("M=\"a\r\nb\"", "M", Some("a\nb")),
            ("M=\"a\\r\\nb\"", "M", Some("a\r\nb")),
            ("\u{FEFF}export K=v", "K", Some("v")),
            // U+2028 ends a line for `^`/`$` but not for an unquoted value.
            ("A=1\u{2028}B=2", "A", Some("1\u{2028}B=2")),
        ]);
    }

    #[test]
    fn duplicates_keep_first_position_and_last_value() {
        let parsed = parse(b"A=1\nB=2\nA=3\n").unwrap();
        let got: Vec<_> = parsed
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(got, [("A", "3", 3), ("B", "2", 2)]);
    }

    #[test]
    fn key_order_is_a_javascript_objects() {
        let keys: Vec<_> = parse(b"B=1\n2=x\nZ=z\n1=y\n01=q\n4294967295=m\n4294967294=n")
            .unwrap()
            .entries
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert_eq!(keys, ["1", "2", "4294967294", "B", "Z", "01", "4294967295"]);
    }

    #[test]
    fn lines_are_where_the_key_is() {
        let parsed = parse(b"\n# c\n  A=1\nM=\"x\ny\"\r\nB=2\rC=3").unwrap();
        let got: Vec<_> = parsed
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.line))
            .collect();
        assert_eq!(got, [("A", 3), ("M", 4), ("B", 6), ("C", 7)]);
    }

    #[test]
    fn warnings_name_keys_and_lines() {
        let rows: &[(&str, &[(usize, &str)])] = &[
            ("A=1\nB=2 # fine\nC='x#y'", &[]),
            (
                "PASS=ab#cd",
                &[(1, "unquoted value of PASS stops at a '#'")],
            ),
            ("\nC=#fff", &[(2, "unquoted value of C stops at a '#'")]),
            ("C=x\\#y", &[(1, "unquoted value of C stops at a '#'")]),
            (
                "A=1\nA=2\nA=3",
                &[(2, "earlier on line 1"), (3, "earlier on line 2")],
            ),
            (
                "just some text\n\n   \n# comment\nK=v",
                &[(1, "dotenv ignores this line")],
            ),
            ("KEY:value", &[(1, "dotenv ignores this line")]),
            ("K=\"a\nnot a key\"\nX", &[(3, "dotenv ignores this line")]),
            ("__proto__=x", &[(1, "__proto__")]),
            ("K:\nOTHER=1", &[(1, "takes its value from line 2")]),
            ("E=\n  'q'", &[(1, "takes its value from line 2")]),
            ("M=\"a\nb\"", &[]),
            (
                "Q=\"abc\" def\nR='x\nS=`y' z",
                &[(1, "quote"), (2, "quote"), (3, "quote")],
            ),
            ("T=text \"quoted\"", &[]),
        ];
        for &(input, expected) in rows {
            let got = warnings(input);
            assert_eq!(got.len(), expected.len(), "input {input:?}: {got:?}");
            for ((line, message), &(want_line, want_text)) in got.iter().zip(expected) {
                assert_eq!(*line, want_line, "input {input:?}: {message}");
                assert!(message.contains(want_text), "input {input:?}: {message}");
            }
        }
    }

    #[test]
    fn warnings_and_debug_never_show_values() {
        let secret = "s3cr3tVALUE";
        let input = format!(
            "PASS={secret}#{secret}\nPASS={secret}\n{secret}\nK: {secret}\nK={secret}#x\n__proto__={secret}"
        );
        let parsed = parse(input.as_bytes()).unwrap();
        assert!(parsed.warnings.len() >= 6, "{:?}", parsed.warnings);
        for warning in &parsed.warnings {
            assert!(!warning.message.contains("s3cr3t"), "{warning:?}");
            assert!(!warning.message.contains("VALUE"), "{warning:?}");
        }
        let debug = format!("{parsed:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(
            debug.contains("[redacted]") && debug.contains("PASS"),
            "{debug}"
        );
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let rows: &[(&[u8], usize)] = &[
            (b"\xff", 1),
            (b"A=1\nB=\xc3(", 2),
            (b"A=1\r\nB=2\r\nC=\xed\xa0\x80", 3),
            (b"A=1\rB=2\r\rC=\x80", 4),
            (b"A=1\r\xfe", 2),
        ];
        for &(input, line) in rows {
            let err = parse(input).expect_err("invalid");
            assert_eq!(err, InvalidUtf8 { line }, "input {input:?}");
            assert_eq!(err.to_string(), format!("line {line} is not valid UTF-8"));
        }
    }

    #[test]
    fn empty_and_blank_inputs() {
        for input in ["", "\n", "   \n\t\n", "# only a comment\n"] {
            assert_eq!(
                parse(input.as_bytes()).unwrap(),
                Parsed::default(),
                "{input:?}"
            );
        }
    }

    #[test]
    fn strip_quotes_follows_the_multiline_global_expression() {
        let rows = [
            ("'a'", "a"),
            ("'a' 'b'", "a' 'b"),
            ("'a\n'b'", "a\n'b"),
            ("\"a\"\n\"b\"", "a\"\n\"b"),
            ("'a\u{2028}'b'\u{2028}", "a\u{2028}'b\u{2028}"),
            ("x\n'a'", "x\na"),
            ("'", "'"),
            ("'ab", "'ab"),
        ];
        for (input, expected) in rows {
            assert_eq!(strip_quotes(input), expected, "input {input:?}");
        }
    }

    /// The hand-read shapes give exactly [`LINE`]'s answer: every line start of many generated
    /// texts, made of the characters that matter to the expression.
    #[test]
    fn simple_line_agrees_with_the_expression() {
        const PIECES: [&str; 32] = [
            "A", "b", "9", "_", ".", "-", "=", ":", "#", "'", "\"", "`", "\\", " ", "\t", "\n",
            "\n", "\u{A0}", "\u{2028}", "\u{FEFF}", "é", "export ", "KEY=v", "x ", "KEY=", "'q'",
            "\"q\"", "`q`", "\\\"", " # c", "\r", "v\n",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            // xorshift64*: a fixed sequence, so a failure repeats.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let (mut read, mut asked) = (0, 0);
        for _ in 0..30_000 {
            let len = usize::try_from(next() % 12).unwrap();
            let text: String = (0..len)
                .map(|_| PIECES[usize::try_from(next() % 32).unwrap()])
                .collect();
            let starts =
                (0..=text.len()).filter(|&i| text.is_char_boundary(i) && at_line_start(&text, i));
            for start in starts.filter(|&i| i < text.len()) {
                let rest = &text[start..];
                let expected = LINE
                    .captures(rest)
                    .map(|caps| LineMatch::from_captures(&caps));
                match simple_line(rest) {
                    Simple::Match(found) => assert_eq!(Some(found), expected, "{rest:?}"),
                    Simple::NoMatch => assert_eq!(None, expected, "{rest:?}"),
                    Simple::Ask => {
                        asked += 1;
                        continue;
                    }
                }
                read += 1;
            }
        }
        // Both kinds occur, so the comparison covered the hand-read shapes.
        assert!(read > 10_000 && asked > 1_000, "read {read}, asked {asked}");
    }

    #[test]
    fn simple_lines_need_no_expression() {
        let text =
            "\n# comment\nA=https://v.vault.azure.net/secrets/a\n  B=two words  \n\n  # end\n";
        let mut at = 0;
        while let Some(start) = next_line_start(text, at) {
            let rest = &text[start..];
            at = match simple_line(rest) {
                Simple::Match(found) => start + found.body.end,
                Simple::NoMatch => start + 1,
                Simple::Ask => panic!("asked for the expression at {rest:?}"),
            };
        }
    }
}
