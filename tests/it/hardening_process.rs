//! Issue 12, the process-handling items, end to end: bounded durations on the command line,
//! stdout that goes away or fills up, `export` and secret files, `check` that finds nothing or a
//! value a run would refuse, what exec cannot carry, a missing command, and `--stop-timeout` at
//! shutdown. Each test is named after the bug it pins. Every wait is on an event, bounded.

#![cfg(target_os = "linux")]

use std::fmt::Write as _;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::lines::Lines;
use crate::common::{World, exit_status, run, stderr};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The temporary working directory, spelled `TMP` so that a message can be compared exactly.
fn without_dir(world: &World, text: &str) -> String {
    text.replace(&world.dir.path().display().to_string(), "TMP")
}

// ---- item 3: durations, stdout ----

#[test]
fn timeout_beyond_u64_seconds_panicked_on_instant_overflow() {
    let world = World::new();
    let output = run(world.kvrun().env("A", world.url("kv1", "a")).args([
        "--timeout",
        "18446744073709551615s",
        "--",
        "true",
    ]));
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "error: invalid value '18446744073709551615s' for '--timeout <DURATION>': at most 24h\n\n\
         For more information, try '--help'.\n"
    );
    assert_eq!(world.fake.request_count(), 0);
}

#[test]
fn timeout_in_the_environment_beyond_u64_seconds_panicked_on_instant_overflow() {
    let world = World::new();
    let output = run(world
        .kvrun()
        .env("A", world.url("kv1", "a"))
        .env("KVRUN_TIMEOUT", "18446744073709551615s")
        .args(["--", "true"]));
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "error: invalid value '18446744073709551615s' for '--timeout <DURATION>': at most 24h\n\n\
         For more information, try '--help'.\n"
    );
}

#[test]
fn watch_and_stop_timeout_beyond_their_limits_were_accepted() {
    let world = World::new();
    for (args, limit) in [
        (
            ["--watch", "18446744073709551615s"],
            "--watch <INTERVAL>': at most 30d",
        ),
        (["--watch", "31days"], "--watch <INTERVAL>': at most 30d"),
        (
            ["--stop-timeout", "25h"],
            "--stop-timeout <DURATION>': at most 24h",
        ),
        (
            ["--timeout", "1day 1s"],
            "--timeout <DURATION>': at most 24h",
        ),
    ] {
        let output = run(world.kvrun().args(args).args(["--", "true"]));
        assert_eq!(
            output.status.code(),
            Some(64),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(
            stderr(&output),
            format!(
                "error: invalid value '{}' for '{limit}\n\nFor more information, try '--help'.\n",
                args[1]
            ),
            "{args:?}"
        );
    }
    // The limits themselves are fine.
    let output =
        run(world
            .kvrun()
            .args(["--timeout", "24h", "--stop-timeout", "24h", "--", "true"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// A pipe whose reading end is already closed, as `| head -1` is once head has its line.
fn closed_pipe() -> OwnedFd {
    let (reader, writer) = nix::unistd::pipe().unwrap();
    drop(reader);
    writer
}

#[test]
fn parse_into_a_closed_pipe_panicked_in_println() {
    let world = World::new();
    let id = "https://myvault.vault.azure.net/secrets/db/4387e9f3d6e14c459867679a90fd0f79";
    let output = world
        .kvrun()
        .args(["parse", id, id])
        .stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(141), "{}", stderr(&output));
    assert_eq!(stderr(&output), "", "a closed stdout stops kvrun quietly");
}

#[test]
fn parse_and_export_into_a_full_disk_were_internal_errors() {
    let world = World::new();
    let id = "https://myvault.vault.azure.net/secrets/db";
    world.write(".env", "PLAIN=value\n");
    for args in [
        vec!["parse", id],
        vec!["export"],
        vec!["completions", "bash"],
    ] {
        let output = world
            .kvrun()
            .args(&args)
            .stdout(std::fs::File::create("/dev/full").unwrap())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(74),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(
            stderr(&output),
            "kvrun: error: cannot write to stdout: No space left on device (os error 28)\n",
            "{args:?}"
        );
    }
}

// ---- item 7: export and secret files ----

#[test]
fn export_printed_the_content_of_a_file_secret() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("tls-key", "-----BEGIN PRIVATE KEY-----KEY-MATERIAL");
    kv.set_secret("db", "db-value");
    world.write(
        "kvrun.toml",
        &format!(
            "vault = \"{}\"\n[env]\nTLS_KEY_FILE = {{ secret = \"tls-key\", file = true }}\nDB = \"db\"\n",
            world.fake.vault_url("kv1")
        ),
    );
    world.write(".env", &format!("TOKEN_FILE={}\n", world.url("kv1", "db")));
    let output =
        run(world
            .kvrun()
            .args(["export", "--format", "shell", "--file-var", "TOKEN_FILE"]));
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    assert_eq!(
        stderr(&output),
        "kvrun: error: kvrun.toml:3: TLS_KEY_FILE: a run delivers this secret as a file and puts the file's path in the variable; export cannot write a file, so it refuses the variable\n\
         hint: leave the variable out of the export (or drop --file-var / `file = true` for it)\n\
         kvrun: error: .env:1: TOKEN_FILE: a run delivers this secret as a file and puts the file's path in the variable; export cannot write a file, so it refuses the variable\n\
         hint: leave the variable out of the export (or drop --file-var / `file = true` for it)\n"
    );
    assert_eq!(world.fake.request_count(), 0, "refused before any request");
}

#[test]
fn export_of_a_file_variable_holding_a_plain_path_still_exports_it() {
    let world = World::new();
    world.write(".env", "KEY_FILE=/run/keys/tls.key\n");
    let output = run(world
        .kvrun()
        .args(["export", "--format", "shell", "--file-var", "KEY_FILE"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "export KEY_FILE='/run/keys/tls.key'\n"
    );
}

// ---- item 8: check that finds nothing, or a value a run refuses ----

#[test]
fn check_with_no_reference_anywhere_passed_with_an_empty_table() {
    let world = World::new();
    let output = run(world.kvrun().env("PLAIN", "x").args(["check"]));
    assert_eq!(output.status.code(), Some(66), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    assert_eq!(
        without_dir(&world, &stderr(&output)),
        "kvrun: error: no Key Vault references found; kvrun looked in TMP/.env (no such file), TMP/kvrun.toml (no such file) and its environment\n\
         hint: run check where the app's .env or kvrun.toml is, or name them with --env-file and --manifest\n"
    );
    // With files that hold no reference, and without the environment.
    world
        .write(".env", "PLAIN=1\n")
        .write("kvrun.toml", "[env]\nX = { value = \"1\" }\n");
    let output = run(world.kvrun().args(["check", "--json", "--no-resolve-env"]));
    assert_eq!(output.status.code(), Some(66), "{}", stderr(&output));
    assert_eq!(
        without_dir(&world, &stderr(&output)),
        "kvrun: error: no Key Vault references found; kvrun looked in TMP/.env and TMP/kvrun.toml\n\
         hint: run check where the app's .env or kvrun.toml is, or name them with --env-file and --manifest\n"
    );
    // export with nothing to fetch still exports the plain variables.
    let output = run(world.kvrun().args(["export", "--format", "shell"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "export X='1'\nexport PLAIN='1'\n"
    );
}

#[test]
fn check_json_reported_ok_for_a_value_a_run_refuses() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    kv.set_secret("nul", "a\0b");
    kv.set_secret("big", &"x".repeat(200 * 1024));
    kv.set_secret("fine", "fine");
    world.write(
        ".env",
        &format!(
            "NUL={}\nBIG={}\nFINE={}\n",
            world.url("kv1", "nul"),
            world.url("kv1", "big"),
            world.url("kv1", "fine")
        ),
    );
    let output = run(world.kvrun().args(["check", "--json"]));
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let row = |name: &str| {
        let row = rows.iter().find(|r| r["variable"] == name).unwrap();
        (row["status"].clone(), row["reason"].clone())
    };
    assert_eq!(
        row("NUL"),
        (
            "bad value".into(),
            "the value contains a NUL byte, which no environment variable can hold".into()
        )
    );
    assert_eq!(
        row("BIG"),
        (
            "bad value".into(),
            "the value is 204800 bytes, more than an environment variable can hold (128 KiB with its name)"
                .into()
        )
    );
    assert_eq!(row("FINE"), ("ok".into(), serde_json::Value::Null));
    let port = world.fake.port();
    assert_eq!(
        stderr(&output).replace(&port.to_string(), "PORT"),
        "kvrun: error: 2 references would fail a run\n  \
         NUL (.env:1): https://kv1.vault.localhost:PORT/secrets/nul: the value contains a NUL byte, which no environment variable can hold\n  \
         BIG (.env:2): https://kv1.vault.localhost:PORT/secrets/big: the value is 204800 bytes, more than an environment variable can hold (128 KiB with its name)\n"
    );
}

// ---- item 9: what exec cannot carry ----

#[test]
fn a_literal_over_max_arg_strlen_blamed_the_command() {
    let world = World::new();
    world.write(
        ".env",
        &format!(
            "A={}\nBIG={}\n",
            world.url("kv1", "a"),
            "x".repeat(200 * 1024)
        ),
    );
    let output = run(world.kvrun().args(["--", "true"]));
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "kvrun: error: .env:2: BIG: the value is 204800 bytes, more than an environment variable can hold (128 KiB with its name)\n"
    );
    assert_eq!(world.fake.request_count(), 0, "refused before any request");
    // check says what the run would.
    let output = run(world.kvrun().args(["check"]));
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "kvrun: error: .env:2: BIG: the value is 204800 bytes, more than an environment variable can hold (128 KiB with its name)\n"
    );
    assert_eq!(world.fake.request_count(), 0);
}

#[test]
fn an_environment_over_the_kernels_total_limit_blamed_the_command() {
    let world = World::new();
    let mut dotenv = format!("A={}\n", world.url("kv1", "a"));
    for i in 0..4 {
        writeln!(dotenv, "V{i}={}", "z".repeat(100 * 1024)).unwrap();
    }
    world.write(".env", &dotenv);
    // A 1 MiB stack: the kernel allows a quarter of it, 256 KiB, for arguments and environment.
    let template = world.kvrun();
    let output = Command::new("sh")
        .args([
            "-c",
            "ulimit -s 1024 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_kvrun"),
        ])
        .args(["--", "true"])
        .env_clear()
        .envs(template.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(world.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    let text = stderr(&output);
    let digits: String = text
        .split("take ")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let total: usize = digits.parse().expect("a byte count");
    assert!(total > 4 * 100 * 1024, "{text}");
    assert_eq!(
        text.replace(&digits, "N"),
        "kvrun: error: the command's environment and arguments take N bytes, more than the 262144 Linux allows a program (a quarter of the stack limit, `ulimit -s`, at least 128 KiB and at most 6 MiB)\n"
    );
    assert_eq!(world.fake.request_count(), 0, "refused before any request");
}

// ---- item 13: a missing command ----

#[test]
fn a_missing_command_was_found_missing_after_fetching_every_secret() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("a", "a");
    world.write(".env", &format!("A={}\n", world.url("kv1", "a")));
    let output = run(world.kvrun().args(["--", "no-such-command"]));
    assert_eq!(output.status.code(), Some(127), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "kvrun: error: no-such-command: No such file or directory (os error 2)\n"
    );
    assert_eq!(
        world.fake.request_count(),
        0,
        "no request before the command is found"
    );
    // Under --init the same.
    let output = run(world.kvrun().args(["--init", "--", "no-such-command"]));
    assert_eq!(output.status.code(), Some(127), "{}", stderr(&output));
    assert_eq!(world.fake.request_count(), 0);
    // Found on the PATH the .env plans for the command, not kvrun's own.
    let bin = world.dir.path().join("apps");
    std::fs::create_dir(&bin).unwrap();
    let app = bin.join("my-app");
    std::fs::write(&app, "#!/bin/sh\necho \"A=$A\"\n").unwrap();
    std::fs::write(bin.join("not-executable"), "#!/bin/sh\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    world.write(
        ".env",
        &format!(
            "A={}\nPATH={}:/usr/bin:/bin\n",
            world.url("kv1", "a"),
            bin.display()
        ),
    );
    // The .env's PATH is the child's when kvrun inherits none (the inherited environment wins).
    let output = run(world
        .kvrun()
        .env_remove("PATH")
        .args(["--", "not-executable"]));
    assert_eq!(output.status.code(), Some(126), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "kvrun: error: not-executable: Permission denied (os error 13)\n"
    );
    assert_eq!(world.fake.request_count(), 0);
    let output = run(world.kvrun().env_remove("PATH").args(["--", "my-app"]));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "A=a\n");
}

// ---- item 14: --stop-timeout at shutdown ----

#[test]
fn stop_timeout_did_not_apply_at_shutdown() {
    let world = World::new();
    for (via, signal) in [("flag", Signal::SIGTERM), ("environment", Signal::SIGINT)] {
        let template = world.kvrun();
        let mut command = Command::new("env");
        command
            .arg("--default-signal")
            .arg(env!("CARGO_BIN_EXE_kvrun"))
            .env_clear()
            .envs(template.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .current_dir(world.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if via == "flag" {
            command.args(["--stop-timeout", "1s"]);
        } else {
            command.env("KVRUN_STOP_TIMEOUT", "1s");
        }
        let mut kvrun = command
            .args([
                "--init",
                "--",
                "sh",
                "-c",
                "trap '' TERM INT; echo ready; while :; do sleep 1; done",
            ])
            .spawn()
            .unwrap();
        let out = Lines::of(kvrun.stdout.take().unwrap());
        let err = Lines::of(kvrun.stderr.take().unwrap());
        let ready = out.next(Duration::from_secs(20)).unwrap();
        assert_eq!(ready, "ready");
        kill(Pid::from_raw(i32::try_from(kvrun.id()).unwrap()), signal).unwrap();
        assert_eq!(
            exit_status(&mut kvrun, Duration::from_secs(15)).code(),
            Some(137),
            "{via}"
        );
        let warning = err.next(Duration::from_secs(5)).unwrap();
        let name = signal.as_str();
        assert_eq!(
            warning,
            format!(
                " WARN the command is still running 1s after {name}: sending SIGKILL (--stop-timeout)"
            ),
            "{via}"
        );
    }
}

#[test]
fn rotated_secrets_too_large_for_exec_killed_the_command_at_restart() {
    let world = World::new();
    let kv = world.fake.vault("kv1");
    let mut dotenv = String::new();
    for i in 0..10 {
        kv.set_secret(&format!("s{i}"), "small");
        writeln!(dotenv, "S{i}={}", world.url("kv1", &format!("s{i}"))).unwrap();
    }
    world.write(".env", &dotenv);
    // A 4 MiB stack: the kernel allows a quarter of it, 1 MiB, for arguments and environment.
    let template = world.kvrun();
    let mut kvrun = Command::new("sh")
        .args([
            "-c",
            "ulimit -s 4096 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_kvrun"),
        ])
        .args([
            "--watch",
            "10s",
            "--",
            "sh",
            "-c",
            "echo ready; while :; do sleep 1; done",
        ])
        .env_clear()
        .envs(template.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(world.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Lines::of(kvrun.stdout.take().unwrap());
    let err = Lines::of(kvrun.stderr.take().unwrap());
    assert_eq!(out.next(Duration::from_secs(20)).unwrap(), "ready");
    // Each value fits on its own; together, 1.1 MB, they do not.
    for i in 0..10 {
        kv.set_secret(&format!("s{i}"), &"r".repeat(110 * 1024));
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    let warning = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = err.next(left).expect("a failed check within 40 s");
        if line.contains("--watch") {
            break line;
        }
    };
    let digits: String = warning
        .split("take ")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert_eq!(
        warning.replacen(&digits, "N", 1),
        " WARN --watch: the check failed; the command keeps running with what it has: \
         kvrun: error: the command's environment and arguments take N bytes, more than the \
         1048576 Linux allows a program (a quarter of the stack limit, `ulimit -s`, at least 128 KiB and at most 6 MiB)"
    );
    // The command still runs, and still answers to kvrun.
    kill(
        Pid::from_raw(i32::try_from(kvrun.id()).unwrap()),
        Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(
        exit_status(&mut kvrun, Duration::from_secs(15)).code(),
        Some(143)
    );
}
