//! App Configuration access keys: the connection string, and the HMAC-SHA256 signature of each
//! request (docs/protocol.md §8, as the JS SDK's `appConfigCredential.ts` signs).
//!
//! Written by hand because no crate does this one thing: it is four lines of string-to-sign over
//! aws-lc's HMAC and SHA-256, which kvrun already links for TLS.

use std::fmt;
use std::time::SystemTime;

use base64::Engine as _;
use zeroize::Zeroizing;

/// The SHA-256 of the empty body, base64: what every GET carries in `x-ms-content-sha256`.
pub const EMPTY_BODY_HASH: &str = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";

/// One access key of a store. `Debug` shows the endpoint and the key's id, never the secret.
pub struct AccessKey {
    /// The connection string's `Endpoint`.
    pub endpoint: String,
    /// The connection string's `Id` (the key's credential name, not secret).
    pub id: String,
    secret: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("endpoint", &self.endpoint)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The headers that authenticate one request.
pub struct Signed {
    pub date: String,
    pub content_hash: &'static str,
    pub authorization: Zeroizing<String>,
}

impl AccessKey {
    /// `Endpoint=https://…;Id=…;Secret=…` (parts in any order, names case-insensitive).
    ///
    /// # Errors
    /// A part missing, or a `Secret` that is not base64 — without a word of the string's text,
    /// which is a credential.
    pub fn from_connection_string(text: &str) -> Result<Self, String> {
        let (mut endpoint, mut id, mut secret) = (None, None, None);
        for part in text.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err("a part of the connection string has no '='".to_owned());
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(value.trim().to_owned()),
                "id" => id = Some(value.trim().to_owned()),
                // The secret is base64 and may end in '='; split_once kept them.
                "secret" => secret = Some(Zeroizing::new(value.trim().to_owned())),
                _ => {}
            }
        }
        let missing = |part| format!("the connection string has no {part}= part");
        let endpoint = endpoint.ok_or_else(|| missing("Endpoint"))?;
        let id = id.ok_or_else(|| missing("Id"))?;
        let secret = secret.ok_or_else(|| missing("Secret"))?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret.as_bytes())
            .map_err(|_| "the connection string's Secret is not base64".to_owned())?;
        Ok(Self {
            endpoint,
            id,
            secret: Zeroizing::new(secret),
        })
    }

    /// Sign a GET of `path_and_query` (exactly as sent) to `host` (the `Host` header: with the
    /// port unless it is 443) at `now`.
    #[must_use]
    pub fn sign(&self, method: &str, path_and_query: &str, host: &str, now: SystemTime) -> Signed {
        let date = httpdate::fmt_http_date(now);
        let to_sign = format!("{method}\n{path_and_query}\n{date};{host};{EMPTY_BODY_HASH}");
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.secret);
        let tag = aws_lc_rs::hmac::sign(&key, to_sign.as_bytes());
        let signature = base64::engine::general_purpose::STANDARD.encode(tag.as_ref());
        Signed {
            authorization: Zeroizing::new(format!(
                "HMAC-SHA256 Credential={}&SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}",
                self.id
            )),
            date,
            content_hash: EMPTY_BODY_HASH,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_body_hash_is_sha256_of_nothing() {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"");
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(digest.as_ref()),
            EMPTY_BODY_HASH
        );
    }

    #[test]
    fn a_known_signature() {
        // Computed independently: printf 'GET\n/kv?key=*&api-version=1.0\nWed, 02 Dec 2026 10:00:00 GMT;cfg.azconfig.io;47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=' |
        //   openssl dgst -sha256 -mac HMAC -macopt hexkey:000102…1f -binary | base64
        let secret =
            base64::engine::general_purpose::STANDARD.encode((0u8..32).collect::<Vec<_>>());
        let key = AccessKey::from_connection_string(&format!(
            "Endpoint=https://cfg.azconfig.io;Id=abc-l0-s0:xyz;Secret={secret}"
        ))
        .unwrap();
        let at = httpdate::parse_http_date("Wed, 02 Dec 2026 10:00:00 GMT").unwrap();
        let signed = key.sign("GET", "/kv?key=*&api-version=1.0", "cfg.azconfig.io", at);
        assert_eq!(signed.date, "Wed, 02 Dec 2026 10:00:00 GMT");
        assert_eq!(
            signed.authorization.as_str(),
            format!(
                "HMAC-SHA256 Credential=abc-l0-s0:xyz&SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={KNOWN_SIGNATURE}"
            )
        );
    }

    const KNOWN_SIGNATURE: &str = "UIBMqome5yxKIsCjcv/sdO4lI7aJq+L3oZFr5bUO7UY=";

    #[test]
    fn connection_strings_never_show_their_secret() {
        let text = "Endpoint=https://cfg.azconfig.io;Id=id1;Secret=c2VjcmV0LXNlY3JldA==";
        let key = AccessKey::from_connection_string(text).unwrap();
        assert_eq!(key.endpoint, "https://cfg.azconfig.io");
        assert!(!format!("{key:?}").contains("c2VjcmV0"));
        for bad in [
            "Endpoint=https://cfg.azconfig.io;Id=id1",
            "Id=id1;Secret=c2VjcmV0",
            "Endpoint=https://cfg.azconfig.io;Id=id1;Secret=not base64 hunter2",
            "garbage hunter2",
        ] {
            let err = AccessKey::from_connection_string(bad).unwrap_err();
            assert!(
                !err.contains("hunter2") && !err.contains("c2VjcmV0"),
                "{err}"
            );
        }
    }
}
