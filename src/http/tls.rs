//! The TLS settings of every connection a run opens — vaults, Entra ID, App Configuration: the
//! OS trust store through rustls-platform-verifier (so `SSL_CERT_FILE` / `SSL_CERT_DIR` apply),
//! ALPN `h2` then `http/1.1`, built once and shared by every connection.
//!
//! An image with no CA certificates at all (scratch, some distroless variants) gets the Mozilla
//! roots compiled into kvrun (`webpki-root-certs`, the set rustls-platform-verifier itself ships
//! for platforms without a store) and a warning that says so, instead of failing every vault.
//! Certificates from the system store, when there are any, are used and the compiled-in roots are
//! not. When `SSL_CERT_FILE` or `SSL_CERT_DIR` names the store, it is the only one: if it holds
//! nothing (a typo, a DER file), every vault fails with that error instead of trusting the public
//! roots that the variable was perhaps set to exclude.
//!
//! Loading the trust store is the costliest thing kvrun does before its first request: with
//! neither variable set, rustls-native-certs reads the CA bundle *and* the certificate directory
//! (Debian's ca-certificates: ~300 files, ~4 ms of CPU on the benchmark machine). So it is loaded
//! once, and on a thread of its own, started with the configuration: the first connections' TCP
//! handshakes and TLS first flights go out meanwhile, and only the check of a server's
//! certificate waits for the store. The handshake's signature checks need only the crypto
//! provider and never wait.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_platform_verifier::Verifier;

/// The run's TLS configuration; the trust store starts loading now.
///
/// # Errors
/// When the crypto provider supports none of the safe protocol versions (it does).
pub fn config(store: Store) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = LoadingVerifier::start(provider.clone(), store);
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous() // not dangerous: it is the platform verifier, loaded in the background
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The platform verifier, whose trust store is loaded on another thread.
#[derive(Debug)]
struct LoadingVerifier {
    provider: Arc<CryptoProvider>,
    store: Store,
    loading: Mutex<Option<JoinHandle<Result<Loaded, rustls::Error>>>>,
    loaded: OnceLock<Result<Loaded, rustls::Error>>,
}

/// The verifier a run uses: the platform's, or the compiled-in roots when there is no store.
#[derive(Debug)]
enum Loaded {
    Platform(Verifier),
    Compiled(Arc<WebPkiServerVerifier>),
}

impl Loaded {
    fn verifier(&self) -> &dyn ServerCertVerifier {
        match self {
            Self::Platform(v) => v,
            Self::Compiled(v) => v.as_ref(),
        }
    }
}

/// Where the trust store comes from, as kvrun's environment snapshot says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    /// The system's (neither `SSL_CERT_FILE` nor `SSL_CERT_DIR` set).
    System,
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR`.
    Named,
}

/// The platform verifier, or the compiled-in Mozilla roots when the system has no CA
/// certificate at all (see the module docs).
fn load(provider: Arc<CryptoProvider>, store: Store) -> Result<Loaded, rustls::Error> {
    choose(Verifier::new(provider.clone()), provider, store)
}

fn choose(
    platform: Result<Verifier, rustls::Error>,
    provider: Arc<CryptoProvider>,
    store: Store,
) -> Result<Loaded, rustls::Error> {
    match platform {
        Ok(verifier) => Ok(Loaded::Platform(verifier)),
        Err(e) if store == Store::Named => Err(e),
        // On Linux the platform verifier fails only when it found no usable CA certificate
        // (it ignores the ones it cannot parse): an empty store, whatever its message says.
        Err(e) => {
            tracing::warn!(
                "no CA certificates on this system ({}): using the Mozilla roots compiled into kvrun",
                super::untrusted(&e.to_string())
            );
            compiled_roots(provider).map(Loaded::Compiled)
        }
    }
}

fn compiled_roots(
    provider: Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))
}

impl LoadingVerifier {
    fn start(provider: Arc<CryptoProvider>, store: Store) -> Self {
        let for_loader = provider.clone();
        let loading = std::thread::Builder::new()
            .name("kvrun-trust-store".into())
            .spawn(move || load(for_loader, store))
            .ok();
        Self {
            provider,
            store,
            loading: Mutex::new(loading),
            loaded: OnceLock::new(),
        }
    }

    /// The loaded verifier, waiting for the loader the first time (or loading here if the
    /// thread could not be started).
    fn verifier(&self) -> Result<&dyn ServerCertVerifier, rustls::Error> {
        self.loaded
            .get_or_init(|| {
                let loading = self
                    .loading
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                match loading {
                    Some(thread) => thread.join().unwrap_or_else(|_| {
                        Err(rustls::Error::General(
                            "loading the trust store failed".into(),
                        ))
                    }),
                    None => load(self.provider.clone(), self.store),
                }
            })
            .as_ref()
            .map(Loaded::verifier)
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LoadingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    // The platform verifier answers these from the crypto provider alone (webpki's
    // `WebPkiServerVerifier`), and so does this, without waiting for the store.

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_what_the_platform_verifier_answers_before_the_store_is_loaded() {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let loading = LoadingVerifier::start(provider.clone(), Store::System);
        let schemes = loading.supported_verify_schemes();
        assert!(loading.loaded.get().is_none(), "answered without waiting");
        let platform = Verifier::new(provider).expect("this machine has a trust store");
        assert_eq!(schemes, platform.supported_verify_schemes());
    }

    #[test]
    fn the_compiled_in_roots_are_the_mozilla_set() {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = compiled_roots(provider).expect("the compiled-in roots load");
        assert!(
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.len() > 100,
            "the Mozilla set, not a stub"
        );
        assert!(!verifier.supported_verify_schemes().is_empty());
    }

    #[test]
    fn an_empty_system_store_falls_back_but_an_empty_named_one_fails() {
        let provider = || Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let empty = || {
            Err(rustls::Error::General(
                "No CA certificates were loaded".into(),
            ))
        };
        assert!(matches!(
            choose(empty(), provider(), Store::System),
            Ok(Loaded::Compiled(_))
        ));
        assert!(matches!(
            choose(empty(), provider(), Store::Named),
            Err(rustls::Error::General(e)) if e == "No CA certificates were loaded"
        ));
    }

    #[test]
    fn offers_h2_then_http1() {
        let config = config(Store::System).expect("a TLS configuration");
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
