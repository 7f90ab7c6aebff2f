//! What a reference takes of its secret's value, when not all of it: one field of a JSON value
//! (`?field=`, [`crate::field`]) or one part of a certificate-backed secret (`?part=`,
//! [`crate::part`]). The two are the only query parameters a reference may carry, once each, and
//! not both: a field is JSON's, a part a certificate's.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::FailureClass;
use crate::field::{self, Field};
use crate::part::{self, Part};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    Field(Field),
    Part(Part),
}

/// Why a pick could not be taken from a value. Never holds any part of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    Field(field::Missing),
    Part(part::Unfit),
}

impl Missing {
    /// Whether `optional = true` skips it: a field that is absent or `null` (a value that is not
    /// JSON, or not a certificate, still fails).
    #[must_use]
    pub fn is_absence(&self) -> bool {
        matches!(
            self,
            Self::Field(field::Missing::Absent | field::Missing::Null)
        )
    }

    /// Not found (66) for an absent field, else bad value (65).
    #[must_use]
    pub fn class(&self) -> FailureClass {
        if self.is_absence() {
            FailureClass::NotFound
        } else {
            FailureClass::BadValue
        }
    }
}

impl Pick {
    /// This pick of a secret's `value` (with its content type).
    ///
    /// # Errors
    /// The value has no such field, or no such part.
    pub fn take(
        &self,
        value: &str,
        content_type: Option<&str>,
    ) -> Result<Zeroizing<String>, Missing> {
        match self {
            Self::Field(f) => f.take(value).map(Zeroizing::new).map_err(Missing::Field),
            Self::Part(p) => part::take(*p, value, content_type).map_err(Missing::Part),
        }
    }

    /// What went wrong, for a failure line.
    #[must_use]
    pub fn describe(&self, missing: &Missing) -> String {
        match (self, missing) {
            (Self::Field(f), Missing::Field(m)) => f.describe(m),
            (_, Missing::Part(unfit)) => unfit.to_string(),
            (Self::Part(p), Missing::Field(_)) => format!("no part '{p}'"),
        }
    }

    /// As an identifier's query: `field=…` (percent-encoded where a URL needs it) or `part=…`.
    #[must_use]
    pub fn query(&self) -> String {
        match self {
            Self::Field(f) => format!("field={}", f.encoded()),
            Self::Part(p) => format!("part={p}"),
        }
    }

    #[must_use]
    pub fn field(&self) -> Option<&Field> {
        match self {
            Self::Field(f) => Some(f),
            Self::Part(_) => None,
        }
    }

    #[must_use]
    pub fn part(&self) -> Option<Part> {
        match self {
            Self::Part(p) => Some(*p),
            Self::Field(_) => None,
        }
    }
}

impl fmt::Display for Pick {
    /// The field or the part as configured.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(field) => field.fmt(f),
            Self::Part(part) => part.fmt(f),
        }
    }
}

/// The pick an identifier's query names: `field=…` (percent-decoded once) or `part=…`.
///
/// # Errors
/// Any other parameter, one of them twice, both, bad percent-encoding, a bad field or part.
pub fn from_query(query: &str) -> Result<Pick, String> {
    let mut pick = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let this = match key {
            "field" => Pick::Field(Field::parse(&field::percent_decode(value)?)?),
            "part" => Pick::Part(Part::parse(value)?),
            _ => {
                return Err(format!(
                    "a secret identifier's query may only be ?field=NAME or ?part=PART, not '{key}'"
                ));
            }
        };
        match (&pick, &this) {
            (None, _) => pick = Some(this),
            (Some(Pick::Field(_)), Pick::Field(_)) | (Some(Pick::Part(_)), Pick::Part(_)) => {
                return Err(format!("?{key}= appears twice in the secret identifier"));
            }
            (Some(_), _) => {
                return Err(
                    "?field= and ?part= do not go together: a field is a JSON secret's, a part a certificate's"
                        .into(),
                );
            }
        }
    }
    pick.ok_or_else(|| "the secret identifier's query is empty".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_text(query: &str) -> String {
        from_query(query)
            .unwrap()
            .field()
            .unwrap()
            .as_str()
            .to_owned()
    }

    #[test]
    fn a_query_holds_one_field_percent_decoded_once_or_one_part() {
        assert_eq!(field_text("field=username"), "username");
        assert_eq!(field_text("field=%2Fdb%2Fhost"), "/db/host");
        assert_eq!(field_text("field=a%2525b"), "a%25b");
        assert_eq!(field_text("field=a+b"), "a+b");
        for (query, part) in [
            ("part=key", Part::Key),
            ("part=cert", Part::Cert),
            ("part=chain", Part::Chain),
            ("part=pkcs12", Part::Pkcs12),
        ] {
            assert_eq!(from_query(query).unwrap(), Pick::Part(part));
            assert_eq!(Pick::Part(part).query(), query);
        }
        for (query, error) in [
            (
                "version=2",
                "a secret identifier's query may only be ?field=NAME or ?part=PART, not 'version'",
            ),
            (
                "field=a&field=b",
                "?field= appears twice in the secret identifier",
            ),
            (
                "part=key&part=cert",
                "?part= appears twice in the secret identifier",
            ),
            (
                "field=a&part=key",
                "?field= and ?part= do not go together: a field is a JSON secret's, a part a certificate's",
            ),
            (
                "part=tls.key",
                "'tls.key' is not a certificate part: write key, cert, chain or pkcs12",
            ),
            (
                "field=",
                "the field is empty: name a top-level key or a JSON Pointer (/a/b)",
            ),
            (
                "field=%zz",
                "'%zz' is not valid percent-encoding in ?field=",
            ),
            (
                "field=%ff",
                "'%ff' is not valid percent-encoding in ?field=",
            ),
            (
                "field=/a~2",
                "in a JSON Pointer, '~' is written ~0 and '/' inside a key ~1",
            ),
        ] {
            assert_eq!(from_query(query).unwrap_err(), error, "{query}");
        }
        assert_eq!(
            Pick::Field(Field::parse("a b/c").unwrap()).query(),
            "field=a%20b/c"
        );
    }
}
