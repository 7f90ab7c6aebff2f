//! A service principal's client certificate (`AZURE_CLIENT_CERTIFICATE_PATH`, with the optional
//! `AZURE_CLIENT_CERTIFICATE_PASSWORD`): loading it from PEM or PKCS#12, and signing the client
//! assertion, the RFC 7523 JWT that Entra ID takes in place of a client secret.
//!
//! The assertion is the one the Azure SDKs and MSAL send: header `{"alg":"RS256","typ":"JWT",
//! "x5t":…}` with the certificate's SHA-1 thumbprint, claims `aud` (the token endpoint), `iss` and
//! `sub` (the client ID), a random `jti`, `nbf`/`iat`/`exp`, signed RSASSA-PKCS1-v1_5 SHA-256.
//! The credential hands it to `azure_identity::ClientAssertionCredential`.
//!
//! Why not `azure_identity::ClientCertificateCredential`: it links OpenSSL (a system library to
//! build against and ship with) and takes only PKCS#12, while `az ad sp create-for-rbac
//! --create-cert` writes a PEM file. So kvrun signs the client assertion itself, without OpenSSL.
//! Hand-written here is only what no crate does for it: telling PEM from PKCS#12, finding the leaf
//! (the certificate that holds the key's public key) and ordering its chain, the JWT, and errors
//! in kvrun's words. Parsing and cryptography are crates': PKCS#12 is read by `p12-keystore` (pure
//! Rust), PEM by rustls' `pki_types`, the certificate's public key by `x509-parser` (which
//! p12-keystore already brings), and the key signs through aws-lc-rs, which rustls already brings.
//!
//! Nothing here prints key material, the file's contents or the password: `Debug` shows the
//! thumbprint only, and every error is a fixed sentence about what is wrong. The certificate file
//! as read (by `chain`) and a PEM key's DER are `zeroize::Zeroizing`, wiped when they are dropped,
//! on errors too (best effort: the key also lives in aws-lc, in p12-keystore's decrypted archive,
//! which is freed unwiped, and briefly in the PEM parser's own buffers).

use std::fmt::{self, Write as _};

use aws_lc_rs::digest;
use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p12_keystore::Pkcs12Archive;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject, SectionKind};
use x509_parser::prelude::FromDer as _;
use x509_parser::public_key::{PublicKey, RSAPublicKey};
use zeroize::Zeroizing;

/// How long an assertion is valid, as MSAL makes them (10 minutes).
const ASSERTION_LIFETIME_SECS: u64 = 600;
const PEM_FILE: &str = "PEM file";
const PKCS12_FILE: &str = "PKCS#12 file";

/// A certificate and its RSA private key, loaded from PEM or PKCS#12.
pub(super) struct ClientCertificate {
    key: RsaKeyPair,
    /// Leaf first, then its issuers as far as the file has them.
    #[allow(
        dead_code,
        reason = "for an x5c header (subject name/issuer authentication); kvrun sends x5t only"
    )]
    chain: Vec<CertificateDer<'static>>,
    x5t: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("x5t", &self.x5t)
            .finish_non_exhaustive()
    }
}

/// Why a certificate could not be loaded or used: `Display` says what is wrong, [`hint`] what to
/// do. Holds fixed words only: never key material, the file's contents or the password.
///
/// [`hint`]: CertificateError::hint
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum CertificateError {
    #[error("the certificate file is empty")]
    Empty,
    /// The file's kind: "PEM file" or "PKCS#12 file".
    #[error("no certificate in the {0}")]
    NoCertificate(&'static str),
    #[error("no private key in the {0}")]
    NoPrivateKey(&'static str),
    #[error("the private key in the PEM file is encrypted")]
    EncryptedPemKey,
    #[error("the PEM file is malformed: {0}")]
    MalformedPem(&'static str),
    #[error("the PKCS#12 file is protected by a password")]
    PasswordNeeded,
    #[error("wrong password for the PKCS#12 file")]
    WrongPassword,
    #[error("wrong password or not a PKCS#12 file ({0})")]
    UnreadablePkcs12(&'static str),
    #[error("the key is not RSA")]
    NotRsa,
    #[error("the RSA private key is unusable: {0}")]
    InvalidKey(&'static str),
    #[error("the certificate is not a well-formed X.509 certificate")]
    MalformedCertificate,
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error("signing the client assertion failed")]
    Signing,
}

impl CertificateError {
    /// What to do about it, where there is something to say.
    #[must_use]
    pub(super) fn hint(&self) -> Option<&'static str> {
        Some(match self {
            Self::Empty | Self::NoCertificate(_) | Self::UnreadablePkcs12(_) => {
                "AZURE_CLIENT_CERTIFICATE_PATH must name a PEM file with the certificate and its \
                 private key, or a PKCS#12 (.pfx) file"
            }
            Self::NoPrivateKey(_) => {
                "the file must hold the certificate and its private key together (cat cert.pem \
                 key.pem > both.pem), or be a PKCS#12 (.pfx) file"
            }
            Self::EncryptedPemKey => {
                "kvrun cannot decrypt PEM keys: use an unencrypted key (openssl pkey -in key.pem), \
                 or a PKCS#12 file (openssl pkcs12 -export) with AZURE_CLIENT_CERTIFICATE_PASSWORD"
            }
            Self::PasswordNeeded => "set AZURE_CLIENT_CERTIFICATE_PASSWORD",
            Self::WrongPassword => "check AZURE_CLIENT_CERTIFICATE_PASSWORD",
            Self::NotRsa | Self::InvalidKey(_) => {
                "Entra ID client certificates need an RSA key of 2048 bits or more"
            }
            Self::KeyMismatch => {
                "the certificate must be the one issued for the private key (in a PEM file, the \
                 first CERTIFICATE block)"
            }
            Self::MalformedPem(_) | Self::MalformedCertificate | Self::Signing => return None,
        })
    }
}

impl ClientCertificate {
    /// Detect the format: PEM if the bytes contain "-----BEGIN", else PKCS#12 (DER).
    ///
    /// PEM: the first CERTIFICATE block is the leaf and any later ones its chain; the private key
    /// may be PKCS#8 ("BEGIN PRIVATE KEY") or PKCS#1 ("BEGIN RSA PRIVATE KEY"), before or after the
    /// certificate. An encrypted PEM key is an error (kvrun cannot decrypt it); `password` is not
    /// used for PEM.
    ///
    /// PKCS#12: decrypted with the password (the empty string when `None`, as the SDKs do); the
    /// leaf is the certificate that holds the private key's public key, followed by its issuers.
    ///
    /// # Errors
    /// What is wrong with the file, in words that never include its contents or the password.
    pub(super) fn load(bytes: &[u8], password: Option<&str>) -> Result<Self, CertificateError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(CertificateError::Empty);
        }
        if contains(bytes, b"-----BEGIN") {
            Self::from_pem(bytes)
        } else {
            Self::from_pkcs12(bytes, password)
        }
    }

    /// base64url (no padding) SHA-1 thumbprint of the leaf certificate's DER: the `x5t` by which
    /// Entra ID finds the certificate registered on the application.
    #[must_use]
    #[allow(dead_code, reason = "the tests read it; the assertion reads the field")]
    pub(super) fn x5t(&self) -> &str {
        &self.x5t
    }

    /// The certificates as DER, leaf first, then its issuers as far as the file has them (for an
    /// `x5c` header, which subject name/issuer authentication needs).
    #[must_use]
    #[allow(
        dead_code,
        reason = "for an x5c header (subject name/issuer authentication); kvrun sends x5t only"
    )]
    pub(super) fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// A client assertion for `client_id` at `token_endpoint` (the full URL, e.g.
    /// `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`), valid from `now_unix` for
    /// 10 minutes. Each call has a fresh random `jti`.
    ///
    /// # Errors
    /// When the system's random generator or the signature fails (neither happens in practice).
    pub(super) fn assertion(
        &self,
        client_id: &str,
        token_endpoint: &str,
        now_unix: u64,
    ) -> Result<String, CertificateError> {
        let rng = SystemRandom::new();
        let mut jti = [0u8; 16];
        rng.fill(&mut jti).map_err(|_| CertificateError::Signing)?;
        let header = serde_json::json!({ "alg": "RS256", "typ": "JWT", "x5t": self.x5t });
        let claims = serde_json::json!({
            "aud": token_endpoint,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid_v4(jti),
            "nbf": now_unix,
            "iat": now_unix,
            "exp": now_unix.saturating_add(ASSERTION_LIFETIME_SECS),
        });
        let mut jwt = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &rng, jwt.as_bytes(), &mut signature)
            .map_err(|_| CertificateError::Signing)?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt)
    }

    fn from_pem(bytes: &[u8]) -> Result<Self, CertificateError> {
        if crate::part::pem_key_is_encrypted(bytes) {
            return Err(CertificateError::EncryptedPemKey);
        }
        let mut chain = Vec::new();
        let mut key = None;
        let mut other_key = false;
        for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
            let (kind, der) = section.map_err(|e| pem_error(&e))?;
            match kind {
                SectionKind::Certificate => chain.push(CertificateDer::from(der)),
                SectionKind::PrivateKey | SectionKind::RsaPrivateKey if key.is_none() => {
                    key = Some((kind, Zeroizing::new(der)));
                }
                // A second key, an EC key, or a section kvrun does not use: wiped all the same.
                _ => {
                    other_key |= kind == SectionKind::EcPrivateKey;
                    drop(Zeroizing::new(der));
                }
            }
        }
        let key = match key {
            Some((SectionKind::RsaPrivateKey, der)) => rsa_key(&der, RsaKeyPair::from_der)?,
            Some((_, der)) => rsa_key(&der, RsaKeyPair::from_pkcs8)?,
            None if other_key => return Err(CertificateError::NotRsa),
            None => return Err(CertificateError::NoPrivateKey(PEM_FILE)),
        };
        let Some(leaf) = chain.first() else {
            return Err(CertificateError::NoCertificate(PEM_FILE));
        };
        if !key_matches(&key, leaf)? {
            return Err(CertificateError::KeyMismatch);
        }
        Ok(Self::new(key, chain))
    }

    fn from_pkcs12(bytes: &[u8], password: Option<&str>) -> Result<Self, CertificateError> {
        let archive = Pkcs12Archive::from_pkcs12(bytes, password.unwrap_or(""))
            .map_err(|e| pkcs12_error(&e, password.is_some()))?;
        if archive.keys.is_empty() {
            return Err(CertificateError::NoPrivateKey(PKCS12_FILE));
        }
        if archive.certs.is_empty() {
            return Err(CertificateError::NoCertificate(PKCS12_FILE));
        }
        for bag in &archive.keys {
            let key = rsa_key(bag.key.as_der(), RsaKeyPair::from_pkcs8)?;
            // The leaf holds the key's public key; among several (a renewal that kept its key),
            // the one the key's bag names by local key ID.
            let mut leaf = None;
            for (i, cert) in archive.certs.iter().enumerate() {
                if key_matches(&key, cert.cert.as_der())? {
                    let named = match (&bag.local_key_id, &cert.local_key_id) {
                        (Some(a), Some(b)) => a.as_ref() == b.as_slice(),
                        _ => false,
                    };
                    if leaf.is_none() || named {
                        leaf = Some(i);
                    }
                    if named {
                        break;
                    }
                }
            }
            let Some(leaf) = leaf else { continue };
            // Then its issuers, by name, as far as the file has them.
            let names: Vec<(&str, &str)> = archive
                .certs
                .iter()
                .map(|c| (c.cert.subject(), c.cert.issuer()))
                .collect();
            let chain = crate::part::issuer_path(&names, leaf)
                .into_iter()
                .map(|i| CertificateDer::from(archive.certs[i].cert.as_der().to_vec()))
                .collect();
            return Ok(Self::new(key, chain));
        }
        Err(CertificateError::KeyMismatch)
    }

    fn new(key: RsaKeyPair, chain: Vec<CertificateDer<'static>>) -> Self {
        let thumbprint = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &chain[0]);
        Self {
            key,
            x5t: URL_SAFE_NO_PAD.encode(thumbprint.as_ref()),
            chain,
        }
    }
}

/// Parse an RSA private key from DER. The buffer stays its owner's: from a PEM file, `Zeroizing`;
/// from a PKCS#12 file, p12-keystore's archive.
fn rsa_key(
    der: &[u8],
    parse: fn(&[u8]) -> Result<RsaKeyPair, KeyRejected>,
) -> Result<RsaKeyPair, CertificateError> {
    parse(der).map_err(|e| match e.description_() {
        "WrongAlgorithm" => CertificateError::NotRsa,
        "TooSmall" => CertificateError::InvalidKey("it is shorter than 2048 bits"),
        "TooLarge" => CertificateError::InvalidKey("it is longer than 8192 bits"),
        _ => CertificateError::InvalidKey("it is not a valid RSA private key"),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn uuid_v4(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        let _ = write!(s, "{byte:02x}");
    }
    s
}

fn pem_error(e: &pem::Error) -> CertificateError {
    CertificateError::MalformedPem(match e {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section's base64 is invalid",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "it could not be read",
    })
}

fn pkcs12_error(e: &p12_keystore::error::Error, password_given: bool) -> CertificateError {
    use p12_keystore::error::Error as E;
    CertificateError::UnreadablePkcs12(match e {
        E::MacError(_) if password_given => return CertificateError::WrongPassword,
        E::MacError(_) => return CertificateError::PasswordNeeded,
        E::UnpadError => "decryption failed",
        E::UnsupportedEncryptionScheme | E::UnsupportedMacAlgorithm => {
            "it uses an encryption or MAC algorithm kvrun does not support"
        }
        E::InvalidPrivateKey => "its private key is malformed",
        E::X509Error(_) | E::UnsupportedCertificateType => "a certificate in it is malformed",
        _ => "it does not decode",
    })
}

/// Whether the certificate `cert` (DER) carries `key`'s public key: the same RSA modulus and
/// exponent. A certificate for another algorithm (EC, DSA, …), or whose RSA key does not decode,
/// does not.
///
/// # Errors
/// When `cert` is not an X.509 certificate.
fn key_matches(key: &RsaKeyPair, cert: &[u8]) -> Result<bool, CertificateError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert)
        .map_err(|_| CertificateError::MalformedCertificate)?;
    let Ok(PublicKey::RSA(certified)) = cert.public_key().parsed() else {
        return Ok(false);
    };
    // aws-lc's public key is a DER `RSAPublicKey`, as the certificate's key bits are.
    let Ok((_, own)) = RSAPublicKey::from_der(key.public_key().as_ref()) else {
        return Ok(false);
    };
    Ok(rsa_numbers(&certified) == rsa_numbers(&own))
}

/// An RSA public key's modulus and exponent, without the leading zero bytes DER may add.
fn rsa_numbers<'a>(key: &RSAPublicKey<'a>) -> (&'a [u8], &'a [u8]) {
    fn strip(n: &[u8]) -> &[u8] {
        let zeros = n.iter().take_while(|&&b| b == 0).count();
        &n[zeros..]
    }
    (strip(key.modulus), strip(key.exponent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
    };
    use base64::engine::general_purpose::STANDARD;
    use serde_json::Value;

    const PASSWORD: &str = "kvrun-test-only-password";
    const CLIENT_ID: &str = "00000000-0000-0000-0000-00000000c11e";
    const ENDPOINT: &str = "https://login.microsoftonline.com/tenant/oauth2/v2.0/token";

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/certificate/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn cat(names: &[&str]) -> Vec<u8> {
        names.iter().flat_map(|n| fixture(n)).collect()
    }

    fn pem(label: &str, der: &[u8]) -> Vec<u8> {
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
        .into_bytes()
    }

    fn leaf_der(name: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(&fixture(name))
            .unwrap()
            .to_vec()
    }

    /// The thumbprint as OpenSSL computed it, as base64url.
    fn openssl_x5t() -> String {
        let line = String::from_utf8(fixture("test-only-cert.sha1.txt")).unwrap();
        let hex = line.trim().rsplit('=').next().unwrap().replace(':', "");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(bytes.len(), 20);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn load(bytes: &[u8], password: Option<&str>) -> ClientCertificate {
        ClientCertificate::load(bytes, password).unwrap_or_else(|e| panic!("{e}"))
    }

    fn assert_is_test_cert(cert: &ClientCertificate) {
        assert_eq!(cert.x5t(), openssl_x5t());
        assert_eq!(cert.chain().len(), 1);
        assert_eq!(cert.chain()[0].as_ref(), leaf_der("test-only-cert.pem"));
    }

    #[test]
    fn pem_pkcs8_and_pkcs1_keys_in_either_order() {
        for names in [
            ["test-only-cert.pem", "test-only-key.pkcs8.pem"],
            ["test-only-cert.pem", "test-only-key.pkcs1.pem"],
            ["test-only-key.pkcs8.pem", "test-only-cert.pem"],
            ["test-only-key.pkcs1.pem", "test-only-cert.pem"],
        ] {
            assert_is_test_cert(&load(&cat(&names), None));
        }
        // CRLF line ends, and OpenSSL's "Bag Attributes" text between the sections.
        let crlf = String::from_utf8(cat(&["test-only-key.pkcs1.pem", "test-only-cert.pem"]))
            .unwrap()
            .replace('\n', "\r\n");
        assert_is_test_cert(&load(crlf.as_bytes(), None));
        assert_is_test_cert(&load(&fixture("test-only-openssl-nodes.pem"), None));
        // A password is not needed for an unencrypted PEM file, and does no harm.
        let both = cat(&["test-only-cert.pem", "test-only-key.pkcs8.pem"]);
        assert_is_test_cert(&load(&both, Some(PASSWORD)));
    }

    #[test]
    fn pem_chain_keeps_the_first_certificate_as_the_leaf() {
        let bytes = cat(&[
            "test-only-key.pkcs8.pem",
            "test-only-cert.pem",
            "test-only-ca.pem",
        ]);
        let cert = load(&bytes, None);
        assert_eq!(cert.x5t(), openssl_x5t());
        assert_eq!(cert.chain().len(), 2);
        assert_eq!(cert.chain()[1].as_ref(), leaf_der("test-only-ca.pem"));
        // A leaf that does not hold the key is refused, not skipped.
        let bytes = cat(&[
            "test-only-key.pkcs8.pem",
            "test-only-ca.pem",
            "test-only-cert.pem",
        ]);
        assert_eq!(
            ClientCertificate::load(&bytes, None).unwrap_err(),
            CertificateError::KeyMismatch
        );
    }

    #[test]
    fn pkcs12_with_and_without_password() {
        let unprotected = fixture("test-only-nopassword.p12");
        assert_is_test_cert(&load(&unprotected, None));
        assert_is_test_cert(&load(&unprotected, Some("")));
        assert_is_test_cert(&load(&fixture("test-only-password.p12"), Some(PASSWORD)));
        // RC2-40 and 3DES with a SHA-1 MAC: OpenSSL 1.x's and older Windows' defaults.
        assert_is_test_cert(&load(&fixture("test-only-legacy.p12"), Some(PASSWORD)));
    }

    #[test]
    fn pkcs12_chain_is_leaf_first() {
        let cert = load(&fixture("test-only-chain.p12"), Some(PASSWORD));
        let leaf = leaf_der("test-only-chained-cert.pem");
        let chain: Vec<&[u8]> = cert.chain().iter().map(AsRef::as_ref).collect();
        assert_eq!(chain, [&leaf[..], &leaf_der("test-only-ca.pem")[..]]);
        let thumbprint = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &leaf);
        assert_eq!(cert.x5t(), URL_SAFE_NO_PAD.encode(thumbprint));
    }

    fn err(bytes: &[u8], password: Option<&str>) -> CertificateError {
        ClientCertificate::load(bytes, password).expect_err("should not load")
    }

    /// Every failure the tests provoke, with the error expected.
    fn failures() -> Vec<(CertificateError, CertificateError)> {
        let cert_pem = fixture("test-only-cert.pem");
        let with = |key: &[u8]| [key, &cert_pem[..]].concat();
        let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let ec_pkcs8 = pem("PRIVATE KEY", ec.to_pkcs8v1().unwrap().as_ref());
        let other = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let other_pkcs8 = pem(
            "PRIVATE KEY",
            aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&other)
                .unwrap()
                .as_ref(),
        );
        let p12 = fixture("test-only-password.p12");
        let mut truncated_pem = cat(&["test-only-key.pkcs8.pem", "test-only-cert.pem"]);
        truncated_pem.truncate(truncated_pem.len() - 30);
        vec![
            (
                err(&p12, Some("wrong password")),
                CertificateError::WrongPassword,
            ),
            (err(&p12, None), CertificateError::PasswordNeeded),
            (
                err(&p12[..p12.len() / 2], Some(PASSWORD)),
                CertificateError::UnreadablePkcs12("it does not decode"),
            ),
            (
                err(&leaf_der("test-only-cert.pem"), None),
                CertificateError::UnreadablePkcs12("it does not decode"),
            ),
            (err(b"", None), CertificateError::Empty),
            (err(b" \n", None), CertificateError::Empty),
            (
                err(&cert_pem, Some(PASSWORD)),
                CertificateError::NoPrivateKey(PEM_FILE),
            ),
            (
                err(&fixture("test-only-key.pkcs8.pem"), None),
                CertificateError::NoCertificate(PEM_FILE),
            ),
            (
                err(
                    &with(&fixture("test-only-key.encrypted.pem")),
                    Some(PASSWORD),
                ),
                CertificateError::EncryptedPemKey,
            ),
            (
                err(&with(&fixture("test-only-key.legacy-encrypted.pem")), None),
                CertificateError::EncryptedPemKey,
            ),
            (err(&with(&ec_pkcs8), None), CertificateError::NotRsa),
            (
                err(&with(&other_pkcs8), None),
                CertificateError::KeyMismatch,
            ),
            (
                err(
                    &[&fixture("test-only-key.pkcs8.pem")[..], &ec_cert_pem()].concat(),
                    None,
                ),
                CertificateError::KeyMismatch,
            ),
            (
                err(&truncated_pem, None),
                CertificateError::MalformedPem("a section has no END line"),
            ),
            (
                err(&with(&pem("RSA PRIVATE KEY", b"not a key")), None),
                CertificateError::InvalidKey("it is not a valid RSA private key"),
            ),
            (
                err(
                    &cat(&["test-only-key.pkcs8.pem"])
                        .into_iter()
                        .chain(pem("CERTIFICATE", b"\x30\x03\x02\x01\x01"))
                        .collect::<Vec<u8>>(),
                    None,
                ),
                CertificateError::MalformedCertificate,
            ),
        ]
    }

    #[test]
    fn failures_say_what_is_wrong() {
        for (got, want) in failures() {
            assert_eq!(got, want, "{got}");
        }
        assert_eq!(
            CertificateError::NoPrivateKey(PEM_FILE).to_string(),
            "no private key in the PEM file"
        );
        assert_eq!(
            CertificateError::PasswordNeeded.hint(),
            Some("set AZURE_CLIENT_CERTIFICATE_PASSWORD")
        );
        assert!(
            CertificateError::EncryptedPemKey
                .hint()
                .unwrap()
                .contains("PKCS#12")
        );
    }

    /// The base64 lines of every test key file: none may appear in any output.
    fn key_chunks() -> Vec<String> {
        let mut chunks = Vec::new();
        for name in [
            "test-only-key.pkcs8.pem",
            "test-only-key.pkcs1.pem",
            "test-only-key.encrypted.pem",
            "test-only-key.legacy-encrypted.pem",
        ] {
            let text = String::from_utf8(fixture(name)).unwrap();
            for line in text
                .lines()
                .filter(|l| !l.contains(['-', ':']) && l.len() > 40)
            {
                // Any 16-character run of the key's base64, so no substring shown can hide.
                chunks.extend(
                    line.as_bytes()
                        .chunks(16)
                        .filter(|c| c.len() == 16)
                        .map(|c| String::from_utf8(c.to_vec()).unwrap()),
                );
            }
        }
        assert!(chunks.len() > 300);
        chunks
    }

    #[test]
    fn nothing_shows_key_material_or_the_password() {
        let chunks = key_chunks();
        let mut outputs = Vec::new();
        for cert in [
            load(
                &cat(&["test-only-cert.pem", "test-only-key.pkcs1.pem"]),
                None,
            ),
            load(&fixture("test-only-password.p12"), Some(PASSWORD)),
        ] {
            let shown = format!("{cert:?}");
            assert_eq!(
                shown,
                format!("ClientCertificate {{ x5t: {:?}, .. }}", openssl_x5t())
            );
            outputs.push(shown);
            outputs.push(format!("{cert:#?}"));
        }
        for (e, _) in failures() {
            outputs.push(e.to_string());
            outputs.push(format!("{e:?}"));
            outputs.extend(e.hint().map(String::from));
        }
        for out in &outputs {
            assert!(!out.contains(PASSWORD), "{out}");
            for chunk in &chunks {
                assert!(!out.contains(chunk.as_str()), "{out} shows key material");
            }
            // Nor any hex or base64 run long enough to be a key.
            let longest = out
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '+' && c != '/')
                .map(str::len)
                .max()
                .unwrap_or(0);
            assert!(longest < 30, "{out}");
        }
    }

    fn decode_json(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn assertion_is_what_entra_expects_and_verifies() {
        let spki = fixture("test-only-cert.spki.der");
        let now = 1_767_225_600;
        for cert in [
            load(
                &cat(&["test-only-cert.pem", "test-only-key.pkcs8.pem"]),
                None,
            ),
            load(
                &cat(&["test-only-key.pkcs1.pem", "test-only-cert.pem"]),
                None,
            ),
            load(&fixture("test-only-password.p12"), Some(PASSWORD)),
        ] {
            let jwt = cert.assertion(CLIENT_ID, ENDPOINT, now).unwrap();
            let parts: Vec<&str> = jwt.split('.').collect();
            assert_eq!(parts.len(), 3, "{jwt}");
            assert!(!jwt.contains('='), "base64url without padding: {jwt}");

            assert_eq!(
                decode_json(parts[0]),
                serde_json::json!({ "alg": "RS256", "typ": "JWT", "x5t": openssl_x5t() })
            );
            let claims = decode_json(parts[1]);
            let jti = claims["jti"].as_str().unwrap().to_owned();
            assert_eq!(
                claims,
                serde_json::json!({
                    "aud": ENDPOINT,
                    "iss": CLIENT_ID,
                    "sub": CLIENT_ID,
                    "jti": jti,
                    "nbf": now,
                    "iat": now,
                    "exp": now + 600,
                })
            );
            assert_eq!(jti.len(), 36);
            assert_eq!(&jti[14..15], "4", "a version-4 UUID: {jti}");
            assert_eq!(jti.matches('-').count(), 4);

            // Verified with the public key OpenSSL took from the certificate.
            let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
            assert_eq!(signature.len(), 256);
            let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &spki);
            let signed = format!("{}.{}", parts[0], parts[1]);
            public.verify(signed.as_bytes(), &signature).unwrap();
            let forged = format!("{}.{}", parts[0], URL_SAFE_NO_PAD.encode(b"{}"));
            assert!(public.verify(forged.as_bytes(), &signature).is_err());

            // A fresh jti every time.
            let again = cert.assertion(CLIENT_ID, ENDPOINT, now).unwrap();
            assert_ne!(decode_json(again.split('.').nth(1).unwrap())["jti"], jti);
        }
    }

    /// A DER element: `tag`, the shortest length, `contents`.
    fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
        let len = contents.len().to_be_bytes();
        let len = &len[len.iter().take_while(|&&b| b == 0).count()..];
        let mut out = vec![tag];
        if contents.len() >= 0x80 {
            out.push(0x80 | u8::try_from(len.len()).unwrap());
        }
        out.extend_from_slice(len);
        out.extend_from_slice(contents);
        out
    }

    /// The contents of the DER element `der` (without its tag and length).
    fn der_contents(der: &[u8]) -> &[u8] {
        let skip = match der[1] {
            0..0x80 => 2,
            n => 2 + usize::from(n & 0x7f),
        };
        &der[skip..]
    }

    /// `cert` (DER) with its `SubjectPublicKeyInfo` replaced by `spki` (DER). Its signature no
    /// longer verifies; reading the key does not check it.
    fn with_spki(cert: &[u8], spki: &[u8]) -> Vec<u8> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert).unwrap();
        let tbs = parsed.tbs_certificate.as_ref();
        let old = parsed.public_key().raw;
        let fields = der_contents(tbs);
        let at = fields.windows(old.len()).position(|w| w == old).unwrap();
        let tbs_new = der(
            0x30,
            &[&fields[..at], spki, &fields[at + old.len()..]].concat(),
        );
        der(0x30, &[&tbs_new, &der_contents(cert)[tbs.len()..]].concat())
    }

    /// test-only-cert.pem, but certifying a fresh P-256 key instead of its RSA key.
    fn ec_cert_pem() -> Vec<u8> {
        let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let spki = AsDer::<PublicKeyX509Der>::as_der(ec.public_key()).unwrap();
        pem(
            "CERTIFICATE",
            &with_spki(&leaf_der("test-only-cert.pem"), spki.as_ref()),
        )
    }

    #[test]
    fn key_matches_reads_the_rsa_key_of_v1_and_v3_certificates() {
        // test-only-cert.pem is X.509 v3; test-only-chained-cert.pem is v1 (no version field),
        // its key only in test-only-chain.p12.
        let v3_key = load(
            &cat(&["test-only-cert.pem", "test-only-key.pkcs8.pem"]),
            None,
        )
        .key;
        let v1_key = load(&fixture("test-only-chain.p12"), Some(PASSWORD)).key;
        let v3 = leaf_der("test-only-cert.pem");
        let v1 = leaf_der("test-only-chained-cert.pem");
        assert_eq!(key_matches(&v3_key, &v3), Ok(true));
        assert_eq!(key_matches(&v1_key, &v1), Ok(true));
        assert_eq!(key_matches(&v3_key, &v1), Ok(false));
        assert_eq!(key_matches(&v1_key, &v3), Ok(false));

        // Not RSA, or RSA by its OID but key bits that are not an `RSAPublicKey`: no match.
        let ec = CertificateDer::from_pem_slice(&ec_cert_pem()).unwrap();
        assert_eq!(key_matches(&v3_key, &ec), Ok(false));
        // rsaEncryption, 1.2.840.113549.1.1.1.
        let rsa_oid = der(
            0x06,
            &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
        );
        let algorithm = der(0x30, &[&rsa_oid[..], &[0x05, 0x00]].concat());
        let bits = der(0x03, b"\0not an RSA key");
        let garbled = with_spki(&v3, &der(0x30, &[algorithm, bits].concat()));
        assert_eq!(key_matches(&v3_key, &garbled), Ok(false));

        // Not DER, or not a certificate.
        for bytes in [
            &b""[..],
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x03\x02\x01\x01",
            &v3[..v3.len() - 1],
        ] {
            assert_eq!(
                key_matches(&v3_key, bytes),
                Err(CertificateError::MalformedCertificate)
            );
        }
    }
}
