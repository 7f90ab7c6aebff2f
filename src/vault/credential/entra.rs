//! The Entra ID adapter: `azure_identity`'s client credential flows over kvrun's HTTP client
//! ([`super::capped`]), its assertions (a workload identity's federated token file, a client
//! certificate's signed JWT), and what its errors mean for kvrun: a reason in Entra's own words,
//! a hint, an exit class, and whether kvrun's retry rule may try again. Errors are classified by
//! their type and the HTTP answer they carry (status, `Retry-After`), not by their text; only the
//! one-line reason shown to the user is taken from the message.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::http::{ClientMethodOptions, ClientOptions, RetryOptions, Transport};
use azure_identity::ClientAssertion;

use super::super::retry::{self, Retry};
use super::certificate::ClientCertificate;
use super::{
    AZURE_AUTHORITY_HOST, AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID, AuthFailure, LinkError,
    Token, capped,
};
use crate::error::FailureClass;

/// The options of every `azure_identity` credential kvrun builds: its HTTP client, the
/// authority host, and no retries of its own (kvrun's rule decides, within the deadline).
pub(super) fn client_options(authority_host: &str, http: &reqwest::Client) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    authority_host.clone_into(&mut cloud.authority_host);
    ClientOptions {
        transport: Some(Transport::new(Arc::new(capped::Capped(http.clone())))),
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
    LinkError::failed(AuthFailure {
        class: FailureClass::Authentication,
        reason: format!("the service principal's settings are not valid: {e}"),
        hint: Some(format!(
            "{AZURE_AUTHORITY_HOST} must be an https URL; {AZURE_TENANT_ID} a tenant ID or domain"
        )),
    })
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
            Token(t.token, expires_on)
        })
        .map_err(|e| entra_failure(&e, refused_hint))
}

/// Turn `azure_identity`'s error into a one-line reason: Entra's own words (`AADSTS…`), without the
/// SDK's troubleshooting boilerplate, and whether another try could help.
/// What the cause chain of an `azure_identity` error says, by type (not by its text).
#[derive(Default)]
struct Causes {
    status: Option<u16>,
    asked: Option<Duration>,
    transport: bool,
    untrusted: Option<String>,
    not_json: bool,
    too_large: bool,
}

impl Causes {
    fn of(err: &azure_core::Error) -> Self {
        use azure_core::error::ErrorKind;
        let mut found = Self::default();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cause {
            // An io::Error's source() skips the error it wraps: look inside it too.
            let wrapped = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .map(|inner| inner as &(dyn std::error::Error + 'static));
            for candidate in [Some(e), wrapped].into_iter().flatten() {
                if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                    found.untrusted = Some(tls.to_string());
                }
                found.too_large |= candidate.is::<capped::TooLarge>();
            }
            if let Some(az) = e.downcast_ref::<azure_core::Error>() {
                match az.kind() {
                    ErrorKind::HttpResponse {
                        status,
                        raw_response,
                        ..
                    } => {
                        found.status = Some(u16::from(*status));
                        found.asked = raw_response.as_ref().and_then(|r| asked_wait(r.headers()));
                    }
                    ErrorKind::Connection | ErrorKind::Io => found.transport = true,
                    ErrorKind::DataConversion => found.not_json = true,
                    _ => {}
                }
            }
            cause = e.source();
        }
        found
    }
}

/// The wait an answer's headers ask for ([`retry::retry_after`]).
fn asked_wait(headers: &azure_core::http::headers::Headers) -> Option<Duration> {
    retry::retry_after(
        |name| {
            headers
                .get_optional_str(&azure_core::http::headers::HeaderName::from(
                    name.to_ascii_lowercase(),
                ))
                .map(str::to_owned)
        },
        SystemTime::now(),
    )
}

fn entra_failure(err: &azure_core::Error, refused_hint: &str) -> LinkError {
    let Causes {
        status,
        asked,
        transport,
        untrusted,
        not_json,
        too_large,
    } = Causes::of(err);
    let text = err.to_string();
    let text = crate::vault::untrusted(
        text.split("\nTo troubleshoot")
            .next()
            .unwrap_or_default()
            .replace("ClientSecretCredential authentication failed.", "")
            .replace("ClientAssertionCredential authentication failed.", "")
            .trim()
            .lines()
            .next()
            .unwrap_or_default(),
    );
    if let Some(tls) = untrusted {
        return LinkError::failed(AuthFailure {
            class: FailureClass::Protocol,
            reason: format!("token request failed: TLS: {}", crate::vault::untrusted(&tls)),
            hint: Some("Entra ID's certificate is not trusted; if a proxy inspects TLS, point SSL_CERT_FILE or SSL_CERT_DIR at its CA".into()),
        });
    }
    if too_large {
        return LinkError::failed(AuthFailure {
            class: FailureClass::Protocol,
            reason: format!(
                "token request failed: the answer is larger than {} KiB",
                capped::MAX_BODY / 1024
            ),
            hint: Some(format!(
                "a proxy or gateway may be in the way; check {AZURE_AUTHORITY_HOST}"
            )),
        });
    }
    let retry = match status {
        Some(s) => Retry::for_status(s, asked),
        None if transport => Retry::Backoff,
        None => Retry::Never,
    };
    let (class, hint) = match status {
        Some(s) if retry::transient_status(s) => (FailureClass::Unavailable, None),
        Some(s) if (300..400).contains(&s) => (
            FailureClass::Protocol,
            Some(format!(
                "Entra ID answered with a redirect; check {AZURE_AUTHORITY_HOST}"
            )),
        ),
        Some(_) => (FailureClass::Authentication, Some(refused_hint.to_owned())),
        None if transport => (
            FailureClass::Unavailable,
            Some(format!(
                "Entra ID could not be reached; check the network, HTTPS_PROXY and {AZURE_AUTHORITY_HOST}"
            )),
        ),
        // A gateway's HTML error page in place of Entra's JSON.
        None if not_json => (
            FailureClass::Unavailable,
            Some("Entra ID's answer is not JSON; a proxy or gateway may be in the way".into()),
        ),
        None => (FailureClass::Authentication, None),
    };
    let reason = match status {
        Some(s) => format!("Entra ID answered {s}: {text}"),
        None => format!("token request failed: {text}"),
    };
    LinkError::failed(AuthFailure {
        class,
        reason,
        hint,
    })
    .retry(retry)
}
