//! Opening one connection: TCP (to the origin, or to the proxy and through its CONNECT tunnel),
//! TLS with ALPN, then the HTTP/2 or HTTP/1.1 handshake the server's ALPN answer asks for.
//!
//! Written here, not taken from hyper-util's `HttpConnector` and `Tunnel`: those are tower
//! services built for its legacy pool, which cannot wait for the first connection's ALPN or open
//! a second h2 connection at the stream limit ([`super::pool`]); their parts kvrun would use come
//! to a TCP connect with a per-address timeout and a `*.localhost` rule they do not have. The
//! tunnel is hyper's own client: a CONNECT request and `hyper::upgrade` (no hand-written
//! parsing of the proxy's answer).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Empty, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::{Error, Origin, untrusted};
use crate::timing::Phase;

/// A connection attempt to one address that does not answer is abandoned after this long when
/// other addresses remain to be tried.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(3);
/// Opening one connection (TCP, proxy tunnel, TLS, HTTP handshake) gives up after this long.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 health checks (docs/protocol.md §7, as Azure's Go core does them): a PING after this long
/// without a frame from the server, idle or not…
const PING_AFTER: Duration = Duration::from_secs(10);
/// …and the connection is closed if its answer takes longer than this.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The most an HTTP/1.1 read buffer grows to, which bounds a response head (a TLS-inspecting
/// proxy's headers can be long); bodies are capped by the caller.
const H1_MAX_BUFFER: usize = 64 * 1024;

pub(super) type H1 = http1::SendRequest<Full<Bytes>>;
pub(super) type H2 = http2::SendRequest<Full<Bytes>>;

/// A new connection, by the protocol the server chose.
pub(super) enum Conn {
    H1(H1),
    H2(H2, Arc<StreamLimit>),
}

/// The server's `SETTINGS_MAX_CONCURRENT_STREAMS` as the connection knows it. hyper reports it
/// on the connection (which the task driving it owns), not on the senders the pool holds: the
/// pool asks for it with [`refresh`](Self::refresh) once an answer has come back (by then the
/// server's SETTINGS have been read), and the task publishes it.
pub(super) struct StreamLimit {
    value: AtomicUsize,
    /// The value is the server's (published after an answer), not hyper's initial guess.
    settled: AtomicBool,
    refresh: Notify,
}

impl StreamLimit {
    /// The server's limit, once settled; one stream before.
    pub(super) fn room(&self) -> usize {
        if self.settled.load(Ordering::Acquire) {
            self.value.load(Ordering::Acquire)
        } else {
            1
        }
    }

    pub(super) fn settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }

    /// Ask the connection's task to publish the limit it knows now.
    pub(super) fn refresh(&self) {
        self.refresh.notify_one();
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// How a connection reaches its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Route {
    Direct,
    /// Through an `http://` proxy's CONNECT tunnel: host, port, and its `Proxy-Authorization`.
    Tunnel {
        host: String,
        port: u16,
        auth: Option<hyper::header::HeaderValue>,
    },
}

/// Open a connection to `origin` by `route`, bounded by [`CONNECT_TIMEOUT`].
/// `changed` is signalled when an h2 connection's stream limit changes or it closes.
pub(super) async fn open(
    origin: &Origin,
    route: &Route,
    tls: Option<&tokio_rustls::TlsConnector>,
    changed: Arc<Notify>,
) -> Result<Conn, Error> {
    let started = std::time::Instant::now();
    let span = Phase::Connect.span();
    let result = tokio::time::timeout(CONNECT_TIMEOUT, open_unbounded(origin, route, tls, changed))
        .await
        .unwrap_or_else(|_| {
            Err(Error::Unreachable(format!(
                "no connection to {} within {}s",
                origin.authority(),
                CONNECT_TIMEOUT.as_secs()
            )))
        });
    drop(span);
    tracing::debug!(
        origin = %origin.authority(),
        ok = result.is_ok(),
        h2 = matches!(result, Ok(Conn::H2(..))),
        elapsed_ms = started.elapsed().as_millis(),
        "connection"
    );
    result
}

async fn open_unbounded(
    origin: &Origin,
    route: &Route,
    tls: Option<&tokio_rustls::TlsConnector>,
    changed: Arc<Notify>,
) -> Result<Conn, Error> {
    let io: Box<dyn Io> = match route {
        Route::Direct => Box::new(tcp(&origin.host, origin.port).await?),
        Route::Tunnel { host, port, auth } => {
            let proxy = tcp(host, *port).await?;
            Box::new(tunnel(proxy, origin, auth.as_ref()).await?)
        }
    };
    let Some(tls) = tls else {
        return h1(io).await;
    };
    let bare = origin.host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(bare.to_owned())
        .map_err(|_| Error::Unreachable(format!("'{}' is not a valid server name", origin.host)))?;
    let stream = tls.connect(name, io).await.map_err(|e| {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls_error) => Error::Untrusted(tls_error.to_string()),
            None => Error::Unreachable(format!("TLS handshake: {e}")),
        }
    })?;
    // Never h2 without the server saying so (docs/protocol.md §7): no ALPN is HTTP/1.1.
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        h2(stream, changed).await
    } else {
        h1(stream).await
    }
}

async fn h1(io: impl Io) -> Result<Conn, Error> {
    let (sender, connection) = http1::Builder::new()
        .max_buf_size(H1_MAX_BUFFER)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| Error::Unreachable(e.to_string()))?;
    tokio::spawn(async move {
        // Ends when the connection closes; an error here only ends this connection.
        let _ = connection.await;
    });
    Ok(Conn::H1(sender))
}

type TlsIo = tokio_rustls::client::TlsStream<Box<dyn Io>>;

async fn h2(io: TlsIo, changed: Arc<Notify>) -> Result<Conn, Error> {
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_AFTER)
        .keep_alive_timeout(PING_TIMEOUT)
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| Error::Unreachable(e.to_string()))?;
    let limit = Arc::new(StreamLimit {
        value: AtomicUsize::new(1),
        settled: AtomicBool::new(false),
        refresh: Notify::new(),
    });
    let published = limit.clone();
    tokio::spawn(async move {
        let mut connection = std::pin::pin!(connection);
        loop {
            tokio::select! {
                // Ends when the connection closes; an error only ends this connection.
                _ = connection.as_mut() => break,
                () = published.refresh.notified() => {
                    published
                        .value
                        .store(connection.current_max_send_streams(), Ordering::Release);
                    published.settled.store(true, Ordering::Release);
                    changed.notify_waiters();
                }
            }
        }
        changed.notify_waiters();
    });
    Ok(Conn::H2(sender, limit))
}

/// `localhost` and `*.localhost` are loopback without asking DNS (RFC 6761 §6.3).
pub(crate) fn is_localhost(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// The addresses to try for `host`, loopback for `*.localhost`.
async fn addresses(host: &str, port: u16) -> Result<Vec<SocketAddr>, Error> {
    if is_localhost(host) {
        return Ok(vec![
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        ]);
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Error::Unreachable(format!("cannot resolve {host}: {e}")))?
        .collect())
}

/// TCP to the first address of `host` that answers; each but the last gets [`CONNECT_ATTEMPT`].
async fn tcp(host: &str, port: u16) -> Result<TcpStream, Error> {
    let addrs = addresses(host, port).await?;
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
    Err(Error::Unreachable(last))
}

/// Ask an HTTP proxy for a tunnel to `origin`, with hyper's client and its upgrade.
async fn tunnel(
    proxy: TcpStream,
    origin: &Origin,
    auth: Option<&hyper::header::HeaderValue>,
) -> Result<TokioIo<hyper::upgrade::Upgraded>, Error> {
    let target = format!("{}:{}", origin.host, origin.port);
    let failed = |what: String| Error::Unreachable(format!("proxy CONNECT {target}: {what}"));
    let (mut sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(proxy))
        .await
        .map_err(|e| failed(e.to_string()))?;
    tokio::spawn(connection.with_upgrades());
    let mut request = hyper::Request::connect(&target).header(hyper::header::HOST, &target);
    if let Some(auth) = auth {
        request = request.header(hyper::header::PROXY_AUTHORIZATION, auth);
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| failed(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| failed(e.to_string()))?;
    if response.status() != hyper::StatusCode::OK {
        let status = response.status();
        return Err(failed(format!(
            "the proxy answered {} {}",
            status.as_u16(),
            untrusted(status.canonical_reason().unwrap_or_default())
        )));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(|e| failed(e.to_string()))?;
    Ok(TokioIo::new(upgraded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_names_are_loopback() {
        for name in [
            "localhost",
            "LOCALHOST.",
            "kv.vault.localhost",
            "a.b.localhost.",
        ] {
            assert!(is_localhost(name), "{name}");
        }
        for name in [
            "localhost.example.com",
            "mylocalhost",
            "vault.azure.net",
            "",
        ] {
            assert!(!is_localhost(name), "{name}");
        }
    }

    #[tokio::test]
    async fn localhost_resolves_without_dns_to_both_loopbacks() {
        let addrs = addresses("kv.vault.localhost", 8443).await.unwrap();
        assert_eq!(
            addrs,
            [
                SocketAddr::from((Ipv4Addr::LOCALHOST, 8443)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, 8443))
            ]
        );
    }
}
