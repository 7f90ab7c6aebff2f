//! What kvrun takes from its environment snapshot besides the variables it plans: the one
//! place that reads variables by name (the command line's `KVRUN_*` fallbacks are clap's). Each
//! stage gets its part as a typed value: the credential chain its [`credential::Config`], the
//! HTTP client its proxy and trust store, logging its filter, the supervisor its runtime
//! directory.

use std::ffi::OsString;
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::http;
use crate::source::Env;
use crate::vault::credential::{self, Config};

/// The settings that come from the environment, read once. `Debug` shows neither a secret nor a
/// proxy URL (which may carry a password).
pub(crate) struct Settings {
    pub(crate) credentials: Config,
    pub(crate) proxy: http::Proxy,
    pub(crate) trust_store: http::tls::Store,
    pub(crate) log: Log,
    /// `XDG_RUNTIME_DIR`: where `--init` writes secret files when no memory file can be used.
    pub(crate) runtime_dir: Option<PathBuf>,
}

/// Logging, as the environment asks for it.
#[derive(Debug)]
pub(crate) struct Log {
    /// `KVRUN_LOG`: a full tracing filter, for debugging below kvrun.
    pub(crate) filter: Option<String>,
    /// `NO_COLOR` (no-color.org) is set.
    pub(crate) no_color: bool,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |value: Option<&String>| if value.is_some() { "[set]" } else { "[unset]" };
        f.debug_struct("Settings")
            .field("credentials", &self.credentials)
            .field("all_proxy", &set(self.proxy.all.as_ref()))
            .field("https_proxy", &set(self.proxy.https.as_ref()))
            .field("no_proxy", &self.proxy.no)
            .field("trust_store", &self.trust_store)
            .field("log", &self.log)
            .field("runtime_dir", &self.runtime_dir)
            .finish()
    }
}

impl Settings {
    pub(crate) fn new(environment: &[(OsString, OsString)]) -> Settings {
        let env = Env(environment);
        // Proxies as curl reads them: upper case first.
        let either =
            |upper: &str, lower: &str| env.get(upper).or_else(|| env.get(lower)).map(str::to_owned);
        Settings {
            credentials: credential_config(&env),
            proxy: http::Proxy {
                all: either("ALL_PROXY", "all_proxy"),
                https: either("HTTPS_PROXY", "https_proxy"),
                no: either("NO_PROXY", "no_proxy"),
            },
            // rustls-native-certs reads these itself; the snapshot says whether they name the store.
            trust_store: if env.get("SSL_CERT_FILE").is_some() || env.get("SSL_CERT_DIR").is_some()
            {
                http::tls::Store::Named
            } else {
                http::tls::Store::System
            },
            log: Log {
                filter: env.get("KVRUN_LOG").map(str::to_owned),
                no_color: env.get("NO_COLOR").is_some(),
            },
            runtime_dir: env.get("XDG_RUNTIME_DIR").map(PathBuf::from),
        }
    }
}

/// The credential chain's variables, by the names the Azure SDKs give them.
pub(crate) fn credential_config(env: &Env<'_>) -> Config {
    let get = |name: &str| env.get(name).map(str::to_owned);
    Config {
        tenant_id: get(credential::AZURE_TENANT_ID),
        client_id: get(credential::AZURE_CLIENT_ID),
        client_secret: get(credential::AZURE_CLIENT_SECRET).map(Zeroizing::new),
        client_certificate_path: get(credential::AZURE_CLIENT_CERTIFICATE_PATH),
        client_certificate_password: get(credential::AZURE_CLIENT_CERTIFICATE_PASSWORD)
            .map(Zeroizing::new),
        federated_token_file: get(credential::AZURE_FEDERATED_TOKEN_FILE),
        authority_host: get(credential::AZURE_AUTHORITY_HOST),
        additionally_allowed_tenants: get(credential::AZURE_ADDITIONALLY_ALLOWED_TENANTS),
        identity_endpoint: get(credential::IDENTITY_ENDPOINT),
        identity_header: get(credential::IDENTITY_HEADER).map(Zeroizing::new),
        pod_identity_authority_host: get(credential::AZURE_POD_IDENTITY_AUTHORITY_HOST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let environment: Vec<(OsString, OsString)> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Settings::new(&environment)
    }

    #[test]
    fn proxies_are_read_upper_case_first() {
        let s = settings(&[
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:1"),
            ("no_proxy", "localhost"),
        ]);
        assert!(
            !format!("{s:?}").contains("upper"),
            "a proxy URL may carry a password"
        );
        assert_eq!(s.proxy.https.as_deref(), Some("http://upper:1"));
        assert_eq!(s.proxy.no.as_deref(), Some("localhost"));
        assert_eq!(s.proxy.all, None);
    }

    #[test]
    fn a_named_trust_store_is_one_either_variable_names() {
        assert!(matches!(
            settings(&[]).trust_store,
            http::tls::Store::System
        ));
        for name in ["SSL_CERT_FILE", "SSL_CERT_DIR"] {
            assert!(matches!(
                settings(&[(name, "/x")]).trust_store,
                http::tls::Store::Named
            ));
        }
    }

    #[test]
    fn the_credential_variables_land_in_their_fields_and_debug_hides_the_secrets() {
        let s = settings(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "hunter2"),
            ("IDENTITY_HEADER", "header-secret"),
            ("AZURE_CLIENT_CERTIFICATE_PASSWORD", "pfx-password"),
        ]);
        let c = &s.credentials;
        assert_eq!(
            (c.tenant_id.as_deref(), c.client_id.as_deref()),
            (Some("t"), Some("c"))
        );
        assert_eq!(
            c.client_secret.as_deref().map(String::as_str),
            Some("hunter2")
        );
        let debug = format!("{s:?}");
        for secret in ["hunter2", "header-secret", "pfx-password"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("client_secret: \"[set]\""), "{debug}");
    }
}
