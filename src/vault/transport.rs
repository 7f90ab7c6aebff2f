//! kvrun's HTTP/1.1 transport for Get Secret: TLS connections it can open *before* it needs them.
//!
//! Why not reqwest here (it still carries the token requests, as `azure_identity`'s transport):
//! a start is dominated by round trips. The first request to a vault must go without a token, and
//! the authenticated requests after it each need a connection. reqwest opens a connection only
//! when a request needs one, so every secret beyond the first paid a fresh TCP + TLS handshake
//! *after* the challenge came back. Here, as soon as the first connection to a vault has its TCP
//! part (or proxy tunnel) up, the others are opened while its TLS handshake, the challenge request
//! and the token request are in flight, and the authenticated requests find them ready. No extra
//! request is sent to the vault.
//!
//! Same trust and proxy rules as the reqwest client: the OS trust store through
//! rustls-platform-verifier (so `SSL_CERT_FILE` / `SSL_CERT_DIR` apply), `HTTPS_PROXY` /
//! `ALL_PROXY` / `NO_PROXY` as curl reads them (hyper-util's matcher, the one reqwest uses), with
//! an HTTP CONNECT tunnel; `*.localhost` resolves to loopback (RFC 6761). https only, no redirects.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use crate::resolve::timing::Phase;

type Sender = SendRequest<Empty<Bytes>>;
/// What to do once a new connection's TCP part (or proxy tunnel) is up.
type OnTcp = Box<dyn FnOnce() + Send>;

/// A connection attempt to one address that does not answer is abandoned after this long when
/// other addresses remain to be tried.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(3);
/// Opening one connection (TCP, proxy tunnel, TLS) gives up after this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong below HTTP.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// The server's certificate was not accepted (untrusted, expired, wrong name).
    #[error("TLS: {0}")]
    Untrusted(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("the response is larger than {0} KiB")]
    TooLarge(usize),
}

/// The parts of a response kvrun looks at.
pub struct Reply {
    pub status: u16,
    pub www_authenticate: Option<String>,
    /// How long the server asked us to wait before trying again (see [`super::retry`]).
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

/// Connections to one `host:port`: one queue for idle connections and those being opened ahead
/// of need, in the order they become usable. `promised` counts what is in the queue or on its way
/// and not yet claimed; a request that claims one waits for the next to arrive (`None`: an opening
/// failed, so it connects itself). Every claim matches exactly one arrival, so no one waits for a
/// connection that will not come, and openings are bounded by `CONNECT_TIMEOUT`.
struct Origin {
    promised: AtomicUsize,
    queue_tx: mpsc::UnboundedSender<Option<Sender>>,
    queue_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Option<Sender>>>,
}

impl Origin {
    fn new() -> Self {
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        Self {
            promised: AtomicUsize::new(0),
            queue_tx,
            queue_rx: tokio::sync::Mutex::new(queue_rx),
        }
    }

    fn offer(&self, sender: Option<Sender>) {
        let _ = self.queue_tx.send(sender);
    }
}

pub struct Transport {
    tls: TlsConnector,
    proxy: Matcher,
    user_agent: &'static str,
    origins: Mutex<HashMap<String, Arc<Origin>>>,
}

impl Transport {
    /// Connections with `tls` ([`super::tls::config`]), through the proxy `env` names.
    #[must_use]
    pub fn new(env: &[(OsString, OsString)], tls: rustls::ClientConfig) -> Arc<Self> {
        let env = crate::source::Env(env);
        // The proxy settings from kvrun's environment snapshot, read as curl reads them.
        let mut proxy = Matcher::builder();
        if let Some(v) = env.get("ALL_PROXY").or_else(|| env.get("all_proxy")) {
            proxy = proxy.all(v);
        }
        if let Some(v) = env.get("HTTPS_PROXY").or_else(|| env.get("https_proxy")) {
            proxy = proxy.https(v);
        }
        if let Some(v) = env.get("NO_PROXY").or_else(|| env.get("no_proxy")) {
            proxy = proxy.no(v);
        }
        Arc::new(Self {
            tls: TlsConnector::from(Arc::new(tls)),
            proxy: proxy.build(),
            user_agent: concat!("kvrun/", env!("CARGO_PKG_VERSION")),
            origins: Mutex::new(HashMap::new()),
        })
    }

    fn origin(&self, authority: &str) -> Arc<Origin> {
        let mut origins = self.origins.lock().unwrap_or_else(PoisonError::into_inner);
        origins
            .entry(authority.to_owned())
            .or_insert_with(|| Arc::new(Origin::new()))
            .clone()
    }

    /// `GET https://{host}[:port]{path}`. With `warm > 0`, once this request's TCP connection (or
    /// proxy tunnel) is up, that many more connections to the same origin are opened in the
    /// background for the requests that will follow: their handshakes overlap this one's and the
    /// request in flight. Waiting for TCP first means a host that cannot be reached costs one
    /// failed attempt, not `warm + 1`.
    ///
    /// # Errors
    /// Connection, TLS, proxy or I/O failures, or a body over `max_body` bytes.
    pub async fn get(
        self: &Arc<Self>,
        host: &str,
        port: u16,
        path: &str,
        bearer: Option<&str>,
        warm: usize,
        max_body: usize,
    ) -> Result<Reply, TransportError> {
        let authority = if port == 443 {
            host.to_owned()
        } else {
            format!("{host}:{port}")
        };
        let origin = self.origin(&authority);
        let on_tcp: Option<OnTcp> = (warm > 0).then(|| {
            let (this, origin, host) = (Arc::clone(self), Arc::clone(&origin), host.to_owned());
            Box::new(move || this.prewarm(&origin, &host, port, warm)) as OnTcp
        });
        let (mut sender, reused) = self.acquire(&origin, host, port, on_tcp).await?;
        let reply = match self
            .send(&mut sender, &authority, path, bearer, max_body)
            .await
        {
            // A pooled connection the server has meanwhile closed: once more on a fresh one.
            Err(SendError::BeforeResponse(_)) if reused => {
                sender = self.connect(host, port, None).await?;
                self.send(&mut sender, &authority, path, bearer, max_body)
                    .await
            }
            other => other,
        }
        .map_err(SendError::into_transport)?;
        if !sender.is_closed() {
            origin.promised.fetch_add(1, Ordering::AcqRel);
            origin.offer(Some(sender));
        }
        Ok(reply)
    }

    /// An idle connection, one being opened ahead of need, or a new one. `true` if not new.
    /// `on_tcp` runs once the connection's TCP part is up (at once for a connection not new).
    async fn acquire(
        &self,
        origin: &Origin,
        host: &str,
        port: u16,
        on_tcp: Option<OnTcp>,
    ) -> Result<(Sender, bool), TransportError> {
        let claimed = origin
            .promised
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if claimed
            && let Some(Some(sender)) = origin.queue_rx.lock().await.recv().await
            && !sender.is_closed()
        {
            if let Some(on_tcp) = on_tcp {
                on_tcp();
            }
            return Ok((sender, true));
        }
        Ok((self.connect(host, port, on_tcp).await?, false))
    }

    fn prewarm(self: &Arc<Self>, origin: &Arc<Origin>, host: &str, port: u16, count: usize) {
        origin.promised.fetch_add(count, Ordering::AcqRel);
        for _ in 0..count {
            let (this, origin, host) = (Arc::clone(self), Arc::clone(origin), host.to_owned());
            tokio::spawn(async move {
                origin.offer(this.connect(&host, port, None).await.ok());
            });
        }
    }

    async fn send(
        &self,
        sender: &mut Sender,
        authority: &str,
        path: &str,
        bearer: Option<&str>,
        max_body: usize,
    ) -> Result<Reply, SendError> {
        let mut request = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::USER_AGENT, self.user_agent)
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            let mut value = hyper::header::HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| {
                    SendError::Failed(TransportError::Unreachable(
                        "the token is not a valid header value".into(),
                    ))
                })?;
            value.set_sensitive(true);
            request = request.header(hyper::header::AUTHORIZATION, value);
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| SendError::Failed(TransportError::Unreachable(e.to_string())))?;
        // The challenge probe is timed as a whole by its caller; authenticated GETs here.
        let _span = bearer.is_some().then(|| Phase::Get.span());
        sender
            .ready()
            .await
            .map_err(|e| SendError::BeforeResponse(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| SendError::BeforeResponse(e.to_string()))?;
        let status = response.status().as_u16();
        let www_authenticate = response
            .headers()
            .get(hyper::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let retry_after = super::retry::retry_after_in(response.headers());
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| {
                SendError::Failed(if e.is::<http_body_util::LengthLimitError>() {
                    TransportError::TooLarge(max_body / 1024)
                } else {
                    TransportError::Unreachable(format!("the response broke off: {e}"))
                })
            })?
            .to_bytes()
            .to_vec();
        Ok(Reply {
            status,
            www_authenticate,
            retry_after,
            body,
        })
    }

    /// TCP (directly or through the proxy's CONNECT tunnel), then TLS, then HTTP/1.1.
    async fn connect(
        &self,
        host: &str,
        port: u16,
        on_tcp: Option<OnTcp>,
    ) -> Result<Sender, TransportError> {
        let started = std::time::Instant::now();
        let span = Phase::Connect.span();
        let result = tokio::time::timeout(CONNECT_TIMEOUT, self.open(host, port, on_tcp))
            .await
            .unwrap_or_else(|_| {
                Err(TransportError::Unreachable(format!(
                    "no connection to {host}:{port} within {}s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            });
        drop(span);
        tracing::debug!(
            host,
            port,
            ok = result.is_ok(),
            elapsed_ms = started.elapsed().as_millis(),
            "connection"
        );
        result
    }

    async fn open(
        &self,
        host: &str,
        port: u16,
        on_tcp: Option<OnTcp>,
    ) -> Result<Sender, TransportError> {
        let target: hyper::Uri = format!("https://{host}:{port}/")
            .parse()
            .map_err(|_| TransportError::Unreachable(format!("'{host}' is not a valid host")))?;
        let tcp = match self.proxy.intercept(&target) {
            Some(intercept) => {
                let proxy = intercept.uri();
                if proxy.scheme_str() != Some("http") {
                    return Err(TransportError::Unreachable(format!(
                        "proxy {proxy}: only http:// proxies (HTTP CONNECT) are supported"
                    )));
                }
                let proxy_host = proxy.host().unwrap_or_default();
                let mut tcp = tcp_connect(proxy_host, proxy.port_u16().unwrap_or(80)).await?;
                tunnel(&mut tcp, host, port, intercept.basic_auth()).await?;
                tcp
            }
            None => tcp_connect(host, port).await?,
        };
        if let Some(on_tcp) = on_tcp {
            on_tcp();
        }
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            TransportError::Unreachable(format!("'{host}' is not a valid server name"))
        })?;
        let tls = self.tls.connect(name, tcp).await.map_err(|e| {
            match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(tls_error) => TransportError::Untrusted(tls_error.to_string()),
                None => TransportError::Unreachable(format!("TLS handshake: {e}")),
            }
        })?;
        // A Get Secret answer is a few hundred bytes (25 KiB at most): read it in 4 KiB steps
        // instead of hyper's adaptive buffer, which starts at 8 KiB per connection and keeps it
        // (a start with 96 connections open at once otherwise holds ~0.8 MB of read buffers).
        let (sender, connection) = http1::Builder::new()
            .read_buf_exact_size(Some(4096))
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        tokio::spawn(async move {
            // Ends when the connection closes; an error here only ends this connection.
            let _ = connection.await;
        });
        Ok(sender)
    }
}

enum SendError {
    /// The request may not have reached the server (a stale pooled connection).
    BeforeResponse(String),
    Failed(TransportError),
}

impl SendError {
    fn into_transport(self) -> TransportError {
        match self {
            Self::BeforeResponse(e) => TransportError::Unreachable(e),
            Self::Failed(e) => e,
        }
    }
}

/// `localhost` and `*.localhost` are loopback without asking DNS (RFC 6761 §6.3).
pub(crate) fn is_localhost(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

async fn tcp_connect(host: &str, port: u16) -> Result<TcpStream, TransportError> {
    let addrs: Vec<SocketAddr> = if is_localhost(host) {
        vec![
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ]
    } else {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| TransportError::Unreachable(format!("cannot resolve {host}: {e}")))?
            .collect()
    };
    let mut last = format!("{host} has no addresses");
    for (i, addr) in addrs.iter().enumerate() {
        let attempt = TcpStream::connect(addr);
        let result = if i + 1 < addrs.len() {
            tokio::time::timeout(CONNECT_ATTEMPT, attempt)
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        } else {
            attempt.await
        };
        match result {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) => last = format!("cannot connect to {host}:{port} ({addr}): {e}"),
        }
    }
    Err(TransportError::Unreachable(last))
}

/// Ask an HTTP proxy for a tunnel to `host:port`.
async fn tunnel(
    tcp: &mut TcpStream,
    host: &str,
    port: u16,
    auth: Option<&hyper::header::HeaderValue>,
) -> Result<(), TransportError> {
    let failed =
        |what: String| TransportError::Unreachable(format!("proxy CONNECT {host}:{port}: {what}"));
    let auth = auth
        .and_then(|a| a.to_str().ok())
        .map(|a| format!("Proxy-Authorization: {a}\r\n"))
        .unwrap_or_default();
    let request = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n");
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8 * 1024 {
            return Err(failed("the proxy's answer is too long".into()));
        }
        let byte = tcp.read_u8().await.map_err(|e| failed(e.to_string()))?;
        head.push(byte);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(failed(format!("the proxy answered '{status_line}'")))
    }
}
