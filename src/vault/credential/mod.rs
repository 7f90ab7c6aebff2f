//! Where tokens come from, and the per-(tenant, scope) single-flight cache in front of it.
//!
//! Today one credential: a service principal with a client secret (`AZURE_TENANT_ID`,
//! `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_AUTHORITY_HOST`) through
//! `azure_identity::ClientSecretCredential`, sharing kvrun's HTTP client (trust roots, proxy,
//! resolver). The seam for the full chain is [`Source`]: a new link is a new variant and a
//! constructor, nothing above this module changes.
//!
//! Tenants follow the Azure SDKs' rule: the vault's challenge names the tenant; a credential
//! configured for another tenant may only follow it when `AZURE_ADDITIONALLY_ALLOWED_TENANTS`
//! lists that tenant (or `*`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{ClientSecretCredential, ClientSecretCredentialOptions};
use tokio::sync::OnceCell;

use crate::error::FailureClass;

pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
pub const AZURE_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
pub const AZURE_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
pub const AZURE_ADDITIONALLY_ALLOWED_TENANTS: &str = "AZURE_ADDITIONALLY_ALLOWED_TENANTS";
const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// A bearer token. Its `Debug` never shows the value; it has no `Display`.
#[derive(Clone)]
pub struct Token(Secret);

impl Token {
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.secret()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// Why no token could be had. Holds Entra's reason (e.g. `AADSTS7000215: …`), never the secret sent.
#[derive(Debug, Clone)]
pub struct AuthFailure {
    pub class: FailureClass,
    pub reason: String,
    pub hint: Option<String>,
}

enum Source {
    ClientSecret {
        tenant: String,
        client_id: String,
        secret: Secret,
    },
    /// Nothing configured: every token request fails with this explanation.
    Missing,
}

type Cell = Arc<OnceCell<Result<Token, AuthFailure>>>;

/// The credential plus its token cache: one token per (tenant, scope), requested once even when
/// many requests want it at the same moment.
pub struct Credentials {
    source: Source,
    allowed_tenants: Vec<String>,
    authority_host: String,
    http: reqwest::Client,
    tokens: Mutex<HashMap<(String, String), Cell>>,
}

fn lookup<'e>(env: &'e [(OsString, OsString)], name: &str) -> Option<&'e str> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.to_str())
        .filter(|v| !v.is_empty())
}

impl Credentials {
    /// Choose the credential from kvrun's environment snapshot.
    #[must_use]
    pub fn from_env(env: &[(OsString, OsString)], http: reqwest::Client) -> Self {
        let source = match (
            lookup(env, AZURE_TENANT_ID),
            lookup(env, AZURE_CLIENT_ID),
            lookup(env, AZURE_CLIENT_SECRET),
        ) {
            (Some(tenant), Some(client_id), Some(secret)) => Source::ClientSecret {
                tenant: tenant.to_owned(),
                client_id: client_id.to_owned(),
                secret: Secret::new(secret.to_owned()),
            },
            _ => Source::Missing,
        };
        let allowed_tenants = lookup(env, AZURE_ADDITIONALLY_ALLOWED_TENANTS)
            .unwrap_or_default()
            .split([',', ';'])
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .collect();
        Self {
            source,
            allowed_tenants,
            authority_host: lookup(env, AZURE_AUTHORITY_HOST)
                .unwrap_or(DEFAULT_AUTHORITY_HOST)
                .to_owned(),
            http,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant a token will most likely be for, before any challenge has been seen; lets the
    /// first token request overlap the first challenge.
    #[must_use]
    pub fn expected_tenant(&self) -> Option<&str> {
        match &self.source {
            Source::ClientSecret { tenant, .. } => Some(tenant),
            Source::Missing => None,
        }
    }

    fn cell(&self, tenant: &str, scope: &str) -> Cell {
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens
            .entry((tenant.to_ascii_lowercase(), scope.to_owned()))
            .or_default()
            .clone()
    }

    /// A token for `scope` in `tenant`; concurrent callers share one request.
    ///
    /// # Errors
    /// No credential configured, a tenant not allowed, or Entra ID refused or could not be reached.
    pub async fn token(&self, tenant: &str, scope: &str) -> Result<Token, AuthFailure> {
        self.cell(tenant, scope)
            .get_or_init(|| self.request(tenant, scope))
            .await
            .clone()
    }

    /// Forget the cached token for (tenant, scope) if it is still `stale`, so the next
    /// [`token`](Self::token) asks Entra again (a vault answered 401 to it).
    pub fn invalidate(&self, tenant: &str, scope: &str, stale: &Token) {
        let key = (tenant.to_ascii_lowercase(), scope.to_owned());
        let mut tokens = self
            .tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let is_stale = tokens
            .get(&key)
            .and_then(|cell| cell.get())
            .is_some_and(|t| matches!(t, Ok(t) if t.expose() == stale.expose()));
        if is_stale {
            tokens.remove(&key);
        }
    }

    async fn request(&self, tenant: &str, scope: &str) -> Result<Token, AuthFailure> {
        let Source::ClientSecret {
            tenant: own_tenant,
            client_id,
            secret,
        } = &self.source
        else {
            return Err(AuthFailure {
                class: FailureClass::Authentication,
                reason: "no credential is configured".into(),
                hint: Some(format!(
                    "set {AZURE_TENANT_ID}, {AZURE_CLIENT_ID} and {AZURE_CLIENT_SECRET} for a service principal"
                )),
            });
        };
        if !tenant.eq_ignore_ascii_case(own_tenant)
            && !self
                .allowed_tenants
                .iter()
                .any(|t| t == "*" || t.eq_ignore_ascii_case(tenant))
        {
            return Err(AuthFailure {
                class: FailureClass::Authentication,
                reason: format!(
                    "the vault belongs to tenant {tenant}, but {AZURE_TENANT_ID} is {own_tenant}"
                ),
                hint: Some(format!(
                    "set {AZURE_TENANT_ID} to the tenant ID the vault names ({tenant}) if it is the same directory under another name; to sign in to another tenant, add it to {AZURE_ADDITIONALLY_ALLOWED_TENANTS} (or '*')"
                )),
            });
        }
        let started = Instant::now();
        let result = self
            .client_secret(tenant, client_id, secret)?
            .get_token(&[scope], None)
            .await;
        tracing::info!(
            credential = "client secret",
            tenant,
            scope,
            ok = result.is_ok(),
            elapsed_ms = started.elapsed().as_millis(),
            "token request"
        );
        result
            .map(|t| Token(t.token))
            .map_err(|e| entra_failure(&e))
    }

    fn client_secret(
        &self,
        tenant: &str,
        client_id: &str,
        secret: &Secret,
    ) -> Result<Arc<ClientSecretCredential>, AuthFailure> {
        let mut cloud = CustomConfiguration::default();
        cloud.authority_host.clone_from(&self.authority_host);
        let options = ClientSecretCredentialOptions {
            client_options: ClientOptions {
                transport: Some(Transport::new(Arc::new(self.http.clone()))),
                cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
                ..ClientOptions::default()
            },
        };
        ClientSecretCredential::new(tenant, client_id.to_owned(), secret.clone(), Some(options))
            .map_err(|e| AuthFailure {
                class: FailureClass::Authentication,
                reason: format!("the service principal's settings are not valid: {e}"),
                hint: Some(format!(
                    "{AZURE_AUTHORITY_HOST} must be an https URL; {AZURE_TENANT_ID} a tenant ID or domain"
                )),
            })
    }
}

/// Turn `azure_identity`'s error into a one-line reason: Entra's own words (`AADSTS…`), without the
/// SDK's troubleshooting boilerplate.
fn entra_failure(err: &azure_core::Error) -> AuthFailure {
    use azure_core::error::ErrorKind;
    let mut status = None;
    let mut transport = false;
    let mut untrusted = None;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            untrusted = Some(tls.to_string());
        }
        if let Some(az) = e.downcast_ref::<azure_core::Error>() {
            match az.kind() {
                ErrorKind::HttpResponse { status: s, .. } => status = Some(u16::from(*s)),
                ErrorKind::Connection | ErrorKind::Io => transport = true,
                _ => {}
            }
        }
        cause = e.source();
    }
    let text = err.to_string();
    let text = text
        .split("\nTo troubleshoot")
        .next()
        .unwrap_or_default()
        .replace("ClientSecretCredential authentication failed.", "")
        .trim()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    if let Some(tls) = untrusted {
        return AuthFailure {
            class: FailureClass::Protocol,
            reason: format!("token request failed: TLS: {tls}"),
            hint: Some("Entra ID's certificate is not trusted; if a proxy inspects TLS, point SSL_CERT_FILE or SSL_CERT_DIR at its CA".into()),
        };
    }
    let (class, hint) = match status {
        Some(s) if s == 408 || s == 429 || s >= 500 => (FailureClass::Unavailable, None),
        Some(s) if (300..400).contains(&s) => (
            FailureClass::Protocol,
            Some(format!(
                "Entra ID answered with a redirect; check {AZURE_AUTHORITY_HOST}"
            )),
        ),
        Some(_) => (
            FailureClass::Authentication,
            Some(format!(
                "check {AZURE_CLIENT_ID} and {AZURE_CLIENT_SECRET}: use the secret's value, not its ID, and make sure it has not expired"
            )),
        ),
        None if transport => (
            FailureClass::Unavailable,
            Some(format!(
                "Entra ID could not be reached; check the network, HTTPS_PROXY and {AZURE_AUTHORITY_HOST}"
            )),
        ),
        None => (FailureClass::Authentication, None),
    };
    let reason = match status {
        Some(s) => format!("Entra ID answered {s}: {text}"),
        None => format!("token request failed: {text}"),
    };
    AuthFailure {
        class,
        reason,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[tokio::test]
    async fn missing_credential_explains_itself() {
        let creds = Credentials::from_env(&env(&[]), reqwest::Client::new());
        let err = creds
            .token("t", "https://vault.azure.net/.default")
            .await
            .unwrap_err();
        assert_eq!(err.class, FailureClass::Authentication);
        assert!(err.hint.unwrap().contains(AZURE_CLIENT_SECRET));
    }

    #[tokio::test]
    async fn another_tenant_needs_the_allow_list() {
        let creds = Credentials::from_env(
            &env(&[
                (AZURE_TENANT_ID, "home"),
                (AZURE_CLIENT_ID, "c"),
                (AZURE_CLIENT_SECRET, "hunter2"),
            ]),
            reqwest::Client::new(),
        );
        let err = creds
            .token("other", "https://vault.azure.net/.default")
            .await
            .unwrap_err();
        assert!(err.reason.contains("tenant other"), "{}", err.reason);
        assert!(
            err.hint
                .as_deref()
                .unwrap()
                .contains(AZURE_ADDITIONALLY_ALLOWED_TENANTS)
        );
        assert!(!format!("{err:?}").contains("hunter2"));
    }

    #[test]
    fn token_debug_is_redacted() {
        let token = Token(Secret::new("eyJ0eXAi.secret"));
        assert_eq!(format!("{token:?}"), "Token([redacted])");
    }
}
