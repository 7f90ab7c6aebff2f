//! The client against the fake Azure (real TLS with its test CA, h2 and http/1.1 by ALPN).

use std::sync::Arc;
use std::time::Duration;

use kvrun_fake::{ConnectProxy, FakeAzure, Options, TlsSessions};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::*;

/// A TLS configuration that trusts the fake's CA alone, offering what [`tls::config`] offers.
fn trusting(fake: &FakeAzure) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(fake.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = tls::config(tls::Store::System).unwrap().alpn_protocols;
    config
}

/// The fake's defaults, offering `h2` and `http/1.1` whatever the suite's default
/// ([`kvrun_fake::http1_only_by_default`]).
fn both() -> Options {
    Options {
        http1_only: false,
        ..Options::default()
    }
}

fn client(fake: &FakeAzure, proxy: Proxy, per_origin: usize) -> Arc<Client> {
    Client::new(Settings {
        tls: trusting(fake),
        proxy,
        per_origin,
    })
}

/// A fake started with `options` with vault `kv1`, and a client
/// for it, without a proxy.
fn vault_and_client(options: Options, per_origin: usize) -> (FakeAzure, Arc<Client>) {
    let fake = FakeAzure::start_with(options);
    fake.vault("kv1");
    let client = client(&fake, Proxy::default(), per_origin);
    (fake, client)
}

fn vault_url(fake: &FakeAzure, i: usize) -> url::Url {
    format!(
        "https://kv1.vault.localhost:{}/secrets/s{i}?api-version=2025-07-01",
        fake.port()
    )
    .parse()
    .unwrap()
}

/// `n` GETs at once (each `expect`s all `n`); every one must come back with the fake's 401.
async fn gets(client: &Arc<Client>, fake: &FakeAzure, n: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (client, url) = (client.clone(), vault_url(fake, i));
        tasks.spawn(async move { client.send(&Request::get(url).expect(n)).await });
    }
    while let Some(done) = tasks.join_next().await {
        let response = done.unwrap().expect("an answer");
        assert_eq!(response.status, 401, "the challenge");
    }
}

#[tokio::test]
async fn a_vaults_requests_share_one_h2_connection() {
    let (fake, client) = vault_and_client(
        Options {
            response_delay: Duration::from_millis(5),
            ..both()
        },
        32,
    );
    gets(&client, &fake, 40).await;
    assert_eq!(fake.tls_sessions(), TlsSessions { h2: 1, http1: 0 });
    assert_eq!(fake.streams_per_connection(), [40]);
    gets(&client, &fake, 10).await;
    assert_eq!(fake.connections(), 1, "kept for the next requests");
}

#[tokio::test]
async fn a_second_h2_connection_opens_only_at_the_servers_stream_limit() {
    let (fake, client) = vault_and_client(
        Options {
            response_delay: Duration::from_millis(20),
            max_concurrent_streams: Some(4),
            ..both()
        },
        32,
    );
    gets(&client, &fake, 12).await;
    let sessions = fake.tls_sessions();
    assert_eq!(sessions.http1, 0);
    assert!(
        (2..=3).contains(&sessions.h2),
        "12 requests at 4 streams each: {sessions:?}"
    );
    assert_eq!(fake.streams_per_connection().iter().sum::<usize>(), 12);
}

#[tokio::test]
async fn an_http1_server_gets_a_pool_bounded_by_per_origin() {
    let (fake, client) = vault_and_client(
        Options {
            response_delay: Duration::from_millis(10),
            http1_only: true,
            ..both()
        },
        4,
    );
    gets(&client, &fake, 16).await;
    let sessions = fake.tls_sessions();
    assert_eq!(sessions.h2, 0);
    assert_eq!(
        sessions.http1, 4,
        "opened once ALPN said http/1.1: {sessions:?}"
    );
    gets(&client, &fake, 4).await;
    assert_eq!(fake.connections(), 4, "idle connections are reused");
}

#[tokio::test]
async fn no_second_connection_before_the_first_one_says_its_protocol() {
    let (fake, client) = vault_and_client(
        Options {
            connect_delay: Duration::from_millis(30),
            ..both()
        },
        32,
    );
    gets(&client, &fake, 20).await;
    assert_eq!(fake.connections(), 1);
}

#[tokio::test]
async fn alpn_is_end_to_end_through_a_connect_proxy() {
    let fake = FakeAzure::start_with(both());
    fake.vault("kv1");
    let proxy = ConnectProxy::start();
    let client = client(
        &fake,
        Proxy {
            https: Some(proxy.url()),
            ..Proxy::default()
        },
        32,
    );
    gets(&client, &fake, 5).await;
    assert_eq!(fake.tls_sessions(), TlsSessions { h2: 1, http1: 0 });
    assert_eq!(
        proxy.targets(),
        [format!("kv1.vault.localhost:{}", fake.port())]
    );
}

#[tokio::test]
async fn no_proxy_is_read_from_the_settings() {
    let fake = FakeAzure::start_with(both());
    fake.vault("kv1");
    let proxy = ConnectProxy::start();
    let client = client(
        &fake,
        Proxy {
            https: Some(proxy.url()),
            no: Some(".localhost".into()),
            ..Proxy::default()
        },
        32,
    );
    gets(&client, &fake, 1).await;
    assert!(proxy.targets().is_empty(), "{:?}", proxy.targets());
}

#[tokio::test]
async fn an_https_proxy_is_refused_before_any_connection_every_time() {
    let fake = FakeAzure::start_with(both());
    fake.vault("kv1");
    let client = client(
        &fake,
        Proxy {
            https: Some("https://127.0.0.1:9".into()),
            ..Proxy::default()
        },
        32,
    );
    // The route is worked out when a connection is to be opened: the second request finds
    // none open, and is refused as the first was.
    for i in 0..2 {
        let err = client
            .send(&Request::get(vault_url(&fake, i)))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "proxy https://127.0.0.1:9/: only http:// proxies (HTTP CONNECT) are supported"
        );
    }
    assert_eq!(fake.connections(), 0);
}

/// `url` takes `{` in a host, `http` does not: the request is refused, naming the host, before
/// any connection, whether a proxy would be asked or not.
#[tokio::test]
async fn a_host_that_http_cannot_carry_is_refused_before_any_connection() {
    let fake = FakeAzure::start_with(both());
    fake.vault("kv1");
    let proxy = ConnectProxy::start();
    for via_proxy in [false, true] {
        let settings = Proxy {
            https: via_proxy.then(|| proxy.url()),
            ..Proxy::default()
        };
        let client = client(&fake, settings, 32);
        let url = format!("https://k{{v1.vault.localhost:{}/secrets/s", fake.port());
        let err = client
            .send(&Request::get(url.parse().unwrap()))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "'k{v1.vault.localhost' is not a valid host"
        );
    }
    assert_eq!(fake.connections(), 0);
    assert!(proxy.targets().is_empty());
}

#[tokio::test]
async fn the_callers_headers_replace_the_clients_and_keep_their_repeats_on_both_protocols() {
    for http1_only in [false, true] {
        let (fake, client) = vault_and_client(
            Options {
                http1_only,
                ..Options::default()
            },
            32,
        );
        let name = HeaderName::from_static("x-kvrun-test");
        let request = Request::get(vault_url(&fake, 7))
            .header(
                hyper::header::USER_AGENT,
                HeaderValue::from_static("azsdk-rust-identity/1"),
                false,
            )
            .header(name.clone(), HeaderValue::from_static("one"), false)
            .header(name, HeaderValue::from_static("two"), false);
        let response = client.send(&request).await.unwrap();
        assert_eq!(response.status, 401);
        let recorded = fake.requests().pop().unwrap();
        let values = |wanted: &str| -> Vec<&str> {
            recorded
                .headers
                .iter()
                .filter(|(n, _)| n == wanted)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(
            values("user-agent"),
            ["azsdk-rust-identity/1"],
            "{http1_only}"
        );
        assert_eq!(values("x-kvrun-test"), ["one", "two"], "{http1_only}");
        assert_eq!(recorded.host, "kv1.vault.localhost", "{http1_only}");
        assert_eq!(
            recorded.path_and_query, "/secrets/s7?api-version=2025-07-01",
            "{http1_only}"
        );
    }
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused() {
    let (fake, client) = vault_and_client(both(), 32);
    let err = client
        .send(&Request::get(vault_url(&fake, 0)).max_body(16))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge(0)), "{err:?}");
}

#[tokio::test]
async fn an_untrusted_server_is_a_tls_error() {
    let fake = FakeAzure::start_with(both());
    let stranger = FakeAzure::start_with(both());
    stranger.vault("kv1");
    let client = client(&fake, Proxy::default(), 32);
    let err = client
        .send(&Request::get(vault_url(&stranger, 0)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Untrusted(_)), "{err:?}");
    assert_eq!(stranger.request_count(), 0);
}

#[test]
fn plain_http_only_to_local_managed_identity_endpoints() {
    let allowed = [
        "http://169.254.169.254/metadata/identity/oauth2/token",
        "http://127.0.0.1:41000/msi/token",
        "http://[::1]:41000/msi/token",
        "http://localhost:8081/token",
    ];
    for url in allowed {
        let origin = origin(&url.parse().unwrap()).unwrap();
        assert!(!origin.tls, "{url}");
    }
    for url in [
        "http://kv1.vault.azure.net/secrets/x",
        "http://10.0.0.4/token",
        "ftp://127.0.0.1/x",
    ] {
        assert!(
            matches!(origin(&url.parse().unwrap()), Err(Error::Refused(_))),
            "{url}"
        );
    }
    assert!(
        origin(&"https://KV1.vault.azure.net/".parse().unwrap()).unwrap()
            == Origin {
                tls: true,
                host: "kv1.vault.azure.net".into(),
                port: 443,
            }
    );
}

#[tokio::test]
async fn plain_http_never_goes_through_the_proxy() {
    let proxy = ConnectProxy::start();
    let fake = FakeAzure::start_with(both());
    let client = client(
        &fake,
        Proxy {
            all: Some(proxy.url()),
            https: Some(proxy.url()),
            ..Proxy::default()
        },
        32,
    );
    // Nothing listens on this port: the error names it, not the proxy.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url: url::Url = format!("http://127.0.0.1:{port}/token").parse().unwrap();
    let err = client.send(&Request::get(url)).await.unwrap_err();
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(proxy.targets().is_empty());
}

#[test]
fn untrusted_text_is_escaped() {
    assert_eq!(
        untrusted("a\u{1b}[2Jb\r\n\u{202e}c"),
        "a\\u{1b}[2Jb\\r\\n\\u{202e}c"
    );
    // Printable ASCII, every character of it, stays as it is; so do other printable characters.
    let printable: String = (' '..='~').collect();
    assert_eq!(untrusted(&printable), printable);
    assert_eq!(untrusted("välue ✓"), "välue ✓");
    assert_eq!(untrusted("a\u{7f}b\tc"), "a\\u{7f}b\\tc");
}

#[tokio::test]
async fn a_request_abandoned_while_its_connection_opens_lets_the_next_one_open() {
    // A server that accepts TCP and never answers (a blackholed TLS handshake): the first
    // request's attempt times out while it opens the connection; the next must open its own
    // rather than wait for one that will never come.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    let fake = FakeAzure::start_with(both());
    let client = client(&fake, Proxy::default(), 32);
    let url: url::Url = format!("https://127.0.0.1:{port}/").parse().unwrap();
    let request = Request::get(url);
    for attempt in 1..=2 {
        let sent = tokio::time::timeout(Duration::from_millis(100), client.send(&request)).await;
        assert!(sent.is_err(), "attempt {attempt} timed out");
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[test]
fn a_responses_debug_shows_no_body_and_no_header_value() {
    let mut headers = HeaderMap::new();
    headers.insert("x-ms-token", HeaderValue::from_static("tok-NEVER-PRINT"));
    let response = Response {
        status: 200,
        headers,
        body: Bytes::from_static(br#"{"value":"hunter2-NEVER-PRINT"}"#),
    };
    let shown = format!("{response:?}");
    assert!(!shown.contains("NEVER-PRINT"), "{shown}");
    assert!(
        shown.contains("200") && shown.contains("x-ms-token") && shown.contains("[31 bytes]"),
        "{shown}"
    );
}
