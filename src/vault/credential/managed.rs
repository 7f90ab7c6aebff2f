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
//! Both endpoints are plain http on a local address by design, and never go through a proxy.

use std::sync::OnceLock;
use std::time::Duration;

use azure_core::credentials::Secret;
use serde::Deserialize;

use super::{
    AZURE_CLIENT_ID, AZURE_POD_IDENTITY_AUTHORITY_HOST, AuthFailure, Env, IDENTITY_ENDPOINT,
    IDENTITY_HEADER, LinkError, Token,
};
use crate::error::FailureClass;

/// How long IMDS has to answer the probe. On an Azure VM it answers in about a millisecond.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a token request to a managed identity endpoint may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);
const IMDS: &str = "http://169.254.169.254";

enum Endpoint {
    AppService { url: String, header: Secret },
    Imds { authority: String },
}

pub struct ManagedIdentity {
    endpoint: Endpoint,
    /// A user-assigned identity (`AZURE_CLIENT_ID`); the system-assigned one when `None`.
    client_id: Option<String>,
    http: OnceLock<Result<reqwest::Client, String>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
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
    pub(crate) fn from_env(env: &Env<'_>) -> Self {
        let endpoint = match (env.get(IDENTITY_ENDPOINT), env.get(IDENTITY_HEADER)) {
            (Some(url), Some(header)) => Endpoint::AppService {
                url: url.to_owned(),
                header: Secret::new(header.to_owned()),
            },
            _ => Endpoint::Imds {
                authority: env
                    .get(AZURE_POD_IDENTITY_AUTHORITY_HOST)
                    .unwrap_or(IMDS)
                    .trim_end_matches('/')
                    .to_owned(),
            },
        };
        Self {
            endpoint,
            client_id: env.get(AZURE_CLIENT_ID).map(str::to_owned),
            http: OnceLock::new(),
        }
    }

    fn http(&self, tls: Option<&rustls::ClientConfig>) -> Result<&reqwest::Client, LinkError> {
        self.http
            .get_or_init(|| {
                let builder = match tls {
                    Some(tls) => reqwest::Client::builder().tls_backend_preconfigured(tls.clone()),
                    None => reqwest::Client::builder(),
                };
                builder
                    .no_proxy()
                    .redirect(reqwest::redirect::Policy::none())
                    .dns_resolver(std::sync::Arc::new(super::super::Resolver))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| LinkError::unavailable(format!("cannot build an HTTP client: {e}"), None))
    }

    pub(crate) async fn token(
        &self,
        scope: &str,
        tls: Option<&rustls::ClientConfig>,
    ) -> Result<Token, LinkError> {
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
        let http = self.http(tls)?;
        let is_imds = matches!(self.endpoint, Endpoint::Imds { .. });
        let request = match &self.endpoint {
            Endpoint::AppService { url: base, header } => http
                .get(url(base, "2019-08-01")?)
                .header("X-IDENTITY-HEADER", header.secret()),
            Endpoint::Imds { authority } => {
                let url = url(
                    &format!("{authority}/metadata/identity/oauth2/token"),
                    "2019-08-01",
                )?;
                probe(http, url.clone(), authority).await?;
                http.get(url).header("Metadata", "true")
            }
        };
        // From here the endpoint is known to be there: its failures stop the chain.
        let response = request.timeout(TOKEN_TIMEOUT).send().await.map_err(|e| {
            LinkError::failed(AuthFailure {
                class: FailureClass::Unavailable,
                reason: format!("the managed identity endpoint did not answer: {e}"),
                hint: None,
            })
        })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.unwrap_or_default();
        if status == 200 {
            return serde_json::from_slice::<TokenResponse>(&body)
                .map(|t| Token::new(t.access_token))
                .map_err(|_| {
                    LinkError::failed(AuthFailure {
                        class: FailureClass::Protocol,
                        reason: "the managed identity endpoint's answer has no access_token".into(),
                        hint: None,
                    })
                });
        }
        let detail = serde_json::from_slice::<ErrorResponse>(&body).unwrap_or_default();
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
        let reason = format!("the managed identity endpoint answered {status}: {what}");
        let hint = Some(match &self.client_id {
            Some(id) => format!(
                "{AZURE_CLIENT_ID} ({id}) must name a user-assigned identity attached to this resource"
            ),
            None => "assign a managed identity to this resource (or set AZURE_CLIENT_ID to a user-assigned one)".into(),
        });
        // IMDS 400/404: this machine has no (such) identity, the chain goes on. Anything else,
        // and any refusal from an App Service endpoint the platform configured, is a failure.
        if is_imds && matches!(status, 400 | 404) {
            return Err(LinkError::unavailable(reason, hint));
        }
        Err(LinkError::failed(AuthFailure {
            class: if matches!(status, 410 | 429) || status >= 500 {
                FailureClass::Unavailable
            } else {
                FailureClass::Authentication
            },
            reason,
            hint,
        }))
    }
}

/// Is the instance metadata service at `authority`? Only its own answer counts: 400 with a JSON
/// error for the missing `Metadata` header. Another cloud's metadata service (AWS answers 401) or a
/// proxy's page is not it, and the chain goes on.
async fn probe(http: &reqwest::Client, url: url::Url, authority: &str) -> Result<(), LinkError> {
    let elsewhere = || {
        Some("not on an Azure VM, or no managed identity here; elsewhere use a service principal, workload identity or az login".to_owned())
    };
    let probe = async {
        let response = http.get(url).send().await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
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
        Ok(Err(_)) => format!(
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
