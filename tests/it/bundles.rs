//! One secret, many settings: a field of a JSON secret (`?field=`, the manifest's `field`), from
//! every source, fetched once however many fields are used.

use crate::common::*;

const DB: &str = r#"{
    "username": "u-SECRET-7",
    "password": "pw-SECRET-9",
    "port": 5432,
    "opts": { "ssl": true, "n": 1e3 },
    "nothing": null
}"#;

#[test]
fn fields_of_one_json_secret_from_every_source_cost_one_get() {
    let ran = Test::new()
        .secret("kv1", "db", DB)
        .env_file(concat!(
            "USER=<kv1>/secrets/db?field=username\n",
            "DSN=\"postgres://{{ <kv1>/secrets/db?field=username }}:{{ <kv1>/secrets/db?field=password }}@db:{{ <kv1>/secrets/db?field=port }}/app\"\n",
        ))
        .manifest(concat!(
            "vault = \"<kv1>\"\n[env]\n",
            "OPTS = { secret = \"db\", field = \"/opts\" }\n",
            "SSL = \"<kv1>/secrets/db?field=%2Fopts%2Fssl\"\n",
            "NOTHING = { secret = \"db\", field = \"nothing\", optional = true }\n",
        ))
        .env("PASSWORD", "<kv1>/secrets/db?field=password")
        .args(["-vv", "--", "env", "-0"])
        .run();
    let env = ran.success().env();
    assert_eq!(env["USER"], "u-SECRET-7");
    assert_eq!(env["PASSWORD"], "pw-SECRET-9");
    assert_eq!(env["DSN"], "postgres://u-SECRET-7:pw-SECRET-9@db:5432/app");
    assert_eq!(env["OPTS"], r#"{"ssl":true,"n":1e3}"#);
    assert_eq!(env["SSL"], "true");
    assert!(
        !env.contains_key("NOTHING"),
        "an optional null field leaves it unset"
    );
    // The secret is fetched once: one authenticated GET, whatever the fields.
    let gets = ran.world().vault_gets();
    assert_eq!(
        gets.iter().filter(|r| r.authorization.is_some()).count(),
        1,
        "{gets:?}"
    );
    // The most verbose log names the field, never a value (stdout is the child's `env -0`).
    for value in ["u-SECRET-7", "pw-SECRET-9"] {
        assert!(!ran.stderr().contains(value), "stderr leaks {value}");
    }
    assert!(
        ran.stderr().contains(
            "kvrun.toml:5: optional field 'nothing' of https://kv1.vault.localhost:[PORT]/secrets/db for NOTHING not used: field 'nothing' of the secret's JSON value is null"
        ),
        "{}",
        ran.stderr()
    );

    // `kvrun check` shows the field of each variable, never its value.
    let check = run(ran.world().kvrun().args(["check", "--json"]));
    assert!(check.status.success(), "{}", stderr(&check));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&check.stdout).unwrap();
    let field_of = |variable: &str| {
        rows.iter()
            .filter(|row| row["variable"] == variable)
            .map(|row| row["field"].as_str().unwrap_or("-").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(field_of("USER"), ["username"]);
    assert_eq!(field_of("DSN"), ["username", "password", "port"]);
    assert_eq!(field_of("OPTS"), ["/opts"]);
    assert_eq!(field_of("NOTHING"), ["nothing"]);
    let nothing = rows
        .iter()
        .find(|row| row["variable"] == "NOTHING")
        .unwrap();
    assert_eq!(nothing["status"], "optional, not found");
    assert_no_leak(&check, &["u-SECRET-7", "pw-SECRET-9"]);
}

#[test]
fn a_missing_field_a_null_one_and_a_secret_that_is_not_json_fail_by_name() {
    let ran = Test::new()
        .secret("kv1", "db", DB)
        .secret("kv1", "plain", "not-json-SECRET-3")
        .env("ABSENT", "<kv1>/secrets/db?field=absent")
        .env("NULL", "<kv1>/secrets/db?field=/nothing")
        .env("PLAIN", "<kv1>/secrets/plain?field=username")
        .env("DSN", "x://{{ <kv1>/secrets/db?field=user }}@h")
        .args(["--", "true"])
        .run();
    // A value that is not JSON is bad input (65), which outranks not found (66).
    ran.code(65);
    insta::assert_snapshot!(ran.stderr());
    assert_no_leak(
        ran.output(),
        &["u-SECRET-7", "pw-SECRET-9", "not-json-SECRET-3"],
    );
}

#[test]
fn app_service_references_take_no_field() {
    let ran = Test::new()
        .env(
            "X",
            "@Microsoft.KeyVault(SecretUri=<kv1>/secrets/db?field=username)",
        )
        .args(["--", "true"])
        .run();
    ran.code(65);
    insta::assert_snapshot!(ran.stderr());
}

const SETTINGS: &str = r#"{
    "db": { "host": "db.internal", "user": "app-SECRET-1", "replicas": ["r1", "r2"] },
    "log.level": "debug",
    "port": 8080,
    "HOME": "/bundle-home",
    "unset": null
}"#;

const DOTENV_BUNDLE: &str = "# pasted from .env\nAPI_KEY=<kv1>/secrets/api-key\nport=9090\nGREETING=\"hello # world\"\nDB_URL=\"pg://{{ <kv1>/secrets/db?field=password }}@h\"\n";

#[test]
fn bundles_from_the_manifest_and_kvrun_env_from_are_one_get_each() {
    let test = Test::new();
    let dotenv_bundle = test.world().fake.vault_url("kv1");
    let test = test
        .secret("kv1", "settings", SETTINGS)
        .secret(
            "kv1",
            "app-env",
            &DOTENV_BUNDLE.replace("<kv1>", &dotenv_bundle),
        )
        .secret("kv1", "extra", r#"{"EXTRA":"x-SECRET-4","port":"7070"}"#)
        .secret("kv1", "api-key", "key-SECRET-5")
        .secret("kv1", "db", DB);
    let ran = test
        .manifest(concat!(
            "vault = \"<kv1>\"\n",
            "[[env_from]]\nsecret = \"settings\"\nprefix = \"APP_\"\n",
            "[[env_from]]\nsecret = \"app-env\"\nformat = \"dotenv\"\n",
            "[env]\nAPP_port = { value = \"from-manifest\" }\n",
        ))
        .env_file("GREETING=from-dotenv\n")
        .env("HOME", "/home/app")
        .env("KVRUN_ENV_FROM", "settings,<kv1>/secrets/extra")
        .args(["-vv", "--", "env", "-0"])
        .run();
    let env = ran.success().env();
    // JSON: flattened with __, names by the generated-name rule, null left out.
    assert_eq!(env["APP_db__host"], "db.internal");
    assert_eq!(env["APP_db__user"], "app-SECRET-1");
    assert_eq!(env["APP_db__replicas__1"], "r2");
    assert_eq!(env["APP_log_level"], "debug");
    assert!(!env.contains_key("APP_unset"));
    // An explicitly named variable wins over any bundle's: the manifest's, a .env file's, the
    // environment's (HOME from the unprefixed `settings`).
    assert_eq!(env["APP_port"], "from-manifest");
    assert_eq!(env["GREETING"], "from-dotenv");
    assert_eq!(env["HOME"], "/home/app");
    assert_eq!(env["db__host"], "db.internal");
    // dotenv: its references resolved, one level deep.
    assert_eq!(env["API_KEY"], "key-SECRET-5");
    assert_eq!(env["DB_URL"], "pg://pw-SECRET-9@h");
    // Of two bundles the later declared wins: the manifest's, then KVRUN_ENV_FROM's in order,
    // so `extra` over `app-env`.
    assert_eq!(env["EXTRA"], "x-SECRET-4");
    assert_eq!(env["port"], "7070");
    // One GET per secret: four bundles' secrets (settings twice is one) and two references.
    let gets = ran.world().vault_gets();
    let mut fetched: Vec<&str> = gets
        .iter()
        .filter(|r| r.authorization.is_some())
        .map(|r| r.path_and_query.split('?').next().unwrap_or_default())
        .collect();
    fetched.sort_unstable();
    assert_eq!(
        fetched,
        [
            "/secrets/api-key/",
            "/secrets/app-env/",
            "/secrets/db/",
            "/secrets/extra/",
            "/secrets/settings/"
        ]
    );
    // The shadowing is named, never a value.
    let stderr = ran.stderr();
    assert!(
        stderr.contains(
            "env_from settings (--env-from): HOME is set at environment, which wins over the bundle"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("env_from settings (kvrun.toml:2): APP_port is set at kvrun.toml:9, which wins over the bundle"),
        "{stderr}"
    );
    assert!(
        stderr.contains("env_from settings (--env-from): port replaces the one from env_from app-env line 3 (kvrun.toml:5) (the later bundle wins)"),
        "{stderr}"
    );
    for value in ["app-SECRET-1", "x-SECRET-4", "key-SECRET-5", "pw-SECRET-9"] {
        assert!(!stderr.contains(value), "stderr leaks {value}");
    }
}

#[test]
fn bundles_that_cannot_be_used_fail_by_name_and_say_nothing_of_their_values() {
    let ran = Test::new()
        .secret("kv1", "not-json", "hunter2-SECRET-6")
        .secret("kv1", "array", r#"["hunter2-SECRET-6"]"#)
        .secret(
            "kv1",
            "twice",
            r#"{"db.host":"hunter2-SECRET-6","db-host":"x"}"#,
        )
        .secret(
            "kv1",
            "bad-ref",
            "TOKEN=https://kv1.vault.azure.net/secrets/\nOK=1\n",
        )
        .manifest(concat!(
            "vault = \"<kv1>\"\n",
            "[[env_from]]\nsecret = \"missing\"\n",
            "[[env_from]]\nsecret = \"gone\"\noptional = true\n",
            "[[env_from]]\nsecret = \"not-json\"\nprefix = \"A_\"\n",
            "[[env_from]]\nsecret = \"array\"\n",
            "[[env_from]]\nsecret = \"twice\"\n",
            "[[env_from]]\nsecret = \"bad-ref\"\nformat = \"dotenv\"\n",
        ))
        .args(["--", "true"])
        .run();
    // Bad input (65) outranks not found (66).
    ran.code(65);
    insta::assert_snapshot!(ran.stderr());
    assert_no_leak(ran.output(), &["hunter2-SECRET-6"]);
}

#[test]
fn an_optional_bundle_that_is_missing_is_a_warning() {
    let ran = Test::new()
        .secret("kv1", "other", "x")
        .manifest(concat!(
            "vault = \"<kv1>\"\n",
            "[[env_from]]\nsecret = \"gone\"\noptional = true\n",
        ))
        .env("KEPT", "as-is")
        .args(["--", "env", "-0"])
        .run();
    assert_eq!(ran.success().env()["KEPT"], "as-is");
    insta::assert_snapshot!(ran.stderr());
}

#[test]
fn bundle_declarations_are_checked_before_any_request() {
    let cases = [
        (
            "unknown_key",
            "[[env_from]]\nsecret = \"<kv1>/secrets/a\"\nprefx = \"A_\"\n",
            None,
        ),
        (
            "bad_prefix",
            "[[env_from]]\nsecret = \"<kv1>/secrets/a\"\nprefix = \"1-A\"\n",
            None,
        ),
        (
            "a_field",
            "[[env_from]]\nsecret = \"<kv1>/secrets/a?field=x\"\n",
            None,
        ),
        (
            "bad_format",
            "[[env_from]]\nsecret = \"<kv1>/secrets/a\"\nformat = \"yaml\"\n",
            None,
        ),
        ("bare_name_without_a_vault", "", Some("APP_=app-settings")),
        ("flag_with_a_template", "", Some("{{ <kv1>/secrets/a }}")),
    ];
    for (name, manifest, flag) in cases {
        let mut test = Test::new().manifest(manifest);
        if let Some(flag) = flag {
            test = test.args(["--env-from", flag]);
        }
        let ran = test.args(["--", "true"]).run();
        assert!(
            ran.world().vault_gets().is_empty(),
            "{name}: nothing is fetched"
        );
        insta::assert_snapshot!(name, ran.stderr());
    }
}

#[test]
fn a_bundles_references_are_held_to_the_allow_list() {
    let test = Test::new();
    let token = format!(
        "TOKEN={}/secrets/token\n",
        test.world().fake.vault_url("kv2")
    );
    let ran = test
        .secret("kv1", "app-env", &token)
        .secret("kv2", "token", "t-SECRET-8")
        .args([
            "--allow-vault",
            "<kv1>",
            "--env-from",
            "dotenv:<kv1>/secrets/app-env",
            "--",
            "true",
        ])
        .run();
    ran.code(77);
    insta::assert_snapshot!(ran.stderr());
    let gets = ran.world().vault_gets();
    assert!(
        gets.iter().all(|r| !r.host.starts_with("kv2")),
        "kv2 is never contacted: {gets:?}"
    );
}

#[test]
fn check_shows_each_bundle_variable_and_export_exports_it() {
    let ran = Test::new()
        .secret(
            "kv1",
            "settings",
            r#"{"db":{"user":"u-SECRET-2"},"mode":"fast"}"#,
        )
        .secret("kv1", "shadowed", r#"{"MODE_ONLY":"s-SECRET-3"}"#)
        .env("MODE_ONLY", "explicit")
        .manifest(concat!(
            "vault = \"<kv1>\"\n",
            "[[env_from]]\nsecret = \"gone\"\noptional = true\n",
            "[[env_from]]\nsecret = \"shadowed\"\n",
        ))
        .args(["--env-from", "APP_=settings", "check", "--json"])
        .run();
    ran.success();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&ran.stdout()).unwrap();
    let summary: Vec<String> = rows
        .iter()
        .map(|row| {
            format!(
                "{} | {} | {} | {}",
                row["variable"].as_str().unwrap(),
                row["origin"].as_str().unwrap(),
                row["secret"].as_str().unwrap(),
                row["status"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "APP_db__user | env_from settings (--env-from) | settings | ok",
            "APP_mode | env_from settings (--env-from) | settings | ok",
            "env_from | kvrun.toml:2 | gone | optional, not found",
            "env_from | kvrun.toml:5 | shadowed | ok",
        ]
    );
    assert_no_leak(ran.output(), &["u-SECRET-2", "s-SECRET-3"]);

    let export = run(ran.world().kvrun().env("MODE_ONLY", "explicit").args([
        "--env-from",
        "APP_=settings",
        "export",
        "--format",
        "dotenv",
    ]));
    assert!(export.status.success(), "{}", stderr(&export));
    assert_eq!(
        String::from_utf8_lossy(&export.stdout),
        "APP_db__user='u-SECRET-2'\nAPP_mode='fast'\n",
        "an inherited variable is not exported, and still wins over the bundle's"
    );
}

#[test]
fn no_bundle_value_in_any_output_at_trace_level() {
    let test = Test::new();
    let app_env = format!(
        "TOKEN={}/secrets/token\nPLAIN=p-SECRET-12\n",
        test.world().fake.vault_url("kv1")
    );
    let ran = test
        .secret("kv1", "settings", r#"{"a":{"b":"j-SECRET-11"}}"#)
        .secret("kv1", "app-env", &app_env)
        .secret("kv1", "token", "t-SECRET-13")
        .env("KVRUN_LOG", "trace")
        .args([
            "--env-from",
            "<kv1>/secrets/settings,dotenv:<kv1>/secrets/app-env",
            "check",
        ])
        .run();
    ran.success();
    assert!(ran.stdout().contains("a__b"), "{}", ran.stdout());
    assert_no_leak(ran.output(), &["j-SECRET-11", "p-SECRET-12", "t-SECRET-13"]);
}

/// Each `*_FILE` variable's file as `NAME<TAB>base64 of its contents`, one per line.
const SHOW_PART_FILES: &str = "for v in $(env | sed -n 's/^\\([A-Z_]*_FILE\\)=.*/\\1/p' | sort); do \
    printf '%s\\t' \"$v\"; base64 -w0 < \"$(printenv \"$v\")\"; echo; done";

fn part_files(stdout: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
    use base64::Engine as _;
    stdout
        .lines()
        .map(|line| {
            let (name, contents) = line.split_once('\t').unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(contents)
                .unwrap();
            (name.to_owned(), bytes)
        })
        .collect()
}

fn pem_certificates(pem: &[u8]) -> usize {
    String::from_utf8_lossy(pem)
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

#[test]
fn certificate_parts_from_a_pkcs12_and_a_pem_secret_as_files() {
    use base64::Engine as _;
    let chain = kvrun_fake::test_chain("app.example");
    let pfx = chain.pkcs12();
    let test = Test::new();
    let kv = test.world().fake.vault("kv1");
    let attrs = |content_type: &str| kvrun_fake::SecretAttrs {
        content_type: Some(content_type.to_owned()),
        ..kvrun_fake::SecretAttrs::default()
    };
    kv.set_secret_with(
        "tls",
        &base64::engine::general_purpose::STANDARD.encode(&pfx),
        attrs("application/x-pkcs12"),
    );
    kv.set_secret_with(
        "tls-pem",
        &chain.secret_pem,
        attrs("application/x-pem-file"),
    );
    let ran = test
        .manifest(concat!(
            "vault = \"<kv1>\"\n[env]\n",
            "TLS_KEY_FILE = { secret = \"tls\", part = \"key\", file = true }\n",
            "TLS_CHAIN_FILE = { secret = \"tls\", part = \"chain\", file = true }\n",
            "TLS_PFX_FILE = { secret = \"tls\", part = \"pkcs12\", file = true }\n",
        ))
        .env_file("PEM_CERT_FILE=<kv1>/secrets/tls-pem?part=cert\n")
        .env("PEM_KEY_FILE", "<kv1>/secrets/tls-pem?part=key")
        .args([
            "-vv",
            "--file-var",
            "PEM_CERT_FILE,PEM_KEY_FILE",
            "--",
            "bash",
            "-c",
            SHOW_PART_FILES,
        ])
        .run();
    let mut files = part_files(&ran.success().stdout());
    files.remove("SSL_CERT_FILE"); // the harness's trust store
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "PEM_CERT_FILE",
            "PEM_KEY_FILE",
            "TLS_CHAIN_FILE",
            "TLS_KEY_FILE",
            "TLS_PFX_FILE"
        ]
    );
    assert_eq!(files["TLS_PFX_FILE"], pfx, "the PFX, binary");
    assert_eq!(
        pem_certificates(&files["TLS_CHAIN_FILE"]),
        2,
        "leaf and intermediate"
    );
    assert!(files["TLS_CHAIN_FILE"].starts_with(chain.leaf_pem.as_bytes()));
    assert_eq!(files["PEM_CERT_FILE"], chain.leaf_pem.as_bytes());
    for key in ["TLS_KEY_FILE", "PEM_KEY_FILE"] {
        assert_eq!(files[key], chain.key_pem.as_bytes(), "{key}: PKCS#8 PEM");
    }
    // Each secret is fetched once, whatever its parts.
    let gets = ran.world().vault_gets();
    assert_eq!(
        gets.iter().filter(|r| r.authorization.is_some()).count(),
        2,
        "{gets:?}"
    );
    let key_body = chain.key_pem.lines().nth(1).unwrap();
    assert!(!ran.stderr().contains(key_body), "stderr shows the key");

    // check names each part.
    let check = run(ran.world().kvrun().args(["check"]));
    assert!(check.status.success(), "{}", stderr(&check));
    let table = String::from_utf8_lossy(&check.stdout);
    for want in [
        "tls?part=key",
        "tls?part=chain",
        "tls?part=pkcs12",
        "tls-pem?part=cert",
    ] {
        assert!(table.contains(want), "{want} in\n{table}");
    }
}

#[test]
fn parts_that_cannot_be_taken_fail_by_name() {
    let test = Test::new();
    let kv = test.world().fake.vault("kv1");
    kv.set_secret("plain", "hunter2-SECRET-14");
    kv.set_secret_with(
        "pem",
        &kvrun_fake::test_chain("a.example").leaf_pem,
        kvrun_fake::SecretAttrs {
            content_type: Some("application/x-pem-file".into()),
            ..kvrun_fake::SecretAttrs::default()
        },
    );
    let ran = test
        .env("NOT_A_CERT", "<kv1>/secrets/plain?part=cert")
        .env("NO_KEY", "<kv1>/secrets/pem?part=key")
        .args(["--file-var", "PFX", "--", "true"])
        .env("PFX", "<kv1>/secrets/pem?part=pkcs12")
        .run();
    ran.code(65);
    insta::assert_snapshot!(ran.stderr());
    assert_no_leak(ran.output(), &["hunter2-SECRET-14"]);

    // A PFX is binary: never an environment variable, never in a template; refused before any
    // request.
    for (name, value) in [
        ("pkcs12_in_the_environment", "<kv1>/secrets/pem?part=pkcs12"),
        (
            "pkcs12_in_a_template",
            "x{{ <kv1>/secrets/pem?part=pkcs12 }}",
        ),
        ("field_and_part", "<kv1>/secrets/pem?part=key&field=a"),
    ] {
        let ran = Test::new().env("X", value).args(["--", "true"]).run();
        ran.code(65);
        assert!(ran.world().vault_gets().is_empty(), "{name}");
        insta::assert_snapshot!(name, ran.stderr());
    }
}
