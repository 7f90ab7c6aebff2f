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
