//! The throw-away certificate authority made at start-up and the server's TLS configuration.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// The names the leaf certificate is valid for.
pub(crate) const SERVER_NAMES: [&str; 5] = [
    "*.vault.localhost",
    "*.azconfig.localhost",
    "login.localhost",
    "localhost",
    "127.0.0.1",
];

/// The public-cloud names the leaf is also valid for with [`crate::Options::public_cloud_names`],
/// for clients that insist on real Azure host names (reached through [`crate::ConnectProxy`]).
pub(crate) const PUBLIC_CLOUD_NAMES: [&str; 3] = [
    "*.vault.azure.net",
    "login.microsoftonline.com",
    "*.azconfig.io",
];

/// How long ago an expired leaf certificate became valid, and how long ago it expired.
pub(crate) const EXPIRED_VALIDITY: (Duration, Duration) = (
    Duration::from_secs(30 * 86_400),
    Duration::from_secs(2 * 86_400),
);

pub(crate) struct Certs {
    pub ca_pem: String,
    /// Offers `h2`, then `http/1.1` (as Key Vault does, docs/protocol.md §7).
    pub server: Arc<ServerConfig>,
    /// The same certificate, offering only `http/1.1` (an HTTP/1.1-only server).
    pub server_http1_only: Arc<ServerConfig>,
}

/// Makes a CA, a leaf for [`SERVER_NAMES`] (and [`PUBLIC_CLOUD_NAMES`] if `public_cloud_names`)
/// signed by it, and the server configs ([`Certs`]).
/// An `expired` leaf is valid only in the past ([`EXPIRED_VALIDITY`]); the CA is valid from 1975
/// to 4096 (rcgen's defaults) either way.
pub(crate) fn generate(expired: bool, public_cloud_names: bool) -> Certs {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "kvrun-fake test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut names = SERVER_NAMES.map(String::from).to_vec();
    if public_cloud_names {
        names.extend(PUBLIC_CLOUD_NAMES.map(String::from));
    }
    let mut leaf = CertificateParams::new(names).expect("leaf names");
    leaf.distinguished_name
        .push(DnType::CommonName, "kvrun-fake");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    if expired {
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        let now = Duration::from_secs(crate::unix_now());
        let (since, until) = EXPIRED_VALIDITY;
        leaf.not_before = epoch + now.saturating_sub(since);
        leaf.not_after = epoch + now.saturating_sub(until);
    }
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .expect("leaf certificate");

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key)
        .expect("server certificate");
    let mut http1_only = config.clone();
    http1_only.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Certs {
        ca_pem: ca_cert.pem(),
        server: Arc::new(config),
        server_http1_only: Arc::new(http1_only),
    }
}
