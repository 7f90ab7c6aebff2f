//! The Entra ID adapter: `azure_identity`'s client credential flows over kvrun's HTTP client
//! ([`super::sdk_client`]), its assertions (a workload identity's federated token file, a client
//! certificate's signed JWT), and what its errors mean for kvrun: a reason in Entra's own words,
//! a hint, an exit class, and whether kvrun's retry rule may try again. Errors are classified by
//! what kvrun's client saw, found by type in the error's causes: the [`EntraAnswer`] of an
//! error status, the [`http::Error`] of a failure below HTTP. The SDK's own wording is shown only
//! for a failure that neither carries (its settings, an assertion), and then its innermost
//! cause's, never parsed.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::http::{ClientMethodOptions, ClientOptions, RetryOptions, Transport};
use azure_identity::ClientAssertion;

use super::super::retry::{self, Retry};
use super::certificate::ClientCertificate;
use super::sdk_client::{self, EntraAnswer, SdkClient};
use super::{
    AZURE_AUTHORITY_HOST, AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID, LinkError, Problem, Token,
};
use crate::error::FailureClass;
use crate::http;

/// The options of every `azure_identity` credential kvrun builds: its HTTP client, the
/// authority host, and no retries of its own (kvrun's rule decides, within the deadline).
pub(super) fn client_options(authority_host: &str, http: &Arc<http::Client>) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    authority_host.clone_into(&mut cloud.authority_host);
    ClientOptions {
        transport: Some(Transport::new(Arc::new(SdkClient(http.clone())))),
        cloud: Some(Arc::new(CloudConfiguration::from(cloud))),
        retry: RetryOptions::none(),
        ..ClientOptions::default()
    }
}

/// Workload identity: the federated token, read afresh for every token request (rotated).
#[derive(Debug)]
pub(super) struct FileAssertion {
    pub(super) path: PathBuf,
}

#[async_trait::async_trait]
impl ClientAssertion for FileAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let text = tokio::fs::read_to_string(&self.path).await.map_err(|e| {
            azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!(
                    "{AZURE_FEDERATED_TOKEN_FILE} ({}) cannot be read: {e}",
                    self.path.display()
                ),
            )
        })?;
        Ok(text.trim().to_owned())
    }
}

/// A client certificate: a fresh signed assertion for every token request.
pub(super) struct CertificateAssertion {
    pub(super) certificate: Arc<ClientCertificate>,
    pub(super) client_id: String,
    pub(super) endpoint: String,
}

impl fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl ClientAssertion for CertificateAssertion {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.certificate
            .assertion(&self.client_id, &self.endpoint, now)
            .map_err(|e| {
                azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    e.to_string(),
                )
            })
    }
}

pub(super) fn settings_error(e: &azure_core::Error) -> LinkError {
    LinkError::failed(
        Problem::new(
            FailureClass::Authentication,
            format!("the service principal's settings are not valid: {e}"),
        )
        .hint(format!(
            "{AZURE_AUTHORITY_HOST} must be an https URL; {AZURE_TENANT_ID} a tenant ID or domain"
        )),
    )
}

/// An Entra answer: a token, or a failure that stops the chain (the link was configured).
/// `refused_hint` is what to check when Entra refuses this kind of credential.
pub(super) fn entra_token(
    result: azure_core::Result<azure_core::credentials::AccessToken>,
    refused_hint: &str,
) -> Result<Token, LinkError> {
    result
        .map(|t| {
            let seconds =
                (t.expires_on - azure_core::time::OffsetDateTime::now_utc()).whole_seconds();
            let expires_on = u64::try_from(seconds)
                .ok()
                .and_then(|s| SystemTime::now().checked_add(Duration::from_secs(s)));
            Token::from_secret(t.token, expires_on)
        })
        .map_err(|e| entra_failure(&e, refused_hint))
}

/// What the causes of an `azure_identity` error say, by type (see the module docs).
#[derive(Default)]
struct Causes {
    answer: Option<EntraAnswer>,
    below_http: Option<http::Error>,
    /// A 2xx whose body is not a token (`azure_identity` could not read it).
    not_a_token: bool,
    /// The innermost cause's text, for a failure that carries neither.
    innermost: String,
}

impl Causes {
    fn of(err: &azure_core::Error) -> Self {
        use azure_core::error::ErrorKind;
        let mut found = Self::default();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cause {
            if let Some(answer) = e.downcast_ref::<EntraAnswer>() {
                found.answer = Some(answer.clone());
            }
            if let Some(below) = e.downcast_ref::<http::Error>() {
                found.below_http = Some(below.clone());
            }
            if let Some(az) = e.downcast_ref::<azure_core::Error>() {
                found.not_a_token |= matches!(az.kind(), ErrorKind::DataConversion);
            }
            found.innermost = e.to_string();
            cause = e.source();
        }
        found
    }
}

fn entra_failure(err: &azure_core::Error, refused_hint: &str) -> LinkError {
    let Causes {
        answer,
        below_http,
        not_a_token,
        innermost,
    } = Causes::of(err);
    if let Some(below) = below_http {
        return below_http_failure(&below);
    }
    if let Some(answer) = answer {
        let status = answer.status;
        let retry = Retry::for_status(status, answer.asked);
        let (class, hint) = if retry::transient_status(status) {
            (FailureClass::Unavailable, None)
        } else if (300..400).contains(&status) {
            (
                FailureClass::Protocol,
                Some(format!(
                    "Entra ID answered with a redirect; check {AZURE_AUTHORITY_HOST}"
                )),
            )
        } else {
            (FailureClass::Authentication, Some(refused_hint.to_owned()))
        };
        return LinkError::failed(
            Problem::new(
                class,
                format!(
                    "Entra ID answered {status}: {}",
                    crate::vault::untrusted(&answer.summary())
                ),
            )
            .maybe_hint(hint),
        )
        .retry(retry);
    }
    let text = crate::vault::untrusted(innermost.trim().lines().next().unwrap_or_default());
    let (class, hint) = if not_a_token {
        // A gateway's HTML page with a 200 in place of Entra's JSON.
        (
            FailureClass::Unavailable,
            Some("Entra ID's answer is not JSON; a proxy or gateway may be in the way".into()),
        )
    } else {
        (FailureClass::Authentication, None)
    };
    LinkError::failed(Problem::new(class, format!("token request failed: {text}")).maybe_hint(hint))
}

/// A token request that got no HTTP answer: the transport's error is the cause.
fn below_http_failure(err: &http::Error) -> LinkError {
    const FAILED: &str = "token request failed";
    let (problem, retry) = match err {
        http::Error::Untrusted(_) => (
            Problem::new(FailureClass::Protocol, FAILED).hint("Entra ID's certificate is not trusted; if a proxy inspects TLS, point SSL_CERT_FILE or SSL_CERT_DIR at its CA"),
            Retry::Never,
        ),
        http::Error::TooLarge(_) => {
            let too_large = format!(
                "{FAILED}: the answer is larger than {} KiB",
                sdk_client::MAX_BODY / 1024
            );
            let hint = format!("a proxy or gateway may be in the way; check {AZURE_AUTHORITY_HOST}");
            return LinkError::failed(Problem::new(FailureClass::Protocol, too_large).hint(hint));
        }
        http::Error::Refused(_) => (
            Problem::new(FailureClass::Authentication, FAILED)
                .hint(format!("{AZURE_AUTHORITY_HOST} must be an https URL")),
            Retry::Never,
        ),
        http::Error::Unreachable(_) => (
            Problem::new(FailureClass::Unavailable, FAILED).hint(format!(
                "Entra ID could not be reached; check the network, HTTPS_PROXY and {AZURE_AUTHORITY_HOST}"
            )),
            Retry::Backoff,
        ),
    };
    LinkError::failed(problem.caused_by(err.clone())).retry(retry)
}
