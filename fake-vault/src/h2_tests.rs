//! Tests of the fake's protocols: h2 and HTTP/1.1 chosen by ALPN on its one TLS listener, the
//! per-run records (TCP connections, TLS sessions by protocol, streams per connection), the
//! advertised stream limit, and faults, rate limits and the CONNECT proxy over h2. The h2 client
//! is hyper's, over tokio-rustls offering `h2`.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http2::{self, SendRequest};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::tests::{API, SCOPE, VAULT_HOST, run, send};
use crate::{ConnectProxy, DEFAULT_TENANT, FakeAzure, Fault, Options, TlsSessions};

const H2: &[u8] = b"h2";
const HTTP1: &[u8] = b"http/1.1";

/// A TLS session with `fake` as `VAULT_HOST` over `tcp`, offering `alpn` (none when empty).
async fn tls_over(fake: &FakeAzure, tcp: TcpStream, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(fake.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(VAULT_HOST).unwrap(), tcp)
        .await
        .unwrap()
}

async fn tls(fake: &FakeAzure, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", fake.port()))
        .await
        .unwrap();
    tls_over(fake, tcp, alpn).await
}

/// The protocol the server chose for `stream`.
fn alpn(stream: &TlsStream<TcpStream>) -> Option<&[u8]> {
    stream.get_ref().1.alpn_protocol()
}

/// An h2 client on `stream` (whose ALPN must be `h2`); its connection runs in a task.
async fn h2_client(stream: TlsStream<TcpStream>) -> SendRequest<Empty<Bytes>> {
    h2_client_with_settings(stream).await.0
}

/// [`h2_client`], and a way to ask its connection for the server's
/// `SETTINGS_MAX_CONCURRENT_STREAMS` as it stands (`Connection::current_max_send_streams`).
async fn h2_client_with_settings(
    stream: TlsStream<TcpStream>,
) -> (SendRequest<Empty<Bytes>>, MaxSendStreams) {
    assert_eq!(alpn(&stream), Some(H2));
    let (sender, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    let (ask, mut asked) = mpsc::channel::<oneshot::Sender<usize>>(1);
    tokio::spawn(async move {
        let mut connection = Box::pin(connection);
        loop {
            tokio::select! {
                _ = connection.as_mut() => break,
                Some(reply) = asked.recv() => {
                    let _ = reply.send(connection.current_max_send_streams());
                }
            }
        }
    });
    (sender, MaxSendStreams(ask))
}

struct MaxSendStreams(mpsc::Sender<oneshot::Sender<usize>>);

impl MaxSendStreams {
    async fn get(&self) -> usize {
        let (reply, answer) = oneshot::channel();
        self.0.send(reply).await.unwrap();
        answer.await.unwrap()
    }
}

/// A GET of `path` on `myvault` over h2, with `Bearer {token}` when given.
fn request(fake: &FakeAzure, path: &str, token: Option<&str>) -> Request<Empty<Bytes>> {
    let uri = format!("https://{VAULT_HOST}:{}{path}", fake.port());
    let mut builder = Request::get(uri);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Empty::new()).unwrap()
}

/// The status and body of an answer.
async fn read(response: Response<hyper::body::Incoming>) -> (StatusCode, String) {
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn h2_get(
    sender: &mut SendRequest<Empty<Bytes>>,
    request: Request<Empty<Bytes>>,
) -> (StatusCode, String) {
    read(sender.send_request(request).await.unwrap()).await
}

/// An error and its sources, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

fn value_of(body: &str) -> String {
    let bundle: serde_json::Value = serde_json::from_str(body).unwrap();
    bundle["value"].as_str().unwrap().to_owned()
}

#[test]
fn h2_client_gets_a_secret_over_one_connection_with_concurrent_streams() {
    const STREAMS: usize = 8;
    let fake = FakeAzure::start();
    fake.vault("myvault").set_secret("db", "s3cret");
    let token = fake.issue_token(DEFAULT_TENANT, SCOPE);
    let path = format!("/secrets/db/?{API}");
    run(async {
        let sender = h2_client(tls(&fake, &[H2, HTTP1]).await).await;
        let mut streams = JoinSet::new();
        for _ in 0..STREAMS {
            let (mut sender, request) = (sender.clone(), request(&fake, &path, Some(&token)));
            streams.spawn(async move { h2_get(&mut sender, request).await });
        }
        let answers = streams.join_all().await;
        for (status, body) in answers {
            assert_eq!((status, value_of(&body)), (StatusCode::OK, "s3cret".into()));
        }
    });
    assert_eq!(fake.connections(), 1);
    assert_eq!(fake.tls_sessions(), TlsSessions { h2: 1, http1: 0 });
    assert_eq!(fake.streams_per_connection(), [STREAMS]);
    assert_eq!(fake.request_count(), STREAMS);
    let recorded = fake.requests();
    assert!(
        recorded
            .iter()
            .all(|r| r.host == VAULT_HOST && r.path_and_query == path && r.method == "GET"),
        "{recorded:?}"
    );
}

#[test]
fn http1_only_gives_http1_to_a_client_offering_both() {
    let fake = FakeAzure::start_with(Options {
        http1_only: true,
        ..Options::default()
    });
    fake.vault("myvault");
    let host = format!("{VAULT_HOST}:{}", fake.port());
    let path = format!("/secrets/db/?{API}");
    run(async {
        let mut stream = tls(&fake, &[H2, HTTP1]).await;
        assert_eq!(alpn(&stream), Some(HTTP1));
        for _ in 0..2 {
            let reply = send(&mut stream, "GET", &host, &path, "", "")
                .await
                .unwrap();
            assert_eq!(reply.status, 401);
        }

        // Changed at runtime: the next connections are offered h2 again, then not.
        fake.set_http1_only(false);
        let sender = h2_client(tls(&fake, &[H2, HTTP1]).await).await;
        assert_eq!(
            h2_get(&mut sender.clone(), request(&fake, &path, None))
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        fake.set_http1_only(true);
        let mut stream = tls(&fake, &[H2, HTTP1]).await;
        assert_eq!(alpn(&stream), Some(HTTP1));
        let reply = send(&mut stream, "GET", &host, &path, "", "")
            .await
            .unwrap();
        assert_eq!(reply.status, 401);
    });
    assert_eq!(fake.connections(), 3);
    assert_eq!(fake.tls_sessions(), TlsSessions { h2: 1, http1: 2 });
    assert_eq!(fake.streams_per_connection(), [2, 1, 1]);
}

#[test]
fn a_client_offering_only_http1_or_no_alpn_gets_http1() {
    let fake = FakeAzure::start();
    fake.vault("myvault");
    let host = format!("{VAULT_HOST}:{}", fake.port());
    let path = format!("/secrets/db/?{API}");
    run(async {
        let mut offering_http1 = tls(&fake, &[HTTP1]).await;
        assert_eq!(alpn(&offering_http1), Some(HTTP1));
        let mut no_alpn = tls(&fake, &[]).await;
        assert_eq!(alpn(&no_alpn), None);
        for stream in [&mut offering_http1, &mut no_alpn] {
            let reply = send(stream, "GET", &host, &path, "", "").await.unwrap();
            assert_eq!(reply.status, 401);
            assert!(reply.head.starts_with("HTTP/1.1 401 "), "{}", reply.head);
        }
    });
    assert_eq!(fake.connections(), 2);
    assert_eq!(fake.tls_sessions(), TlsSessions { h2: 0, http1: 2 });
    assert_eq!(fake.streams_per_connection(), [1, 1]);
}

#[test]
fn max_concurrent_streams_is_what_the_client_sees() {
    let fake = FakeAzure::start_with(Options {
        max_concurrent_streams: Some(3),
        ..Options::default()
    });
    fake.vault("myvault");
    let path = format!("/secrets/db/?{API}");
    run(async {
        // The server's SETTINGS have arrived once a first answer has.
        let seen = async |fake: &FakeAzure| {
            let (mut sender, max) = h2_client_with_settings(tls(fake, &[H2, HTTP1]).await).await;
            let status = h2_get(&mut sender, request(fake, &path, None)).await.0;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            max.get().await
        };
        assert_eq!(seen(&fake).await, 3);
        fake.set_max_concurrent_streams(Some(1));
        assert_eq!(seen(&fake).await, 1);
        fake.set_max_concurrent_streams(None);
        assert_eq!(seen(&fake).await, 200, "hyper's default");

        // Over the limit, a client's extra requests wait for a free stream on the connection,
        // once it knows the limit: streams opened before the server's SETTINGS arrive are
        // refused (REFUSED_STREAM) beyond it, so the first request goes alone.
        fake.set_max_concurrent_streams(Some(1));
        let mut sender = h2_client(tls(&fake, &[H2, HTTP1]).await).await;
        let first = h2_get(&mut sender, request(&fake, &path, None)).await.0;
        assert_eq!(first, StatusCode::UNAUTHORIZED);
        let mut streams = JoinSet::new();
        for _ in 0..3 {
            let (mut sender, request) = (sender.clone(), request(&fake, &path, None));
            streams.spawn(async move { h2_get(&mut sender, request).await.0 });
        }
        assert_eq!(streams.join_all().await, [StatusCode::UNAUTHORIZED; 3]);
    });
    assert_eq!(fake.tls_sessions(), TlsSessions { h2: 4, http1: 0 });
    assert_eq!(fake.streams_per_connection(), [1, 1, 1, 4]);
}

#[test]
fn faults_and_rate_limits_over_h2() {
    let fake = FakeAzure::start();
    let vault = fake.vault("myvault");
    vault.set_secret("db", "s3cret");
    let token = fake.issue_token(DEFAULT_TENANT, SCOPE);
    let path = format!("/secrets/db/?{API}");
    run(async {
        let mut sender = h2_client(tls(&fake, &[H2, HTTP1]).await).await;
        let get = |token: Option<&str>| request(&fake, &path, token);

        vault.fail_next(Fault::Status(429), 1);
        let response = sender.send_request(get(None)).await.unwrap();
        assert_eq!(response.headers()["retry-after"], "1");
        assert_eq!(read(response).await.0, StatusCode::TOO_MANY_REQUESTS);

        // Close resets the stream (RST_STREAM INTERNAL_ERROR); the connection serves on.
        vault.fail_next(Fault::Close, 1);
        let closed = sender.send_request(get(None)).await.unwrap_err();
        assert_eq!(
            error_chain(&closed),
            "http2 error: stream error received: unexpected internal error encountered"
        );
        let (status, body) = h2_get(&mut sender, get(Some(&token))).await;
        assert_eq!((status, value_of(&body)), (StatusCode::OK, "s3cret".into()));

        // Truncated: the body ends short of its Content-Length, which the client detects
        // (h2 ends a stream explicitly: the connection needs no closing to show it).
        vault.fail_next(Fault::Truncated, 1);
        let response = sender.send_request(get(None)).await.unwrap();
        assert_eq!(response.headers()["content-length"], "1024");
        let cut = response.into_body().collect().await.unwrap_err();
        assert_eq!(
            error_chain(&cut),
            "error reading a body from connection: stream error detected: unspecific protocol \
             error detected"
        );

        vault.fail_next(Fault::Huge(200_000), 1);
        let (status, body) = h2_get(&mut sender, get(None)).await;
        assert_eq!((status, body.len()), (StatusCode::OK, 200_000));

        // A hung stream holds up no other stream of its connection.
        vault.fail_secret("stuck", Fault::Hang, 1);
        let stuck = request(&fake, &format!("/secrets/stuck/?{API}"), None);
        let mut hung = tokio::spawn({
            let (mut sender, request) = (sender.clone(), stuck);
            async move { sender.send_request(request).await.map(|r| r.status()) }
        });
        let (status, _) = h2_get(&mut sender, get(Some(&token))).await;
        assert_eq!(status, StatusCode::OK);
        let unanswered = tokio::time::timeout(Duration::from_millis(300), &mut hung).await;
        assert!(unanswered.is_err(), "a hung request must not be answered");
        hung.abort();

        vault.set_rate_limit(1, Duration::from_secs(60), Duration::from_secs(2));
        assert_eq!(
            h2_get(&mut sender, get(None)).await.0,
            StatusCode::UNAUTHORIZED
        );
        let response = sender.send_request(get(None)).await.unwrap();
        assert_eq!(response.headers()["x-ms-retry-after-ms"], "2000");
        assert_eq!(read(response).await.0, StatusCode::TOO_MANY_REQUESTS);
    });
    assert_eq!(fake.connections(), 1);
    assert_eq!(fake.tls_sessions(), TlsSessions { h2: 1, http1: 0 });
    assert_eq!(fake.streams_per_connection(), [9]);
    assert_eq!(fake.throttled(), 2);
}

#[test]
fn connect_proxy_tunnels_alpn_end_to_end() {
    let fake = FakeAzure::start();
    fake.vault("myvault");
    let proxy = ConnectProxy::start();
    let target = format!("{VAULT_HOST}:{}", fake.port());
    let path = format!("/secrets/db/?{API}");
    run(async {
        let tunnel = async || {
            let mut tcp = TcpStream::connect(("127.0.0.1", proxy.port()))
                .await
                .unwrap();
            let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
            tcp.write_all(connect.as_bytes()).await.unwrap();
            let mut established = [0; 39];
            tcp.read_exact(&mut established).await.unwrap();
            assert_eq!(&established, b"HTTP/1.1 200 Connection established\r\n\r\n");
            tcp
        };
        let mut sender = h2_client(tls_over(&fake, tunnel().await, &[H2, HTTP1]).await).await;
        assert_eq!(
            h2_get(&mut sender, request(&fake, &path, None)).await.0,
            StatusCode::UNAUTHORIZED
        );

        fake.set_http1_only(true);
        let mut stream = tls_over(&fake, tunnel().await, &[H2, HTTP1]).await;
        assert_eq!(alpn(&stream), Some(HTTP1));
        let reply = send(&mut stream, "GET", &target, &path, "", "")
            .await
            .unwrap();
        assert_eq!(reply.status, 401);
    });
    assert_eq!(proxy.targets(), [target.clone(), target]);
    assert_eq!(fake.tls_sessions(), TlsSessions { h2: 1, http1: 1 });
    assert_eq!(fake.streams_per_connection(), [1, 1]);
}
