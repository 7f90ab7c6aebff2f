//! End-to-end tests: the built `kvrun` binary against the fake Key Vault and Entra ID over real
//! TLS (a CA made at test time, trusted through `SSL_CERT_FILE` or `SSL_CERT_DIR`), challenge
//! verification on. Every kvrun runs with a cleared environment, so no proxy variable can send
//! traffic off this machine: vaults are `*.vault.localhost`, which kvrun resolves to loopback.

use std::os::unix::process::ExitStatusExt;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kvrun_fake::{
    ConnectProxy, DEFAULT_TENANT, DenyCode, FakeAzure, Fault, Options, SecretAttrs, TlsSessions,
};

use crate::common::*;

const AWKWARD: [(&str, &str); 6] = [
    ("multi-line", "line one\nline two\n"),
    ("quotes", r#"it's "quoted" `too`"#),
    ("equals", "a=b=c"),
    ("dollar", "$HOME and ${PATH} stay"),
    ("unicode", "pässwörd ✓ 秘密"),
    ("spaces", "  padded  "),
];

#[test]
fn resolves_references_from_environment_dotenv_and_manifest() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    for (name, value) in AWKWARD {
        kv.set_secret(name, value);
    }
    let pinned = kv.set_secret("pinned", "old");
    kv.set_secret("pinned", "new");
    world
        .write(
            ".env",
            &format!(
                "GREETING=hello world\nMULTI={}\nQUOTES=@Microsoft.KeyVault(SecretUri={}/)\nDSN=\"postgres://app:{{{{ {} }}}}@db/app\"\n",
                world.url("kv1", "multi-line"),
                world.url("kv1", "quotes"),
                world.url("kv1", "equals"),
            ),
        )
        .write(
            "kvrun.toml",
            &format!(
                "vault = \"{}\"\n[env]\nDOLLAR = \"dollar\"\nUNICODE = {{ secret = \"unicode\" }}\nPINNED = {{ secret = \"pinned\", version = \"{pinned}\" }}\n",
                world.fake.vault_url("kv1")
            ),
        );
    let output = run(world
        .kvrun()
        .env("INHERITED", world.url("kv1", "spaces"))
        .env("PLAIN", "https://example.com/secrets/x")
        .args(["-vv", "--", "env", "-0"]));
    let env = child_env(&output);
    assert_eq!(env["GREETING"], "hello world");
    assert_eq!(env["MULTI"], "line one\nline two\n");
    assert_eq!(env["QUOTES"], r#"it's "quoted" `too`"#);
    assert_eq!(env["DSN"], "postgres://app:a=b=c@db/app");
    assert_eq!(env["DOLLAR"], "$HOME and ${PATH} stay");
    assert_eq!(env["UNICODE"], "pässwörd ✓ 秘密");
    assert_eq!(env["PINNED"], "old");
    assert_eq!(env["INHERITED"], "  padded  ");
    assert_eq!(env["PLAIN"], "https://example.com/secrets/x");
    // kvrun's own settings pass through: the app may use them too.
    assert_eq!(env["AZURE_CLIENT_ID"], CLIENT_ID);
    // The most verbose log names every request but no value, token or client secret.
    let err = stderr(&output);
    assert!(err.contains("GET secret"), "{err}");
    // The first request's 401 is the challenge, and is logged as one, not as a failed GET.
    assert!(err.contains("challenge: the vault answered 401"), "{err}");
    assert!(!err.contains("status=401"), "{err}");
    for (_, value) in AWKWARD {
        assert!(
            !err.contains(value.trim()),
            "stderr leaks {value:?}:\n{err}"
        );
    }
    assert!(
        !err.contains(CLIENT_SECRET) && !err.contains("fake-at-"),
        "{err}"
    );
}

#[test]
fn one_secret_referenced_three_ways_is_fetched_once() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "s3cret");
    world
        .write(".env", &format!("A={}\n", world.url("kv1", "db")))
        .write(
            "kvrun.toml",
            &format!(
                "vault = \"{}\"\n[env]\nB = \"DB\"\n",
                world.fake.vault_url("kv1")
            ),
        );
    let output = run(world
        .kvrun()
        .env(
            "C",
            format!(
                "<{{{{ @Microsoft.KeyVault(SecretUri={}) }}}}>",
                world.url("KV1", "Db")
            ),
        )
        .args(["--", "env", "-0"]));
    let env = child_env(&output);
    assert_eq!((env["A"].as_str(), env["B"].as_str()), ("s3cret", "s3cret"));
    assert_eq!(env["C"], "<s3cret>");
    let authenticated: Vec<_> = world
        .vault_gets()
        .into_iter()
        .filter(|r| r.authorization.is_some())
        .collect();
    assert_eq!(authenticated.len(), 1, "{authenticated:?}");
    let tokens = world
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(tokens, 1, "one token request");
}

#[test]
fn inherited_references_can_be_left_alone() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "s3cret");
    let reference = world.url("kv1", "db");
    let output = run(world
        .kvrun()
        .env("A", &reference)
        .env("B", &reference)
        .args(["--literal", "A", "--", "env", "-0"]));
    let env = child_env(&output);
    assert_eq!(
        (env["A"].as_str(), env["B"].as_str()),
        (reference.as_str(), "s3cret")
    );

    let output = run(world
        .kvrun()
        .env("A", &reference)
        .env("KVRUN_NO_RESOLVE_ENV", "1")
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["A"], reference);
}

#[test]
fn environment_wins_over_env_files_which_win_over_the_manifest() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("from-manifest", "m");
    kv.set_secret("from-dotenv", "d");
    world
        .write(
            "kvrun.toml",
            &format!("vault = \"{}\"\n[env]\nA = \"from-manifest\"\nB = \"from-manifest\"\nC = \"from-manifest\"\n", world.fake.vault_url("kv1")),
        )
        .write(".env", &format!("B={}\nC=dotenv\n", world.url("kv1", "from-dotenv")))
        .write("second.env", "C=second\n");
    let output = run(world
        .kvrun()
        .env("KVRUN_ENV_FILE", "second.env")
        .env("D", "env")
        .args(["--", "env", "-0"]));
    let env = child_env(&output);
    assert_eq!(env["A"], "m");
    assert_eq!(env["B"], "d");
    assert_eq!(env["C"], "second");
    let output = run(world
        .kvrun()
        .env("C", "environment")
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["C"], "environment");
}

#[test]
fn optional_secret_that_does_not_exist_leaves_the_variable_unset() {
    let ran = Test::new()
        .secret("kv1", "present", "p")
        .manifest(
            "vault = \"<kv1>\"\n[env]\nP = \"present\"\nFLAG = { secret = \"absent\", optional = true }\n",
        )
        .args(["--", "env", "-0"])
        .run();
    let env = ran.success().env();
    assert_eq!(env["P"], "p");
    assert!(!env.contains_key("FLAG"));
    insta::assert_snapshot!(ran.stderr());
}

#[test]
fn every_failure_is_listed_and_nothing_leaks() {
    let test = Test::new().secret("kv1", "good", "GOOD-VALUE-must-not-print");
    test.world().fake.vault("kv1").set_secret_with(
        "off",
        "OFF-VALUE",
        SecretAttrs {
            enabled: false,
            ..SecretAttrs::default()
        },
    );
    let test = test.secret("kv2", "x", "DENIED-VALUE");
    test.world()
        .fake
        .vault("kv2")
        .deny_access(DenyCode::AccessDenied);
    let marker = test.world().dir.path().join("started");
    let ran = test
        .env_file("GOOD=<kv1>/secrets/good\nMISSING=<kv1>/secrets/missing\nOFF=<kv1>/secrets/off\nDENIED=<kv2>/secrets/x\n")
        .args(["--", "touch"])
        .args([&marker])
        .run();
    // Authorization outranks not found.
    ran.code(77);
    assert!(!marker.exists(), "the command must not start");
    insta::assert_snapshot!(ran.stderr());
    assert_no_leak(ran.output(), &["GOOD-VALUE", "OFF-VALUE", "DENIED-VALUE"]);
    // The most verbose log leaks nothing either.
    let verbose = Test::new()
        .secret("kv1", "good", "GOOD-VALUE-must-not-print")
        .env_file("GOOD=<kv1>/secrets/good\nMISSING=<kv1>/secrets/missing\n")
        .args(["-vv", "--", "true"])
        .run();
    verbose.code(66);
    assert_no_leak(verbose.output(), &["GOOD-VALUE"]);
}

#[test]
fn not_found_alone_exits_66() {
    let world = World::new();
    world.fake.vault("kv1");
    let output = run(world
        .kvrun()
        .env("X", world.url("kv1", "nope"))
        .args(["--", "true"]));
    assert_eq!(output.status.code(), Some(66), "{}", stderr(&output));
    assert_stderr!("not_found", &world, &output);
}

#[test]
fn a_challenge_for_another_domain_gets_no_token() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("db", "v");
    kv.set_challenge_resource("https://vault.azure.net");
    let output = run(world
        .kvrun()
        .env("X", world.url("kv1", "db"))
        .args(["--", "true"]));
    assert_eq!(output.status.code(), Some(76), "{}", stderr(&output));
    assert_stderr!("challenge_for_another_domain", &world, &output);
    assert!(world.vault_gets().iter().all(|r| r.authorization.is_none()));
}

#[test]
fn the_newer_challenge_style_works() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("db", "v");
    kv.set_new_style_challenge(true);
    let output = run(world
        .kvrun()
        .env("X", world.url("kv1", "db"))
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["X"], "v");
}

#[test]
fn a_redirect_is_not_followed() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("db", "v");
    kv.fail_next(Fault::RedirectTo(world.url("elsewhere", "db")), 1);
    let output = run(world
        .kvrun()
        .env("X", world.url("kv1", "db"))
        .args(["--", "true"]));
    assert_eq!(output.status.code(), Some(76), "{}", stderr(&output));
    assert_stderr!("redirect_not_followed", &world, &output);
    assert!(
        world
            .fake
            .requests()
            .iter()
            .all(|r| r.host != "elsewhere.vault.localhost")
    );
}

#[test]
fn a_named_trust_store_that_holds_nothing_fails_each_vault_without_widening_trust() {
    // SSL_CERT_FILE / SSL_CERT_DIR name the only store kvrun uses: when they hold nothing (a
    // typo), kvrun does not fall back to the public roots compiled in (only an empty *system*
    // store does; src/http/tls.rs): each vault fails with a hint, before any request.
    let test = Test::new().secret("kv1", "s", "v");
    let missing = test.world().dir.path().join("no-such-ca");
    let missing = missing.to_str().unwrap();
    let ran = test
        .env("SSL_CERT_FILE", missing)
        .env("SSL_CERT_DIR", missing)
        .env("S", "<kv1>/secrets/s")
        .args(["--", "true"])
        .run();
    ran.code(76);
    insta::assert_snapshot!(ran.stderr());
    assert!(ran.world().fake.requests().is_empty());
}

#[test]
fn an_untrusted_certificate_fails_at_once_without_a_retry_storm() {
    let stranger = FakeAzure::start();
    let kv = stranger.vault("kv1");
    let mut test = Test::new();
    for i in 0..12 {
        kv.set_secret(&format!("s{i}"), "v");
        let reference = format!("{}/secrets/s{i}", stranger.vault_url("kv1"));
        test = test.env(&format!("S{i:02}"), &reference);
    }
    let ran = test.args(["--concurrency", "3", "--", "true"]).run();
    ran.code(76);
    insta::assert_snapshot!(ran.stderr());
    // The first connection and those opened ahead of need while its handshake runs (up to the
    // vault's concurrency); none per secret, none retried.
    let connections = stranger.connections();
    assert!(
        (1..=3).contains(&connections),
        "{connections} handshakes: at most the vault's concurrency, not one per secret or retry"
    );
    assert!(stranger.requests().is_empty());
}

#[test]
fn the_ca_is_trusted_through_ssl_cert_dir_alone() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "from-dir");
    let output = run(world
        .kvrun()
        .env_remove("SSL_CERT_FILE")
        .env("SSL_CERT_DIR", &world.ca_dir)
        .env("X", world.url("kv1", "db"))
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["X"], "from-dir");
}

#[test]
fn traffic_goes_through_an_https_proxy() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "proxied");
    let proxy = ConnectProxy::start();
    let output = run(world
        .kvrun()
        .env("HTTPS_PROXY", proxy.url())
        .env("X", world.url("kv1", "db"))
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["X"], "proxied");
    let port = world.fake.port();
    let targets = proxy.targets();
    assert!(
        targets.contains(&format!("kv1.vault.localhost:{port}")),
        "{targets:?}"
    );
    assert!(
        targets.contains(&format!("login.localhost:{port}")),
        "token traffic too: {targets:?}"
    );
}

#[test]
fn a_vault_in_another_tenant_needs_the_allow_list() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("db", "cross-tenant");
    kv.set_tenant("11111111-2222-3333-4444-555555555555");
    let reference = world.url("kv1", "db");
    let output = run(world.kvrun().env("X", &reference).args(["--", "true"]));
    assert_eq!(output.status.code(), Some(67), "{}", stderr(&output));
    assert_stderr!("vault_in_another_tenant", &world, &output);

    let output = run(world
        .kvrun()
        .env("X", &reference)
        .env(
            "AZURE_ADDITIONALLY_ALLOWED_TENANTS",
            "11111111-2222-3333-4444-555555555555",
        )
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["X"], "cross-tenant");
}

#[test]
fn a_wrong_client_secret_shows_entras_reason_not_the_secret() {
    for verbose in [false, true] {
        let ran = Test::new()
            .secret("kv1", "db", "v")
            .env("AZURE_CLIENT_SECRET", "wrong-SECRET-do-not-print")
            .env("X", "<kv1>/secrets/db")
            .args(if verbose {
                &["-vv", "--", "true"][..]
            } else {
                &["--", "true"][..]
            })
            .run();
        ran.code(67);
        assert_no_leak(ran.output(), &["wrong-SECRET-do-not-print"]);
        if !verbose {
            insta::assert_snapshot!(ran.stderr());
        }
    }
}

#[test]
fn when_no_credential_works_every_link_says_why() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "v");
    let output = run(world
        .kvrun()
        .env_remove("AZURE_CLIENT_SECRET")
        .env("X", world.url("kv1", "db"))
        .args(["--", "true"]));
    assert_eq!(output.status.code(), Some(67), "{}", stderr(&output));
    assert_stderr!("no_credential_works", &world, &output);
}

#[test]
fn the_deadline_reports_what_did_not_finish() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("db", "v");
    kv.fail_next(Fault::Hang, 1);
    let output = run(world.kvrun().env("X", world.url("kv1", "db")).args([
        "--timeout",
        "300ms",
        "--",
        "true",
    ]));
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    assert_stderr!("deadline", &world, &output);
}

#[test]
fn exit_status_and_pid_pass_through() {
    let world = World::new();
    let output = run(world.kvrun().args(["--", "sh", "-c", "exit 42"]));
    assert_eq!(output.status.code(), Some(42));

    // exec: the shell has kvrun's PID.
    let child = world
        .kvrun()
        .args(["--", "sh", "-c", "echo $$"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        pid.to_string()
    );

    // A child killed by a signal is seen as killed by it: kvrun is not in between.
    let output = run(world.kvrun().args(["--", "sh", "-c", "kill -TERM $$"]));
    assert_eq!(output.status.signal(), Some(15));
}

#[test]
fn commands_that_cannot_run_exit_like_env() {
    let world = World::new();
    let output = run(world.kvrun().args(["--", "no-such-command-kvrun"]));
    assert_eq!(output.status.code(), Some(127), "{}", stderr(&output));
    world.write("not-executable", "#!/bin/sh\n");
    let output = run(world.kvrun().args(["--", "./not-executable"]));
    assert_eq!(output.status.code(), Some(126), "{}", stderr(&output));
    let output = run(world.kvrun().args(["--bogus", "--", "true"]));
    assert_eq!(output.status.code(), Some(64));
    let output = run(&mut world.kvrun());
    assert_eq!(output.status.code(), Some(64));
}

#[test]
fn no_references_means_no_network_and_no_credentials() {
    let world = World::new();
    let output = run(world
        .kvrun()
        .env_remove("AZURE_CLIENT_SECRET")
        .env("KEYVAULT_URI", "https://myvault.vault.azure.net/")
        .env("KEY_ID", "https://myvault.vault.azure.net/keys/k/1")
        .args(["--", "env", "-0"]));
    let env = child_env(&output);
    assert_eq!(env["KEYVAULT_URI"], "https://myvault.vault.azure.net/");
    assert_eq!(env["KEY_ID"], "https://myvault.vault.azure.net/keys/k/1");
    assert!(world.fake.requests().is_empty());
}

#[test]
fn malformed_input_names_its_place() {
    let world = World::new();
    world.write(".env", "OK=1\nBAD=http://kv1.vault.azure.net/secrets/x\n");
    let output = run(world.kvrun().args(["--", "true"]));
    assert_eq!(output.status.code(), Some(65));
    assert_stderr!("malformed_dotenv", &world, &output);

    let output =
        run(world
            .kvrun()
            .args(["--no-dotenv", "--env-file", "missing.env", "--", "true"]));
    assert_eq!(output.status.code(), Some(66));
    assert_stderr!("missing_env_file", &world, &output);

    world.write(
        "bad.toml",
        "[env]\nX = { secret = \"x\", optinal = true }\n",
    );
    let output = run(world
        .kvrun()
        .args(["--no-dotenv", "--manifest", "bad.toml", "--", "true"]));
    assert_eq!(output.status.code(), Some(65));
    assert_stderr!("manifest_typo", &world, &output);
}

#[test]
fn parse_prints_what_the_js_sdk_returns() {
    let world = World::new();
    let output = run(world.kvrun().args([
        "parse",
        "https://MyVault.vault.azure.net:443/secrets/db/4387e9f3d6e14c459867679a90fd0f79",
        "https://example.com:8443/secrets/x/",
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        serde_json::json!({"sourceId": "https://MyVault.vault.azure.net:443/secrets/db/4387e9f3d6e14c459867679a90fd0f79",
            "vaultUrl": "https://myvault.vault.azure.net", "name": "db", "version": "4387e9f3d6e14c459867679a90fd0f79"})
    );
    assert_eq!(lines[1]["version"], serde_json::Value::Null);
    assert_eq!(lines[1]["vaultUrl"], "https://example.com:8443");

    let output = run(world
        .kvrun()
        .args(["parse", "https://v.vault.azure.net/certificates/c"]));
    assert_eq!(output.status.code(), Some(65));
    assert_stderr!("parse_a_certificate_identifier", &world, &output);
}

// ---- Credentials: every link of the chain against loopback stand-ins ----

const WI_CLIENT: &str = "workload-client";

#[test]
fn workload_identity_sends_the_federated_token_from_the_file() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "from-wi");
    world.fake.add_client(WI_CLIENT, "federated-jwt-one");
    world.write("token", "federated-jwt-one\n");
    let output = run(world
        .kvrun()
        .env_remove("AZURE_CLIENT_SECRET")
        .env("AZURE_CLIENT_ID", WI_CLIENT)
        .env("AZURE_FEDERATED_TOKEN_FILE", world.dir.path().join("token"))
        .env("X", world.url("kv1", "db"))
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["X"], "from-wi");
    let form = world
        .fake
        .requests()
        .into_iter()
        .find_map(|r| r.form)
        .unwrap();
    assert!(
        form.contains(&("client_assertion".into(), "federated-jwt-one".into())),
        "{form:?}"
    );
    assert!(form.contains(&(
        "client_assertion_type".into(),
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into()
    )));
}

#[test]
fn workload_identity_rereads_a_rotated_token_file() {
    // One long-lived process: a refreshed token must carry the file's new content.
    use kvrun::vault::credential::{Config, Credentials, Kind};
    let fake = FakeAzure::start();
    fake.add_client(WI_CLIENT, "jwt-before-rotation");
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, fake.ca_pem()).unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "jwt-before-rotation").unwrap();
    // The trust store honours SSL_CERT_FILE from the environment it is loaded in; loading it
    // in a child process would be heavier: instead trust the CA alone.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::pem::PemObject::from_pem_slice(fake.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let http = kvrun::http::Client::new(kvrun::http::Settings {
        tls: rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
        proxy: kvrun::http::Proxy::default(),
        per_origin: 1,
    });
    let config = Config {
        tenant_id: Some(DEFAULT_TENANT.to_owned()),
        client_id: Some(WI_CLIENT.to_owned()),
        federated_token_file: Some(file.display().to_string()),
        authority_host: Some(fake.authority_host()),
        ..Config::default()
    };
    let credentials = Credentials::new(&config, &[], http, Some(Kind::WorkloadIdentity));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scope = "https://vault.localhost/.default";
    let first = runtime
        .block_on(credentials.token(DEFAULT_TENANT, scope, deadline()))
        .unwrap();
    std::fs::write(&file, "jwt-after-rotation").unwrap();
    fake.add_client(WI_CLIENT, "jwt-after-rotation");
    credentials.invalidate(DEFAULT_TENANT, scope, &first);
    runtime
        .block_on(credentials.token(DEFAULT_TENANT, scope, deadline()))
        .unwrap();
    let assertions: Vec<String> = fake
        .requests()
        .into_iter()
        .filter_map(|r| r.form)
        .filter_map(|form| {
            form.into_iter()
                .find(|(k, _)| k == "client_assertion")
                .map(|(_, v)| v)
        })
        .collect();
    assert_eq!(assertions, ["jwt-before-rotation", "jwt-after-rotation"]);
}

/// A deadline for a token request that a test makes directly.
fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(20)
}

#[test]
fn app_service_managed_identity() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "from-app-service");
    let identity = world.fake.start_managed_identity();
    let output = run(world
        .kvrun()
        .env_remove("AZURE_CLIENT_SECRET")
        .env_remove("AZURE_CLIENT_ID")
        .env("IDENTITY_ENDPOINT", format!("{}/msi/token", identity.url()))
        .env("IDENTITY_HEADER", identity.identity_header())
        .env("X", world.url("kv1", "db"))
        .args(["-v", "--", "env", "-0"]));
    assert_eq!(child_env(&output)["X"], "from-app-service");
    assert!(
        stderr(&output).contains("credential=\"managed-identity\""),
        "{}",
        stderr(&output)
    );
    assert!(
        !stderr(&output).contains(&identity.identity_header()),
        "the header is a secret"
    );
}

#[test]
fn imds_through_the_pod_identity_override_with_a_user_assigned_identity() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "from-imds");
    let identity = world.fake.start_managed_identity();
    identity.add_user_assigned("user-assigned-1");
    let output = run(world
        .kvrun()
        .env_remove("AZURE_CLIENT_SECRET")
        .env("AZURE_CLIENT_ID", "user-assigned-1")
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", identity.url())
        .env("X", world.url("kv1", "db"))
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["X"], "from-imds");
    let requests = identity.requests();
    assert!(
        requests.len() >= 2,
        "a probe, then the token request: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.path_and_query.contains("client_id=user-assigned-1"))
    );
}

#[test]
fn a_hanging_imds_costs_at_most_300ms_before_az_runs() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "from-az");
    let token = world
        .fake
        .issue_token(DEFAULT_TENANT, "https://vault.localhost/.default");
    stand_in(
        &world.bin.join("az"),
        &format!(r#"{{"accessToken":"{token}","expires_on":4102444800,"tokenType":"Bearer"}}"#),
        "",
        0,
    );
    let identity = world.fake.start_managed_identity();
    identity.set_hang(true);
    let started = std::time::SystemTime::now();
    let output = run(world
        .kvrun()
        .env_remove("AZURE_CLIENT_SECRET")
        .env_remove("AZURE_TENANT_ID")
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", identity.url())
        .env("X", world.url("kv1", "db"))
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["X"], "from-az");
    let az_started: u128 = std::fs::read_to_string(world.bin.join("az.started"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let t0 = started
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let waited = Duration::from_nanos(u64::try_from(az_started - t0).unwrap());
    assert!(
        waited <= Duration::from_millis(300),
        "az started {waited:?} after kvrun"
    );
    let args = std::fs::read_to_string(world.bin.join("az.log")).unwrap();
    assert!(
        args.contains(&format!(
            "--scope https://vault.localhost/.default --tenant {DEFAULT_TENANT}"
        )),
        "{args}"
    );
}

#[test]
fn azd_is_the_last_link_and_credential_pins_one() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "from-azd");
    let token = world
        .fake
        .issue_token(DEFAULT_TENANT, "https://vault.localhost/.default");
    stand_in(
        &world.bin.join("azd"),
        &format!(r#"{{"token":"{token}","expiresOn":"2099-01-01T00:00:00Z"}}"#),
        "",
        0,
    );
    // The service principal is configured, but --credential azd skips it.
    let output = run(world.kvrun().env("X", world.url("kv1", "db")).args([
        "--credential",
        "azd",
        "-v",
        "--",
        "env",
        "-0",
    ]));
    assert_eq!(child_env(&output)["X"], "from-azd");
    assert!(
        stderr(&output).contains("credential=\"azd\""),
        "{}",
        stderr(&output)
    );
    assert!(
        world.fake.requests().iter().all(|r| r.method != "POST"),
        "no client-secret token request"
    );
    let args = std::fs::read_to_string(world.bin.join("azd.log")).unwrap();
    assert!(
        args.contains(
            "auth token -o json --no-prompt --scope https://vault.localhost/.default --tenant-id"
        ),
        "{args}"
    );
    assert!(
        !world.bin.join("az.log").exists(),
        "az is not tried when azd is pinned"
    );
}

#[test]
fn a_refused_service_principal_stops_the_chain() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "v");
    let output = run(world
        .kvrun()
        .env("AZURE_CLIENT_SECRET", "wrong")
        .env("X", world.url("kv1", "db"))
        .args(["--", "true"]));
    assert_eq!(output.status.code(), Some(67), "{}", stderr(&output));
    assert!(
        !world.bin.join("az.log").exists(),
        "no fall-through to az after a refusal"
    );
}

#[test]
fn hide_credentials_keeps_kvrun_secrets_from_the_child() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "v");
    let output = run(world.kvrun().env("X", world.url("kv1", "db")).args([
        "--hide-credentials",
        "--",
        "env",
        "-0",
    ]));
    let env = child_env(&output);
    assert_eq!(env["X"], "v");
    assert!(!env.contains_key("AZURE_CLIENT_SECRET"));
    assert_eq!(
        env["AZURE_CLIENT_ID"], CLIENT_ID,
        "identifiers are not secrets"
    );
}

#[test]
fn a_client_certificate_signs_its_own_assertion_in_every_format() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "from-certificate");
    let certificate = kvrun_fake::test_certificate("kvrun-test");
    world
        .fake
        .add_certificate_client("cert-client", &certificate.cert_pem);
    let pkcs12 = world.dir.path().join("client.p12");
    std::fs::write(&pkcs12, certificate.pkcs12("p12-PASSWORD-never-print")).unwrap();
    world
        .write(
            "pkcs8.pem",
            &format!("{}{}", certificate.cert_pem, certificate.key_pem),
        )
        .write(
            "pkcs1.pem",
            &format!("{}{}", certificate.key_pem_pkcs1, certificate.cert_pem),
        );
    for (file, password) in [
        ("pkcs8.pem", None),
        ("pkcs1.pem", None),
        ("client.p12", Some("p12-PASSWORD-never-print")),
    ] {
        let mut command = world.kvrun();
        command
            .env_remove("AZURE_CLIENT_SECRET")
            .env("AZURE_CLIENT_ID", "cert-client")
            .env("AZURE_CLIENT_CERTIFICATE_PATH", world.dir.path().join(file))
            .env("X", world.url("kv1", "db"))
            .args(["-vv", "--", "env", "-0"]);
        if let Some(password) = password {
            command.env("AZURE_CLIENT_CERTIFICATE_PASSWORD", password);
        }
        let output = run(&mut command);
        assert_eq!(child_env(&output)["X"], "from-certificate", "{file}");
        assert!(
            !stderr(&output).contains("p12-PASSWORD"),
            "{}",
            stderr(&output)
        );
    }
    // Nothing but a signed assertion went to Entra: no secret, no key.
    for form in world.fake.requests().into_iter().filter_map(|r| r.form) {
        assert!(form.iter().all(|(k, _)| k != "client_secret"), "{form:?}");
    }
}

#[test]
fn a_wrong_pkcs12_password_is_an_authentication_error_that_stops_the_chain() {
    let world = World::new();
    let certificate = kvrun_fake::test_certificate("kvrun-test");
    std::fs::write(
        world.dir.path().join("client.p12"),
        certificate.pkcs12("right"),
    )
    .unwrap();
    world.fake.vault("kv1").set_secret("db", "v");
    let output = run(world
        .kvrun()
        .env_remove("AZURE_CLIENT_SECRET")
        .env(
            "AZURE_CLIENT_CERTIFICATE_PATH",
            world.dir.path().join("client.p12"),
        )
        .env("AZURE_CLIENT_CERTIFICATE_PASSWORD", "wrong-guess")
        .env("X", world.url("kv1", "db"))
        .args(["--", "true"]));
    assert_eq!(output.status.code(), Some(67), "{}", stderr(&output));
    assert_stderr!("wrong_pkcs12_password", &world, &output);
    assert!(!stderr(&output).contains("wrong-guess"));
    assert!(!world.bin.join("az.log").exists());
}

#[test]
fn a_metadata_service_that_is_not_imds_does_not_stop_the_chain() {
    // AWS's IMDSv2 answers 401 on the same address: not Azure's, so az is tried next.
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "from-az");
    let token = world
        .fake
        .issue_token(DEFAULT_TENANT, "https://vault.localhost/.default");
    stand_in(
        &world.bin.join("az"),
        &format!(r#"{{"accessToken":"{token}"}}"#),
        "",
        0,
    );
    let identity = world.fake.start_managed_identity();
    identity.fail_next(Fault::Status(401), 1);
    let output = run(world
        .kvrun()
        .env_remove("AZURE_CLIENT_SECRET")
        .env_remove("AZURE_TENANT_ID")
        .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", identity.url())
        .env("X", world.url("kv1", "db"))
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["X"], "from-az");
    assert_eq!(identity.requests().len(), 1, "the probe only");
}

#[test]
fn half_a_service_principal_is_an_error_not_a_fall_through() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "v");
    let output = run(world
        .kvrun()
        .env_remove("AZURE_TENANT_ID")
        .env("X", world.url("kv1", "db"))
        .args(["--", "true"]));
    assert_eq!(output.status.code(), Some(67), "{}", stderr(&output));
    assert_stderr!("half_a_service_principal", &world, &output);
    assert!(!world.bin.join("az.log").exists());
}

// ---- Reliability ----

#[test]
fn transient_failures_are_retried_until_the_vault_answers() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("db", "after-retries");
    kv.fail_next(Fault::Status(503), 2);
    let output = run(world
        .kvrun()
        .env("X", world.url("kv1", "db"))
        .args(["-v", "--", "env", "-0"]));
    assert_eq!(child_env(&output)["X"], "after-retries");
    assert_eq!(
        stderr(&output).matches("retrying").count(),
        2,
        "{}",
        stderr(&output)
    );
}

#[test]
fn throttling_waits_at_least_as_long_as_the_vault_asks() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("db", "after-429");
    kv.fail_next(Fault::Status(429), 1); // answers with Retry-After: 1
    let output = run(world
        .kvrun()
        .env("X", world.url("kv1", "db"))
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["X"], "after-429");
    // The fake saw the throttled request and the next one at least a second apart.
    let gets = world.vault_gets();
    let gap = gets[1].received.duration_since(gets[0].received);
    assert!(
        gap >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured: {gap:?}"
    );
}

#[test]
fn what_cannot_succeed_is_not_retried() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("x", "v");
    kv.deny_access(DenyCode::ForbiddenByRbac);
    let output = run(world
        .kvrun()
        .env("NOPE", world.url("kv1", "missing"))
        .env("DENIED", world.url("kv1", "x"))
        .args(["-v", "--", "true"]));
    assert_eq!(output.status.code(), Some(77), "{}", stderr(&output));
    assert!(!stderr(&output).contains("retrying"), "{}", stderr(&output));
    let authenticated = world
        .vault_gets()
        .into_iter()
        .filter(|r| r.authorization.is_some())
        .count();
    assert_eq!(authenticated, 2, "one GET per secret");
}

#[test]
fn a_vault_that_keeps_failing_is_given_up_on_with_the_count() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("db", "v");
    kv.fail_next(Fault::Status(500), 100);
    let output = run(world.kvrun().env("X", world.url("kv1", "db")).args([
        "--timeout",
        "30s",
        "--",
        "true",
    ]));
    // Six attempts with backoff take at most 6.2 s of waiting: well inside the deadline, so the
    // count, not the deadline, ends them.
    assert_eq!(output.status.code(), Some(75), "{}", stderr(&output));
    assert_stderr!("a_vault_that_keeps_failing", &world, &output);
}

#[test]
fn the_vault_allow_list_refuses_before_anything_is_fetched() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "ok");
    world.fake.vault("evil").set_secret("db", "stolen?");
    let env_refs = |command: &mut Command| {
        command
            .env("GOOD", world.url("kv1", "db"))
            .env("BAD", world.url("evil", "db"));
    };
    let mut command = world.kvrun();
    env_refs(&mut command);
    // The fake listens on a random port: an entry without a port would mean 443.
    let port = world.fake.port();
    let output = run(command.args([
        "--allow-vault",
        &format!("kv1.vault.localhost:{port}"),
        "--",
        "true",
    ]));
    assert_eq!(output.status.code(), Some(77), "{}", stderr(&output));
    assert_stderr!("not_in_allow_vault", &world, &output);
    assert!(world.fake.requests().is_empty(), "nothing is contacted");

    // The manifest's list cannot be widened from the environment: a vault must be on both.
    world.write(
        "kvrun.toml",
        &format!("allowed_vaults = [\"{}\"]\n", world.fake.vault_url("kv1")),
    );
    let mut command = world.kvrun();
    env_refs(&mut command);
    let output = run(command
        .env(
            "KVRUN_ALLOW_VAULT",
            format!("kv1.vault.localhost:{port},evil.vault.localhost:{port}"),
        )
        .args(["--", "true"]));
    assert_eq!(output.status.code(), Some(77), "{}", stderr(&output));
    assert_stderr!("not_in_the_manifests_allowed_vaults", &world, &output);

    let output = run(world
        .kvrun()
        .env("GOOD", world.url("kv1", "db"))
        .args(["--", "env", "-0"]));
    assert_eq!(child_env(&output)["GOOD"], "ok");
}

#[test]
fn nothing_secret_appears_at_trace_level_on_any_path() {
    // KVRUN_LOG=trace opens every crate's logging: HTTP, TLS, the Azure SDK.
    const VALUE: &str = "VALUE-never-print-41d9";
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("good", VALUE);
    kv.set_secret_with(
        "off",
        VALUE,
        SecretAttrs {
            enabled: false,
            exp: Some(1),
            ..SecretAttrs::default()
        },
    );
    let flaky = world.fake.vault("flaky");
    flaky.set_secret("x", VALUE);
    flaky.fail_next(Fault::Status(503), 1);
    let denied = world.fake.vault("denied");
    denied.set_secret("x", VALUE);
    denied.deny_access(DenyCode::ForbiddenByRbac);
    let hostile = world.fake.vault("hostile");
    hostile.set_secret("x", VALUE);
    hostile.set_challenge_resource("https://vault.azure.net");
    let identity = world.fake.start_managed_identity();
    let cases: Vec<Vec<(&str, String)>> = vec![
        // Success, retry, and every failure class in one run.
        vec![
            ("GOOD", world.url("kv1", "good")),
            ("OFF", world.url("kv1", "off")),
            ("MISSING", world.url("kv1", "missing")),
            ("FLAKY", world.url("flaky", "x")),
            ("DENIED", world.url("denied", "x")),
            ("HOSTILE", world.url("hostile", "x")),
        ],
        // A refused client secret.
        vec![
            ("GOOD", world.url("kv1", "good")),
            ("AZURE_CLIENT_SECRET", "wrong-SECRET-77".into()),
        ],
        // A managed identity, whose header is a secret.
        vec![
            ("GOOD", world.url("kv1", "good")),
            ("AZURE_CLIENT_SECRET", String::new()),
            ("IDENTITY_ENDPOINT", format!("{}/msi/token", identity.url())),
            ("IDENTITY_HEADER", identity.identity_header()),
        ],
    ];
    for vars in cases {
        let mut command = world.kvrun();
        command.env("KVRUN_LOG", "trace");
        for (k, v) in &vars {
            command.env(k, v);
        }
        let output = run(command.args(["-vv", "--", "true"]));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            stderr(&output)
        );
        assert!(all.contains("TRACE"), "trace logging is on:\n{all}");
        for secret in [
            VALUE,
            CLIENT_SECRET,
            "wrong-SECRET-77",
            "fake-at-",
            &identity.identity_header(),
        ] {
            assert!(!all.contains(secret), "{secret:?} leaked in:\n{all}");
        }
    }
}

#[test]
fn values_an_environment_cannot_hold_are_refused_by_name() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("nul", "a\u{0}b");
    kv.set_secret("expired", "still-served");
    kv.set_secret_with(
        "late",
        "x",
        SecretAttrs {
            exp: Some(1),
            ..SecretAttrs::default()
        },
    );
    let output = run(world
        .kvrun()
        .env("N", world.url("kv1", "nul"))
        .args(["--", "true"]));
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert_stderr!("a_nul_byte_in_a_value", &world, &output);

    kv.set_secret("big", &"x".repeat(130 * 1024));
    let output = run(world
        .kvrun()
        .env("B", world.url("kv1", "big"))
        .args(["--", "true"]));
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert_stderr!("a_value_too_large_for_the_environment", &world, &output);

    let output = run(world
        .kvrun()
        .env("L", world.url("kv1", "late"))
        .args(["--", "env", "-0"]));
    assert_eq!(
        child_env(&output)["L"],
        "x",
        "an expired secret is still used"
    );
    assert_stderr!("an_expired_secret_is_used_with_a_warning", &world, &output);
}

#[test]
fn hostile_or_broken_answers_fail_cleanly_and_quickly() {
    let world = World::new();
    let cases = [
        (Fault::NoValue, 76, "200 OK without a value"),
        (Fault::Huge(1024 * 1024), 76, "larger than 256 KiB"),
        (Fault::Truncated, 75, "broke off"),
        (Fault::NotJson, 76, "not a secret bundle"),
        (Fault::Close, 75, "could not reach the vault"),
        (
            Fault::RedirectTo("http://kv1.vault.localhost/secrets/db".into()),
            76,
            "redirect",
        ),
    ];
    for (i, (fault, code, needle)) in cases.into_iter().enumerate() {
        // A vault per case: faults queue per vault.
        let vault = format!("hostile{i}");
        let kv = world.fake.vault(&vault);
        kv.set_secret("db", "v");
        // Past the challenge, every authenticated GET gets the fault (retries included).
        kv.fail_next(Fault::Status(401), 1);
        kv.fail_next(fault.clone(), 20);
        let output = run(world.kvrun().env("X", world.url(&vault, "db")).args([
            "--timeout",
            "20s",
            "--",
            "true",
        ]));
        assert_eq!(
            output.status.code(),
            Some(code),
            "{fault:?}: {}",
            stderr(&output)
        );
        let text = stable_stderr(&world, &output);
        assert!(text.contains(needle), "{fault:?}: {text}");
        // How a broken connection reads depends on the protocol: hyper's h1 and h2 errors.
        let protocol = match fault {
            Fault::Truncated | Fault::Close if kvrun_fake::http1_only_by_default() => "_http1",
            _ => "",
        };
        insta::assert_snapshot!(
            format!("hostile_answer_{i}{protocol}"),
            text,
            &format!("{fault:?}")
        );
        // Given up on at once, not retried until the deadline.
        assert!(
            !stderr(&output).contains("timed out"),
            "{fault:?}: {}",
            stderr(&output)
        );
        assert!(world.fake.requests().iter().all(|r| r.method != "GET"
            || r.host != "kv1.vault.localhost"
            || !r.path_and_query.starts_with("http")));
    }
}

#[test]
fn an_expired_server_certificate_is_refused_without_retries() {
    let world = World::with(FakeAzure::start_with(kvrun_fake::Options {
        expired_certificate: true,
        ..kvrun_fake::Options::default()
    }));
    world.fake.vault("kv1").set_secret("db", "v");
    let output = run(world
        .kvrun()
        .env("X", world.url("kv1", "db"))
        .args(["--", "true"]));
    assert_eq!(output.status.code(), Some(76), "{}", stderr(&output));
    assert_stderr!("an_expired_server_certificate", &world, &output);
    // One connection to the vault, plus the speculative token request's to the same server if it
    // got that far before kvrun gave up; no retries, and no request got through.
    assert!(
        (1..=2).contains(&world.fake.connections()),
        "{}",
        world.fake.connections()
    );
    assert!(world.fake.requests().is_empty());
}

#[test]
fn a_signal_while_resolving_starts_nothing_and_exits_128_plus_n() {
    use nix::sys::signal::Signal;
    for (signal, code) in [(Signal::SIGTERM, 143), (Signal::SIGINT, 130)] {
        let world = World::new();
        let kv = world.fake.vault("kv1");
        kv.set_secret("db", "v");
        kv.fail_next(Fault::Hang, 1);
        let marker = world.dir.path().join("started");
        let mut child = world
            .kvrun()
            .env("X", world.url("kv1", "db"))
            .args(["--", "touch"])
            .arg(&marker)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        assert!(
            world
                .fake
                .wait_for_requests(Duration::from_secs(20), |requests| {
                    requests
                        .iter()
                        .any(|r| r.method == "GET" && r.host.ends_with(".vault.localhost"))
                }),
            "kvrun's first request to the vault"
        );
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(code), "{signal}");
        assert!(!marker.exists(), "{signal}: the command must not start");
    }
}

/// The benchmark's case: 50 secrets over two vaults, each a `S{i}` variable; runs `env -0`
/// with `args` and checks every value arrived.
fn fifty_over_two_vaults(world: &World, args: &[&str]) {
    let mut command = world.kvrun();
    for i in 0..50 {
        let vault = if i % 2 == 0 { "kv1" } else { "kv2" };
        world
            .fake
            .vault(vault)
            .set_secret(&format!("s{i}"), &format!("value-{i}"));
        command.env(format!("S{i}"), world.url(vault, &format!("s{i}")));
    }
    let output = run(command.args(args).args(["--", "env", "-0"]));
    let env = child_env(&output);
    for i in 0..50 {
        assert_eq!(env[&format!("S{i}")], format!("value-{i}"));
    }
}

#[test]
fn fifty_secrets_over_two_vaults_take_one_h2_connection_per_vault_and_one_to_entra() {
    let world = World::with(FakeAzure::start_with(Options {
        http1_only: false,
        ..Options::default()
    }));
    fifty_over_two_vaults(&world, &[]);
    assert_eq!(world.fake.tls_sessions(), TlsSessions { h2: 3, http1: 0 });
    assert_eq!(world.fake.connections(), 3);
    let mut streams = world.fake.streams_per_connection();
    streams.sort_unstable();
    assert_eq!(
        streams,
        [1, 26, 26],
        "the token request; a challenge and 25 GETs per vault"
    );
}

#[test]
fn an_http1_only_server_gets_concurrency_connections_per_vault_and_no_more() {
    let world = World::with(FakeAzure::start_with(Options {
        http1_only: true,
        ..Options::default()
    }));
    fifty_over_two_vaults(&world, &["--concurrency", "8"]);
    assert_eq!(
        world.fake.tls_sessions(),
        TlsSessions {
            h2: 0,
            http1: 8 + 8 + 1
        },
        "--concurrency per vault, opened once the first connection said http/1.1; one to Entra"
    );
}

#[test]
fn an_http1_only_server_gets_one_connection_per_request_in_flight_not_the_whole_concurrency() {
    // 25 secrets per vault under the default --concurrency of 32: the 24 connections opened
    // while the challenge is in flight serve the GETs; none opens a 26th meanwhile. The answers
    // take as long as a connection does (without a response delay, the first connection would
    // serve all 25 GETs one after another before the others had finished connecting).
    let world = World::with(FakeAzure::start_with(Options {
        http1_only: true,
        connect_delay: Duration::from_millis(20),
        response_delay: Duration::from_millis(20),
        ..Options::default()
    }));
    fifty_over_two_vaults(&world, &[]);
    assert_eq!(
        world.fake.tls_sessions(),
        TlsSessions {
            h2: 0,
            http1: 25 + 25 + 1
        }
    );
}

#[test]
fn the_stream_limit_of_the_server_opens_a_second_h2_connection() {
    let world = World::with(FakeAzure::start_with(Options {
        http1_only: false,
        max_concurrent_streams: Some(5),
        response_delay: Duration::from_millis(20),
        ..Options::default()
    }));
    fifty_over_two_vaults(&world, &[]);
    let sessions = world.fake.tls_sessions();
    assert_eq!(sessions.http1, 0);
    // One connection per vault serves 5 streams at a time; more requests waited, so each vault
    // got a second connection at least, but never one per request.
    assert!((5..=15).contains(&sessions.h2), "{sessions:?}");
    assert!(
        world.fake.streams_per_connection().iter().all(|&n| n >= 1),
        "no connection opened in vain: {:?}",
        world.fake.streams_per_connection()
    );
}

#[test]
fn a_managed_identity_endpoint_that_is_refused_or_silent_is_named() {
    // Not loopback or link-local: refused before anything is sent (the header is a secret).
    let refused = Test::new()
        .secret("kv1", "db", "v")
        .env("IDENTITY_ENDPOINT", "http://example.com/msi/token")
        .env("IDENTITY_HEADER", "header-NEVER-PRINT")
        .env("X", "<kv1>/secrets/db")
        .args(["--credential", "managed-identity", "--", "true"])
        .run();
    refused.code(67);
    insta::assert_snapshot!("managed_identity_endpoint_refused", refused.stderr());
    assert_no_leak(refused.output(), &["header-NEVER-PRINT"]);
    // On loopback but nothing listens: the endpoint did not answer, tried again with backoff
    // (six attempts take at most 6.2 s of waiting, well inside the deadline).
    let silent = Test::new()
        .secret("kv1", "db", "v")
        .env("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token")
        .env("IDENTITY_HEADER", "header-NEVER-PRINT")
        .env("X", "<kv1>/secrets/db")
        .args([
            "--credential",
            "managed-identity",
            "--timeout",
            "30s",
            "--",
            "true",
        ])
        .run();
    silent.code(75);
    insta::assert_snapshot!("managed_identity_endpoint_silent", silent.stderr());
    assert_no_leak(silent.output(), &["header-NEVER-PRINT"]);
}
