//! Tests of throttling (a vault's rate limit and the counters), the faults that answer 200 with
//! an odd body or an error with a retry header, the expired server certificate and secret
//! time attributes, over real TCP on 127.0.0.1 and real TLS. Every async test runs under the
//! time limit of [`run`]; none waits for time to pass (the window logic is tested on a made-up
//! clock).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::tests::{API, Reply, VAULT_HOST, connect, get, get_token, run, send, token_request};
use crate::tls::EXPIRED_VALIDITY;
use crate::vault::RateLimit;
use crate::{DEFAULT_TENANT, FakeAzure, Fault, Options, SecretAttrs, unix_now};

const THROTTLED_BODY: &str = r#"{"error":{"code":"Throttled","message":"Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"}}"#;

/// A request with any method to `host` (a vault's or `login.localhost`) on a new connection.
async fn request(fake: &FakeAzure, method: &str, host: &str, path: &str, extra: &str) -> Reply {
    let mut stream = connect(fake, host).await.unwrap();
    let host = format!("{host}:{}", fake.port());
    send(&mut stream, method, &host, path, extra, "")
        .await
        .unwrap()
}

fn assert_throttled(reply: &Reply, retry_after: &str, retry_after_ms: &str) {
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.body, THROTTLED_BODY);
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(reply.header("retry-after"), Some(retry_after));
    assert_eq!(reply.header("x-ms-retry-after-ms"), Some(retry_after_ms));
}

#[test]
fn rate_limit_throttles_gets_like_key_vault() {
    let fake = FakeAzure::start();
    let vault = fake.vault("myvault");
    vault.set_secret("db", "hunter2");
    fake.vault("other");
    run(async {
        let token = get_token(&fake, DEFAULT_TENANT).await;
        let path = format!("/secrets/db/?{API}");
        let auth = format!("Authorization: Bearer {token}\r\n");
        vault.set_rate_limit(2, Duration::from_secs(3600), Duration::from_millis(1500));

        // Two GETs are counted, whatever their answer; the third and fourth are throttled.
        assert_eq!(get(&fake, &path, None).await.status, 401);
        assert_eq!(
            get(&fake, &path, Some(&token)).await.json()["value"],
            "hunter2"
        );
        assert_throttled(&get(&fake, &path, Some(&token)).await, "2", "1500");
        assert_throttled(&get(&fake, &path, None).await, "2", "1500");
        assert_eq!((fake.vault_gets(), fake.throttled()), (4, 2));

        // Injected faults come first and are not throttled; other methods neither count nor
        // are throttled; other vaults have no limit.
        vault.fail_next(Fault::Status(503), 1);
        assert_eq!(get(&fake, &path, None).await.status, 503);
        let post = request(&fake, "POST", VAULT_HOST, &path, &auth).await;
        assert_eq!(post.status, 404, "{}", post.body);
        let other = "other.vault.localhost";
        assert_eq!(request(&fake, "GET", other, &path, "").await.status, 401);
        let missing = "nowhere.vault.localhost";
        assert_eq!(request(&fake, "GET", missing, &path, "").await.status, 404);
        assert_eq!((fake.vault_gets(), fake.throttled()), (7, 2));

        // An injected 429 is a 429 sent too.
        vault.fail_next(Fault::Status(429), 1);
        let injected = get(&fake, &path, None).await;
        assert_eq!(
            (injected.status, injected.header("retry-after")),
            (429, Some("1"))
        );
        assert_eq!((fake.vault_gets(), fake.throttled()), (8, 3));

        // A new limit starts afresh; sub-second waits round up to whole seconds.
        vault.set_rate_limit(1, Duration::from_secs(3600), Duration::from_micros(1));
        assert_eq!(get(&fake, &path, Some(&token)).await.status, 200);
        assert_throttled(&get(&fake, &path, Some(&token)).await, "1", "1");
        vault.set_rate_limit(0, Duration::from_secs(3600), Duration::ZERO);
        assert_throttled(&get(&fake, &path, Some(&token)).await, "0", "0");
        vault.clear_rate_limit();
        assert_eq!(get(&fake, &path, Some(&token)).await.status, 200);
        assert_eq!((fake.vault_gets(), fake.throttled()), (12, 5));
    });
    // Throttled requests are still recorded.
    let vault_requests = fake
        .requests()
        .iter()
        .filter(|r| r.host.ends_with(".vault.localhost"))
        .count();
    assert_eq!(vault_requests, 13);
}

#[test]
fn rate_limit_windows_are_fixed_and_start_at_the_first_get_after_the_last_one() {
    let secs = |s: f64| Duration::from_secs_f64(s);
    let t0 = Instant::now();
    let mut limit = RateLimit::new(2, secs(10.0), secs(1.0));
    // Window [0, 10).
    assert!(limit.admit(t0));
    assert!(limit.admit(t0 + secs(1.0)));
    assert!(!limit.admit(t0 + secs(2.0)));
    assert!(!limit.admit(t0 + secs(9.999)));
    // Window [10, 20): throttled GETs of the last window did not count.
    assert!(limit.admit(t0 + secs(10.0)));
    assert!(limit.admit(t0 + secs(19.0)));
    assert!(!limit.admit(t0 + secs(19.5)));
    // Nothing until 45: the window is [45, 55), not aligned on multiples of 10.
    assert!(limit.admit(t0 + secs(45.0)));
    assert!(limit.admit(t0 + secs(49.0)));
    assert!(!limit.admit(t0 + secs(51.0)));
    assert!(!limit.admit(t0 + secs(54.9)));
    assert!(limit.admit(t0 + secs(55.0)));

    let mut closed = RateLimit::new(0, secs(1.0), secs(1.0));
    assert!(!closed.admit(t0));
    assert!(!closed.admit(t0 + secs(5.0)));

    let response = RateLimit::new(0, secs(1.0), Duration::from_millis(2001)).throttled();
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(
        (header("retry-after"), header("x-ms-retry-after-ms")),
        ("3".to_owned(), "2001".to_owned())
    );
}

#[test]
fn no_value_and_huge_faults_answer_200() {
    let fake = FakeAzure::start();
    let vault = fake.vault("myvault");
    let old = vault.set_secret("db", "old");
    let attrs = SecretAttrs {
        content_type: Some("text/plain".into()),
        exp: Some(2_000_000_000),
        ..SecretAttrs::default()
    };
    let latest = vault.set_secret_with("db", "hunter2", attrs);
    let mi = fake.start_managed_identity();
    run(async {
        let token = get_token(&fake, DEFAULT_TENANT).await;
        let port = fake.port();
        let bundle = get(&fake, &format!("/secrets/db/?{API}"), Some(&token))
            .await
            .json();

        vault.fail_next(Fault::NoValue, 3);
        let reply = get(&fake, &format!("/secrets/db/?{API}"), None).await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        let mut expected = bundle.clone();
        expected.as_object_mut().unwrap().remove("value");
        assert_eq!(reply.json(), expected);
        assert!(
            expected["id"].as_str().unwrap().ends_with(&latest),
            "{expected}"
        );

        let reply = get(&fake, &format!("/secrets/DB/{old}?{API}"), None).await;
        let body = reply.json();
        assert_eq!(
            body["id"],
            format!("https://myvault.vault.localhost:{port}/secrets/db/{old}")
        );
        assert!(body.get("value").is_none() && body.get("contentType").is_none());

        let body = get(&fake, &format!("/secrets/nope?{API}"), None)
            .await
            .json();
        let id = body["id"].as_str().unwrap();
        let prefix = format!("https://myvault.vault.localhost:{port}/secrets/nope/");
        let version = id.strip_prefix(&prefix).unwrap_or_else(|| panic!("{id}"));
        assert_eq!(version.len(), 32);
        assert_eq!(body["attributes"]["enabled"], true);
        assert!(body.get("value").is_none(), "{body}");

        for (size, expected) in [(0, ""), (5, "{\"val"), (12, "{\"value\":\"\"}")] {
            vault.fail_next(Fault::Huge(size), 1);
            let reply = get(&fake, &format!("/secrets/db/?{API}"), None).await;
            assert_eq!((reply.status, reply.body.as_str()), (200, expected));
        }
        let size = 300_000;
        vault.fail_next(Fault::Huge(size), 1);
        let reply = get(&fake, &format!("/secrets/db/?{API}"), None).await;
        let length = size.to_string();
        assert_eq!(
            (reply.status, reply.header("content-length")),
            (200, Some(length.as_str()))
        );
        assert_eq!(reply.body.len(), size);
        assert_eq!(
            reply.json()["value"].as_str().unwrap(),
            "x".repeat(size - 12)
        );

        fake.fail_next_token(Fault::NoValue, 1);
        let reply = token_request(&fake, DEFAULT_TENANT, &[]).await;
        let body = reply.json();
        assert_eq!((reply.status, &body["token_type"]), (200, &json!("Bearer")));
        assert!(body.get("access_token").is_none(), "{body}");

        mi.fail_next(Fault::NoValue, 1);
        mi.fail_next(Fault::Huge(20), 1);
        let reply = mi_get(&mi).await;
        let body = reply.json();
        assert_eq!((reply.status, &body["token_type"]), (200, &json!("Bearer")));
        assert!(body.get("access_token").is_none(), "{body}");
        let reply = mi_get(&mi).await;
        assert_eq!(reply.body, r#"{"value":"xxxxxxxx"}"#);
    });
}

/// An IMDS token request to `mi` on a new plain connection.
async fn mi_get(mi: &crate::ManagedIdentity) -> Reply {
    let mut tcp = TcpStream::connect(("127.0.0.1", mi.port())).await.unwrap();
    let host = format!("127.0.0.1:{}", mi.port());
    let path =
        "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.localhost";
    send(&mut tcp, "GET", &host, path, "Metadata: true\r\n", "")
        .await
        .unwrap()
}

fn retry_after(status: u16, header: &'static str, value: &str) -> Fault {
    Fault::RetryAfter {
        status,
        header,
        value: value.to_owned(),
    }
}

#[test]
fn retry_after_faults_carry_only_their_header() {
    let fake = FakeAzure::start();
    let vault = fake.vault("myvault");
    let mi = fake.start_managed_identity();
    run(async {
        let path = format!("/secrets/db/?{API}");
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        vault.fail_next(retry_after(429, "Retry-After", date), 1);
        vault.fail_next(retry_after(429, "x-ms-retry-after-ms", "1200"), 1);
        vault.fail_next(retry_after(503, "retry-after-ms", "250"), 1);
        vault.fail_next(retry_after(401, "Retry-After", "5"), 1);

        let reply = get(&fake, &path, None).await;
        assert_eq!((reply.status, reply.body.as_str()), (429, THROTTLED_BODY));
        assert_eq!(
            (
                reply.header("retry-after"),
                reply.header("x-ms-retry-after-ms")
            ),
            (Some(date), None)
        );

        let reply = get(&fake, &path, None).await;
        assert_eq!((reply.status, reply.body.as_str()), (429, THROTTLED_BODY));
        assert_eq!(
            (
                reply.header("retry-after"),
                reply.header("x-ms-retry-after-ms")
            ),
            (None, Some("1200"))
        );

        let reply = get(&fake, &path, None).await;
        assert_eq!(reply.error().0, 503);
        assert_eq!(reply.error().1, "ServiceUnavailable");
        assert_eq!(
            (reply.header("retry-after"), reply.header("retry-after-ms")),
            (None, Some("250"))
        );
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8")
        );

        let reply = get(&fake, &path, None).await;
        assert_eq!(reply.error().1, "Unauthorized");
        assert!(reply.header("www-authenticate").is_some());
        assert_eq!(reply.header("retry-after"), Some("5"));
        assert_eq!(fake.throttled(), 2);

        fake.fail_next_token(retry_after(429, "Retry-After", "3"), 1);
        let reply = token_request(&fake, DEFAULT_TENANT, &[]).await;
        assert_eq!(
            (reply.status, reply.json()["error"].as_str()),
            (429, Some("temporarily_unavailable"))
        );
        assert_eq!(reply.header("retry-after"), Some("3"));

        mi.fail_next(retry_after(503, "Retry-After", "7"), 1);
        let reply = mi_get(&mi).await;
        assert_eq!(
            (reply.status, reply.json()["error"].as_str()),
            (503, Some("temporarily_unavailable"))
        );
        assert_eq!(reply.header("retry-after"), Some("7"));
        assert_eq!(mi_get(&mi).await.status, 200);
    });
}

#[test]
#[should_panic(expected = "Fault::RetryAfter value")]
fn retry_after_fault_with_an_unsendable_value_panics_when_queued() {
    let fake = FakeAzure::start();
    fake.vault("myvault")
        .fail_next(retry_after(429, "Retry-After", "1\r\nX-Evil: 1"), 1);
}

/// Verifies the server's certificate against the fake's CA as if it were `now`.
#[derive(Debug)]
struct VerifyAt {
    inner: Arc<WebPkiServerVerifier>,
    now: UnixTime,
}

impl ServerCertVerifier for VerifyAt {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            self.now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The handshake with `fake` as `VAULT_HOST`, verified as if `days_ago` days ago.
async fn connect_days_ago(fake: &FakeAzure, days_ago: u64) -> std::io::Result<Reply> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(fake.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let now = UnixTime::since_unix_epoch(Duration::from_secs(unix_now() - days_ago * 86_400));
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(VerifyAt { inner, now }))
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", fake.port())).await?;
    let name = ServerName::try_from(VAULT_HOST).unwrap();
    let mut stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    let host = format!("{VAULT_HOST}:{}", fake.port());
    send(
        &mut stream,
        "GET",
        &host,
        &format!("/secrets/db?{API}"),
        "",
        "",
    )
    .await
}

fn certificate_error(error: &std::io::Error) -> CertificateError {
    match error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(e)) => e.clone(),
        _ => panic!("not a certificate error: {error:?}"),
    }
}

#[test]
fn expired_certificate_fails_verification_with_an_expiry_error() {
    let fake = FakeAzure::start_with(Options {
        expired_certificate: true,
        ..Options::default()
    });
    fake.vault("myvault");
    run(async {
        let error = connect(&fake, VAULT_HOST).await.unwrap_err();
        match certificate_error(&error) {
            CertificateError::Expired => {}
            CertificateError::ExpiredContext { time, not_after } => {
                let expired_ago = time.as_secs() - not_after.as_secs();
                assert!(
                    expired_ago.abs_diff(EXPIRED_VALIDITY.1.as_secs()) < 3600,
                    "expired {expired_ago} s ago"
                );
            }
            other => panic!("not an expiry error: {other:?}"),
        }

        // Otherwise sound: valid 10 days ago, for the vault's name, signed by the CA.
        let reply = connect_days_ago(&fake, 10).await.unwrap();
        assert_eq!(reply.status, 401);
        // And not valid yet 40 days ago.
        let error = connect_days_ago(&fake, 40).await.unwrap_err();
        assert!(
            matches!(
                certificate_error(&error),
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. }
            ),
            "{error:?}"
        );
    });
    assert_eq!(fake.connections(), 3);
}

#[test]
fn expired_and_not_yet_valid_secrets_are_served_with_their_attributes() {
    let fake = FakeAzure::start();
    let vault = fake.vault("myvault");
    let now = unix_now();
    let (past, future) = (now - 86_400, now + 86_400);
    let attrs = SecretAttrs {
        exp: Some(past),
        nbf: Some(future),
        ..SecretAttrs::default()
    };
    vault.set_secret_with("timed", "still-served", attrs);
    run(async {
        let token = get_token(&fake, DEFAULT_TENANT).await;
        let reply = get(&fake, &format!("/secrets/timed/?{API}"), Some(&token)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body = reply.json();
        let attributes = &body["attributes"];
        assert_eq!(body["value"], "still-served");
        assert_eq!(
            (
                &attributes["exp"],
                &attributes["nbf"],
                &attributes["enabled"]
            ),
            (&json!(past), &json!(future), &json!(true))
        );
    });
}
