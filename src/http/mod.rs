//! The one HTTP client of a run: vault GETs, Entra token requests (handed to `azure_identity` as
//! its `HttpClient` by `vault::credential::sdk_client`), managed identity, and App Configuration.
//!
//! One place for the policy every request follows:
//!
//! - **https only**, with one explicit exception: a managed identity endpoint (IMDS, App
//!   Service's `IDENTITY_ENDPOINT`) is plain http on a loopback or link-local address by design
//!   (docs/protocol.md §5). Plain http anywhere else is refused before any connection, and a plain
//!   request never goes through a proxy.
//! - **TLS** ([`tls`]): the OS trust store, loaded once in the background; ALPN `h2` then
//!   `http/1.1`; the server's choice decides the protocol of the connection ([`pool`]).
//! - **Proxy** from kvrun's environment snapshot (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`, as curl
//!   reads them: hyper-util's matcher), never the live environment; an `http://` proxy's CONNECT
//!   tunnel, inside which TLS and ALPN are end to end.
//! - **`*.localhost` is loopback** without asking DNS (RFC 6761), which is how emulators and
//!   kvrun's tests reach a vault on this machine without a hosts file.
//! - **No redirects**: a 3xx is an answer like any other (a redirect must not carry a token
//!   anywhere); the caller says what it means.
//! - **Bounded**: every body is read up to the caller's cap and refused beyond it, declared or
//!   sent; opening a connection gives up after 10 s; the caller bounds each attempt.
//!
//! Connections are per origin and shared by every request to it: one h2 connection per vault
//! (a second at the server's stream limit), or up to `--concurrency` HTTP/1.1 connections when the
//! server picks HTTP/1.1 ([`pool`]).

mod connect;
mod pool;
pub mod tls;

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper_util::client::proxy::matcher::Matcher;

pub(crate) use connect::is_localhost;

pub use hyper::Method;

/// What the client needs, built once by the CLI layer from the command line and the
/// environment snapshot.
pub struct Settings {
    /// [`tls::config`].
    pub tls: rustls::ClientConfig,
    pub proxy: Proxy,
    /// HTTP/1.1 connections per origin at most (`--concurrency`); h2 streams are bounded by the
    /// callers and the server.
    pub per_origin: usize,
}

/// The proxy variables, as kvrun's environment snapshot has them (`HTTPS_PROXY` or
/// `https_proxy`, …). No `Debug`: a proxy URL may carry a password.
#[derive(Clone, Default)]
pub struct Proxy {
    pub all: Option<String>,
    pub https: Option<String>,
    pub no: Option<String>,
}

/// What went wrong below HTTP, or a request the policy refuses.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The server's certificate was not accepted (untrusted, expired, wrong name).
    #[error("TLS: {0}")]
    Untrusted(String),
    /// No connection, a broken one, a proxy that refused the tunnel.
    #[error("{0}")]
    Unreachable(String),
    #[error("the response is larger than {0} KiB")]
    TooLarge(usize),
    /// Not a URL kvrun sends anything to (plain http to a public host, another scheme).
    #[error("{0}")]
    Refused(String),
}

/// Where a connection goes: scheme, host (lower case), port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Origin {
    fn authority(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One request.
pub struct Request {
    method: Method,
    url: url::Url,
    headers: HeaderMap,
    body: Bytes,
    max_body: usize,
    expect: usize,
}

impl Request {
    #[must_use]
    pub fn get(url: url::Url) -> Self {
        Self::new(Method::GET, url, Bytes::new())
    }

    #[must_use]
    pub fn new(method: Method, url: url::Url, body: Bytes) -> Self {
        Self {
            method,
            url,
            headers: HeaderMap::new(),
            body,
            max_body: 64 * 1024,
            expect: 1,
        }
    }

    #[must_use]
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// Adds a header; a `sensitive` one (a token, the identity header) is marked so for hyper
    /// and never logged.
    #[must_use]
    pub fn header(mut self, name: HeaderName, mut value: HeaderValue, sensitive: bool) -> Self {
        value.set_sensitive(sensitive);
        self.headers.append(name, value);
        self
    }

    /// The most of the answer's body that is read (default 64 KiB).
    #[must_use]
    pub fn max_body(mut self, max: usize) -> Self {
        self.max_body = max;
        self
    }

    /// `count` requests to this origin, this one included, are about to be sent (a vault's GETs
    /// after its challenge): on HTTP/1.1, their connections are opened once the first
    /// connection's ALPN is known.
    #[must_use]
    pub fn expect(mut self, count: usize) -> Self {
        self.expect = count;
        self
    }
}

/// The parts of an answer kvrun reads. Its `Debug` shows no header values and no body (a secret's
/// value, a token).
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body", &format_args!("[{} bytes]", self.body.len()))
            .finish()
    }
}

impl Response {
    #[must_use]
    pub fn header(&self, name: &HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The client (see the module docs). Cheap to share: clone the `Arc`.
pub struct Client {
    tls: tokio_rustls::TlsConnector,
    proxy: Matcher,
    pool: pool::Pool,
    user_agent: HeaderValue,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("http::Client").finish_non_exhaustive()
    }
}

impl Client {
    #[must_use]
    pub fn new(settings: Settings) -> Arc<Self> {
        let mut proxy = Matcher::builder();
        if let Some(all) = settings.proxy.all {
            proxy = proxy.all(all);
        }
        if let Some(https) = settings.proxy.https {
            proxy = proxy.https(https);
        }
        if let Some(no) = settings.proxy.no {
            proxy = proxy.no(no);
        }
        Arc::new(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(settings.tls)),
            proxy: proxy.build(),
            pool: pool::Pool::new(settings.per_origin),
            user_agent: HeaderValue::from_static(concat!("kvrun/", env!("CARGO_PKG_VERSION"))),
        })
    }

    /// Send `request` and read its answer (any status: a 3xx is not followed, a 4xx is not an
    /// error here).
    ///
    /// # Errors
    /// Refused by the policy, no connection, TLS, a broken connection, a body over the cap.
    pub async fn send(&self, request: &Request) -> Result<Response, Error> {
        let origin = origin(&request.url)?;
        let route = |authority: &Authority| self.route(&origin, authority);
        let dial = pool::Dial {
            origin: &origin,
            route: &route,
            tls: origin.tls.then_some(&self.tls),
        };
        let lease = self.pool.acquire(&dial, request.expect).await?;
        match self.exchange(lease, &origin, request).await {
            // A pooled connection the server closed meanwhile: once more, on another.
            Err(Failure::BeforeAnswer(_, true)) => {
                let lease = self.pool.acquire(&dial, 1).await?;
                self.exchange(lease, &origin, request)
                    .await
                    .map_err(Failure::into_error)
            }
            other => other.map_err(Failure::into_error),
        }
    }

    fn route(&self, origin: &Origin, authority: &Authority) -> Result<connect::Route, Error> {
        if !origin.tls {
            // The managed identity endpoints: local by design, never proxied.
            return Ok(connect::Route::Direct);
        }
        let target = uri(true, authority, PathAndQuery::from_static("/"))
            .map_err(|e| Error::Refused(e.to_string()))?;
        let Some(intercept) = self.proxy.intercept(&target) else {
            return Ok(connect::Route::Direct);
        };
        let proxy = intercept.uri();
        if proxy.scheme_str() != Some("http") {
            return Err(Error::Unreachable(format!(
                "proxy {}: only http:// proxies (HTTP CONNECT) are supported",
                untrusted(&proxy.to_string())
            )));
        }
        Ok(connect::Route::Tunnel {
            host: proxy.host().unwrap_or_default().to_owned(),
            port: proxy.port_u16().unwrap_or(80),
            auth: intercept.basic_auth().cloned(),
        })
    }

    async fn exchange(
        &self,
        mut lease: pool::Lease,
        origin: &Origin,
        request: &Request,
    ) -> Result<Response, Failure> {
        let reused = lease.reused;
        let before = |e: hyper::Error| Failure::BeforeAnswer(crate::error::chain_text(&e), reused);
        let not_sendable =
            |e: &dyn std::fmt::Display| Failure::Failed(Error::Refused(e.to_string()));
        let (authority, host) = lease.authority();
        let path = &request.url[url::Position::BeforePath..url::Position::AfterQuery];
        let path = PathAndQuery::try_from(path).map_err(|e| not_sendable(&e))?;
        let mut builder = hyper::Request::builder().method(request.method.clone());
        // h2 takes the authority from the URI (`:authority`); HTTP/1.1 from `Host`. Both come
        // parsed from the pool, once per origin.
        builder = if lease.is_h2() {
            builder.uri(uri(origin.tls, authority, path).map_err(|e| not_sendable(&e))?)
        } else {
            builder.uri(path).header(hyper::header::HOST, host.clone())
        };
        let mut outgoing = builder
            .header(hyper::header::USER_AGENT, self.user_agent.clone())
            .body(Full::new(request.body.clone()))
            .map_err(|e| not_sendable(&e))?;
        // The caller's headers replace the client's of the same name (an SDK's User-Agent).
        let headers = outgoing.headers_mut();
        for name in request.headers.keys() {
            let mut values = request.headers.get_all(name).iter().cloned();
            if let Some(first) = values.next() {
                headers.insert(name, first);
            }
            for value in values {
                headers.append(name, value);
            }
        }
        let answer = match lease.sender() {
            pool::Sender::H1(sender) => {
                sender.ready().await.map_err(before)?;
                sender.send_request(outgoing).await.map_err(before)?
            }
            pool::Sender::H2(mut sender) => {
                sender.ready().await.map_err(before)?;
                sender.send_request(outgoing).await.map_err(before)?
            }
        };
        lease.answered();
        let status = answer.status().as_u16();
        // Names no header, query or body: those may carry a token or the identity header.
        tracing::trace!(
            origin = %origin.authority(),
            method = %request.method,
            path = request.url.path(),
            version = ?answer.version(),
            status,
            reused,
            "HTTP answer"
        );
        let (parts, body) = answer.into_parts();
        let max = request.max_body;
        let declared = parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(Failure::Failed(Error::TooLarge(max / 1024)));
        }
        let body = Limited::new(body, max).collect().await.map_err(|e| {
            Failure::Failed(if e.is::<http_body_util::LengthLimitError>() {
                Error::TooLarge(max / 1024)
            } else {
                Error::Unreachable(format!(
                    "the answer broke off: {}",
                    crate::error::chain_text(&*e)
                ))
            })
        })?;
        lease.finish();
        Ok(Response {
            status,
            headers: parts.headers,
            body: body.to_bytes(),
        })
    }
}

enum Failure {
    /// The request may not have reached the server; `true` on a connection that served others
    /// before (one the server may have closed meanwhile).
    BeforeAnswer(String, bool),
    Failed(Error),
}

impl Failure {
    fn into_error(self) -> Error {
        match self {
            Self::BeforeAnswer(e, _) => Error::Unreachable(e),
            Self::Failed(e) => e,
        }
    }
}

/// The origin of `url`, if the policy lets kvrun send to it (see the module docs).
fn origin(url: &url::Url) -> Result<Origin, Error> {
    let host = match url.host() {
        Some(url::Host::Domain(name)) => name.to_ascii_lowercase(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        None => return Err(Error::Refused(format!("{url} has no host"))),
    };
    match url.scheme() {
        "https" => Ok(Origin {
            tls: true,
            host,
            port: url.port().unwrap_or(443),
        }),
        "http" if is_local(url) => Ok(Origin {
            tls: false,
            host,
            port: url.port().unwrap_or(80),
        }),
        "http" => Err(Error::Refused(format!(
            "plain http to {}: kvrun sends plain http only to a managed identity endpoint on a loopback or link-local address",
            untrusted(&host)
        ))),
        other => Err(Error::Refused(format!(
            "{}: kvrun sends https only",
            untrusted(other)
        ))),
    }
}

/// A loopback or link-local host: where a managed identity endpoint lives.
fn is_local(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => is_localhost(name),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_link_local(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback()
                || IpAddr::V6(ip).to_canonical().is_loopback()
                || ip.is_unicast_link_local()
        }
        None => false,
    }
}

/// `https://` or `http://`, then `authority` and `path`, all parsed already: a request's URI (h2
/// takes its `:authority` from it) and the proxy matcher's target.
fn uri(
    tls: bool,
    authority: &Authority,
    path: PathAndQuery,
) -> Result<hyper::Uri, hyper::http::Error> {
    hyper::Uri::builder()
        .scheme(if tls { Scheme::HTTPS } else { Scheme::HTTP })
        .authority(authority.clone())
        .path_and_query(path)
        .build()
}

/// Text that came from a server (Key Vault's error code and message, Entra's description, a
/// proxy's status line, a certificate's names), made safe for a terminal: control characters
/// (ESC, CR, BEL, …) and the Unicode controls that reorder or break lines are written as Rust
/// escapes (`\u{1b}`, `\r`), so that a hostile server can neither clear the screen nor forge a
/// line of kvrun's output. Everything else is kept as it is.
#[must_use]
pub fn untrusted(text: &str) -> String {
    // The common case, printable ASCII only (a version id, an error code): nothing to escape.
    if text.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let reorders = matches!(c, '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || reorders {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests;
