//! Tests of the fake over real TCP on 127.0.0.1 and real TLS, with a rustls client whose only
//! root is the generated CA. Every test runs under a time limit.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::proxy::loopback_address;
use crate::{ConnectProxy, DEFAULT_TENANT, DenyCode, FakeAzure, Fault, Options, SecretAttrs};

pub(crate) const VAULT_HOST: &str = "myvault.vault.localhost";
pub(crate) const API: &str = "api-version=2025-07-01";
pub(crate) const SCOPE: &str = "https://vault.localhost/.default";

/// Runs an async test body on its own runtime, failing it after 30 s.
pub(crate) fn run<F: Future>(body: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), body)
            .await
            .expect("test timed out")
    })
}

fn connector(fake: &FakeAzure) -> TlsConnector {
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
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn tls_over(
    fake: &FakeAzure,
    tcp: TcpStream,
    name: &str,
) -> io::Result<TlsStream<TcpStream>> {
    connector(fake)
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
}

pub(crate) async fn connect(fake: &FakeAzure, name: &str) -> io::Result<TlsStream<TcpStream>> {
    tls_over(
        fake,
        TcpStream::connect(("127.0.0.1", fake.port())).await?,
        name,
    )
    .await
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value.trim())
        })
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    pub(crate) fn error(&self) -> (u16, String, String) {
        let e = &self.json()["error"];
        (
            self.status,
            e["code"].as_str().unwrap().to_owned(),
            e["message"].as_str().unwrap().to_owned(),
        )
    }
}

/// Sends one request on `stream` (kept open) and reads one `Content-Length`-framed reply.
pub(crate) async fn send<S>(
    stream: &mut S,
    method: &str,
    host: &str,
    path: &str,
    extra: &str,
    body: &str,
) -> io::Result<Reply>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(format!("{head}{body}").as_bytes()).await?;
    let (mut buffer, mut chunk) = (Vec::new(), [0; 4096]);
    loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buffer[..at].to_vec()).unwrap();
            let mut reply = Reply {
                status: head[9..12].parse().unwrap(),
                head,
                body: String::new(),
            };
            let length: usize = reply
                .header("content-length")
                .map_or(0, |v| v.parse().unwrap());
            if buffer.len() >= at + 4 + length {
                reply.body = String::from_utf8(buffer[at + 4..at + 4 + length].to_vec()).unwrap();
                return Ok(reply);
            }
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// Everything the server sends until it closes (or fails) the connection.
async fn read_all<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let (mut buffer, mut chunk) = (Vec::new(), [0; 4096]);
    while let Ok(n @ 1..) = stream.read(&mut chunk).await {
        buffer.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buffer).into_owned()
}

/// GET on a new connection to `myvault`, with `Bearer {token}` when given.
pub(crate) async fn get(fake: &FakeAzure, path: &str, token: Option<&str>) -> Reply {
    let mut stream = connect(fake, VAULT_HOST).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    send(
        &mut stream,
        "GET",
        &format!("{VAULT_HOST}:{}", fake.port()),
        path,
        &auth,
        "",
    )
    .await
    .unwrap()
}

pub(crate) async fn token_request(
    fake: &FakeAzure,
    tenant: &str,
    fields: &[(&str, &str)],
) -> Reply {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut stream = connect(fake, "login.localhost").await.unwrap();
    let host = format!("login.localhost:{}", fake.port());
    let content_type = "Content-Type: application/x-www-form-urlencoded\r\n";
    send(
        &mut stream,
        "POST",
        &host,
        &format!("/{tenant}/oauth2/v2.0/token"),
        content_type,
        &form,
    )
    .await
    .unwrap()
}

/// A token for `app`/`secret` (registered here) from `tenant`.
pub(crate) async fn get_token(fake: &FakeAzure, tenant: &str) -> String {
    fake.add_client("app", "secret");
    let fields = [
        ("grant_type", "client_credentials"),
        ("client_id", "app"),
        ("client_secret", "secret"),
        ("scope", SCOPE),
    ];
    let reply = token_request(fake, tenant, &fields).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

#[test]
fn tls_names_are_checked_against_the_generated_ca() {
    let fake = FakeAzure::start();
    run(async {
        for name in [VAULT_HOST, "login.localhost", "localhost", "127.0.0.1"] {
            let stream = connect(&fake, name)
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        }
        for name in ["a.myvault.vault.localhost", "other.localhost"] {
            assert!(
                connect(&fake, name).await.is_err(),
                "{name} must not verify"
            );
        }
    });
}

#[test]
fn unauthenticated_get_gets_the_challenge() {
    let fake = FakeAzure::start();
    let vault = fake.vault("MyVault");
    vault.set_secret("db", "x");
    run(async {
        let reply = get(&fake, &format!("/secrets/db/?{API}"), None).await;
        assert_eq!(
            reply.error(),
            (
                401,
                "Unauthorized".into(),
                "AKV10000: Request is missing a Bearer or PoP token.".into()
            )
        );
        let expected = format!(
            r#"Bearer authorization="https://login.windows.net/{DEFAULT_TENANT}", resource="https://vault.localhost""#
        );
        assert_eq!(reply.header("www-authenticate"), Some(expected.as_str()));
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8")
        );

        let reply = get(&fake, "/secrets/db/", None).await;
        assert_eq!(reply.error().0, 400);
        assert_eq!(reply.error().1, "BadParameter");

        vault.set_tenant("t2");
        vault.set_new_style_challenge(true);
        let reply = get(&fake, &format!("/secrets/db?{API}"), None).await;
        let expected = r#"Bearer authorization_uri="https://login.windows.net/t2", scope="https://vault.localhost/.default""#;
        assert_eq!(reply.header("www-authenticate"), Some(expected));
    });
}

#[test]
fn token_endpoint_answers_like_entra() {
    let fake = FakeAzure::start();
    fake.add_client("app", "secret");
    run(async {
        let mut fields = vec![
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", "wrong"),
            ("scope", SCOPE),
        ];
        let reply = token_request(&fake, DEFAULT_TENANT, &fields).await;
        let body = reply.json();
        assert_eq!(
            (reply.status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
        assert_eq!(body["error_codes"], json!([7_000_215]));
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.starts_with("AADSTS7000215: Invalid client secret provided."),
            "{description}"
        );
        assert!(
            description.contains("for a secret added to app 'app'. Trace ID: "),
            "{description}"
        );

        fields.truncate(3);
        let reply = token_request(&fake, DEFAULT_TENANT, &fields).await;
        assert_eq!(
            (reply.status, reply.json()["error"].as_str()),
            (400, Some("invalid_request"))
        );

        fields[2].1 = "secret";
        fields.push(("scope", SCOPE));
        let reply = token_request(&fake, DEFAULT_TENANT, &fields).await;
        let body = reply.json();
        assert_eq!(reply.status, 200);
        let numbers = (body["expires_in"].as_u64(), body["ext_expires_in"].as_u64());
        assert_eq!(
            (body["token_type"].as_str(), numbers),
            (Some("Bearer"), (Some(3599), Some(3599)))
        );
        assert!(
            body["access_token"]
                .as_str()
                .unwrap()
                .starts_with("fake-at-")
        );

        fields[2] = ("client_assertion", "secret");
        fields.push((
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ));
        assert_eq!(
            token_request(&fake, "any-tenant", &fields).await.status,
            200
        );
        fields[1].1 = "nobody";
        let reply = token_request(&fake, DEFAULT_TENANT, &fields).await;
        assert_eq!(
            (reply.status, reply.json()["error"].as_str()),
            (400, Some("unauthorized_client"))
        );
    });
    let form = fake.requests()[2].form.clone().unwrap();
    assert!(
        form.contains(&("client_secret".into(), "secret".into())),
        "{form:?}"
    );
}

#[test]
fn secret_bundles_over_one_connection() {
    let fake = FakeAzure::start();
    let vault = fake.vault("myvault");
    let old = vault.set_secret("Db-Password", "old");
    let latest = vault.set_secret("db-password", "hunter2");
    let attrs = SecretAttrs {
        nbf: Some(1),
        exp: Some(2),
        content_type: Some("text/plain".into()),
        ..SecretAttrs::default()
    };
    vault.set_secret_with("typed", "v", attrs);
    run(async {
        let token = get_token(&fake, DEFAULT_TENANT).await;
        let before = fake.connections();
        let mut stream = connect(&fake, VAULT_HOST).await.unwrap();
        let (host, auth) = (
            format!("{VAULT_HOST}:{}", fake.port()),
            format!("Authorization: Bearer {token}\r\n"),
        );
        let mut get = async |path: &str| {
            send(
                &mut stream,
                "GET",
                &host,
                &format!("{path}?{API}"),
                &auth,
                "",
            )
            .await
            .unwrap()
        };

        let reply = get("/secrets/DB-PASSWORD/").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        let bundle = reply.json();
        let created = bundle["attributes"]["created"].as_u64().unwrap();
        let id = format!(
            "https://myvault.vault.localhost:{}/secrets/Db-Password/{latest}",
            fake.port()
        );
        let expected = json!({"value": "hunter2", "id": id, "tags": {}, "attributes": {"enabled": true, "created": created,
            "updated": created, "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90}});
        assert_eq!(bundle, expected);
        assert_eq!(latest.len(), 32);
        assert!(
            latest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );

        assert_eq!(get("/secrets/db-password").await.json()["value"], "hunter2");
        assert_eq!(
            get(&format!("/secrets/db-password/{}", old.to_uppercase()))
                .await
                .json()["value"],
            "old"
        );
        let typed = get("/secrets/typed/").await.json();
        assert_eq!(
            (
                &typed["contentType"],
                &typed["attributes"]["nbf"],
                &typed["attributes"]["exp"]
            ),
            (&json!("text/plain"), &json!(1), &json!(2))
        );

        assert_eq!(fake.connections(), before + 1, "keep-alive");
    });

    let requests = fake.requests();
    let post = &requests[0];
    let token_path = format!("/{DEFAULT_TENANT}/oauth2/v2.0/token");
    assert_eq!(
        (post.method.as_str(), post.host.as_str()),
        ("POST", "login.localhost")
    );
    assert_eq!(post.path_and_query, token_path);
    let last = requests.last().unwrap();
    assert_eq!(
        (last.host.as_str(), last.path_and_query.as_str()),
        (VAULT_HOST, "/secrets/typed/?api-version=2025-07-01")
    );
    assert!(
        last.authorization
            .as_ref()
            .unwrap()
            .starts_with("Bearer fake-at-")
    );
    assert_eq!(last.form, None);
}

#[test]
fn missing_and_disabled_secrets() {
    let fake = FakeAzure::start();
    let vault = fake.vault("myvault");
    vault.set_secret_with(
        "off",
        "v",
        SecretAttrs {
            enabled: false,
            ..SecretAttrs::default()
        },
    );
    run(async {
        let token = get_token(&fake, DEFAULT_TENANT).await;
        let (status, code, message) = get(&fake, &format!("/secrets/nope/?{API}"), Some(&token))
            .await
            .error();
        assert_eq!((status, code.as_str()), (404, "SecretNotFound"));
        assert_eq!(
            message,
            "A secret with (name/id) nope was not found in this key vault. If you recently deleted this \
            secret you may be able to recover it using the correct recovery command. For help resolving this issue, \
            please see https://go.microsoft.com/fwlink/?linkid=2125182"
        );

        let reply = get(&fake, &format!("/secrets/off/?{API}"), Some(&token)).await;
        assert_eq!(
            reply.error(),
            (
                403,
                "Forbidden".into(),
                "Operation get is not allowed on a disabled secret.".into()
            )
        );
        assert_eq!(
            reply.json()["error"]["innererror"]["code"],
            "SecretDisabled"
        );
    });
}

#[test]
fn tokens_are_checked_for_tenant_and_access() {
    let fake = FakeAzure::start();
    let vault = fake.vault("myvault");
    vault.set_secret("db", "x");
    run(async {
        let token = get_token(&fake, DEFAULT_TENANT).await;
        vault.set_tenant("other-tenant");
        let reply = get(&fake, &format!("/secrets/db/?{API}"), Some(&token)).await;
        let (status, code, message) = reply.error();
        assert_eq!((status, code.as_str()), (401, "Unauthorized"));
        assert!(
            message.starts_with(
                "AKV10032: Invalid issuer. Expected one of https://sts.windows.net/other-tenant/, "
            ),
            "{message}"
        );
        assert!(
            reply
                .header("www-authenticate")
                .unwrap()
                .contains("login.windows.net/other-tenant\"")
        );

        let (status, _, message) = get(&fake, &format!("/secrets/db/?{API}"), Some("made-up"))
            .await
            .error();
        assert_eq!(
            (status, message.as_str()),
            (401, "AKV10022: Invalid audience.")
        );

        let token = get_token(&fake, "other-tenant").await;
        assert_eq!(
            get(&fake, &format!("/secrets/db/?{API}"), Some(&token))
                .await
                .status,
            200
        );
        vault.deny_access(DenyCode::AccessDenied);
        let reply = get(&fake, &format!("/secrets/db/?{API}"), Some(&token)).await;
        let (status, code, message) = reply.error();
        assert_eq!(
            (
                status,
                code.as_str(),
                &reply.json()["error"]["innererror"]["code"]
            ),
            (403, "Forbidden", &json!("AccessDenied"))
        );
        assert!(
            message.contains(
                "does not have secrets get permission on key vault 'myvault;location=eastus'"
            ),
            "{message}"
        );
    });
}

#[test]
fn delays_are_applied() {
    let delay = Duration::from_millis(300);
    let fake = FakeAzure::start_with(Options {
        connect_delay: delay,
        ..Options::default()
    });
    fake.vault("myvault");
    run(async {
        let started = Instant::now();
        connect(&fake, VAULT_HOST).await.unwrap();
        assert!(started.elapsed() >= delay);

        fake.set_delays(Duration::ZERO, delay);
        let started = Instant::now();
        assert_eq!(
            get(&fake, &format!("/secrets/a/?{API}"), None).await.status,
            401
        );
        assert!(started.elapsed() >= delay);
    });
}

#[test]
fn tokens_can_be_as_long_as_entra_s() {
    const LENGTH: usize = 1800;
    let fake = FakeAzure::start_with(Options {
        token_length: LENGTH,
        ..Options::default()
    });
    fake.vault("myvault").set_secret("db", "s3cret");
    let issued = fake.issue_token(DEFAULT_TENANT, SCOPE);
    run(async {
        let granted = get_token(&fake, DEFAULT_TENANT).await;
        for token in [&issued, &granted] {
            assert_eq!(token.len(), LENGTH, "{token}");
            assert!(token.starts_with("fake-at-"), "{token}");
            let reply = get(&fake, &format!("/secrets/db/?{API}"), Some(token)).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
        assert_ne!(issued, granted);
    });
}

#[test]
fn faults_replace_answers_then_stop() {
    let fake = FakeAzure::start();
    let vault = fake.vault("myvault");
    run(async {
        let path = format!("/secrets/db/?{API}");
        vault.fail_next(Fault::Status(429), 1);
        let reply = get(&fake, &path, None).await;
        assert_eq!(
            (reply.error().1.as_str(), reply.header("retry-after")),
            ("Throttled", Some("1"))
        );

        vault.fail_next(Fault::RedirectTo("https://elsewhere.localhost/".into()), 1);
        vault.fail_next(Fault::NotJson, 1);
        let reply = get(&fake, &path, None).await;
        assert_eq!(
            (reply.status, reply.header("location")),
            (302, Some("https://elsewhere.localhost/"))
        );
        let reply = get(&fake, &path, None).await;
        assert_eq!(
            (reply.status, reply.header("content-type")),
            (200, Some("text/html"))
        );

        let raw = async |fault: Fault| {
            vault.fail_next(fault, 1);
            let mut stream = connect(&fake, VAULT_HOST).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nHost: {VAULT_HOST}\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            read_all(&mut stream).await
        };
        assert_eq!(raw(Fault::Close).await, "");
        let truncated = raw(Fault::Truncated).await;
        assert!(
            truncated.starts_with("HTTP/1.1 200 OK\r\n")
                && truncated.contains("content-length: 1024\r\n"),
            "{truncated}"
        );
        assert!(
            truncated.ends_with("\r\n\r\n{\"value\":\"trunc"),
            "{truncated}"
        );

        vault.fail_next(Fault::Hang, 1);
        let hung = tokio::time::timeout(Duration::from_millis(300), get(&fake, &path, None)).await;
        assert!(hung.is_err(), "a hung request must not be answered");

        assert_eq!(
            get(&fake, &path, None).await.status,
            401,
            "faults are used up"
        );

        fake.fail_next_token(Fault::Status(503), 1);
        let reply = token_request(&fake, DEFAULT_TENANT, &[]).await;
        assert_eq!(
            (reply.status, reply.json()["error"].as_str()),
            (503, Some("temporarily_unavailable"))
        );
    });
}

#[test]
fn connect_proxy_tunnels_only_to_loopback() {
    assert_eq!(
        loopback_address("foo.localhost:1"),
        Some(([127, 0, 0, 1], 1).into())
    );
    assert_eq!(
        loopback_address("127.0.0.9:2"),
        Some(([127, 0, 0, 9], 2).into())
    );
    assert!(loopback_address("[::1]:3").is_some());
    for refused in [
        "example.com:443",
        "localhost.example.com:443",
        "10.0.0.1:443",
        "[::ffff:127.0.0.1]:1",
        "localhost",
    ] {
        assert_eq!(loopback_address(refused), None, "{refused}");
    }

    let fake = FakeAzure::start();
    fake.vault("myvault");
    let proxy = ConnectProxy::start();
    run(async {
        let mut tcp = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        tcp.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
            .await
            .unwrap();
        assert!(read_all(&mut tcp).await.starts_with("HTTP/1.1 403 "));

        let target = format!("{VAULT_HOST}:{}", fake.port());
        let mut tcp = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .unwrap();
        tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut established = [0; 39];
        tcp.read_exact(&mut established).await.unwrap();
        assert_eq!(&established, b"HTTP/1.1 200 Connection established\r\n\r\n");
        let mut stream = tls_over(&fake, tcp, VAULT_HOST).await.unwrap();
        let reply = send(
            &mut stream,
            "GET",
            &target,
            &format!("/secrets/db/?{API}"),
            "",
            "",
        )
        .await
        .unwrap();
        assert_eq!(reply.status, 401);
    });
    assert_eq!(proxy.refused(), ["example.com:443"]);
    assert_eq!(proxy.targets(), [format!("{VAULT_HOST}:{}", fake.port())]);
    assert_eq!(proxy.url(), format!("http://127.0.0.1:{}", proxy.port()));
}

#[test]
fn public_cloud_names_are_served_through_a_forwarding_proxy() {
    let fake = FakeAzure::start_with(Options {
        public_cloud_names: true,
        ..Options::default()
    });
    fake.vault("myvault")
        .set_challenge_resource("https://vault.azure.net");
    let proxy = ConnectProxy::forwarding(
        &["*.vault.azure.net", "login.microsoftonline.com"],
        fake.port(),
    );
    run(async {
        for refused in [
            "vault.azure.net:443",
            "evil.com:443",
            "x.vault.azure.net.evil.com:443",
        ] {
            let mut tcp = TcpStream::connect(("127.0.0.1", proxy.port()))
                .await
                .unwrap();
            tcp.write_all(format!("CONNECT {refused} HTTP/1.1\r\n\r\n").as_bytes())
                .await
                .unwrap();
            assert!(
                read_all(&mut tcp).await.starts_with("HTTP/1.1 403 "),
                "{refused}"
            );
        }
        for (host, path, status) in [
            (
                "MyVault.vault.azure.net",
                format!("/secrets/db/?{API}"),
                401,
            ),
            ("login.microsoftonline.com", "/".to_owned(), 404),
        ] {
            let mut tcp = TcpStream::connect(("127.0.0.1", proxy.port()))
                .await
                .unwrap();
            tcp.write_all(format!("CONNECT {host}:443 HTTP/1.1\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut established = [0; 39];
            tcp.read_exact(&mut established).await.unwrap();
            assert_eq!(&established, b"HTTP/1.1 200 Connection established\r\n\r\n");
            let mut stream = tls_over(&fake, tcp, &host.to_ascii_lowercase())
                .await
                .unwrap();
            let reply = send(&mut stream, "GET", host, &path, "", "").await.unwrap();
            assert_eq!(reply.status, status, "{host}");
            if status == 401 {
                assert!(
                    reply
                        .header("www-authenticate")
                        .unwrap()
                        .contains(r#"resource="https://vault.azure.net""#)
                );
            }
        }
    });
    assert_eq!(proxy.refused().len(), 3);
    assert_eq!(fake.vault_gets(), 1);
}

#[test]
fn a_rotated_secrets_file_adds_versions_and_keeps_the_old_ones() {
    let fake = FakeAzure::start();
    let first = crate::secrets_file::parse(r#"{"myvault": {"db": "one", "api": "key"}}"#).unwrap();
    let changes = crate::secrets_file::apply(&fake, &Default::default(), &first);
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(
        changes.iter().all(|c| c.contains(" added: version ")),
        "{changes:?}"
    );
    let old_version = changes
        .iter()
        .find(|c| c.contains("secret db "))
        .and_then(|c| c.rsplit(' ').next())
        .unwrap()
        .to_owned();
    let second = crate::secrets_file::parse(r#"{"myvault": {"db": "two", "api": "key"}}"#).unwrap();
    let changes = crate::secrets_file::apply(&fake, &first, &second);
    // Only the changed secret, and never its value.
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        changes[0].contains("secret db rotated: version "),
        "{changes:?}"
    );
    assert!(!changes[0].contains("two"), "{changes:?}");
    run(async {
        let token = get_token(&fake, DEFAULT_TENANT).await;
        let mut stream = connect(&fake, VAULT_HOST).await.unwrap();
        let (host, auth) = (
            format!("{VAULT_HOST}:{}", fake.port()),
            format!("Authorization: Bearer {token}\r\n"),
        );
        let mut get = async |path: &str| {
            send(
                &mut stream,
                "GET",
                &host,
                &format!("{path}?{API}"),
                &auth,
                "",
            )
            .await
            .unwrap()
            .json()
        };
        assert_eq!(get("/secrets/db").await["value"], "two");
        assert_eq!(
            get(&format!("/secrets/db/{old_version}")).await["value"],
            "one"
        );
        assert_eq!(get("/secrets/api").await["value"], "key");
    });
}
