//! One part of a certificate-backed secret: `?part=key`, `cert`, `chain` or `pkcs12` (the
//! manifest's `part = "…"`), for servers that want a key file and a certificate file (nginx,
//! Kestrel, Node's `https`).
//!
//! A certificate-backed secret is what Key Vault keeps for every certificate: content type
//! `application/x-pkcs12` (the PFX, base64, no password) or `application/x-pem-file` (the key and
//! the certificates, PEM). The parts:
//!
//! - `key`: the private key, PEM PKCS#8 (`-----BEGIN PRIVATE KEY-----`), converted from PKCS#1
//!   (`BEGIN RSA PRIVATE KEY`) or SEC1 (`BEGIN EC PRIVATE KEY`) when stored so;
//! - `cert`: the leaf certificate, PEM;
//! - `chain`: the leaf, then each certificate's issuer in turn as far as the secret has them; a
//!   self-signed root is left out (a server does not send it);
//! - `pkcs12`: the PFX itself, binary — a file only, and only from a PKCS#12 secret.
//!
//! The leaf is the certificate that issued no other certificate of the secret (the first such
//! one, in the order stored, if there are several). Issuers are found by name, as a TLS client
//! builds a path.
//!
//! Written by hand over crates: PKCS#12 is read by `p12-keystore`, PEM by rustls' `pki_types`,
//! certificates by `x509-parser`. What no crate in kvrun's tree does is re-encode a PKCS#1 or
//! SEC1 key as PKCS#8 without judging it (aws-lc's parsers refuse RSA keys under 2048 bits, which
//! a server key may still be); the two wrappings are fixed DER (RFC 5208 §5, RFC 5915 §3), a few
//! lines each. No error holds any part of the value.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p12_keystore::Pkcs12Archive;
use rustls::pki_types::pem::{PemObject, SectionKind};
use zeroize::Zeroizing;

/// A part of a certificate-backed secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Key,
    Cert,
    Chain,
    Pkcs12,
}

impl Part {
    /// `key`, `cert`, `chain` or `pkcs12`.
    ///
    /// # Errors
    /// Any other word.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "key" => Ok(Self::Key),
            "cert" => Ok(Self::Cert),
            "chain" => Ok(Self::Chain),
            "pkcs12" => Ok(Self::Pkcs12),
            other => Err(format!(
                "'{other}' is not a certificate part: write key, cert, chain or pkcs12"
            )),
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Cert => "cert",
            Self::Chain => "chain",
            Self::Pkcs12 => "pkcs12",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a part could not be taken. Fixed words: never any part of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// The content type is neither `application/x-pkcs12` nor `application/x-pem-file`.
    NotCertificate,
    /// `?part=pkcs12` of a PEM secret.
    Pkcs12FromPem,
    /// The PFX is not base64.
    NotBase64,
    /// The PFX needs a password (Key Vault's own have none).
    Password,
    /// The PFX or PEM cannot be read: why, in fixed words.
    Unreadable(&'static str),
    NoKey,
    NoCertificate,
    /// The private key is encrypted (PEM).
    EncryptedKey,
    /// A SEC1 key that does not name its curve.
    CurveUnknown,
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotCertificate => f.write_str(
                "the secret is not certificate-backed (content type application/x-pkcs12 or application/x-pem-file)",
            ),
            Self::Pkcs12FromPem => {
                f.write_str("?part=pkcs12 needs a PKCS#12 secret; this one is PEM")
            }
            Self::NotBase64 => f.write_str("the PKCS#12 secret is not base64"),
            Self::Password => f.write_str("the PKCS#12 secret is protected by a password kvrun does not have"),
            Self::Unreadable(why) => write!(f, "the certificate cannot be read: {why}"),
            Self::NoKey => f.write_str("the secret holds no private key"),
            Self::NoCertificate => f.write_str("the secret holds no certificate"),
            Self::EncryptedKey => f.write_str("the secret's private key is encrypted"),
            Self::CurveUnknown => f.write_str("the secret's EC private key does not name its curve"),
        }
    }
}

/// The media type of a content type, lower case (`application/x-pkcs12; charset=…` →
/// `application/x-pkcs12`).
fn essence(content_type: Option<&str>) -> Option<String> {
    content_type.map(|t| {
        t.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    })
}

/// What a certificate-backed secret holds.
struct Material {
    /// PKCS#8 DER.
    key: Option<Zeroizing<Vec<u8>>>,
    /// DER, in the order stored.
    certs: Vec<Vec<u8>>,
}

/// `part` of a secret's `value`. For [`Part::Pkcs12`], the value as it is (base64): delivering it
/// as a file decodes it.
///
/// # Errors
/// A secret that is not certificate-backed, cannot be read, or lacks the part.
pub fn take(
    part: Part,
    value: &str,
    content_type: Option<&str>,
) -> Result<Zeroizing<String>, Unfit> {
    let pkcs12 = match essence(content_type).as_deref() {
        Some("application/x-pkcs12") => true,
        Some("application/x-pem-file") => false,
        _ => return Err(Unfit::NotCertificate),
    };
    if part == Part::Pkcs12 && !pkcs12 {
        return Err(Unfit::Pkcs12FromPem);
    }
    let material = if pkcs12 {
        from_pkcs12(value)?
    } else {
        from_pem(value.as_bytes())?
    };
    let mut out = Zeroizing::new(String::new());
    match part {
        Part::Pkcs12 => out.push_str(value),
        Part::Key => {
            let key = material.key.ok_or(Unfit::NoKey)?;
            pem_into(&mut out, "PRIVATE KEY", &key);
        }
        Part::Cert | Part::Chain => {
            for der in chain(&material.certs, part == Part::Chain)? {
                pem_into(&mut out, "CERTIFICATE", der);
            }
        }
    }
    Ok(out)
}

fn from_pkcs12(value: &str) -> Result<Material, Unfit> {
    let compact: Zeroizing<String> =
        Zeroizing::new(value.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    let bytes = Zeroizing::new(
        STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| Unfit::NotBase64)?,
    );
    let archive = Pkcs12Archive::from_pkcs12(&bytes, "").map_err(|e| match e {
        p12_keystore::error::Error::MacError(_) => Unfit::Password,
        _ => Unfit::Unreadable("the PKCS#12 archive does not decode"),
    })?;
    Ok(Material {
        key: archive
            .keys
            .first()
            .map(|bag| Zeroizing::new(bag.key.as_der().to_vec())),
        certs: archive
            .certs
            .iter()
            .map(|c| c.cert.as_der().to_vec())
            .collect(),
    })
}

/// Whether a PEM text holds an encrypted private key: PKCS#8 `ENCRYPTED PRIVATE KEY`, or
/// OpenSSL's legacy encrypted PKCS#1 (whose headers would otherwise read as bad base64).
pub(crate) fn pem_key_is_encrypted(pem: &[u8]) -> bool {
    contains(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(pem, b"Proc-Type: 4,ENCRYPTED")
}

/// Certificate `leaf`, then each certificate's issuer in turn, by name, as far as `names` (each
/// certificate's subject and issuer) has them: up to and including a self-signed one.
pub(crate) fn issuer_path<N: PartialEq>(names: &[(N, N)], leaf: usize) -> Vec<usize> {
    let mut path = vec![leaf];
    loop {
        let (subject, issuer) = &names[path[path.len() - 1]];
        if issuer == subject {
            return path;
        }
        match (0..names.len()).find(|i| !path.contains(i) && names[*i].0 == *issuer) {
            Some(i) => path.push(i),
            None => return path,
        }
    }
}

fn from_pem(bytes: &[u8]) -> Result<Material, Unfit> {
    if pem_key_is_encrypted(bytes) {
        return Err(Unfit::EncryptedKey);
    }
    let mut material = Material {
        key: None,
        certs: Vec::new(),
    };
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        let (kind, der) = section.map_err(|_| Unfit::Unreadable("the PEM does not decode"))?;
        let der = Zeroizing::new(der);
        match kind {
            SectionKind::Certificate => material.certs.push(der.to_vec()),
            SectionKind::PrivateKey if material.key.is_none() => material.key = Some(der),
            SectionKind::RsaPrivateKey if material.key.is_none() => {
                material.key = Some(pkcs8_from_pkcs1(&der));
            }
            SectionKind::EcPrivateKey if material.key.is_none() => {
                material.key = Some(pkcs8_from_sec1(&der)?);
            }
            _ => {}
        }
    }
    Ok(material)
}

/// The leaf, and with `issuers` its issuers in turn (a self-signed root left out).
fn chain(certs: &[Vec<u8>], issuers: bool) -> Result<Vec<&[u8]>, Unfit> {
    let parsed = certs
        .iter()
        .map(|der| {
            x509_parser::parse_x509_certificate(der)
                .map(|(_, cert)| cert)
                .map_err(|_| Unfit::Unreadable("a certificate is not well-formed X.509"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let issued_another = |i: usize| {
        parsed
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && other.issuer().as_raw() == parsed[i].subject().as_raw())
    };
    let leaf = (0..parsed.len())
        .find(|&i| !issued_another(i))
        .or(if parsed.is_empty() { None } else { Some(0) })
        .ok_or(Unfit::NoCertificate)?;
    let names: Vec<(&[u8], &[u8])> = parsed
        .iter()
        .map(|c| (c.subject().as_raw(), c.issuer().as_raw()))
        .collect();
    let mut order = if issuers {
        issuer_path(&names, leaf)
    } else {
        vec![leaf]
    };
    // A self-signed root is left out (the leaf itself never is).
    if order.len() > 1 && order.last().is_some_and(|&i| names[i].0 == names[i].1) {
        order.pop();
    }
    Ok(order.into_iter().map(|i| certs[i].as_slice()).collect())
}

/// `rsaEncryption`, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// `id-ecPublicKey`, 1.2.840.10045.2.1.
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// RFC 5208 `PrivateKeyInfo { version 0, { rsaEncryption, NULL }, OCTET STRING RSAPrivateKey }`.
fn pkcs8_from_pkcs1(pkcs1: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut algorithm = tlv(0x06, RSA_ENCRYPTION);
    algorithm.extend_from_slice(&[0x05, 0x00]);
    private_key_info(&tlv(0x30, &algorithm), pkcs1)
}

/// RFC 5915 `ECPrivateKey { 1, privateKey, [0] curve, [1] publicKey }` into RFC 5208
/// `PrivateKeyInfo { 0, { id-ecPublicKey, curve }, OCTET STRING ECPrivateKey }`.
fn pkcs8_from_sec1(sec1: &[u8]) -> Result<Zeroizing<Vec<u8>>, Unfit> {
    let unreadable = Unfit::Unreadable("the EC private key does not decode");
    let (0x30, mut fields, _) = der_element(sec1).ok_or(unreadable)? else {
        return Err(unreadable);
    };
    let mut curve = None;
    while !fields.is_empty() {
        let (tag, contents, rest) = der_element(fields).ok_or(unreadable)?;
        if tag == 0xa0 {
            match der_element(contents) {
                Some((0x06, oid, _)) => curve = Some(oid),
                _ => return Err(unreadable),
            }
        }
        fields = rest;
    }
    let curve = curve.ok_or(Unfit::CurveUnknown)?;
    let mut algorithm = tlv(0x06, EC_PUBLIC_KEY);
    algorithm.extend_from_slice(&tlv(0x06, curve));
    Ok(private_key_info(&tlv(0x30, &algorithm), sec1))
}

fn private_key_info(algorithm: &[u8], key: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut info = Zeroizing::new(vec![0x02, 0x01, 0x00]);
    info.extend_from_slice(algorithm);
    info.extend_from_slice(&Zeroizing::new(tlv(0x04, key)));
    Zeroizing::new(tlv(0x30, &info))
}

/// A DER element: tag, definite length, contents.
fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(contents.len() + 6);
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(u8::try_from(len).unwrap_or_default());
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | u8::try_from(bytes.len() - skip).unwrap_or_default());
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// One DER element: `(tag, contents, the bytes after it)`.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    (rest.len() >= length).then(|| {
        let (contents, after) = rest.split_at(length);
        (tag, contents, after)
    })
}

/// Append `der` as PEM: 64-column base64 lines, a final newline.
fn pem_into(out: &mut String, label: &str, der: &[u8]) {
    let encoded = Zeroizing::new(STANDARD.encode(der));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der};
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    const PEM: Option<&str> = Some("application/x-pem-file");
    const PFX: Option<&str> = Some("application/x-pkcs12");

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/certificate/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn certs(pem: &str) -> Vec<Vec<u8>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|c| c.unwrap().to_vec())
            .collect()
    }

    fn key_der(pem: &str) -> Vec<u8> {
        match PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap() {
            PrivateKeyDer::Pkcs8(der) => der.secret_pkcs8_der().to_vec(),
            other => panic!("not PKCS#8: {other:?}"),
        }
    }

    #[test]
    fn parts_of_a_pem_secret_with_a_chain() {
        let chain = kvrun_fake::test_chain("app.example");
        let take = |part| take(part, &chain.secret_pem, PEM).unwrap();
        assert_eq!(key_der(&take(Part::Key)), key_der(&chain.key_pem));
        assert!(take(Part::Key).starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(certs(&take(Part::Cert)), certs(&chain.leaf_pem));
        // Leaf, then intermediate; the self-signed root is left out.
        let mut want = certs(&chain.leaf_pem);
        want.extend(certs(&chain.intermediate_pem));
        assert_eq!(certs(&take(Part::Chain)), want);
        // Stored in any order, the chain comes out leaf first.
        let shuffled = format!(
            "{}{}{}{}",
            chain.root_pem, chain.intermediate_pem, chain.key_pem, chain.leaf_pem
        );
        assert_eq!(
            certs(&super::take(Part::Chain, &shuffled, PEM).unwrap()),
            want
        );
        assert_eq!(
            super::take(Part::Pkcs12, &chain.secret_pem, PEM).unwrap_err(),
            Unfit::Pkcs12FromPem
        );
    }

    #[test]
    fn parts_of_a_pkcs12_secret() {
        let chain = kvrun_fake::test_chain("app.example");
        let value = STANDARD.encode(chain.pkcs12());
        let take = |part| take(part, &value, PFX).unwrap();
        assert_eq!(key_der(&take(Part::Key)), key_der(&chain.key_pem));
        assert_eq!(certs(&take(Part::Cert)), certs(&chain.leaf_pem));
        assert_eq!(certs(&take(Part::Chain)).len(), 2);
        // The PFX as it is: delivering it as a file decodes the base64.
        assert_eq!(take(Part::Pkcs12).as_str(), value);
        // Content types are compared as media types.
        assert!(super::take(Part::Cert, &value, Some("Application/X-PKCS12; v=1")).is_ok());
    }

    #[test]
    fn a_pkcs1_key_becomes_the_same_pkcs8_key_openssl_writes() {
        let secret = format!(
            "{}{}",
            fixture("test-only-key.pkcs1.pem"),
            fixture("test-only-cert.pem")
        );
        let key = take(Part::Key, &secret, PEM).unwrap();
        assert_eq!(key_der(&key), key_der(&fixture("test-only-key.pkcs8.pem")));
        // A self-signed leaf is its own chain.
        assert_eq!(
            certs(&take(Part::Chain, &secret, PEM).unwrap()),
            certs(&fixture("test-only-cert.pem"))
        );
    }

    #[test]
    fn a_sec1_key_becomes_pkcs8_with_its_curve() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let sec1: EcPrivateKeyRfc5915Der<'_> = pair.private_key().as_der().unwrap();
        let mut pem = String::new();
        pem_into(&mut pem, "EC PRIVATE KEY", sec1.as_ref());
        let key = take(Part::Key, &pem, PEM).unwrap();
        let back =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key_der(&key)).unwrap();
        assert_eq!(back.public_key().as_ref(), pair.public_key().as_ref());
    }

    #[test]
    fn what_is_not_there_is_named_never_shown() {
        let cert = fixture("test-only-cert.pem");
        for (part, value, content_type, unfit) in [
            (
                Part::Key,
                "hunter2",
                Some("text/plain"),
                Unfit::NotCertificate,
            ),
            (Part::Key, "hunter2", None, Unfit::NotCertificate),
            (Part::Key, cert.as_str(), PEM, Unfit::NoKey),
            (Part::Cert, "", PEM, Unfit::NoCertificate),
            (Part::Cert, "hunter2!", PFX, Unfit::NotBase64),
            (
                Part::Cert,
                "aHVudGVyMg==",
                PFX,
                Unfit::Unreadable("the PKCS#12 archive does not decode"),
            ),
            (
                Part::Key,
                &fixture("test-only-key.encrypted.pem"),
                PEM,
                Unfit::EncryptedKey,
            ),
        ] {
            let got = take(part, value, content_type).unwrap_err();
            assert_eq!(got, unfit, "{part} of {value:.20}");
            assert!(!got.to_string().contains("hunter2"));
        }
        let protected = STANDARD.encode(
            std::fs::read(format!(
                "{}/tests/fixtures/certificate/test-only-password.p12",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        );
        assert_eq!(
            take(Part::Cert, &protected, PFX).unwrap_err(),
            Unfit::Password
        );
    }
}
