//! A fake Azure Key Vault and Microsoft Entra token endpoint over real TLS, for kvrun's
//! integration tests and its offline demo (the wire protocol is `docs/protocol.md`).
//!
//! [`FakeAzure::start`] makes a throw-away CA and a leaf certificate (SANs `*.vault.localhost`,
//! `login.localhost`, `localhost`, `127.0.0.1`), binds ONE listener on 127.0.0.1 and routes each
//! request by its `Host` header, or on h2 its `:authority` (port removed):
//! - `login.localhost`: Entra, `POST /{tenant}/oauth2/v2.0/token` (client credentials, §5), for
//!   clients with a secret ([`FakeAzure::add_client`]; the secret is also the accepted workload
//!   identity `client_assertion`) or a certificate ([`FakeAzure::add_certificate_client`]: a
//!   `client_assertion` JWT signed by the certificate's key, checked as Entra checks it);
//! - `{vault}.vault.localhost`: Key Vault, `GET /secrets/{name}[/[{version}]]` (§1–2), with
//!   Key Vault's throttling when asked for ([`VaultHandle::set_rate_limit`], §4).
//! - `{store}.azconfig.localhost`: App Configuration (§8, [`FakeAzure::app_config`] →
//!   [`StoreHandle`]): `GET /kv` with key and label filters (exact, `prefix*`, lists of up to
//!   five, `\` escapes, `%00` for no label), `snapshot=` ([`StoreHandle::create_snapshot`]),
//!   `$select`, pages of [`StoreHandle::set_page_size`] linked by `@nextLink` and `Link`, a page
//!   ETag answered with 304 on `If-None-Match` (the 304 keeps the page's `Link`, which the JS
//!   client reads to go on: `extractAfterTokenFromLinkHeader`), and `GET /kv/{key}?label=`.
//!   Callers show an Entra token for the store's audience or an HMAC-SHA256 signature of the
//!   store's access key ([`StoreHandle::connection_string`], verified by [`verify_hmac`] with the
//!   real string-to-sign and ±15 min clock skew); errors are problem+json, 429 carries
//!   `retry-after-ms`.
//!
//! Faults ([`Fault`]) replace answers of a vault ([`VaultHandle::fail_next`]), of the token
//! endpoint ([`FakeAzure::fail_next_token`]) and of a managed identity
//! ([`ManagedIdentity::fail_next`]); [`Options::expired_certificate`] serves a leaf certificate
//! that expired days ago. [`Options::public_cloud_names`] also answers to `*.vault.azure.net`
//! and `login.microsoftonline.com`, for peers in the benchmark that only speak to real names.
//!
//! [`FakeAzure::start_managed_identity`] adds a [`ManagedIdentity`]: a second, plain-HTTP
//! listener on 127.0.0.1 serving both the App Service (`/msi/token` + `X-IDENTITY-HEADER`) and
//! the IMDS (`/metadata/identity/oauth2/token` + `Metadata: true`) token endpoints, whose tokens
//! the vaults accept; it can also hang like an unreachable IMDS ([`ManagedIdentity::set_hang`]).
//!
//! [`test_certificate`] makes a self-signed RSA 2048 [`TestCertificate`] for certificate clients:
//! the certificate PEM, the key as PKCS#8 and PKCS#1 PEM, and [`TestCertificate::pkcs12`] for a
//! PFX file (PBES2/AES-256, HMAC-SHA256).
//!
//! Protocols: the TLS listener offers `h2`, then `http/1.1` in ALPN, as Key Vault does
//! (docs/protocol.md §7), and serves HTTP/2 on a session that chose `h2` and HTTP/1.1 on every other
//! (ALPN `http/1.1`, or none: never h2 by prior knowledge over TLS). [`Options::http1_only`]
//! (or [`FakeAzure::set_http1_only`]) offers only `http/1.1`, like an HTTP/1.1-only server;
//! [`Options::max_concurrent_streams`] (or [`FakeAzure::set_max_concurrent_streams`]) is the
//! `SETTINGS_MAX_CONCURRENT_STREAMS` of h2 sessions. Delays, faults and rate limits work the same
//! on both; [`Fault::Close`] on h2 resets the request's stream (`RST_STREAM` `INTERNAL_ERROR`) and
//! keeps the connection, on HTTP/1.1 it closes the connection. The managed identity listener is
//! plain HTTP/1.1; the [`ConnectProxy`] tunnels bytes, so ALPN is negotiated end to end.
//!
//! Records, per run (per [`FakeAzure`]), each from the moment it happened:
//! - [`FakeAzure::connections`]: TCP connections accepted (before TLS, so failed handshakes too);
//! - [`FakeAzure::tls_sessions`]: completed TLS handshakes by protocol ([`TlsSessions`]: `h2`,
//!   and `http1` for `http/1.1` or no ALPN);
//! - [`FakeAzure::streams_per_connection`]: requests (on h2, streams) per TLS session, in
//!   handshake order;
//! - [`FakeAzure::requests`] / [`FakeAzure::request_count`]: every request ([`Recorded`]), on
//!   either protocol; [`FakeAzure::vault_gets`] and [`FakeAzure::throttled`] count vault GETs and
//!   429s.
//!
//! Every server runs on its own tokio runtime in a background thread, so the whole API is
//! synchronous and thread-safe; dropping the [`FakeAzure`] (or the [`ManagedIdentity`], or the
//! [`ConnectProxy`]) stops its server. [`ConnectProxy`] is a loopback-only HTTP CONNECT proxy.
//! Each records what it was sent ([`Recorded`], headers included).

mod appconfig;
mod cert;
pub mod delay;
mod entra;
mod msi;
mod proxy;
pub mod secrets_file;
mod tls;
mod vault;

#[cfg(test)]
mod h2_tests;
#[cfg(test)]
mod identity_tests;
#[cfg(test)]
mod limit_tests;
#[cfg(test)]
mod tests;

pub use appconfig::{KeyValueAttrs, Signed, StoreHandle, verify as verify_hmac};
pub use cert::{TestCertificate, TestChain, test_certificate, test_chain};
pub use msi::{ManagedIdentity, SYSTEM_ASSIGNED_CLIENT_ID};
pub use proxy::ConnectProxy;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue, LOCATION,
    RETRY_AFTER,
};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

/// The tenant a new vault belongs to (its challenge names it).
pub const DEFAULT_TENANT: &str = "00000000-0000-0000-0000-000000000001";
/// The `resource` a new vault's challenge names; tokens must be for `{resource}/.default`.
pub const DEFAULT_RESOURCE: &str = "https://vault.localhost";

/// The client id of the tokens from [`FakeAzure::issue_token`].
pub const ISSUED_CLIENT_ID: &str = "00000000-0000-0000-0000-00000000a2a2";

/// Start-up options. `Default` is: no delays, an ephemeral port, `h2` and `http/1.1` offered —
/// or `http/1.1` only when [`HTTP1_ONLY_VARIABLE`] is set, so that a whole test suite can be run
/// against an HTTP/1.1-only server ([`http1_only_by_default`]).
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Slept after accepting a TCP connection, before its TLS handshake.
    pub connect_delay: Duration,
    /// Slept before answering every request.
    pub response_delay: Duration,
    /// The port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Serve a leaf certificate that is valid only in the past (from 30 days ago until 2 days
    /// ago), otherwise the usual one (same names, signed by the same test CA, which stays
    /// valid): a client trusting [`FakeAzure::ca_pem`] fails the handshake with an expiry error.
    pub expired_certificate: bool,
    /// Also answer to the public cloud's names, for clients that cannot be pointed at
    /// `*.localhost` (peers in the benchmark): `{vault}.vault.azure.net` is the vault `{vault}`
    /// and `login.microsoftonline.com` is the token endpoint, and the leaf certificate is valid
    /// for them too. Nothing resolves these names to this fake: clients reach it through a
    /// [`ConnectProxy::forwarding`] proxy. Give the vaults the public challenge resource
    /// ([`VaultHandle::set_challenge_resource`] with `https://vault.azure.net`), which clients
    /// verify against the vault's host name.
    pub public_cloud_names: bool,
    /// Offer only `http/1.1` in ALPN, like an HTTP/1.1-only server (default: `h2`, then
    /// `http/1.1`, as Key Vault does). Changed later by [`FakeAzure::set_http1_only`].
    pub http1_only: bool,
    /// The `SETTINGS_MAX_CONCURRENT_STREAMS` advertised on h2 connections (`None`: hyper's
    /// default, 200 today). Changed later by [`FakeAzure::set_max_concurrent_streams`].
    pub max_concurrent_streams: Option<u32>,
    /// Access tokens at least this long, in bytes: `fake-at-N-PID` padded with `.` and
    /// base64url characters to the length of an Entra JWT (1.5–2.5 KB), for measuring what a
    /// client does per request with a token of real size. 0 (the default): no padding, ~16 bytes.
    pub token_length: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_delay: Duration::ZERO,
            response_delay: Duration::ZERO,
            port: 0,
            expired_certificate: false,
            public_cloud_names: false,
            http1_only: http1_only_by_default(),
            max_concurrent_streams: None,
            token_length: 0,
        }
    }
}

/// Set (to anything) in the environment of a test run, it makes [`Options::default`] offer
/// only `http/1.1`.
pub const HTTP1_ONLY_VARIABLE: &str = "KVRUN_FAKE_HTTP1_ONLY";

/// Whether [`Options::default`] offers only `http/1.1` in this process ([`HTTP1_ONLY_VARIABLE`]).
#[must_use]
#[expect(
    clippy::disallowed_methods,
    reason = "a test suite's switch, read where the fake's defaults are made"
)]
pub fn http1_only_by_default() -> bool {
    std::env::var_os(HTTP1_ONLY_VARIABLE).is_some_and(|v| !v.is_empty())
}

/// TLS sessions by the protocol they negotiated, from [`FakeAzure::tls_sessions`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsSessions {
    /// Sessions whose ALPN is `h2` (served HTTP/2).
    pub h2: usize,
    /// Sessions served HTTP/1.1: ALPN `http/1.1`, or no ALPN at all.
    pub http1: usize,
}

/// Attributes of a secret version (`Default`: enabled, no `nbf`/`exp`, no content type).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretAttrs {
    /// `false` makes a GET answer 403 `SecretDisabled`.
    pub enabled: bool,
    /// Not-before, Unix seconds (reported only; the GET still succeeds).
    pub nbf: Option<u64>,
    /// Expiry, Unix seconds (reported only; the GET still succeeds).
    pub exp: Option<u64>,
    /// The bundle's `contentType`.
    pub content_type: Option<String>,
}

impl Default for SecretAttrs {
    fn default() -> Self {
        Self {
            enabled: true,
            nbf: None,
            exp: None,
            content_type: None,
        }
    }
}

/// The 403 an authenticated caller gets from a vault set to deny access (innererror code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyCode {
    /// Access policy without `secrets/get`.
    AccessDenied,
    /// RBAC without "Key Vault Secrets User".
    ForbiddenByRbac,
    /// The vault's network rules.
    ForbiddenByFirewall,
}

/// What an injected fault answers instead of the normal response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// This status with the service's error body for it (429 adds `Retry-After: 1`; a vault's
    /// 401 is the AKV10000 challenge).
    Status(u16),
    /// Like [`Fault::Status`] (same status line and error body) but with the retry header
    /// `header: value` instead of the `Retry-After: 1` of a 429 (no other retry header is
    /// sent). The headers clients honour (docs/protocol.md §4) are `Retry-After` (seconds or an HTTP
    /// date), `retry-after-ms` and `x-ms-retry-after-ms`; any header is accepted.
    ///
    /// Queuing one whose `header` is not a valid header name or whose `value` is not a valid
    /// header value panics.
    RetryAfter {
        status: u16,
        header: &'static str,
        value: String,
    },
    /// This status with the service's own error body, carrying this error code and message
    /// verbatim (a vault's `error.code`/`error.message`, Entra's and a managed identity's
    /// `error`/`error_description`): for text a client must show safely (control characters).
    ErrorText {
        status: u16,
        code: String,
        message: String,
    },
    /// A 200 with a valid body that lacks the value: from a vault a `SecretBundle` without
    /// `value` (the requested version's bundle if it exists, else one made up for the requested
    /// name with a new version id); from the token endpoint and a managed identity, a token
    /// answer without `access_token`.
    NoValue,
    /// A 200, `application/json`, whose body is exactly this many bytes (`Content-Length` set,
    /// sent in 64 KiB chunks): `{"value":"xxx…x"}`, which is valid JSON from 12 bytes on; a
    /// smaller size sends the first bytes of `{"value":""}`.
    Huge(usize),
    /// 302 with `Location:` this URL.
    RedirectTo(String),
    /// Read the request, never answer (the connection stays open; on h2 its other streams are
    /// answered).
    Hang,
    /// A 200 whose `Content-Length` exceeds the bytes sent, then on HTTP/1.1 the connection
    /// closes; on h2 the stream ends short (the client detects the mismatch).
    Truncated,
    /// A 200 with an HTML body.
    NotJson,
    /// No response: on HTTP/1.1 the connection is closed; on h2 the request's stream is reset
    /// (`RST_STREAM` with `INTERNAL_ERROR`) and the connection serves its other streams on.
    Close,
}

/// One request as the fake saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// The `Host` header without the port, lower-cased.
    pub host: String,
    pub path_and_query: String,
    /// The raw `Authorization` header value.
    pub authorization: Option<String>,
    /// The form fields of a POST to `login.localhost`.
    pub form: Option<Vec<(String, String)>>,
    /// Every header as received, names lower-cased, values as (lossy) UTF-8 (the values of a
    /// repeated header side by side).
    pub headers: Vec<(String, String)>,
    /// When the fake received it (before any injected delay): how far apart a client's
    /// requests were, measured where they arrive.
    pub received: std::time::Instant,
}

impl Recorded {
    /// The first value of the header `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// What the fake records of a request's head.
    pub(crate) fn new(
        parts: &hyper::http::request::Parts,
        form: Option<Vec<(String, String)>>,
    ) -> Recorded {
        let header =
            |name: hyper::header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
        Recorded {
            received: std::time::Instant::now(),
            method: parts.method.to_string(),
            host: request_host(parts),
            path_and_query: parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_owned(),
            authorization: header(AUTHORIZATION).map(str::to_owned),
            form,
            headers: parts
                .headers
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value)
                })
                .collect(),
        }
    }
}

/// The running fake (see the crate docs). Dropping it stops the server.
pub struct FakeAzure {
    shared: Arc<Shared>,
    ca_pem: String,
    _server: Background,
}

/// Controls for one vault, from [`FakeAzure::vault`].
#[derive(Clone)]
pub struct VaultHandle {
    shared: Arc<Shared>,
    key: String,
}

pub(crate) struct Shared {
    port: u16,
    public_cloud_names: bool,
    state: Mutex<State>,
    /// Notified at every recorded request, for [`FakeAzure::wait_for_requests`].
    recorded: Condvar,
}

#[derive(Default)]
pub(crate) struct State {
    connect_delay: Duration,
    response_delay: Duration,
    connections: usize,
    http1_only: bool,
    max_concurrent_streams: Option<u32>,
    /// [`Options::token_length`].
    token_length: usize,
    tls_sessions: TlsSessions,
    /// Requests (h2 streams) per TLS session, in the order the handshakes completed.
    streams: Vec<usize>,
    requests: Vec<Recorded>,
    clients: HashMap<String, String>,
    certificates: HashMap<String, Vec<cert::CertKey>>,
    tokens: HashMap<String, entra::Token>,
    token_faults: VecDeque<Fault>,
    vaults: HashMap<String, vault::Vault>,
    stores: HashMap<String, appconfig::Store>,
    /// GETs to a vault host, answered or not.
    vault_gets: usize,
    /// 429 answers from vaults.
    throttled: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FakeAzure {
    /// Starts the fake with default [`Options`].
    ///
    /// # Panics
    /// If 127.0.0.1 cannot be listened on or the certificates cannot be made.
    #[must_use]
    pub fn start() -> FakeAzure {
        Self::start_with(Options::default())
    }

    /// Starts the fake.
    ///
    /// # Panics
    /// If `127.0.0.1:{options.port}` cannot be listened on or the certificates cannot be made.
    #[must_use]
    pub fn start_with(options: Options) -> FakeAzure {
        let certs = tls::generate(options.expired_certificate, options.public_cloud_names);
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, options.port))
            .unwrap_or_else(|e| {
                panic!(
                    "kvrun-fake: cannot listen on 127.0.0.1:{}: {e}",
                    options.port
                )
            });
        let port = listener.local_addr().expect("listener address").port();
        let state = State {
            connect_delay: options.connect_delay,
            response_delay: options.response_delay,
            http1_only: options.http1_only,
            max_concurrent_streams: options.max_concurrent_streams,
            token_length: options.token_length,
            ..State::default()
        };
        let shared = Arc::new(Shared {
            port,
            public_cloud_names: options.public_cloud_names,
            state: Mutex::new(state),
            recorded: Condvar::new(),
        });
        let acceptors = Acceptors {
            both: TlsAcceptor::from(certs.server),
            http1_only: TlsAcceptor::from(certs.server_http1_only),
        };
        let for_server = Arc::clone(&shared);
        let server = Background::spawn("kvrun-fake", listener, move |listener| {
            serve(for_server, listener, acceptors)
        });
        FakeAzure {
            shared,
            ca_pem: certs.ca_pem,
            _server: server,
        }
    }

    /// The listening port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// The test CA's certificate, PEM.
    #[must_use]
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// `https://login.localhost:PORT`, for `AZURE_AUTHORITY_HOST`.
    #[must_use]
    pub fn authority_host(&self) -> String {
        format!("https://{}:{}", entra::HOST, self.port())
    }

    /// `https://{vault}.vault.localhost:PORT`.
    #[must_use]
    pub fn vault_url(&self, vault: &str) -> String {
        format!(
            "https://{}.vault.localhost:{}",
            vault.to_ascii_lowercase(),
            self.port()
        )
    }

    /// Registers a client (valid in every tenant). `client_secret` is also the accepted
    /// `client_assertion` for workload identity.
    pub fn add_client(&self, client_id: &str, client_secret: &str) {
        self.shared
            .lock()
            .clients
            .insert(client_id.to_owned(), client_secret.to_owned());
    }

    /// Registers a certificate for a client (valid in every tenant; call again to add more
    /// certificates). The token endpoint then accepts from it a `client_assertion` JWT signed
    /// (RS256 or PS256) by the certificate's key, named by its `x5t` (SHA-1) or `x5t#S256`
    /// thumbprint, with `iss` = `sub` = `client_id`, `aud` = the token endpoint's URL
    /// (`{authority_host}/{tenant}/oauth2/v2.0/token`), `exp` in the future, `nbf` (if present)
    /// not, and a `jti`; failures answer as Entra does (`AADSTS700027` for an unknown key or a bad
    /// signature, `AADSTS700024` out of its time range, `AADSTS50012` for another audience,
    /// `AADSTS700021` for another `iss`/`sub`, `AADSTS50027` for a malformed JWT). A client can
    /// have a secret ([`FakeAzure::add_client`]) and certificates at once.
    ///
    /// # Panics
    /// If `cert_pem` holds no X.509 certificate.
    pub fn add_certificate_client(&self, client_id: &str, cert_pem: &str) {
        let key = cert::CertKey::from_pem(cert_pem)
            .unwrap_or_else(|e| panic!("kvrun-fake: certificate of client '{client_id}': {e}"));
        self.shared
            .lock()
            .certificates
            .entry(client_id.to_owned())
            .or_default()
            .push(key);
    }

    /// A token for `(tenant, scope)` issued directly, without a token request (for stand-ins of
    /// developer tools such as `az`, whose tokens the vaults must accept). Its client id is
    /// [`ISSUED_CLIENT_ID`].
    #[must_use]
    pub fn issue_token(&self, tenant: &str, scope: &str) -> String {
        let mut state = self.shared.lock();
        let access_token = new_access_token(state.token_length);
        let token = entra::Token {
            tenant: tenant.to_owned(),
            scope: scope.to_owned(),
            client_id: ISSUED_CLIENT_ID.to_owned(),
        };
        state.tokens.insert(access_token.clone(), token);
        access_token
    }

    /// Starts a managed identity endpoint (plain HTTP on 127.0.0.1, its own port) whose tokens
    /// this fake's vaults accept; see [`ManagedIdentity`]. Dropping it stops it.
    ///
    /// # Panics
    /// If 127.0.0.1 cannot be listened on.
    #[must_use]
    pub fn start_managed_identity(&self) -> ManagedIdentity {
        ManagedIdentity::start(Arc::clone(&self.shared))
    }

    /// The vault named `vault` (case-insensitive), created empty in [`DEFAULT_TENANT`] if missing.
    #[allow(
        clippy::must_use_candidate,
        reason = "creating the vault is worth a call"
    )]
    pub fn vault(&self, vault: &str) -> VaultHandle {
        let key = vault.to_ascii_lowercase();
        self.shared
            .lock()
            .vaults
            .entry(key.clone())
            .or_insert_with(|| vault::Vault::new(&key));
        VaultHandle {
            shared: Arc::clone(&self.shared),
            key,
        }
    }

    /// The App Configuration store `name` (created on first use).
    #[must_use]
    pub fn app_config(&self, name: &str) -> StoreHandle {
        appconfig::store_handle(&self.shared, name)
    }

    /// Every request so far, in arrival order.
    #[must_use]
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// Blocks until the requests recorded so far satisfy `condition`, or `limit` has passed
    /// (then `false`): a test waits on the event, not by polling.
    pub fn wait_for_requests(
        &self,
        limit: Duration,
        mut condition: impl FnMut(&[Recorded]) -> bool,
    ) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let mut state = self.shared.lock();
        loop {
            if condition(&state.requests) {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                return false;
            };
            state = self
                .shared
                .recorded
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// How many requests there have been so far ([`Self::requests`] without the copy).
    #[must_use]
    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Changes the delays of [`Options`] for connections and requests from now on.
    pub fn set_delays(&self, connect: Duration, response: Duration) {
        let mut state = self.shared.lock();
        state.connect_delay = connect;
        state.response_delay = response;
    }

    /// TCP connections accepted so far, counted before the TLS handshake (so a client that
    /// rejected the certificate is counted too).
    #[must_use]
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    /// TLS sessions so far (completed handshakes), by negotiated protocol.
    #[must_use]
    pub fn tls_sessions(&self) -> TlsSessions {
        self.shared.lock().tls_sessions
    }

    /// Requests (on h2: streams) received on each TLS session so far, in the order the
    /// handshakes completed; a session that sent nothing is a 0. One entry per TLS session, so
    /// its length is `tls_sessions().h2 + tls_sessions().http1`.
    #[must_use]
    pub fn streams_per_connection(&self) -> Vec<usize> {
        self.shared.lock().streams.clone()
    }

    /// Offer only `http/1.1` (`true`) or `h2` and `http/1.1` (`false`) to connections accepted
    /// from now on ([`Options::http1_only`]).
    pub fn set_http1_only(&self, on: bool) {
        self.shared.lock().http1_only = on;
    }

    /// The `SETTINGS_MAX_CONCURRENT_STREAMS` of h2 connections accepted from now on
    /// ([`Options::max_concurrent_streams`]).
    pub fn set_max_concurrent_streams(&self, max: Option<u32>) {
        self.shared.lock().max_concurrent_streams = max;
    }

    /// GETs sent to any vault so far (requests with the `Host` `{name}.vault.localhost`),
    /// whatever their answer: served, refused, faulted, throttled, or for a vault that does not
    /// exist.
    #[must_use]
    pub fn vault_gets(&self) -> usize {
        self.shared.lock().vault_gets
    }

    /// 429 answers sent by vaults so far: those of their rate limits
    /// ([`VaultHandle::set_rate_limit`]) and injected ones ([`Fault::Status`] or
    /// [`Fault::RetryAfter`] with status 429 from [`VaultHandle::fail_next`]).
    #[must_use]
    pub fn throttled(&self) -> usize {
        self.shared.lock().throttled
    }

    /// The next `count` requests to `login.localhost` get `fault` instead of an answer.
    ///
    /// # Panics
    /// If `fault` is a [`Fault::RetryAfter`] with an invalid header name or value.
    pub fn fail_next_token(&self, fault: Fault, count: usize) {
        fault.check();
        self.shared
            .lock()
            .token_faults
            .extend(std::iter::repeat_n(fault, count));
    }
}

impl VaultHandle {
    fn with<R>(&self, f: impl FnOnce(&mut vault::Vault) -> R) -> R {
        f(self
            .shared
            .lock()
            .vaults
            .get_mut(&self.key)
            .expect("vaults are never removed"))
    }

    /// `https://{vault}.vault.localhost:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("https://{}.vault.localhost:{}", self.key, self.shared.port)
    }

    /// Adds an enabled version of `name` (which becomes the latest) and returns its version id.
    #[allow(clippy::must_use_candidate, reason = "the version is often not needed")]
    pub fn set_secret(&self, name: &str, value: &str) -> String {
        self.set_secret_with(name, value, SecretAttrs::default())
    }

    /// Adds a version of `name` with these attributes and returns its version id.
    #[allow(clippy::must_use_candidate, reason = "the version is often not needed")]
    pub fn set_secret_with(&self, name: &str, value: &str, attrs: SecretAttrs) -> String {
        let version = random_hex();
        self.with(|v| v.set(name, value, attrs, version.clone(), unix_now()));
        version
    }

    /// The tenant whose tokens the vault accepts and its challenge names.
    pub fn set_tenant(&self, tenant: &str) {
        self.with(|v| tenant.clone_into(&mut v.tenant));
    }

    /// The challenge's resource (default [`DEFAULT_RESOURCE`]); tokens must be for its `/.default`.
    pub fn set_challenge_resource(&self, resource: &str) {
        self.with(|v| resource.clone_into(&mut v.resource));
    }

    /// `true`: challenge with `authorization_uri` + `scope` instead of `authorization` + `resource`.
    pub fn set_new_style_challenge(&self, on: bool) {
        self.with(|v| v.new_style = on);
    }

    /// Authenticated GETs get 403 `Forbidden` with this innererror code.
    pub fn deny_access(&self, code: DenyCode) {
        self.with(|v| v.deny = Some(code));
    }

    /// Undoes [`VaultHandle::deny_access`].
    pub fn allow_access(&self) {
        self.with(|v| v.deny = None);
    }

    /// The next `count` requests to this vault get `fault`, before any other check (so it can
    /// replace a 401 challenge too; the rate limit neither counts nor throttles them). Calls
    /// queue up behind each other.
    ///
    /// # Panics
    /// If `fault` is a [`Fault::RetryAfter`] with an invalid header name or value.
    pub fn fail_next(&self, fault: Fault, count: usize) {
        fault.check();
        self.with(|v| v.faults.extend(std::iter::repeat_n(fault, count)));
    }

    /// The next `count` requests for the secret `name` (any version, with or without a token)
    /// get `fault`, after this vault's [`VaultHandle::fail_next`] faults and before every other
    /// check (the rate limit neither counts nor throttles them). Calls queue up behind each other.
    ///
    /// # Panics
    /// If `fault` is a [`Fault::RetryAfter`] with an invalid header name or value.
    pub fn fail_secret(&self, name: &str, fault: Fault, count: usize) {
        fault.check();
        self.with(|v| {
            v.secret_faults
                .entry(name.to_ascii_lowercase())
                .or_default()
                .extend(std::iter::repeat_n(fault, count));
        });
    }

    /// Throttles this vault like Key Vault (docs/protocol.md §4) with a fixed window: a window starts
    /// at the first GET after the previous one ended (or after this call) and lasts `window`;
    /// the first `max_requests` GETs in it are counted and answered as usual, the rest get 429
    /// `Throttled` (the service's body, `application/json; charset=utf-8`) with
    /// `Retry-After: {retry_after in seconds, rounded up}` and
    /// `x-ms-retry-after-ms: {retry_after in milliseconds, rounded up}`. Throttled GETs do not
    /// count against the limit. Every other GET counts, whatever its answer (401 challenges
    /// included), except those answered by an injected [`Fault`], which come first. Other
    /// methods are neither counted nor throttled. Calling it again starts afresh.
    pub fn set_rate_limit(&self, max_requests: u32, window: Duration, retry_after: Duration) {
        let limit = vault::RateLimit::new(max_requests, window, retry_after);
        self.with(|v| v.rate_limit = Some(limit));
    }

    /// Removes the rate limit of [`VaultHandle::set_rate_limit`].
    pub fn clear_rate_limit(&self) {
        self.with(|v| v.rate_limit = None);
    }
}

impl Fault {
    /// The status of a fault that a service answers with its own error body.
    pub(crate) fn error_status(&self) -> Option<StatusCode> {
        match self {
            Fault::Status(code)
            | Fault::RetryAfter { status: code, .. }
            | Fault::ErrorText { status: code, .. } => {
                Some(StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            }
            _ => None,
        }
    }

    /// Puts the retry header of a [`Fault::RetryAfter`] on an answer, in place of any
    /// `Retry-After`.
    pub(crate) fn add_retry_header(&self, response: &mut Response<Body>) {
        if let Fault::RetryAfter { header, value, .. } = self {
            let (name, value) = retry_header(header, value);
            let headers = response.headers_mut();
            headers.remove(RETRY_AFTER);
            headers.insert(name, value);
        }
    }

    /// Panics, where the fault is queued, on a header a [`Fault::RetryAfter`] could not send.
    pub(crate) fn check(&self) {
        if let Fault::RetryAfter { header, value, .. } = self {
            retry_header(header, value);
        }
    }
}

fn retry_header(name: &str, value: &str) -> (HeaderName, HeaderValue) {
    let header = HeaderName::from_bytes(name.as_bytes())
        .unwrap_or_else(|e| panic!("kvrun-fake: Fault::RetryAfter header name '{name}': {e}"));
    let value = HeaderValue::from_str(value)
        .unwrap_or_else(|e| panic!("kvrun-fake: Fault::RetryAfter value '{value}': {e}"));
    (header, value)
}

/// Plays a fault popped by a service: an error status is answered with `error(status, text)`
/// (`text`: the code and message of a [`Fault::ErrorText`]; plus the retry header of a
/// [`Fault::RetryAfter`]), [`Fault::NoValue`] with `no_value()`; `Err` is a transport-level
/// fault for [`transport_fault`].
pub(crate) fn play_fault(
    fault: Fault,
    error: impl FnOnce(StatusCode, Option<(&str, &str)>) -> Response<Body>,
    no_value: impl FnOnce() -> Response<Body>,
) -> Result<Response<Body>, Fault> {
    if let Some(status) = fault.error_status() {
        let text = match &fault {
            Fault::ErrorText { code, message, .. } => Some((code.as_str(), message.as_str())),
            _ => None,
        };
        let mut response = error(status, text);
        fault.add_retry_header(&mut response);
        return Ok(response);
    }
    match fault {
        Fault::NoValue => Ok(no_value()),
        other => Err(other),
    }
}

type Body = BoxBody<Bytes, Infallible>;
type Reply = Result<Response<Body>, io::Error>;

/// The server's TLS configurations: ALPN `h2` + `http/1.1`, or `http/1.1` only.
#[derive(Clone)]
struct Acceptors {
    both: TlsAcceptor,
    http1_only: TlsAcceptor,
}

/// Accepts connections until the runtime stops; each gets its delay, TLS, then HTTP/2 if ALPN
/// chose `h2` and HTTP/1.1 otherwise (no ALPN included: never h2 by prior knowledge over TLS).
async fn serve(shared: Arc<Shared>, listener: TcpListener, acceptors: Acceptors) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        // Without this, a response written in two segments waits for the client's delayed ACK
        // (40 ms on Linux): latency no real vault adds.
        let _ = tcp.set_nodelay(true);
        // Counted at accept, before TLS: a client that rejects the certificate has still
        // connected (the handshake it rejected came from this accepted socket).
        shared.lock().connections += 1;
        let (shared, acceptors) = (Arc::clone(&shared), acceptors.clone());
        tokio::spawn(async move {
            let delay = shared.lock().connect_delay;
            delay::sleep(delay).await;
            let acceptor = if shared.lock().http1_only {
                acceptors.http1_only
            } else {
                acceptors.both
            };
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            let (session, max_streams) = {
                let mut state = shared.lock();
                if h2 {
                    state.tls_sessions.h2 += 1;
                } else {
                    state.tls_sessions.http1 += 1;
                }
                state.streams.push(0);
                (state.streams.len() - 1, state.max_concurrent_streams)
            };
            let service = service_fn(move |request| handle(Arc::clone(&shared), session, request));
            let io = TokioIo::new(stream);
            // A failed connection (client gone, injected fault) only ends itself.
            if h2 {
                let mut builder = http2::Builder::new(TokioExecutor::new());
                if max_streams.is_some() {
                    builder.max_concurrent_streams(max_streams);
                }
                let _ = builder.serve_connection(io, service).await;
            } else {
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(io, service)
                    .await;
            }
        });
    }
}

/// Answers one request of the TLS session numbered `session` (its index in `State::streams`).
async fn handle(shared: Arc<Shared>, session: usize, request: Request<Incoming>) -> Reply {
    shared.lock().streams[session] += 1;
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    let header =
        |name: hyper::header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let host = request_host(&parts);
    let (is_entra, vault_name) = route(&host, shared.public_cloud_names);
    let is_token_post = parts.method == Method::POST && is_entra;
    let form: Option<Vec<(String, String)>> =
        is_token_post.then(|| url::form_urlencoded::parse(&body).into_owned().collect());
    let record = Recorded::new(&parts, form.clone());
    let delay = {
        let mut state = shared.lock();
        state.requests.push(record);
        shared.recorded.notify_all();
        state.response_delay
    };
    delay::sleep(delay).await;

    let (path, query) = (parts.uri.path(), parts.uri.query().unwrap_or(""));
    let outcome = {
        let mut state = shared.lock();
        let store = host
            .strip_suffix(".azconfig.localhost")
            .or_else(|| {
                shared
                    .public_cloud_names
                    .then(|| host.strip_suffix(".azconfig.io"))
                    .flatten()
            })
            .filter(|n| !n.contains('.'));
        if let Some(store) = store {
            let sent_host = parts
                .headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()))
                .unwrap_or_default();
            appconfig::handle(
                &mut state,
                store,
                &appconfig::Asked {
                    method: &parts.method,
                    path,
                    query,
                    headers: &parts.headers,
                    host: &sent_host,
                },
            )
        } else if is_entra {
            entra::handle(
                &mut state,
                shared.port,
                &parts.method,
                path,
                form.as_deref().unwrap_or_default(),
            )
        } else if let Some(name) = vault_name {
            let auth = header(AUTHORIZATION);
            if parts.method == Method::GET {
                state.vault_gets += 1;
            }
            let answer = vault::handle(
                &mut state,
                shared.port,
                name,
                &parts.method,
                path,
                query,
                auth,
            );
            if answer
                .as_ref()
                .is_ok_and(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
            {
                state.throttled += 1;
            }
            answer
        } else {
            Ok(json_error(
                StatusCode::NOT_FOUND,
                "NotFound",
                None,
                &format!("kvrun-fake serves no host '{host}'"),
            ))
        }
    };
    match outcome {
        Ok(response) => Ok(response),
        Err(fault) => transport_fault(fault).await,
    }
}

/// Which service a `Host` (port removed, lower-cased) names: the token endpoint (`true`), a vault
/// (its name), or neither.
fn route(host: &str, public_cloud_names: bool) -> (bool, Option<&str>) {
    let entra = host == entra::HOST || (public_cloud_names && host == "login.microsoftonline.com");
    let vault = host
        .strip_suffix(".vault.localhost")
        .or_else(|| {
            public_cloud_names
                .then(|| host.strip_suffix(".vault.azure.net"))
                .flatten()
        })
        .filter(|n| !n.contains('.'));
    (entra, vault)
}

/// The answer for the faults that are not an HTTP status (those are the services' own).
async fn transport_fault(fault: Fault) -> Reply {
    let builder = Response::builder();
    let response = match fault {
        // The services answer these themselves ([`play_fault`]); bare versions for completeness.
        Fault::Status(_) | Fault::RetryAfter { .. } | Fault::ErrorText { .. } => {
            let status = fault.error_status().expect("an error status");
            let mut response = Response::new(Empty::new().boxed());
            *response.status_mut() = status;
            fault.add_retry_header(&mut response);
            Ok(response)
        }
        Fault::NoValue => builder
            .header(CONTENT_TYPE, JSON)
            .body(full(Bytes::from_static(b"{}"))),
        Fault::Huge(len) => builder
            .header(CONTENT_TYPE, JSON)
            .header(CONTENT_LENGTH, len)
            .body(Huge { len, at: 0 }.boxed()),
        Fault::RedirectTo(url) => builder
            .status(StatusCode::FOUND)
            .header(LOCATION, url)
            .body(Empty::new().boxed()),
        Fault::Hang => std::future::pending().await,
        Fault::Truncated => builder
            .header(CONTENT_TYPE, JSON)
            .header(CONTENT_LENGTH, 1024)
            .body(Truncated::default().boxed()),
        Fault::NotJson => builder
            .header(CONTENT_TYPE, "text/html")
            .body(full("<html><body><h1>Not JSON</h1></body></html>".into())),
        Fault::Close => return Err(io::Error::other("kvrun-fake: injected close")),
    };
    Ok(response.expect("valid response"))
}

/// A body that sends a few bytes, lets them be flushed, then ends short of its `Content-Length`,
/// which makes hyper abort the connection.
#[derive(Default)]
struct Truncated {
    polls: u8,
}

impl hyper::body::Body for Truncated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.polls += 1;
        match self.polls {
            1 => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                b"{\"value\":\"trunc",
            ))))),
            2 => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            _ => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// The body of [`Fault::Huge`]: `{"value":"xxx…x"}` cut or padded to `len` bytes, made chunk by
/// chunk as it is sent.
struct Huge {
    len: usize,
    /// Bytes made so far.
    at: usize,
}

impl Huge {
    const CHUNK: usize = 64 * 1024;
    const HEAD: &[u8] = b"{\"value\":\"";
    const TAIL: &[u8] = b"\"}";

    /// Byte `i` of the body.
    fn byte(&self, i: usize) -> u8 {
        let shortest = Self::HEAD.len() + Self::TAIL.len();
        if self.len < shortest {
            return [Self::HEAD, Self::TAIL].concat()[i];
        }
        let tail_from = self.len - Self::TAIL.len();
        if i < Self::HEAD.len() {
            Self::HEAD[i]
        } else if i >= tail_from {
            Self::TAIL[i - tail_from]
        } else {
            b'x'
        }
    }
}

impl hyper::body::Body for Huge {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.at >= self.len {
            return Poll::Ready(None);
        }
        let end = self.len.min(self.at + Self::CHUNK);
        let chunk: Vec<u8> = (self.at..end).map(|i| self.byte(i)).collect();
        self.at = end;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.at >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.len - self.at) as u64)
    }
}

pub(crate) const JSON: &str = "application/json; charset=utf-8";

pub(crate) fn full(bytes: Bytes) -> Body {
    Full::new(bytes).boxed()
}

pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(body.to_string().into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, JSON.parse().expect("header value"));
    if status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(RETRY_AFTER, 1.into());
    }
    response
}

/// A Key Vault error: `{"error":{"code":…,"message":…[,"innererror":{"code":…}]}}`.
pub(crate) fn json_error(
    status: StatusCode,
    code: &str,
    inner: Option<&str>,
    message: &str,
) -> Response<Body> {
    let mut error = serde_json::json!({ "code": code, "message": message });
    if let Some(inner) = inner {
        error["innererror"] = serde_json::json!({ "code": inner });
    }
    json_response(status, &serde_json::json!({ "error": error }))
}

/// The host a request names, without the port, lower-cased: its `Host` header (HTTP/1.1), else
/// its URI's authority (h2's `:authority`, which hyper does not copy into a `Host` header).
fn request_host(parts: &hyper::http::request::Parts) -> String {
    let host = parts.headers.get(HOST).and_then(|v| v.to_str().ok());
    host.or_else(|| {
        parts
            .uri
            .authority()
            .map(hyper::http::uri::Authority::as_str)
    })
    .map(host_without_port)
    .unwrap_or_default()
}

fn host_without_port(host: &str) -> String {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    };
    host.to_ascii_lowercase()
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 32 lowercase hex digits, different on every call (a hash of a counter with random keys).
pub(crate) fn random_hex() -> String {
    let n = next_counter();
    let keys = RandomState::new();
    format!(
        "{:016x}{:016x}",
        keys.hash_one((n, 1u8)),
        keys.hash_one((n, 2u8))
    )
}

/// A new access token, unique in this process, padded to `length` bytes ([`Options::token_length`]).
pub(crate) fn new_access_token(length: usize) -> String {
    const PADDING: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut token = format!("fake-at-{}-{}", next_counter(), std::process::id());
    if token.len() < length {
        token.push('.');
        let missing = length - token.len();
        token.extend((0..missing).map(|i| char::from(PADDING[i % PADDING.len()])));
    }
    token
}

pub(crate) fn next_counter() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed) + 1
}

/// A tokio runtime in its own thread running one accept loop; dropping it stops both and
/// with them every connection.
pub(crate) struct Background {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    pub(crate) fn spawn<F, Fut>(name: &str, listener: std::net::TcpListener, serve: F) -> Background
    where
        F: FnOnce(TcpListener) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    tokio::select! {
                        () = serve(listener) => {}
                        _ = stopped => {}
                    }
                });
            })
            .expect("server thread");
        Background {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
