//! `kvrun export` end to end: each format read back by its real consumer gives the same values —
//! the npm `dotenv` package, bash, a JSON parser, and Docker's `--env-file` rules — and a value a
//! format cannot hold is refused by name, never written wrongly, never shown.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::{Command, Output};

use common::{World, assert_no_leak, run, stderr};

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
    let err = stderr(&output);
    assert!(err.contains("S0") && err.contains("line break"), "{err}");
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
    assert!(stderr(&output).contains("QUOTES"), "{}", stderr(&output));
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
