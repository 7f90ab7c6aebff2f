//! A loopback-only HTTP CONNECT proxy for tests of kvrun's proxy support. It tunnels to
//! `localhost`, `*.localhost` (as 127.0.0.1) and loopback IP literals, and refuses every other
//! target with 403, deciding from the text alone: nothing is ever resolved or dialled off-machine.
//! [`ConnectProxy::forwarding`] also tunnels a fixed list of names (real Azure names, for clients
//! that cannot be pointed at `*.localhost`) to one loopback port.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::Background;

/// The running proxy; dropping it stops it and every tunnel.
pub struct ConnectProxy {
    port: u16,
    log: Arc<Mutex<Log>>,
    _server: Background,
}

#[derive(Default)]
struct Log {
    targets: Vec<String>,
    refused: Vec<String>,
    /// Names (exact, or `*.suffix`) tunnelled to `127.0.0.1:{forward_port}`.
    forward_names: Vec<String>,
    forward_port: u16,
}

impl ConnectProxy {
    /// Starts the proxy on an ephemeral port of 127.0.0.1.
    ///
    /// # Panics
    /// If 127.0.0.1 cannot be listened on.
    #[must_use]
    pub fn start() -> ConnectProxy {
        Self::forwarding(&[], 0)
    }

    /// Starts the proxy like [`ConnectProxy::start`], and also tunnels CONNECTs for `names` to
    /// `127.0.0.1:{port}`, whatever port they ask for. A name is exact (`login.microsoftonline.com`)
    /// or `*.suffix` (one or more labels before `suffix`); case-insensitive. The names are never
    /// resolved: with the fake's [`crate::Options::public_cloud_names`] this is how a client that
    /// only speaks to real Azure names reaches the fake, and nothing else.
    ///
    /// # Panics
    /// If 127.0.0.1 cannot be listened on.
    #[must_use]
    pub fn forwarding(names: &[&str], port: u16) -> ConnectProxy {
        let listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("proxy listener");
        let proxy_port = listener.local_addr().expect("proxy address").port();
        let log = Arc::new(Mutex::new(Log {
            forward_names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            forward_port: port,
            ..Log::default()
        }));
        let for_server = Arc::clone(&log);
        let server = Background::spawn("kvrun-fake-proxy", listener, move |listener| {
            serve(listener, for_server)
        });
        ConnectProxy {
            port: proxy_port,
            log,
            _server: server,
        }
    }

    /// The listening port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, for `HTTPS_PROXY`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The CONNECT authorities tunnelled so far, as the client sent them (`host:port`).
    #[must_use]
    pub fn targets(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .targets
            .clone()
    }

    /// The CONNECT authorities refused so far.
    #[must_use]
    pub fn refused(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .refused
            .clone()
    }
}

async fn serve(listener: TcpListener, log: Arc<Mutex<Log>>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            let _ = tunnel(client, &log).await;
        });
    }
}

async fn tunnel(mut client: TcpStream, log: &Mutex<Log>) -> io::Result<()> {
    let mut buffer = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > 16 * 1024 {
            return refuse(&mut client, "431 Request Header Fields Too Large").await;
        }
        let mut chunk = [0; 2048];
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]);
    let mut words = head.split_ascii_whitespace();
    let (method, authority) = (
        words.next().unwrap_or(""),
        words.next().unwrap_or("").to_owned(),
    );
    if method != "CONNECT" {
        return refuse(&mut client, "405 Method Not Allowed").await;
    }
    let forwarded = {
        let log = lock(log);
        forwarded_address(&authority, &log.forward_names, log.forward_port)
    };
    let Some(address) = forwarded.or_else(|| loopback_address(&authority)) else {
        lock(log).refused.push(authority);
        return refuse(&mut client, "403 Forbidden").await;
    };
    lock(log).targets.push(authority);
    let Ok(mut upstream) = TcpStream::connect(address).await else {
        return refuse(&mut client, "502 Bad Gateway").await;
    };
    // A relay must not hold back small writes (a TLS Finished, then the request in its own
    // record) until the previous segment is acknowledged: with the receiver's delayed ACK that
    // adds tens of milliseconds that no real network adds.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    upstream.write_all(&buffer[head_end..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

fn lock(log: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn refuse(client: &mut TcpStream, status: &str) -> io::Result<()> {
    let response = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

/// `127.0.0.1:{port}` if the host of the CONNECT authority `host:port` is one of `names`.
fn forwarded_address(authority: &str, names: &[String], port: u16) -> Option<SocketAddr> {
    let (host, _) = authority.rsplit_once(':')?;
    let host = host.to_ascii_lowercase();
    let matches = |name: &String| match name.strip_prefix("*.") {
        Some(suffix) => host
            .strip_suffix(suffix)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty()),
        None => host == *name,
    };
    names
        .iter()
        .any(matches)
        .then_some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// The loopback address for a CONNECT authority `host:port`, or `None` unless the text itself
/// says loopback (`localhost`, `*.localhost`, 127.0.0.0/8, `[::1]`).
pub(crate) fn loopback_address(authority: &str) -> Option<SocketAddr> {
    let (host, port) = authority.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let name = host.to_ascii_lowercase();
    let ip = if name == "localhost" || name.ends_with(".localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>().ok().filter(IpAddr::is_loopback)?
    };
    Some(SocketAddr::new(ip, port))
}
