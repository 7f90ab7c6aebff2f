//! One field of a JSON secret: `?field=username` (a top-level key) or `?field=/db/primary/host`
//! (a JSON Pointer, RFC 6901, with its `~0` and `~1` escapes), in an identifier's query or as the
//! manifest's `field = "…"`.
//!
//! What the variable gets: a string as it is; a number, boolean, object or array as its JSON text
//! as written, insignificant whitespace removed (key order and number spelling kept: `1e3` stays
//! `1e3`). `null` and a missing field are errors, or with `optional = true` leave the variable
//! unset. No error ever holds any part of the value: only the field's name, which is configuration.
//!
//! Written by hand over `serde_json`'s `RawValue` rather than with `serde_json::Value::pointer`:
//! `Value` reorders keys and respells numbers (`1e3` → `1000.0`) unless `serde_json`'s crate-wide
//! `preserve_order` and `arbitrary_precision` features are on, and those would change how every
//! other JSON document kvrun (and the Azure SDK inside it) reads is parsed. Walking raw values
//! keeps the text as the secret holds it, and validates the whole document as JSON first.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use serde_json::value::RawValue;

/// A field of a JSON value: the text configured (decoded) and the keys it walks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    text: String,
    path: Vec<String>,
}

/// Why a field could not be taken from a value. Names the field, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// The secret's value is not a JSON document.
    NotJson,
    /// No such key or index (or a scalar where the pointer goes on).
    Absent,
    /// The field is JSON `null`.
    Null,
}

impl Field {
    /// A field as configured: a JSON Pointer when it starts with `/`, else one top-level key.
    ///
    /// # Errors
    /// An empty field, or a `~` in a pointer that is not `~0` or `~1`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the field is empty: name a top-level key or a JSON Pointer (/a/b)".into());
        }
        let path = match text.strip_prefix('/') {
            None => vec![text.to_owned()],
            Some(pointer) => pointer.split('/').map(unescape).collect::<Result<_, _>>()?,
        };
        Ok(Self {
            text: text.to_owned(),
            path,
        })
    }

    /// The field as configured.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The field as an identifier's query value: percent-encoded where a URL needs it.
    #[must_use]
    pub fn encoded(&self) -> String {
        let mut out = String::with_capacity(self.text.len());
        for byte in self.text.bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
                out.push(char::from(byte));
            } else {
                let _ = write!(out, "%{byte:02X}");
            }
        }
        out
    }

    /// This field of `value`.
    ///
    /// # Errors
    /// `value` is not JSON, has no such field, or the field is `null`.
    pub fn take(&self, value: &str) -> Result<String, Missing> {
        let mut raw: &RawValue = serde_json::from_str(value).map_err(|_| Missing::NotJson)?;
        for token in &self.path {
            raw = step(raw, token).ok_or(Missing::Absent)?;
        }
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'n') => Err(Missing::Null),
            Some(b'"') => serde_json::from_str::<String>(text).map_err(|_| Missing::NotJson),
            _ => Ok(minify(text)),
        }
    }

    /// What went wrong, for a failure line (never any part of the value).
    #[must_use]
    pub fn describe(&self, missing: &Missing) -> String {
        let field = &self.text;
        match missing {
            Missing::NotJson => {
                format!("the secret's value is not JSON, so it has no field '{field}'")
            }
            Missing::Absent => format!("the secret's JSON value has no field '{field}'"),
            Missing::Null => format!("field '{field}' of the secret's JSON value is null"),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// RFC 3986 percent-decoding, once (`+` stays `+`: a query here is no HTML form).
pub(crate) fn percent_decode(text: &str) -> Result<String, String> {
    let bad = || format!("'{text}' is not valid percent-encoding in ?field=");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// One JSON Pointer reference token, `~1` → `/` and `~0` → `~`.
fn unescape(token: &str) -> Result<String, String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => return Err("in a JSON Pointer, '~' is written ~0 and '/' inside a key ~1".into()),
        }
    }
    Ok(out)
}

/// The member `token` of an object, or the element at index `token` of an array.
fn step<'v>(raw: &'v RawValue, token: &str) -> Option<&'v RawValue> {
    match raw.get().as_bytes().first()? {
        b'{' => {
            let members: HashMap<String, &RawValue> = serde_json::from_str(raw.get()).ok()?;
            members.get(token).copied()
        }
        b'[' => {
            // RFC 6901: decimal digits, no leading zero (so neither "01" nor "-").
            let canonical = token == "0" || (!token.starts_with('0') && !token.is_empty());
            if !canonical || !token.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let elements: Vec<&RawValue> = serde_json::from_str(raw.get()).ok()?;
            elements.get(token.parse::<usize>().ok()?).copied()
        }
        _ => None,
    }
}

/// JSON text without the whitespace between tokens (strings are kept as written).
fn minify(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
        "username": "app",
        "password": "p@ss \"quoted\"",
        "port": 5432,
        "big": 1e3,
        "tls": true,
        "nothing": null,
        "db": { "primary": { "host": "db1", "zones": [ 1, 2 ] }, "b": 1, "a": 2 },
        "a/b": "slash",
        "m~n": "tilde",
        "list": [ "x", { "k" : "v" } ]
    }"#;

    fn take(field: &str) -> Result<String, Missing> {
        Field::parse(field).unwrap().take(DOC)
    }

    #[test]
    fn keys_and_pointers_take_the_value_as_written() {
        let cases = [
            ("username", "app"),
            ("password", r#"p@ss "quoted""#),
            ("port", "5432"),
            ("big", "1e3"),
            ("tls", "true"),
            ("/db/primary/host", "db1"),
            ("/db/primary/zones", "[1,2]"),
            (
                "db",
                r#"{"primary":{"host":"db1","zones":[1,2]},"b":1,"a":2}"#,
            ),
            ("/a~1b", "slash"),
            ("/m~0n", "tilde"),
            ("a/b", "slash"),
            ("/list/0", "x"),
            ("/list/1", r#"{"k":"v"}"#),
            ("/list/1/k", "v"),
        ];
        for (field, want) in cases {
            assert_eq!(take(field).as_deref(), Ok(want), "{field}");
        }
    }

    #[test]
    fn null_missing_and_not_json_are_told_apart() {
        for (field, want) in [
            ("nothing", Missing::Null),
            ("/nothing", Missing::Null),
            ("absent", Missing::Absent),
            ("/db/primary/port", Missing::Absent),
            ("/username/x", Missing::Absent),
            ("/list/2", Missing::Absent),
            ("/list/01", Missing::Absent),
            ("/list/-", Missing::Absent),
            ("/db/primary/zones/00", Missing::Absent),
        ] {
            assert_eq!(take(field), Err(want), "{field}");
        }
        let field = Field::parse("username").unwrap();
        assert_eq!(field.take("username=app"), Err(Missing::NotJson));
        assert_eq!(field.take(r#"["username"]"#), Err(Missing::Absent));
        assert_eq!(
            field.describe(&Missing::NotJson),
            "the secret's value is not JSON, so it has no field 'username'"
        );
    }
}
