//! Where tokens come from: the credential chain Azure workloads use, and the per-(tenant, scope)
//! single-flight cache in front of it.
//!
//! The chain, in order; the first link that is configured and answers wins, and is used for the
//! rest of the run:
//!
//! 1. `env`: a service principal from `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` with
//!    `AZURE_CLIENT_SECRET`, or `AZURE_CLIENT_CERTIFICATE_PATH` (PEM or PKCS#12, optional
//!    `AZURE_CLIENT_CERTIFICATE_PASSWORD`; kvrun signs the client assertion itself, no OpenSSL);
//! 2. `workload-identity`: `AZURE_FEDERATED_TOKEN_FILE` + tenant + client id (AKS); the file is
//!    read afresh for every token request, since the kubelet rotates it;
//! 3. `managed-identity`: App Service / Functions / Container Apps (`IDENTITY_ENDPOINT` +
//!    `IDENTITY_HEADER`), else IMDS after a fast probe ([`managed`]);
//! 4. `azure-cli` (`az`), then 5. `azd` ([`tools`]).
//!
//! A link that is not configured, or whose source is not there (no IMDS, `az` not installed or
//! not logged in), is *unavailable*: the chain moves on and remembers why. A link that is
//! configured and is refused (a wrong client secret) stops the chain: falling through to a
//! developer's `az login` would hide the misconfiguration. When nothing works, the error lists
//! every link with its reason and the hint that fixes it. `--credential KIND` keeps one link.
//!
//! The pieces: [`chain`] (which links the environment configures, and the error when none
//! works), [`cache`] (the token cache), [`entra`] (the `azure_identity` adapter and what its
//! errors mean), [`managed`] and [`tools`] (kvrun's own managed identity client, `az`/`azd`),
//! [`sdk_client`] (kvrun's HTTP client as `azure_identity`'s, and what Entra answered),
//! [`certificate`] (a client certificate and the assertion it signs), [`tenant`] (which tenants a
//! challenge may lead to).
//!
//! Entra links go through `azure_identity` (`ClientSecretCredential`, `ClientAssertionCredential`)
//! over kvrun's HTTP client ([`sdk_client`]: answers of at most 64 KiB), with the authority host from
//! `AZURE_AUTHORITY_HOST` and `azure_core`'s own retries off: kvrun's one rule
//! ([`super::retry`]) decides, for token requests as for vault GETs, within the run's deadline.
//!
//! The cache ([`Credentials::token`]): one token per (tenant, scope), reused until five minutes
//! before its `expires_on` (as the SDKs do), then refreshed. Callers that want the same token at
//! the same moment share one request and its outcome, success or failure; a failure is kept only
//! for the rest of the resolution it happened in, so the next `--watch` check asks again. Every request is bounded: an
//! Entra or managed identity attempt by the attempt timeout, `az`/`azd` by their own 30 s, all
//! by the run's deadline.
//!
//! Tenants follow the Azure SDKs' rule: the vault's challenge names the tenant; when
//! `AZURE_TENANT_ID` names another one, kvrun only follows the challenge to a tenant listed in
//! `AZURE_ADDITIONALLY_ALLOWED_TENANTS` (or `*`). Managed identities have one tenant and ignore it.

mod cache;
mod certificate;
mod chain;
mod entra;
pub mod managed;
pub mod sdk_client;
mod tenant;
pub mod tools;

use std::ffi::OsString;
use std::fmt;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

use super::retry::{self, Next, Retry, Schedule};
use crate::error::{FailureClass, Problem};
use azure_core::credentials::{Secret, TokenCredential};
use azure_identity::{
    ClientAssertion, ClientAssertionCredential, ClientAssertionCredentialOptions,
    ClientSecretCredential, ClientSecretCredentialOptions,
};
use chain::{Link, chain_failure, configure};
use entra::{CertificateAssertion, FileAssertion, entra_token, settings_error};

pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
pub const AZURE_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
pub const AZURE_CLIENT_CERTIFICATE_PATH: &str = "AZURE_CLIENT_CERTIFICATE_PATH";
pub const AZURE_CLIENT_CERTIFICATE_PASSWORD: &str = "AZURE_CLIENT_CERTIFICATE_PASSWORD";
pub const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
pub const AZURE_AUTHORITY_HOST: &str = "AZURE_AUTHORITY_HOST";
pub const AZURE_ADDITIONALLY_ALLOWED_TENANTS: &str = "AZURE_ADDITIONALLY_ALLOWED_TENANTS";
pub const IDENTITY_ENDPOINT: &str = "IDENTITY_ENDPOINT";
pub const IDENTITY_HEADER: &str = "IDENTITY_HEADER";
pub const AZURE_POD_IDENTITY_AUTHORITY_HOST: &str = "AZURE_POD_IDENTITY_AUTHORITY_HOST";
const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";

/// The variables that carry kvrun's own secret material, removed from the child's environment by
/// `--hide-credentials`.
pub const SECRET_VARIABLES: [&str; 6] = [
    AZURE_CLIENT_SECRET,
    AZURE_CLIENT_CERTIFICATE_PATH,
    AZURE_CLIENT_CERTIFICATE_PASSWORD,
    AZURE_FEDERATED_TOKEN_FILE,
    IDENTITY_HEADER,
    crate::appconfig::CONNECTION_STRING_VARIABLE,
];

/// What the chain is configured with: the variables the Azure SDKs read (named by the constants
/// above), taken from kvrun's environment snapshot by the settings layer (`crate::settings`), so
/// that nothing here reads a variable by name. `Debug` says which are set, never a secret's value.
#[derive(Clone, Default)]
pub struct Config {
    pub tenant_id: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<zeroize::Zeroizing<String>>,
    pub client_certificate_path: Option<String>,
    pub client_certificate_password: Option<zeroize::Zeroizing<String>>,
    pub federated_token_file: Option<String>,
    pub authority_host: Option<String>,
    pub additionally_allowed_tenants: Option<String>,
    /// App Service and Container Apps managed identity: the endpoint and its header.
    pub identity_endpoint: Option<String>,
    pub identity_header: Option<zeroize::Zeroizing<String>>,
    /// Where IMDS is (tests point it at loopback).
    pub pod_identity_authority_host: Option<String>,
}

/// What `Debug` shows of a setting that may hold a secret: whether it is there, never what.
pub(crate) fn set<T>(value: Option<&T>) -> &'static str {
    if value.is_some() { "[set]" } else { "[unset]" }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &set(self.client_secret.as_ref()))
            .field("client_certificate_path", &self.client_certificate_path)
            .field(
                "client_certificate_password",
                &set(self.client_certificate_password.as_ref()),
            )
            .field("federated_token_file", &self.federated_token_file)
            .field("authority_host", &self.authority_host)
            .field(
                "additionally_allowed_tenants",
                &self.additionally_allowed_tenants,
            )
            .field("identity_endpoint", &self.identity_endpoint)
            .field("identity_header", &set(self.identity_header.as_ref()))
            .field(
                "pod_identity_authority_host",
                &self.pod_identity_authority_host,
            )
            .finish()
    }
}

/// The links of the chain (`--credential` names them: [`crate::cli::Credential`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Env,
    WorkloadIdentity,
    ManagedIdentity,
    AzureCli,
    Azd,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Env,
        Kind::WorkloadIdentity,
        Kind::ManagedIdentity,
        Kind::AzureCli,
        Kind::Azd,
    ];

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Env => "env",
            Self::WorkloadIdentity => "workload-identity",
            Self::ManagedIdentity => "managed-identity",
            Self::AzureCli => "azure-cli",
            Self::Azd => "azd",
        }
    }
}

/// A bearer token, and when it expires if the issuer said. Its `Debug` never shows the value;
/// it has no `Display`. A clone shares the token's bytes, and its `Authorization` value is built
/// once, when the token arrives: every GET of a run sends the same token (an Entra token is
/// 1.5–2.5 KB), which it used to copy twice and check byte by byte.
#[derive(Clone)]
pub struct Token(std::sync::Arc<Bearer>, Option<SystemTime>);

struct Bearer {
    secret: Secret,
    /// `Bearer <token>`, marked sensitive (h2 never indexes it, its `Debug` shows no bytes);
    /// `None` when the token holds bytes a header value cannot.
    authorization: Option<hyper::header::HeaderValue>,
}

impl Token {
    pub(crate) fn new(value: String, expires_on: Option<SystemTime>) -> Self {
        Self::from_secret(Secret::new(value), expires_on)
    }

    fn from_secret(secret: Secret, expires_on: Option<SystemTime>) -> Self {
        let authorization =
            hyper::header::HeaderValue::try_from(format!("Bearer {}", secret.secret()))
                .ok()
                .map(|mut value| {
                    value.set_sensitive(true);
                    value
                });
        Self(
            std::sync::Arc::new(Bearer {
                secret,
                authorization,
            }),
            expires_on,
        )
    }

    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.secret.secret()
    }

    /// The `Authorization` header's value, `Bearer <token>`, sensitive; `None` when the token
    /// holds bytes a header value cannot (the caller refuses to send it).
    #[must_use]
    pub fn authorization(&self) -> Option<&hyper::header::HeaderValue> {
        self.0.authorization.as_ref()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// Why one link gave no token.
#[derive(Debug, Clone)]
pub struct LinkError {
    /// The link's source is not there or not configured: the chain moves on.
    pub unavailable: bool,
    pub failure: Problem,
    /// Whether asking the same link again could help ([`retry`]'s rule).
    pub retry: Retry,
}

impl LinkError {
    pub(crate) fn unavailable(reason: impl Into<String>, hint: Option<String>) -> Self {
        Self {
            unavailable: true,
            failure: Problem::new(FailureClass::Authentication, reason).maybe_hint(hint),
            retry: Retry::Never,
        }
    }

    pub(crate) fn failed(failure: Problem) -> Self {
        Self {
            unavailable: false,
            failure,
            retry: Retry::Never,
        }
    }

    /// The same failure, worth another try as `retry` says.
    pub(crate) fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }
}

/// The chain plus its token cache (see the module docs).
pub struct Credentials {
    links: Vec<(Kind, Result<Link, LinkError>)>,
    /// The link that produced the first token; later tokens come from it directly.
    chosen: OnceLock<usize>,
    configured_tenant: Option<String>,
    tenants: tenant::Policy,
    authority_host: String,
    /// The run's one HTTP client: Entra (through `azure_identity`) and managed identity.
    http: std::sync::Arc<crate::http::Client>,
    environment: Vec<(OsString, OsString)>,
    tokens: cache::Tokens,
}

impl Credentials {
    /// Build the chain from its configuration; `only` keeps one link. `environment` is the
    /// snapshot `az` and `azd` are started with.
    #[must_use]
    pub fn new(
        config: &Config,
        environment: &[(OsString, OsString)],
        http: std::sync::Arc<crate::http::Client>,
        only: Option<Kind>,
    ) -> Self {
        let links = Kind::ALL
            .into_iter()
            .filter(|kind| only.is_none_or(|o| o == *kind))
            .map(|kind| (kind, configure(kind, config)))
            .collect();
        Self {
            links,
            chosen: OnceLock::new(),
            configured_tenant: config.tenant_id.clone(),
            tenants: tenant::Policy::new(config.additionally_allowed_tenants.as_deref()),
            authority_host: config
                .authority_host
                .as_deref()
                .unwrap_or(DEFAULT_AUTHORITY_HOST)
                .trim_end_matches('/')
                .to_owned(),
            http,
            environment: environment.to_vec(),
            tokens: cache::Tokens::default(),
        }
    }

    /// The tenant a token will most likely be for, before any challenge has been seen, when the
    /// first link is a service principal or workload identity, or `az`/`azd` with
    /// `AZURE_TENANT_ID` set: lets the first token request overlap the first challenge (a
    /// developer tool takes hundreds of milliseconds to start, more than the challenge's round
    /// trip). A wrong guess costs one unused token.
    #[must_use]
    pub fn expected_tenant(&self) -> Option<&str> {
        match self.links.first() {
            Some((
                _,
                Ok(
                    Link::ClientSecret { tenant, .. }
                    | Link::ClientCertificate { tenant, .. }
                    | Link::WorkloadIdentity { tenant, .. },
                ),
            )) => Some(tenant),
            Some((_, Ok(Link::AzureCli | Link::Azd))) => self.configured_tenant.as_deref(),
            _ => None,
        }
    }

    /// A token for `scope` in `tenant`, asked for no later than `deadline`: the cached one while
    /// it is fresh; concurrent callers share one request and its outcome; a failure answers the
    /// callers with the same `deadline` (one resolution) only ([`cache`]).
    ///
    /// # Errors
    /// No link could get a token, a tenant not allowed, or Entra ID refused or could not be
    /// reached in time.
    pub async fn token(
        &self,
        tenant: &str,
        scope: &str,
        deadline: Instant,
    ) -> Result<Token, Problem> {
        self.tokens
            .token(
                tenant,
                scope,
                deadline,
                // Made only when no fresh token is cached, and boxed: a token request's state
                // is most of a GET's future, which every request in flight would otherwise hold.
                || Box::pin(self.request(tenant, scope, deadline)),
            )
            .await
    }

    /// Forget the cached token for (tenant, scope) if it is still `stale`, so the next
    /// [`token`](Self::token) asks again (a vault answered 401 to it).
    pub fn invalidate(&self, tenant: &str, scope: &str, stale: &Token) {
        self.tokens.invalidate(tenant, scope, stale);
    }

    /// Walk the chain (or go straight to the link that already worked).
    async fn request(
        &self,
        tenant: &str,
        scope: &str,
        deadline: Instant,
    ) -> Result<Token, Problem> {
        if let Some(&i) = self.chosen.get()
            && let (kind, Ok(link)) = &self.links[i]
        {
            return self
                .with_retries(*kind, link, tenant, scope, deadline)
                .await
                .map_err(|e| e.failure);
        }
        let mut tried: Vec<(Kind, Problem)> = Vec::new();
        for (i, (kind, link)) in self.links.iter().enumerate() {
            let outcome = match link {
                Ok(link) => {
                    self.with_retries(*kind, link, tenant, scope, deadline)
                        .await
                }
                Err(e) => Err(e.clone()),
            };
            match outcome {
                Ok(token) => {
                    let _ = self.chosen.set(i);
                    return Ok(token);
                }
                Err(e) if e.unavailable => tried.push((*kind, e.failure)),
                Err(e) => {
                    tried.push((*kind, e.failure));
                    return Err(chain_failure(&tried, true));
                }
            }
        }
        Err(chain_failure(&tried, false))
    }

    /// Ask one link, again as [`retry`]'s rule says for its failures, until `deadline`.
    async fn with_retries(
        &self,
        kind: Kind,
        link: &Link,
        tenant: &str,
        scope: &str,
        deadline: Instant,
    ) -> Result<Token, LinkError> {
        let mut schedule = Schedule::default();
        loop {
            let error = match self.timed(kind, link, tenant, scope).await {
                Ok(token) => return Ok(token),
                Err(e) => e,
            };
            match schedule.next(
                error.retry,
                Instant::now(),
                deadline,
                crate::jitter::random(),
            ) {
                Next::Wait(wait) => {
                    tracing::info!(
                        credential = kind.name(),
                        wait_ms = wait.as_millis(),
                        reason = %error.failure,
                        "retrying the token request"
                    );
                    tokio::time::sleep(wait).await;
                }
                Next::GiveUp(why) => {
                    let mut error = error;
                    if let Some(why) = why {
                        let server = match link {
                            Link::ManagedIdentity(_) => "the managed identity endpoint",
                            _ => "Entra ID",
                        };
                        error.failure.retried(why.describe(server));
                    }
                    return Err(error);
                }
            }
        }
    }

    /// One request to one link, bounded: the attempt timeout for Entra ID and a managed
    /// identity; `az`/`azd` have their own (longer) one.
    async fn timed(
        &self,
        kind: Kind,
        link: &Link,
        tenant: &str,
        scope: &str,
    ) -> Result<Token, LinkError> {
        let started = Instant::now();
        let span = crate::timing::Phase::Token.span();
        let result = match link {
            Link::AzureCli | Link::Azd => self.link_token(link, tenant, scope).await,
            _ => tokio::time::timeout(retry::ATTEMPT_TIMEOUT, self.link_token(link, tenant, scope))
                .await
                .unwrap_or_else(|_| {
                    Err(LinkError::failed(Problem::new(
                        FailureClass::Unavailable,
                        format!(
                            "the token request got no answer within {}s",
                            retry::ATTEMPT_TIMEOUT.as_secs()
                        ),
                    ))
                    .retry(Retry::Backoff))
                }),
        };
        drop(span);
        tracing::info!(
            credential = kind.name(),
            tenant,
            scope,
            ok = result.is_ok(),
            elapsed_ms = started.elapsed().as_millis(),
            "token request"
        );
        result
    }

    /// `tenant` empty: the link's own tenant (a service with no challenge to name one: App
    /// Configuration).
    async fn link_token(&self, link: &Link, tenant: &str, scope: &str) -> Result<Token, LinkError> {
        let own_or =
            |own: &str| -> String { if tenant.is_empty() { own } else { tenant }.to_owned() };
        match link {
            Link::ClientSecret {
                tenant: own,
                client_id,
                secret,
            } => {
                let tenant = &own_or(own);
                self.tenants.check(Some(own), tenant)?;
                let credential = ClientSecretCredential::new(
                    tenant,
                    client_id.clone(),
                    secret.clone(),
                    Some(ClientSecretCredentialOptions {
                        client_options: entra::client_options(&self.authority_host, &self.http),
                    }),
                )
                .map_err(|e| settings_error(&e))?;
                entra_token(
                    credential.get_token(&[scope], None).await,
                    &format!(
                        "check {AZURE_CLIENT_ID} and {AZURE_CLIENT_SECRET}: use the secret's value, not its ID, and make sure it has not expired"
                    ),
                )
            }
            Link::ClientCertificate {
                tenant: own,
                client_id,
                certificate,
            } => {
                let tenant = &own_or(own);
                self.tenants.check(Some(own), tenant)?;
                let assertion = CertificateAssertion {
                    certificate: certificate.clone(),
                    client_id: client_id.clone(),
                    endpoint: format!("{}/{tenant}/oauth2/v2.0/token", self.authority_host),
                };
                let hint = format!(
                    "check that this certificate is uploaded to the app registration {client_id} and has not expired"
                );
                self.assertion_token(tenant, client_id, assertion, scope, &hint)
                    .await
            }
            Link::WorkloadIdentity {
                tenant: own,
                client_id,
                token_file,
            } => {
                let tenant = &own_or(own);
                self.tenants.check(Some(own), tenant)?;
                let assertion = FileAssertion {
                    path: token_file.clone(),
                };
                let hint = format!(
                    "check the federated credential of {client_id}: its issuer (the cluster's OIDC issuer), subject (system:serviceaccount:NAMESPACE:NAME) and audience (api://AzureADTokenExchange)"
                );
                self.assertion_token(tenant, client_id, assertion, scope, &hint)
                    .await
            }
            Link::ManagedIdentity(identity) => identity.token(scope, &self.http).await,
            Link::AzureCli | Link::Azd => {
                let tenant = &own_or(self.configured_tenant.as_deref().unwrap_or_default());
                self.tenants
                    .check(self.configured_tenant.as_deref(), tenant)?;
                let tool = if matches!(link, Link::AzureCli) {
                    tools::Tool::AzureCli
                } else {
                    tools::Tool::Azd
                };
                tool.token(&self.environment, tenant, scope).await
            }
        }
    }

    async fn assertion_token<C: ClientAssertion + 'static>(
        &self,
        tenant: &str,
        client_id: &str,
        assertion: C,
        scope: &str,
        refused_hint: &str,
    ) -> Result<Token, LinkError> {
        let credential = ClientAssertionCredential::new(
            tenant.to_owned(),
            client_id.to_owned(),
            assertion,
            Some(ClientAssertionCredentialOptions {
                client_options: entra::client_options(&self.authority_host, &self.http),
            }),
        )
        .map_err(|e| settings_error(&e))?;
        entra_token(credential.get_token(&[scope], None).await, refused_hint)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A client for tests that never reach the network through it.
    fn test_http() -> std::sync::Arc<crate::http::Client> {
        crate::http::Client::new(crate::http::Settings {
            tls: crate::http::tls::config(crate::http::tls::Store::System).unwrap(),
            proxy: crate::http::Proxy::default(),
            per_origin: 1,
        })
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    /// The chain as kvrun builds it from an environment snapshot.
    fn from_env(
        environment: &[(OsString, OsString)],
        http: std::sync::Arc<crate::http::Client>,
        only: Option<Kind>,
    ) -> Credentials {
        let config = crate::settings::credential_config(&crate::source::Env(environment));
        Credentials::new(&config, environment, http, only)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn missing_credential_explains_itself() {
        let creds = from_env(&env(&[]), test_http(), Some(Kind::Env));
        let err = creds
            .token("t", "https://vault.azure.net/.default", soon())
            .await
            .unwrap_err();
        assert_eq!(err.class, FailureClass::Authentication);
        assert!(
            err.to_string().contains("env: neither AZURE_CLIENT_SECRET"),
            "{}",
            err.to_string()
        );
        assert!(
            err.to_string().contains(AZURE_CLIENT_CERTIFICATE_PATH),
            "{}",
            err.to_string()
        );
    }

    #[tokio::test]
    async fn another_tenant_needs_the_allow_list() {
        let creds = from_env(
            &env(&[
                (AZURE_TENANT_ID, "home"),
                (AZURE_CLIENT_ID, "c"),
                (AZURE_CLIENT_SECRET, "hunter2"),
            ]),
            test_http(),
            None,
        );
        let err = creds
            .token("other", "https://vault.azure.net/.default", soon())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("tenant other"),
            "{}",
            err.to_string()
        );
        assert!(
            err.hint
                .as_deref()
                .unwrap()
                .contains(AZURE_ADDITIONALLY_ALLOWED_TENANTS)
        );
        assert!(!format!("{err:?}").contains("hunter2"));
    }

    #[test]
    fn the_chain_lists_every_link_it_tried() {
        let tried = [
            (
                Kind::Env,
                LinkError::unavailable("not set", Some("set it".into())).failure,
            ),
            (
                Kind::AzureCli,
                LinkError::unavailable("az is not installed", None).failure,
            ),
        ];
        let failure = chain_failure(&tried, false);
        assert!(
            failure
                .to_string()
                .starts_with("no credential could get a token")
        );
        assert!(
            failure.to_string().contains("env: not set (hint: set it)"),
            "{}",
            failure.to_string()
        );
        assert!(
            failure
                .to_string()
                .contains("azure-cli: az is not installed"),
            "{}",
            failure.to_string()
        );
    }

    #[test]
    fn only_keeps_one_link() {
        let creds = from_env(&env(&[]), test_http(), Some(Kind::AzureCli));
        assert_eq!(creds.links.len(), 1);
        assert_eq!(creds.links[0].0, Kind::AzureCli);
    }

    #[test]
    fn a_pinned_developer_tool_expects_the_configured_tenant() {
        let http = test_http;
        let with_tenant = env(&[(AZURE_TENANT_ID, "t1")]);
        for kind in [Kind::AzureCli, Kind::Azd] {
            let creds = from_env(&with_tenant, http(), Some(kind));
            assert_eq!(creds.expected_tenant(), Some("t1"), "{kind:?}");
            let creds = from_env(&env(&[]), http(), Some(kind));
            assert_eq!(creds.expected_tenant(), None, "{kind:?}");
        }
        // The whole chain starts with a service principal that is not configured: no guess.
        let creds = from_env(&with_tenant, http(), None);
        assert_eq!(creds.expected_tenant(), None);
    }

    #[test]
    fn token_debug_is_redacted() {
        let token = Token::from_secret(Secret::new("eyJ0eXAi.secret"), None);
        assert_eq!(format!("{token:?}"), "Token([redacted])");
        let authorization = token.authorization().expect("a valid header value");
        assert_eq!(authorization.as_bytes(), b"Bearer eyJ0eXAi.secret");
        assert!(authorization.is_sensitive());
        assert_eq!(format!("{authorization:?}"), "Sensitive");
        assert!(
            Token::new("two\nlines".into(), None)
                .authorization()
                .is_none(),
            "a token that cannot be a header value has none"
        );
    }
}
