//! Talking to Key Vault: challenge authentication and Get Secret, over the run's one HTTP client
//! ([`crate::http`]: h2 to a vault that offers it, so a vault's requests share one connection).
//!
//! This module fetches one secret at a time; [`crate::resolve`] decides what runs concurrently.
//!
//! Words, one per idea, here and in [`crate::resolve`]: a *response* is what the HTTP client
//! received; an `Answer` is what the vault said in it, classified (a value, a challenge, a
//! failure); an *attempt* is one try, retried or not; a [`FirstAnswer`] is the answer to the
//! first, unauthenticated request (the probe); an *outcome* is a secret's final result, after
//! every attempt.

pub mod challenge;
pub mod credential;
pub mod retry;
pub mod throttle;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::{FailureClass, Problem};
use crate::http;
use crate::reference::SecretRef;
use crate::timing::Phase;
use challenge::Challenge;
use credential::{Credentials, Token};
use retry::{Next, Retry, Schedule};
use throttle::Throttle;

pub use crate::http::untrusted;

/// The Key Vault REST API version kvrun speaks (the Rust SDK 1.0's).
pub const API_VERSION: &str = "2025-07-01";
/// Values are at most 25 KiB; a body far beyond that is not a `SecretBundle`.
const MAX_BODY: usize = 256 * 1024;

/// A secret's value, as Key Vault answered it. `Debug` prints `[redacted]`; there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue {
    value: String,
    content_type: Option<String>,
    version: Option<String>,
}

impl SecretValue {
    /// A value as if a vault had answered it, for other modules' tests.
    #[cfg(test)]
    pub(crate) fn answered(value: &str, content_type: Option<&str>) -> SecretValue {
        SecretValue {
            value: value.to_owned(),
            content_type: content_type.map(str::to_owned),
            version: None,
        }
    }

    #[must_use]
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The secret's `contentType` (`application/x-pkcs12` for a certificate's secret).
    #[must_use]
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The version that answered: the last segment of the bundle's `id`
    /// (`https://{vault}/secrets/{name}/{version}`), what an unpinned reference resolved to.
    #[must_use]
    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }
}

impl Drop for SecretValue {
    /// A value kvrun no longer needs is wiped, not left in freed memory (on success the process
    /// image is replaced by exec anyway).
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

/// Why one Get Secret failed (no value, no token inside).
#[derive(Debug, Clone)]
pub struct FetchError {
    pub problem: Problem,
    /// The same would happen to any secret of this vault (unreachable, untrusted, hostile
    /// challenge), as opposed to an answer about this secret (404, 403 on it).
    pub vault_wide: bool,
}

impl FetchError {
    fn new(class: FailureClass, reason: impl Into<String>, hint: Option<String>) -> Self {
        Problem::new(class, reason).maybe_hint(hint).into()
    }
}

impl From<Problem> for FetchError {
    fn from(problem: Problem) -> Self {
        Self {
            problem,
            vault_wide: true,
        }
    }
}

/// What the vault said in its response to one GET.
enum Answer {
    Value(SecretValue),
    /// 401: the `WWW-Authenticate` header and the body (its error code says why).
    Challenge(Option<String>, Vec<u8>),
    Failed(FetchError),
}

#[derive(Deserialize)]
struct Bundle {
    value: Option<String>,
    /// `https://{vault}/secrets/{name}/{version}`.
    id: Option<String>,
    #[serde(default)]
    attributes: Attributes,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
}

/// The validity window of a secret version (Unix seconds). Key Vault still returns a secret outside
/// it (docs/protocol.md §1); kvrun warns.
#[derive(Deserialize, Default)]
struct Attributes {
    nbf: Option<u64>,
    exp: Option<u64>,
}

/// Warn (never with the value) when a secret is used outside its validity window.
fn warn_validity(secret: &SecretRef, attributes: &Attributes) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // A time past the year 9999 (a server's nonsense) is shown as the number it sent.
    let when = |t: u64| match std::time::UNIX_EPOCH.checked_add(Duration::from_secs(t)) {
        Some(at) if t <= 253_402_300_799 => humantime::format_rfc3339_seconds(at).to_string(),
        _ => format!("{t} (Unix time)"),
    };
    if let Some(exp) = attributes.exp.filter(|&exp| exp <= now) {
        tracing::warn!(
            "{secret} expired at {}; Key Vault still returned it",
            when(exp)
        );
    }
    if let Some(nbf) = attributes.nbf.filter(|&nbf| nbf > now) {
        tracing::warn!(
            "{secret} is not valid before {}; Key Vault still returned it",
            when(nbf)
        );
    }
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    innererror: Option<Box<ErrorDetail>>,
}

/// A secret as [`SecretRef::key`] names it: vault URL, name, version.
type SecretKey = (String, String, String);

/// Fetches secrets from vaults, with challenge authentication.
pub struct VaultClient {
    http: Arc<http::Client>,
    credentials: Credentials,
    /// The run's `--timeout` deadline: no retry starts that could not finish before it (moved
    /// on for each `--watch` check).
    deadline: std::sync::Mutex<Instant>,
    /// Time spent on each secret's requests, retries included (`kvrun check`'s latency column),
    /// when [`keeping_time_spent`](Self::keeping_time_spent) asked for it.
    spent: Option<std::sync::Mutex<HashMap<SecretKey, Duration>>>,
    /// What kvrun keeps of each vault, by lower-cased vault URL, for the life of the process.
    vaults: Mutex<HashMap<String, Arc<Vault>>>,
}

/// What kvrun keeps of one vault.
#[derive(Default)]
struct Vault {
    /// `https://{host}:{port}/?api-version=…`, parsed once: each GET's URL is this with its
    /// path set (parsing the whole URL for each GET cost ~5 k instructions).
    base: std::sync::OnceLock<Option<url::Url>>,
    /// The verified challenge, kept as the SDKs keep it: a `--watch` check sends just its GETs.
    /// A 401 on a later GET verifies the challenge it carries afresh.
    challenge: Mutex<Option<Challenge>>,
    /// The vault's in-flight limit ([`throttle`]).
    throttle: Throttle,
}

impl VaultClient {
    #[must_use]
    pub fn new(http: Arc<http::Client>, credentials: Credentials, deadline: Instant) -> Self {
        Self {
            http,
            credentials,
            deadline: std::sync::Mutex::new(deadline),
            spent: None,
            vaults: Mutex::default(),
        }
    }

    /// Keep the time spent on each secret, for [`spent`](Self::spent). Off by default: a run
    /// that only starts its command would keep three strings per secret for nothing.
    #[must_use]
    pub fn keeping_time_spent(mut self) -> Self {
        self.spent = Some(std::sync::Mutex::default());
        self
    }

    fn vault(&self, secret: &SecretRef) -> Arc<Vault> {
        let mut vaults = self.vaults.lock().unwrap_or_else(PoisonError::into_inner);
        // A reference's vault URL is already in lower case; no key to build for every GET then.
        if let Some(vault) = vaults.get(secret.vault_url.as_str()) {
            return Arc::clone(vault);
        }
        vaults
            .entry(secret.vault_url.to_ascii_lowercase())
            .or_default()
            .clone()
    }

    /// The challenge verified for `secret`'s vault earlier in this process, if any.
    #[must_use]
    pub fn known_challenge(&self, secret: &SecretRef) -> Option<Challenge> {
        self.vault(secret)
            .challenge
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn remember_challenge(&self, secret: &SecretRef, challenge: &Challenge) {
        *self
            .vault(secret)
            .challenge
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(challenge.clone());
    }

    /// A token for a challenge's tenant and scope, within the run's deadline (see
    /// [`Credentials::token`]).
    ///
    /// # Errors
    /// No token could be had.
    pub async fn token(&self, tenant: &str, scope: &str) -> Result<Token, Problem> {
        self.credentials.token(tenant, scope, self.deadline()).await
    }

    /// Time spent on `secret`'s requests so far.
    #[must_use]
    pub fn spent(&self, secret: &SecretRef) -> Option<Duration> {
        self.spent
            .as_ref()?
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&secret.key())
            .copied()
    }

    /// Start a new deadline (a `--watch` check gets the same budget as the first resolution).
    pub fn set_deadline(&self, deadline: Instant) {
        *self
            .deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = deadline;
    }

    /// The HTTP client every request of the run goes through (App Configuration's too).
    #[must_use]
    pub fn http(&self) -> &Arc<http::Client> {
        &self.http
    }

    /// The run's deadline (moved on for each `--watch` check).
    pub(crate) fn deadline(&self) -> Instant {
        *self
            .deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[must_use]
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// GET a secret without a token: the first request to a vault. Returns the verified challenge,
    /// or the value if the vault (oddly) served it without one. `warm` more requests to the vault
    /// follow it: on HTTP/1.1 their connections are opened once the first one's ALPN is known.
    ///
    /// # Errors
    /// Anything but a verifiable 401 challenge or a value.
    pub async fn probe(&self, secret: &SecretRef, warm: usize) -> Result<FirstAnswer, FetchError> {
        match self.get(secret, None, warm).await {
            Answer::Value(v) => Ok(FirstAnswer::Value(v)),
            Answer::Challenge(header, _) => {
                let challenge = verify(header.as_deref(), secret)?;
                self.remember_challenge(secret, &challenge);
                Ok(FirstAnswer::Challenge(challenge))
            }
            Answer::Failed(e) => Err(e),
        }
    }

    /// GET a secret with a token for the verified challenge; on 401, fetch a fresh token once and
    /// try again, as the SDKs do.
    ///
    /// # Errors
    /// Whatever the vault or Entra ID refused.
    pub async fn fetch(
        &self,
        secret: &SecretRef,
        challenge: &Challenge,
    ) -> Result<SecretValue, FetchError> {
        let mut challenge = challenge.clone();
        let mut attempt = 0;
        loop {
            let token = self.token(&challenge.tenant, &challenge.scope).await?;
            match self.get(secret, Some(&token), 0).await {
                Answer::Value(v) => return Ok(v),
                Answer::Failed(e) => return Err(e),
                Answer::Challenge(header, _) if attempt == 0 => {
                    // The token was revoked or has expired, or the vault moved to another
                    // tenant: verify what it asks for now before any token goes out again.
                    self.credentials
                        .invalidate(&challenge.tenant, &challenge.scope, &token);
                    let fresh = verify(header.as_deref(), secret)?;
                    if fresh != challenge {
                        self.remember_challenge(secret, &fresh);
                        challenge = fresh;
                    }
                    attempt += 1;
                }
                Answer::Challenge(_, body) => {
                    // The vault refused a fresh token too; its error code says why (AKV10032:
                    // a token from another tenant; AKV10022: for another audience).
                    let mut refused = status_error(401, &body, secret).problem;
                    refused.class = FailureClass::Authentication;
                    return Err(refused
                        .hint("the token's tenant or audience does not match the vault; check AZURE_TENANT_ID")
                        .into());
                }
            }
        }
    }

    /// GET with retries (see [`retry`]): transient failures are tried again with backoff, never
    /// past the run's deadline.
    async fn get(&self, secret: &SecretRef, token: Option<&Token>, warm: usize) -> Answer {
        let started = Instant::now();
        let answer = self.get_with_retries(secret, token, warm).await;
        if let Some(spent) = &self.spent {
            *spent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .entry(secret.key())
                .or_default() += started.elapsed();
        }
        answer
    }

    async fn get_with_retries(
        &self,
        secret: &SecretRef,
        token: Option<&Token>,
        warm: usize,
    ) -> Answer {
        let vault = self.vault(secret);
        let throttle = &vault.throttle;
        let mut schedule = Schedule::default();
        let mut first = true;
        loop {
            // The run's deadline is enforced above (resolve); this bounds one hung attempt.
            let warm = if first { warm } else { 0 };
            first = false;
            let Attempt {
                answer,
                retry,
                throttled,
            } = {
                let _place = throttle.enter().await;
                tokio::time::timeout(
                    retry::ATTEMPT_TIMEOUT,
                    self.attempt(&vault, secret, token, warm),
                )
                .await
                .unwrap_or_else(|_| {
                    let failure = FetchError::new(
                        FailureClass::Unavailable,
                        format!("no answer within {}s", retry::ATTEMPT_TIMEOUT.as_secs()),
                        Some("check the network, DNS, HTTPS_PROXY and NO_PROXY".into()),
                    );
                    Attempt::new(Answer::Failed(failure), Retry::Backoff)
                })
            };
            if throttled {
                throttle.throttled();
            } else if retry == Retry::Never {
                throttle.succeeded();
            }
            let wait = match schedule.next(
                retry,
                Instant::now(),
                self.deadline(),
                crate::jitter::random(),
            ) {
                Next::Wait(wait) => wait,
                Next::GiveUp(why) => {
                    return match (answer, why) {
                        (Answer::Failed(mut e), Some(why)) => {
                            e.problem.retried(why.describe("the vault"));
                            Answer::Failed(e)
                        }
                        (answer, _) => answer,
                    };
                }
            };
            if let Answer::Failed(e) = &answer {
                tracing::info!(
                    vault = secret.vault_host(),
                    secret = %secret.name,
                    wait_ms = wait.as_millis(),
                    reason = %e.problem,
                    "retrying"
                );
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt: its answer, and whether another attempt could change it.
    async fn attempt(
        &self,
        vault: &Vault,
        secret: &SecretRef,
        token: Option<&Token>,
        warm: usize,
    ) -> Attempt {
        let started = Instant::now();
        let base = vault.base.get_or_init(|| base_url(secret));
        let request = match get_secret(base.as_ref(), secret, token, warm) {
            Ok(request) => request,
            Err(e) => return Attempt::done(Answer::Failed(transport_error(e))),
        };
        let response = {
            // The challenge probe is timed as a whole by its caller; authenticated GETs here.
            let _span = token.is_some().then(|| Phase::Get.span());
            self.http.send(&request).await
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                let retry = match e {
                    http::Error::Unreachable(_) => Retry::Backoff,
                    http::Error::Untrusted(_)
                    | http::Error::TooLarge(_)
                    | http::Error::Refused(_) => Retry::Never,
                };
                return Attempt::new(Answer::Failed(transport_error(e)), retry);
            }
        };
        let status = response.status;
        if status == 401 && token.is_none() {
            // The unauthenticated first request: its 401 is the challenge, not a failure.
            tracing::info!(
                vault = secret.vault_host(),
                secret = %secret.name,
                elapsed_ms = started.elapsed().as_millis(),
                "challenge: the vault answered 401 with the tenant and scope to get a token for"
            );
        } else {
            tracing::info!(
                vault = secret.vault_host(),
                secret = %secret.name,
                status,
                authenticated = token.is_some(),
                elapsed_ms = started.elapsed().as_millis(),
                "GET secret"
            );
        }
        if status == 401 {
            let header = response
                .header(&hyper::header::WWW_AUTHENTICATE)
                .map(str::to_owned);
            return Attempt::done(Answer::Challenge(header, response.body.to_vec()));
        }
        let retry = Retry::for_response(status, &response.headers);
        if retry != Retry::Never {
            let failure = status_error(status, &response.body, secret);
            return Attempt {
                throttled: status == 429,
                ..Attempt::new(Answer::Failed(failure), retry)
            };
        }
        if (300..400).contains(&status) {
            return Attempt::done(Answer::Failed(FetchError::new(
                FailureClass::Protocol,
                format!("{status}: the vault answered with a redirect, which kvrun never follows"),
                Some("check the vault URL; a proxy or firewall may be intercepting it".into()),
            )));
        }
        let body = response.body;
        Attempt::done(if status == 200 {
            match serde_json::from_slice::<Bundle>(&body) {
                Ok(Bundle {
                    value: Some(value),
                    id,
                    attributes,
                    content_type,
                }) => {
                    warn_validity(secret, &attributes);
                    Answer::Value(SecretValue {
                        value,
                        content_type,
                        version: id.as_deref().and_then(version_of),
                    })
                }
                Ok(Bundle { value: None, .. }) => Answer::Failed(FetchError::new(
                    FailureClass::Protocol,
                    "200 OK without a value",
                    None,
                )),
                Err(_) => Answer::Failed(FetchError::new(
                    FailureClass::Protocol,
                    "200 OK, but the body is not a secret bundle",
                    None,
                )),
            }
        } else {
            Answer::Failed(status_error(status, &body, secret))
        })
    }
}

/// `secret`'s vault's URL with the API version, for [`get_secret`].
fn base_url(secret: &SecretRef) -> Option<url::Url> {
    let (host, port) = secret.origin();
    url::Url::parse(&format!("https://{host}:{port}/?api-version={API_VERSION}")).ok()
}

/// The Get Secret request for `secret` on its vault's `base` URL, with `token` if any; `warm`
/// more requests follow.
fn get_secret(
    base: Option<&url::Url>,
    secret: &SecretRef,
    token: Option<&Token>,
    warm: usize,
) -> Result<http::Request, http::Error> {
    let Some(base) = base else {
        let (host, port) = secret.origin();
        return Err(http::Error::Refused(format!(
            "https://{host}:{port}/ is not a URL"
        )));
    };
    let mut url = base.clone();
    url.set_path(&format!(
        "/secrets/{}/{}",
        secret.name,
        secret.version.as_deref().unwrap_or("")
    ));
    let mut request = http::Request::get(url)
        .header(
            hyper::header::ACCEPT,
            hyper::header::HeaderValue::from_static("application/json"),
            false,
        )
        .max_body(MAX_BODY)
        .expect(warm + 1);
    if let Some(token) = token {
        let value = token
            .authorization()
            .ok_or_else(|| http::Error::Refused("the token is not a valid header value".into()))?;
        request = request.header(hyper::header::AUTHORIZATION, value.clone(), true);
    }
    Ok(request)
}

/// One attempt's answer, whether another attempt could change it, and whether the vault
/// throttled it.
struct Attempt {
    answer: Answer,
    retry: Retry,
    throttled: bool,
}

impl Attempt {
    fn new(answer: Answer, retry: Retry) -> Self {
        Self {
            answer,
            retry,
            throttled: false,
        }
    }

    fn done(answer: Answer) -> Self {
        Self::new(answer, Retry::Never)
    }
}

/// Verify the challenge of a 401 from `secret`'s vault.
fn verify(header: Option<&str>, secret: &SecretRef) -> Result<Challenge, FetchError> {
    challenge::verify(header, secret.vault_host()).map_err(|e| {
        Problem::new(FailureClass::Protocol, "")
            .caused_by(e)
            .hint("the server is not the Key Vault it claims to be, or a proxy rewrote its answer")
            .into()
    })
}

/// The answer to the first, unauthenticated request to a vault (the probe).
pub enum FirstAnswer {
    Challenge(Challenge),
    Value(SecretValue),
}

/// A failure before a status line: connection, proxy, TLS.
fn transport_error(err: http::Error) -> FetchError {
    let problem = match &err {
        http::Error::Untrusted(_) => Problem::new(FailureClass::Protocol, "").hint(
            "the server's certificate is not trusted; if a proxy inspects TLS, point SSL_CERT_FILE or SSL_CERT_DIR at its CA",
        ),
        http::Error::TooLarge(_) | http::Error::Refused(_) => Problem::new(FailureClass::Protocol, ""),
        http::Error::Unreachable(_) => Problem::new(FailureClass::Unavailable, "could not reach the vault")
            .hint("check the network, DNS, HTTPS_PROXY and NO_PROXY"),
    };
    problem.caused_by(err).into()
}

/// Map an error status and Key Vault's error body to a failure with a hint.
fn status_error(status: u16, body: &[u8], secret: &SecretRef) -> FetchError {
    let detail = serde_json::from_slice::<ErrorBody>(body)
        .unwrap_or_default()
        .error;
    let inner = detail.innererror.as_ref().map_or("", |i| i.code.as_str());
    let code = if inner.is_empty() {
        detail.code.as_str()
    } else {
        inner
    };
    // Key Vault's messages run on with links and advice; the first sentence says what happened.
    let first_line = detail.message.lines().next().unwrap_or("");
    let first_sentence = first_line
        .find(". ")
        .map_or(first_line, |end| &first_line[..=end]);
    let mut message = untrusted(&first_sentence.chars().take(300).collect::<String>());
    if !message.is_empty() {
        message = format!(": {message}");
    }
    let code = untrusted(&code.chars().take(100).collect::<String>());
    let reason = if code.is_empty() {
        format!("{status}{message}")
    } else {
        format!("{status} {code}{message}")
    };
    let vault = secret.vault_host().split('.').next().unwrap_or_default();
    let (class, hint) = match (status, code.as_str()) {
        (403, "SecretDisabled") => (
            FailureClass::NotFound,
            format!("the secret is disabled; enable it: az keyvault secret set-attributes --vault-name {vault} --name {} --enabled true", secret.name),
        ),
        (403, "ForbiddenByFirewall") => (
            FailureClass::Authorization,
            "the vault's firewall does not admit this network; add it to the vault's network rules or use a private endpoint".into(),
        ),
        (403, _) => (
            FailureClass::Authorization,
            format!("grant this identity the \"Key Vault Secrets User\" role on vault {vault} (RBAC), or the secret 'get' permission in its access policy"),
        ),
        (404, _) => (
            FailureClass::NotFound,
            format!("check the name and version: az keyvault secret show --vault-name {vault} --name {}", secret.name),
        ),
        (s, _) if retry::transient_status(s) => (
            FailureClass::Unavailable,
            "the vault is throttling or unavailable; try again later".into(),
        ),
        _ => (FailureClass::Protocol, "an unexpected answer from the vault".into()),
    };
    FetchError {
        vault_wide: retry::transient_status(status),
        ..Problem::new(class, reason).hint(hint).into()
    }
}

/// The version in a secret bundle's `id`, `https://{vault}/secrets/{name}/{version}`: a non-empty
/// last segment after the name (only text Key Vault sent; shown, never used to build a request).
fn version_of(id: &str) -> Option<String> {
    let path = id.split_once("/secrets/")?.1;
    let (_, version) = path.split_once('/')?;
    let version = version.trim_end_matches('/');
    (!version.is_empty() && !version.contains('/')).then(|| crate::http::untrusted(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SecretRef {
        SecretRef {
            vault_url: "https://myvault.vault.azure.net".into(),
            name: "db".into(),
            version: None,
        }
    }

    #[test]
    fn status_errors_carry_codes_and_hints() {
        let body = br#"{"error":{"code":"Forbidden","message":"The user, group or application 'appid=x' does not have secrets get permission on key vault 'myvault;location=eastus'.","innererror":{"code":"AccessDenied"}}}"#;
        let e = status_error(403, body, &secret());
        assert_eq!(e.problem.class, FailureClass::Authorization);
        assert_eq!(
            e.problem.to_string(),
            "403 AccessDenied: The user, group or application 'appid=x' does not have secrets get permission on key vault 'myvault;location=eastus'."
        );
        assert!(e.problem.hint.unwrap().contains("Key Vault Secrets User"));

        let body = br#"{"error":{"code":"Forbidden","message":"Operation get is not allowed on a disabled secret.","innererror":{"code":"SecretDisabled"}}}"#;
        let e = status_error(403, body, &secret());
        assert_eq!(e.problem.class, FailureClass::NotFound);
        assert!(e.problem.hint.unwrap().contains("--enabled true"));

        let body = br#"{"error":{"code":"SecretNotFound","message":"A secret with (name/id) db was not found in this key vault."}}"#;
        let e = status_error(404, body, &secret());
        assert_eq!(e.problem.class, FailureClass::NotFound);
        assert!(e.problem.to_string().starts_with("404 SecretNotFound"));

        assert_eq!(
            status_error(503, b"not json", &secret()).problem.class,
            FailureClass::Unavailable
        );
        assert_eq!(
            status_error(400, b"", &secret()).problem.class,
            FailureClass::Protocol
        );
    }

    #[test]
    fn a_get_is_its_vaults_base_url_with_the_secrets_path() {
        for (vault_url, name, version, expected) in [
            (
                "https://myvault.vault.azure.net",
                "db",
                None,
                "https://myvault.vault.azure.net/secrets/db/?api-version=2025-07-01",
            ),
            (
                "https://MyVault.vault.azure.net:443",
                "db-password",
                Some("0123456789abcdef0123456789abcdef"),
                "https://myvault.vault.azure.net/secrets/db-password/0123456789abcdef0123456789abcdef?api-version=2025-07-01",
            ),
            (
                "https://kv1.vault.localhost:8443",
                "s1",
                None,
                "https://kv1.vault.localhost:8443/secrets/s1/?api-version=2025-07-01",
            ),
        ] {
            let secret = SecretRef {
                vault_url: vault_url.into(),
                name: name.into(),
                version: version.map(Into::into),
            };
            let base = base_url(&secret);
            let request = get_secret(base.as_ref(), &secret, None, 0).unwrap();
            assert_eq!(request.url().as_str(), expected);
            // The URL each GET used to be parsed from, whole.
            let whole = format!(
                "{vault_url}/secrets/{name}/{}?api-version={API_VERSION}",
                version.unwrap_or("")
            );
            assert_eq!(request.url(), &url::Url::parse(&whole).unwrap());
        }
    }

    #[test]
    fn secret_value_debug_is_redacted() {
        assert_eq!(
            format!("{:?}", SecretValue::answered("hunter2", None)),
            "SecretValue([redacted])"
        );
    }

    #[test]
    fn the_version_comes_from_the_bundle_id() {
        let id = "https://kv.vault.azure.net/secrets/db/4387e9f3d6e14c459867679a90fd0f79";
        assert_eq!(
            version_of(id).as_deref(),
            Some("4387e9f3d6e14c459867679a90fd0f79")
        );
        assert_eq!(version_of("https://kv.vault.azure.net/secrets/db"), None);
        assert_eq!(version_of("https://kv.vault.azure.net/secrets/db/"), None);
        assert_eq!(version_of("not a url"), None);
    }
}
