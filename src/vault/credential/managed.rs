//! Managed identity: the App Service / Functions / Container Apps endpoint when the platform set
//! `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, else the instance metadata service (IMDS).
//!
//! kvrun's own small client rather than `azure_identity`'s `ManagedIdentityCredential`, because:
//!
//! - IMDS has no configuration to detect, so it must be probed, and the probe must give up fast
//!   where there is none (a laptop, a CI runner): the official chains stall here for a second or
//!   more, and `azure_identity` retries IMDS for up to 72 s. kvrun sends one request without the
//!   `Metadata` header (IMDS answers it at once with 400) and gives IMDS [`PROBE_TIMEOUT`] to
//!   answer; only then does it ask for a token.
//! - `azure_identity`'s IMDS address is fixed; kvrun honours `AZURE_POD_IDENTITY_AUTHORITY_HOST`,
//!   the override the official SDKs read (AAD Pod Identity's NMI, and kvrun's tests).
//!
//! Both endpoints are plain http on a local address by design, and never go through a proxy:
//! the one exception to kvrun's https-only client ([`crate::http`]), which it makes for loopback
//! and link-local addresses only. Answers are read up to 64 KiB; failures are retried by kvrun's
//! rule ([`crate::vault::retry`]), with one exception the IMDS guidance documents: IMDS's 410
//! means "not ready yet" (the first minute of a VM) and is tried again like a 503.

use std::time::Duration;

use azure_core::credentials::Secret;
use serde::Deserialize;

use super::{
    AZURE_CLIENT_ID, AZURE_POD_IDENTITY_AUTHORITY_HOST, Config, IDENTITY_ENDPOINT, IDENTITY_HEADER,
    LinkError, Problem, Token, sdk_client::MAX_BODY,
};
use crate::error::FailureClass;
use crate::http;
use crate::vault::retry::{self, Retry};
use crate::vault::untrusted;

/// How long IMDS has to answer the probe. On an Azure VM it answers in about a millisecond.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
const IMDS: &str = "http://169.254.169.254";

enum Endpoint {
    AppService { url: String, header: Secret },
    Imds { authority: String },
}

pub struct ManagedIdentity {
    endpoint: Endpoint,
    /// A user-assigned identity (`AZURE_CLIENT_ID`); the system-assigned one when `None`.
    client_id: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Unix seconds, as a number or a string (App Service sends a string).
    expires_on: Option<serde_json::Value>,
    /// Seconds from now (IMDS sends it too, as a string).
    expires_in: Option<serde_json::Value>,
}

impl TokenResponse {
    /// When the token expires, from `expires_on` or else `expires_in`.
    fn expires_on(&self) -> Option<std::time::SystemTime> {
        let seconds = |v: &serde_json::Value| match v {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let after = |base: std::time::SystemTime, s: u64| base.checked_add(Duration::from_secs(s));
        self.expires_on
            .as_ref()
            .and_then(seconds)
            .and_then(|s| after(std::time::UNIX_EPOCH, s))
            .or_else(|| {
                let s = self.expires_in.as_ref().and_then(seconds)?;
                after(std::time::SystemTime::now(), s)
            })
    }
}

#[derive(Deserialize, Default)]
struct ErrorResponse {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
    #[serde(default)]
    message: String,
}

impl ManagedIdentity {
    pub(crate) fn new(config: &Config) -> Self {
        let endpoint = match (&config.identity_endpoint, &config.identity_header) {
            (Some(url), Some(header)) => Endpoint::AppService {
                url: url.to_owned(),
                header: Secret::new(header.as_str().to_owned()),
            },
            _ => Endpoint::Imds {
                authority: config
                    .pod_identity_authority_host
                    .as_deref()
                    .unwrap_or(IMDS)
                    .trim_end_matches('/')
                    .to_owned(),
            },
        };
        Self {
            endpoint,
            client_id: config.client_id.clone(),
        }
    }

    pub(crate) async fn token(&self, scope: &str, http: &http::Client) -> Result<Token, LinkError> {
        let resource = scope.trim_end_matches("/.default");
        let url = |base: &str, api_version: &str| {
            let mut query = vec![("api-version", api_version), ("resource", resource)];
            if let Some(id) = &self.client_id {
                query.push(("client_id", id));
            }
            url::Url::parse_with_params(base, &query).map_err(|e| {
                LinkError::unavailable(
                    format!("the managed identity endpoint {base} is not a URL: {e}"),
                    None,
                )
            })
        };
        let is_imds = matches!(self.endpoint, Endpoint::Imds { .. });
        let request = match &self.endpoint {
            Endpoint::AppService { url: base, header } => {
                let value =
                    hyper::header::HeaderValue::from_str(header.secret()).map_err(|_| {
                        LinkError::unavailable(
                            format!("{IDENTITY_HEADER} is not a valid header value"),
                            None,
                        )
                    })?;
                http::Request::get(url(base, "2019-08-01")?).header(
                    hyper::header::HeaderName::from_static("x-identity-header"),
                    value,
                    true,
                )
            }
            Endpoint::Imds { authority } => {
                let url = url(
                    &format!("{authority}/metadata/identity/oauth2/token"),
                    "2019-08-01",
                )?;
                probe(http, url.clone(), authority).await?;
                http::Request::get(url).header(
                    hyper::header::HeaderName::from_static("metadata"),
                    hyper::header::HeaderValue::from_static("true"),
                    false,
                )
            }
        }
        .max_body(MAX_BODY);
        // From here the endpoint is known to be there: its failures stop the chain.
        // Bounded by the caller's attempt timeout, as every token request is.
        let response = match http.send(&request).await {
            Ok(response) => response,
            Err(http::Error::TooLarge(_)) => {
                return Err(LinkError::failed(Problem::new(
                    FailureClass::Protocol,
                    format!(
                        "the managed identity endpoint's answer is larger than {} KiB",
                        MAX_BODY / 1024
                    ),
                )));
            }
            Err(e @ http::Error::Refused(_)) => {
                return Err(LinkError::failed(Problem::new(FailureClass::Authentication, "").caused_by(e).hint(format!(
                        "{IDENTITY_ENDPOINT} and {AZURE_POD_IDENTITY_AUTHORITY_HOST} must be http URLs on a loopback or link-local address"
                    ))));
            }
            Err(e) => {
                let unanswered = Problem::new(
                    FailureClass::Unavailable,
                    "the managed identity endpoint did not answer",
                );
                return Err(LinkError::failed(unanswered.caused_by(e)).retry(Retry::Backoff));
            }
        };
        let status = response.status;
        let asked = retry::retry_after_in(&response.headers);
        let body = response.body;
        if status == 200 {
            return serde_json::from_slice::<TokenResponse>(&body)
                .map(|t| Token::new(t.access_token.clone(), t.expires_on()))
                .map_err(|_| {
                    LinkError::failed(Problem::new(
                        FailureClass::Protocol,
                        "the managed identity endpoint's answer has no access_token",
                    ))
                });
        }
        Err(self.refusal(status, &body, asked, is_imds))
    }

    /// The failure for an error status from the endpoint.
    fn refusal(
        &self,
        status: u16,
        body: &[u8],
        asked: Option<Duration>,
        is_imds: bool,
    ) -> LinkError {
        let detail = serde_json::from_slice::<ErrorResponse>(body).unwrap_or_default();
        let what = [detail.error_description, detail.message, detail.error]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or_default();
        let what: String = what
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let reason = format!(
            "the managed identity endpoint answered {status}: {}",
            untrusted(&what)
        );
        let hint = Some(match &self.client_id {
            Some(id) => format!(
                "{AZURE_CLIENT_ID} ({id}) must name a user-assigned identity attached to this resource"
            ),
            None => "assign a managed identity to this resource (or set AZURE_CLIENT_ID to a user-assigned one)".into(),
        });
        // IMDS 400/404: this machine has no (such) identity, the chain goes on. Anything else,
        // and any refusal from an App Service endpoint the platform configured, is a failure.
        if is_imds && matches!(status, 400 | 404) {
            return LinkError::unavailable(reason, hint);
        }
        // IMDS's 410 is "not ready yet": the one status transient here and nowhere else.
        let retry = if is_imds && status == 410 {
            asked.map_or(Retry::Backoff, Retry::After)
        } else {
            Retry::for_status(status, asked)
        };
        LinkError::failed(
            Problem::new(
                if retry == Retry::Never {
                    FailureClass::Authentication
                } else {
                    FailureClass::Unavailable
                },
                reason,
            )
            .maybe_hint(hint),
        )
        .retry(retry)
    }
}

/// Is the instance metadata service at `authority`? Only its own answer counts: 400 with a JSON
/// error for the missing `Metadata` header. Another cloud's metadata service (AWS answers 401) or a
/// proxy's page is not it, and the chain goes on.
async fn probe(http: &http::Client, url: url::Url, authority: &str) -> Result<(), LinkError> {
    let elsewhere = || {
        Some("not on an Azure VM, or no managed identity here; elsewhere use a service principal, workload identity or az login".to_owned())
    };
    let probe = async {
        let response = http
            .send(&http::Request::get(url).max_body(MAX_BODY))
            .await
            .map_err(|_| ())?;
        Ok::<_, ()>((response.status, response.body))
    };
    let reason = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok((400, body)))
            if serde_json::from_slice::<ErrorResponse>(&body)
                .is_ok_and(|e| !e.error.is_empty()) =>
        {
            return Ok(());
        }
        Ok(Ok((status, _))) => format!(
            "{authority} answered {status}, which is not how the instance metadata service answers"
        ),
        Ok(Err(())) => format!(
            "no instance metadata service answered at {authority} within {} ms (no connection)",
            PROBE_TIMEOUT.as_millis()
        ),
        Err(_) => format!(
            "no instance metadata service answered at {authority} within {} ms (timed out)",
            PROBE_TIMEOUT.as_millis()
        ),
    };
    Err(LinkError::unavailable(reason, elsewhere()))
}
