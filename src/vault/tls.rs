//! The TLS settings of every connection a run opens — vaults, Entra ID, a managed identity
//! endpoint: the OS trust store through rustls-platform-verifier (so `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` apply), HTTP/1.1, built once and cloned (a clone shares the verifier).
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

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_platform_verifier::Verifier;

/// The run's TLS configuration; the trust store starts loading now.
///
/// # Errors
/// When the crypto provider supports none of the safe protocol versions (it does).
pub fn config() -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = LoadingVerifier::start(provider.clone());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous() // not dangerous: it is the platform verifier, loaded in the background
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The platform verifier, whose trust store is loaded on another thread.
#[derive(Debug)]
struct LoadingVerifier {
    provider: Arc<CryptoProvider>,
    loading: Mutex<Option<JoinHandle<Result<Verifier, rustls::Error>>>>,
    loaded: OnceLock<Result<Verifier, rustls::Error>>,
}

impl LoadingVerifier {
    fn start(provider: Arc<CryptoProvider>) -> Self {
        let for_loader = provider.clone();
        let loading = std::thread::Builder::new()
            .name("kvrun-trust-store".into())
            .spawn(move || Verifier::new(for_loader))
            .ok();
        Self {
            provider,
            loading: Mutex::new(loading),
            loaded: OnceLock::new(),
        }
    }

    /// The loaded verifier, waiting for the loader the first time (or loading here if the
    /// thread could not be started).
    fn verifier(&self) -> Result<&Verifier, rustls::Error> {
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
                    None => Verifier::new(self.provider.clone()),
                }
            })
            .as_ref()
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
        let loading = LoadingVerifier::start(provider.clone());
        let schemes = loading.supported_verify_schemes();
        assert!(loading.loaded.get().is_none(), "answered without waiting");
        let platform = Verifier::new(provider).expect("this machine has a trust store");
        assert_eq!(schemes, platform.supported_verify_schemes());
    }
}
