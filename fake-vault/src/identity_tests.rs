//! Tests of certificate clients (JWT client assertions, the test certificate's PEM and PKCS#12
//! forms) and of the managed identity endpoints, over real TCP on 127.0.0.1. Every async test
//! runs under the time limit of [`run`].

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{self, SHA1_FOR_LEGACY_USE_ONLY, SHA256};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p12_keystore::{KeyStore, Pkcs12ImportPolicy};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::cert::CertKey;
use crate::tests::{API, Reply, SCOPE, get, run, send, token_request};
use crate::{
    DEFAULT_TENANT, FakeAzure, Fault, ManagedIdentity, SYSTEM_ASSIGNED_CLIENT_ID, TestCertificate,
    test_certificate, unix_now,
};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const USER_ASSIGNED: &str = "11111111-2222-3333-4444-555555555555";

fn cert_der(cert: &TestCertificate) -> Vec<u8> {
    CertificateDer::from_pem_slice(cert.cert_pem.as_bytes())
        .unwrap()
        .to_vec()
}

fn thumbprint(cert: &TestCertificate, algorithm: &'static digest::Algorithm) -> Vec<u8> {
    digest::digest(algorithm, &cert_der(cert)).as_ref().to_vec()
}

fn rsa_key(key_pem: &str) -> RsaKeyPair {
    let der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    match der {
        PrivateKeyDer::Pkcs8(key) => RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()).unwrap(),
        PrivateKeyDer::Pkcs1(key) => RsaKeyPair::from_der(key.secret_pkcs1_der()).unwrap(),
        other => panic!("not an RSA key: {other:?}"),
    }
}

/// A JWT signed with `key_pem`: RS256, or PS256 when the header says so.
fn sign(key_pem: &str, header: &Value, claims: &Value) -> String {
    let key = rsa_key(key_pem);
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let padding = if header["alg"] == "PS256" {
        &RSA_PSS_SHA256
    } else {
        &RSA_PKCS1_SHA256
    };
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        padding,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

async fn present(fake: &FakeAzure, client_id: &str, assertion: &str) -> Reply {
    let fields = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("scope", SCOPE),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ];
    token_request(fake, DEFAULT_TENANT, &fields).await
}

/// `(status, error, first error code, description)` of an Entra error.
fn aad(reply: &Reply) -> (u16, String, u64, String) {
    let body = reply.json();
    (
        reply.status,
        body["error"].as_str().unwrap().to_owned(),
        body["error_codes"][0].as_u64().unwrap(),
        body["error_description"].as_str().unwrap().to_owned(),
    )
}

/// A fake with a vault holding `db` and the client `cert-app` registered with a new
/// certificate, that certificate, and the header and claims of a good assertion for it.
struct CertClient {
    fake: FakeAzure,
    cert: TestCertificate,
    header: Value,
    claims: Value,
}

fn cert_client() -> CertClient {
    let fake = FakeAzure::start();
    fake.vault("myvault").set_secret("db", "hunter2");
    let cert = test_certificate("kvrun test app");
    fake.add_certificate_client("cert-app", &cert.cert_pem);
    let audience = format!(
        "{}/{DEFAULT_TENANT}/oauth2/v2.0/token",
        fake.authority_host()
    );
    let x5t = URL_SAFE_NO_PAD.encode(thumbprint(&cert, &SHA1_FOR_LEGACY_USE_ONLY));
    let now = unix_now();
    CertClient {
        header: json!({ "alg": "RS256", "typ": "JWT", "x5t": x5t }),
        claims: json!({ "aud": audience, "iss": "cert-app", "sub": "cert-app", "jti": "1",
            "nbf": now, "exp": now + 600 }),
        fake,
        cert,
    }
}

#[test]
fn certificate_assertions_get_tokens_the_vault_accepts() {
    let CertClient {
        fake,
        cert,
        header,
        claims,
    } = cert_client();
    run(async {
        let reply = present(&fake, "cert-app", &sign(&cert.key_pem, &header, &claims)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let token = reply.json()["access_token"].as_str().unwrap().to_owned();
        let secret = get(&fake, &format!("/secrets/db?{API}"), Some(&token)).await;
        assert_eq!(
            (secret.status, &secret.json()["value"]),
            (200, &json!("hunter2"))
        );

        // PS256 named by its SHA-256 thumbprint; the PKCS#1 form of the key signs the same.
        let s256 = URL_SAFE_NO_PAD.encode(thumbprint(&cert, &SHA256));
        let pss = json!({ "alg": "PS256", "typ": "JWT", "x5t#S256": s256 });
        let reply = present(&fake, "cert-app", &sign(&cert.key_pem_pkcs1, &pss, &claims)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        // azure_identity 1.0: padded standard base64 thumbprint; also a one-element `aud` array.
        let padded = STANDARD.encode(thumbprint(&cert, &SHA1_FOR_LEGACY_USE_ONLY));
        let mut claims_1 = claims.clone();
        claims_1["aud"] = json!([claims["aud"]]);
        let legacy = json!({ "alg": "RS256", "typ": "JWT", "x5t": padded });
        let reply = present(&fake, "cert-app", &sign(&cert.key_pem, &legacy, &claims_1)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);

        // A second certificate for the same client, and a secret beside them.
        let second = test_certificate("second");
        fake.add_certificate_client("cert-app", &second.cert_pem);
        fake.add_client("cert-app", "also-a-secret");
        let x5t = URL_SAFE_NO_PAD.encode(thumbprint(&second, &SHA1_FOR_LEGACY_USE_ONLY));
        let header_2 = json!({ "alg": "RS256", "x5t": x5t });
        let reply = present(
            &fake,
            "cert-app",
            &sign(&second.key_pem, &header_2, &claims),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let reply = present(&fake, "cert-app", &sign(&cert.key_pem, &header, &claims)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            present(&fake, "cert-app", "also-a-secret").await.status,
            200
        );
    });
    let first = &fake.requests()[0];
    assert_eq!(
        first.header("Content-Type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[test]
fn issued_tokens_open_the_vault_of_their_tenant() {
    let fake = FakeAzure::start();
    fake.vault("myvault").set_secret("db", "hunter2");
    let issued = fake.issue_token(DEFAULT_TENANT, SCOPE);
    let elsewhere = fake.issue_token("other-tenant", SCOPE);
    run(async {
        let secret = get(&fake, &format!("/secrets/db?{API}"), Some(&issued)).await;
        assert_eq!(secret.status, 200, "{}", secret.body);
        let refused = get(&fake, &format!("/secrets/db?{API}"), Some(&elsewhere)).await;
        assert_eq!(refused.status, 401);
    });
    assert!(
        fake.requests().iter().all(|r| r.method == "GET"),
        "no token request"
    );
}

#[test]
fn bad_certificate_assertions_are_refused_like_entra() {
    let CertClient {
        fake,
        cert,
        header,
        claims,
    } = cert_client();
    let other = test_certificate("other");
    let now = claims["nbf"].as_u64().unwrap();
    run(async {
        let refused = async |header: &Value, claims: &Value, key_pem: &str| {
            aad(&present(&fake, "cert-app", &sign(key_pem, header, claims)).await)
        };
        let (status, error, code, description) = refused(&header, &claims, &other.key_pem).await;
        assert_eq!(
            (status, error.as_str(), code),
            (401, "invalid_client", 700_027)
        );
        assert!(
            description.starts_with("AADSTS700027: Client assertion contains an invalid signature. [Reason - The provided signature value did not match"),
            "{description}"
        );
        let other_x5t = URL_SAFE_NO_PAD.encode(thumbprint(&other, &SHA1_FOR_LEGACY_USE_ONLY));
        let unknown = json!({ "alg": "RS256", "x5t": other_x5t });
        let (status, _, code, description) = refused(&unknown, &claims, &other.key_pem).await;
        assert_eq!((status, code), (401, 700_027));
        assert!(
            description
                .contains("[Reason - The key was not found., Thumbprint of key used by client: '"),
            "{description}"
        );
        let hs256 = json!({ "alg": "HS256", "x5t": header["x5t"] });
        assert_eq!(refused(&hs256, &claims, &cert.key_pem).await.2, 700_027);

        let mut expired = claims.clone();
        (expired["nbf"], expired["exp"]) = (json!(now - 600), json!(now - 1));
        let (status, error, code, description) = refused(&header, &expired, &cert.key_pem).await;
        assert_eq!(
            (status, error.as_str(), code),
            (401, "invalid_client", 700_024)
        );
        assert!(
            description.starts_with(
                "AADSTS700024: Client assertion is not within its valid time range. Current time: "
            ),
            "{description}"
        );
        let mut early = claims.clone();
        early["nbf"] = json!(now + 300);
        assert_eq!(refused(&header, &early, &cert.key_pem).await.2, 700_024);

        let mut elsewhere = claims.clone();
        elsewhere["aud"] = json!("https://login.microsoftonline.com/common/oauth2/v2.0/token");
        let (status, error, code, _) = refused(&header, &elsewhere, &cert.key_pem).await;
        assert_eq!(
            (status, error.as_str(), code),
            (401, "invalid_client", 50012)
        );
        let mut impostor = claims.clone();
        impostor["sub"] = json!("someone-else");
        assert_eq!(refused(&header, &impostor, &cert.key_pem).await.2, 700_021);
        let mut no_jti = claims.clone();
        no_jti.as_object_mut().unwrap().remove("jti");
        let (status, error, code, _) = refused(&header, &no_jti, &cert.key_pem).await;
        assert_eq!(
            (status, error.as_str(), code),
            (400, "invalid_request", 50027)
        );
        assert_eq!(aad(&present(&fake, "cert-app", "not.a-jwt").await).2, 50027);

        let fields = [
            ("grant_type", "client_credentials"),
            ("client_id", "cert-app"),
            ("scope", SCOPE),
            ("client_secret", "guess"),
        ];
        let reply = token_request(&fake, DEFAULT_TENANT, &fields).await;
        assert_eq!(aad(&reply).2, 7_000_215);
    });
}

#[test]
fn test_certificate_pem_pkcs1_and_pkcs12_forms() {
    let cert = test_certificate("kvrun pfx");
    assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(cert.key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(
        cert.key_pem_pkcs1
            .starts_with("-----BEGIN RSA PRIVATE KEY-----\n")
            && cert
                .key_pem_pkcs1
                .ends_with("-----END RSA PRIVATE KEY-----\n"),
        "{}",
        cert.key_pem_pkcs1
    );
    let (pkcs8, pkcs1) = (rsa_key(&cert.key_pem), rsa_key(&cert.key_pem_pkcs1));
    assert_eq!(pkcs8.public_key().as_ref(), pkcs1.public_key().as_ref());
    assert_eq!(pkcs8.public_modulus_len(), 256, "RSA 2048");
    let der = cert_der(&cert);
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(parsed.subject().to_string(), "CN=kvrun pfx");
    assert_eq!(parsed.subject(), parsed.issuer(), "self-signed");
    assert!(CertKey::from_pem("no certificate").is_err());

    let pfx = cert.pkcs12("pass word");
    let store = KeyStore::from_pkcs12(&pfx, "pass word", Pkcs12ImportPolicy::Strict).unwrap();
    let (_, chain) = store.private_key_chain().unwrap();
    assert_eq!(chain.certs().len(), 1);
    assert_eq!(chain.certs()[0].as_der(), cert_der(&cert).as_slice());
    let key_der = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
    assert_eq!(chain.key().as_der(), key_der.secret_der());
    assert!(KeyStore::from_pkcs12(&pfx, "wrong", Pkcs12ImportPolicy::Strict).is_err());
    let has = |oid: &[u8]| pfx.windows(oid.len()).any(|w| w == oid);
    let pbes2 = [6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 5, 13];
    let hmac_sha256 = [6, 8, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 2, 9];
    let aes256_cbc = [6, 9, 0x60, 0x86, 0x48, 1, 0x65, 3, 4, 1, 42];
    let sha256 = [6, 9, 0x60, 0x86, 0x48, 1, 0x65, 3, 4, 2, 1];
    assert!(has(&pbes2) && has(&hmac_sha256) && has(&aes256_cbc) && has(&sha256));
    let pbe_sha1_3des = [6, 10, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 12, 1, 3];
    assert!(!has(&pbe_sha1_3des), "no legacy encryption");
}

/// `GET {path}` to the managed identity endpoint on a new plain connection.
async fn mi_get(mi: &ManagedIdentity, path: &str, headers: &str) -> Reply {
    let mut tcp = TcpStream::connect(("127.0.0.1", mi.port())).await.unwrap();
    let host = format!("127.0.0.1:{}", mi.port());
    send(&mut tcp, "GET", &host, path, headers, "")
        .await
        .unwrap()
}

fn token_path(style: &str, resource: &str, client_id: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    let (path, version) = match style {
        "imds" => ("/metadata/identity/oauth2/token", "2018-02-01"),
        _ => ("/msi/token", "2019-08-01"),
    };
    query.append_pair("api-version", version);
    query.append_pair("resource", resource);
    if let Some(id) = client_id {
        query.append_pair("client_id", id);
    }
    format!("{path}?{}", query.finish())
}

/// `(status, error, error_description)` of an identity endpoint's error.
fn mi_error(reply: &Reply) -> (u16, String, String) {
    let body = reply.json();
    let text = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    (reply.status, text("error"), text("error_description"))
}

#[test]
fn app_service_tokens_open_the_vault() {
    let fake = FakeAzure::start();
    fake.vault("myvault").set_secret("db", "hunter2");
    let mi = fake.start_managed_identity();
    mi.add_user_assigned(USER_ASSIGNED);
    assert_eq!(mi.url(), format!("http://127.0.0.1:{}", mi.port()));
    let identity = format!("X-IDENTITY-HEADER: {}\r\n", mi.identity_header());
    assert_eq!(mi.identity_header().len(), 32);
    run(async {
        let reply = mi_get(
            &mi,
            &token_path("app", "https://vault.localhost", None),
            &identity,
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body = reply.json();
        let mut keys: Vec<_> = body.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "access_token",
                "client_id",
                "expires_on",
                "resource",
                "token_type"
            ]
        );
        let expires_on: u64 = body["expires_on"].as_str().unwrap().parse().unwrap();
        assert!(expires_on > unix_now() + 3600, "{expires_on}");
        assert_eq!(
            (&body["resource"], &body["token_type"], &body["client_id"]),
            (
                &json!("https://vault.localhost"),
                &json!("Bearer"),
                &json!(SYSTEM_ASSIGNED_CLIENT_ID)
            )
        );
        let token = body["access_token"].as_str().unwrap();
        let secret = get(&fake, &format!("/secrets/db?{API}"), Some(token)).await;
        assert_eq!(
            (secret.status, &secret.json()["value"]),
            (200, &json!("hunter2"))
        );

        // A trailing slash on the resource, a user-assigned identity.
        let path = token_path("app", "https://vault.localhost/", Some(USER_ASSIGNED));
        let body = mi_get(&mi, &path, &identity).await.json();
        assert_eq!(body["client_id"], USER_ASSIGNED);
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(
            get(&fake, &format!("/secrets/db?{API}"), Some(token))
                .await
                .status,
            200
        );

        let path = token_path("app", "https://vault.localhost", None);
        for headers in ["", "X-IDENTITY-HEADER: wrong\r\n"] {
            let reply = mi_get(&mi, &path, headers).await;
            assert_eq!(
                (reply.status, reply.json()),
                (401, json!({ "statusCode": 401, "message": "Unauthorized" }))
            );
        }
        let path = token_path("app", "https://vault.localhost", Some("nobody"));
        assert_eq!(
            mi_error(&mi_get(&mi, &path, &identity).await),
            (400, "invalid_request".into(), "Identity not found".into())
        );
        let reply = mi_get(
            &mi,
            "/msi/token?resource=https://vault.localhost",
            &identity,
        )
        .await;
        assert_eq!(
            (reply.status, &reply.json()["statusCode"]),
            (400, &json!(400))
        );
    });
    let requests = mi.requests();
    assert_eq!(requests.len(), 6);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].host.as_str()),
        ("GET", "127.0.0.1")
    );
    assert!(
        requests[0]
            .path_and_query
            .starts_with("/msi/token?api-version=2019-08-01&resource=")
    );
    assert_eq!(
        requests[0].header("x-identity-header"),
        Some(mi.identity_header().as_str())
    );
    assert_eq!(requests[2].header("X-Identity-Header"), None);
    assert!(
        fake.requests().iter().all(|r| r.host != "127.0.0.1"),
        "recorded apart"
    );
}

#[test]
fn imds_tokens_probe_and_faults() {
    let fake = FakeAzure::start();
    fake.vault("myvault").set_secret("db", "hunter2");
    let mi = fake.start_managed_identity();
    mi.add_user_assigned(USER_ASSIGNED);
    let metadata = "Metadata: true\r\n";
    run(async {
        let path = token_path("imds", "https://vault.localhost", None);
        assert_eq!(
            mi_error(&mi_get(&mi, &path, "").await),
            (
                400,
                "invalid_request".into(),
                "Required metadata header not specified".into()
            )
        );

        let reply = mi_get(&mi, &path, metadata).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body = reply.json();
        for name in [
            "access_token",
            "client_id",
            "expires_in",
            "expires_on",
            "ext_expires_in",
            "not_before",
            "resource",
            "token_type",
        ] {
            assert!(body[name].is_string(), "{name} in {body}");
        }
        let seconds = |name: &str| body[name].as_str().unwrap().parse::<u64>().unwrap();
        let (start, lifetime) = (seconds("not_before"), seconds("expires_in"));
        assert!(start <= unix_now() && seconds("expires_on") == start + lifetime);
        assert_eq!(seconds("ext_expires_in"), lifetime);
        assert_eq!(body["client_id"], SYSTEM_ASSIGNED_CLIENT_ID);
        let token = body["access_token"].as_str().unwrap();
        let secret = get(&fake, &format!("/secrets/db?{API}"), Some(token)).await;
        assert_eq!(
            (secret.status, &secret.json()["value"]),
            (200, &json!("hunter2"))
        );

        let upper = USER_ASSIGNED.to_uppercase();
        let path = token_path("imds", "https://vault.localhost", Some(&upper));
        assert_eq!(
            mi_get(&mi, &path, metadata).await.json()["client_id"],
            upper
        );
        let path = token_path("imds", "https://vault.localhost", Some("nobody"));
        assert_eq!(
            mi_error(&mi_get(&mi, &path, metadata).await),
            (400, "invalid_request".into(), "Identity not found".into())
        );
        let reply = mi_get(&mi, &format!("{path}&api-version=2019-08-01"), "").await;
        assert_eq!(reply.status, 400);

        // A token for another resource is refused by the vault.
        let path = token_path("imds", "https://management.azure.com", None);
        let body = mi_get(&mi, &path, metadata).await.json();
        let token = body["access_token"].as_str().unwrap();
        let refused = get(&fake, &format!("/secrets/db?{API}"), Some(token)).await;
        assert_eq!(refused.status, 401);

        mi.fail_next(Fault::Status(503), 1);
        let path = token_path("imds", "https://vault.localhost", None);
        let reply = mi_get(&mi, &path, metadata).await;
        assert_eq!(
            (reply.status, reply.json()["error"].as_str()),
            (503, Some("temporarily_unavailable"))
        );
        assert_eq!(mi_get(&mi, &path, metadata).await.status, 200);
    });
    let requests = mi.requests();
    assert_eq!(requests[0].header("metadata"), None);
    assert_eq!(requests[1].header("metadata"), Some("true"));
}

/// Polls `done` until it holds or 5 s have passed.
fn wait_for(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[test]
fn hang_mode_leaves_requests_unanswered_and_drop_stops_the_listener() {
    let fake = FakeAzure::start();
    let mi = fake.start_managed_identity();
    mi.set_hang(true);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nMetadata: true\r\n\r\n",
        token_path("imds", "https://vault.localhost", None)
    );
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", mi.port())).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let started = Instant::now();
    let error = tcp.read(&mut [0; 1024]).unwrap_err();
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{error:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(
        wait_for(|| mi.requests().len() == 1),
        "the hung request is recorded"
    );

    mi.set_hang(false);
    let mut answered = std::net::TcpStream::connect(("127.0.0.1", mi.port())).unwrap();
    answered
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    answered.write_all(request.as_bytes()).unwrap();
    let mut head = [0; 12];
    answered.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert_eq!(
        tcp.read(&mut [0; 1024]).unwrap_err().kind(),
        error.kind(),
        "still hung"
    );

    let port = mi.port();
    drop(mi);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
