//! Client certificates: the test material a test hands to the program under test
//! ([`TestCertificate`]) and what the fake Entra endpoint keeps of a registered certificate to
//! check a client assertion against ([`CertKey`]).

use aws_lc_rs::digest::{self, SHA1_FOR_LEGACY_USE_ONLY, SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
    PrivateKeyChain,
};
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_RSA_SHA256};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A self-signed RSA 2048 certificate and its private key, from [`test_certificate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestCertificate {
    /// The certificate, PEM (`BEGIN CERTIFICATE`).
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    pub key_pem: String,
    /// The same private key, PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`).
    pub key_pem_pkcs1: String,
}

/// Makes a self-signed certificate with subject `CN={common_name}` and a new RSA 2048 key
/// (valid from 1975 to 4096, rcgen's defaults).
///
/// # Panics
/// If the key or the certificate cannot be made.
#[must_use]
pub fn test_certificate(common_name: &str) -> TestCertificate {
    let key = KeyPair::generate_for(&PKCS_RSA_SHA256).expect("RSA 2048 key");
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let cert = params.self_signed(&key).expect("self-signed certificate");
    let pkcs1 = pkcs1_from_pkcs8(&key.serialize_der()).expect("an RSA PKCS#8 key");
    TestCertificate {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        key_pem_pkcs1: pem("RSA PRIVATE KEY", &pkcs1),
    }
}

impl TestCertificate {
    /// The certificate, DER.
    fn cert_der(&self) -> Vec<u8> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .expect("the certificate's PEM")
            .to_vec()
    }

    /// A PKCS#12 (PFX) file holding the key and the certificate (one entry, alias `kvrun-test`,
    /// local key id = the certificate's SHA-1), encrypted with PBES2 (PBKDF2-HMAC-SHA256,
    /// AES-256-CBC) and MAC'd with HMAC-SHA256, as OpenSSL 3 and current Windows write them.
    ///
    /// # Panics
    /// If the file cannot be written (it always can for a [`test_certificate`]).
    #[must_use]
    pub fn pkcs12(&self, password: &str) -> Vec<u8> {
        let cert_der = self.cert_der();
        let key_der = rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .expect("the key's PEM");
        let key = PrivateKey::from_der(key_der.secret_der()).expect("a PKCS#8 key");
        let cert = Certificate::from_der(&cert_der).expect("the certificate's DER");
        let local_key_id = digest::digest(&SHA1_FOR_LEGACY_USE_ONLY, &cert_der)
            .as_ref()
            .to_vec();
        let chain = PrivateKeyChain::new(local_key_id, key, [cert]);
        let mut store = KeyStore::new();
        store.add_entry("kvrun-test", KeyStoreEntry::PrivateKeyChain(chain));
        store
            .writer(password)
            .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
            .mac_algorithm(MacAlgorithm::HmacSha256)
            .write()
            .expect("PKCS#12")
    }
}

/// A server certificate issued through an intermediate CA by a root CA, with the leaf's EC P-256
/// key: what a certificate-backed Key Vault secret holds, from [`test_chain`].
#[derive(Clone, Debug)]
pub struct TestChain {
    pub root_pem: String,
    pub intermediate_pem: String,
    pub leaf_pem: String,
    /// The leaf's key, PKCS#8 PEM (`BEGIN PRIVATE KEY`).
    pub key_pem: String,
    /// The leaf's key as Key Vault's PEM secret holds it: the key, then leaf, intermediate and
    /// root.
    pub secret_pem: String,
}

/// Makes a root CA, an intermediate CA and a leaf for `common_name` (an EC P-256 key each).
///
/// # Panics
/// If a key or a certificate cannot be made.
#[must_use]
pub fn test_chain(common_name: &str) -> TestChain {
    let ca = |name: &str| {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
    };
    let root_key = KeyPair::generate().expect("P-256 key");
    let root =
        rcgen::CertifiedIssuer::self_signed(ca("kvrun test-only root"), root_key).expect("root");
    let intermediate_key = KeyPair::generate().expect("P-256 key");
    let intermediate = rcgen::CertifiedIssuer::signed_by(
        ca("kvrun test-only intermediate"),
        intermediate_key,
        &*root,
    )
    .expect("intermediate");
    let leaf_key = KeyPair::generate().expect("P-256 key");
    let mut params = CertificateParams::new(vec![common_name.to_owned()]).expect("a DNS name");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let leaf = params.signed_by(&leaf_key, &*intermediate).expect("leaf");
    let key_pem = leaf_key.serialize_pem();
    let secret_pem = format!(
        "{key_pem}{}{}{}",
        leaf.pem(),
        intermediate.pem(),
        root.pem()
    );
    TestChain {
        root_pem: root.pem(),
        intermediate_pem: intermediate.pem(),
        leaf_pem: leaf.pem(),
        key_pem,
        secret_pem,
    }
}

impl TestChain {
    /// A PKCS#12 without a password, as Key Vault's `application/x-pkcs12` secret holds it
    /// (base64 of this): the leaf's key and all three certificates.
    ///
    /// # Panics
    /// If the file cannot be written.
    #[must_use]
    pub fn pkcs12(&self) -> Vec<u8> {
        let der = |pem: &str| {
            CertificateDer::from_pem_slice(pem.as_bytes())
                .expect("a certificate's PEM")
                .to_vec()
        };
        let leaf = der(&self.leaf_pem);
        let key_der = rustls::pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .expect("the key's PEM");
        let key = PrivateKey::from_der(key_der.secret_der()).expect("a PKCS#8 key");
        let certs = [&self.leaf_pem, &self.intermediate_pem, &self.root_pem]
            .map(|pem| Certificate::from_der(&der(pem)).expect("the certificate's DER"));
        let local_key_id = digest::digest(&SHA1_FOR_LEGACY_USE_ONLY, &leaf)
            .as_ref()
            .to_vec();
        let chain = PrivateKeyChain::new(local_key_id, key, certs);
        let mut store = KeyStore::new();
        store.add_entry("kvrun-test", KeyStoreEntry::PrivateKeyChain(chain));
        store
            .writer("")
            .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
            .mac_algorithm(MacAlgorithm::HmacSha256)
            .write()
            .expect("PKCS#12")
    }
}

/// What the fake keeps of a registered client certificate.
pub(crate) struct CertKey {
    pub sha1: Vec<u8>,
    pub sha256: Vec<u8>,
    /// The certificate's `SubjectPublicKeyInfo`, DER.
    pub spki: Vec<u8>,
}

impl CertKey {
    /// Reads the first certificate of a PEM text.
    pub(crate) fn from_pem(pem: &str) -> Result<CertKey, String> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| format!("no PEM certificate: {e}"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        Ok(CertKey {
            sha1: digest::digest(&SHA1_FOR_LEGACY_USE_ONLY, &der)
                .as_ref()
                .to_vec(),
            sha256: digest::digest(&SHA256, &der).as_ref().to_vec(),
            spki: cert.public_key().raw.to_vec(),
        })
    }
}

/// The `RSAPrivateKey` (PKCS#1) inside an RSA `PrivateKeyInfo` (PKCS#8 v1):
/// `SEQUENCE { INTEGER 0, SEQUENCE { OID, NULL }, OCTET STRING { RSAPrivateKey } }`.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Option<Vec<u8>> {
    const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let (0x30, info, _) = der_element(pkcs8)? else {
        return None;
    };
    let (0x02, [0], rest) = der_element(info)? else {
        return None;
    };
    let (0x30, algorithm, rest) = der_element(rest)? else {
        return None;
    };
    let (0x06, RSA_ENCRYPTION, _) = der_element(algorithm)? else {
        return None;
    };
    let (0x04, key, _) = der_element(rest)? else {
        return None;
    };
    Some(key.to_vec())
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

/// PEM with 64-column base64 lines and a final newline.
fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}
