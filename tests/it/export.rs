//! `kvrun export` end to end: each format read back by its real consumer gives the same values —
//! the npm `dotenv` package, bash, a JSON parser, and Docker's `--env-file` rules — and a value a
//! format cannot hold is refused by name, never written wrongly, never shown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, Output};

use crate::common::{World, assert_no_leak, assert_stderr, run, stderr};

/// Values that stress every format's quoting; each fits dotenv, shell and JSON.
const VALUES: [(&str, &str); 8] = [
    ("multi-line", "line one\nline two\n"),
    ("single-quote", "it's"),
    ("two-quotes", "it's \"quoted\""),
    ("backslash-n", "C:\\new\\table it's"),
    ("dollar", "$HOME and ${PATH} and $(id) stay"),
    ("unicode", "pässwörd ✓ 秘密"),
    ("spaces", "  padded  "),
    ("hash", "a # not a comment"),
];

fn secret_name(i: usize) -> String {
    format!("S{i}")
}

/// A world whose .env maps S0..S7 to the secrets above, plus a plain .env value.
fn world() -> World {
    let world = World::new();
    let kv = world.fake.vault("export");
    let mut dotenv = String::from("PLAIN_SETTING=plain value\n");
    for (i, (name, value)) in VALUES.iter().enumerate() {
        kv.set_secret(name, value);
        let _ = writeln!(dotenv, "{}={}", secret_name(i), world.url("export", name));
    }
    world.write(".env", &dotenv);
    world
}

fn expected() -> BTreeMap<String, String> {
    let mut map: BTreeMap<String, String> = VALUES
        .iter()
        .enumerate()
        .map(|(i, (_, v))| (secret_name(i), (*v).to_owned()))
        .collect();
    map.insert("PLAIN_SETTING".into(), "plain value".into());
    map
}

fn export(world: &World, format: &str) -> Output {
    let output = run(world
        .kvrun()
        .env("INHERITED_PLAIN", "not exported")
        .args(["export", "-vv", "--format", format]));
    assert!(output.status.success(), "{format}: {}", stderr(&output));
    let values: Vec<&str> = VALUES
        .iter()
        .map(|(_, v)| *v)
        .filter(|v| v.len() >= 8)
        .collect();
    // The values are on stdout by design; stderr must not show any.
    let quiet = Output {
        stdout: Vec::new(),
        ..output.clone()
    };
    assert_no_leak(&quiet, &values);
    output
}

fn write_out(world: &World, name: &str, output: &Output) -> std::path::PathBuf {
    let path = world.dir.path().join(name);
    std::fs::write(&path, &output.stdout).unwrap();
    path
}

#[test]
fn dotenv_is_read_back_by_the_npm_dotenv_package() {
    let world = world();
    let path = write_out(&world, "exported.env", &export(&world, "dotenv"));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dotenv/parse.js");
    let node = Command::new("node")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        node.status.success(),
        "{}",
        String::from_utf8_lossy(&node.stderr)
    );
    let parsed: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_slice(&node.stdout).unwrap();
    let pairs: BTreeMap<String, String> = parsed["exported.env"].iter().cloned().collect();
    assert_eq!(pairs, expected());
}

#[test]
fn shell_is_read_back_by_bash() {
    let world = world();
    let path = write_out(&world, "exported.sh", &export(&world, "shell"));
    let names: Vec<String> = expected().into_keys().collect();
    let script = format!(
        ". '{}'; for n in {}; do printf '%s=%s\\0' \"$n\" \"$(printenv \"$n\"; printf x)\"; done",
        path.display(),
        names.join(" ")
    );
    let bash = Command::new("bash")
        .args(["-c", &script])
        .env_clear()
        .output()
        .unwrap();
    assert!(
        bash.status.success(),
        "{}",
        String::from_utf8_lossy(&bash.stderr)
    );
    let got: BTreeMap<String, String> = String::from_utf8(bash.stdout)
        .unwrap()
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            // printenv adds a newline, the x keeps trailing newlines from $(…).
            (k.to_owned(), v.strip_suffix("\nx").unwrap().to_owned())
        })
        .collect();
    assert_eq!(got, expected());
}

#[test]
fn json_is_one_object_of_the_values() {
    let world = world();
    let output = export(&world, "json");
    let got: BTreeMap<String, String> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(got, expected());
}

#[test]
fn docker_holds_single_line_values_and_refuses_the_rest_by_name() {
    let world = world();
    let output = run(world.kvrun().args(["export", "--format", "docker"]));
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert!(
        output.stdout.is_empty(),
        "nothing is written when anything is refused"
    );
    assert_stderr!("docker_refuses_a_multi_line_value", &world, &output);
    assert_no_leak(&output, &["line one", "line two"]);
    // Without the multi-line value, every value reads back as Docker reads an env file: each
    // line is NAME=VALUE, the value as written.
    let output = run(world
        .kvrun()
        .args(["export", "--format", "docker", "--literal", "S0"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let got: BTreeMap<String, String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    let mut want = expected();
    want.insert("S0".into(), world.url("export", "multi-line"));
    assert_eq!(got, want);
}

#[test]
fn dotenv_refuses_a_value_with_all_three_quotes() {
    let world = World::new();
    let kv = world.fake.vault("export");
    kv.set_secret("quotes", "it's \"all\" `three` quotes");
    let output = run(world
        .kvrun()
        .env("QUOTES", world.url("export", "quotes"))
        .args(["export", "--format", "dotenv"]));
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert_stderr!("dotenv_refuses_all_three_quotes", &world, &output);
    assert!(output.stdout.is_empty());
    assert_no_leak(&output, &["`three` quotes"]);
}

#[test]
fn export_fails_like_a_run() {
    let world = World::new();
    world.fake.vault("export");
    let output = run(world
        .kvrun()
        .env("MISSING", world.url("export", "missing"))
        .args(["export", "--format", "json"]));
    assert_eq!(output.status.code(), Some(66), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
}

#[test]
fn check_reports_every_secret_without_values_and_exits_as_a_run() {
    let world = World::new();
    let kv = world.fake.vault("check");
    let db_version = kv.set_secret("db", "db-VALUE-9f8e7d");
    let pinned = kv.set_secret("api", "api-VALUE-1a2b3c");
    world.write(
        "kvrun.toml",
        &format!(
            "vault = \"{}\"\n[env]\nAPI = {{ secret = \"api\", version = \"{pinned}\" }}\n\
             FEATURE = {{ secret = \"feature\", optional = true }}\n",
            world.fake.vault_url("check")
        ),
    );
    world.write(".env", &format!("DB={}\n", world.url("check", "db")));
    let output = run(world.kvrun().args(["check", "--json", "-vv"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let by_var = |name: &str| rows.iter().find(|r| r["variable"] == name).unwrap().clone();
    assert_eq!(rows.len(), 3);
    assert_eq!(by_var("DB")["origin"], ".env:1");
    assert_eq!(by_var("DB")["status"], "ok");
    assert_eq!(by_var("DB")["version"], "latest");
    // What `latest` resolved to, from the answer's id.
    assert_eq!(by_var("DB")["resolved_version"], db_version.as_str());
    assert_eq!(by_var("API")["resolved_version"], pinned.as_str());
    assert_eq!(
        by_var("FEATURE")["resolved_version"],
        serde_json::Value::Null
    );
    assert_eq!(by_var("DB")["vault"], "check.vault.localhost");
    assert!(by_var("DB")["latency_ms"].as_u64().is_some());
    assert_eq!(by_var("API")["version"], pinned.as_str());
    assert_eq!(by_var("API")["origin"], "kvrun.toml:3");
    assert_eq!(by_var("FEATURE")["status"], "optional, not found");
    assert_no_leak(&output, &["db-VALUE-9f8e7d", "api-VALUE-1a2b3c"]);

    // A missing required secret: the table says which and why, the exit code is a run's (66).
    world.write(
        ".env",
        &format!(
            "DB={}\nGONE={}\n",
            world.url("check", "db"),
            world.url("check", "gone")
        ),
    );
    let output = run(world.kvrun().args(["check"]));
    assert_eq!(output.status.code(), Some(66), "{}", stderr(&output));
    let table = String::from_utf8(output.stdout.clone()).unwrap();
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("VARIABLE") && header.ends_with("LATENCY"),
        "{table}"
    );
    let gone = table.lines().find(|l| l.starts_with("GONE")).unwrap();
    assert!(gone.contains("not found"), "{table}");
    assert!(
        table.contains("SecretNotFound") || table.contains("404"),
        "{table}"
    );
    assert_no_leak(&output, &["db-VALUE-9f8e7d", "api-VALUE-1a2b3c"]);
}
