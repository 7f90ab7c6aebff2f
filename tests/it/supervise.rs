//! Supervisor mode (`--init`) and secret files, end to end: real processes, real signals, the
//! fake vault over TLS. Every wait is on an event (a line from the command, a process state),
//! bounded; none is a fixed sleep.

#![cfg(target_os = "linux")]

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::lines::Lines;
use crate::common::{World, assert_no_leak, assert_stderr, child_env, exit_status, run, stderr};
use base64::Engine as _;
use kvrun_fake::{Fault, SecretAttrs};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `world.kvrun()` started through `env --default-signal`: kvrun passes on the dispositions it
/// inherits, as exec does, and a test runner started from a shell may have SIGINT ignored (a
/// shell ignores it for background jobs), which would make bash unable to trap it.
pub(crate) fn kvrun(world: &World) -> Command {
    let template = world.kvrun();
    let mut command = Command::new("env");
    command
        .arg("--default-signal")
        .arg(env!("CARGO_BIN_EXE_kvrun"))
        .env_clear()
        .envs(template.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(world.dir.path())
        .stdin(Stdio::null());
    command
}

pub(crate) fn pid(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).unwrap())
}

/// A bash command that traps `signal` and exits with `code`; says `ready` once the trap is set.
fn trapping(signal: Signal, code: i32) -> Vec<String> {
    let script = format!(
        "trap 'exit {code}' {number}; echo ready; while :; do sleep 1 & wait $!; done",
        number = signal as i32
    );
    vec!["bash".into(), "-c".into(), script]
}

#[test]
fn forwards_every_catchable_signal_and_returns_the_commands_status() {
    let world = World::new();
    let signals = [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGPIPE,
        Signal::SIGALRM,
        Signal::SIGTERM,
        Signal::SIGCONT,
        Signal::SIGTSTP,
        Signal::SIGURG,
        Signal::SIGXCPU,
        Signal::SIGXFSZ,
        Signal::SIGVTALRM,
        Signal::SIGPROF,
        Signal::SIGWINCH,
        Signal::SIGIO,
        Signal::SIGPWR,
        Signal::SIGSTKFLT,
    ];
    let mut running = Vec::new();
    for (i, signal) in signals.into_iter().enumerate() {
        let code = 100 + i32::try_from(i).unwrap();
        let mut kvrun = kvrun(&world)
            .arg("--init")
            .arg("--")
            .args(trapping(signal, code))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Lines::of(kvrun.stdout.take().unwrap());
        running.push((signal, code, kvrun, lines));
    }
    for (signal, _, kvrun, lines) in &mut running {
        lines.expect("ready", Duration::from_secs(20), |l| l == "ready");
        kill(pid(kvrun), *signal).unwrap();
    }
    for (signal, code, kvrun, _) in &mut running {
        let status = exit_status(kvrun, Duration::from_secs(20));
        assert_eq!(
            status.code(),
            Some(*code),
            "{signal}: the command's own status ({status:?})"
        );
    }
}

#[test]
fn a_command_killed_by_a_signal_gives_128_plus_n() {
    let world = World::new();
    let mut kvrun = kvrun(&world)
        .args([
            "--init",
            "--",
            "bash",
            "-c",
            "echo $$; while :; do sleep 1 & wait $!; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::of(kvrun.stdout.take().unwrap());
    let command: i32 = lines
        .expect("with a pid", Duration::from_secs(20), |l| {
            l.parse::<i32>().is_ok()
        })
        .parse()
        .unwrap();
    assert_ne!(
        command,
        pid(&kvrun).as_raw(),
        "the command is kvrun's child"
    );
    kill(Pid::from_raw(command), Signal::SIGKILL).unwrap();
    let status = exit_status(&mut kvrun, Duration::from_secs(20));
    assert_eq!(status.code(), Some(137));
}

/// `(ppid, state)` from `/proc/PID/stat`, while the process exists.
fn proc_stat(process: i32) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{process}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

#[test]
fn orphans_are_adopted_and_reaped() {
    let world = World::new();
    let fifo = world.dir.path().join("release");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // The inner sh starts a reader of the FIFO in the background and exits at once: the reader is
    // orphaned, re-parented to kvrun (a subreaper), and exits when the test writes to the FIFO.
    // The inner sh runs in the foreground: when the line is printed it has exited, so the orphan
    // is already kvrun's. The TERM trap is set first: set after the `echo`, a bash not yet
    // scheduled past it when the test's SIGTERM came died of it (exit 143, seen once under load).
    let pid_file = world.dir.path().join("orphan.pid");
    let script = format!(
        "trap 'exit 0' TERM; sh -c 'read x < {fifo} & echo $! > {pid_file}'; echo orphan $(cat {pid_file}); while :; do sleep 1 & wait $!; done",
        fifo = fifo.display(),
        pid_file = pid_file.display()
    );
    let mut kvrun = kvrun(&world)
        .args(["--init", "-vv", "--", "bash", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::of(kvrun.stdout.take().unwrap());
    let log = Lines::of(kvrun.stderr.take().unwrap());
    let orphan: i32 = lines
        .expect("naming the orphan", Duration::from_secs(20), |l| {
            l.starts_with("orphan ")
        })
        .trim_start_matches("orphan ")
        .parse()
        .unwrap();
    let kvrun_pid = pid(&kvrun).as_raw();
    assert_eq!(
        proc_stat(orphan).map(|(ppid, _)| ppid),
        Some(kvrun_pid),
        "the orphan is kvrun's"
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    // kvrun says when it has reaped it; a zombie would keep its /proc entry (state Z).
    let reaped = format!("reaped an orphan pid={orphan}");
    log.expect("kvrun reaping the orphan", Duration::from_secs(20), |l| {
        l.contains(&reaped)
    });
    assert_eq!(proc_stat(orphan), None, "reaped, not a zombie");
    assert!(
        kvrun.try_wait().unwrap().is_none(),
        "kvrun still runs the command"
    );
    kill(pid(&kvrun), Signal::SIGTERM).unwrap();
    assert_eq!(
        exit_status(&mut kvrun, Duration::from_secs(20)).code(),
        Some(0)
    );
}

/// In a new session whose controlling terminal is a pty: ^C goes from the terminal to the whole
/// foreground process group, command included; kvrun must not send it a second time.
#[test]
fn interrupt_from_the_terminal_reaches_the_command_once() {
    let world = World::new();
    let pty = nix::pty::openpty(None, None).unwrap();
    let script = "n=0; trap 'n=$((n+1)); echo int-$n' INT; trap 'echo total-$n; exit 7' USR1; \
                  echo ready; while :; do sleep 1 & wait $!; done";
    let slave = std::fs::File::from(pty.slave);
    let kvrun_path = env!("CARGO_BIN_EXE_kvrun");
    let command: Command = world.kvrun();
    // setsid --ctty: a new session with the pty (stdin) as its controlling terminal.
    let mut setsid = Command::new("setsid");
    setsid
        .args(["--ctty", "env", "--default-signal"])
        .arg(kvrun_path)
        .args(["--init", "--", "bash", "-c", script])
        .env_clear()
        .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(world.dir.path())
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    let mut kvrun = setsid.spawn().unwrap();
    let master = std::fs::File::from(pty.master);
    let lines = Lines::of(master.try_clone().unwrap());
    lines.expect("ready", Duration::from_secs(20), |l| l.ends_with("ready"));
    (&master).write_all(&[3]).unwrap(); // ^C
    lines.expect("int-1", Duration::from_secs(20), |l| l.ends_with("int-1"));
    kill(pid(&kvrun), Signal::SIGUSR1).unwrap();
    let total = lines.expect("total", Duration::from_secs(20), |l| l.contains("total-"));
    assert!(total.ends_with("total-1"), "the command saw {total:?}");
    assert_eq!(
        exit_status(&mut kvrun, Duration::from_secs(20)).code(),
        Some(7)
    );
}

const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAKHBfpegPjMCMA0GCSqGSIb3DQEBCwUA\n-----END CERTIFICATE-----";
const FILE_SECRET: &str = "file-secret-VALUE-2c1e";

/// A manifest with a PEM secret and a PKCS#12 one (base64 in the vault), both as files.
fn file_world() -> (World, Vec<u8>) {
    let world = World::new();
    let kv = world.fake.vault("files");
    kv.set_secret("plain", FILE_SECRET);
    kv.set_secret_with(
        "pem",
        CERT_PEM,
        SecretAttrs {
            content_type: Some("application/x-pem-file".into()),
            ..SecretAttrs::default()
        },
    );
    let binary: Vec<u8> = (0u8..=255).chain([0, 0, 255]).collect();
    kv.set_secret_with(
        "bundle",
        &base64::engine::general_purpose::STANDARD.encode(&binary),
        SecretAttrs {
            content_type: Some("application/x-pkcs12".into()),
            ..SecretAttrs::default()
        },
    );
    world.write(
        "kvrun.toml",
        &format!(
            "vault = \"{}\"\n[env]\n\
             PASSWORD_FILE = {{ secret = \"plain\", file = true, mode = \"0440\" }}\n\
             CERT_FILE = {{ secret = \"pem\", file = true }}\n\
             BUNDLE_FILE = {{ secret = \"bundle\", file = true, mode = 0o600 }}\n",
            world.fake.vault_url("files")
        ),
    );
    (world, binary)
}

/// Prints each file's path, mode and contents (hex) on its own line.
const SHOW_FILES: &str = "for v in PASSWORD_FILE CERT_FILE BUNDLE_FILE; do \
     f=$(printenv $v); echo \"$v path=$f mode=$(stat -L -c %a \"$f\") hex=$(od -An -v -tx1 \"$f\" | tr -d ' \\n')\"; done";

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn file_lines(stdout: &[u8]) -> std::collections::HashMap<String, (String, String, String)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| {
            let (var, rest) = line.split_once(' ')?;
            let mut fields = rest.split(' ');
            let path = fields.next()?.strip_prefix("path=")?.to_owned();
            let mode = fields.next()?.strip_prefix("mode=")?.to_owned();
            let hex = fields.next()?.strip_prefix("hex=")?.to_owned();
            Some((var.to_owned(), (path, mode, hex)))
        })
        .collect()
}

fn check_files(stdout: &[u8], binary: &[u8]) -> Vec<String> {
    let files = file_lines(stdout);
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(files["PASSWORD_FILE"].1, "440");
    assert_eq!(files["PASSWORD_FILE"].2, hex(FILE_SECRET.as_bytes()));
    assert_eq!(files["CERT_FILE"].1, "400", "the default mode");
    assert_eq!(
        files["CERT_FILE"].2,
        hex(CERT_PEM.as_bytes()),
        "PEM as it is"
    );
    assert_eq!(files["BUNDLE_FILE"].1, "600");
    assert_eq!(
        files["BUNDLE_FILE"].2,
        hex(binary),
        "PKCS#12 decoded from base64"
    );
    files.into_values().map(|(path, _, _)| path).collect()
}

#[test]
fn exec_mode_delivers_files_in_sealed_memory() {
    let (world, binary) = file_world();
    let output = run(world.kvrun().args(["-vv", "--", "bash", "-c", SHOW_FILES]));
    assert!(output.status.success(), "{}", stderr(&output));
    for path in check_files(&output.stdout, &binary) {
        assert!(path.starts_with("/proc/self/fd/"), "{path}");
    }
    assert_no_leak(&output, &[FILE_SECRET]);
}

#[test]
fn supervisor_mode_files_live_on_tmpfs_and_go_when_the_command_exits() {
    let (world, binary) = file_world();
    let output = run(kvrun(&world).args(["--init", "-vv", "--", "bash", "-c", SHOW_FILES]));
    assert!(output.status.success(), "{}", stderr(&output));
    let paths = check_files(&output.stdout, &binary);
    for path in &paths {
        let path = Path::new(path);
        assert!(path.starts_with("/dev/shm"), "{}", path.display());
        assert!(!path.exists(), "{} is still there", path.display());
        assert!(
            !path.parent().unwrap().exists(),
            "the directory is still there"
        );
    }
    assert_no_leak(&output, &[FILE_SECRET]);
    // A directory that is not a tmpfs is refused, before the command starts.
    let output = run(kvrun(&world)
        .args(["--init", "--secrets-dir"])
        .arg(world.dir.path())
        .args(["--", "bash", "-c", "echo started"]));
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert_stderr!("a_secrets_dir_that_is_not_a_tmpfs", &world, &output);
    assert!(output.stdout.is_empty());
}

#[test]
fn file_var_flag_and_owner() {
    let world = World::new();
    let kv = world.fake.vault("flag");
    kv.set_secret("token", FILE_SECRET);
    let owner = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
    let output = run(kvrun(&world)
        .env("TOKEN_FILE", world.url("flag", "token"))
        .env("PLAIN_FILE", "/run/secrets/by-hand")
        .args(["--file-var", "TOKEN_FILE,PLAIN_FILE", "--file-mode", "0444", "--file-owner", &owner])
        .args(["--", "bash", "-c", "stat -L -c '%a %u:%g' \"$TOKEN_FILE\"; cat \"$TOKEN_FILE\"; echo; echo \"$PLAIN_FILE\""]));
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            format!("444 {owner}").as_str(),
            FILE_SECRET,
            "/run/secrets/by-hand"
        ]
    );
}

#[test]
fn clear_env_passes_only_kvruns_variables_and_the_allow_list() {
    let world = World::new();
    let kv = world.fake.vault("clear");
    kv.set_secret("db", "db-VALUE");
    world.write(".env", "FROM_DOTENV=1\n");
    let output = run(kvrun(&world)
        .env("DB", world.url("clear", "db"))
        .env("INHERITED", "x")
        .env("KEEP_ME", "y")
        .env("LC_ALL", "C")
        .args(["--clear-env", "--keep-env", "KEEP_ME", "--", "env", "-0"]));
    let env = child_env(&output);
    let mut names: Vec<&str> = env.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["DB", "FROM_DOTENV", "KEEP_ME", "LC_ALL", "PATH"]);
    assert_eq!(env["DB"], "db-VALUE");
}

/// A command that prints `start VALUE` (from `$SECRET`, or the file `$SECRET_FILE`) and, on
/// SIGHUP, `reload CONTENTS` of the file; exits 0 on SIGTERM.
pub(crate) const WATCHED: &str = "show() { if [ -n \"$SECRET_FILE\" ]; then cat \"$SECRET_FILE\"; else printf %s \"$SECRET\"; fi; }; \
    trap 'echo \"reload $(show)\"' HUP; trap 'echo stopping; exit 0' TERM; \
    echo \"start $(show)\"; while :; do sleep 1 & wait $!; done";

/// kvrun `--watch 10s` running [`WATCHED`] with `envs` and `extra` options; its stdout and stderr.
pub(crate) fn watching(
    world: &World,
    envs: &[(&str, String)],
    extra: &[&str],
) -> (Child, Lines, Lines) {
    let mut kvrun = kvrun(world)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .args(["-v", "--watch", "10s", "--timeout", "3s"])
        .args(extra)
        .args(["--", "bash", "-c", WATCHED])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Lines::of(kvrun.stdout.take().unwrap());
    let err = Lines::of(kvrun.stderr.take().unwrap());
    (kvrun, out, err)
}

/// A check comes 9–11 s after the last; this bounds two of them and a restart.
pub(crate) const WATCH_LIMIT: Duration = Duration::from_secs(40);

pub(crate) fn stop(mut kvrun: Child, out: &Lines) {
    kill(pid(&kvrun), Signal::SIGTERM).unwrap();
    out.expect("stopping", WATCH_LIMIT, |l| l == "stopping");
    assert_eq!(exit_status(&mut kvrun, WATCH_LIMIT).code(), Some(0));
}

#[test]
fn watch_restarts_the_command_when_a_secret_changes() {
    let world = World::new();
    let kv = world.fake.vault("watch1");
    kv.set_secret("rotating", "first-VALUE");
    let (kvrun, out, err) = watching(&world, &[("SECRET", world.url("watch1", "rotating"))], &[]);
    out.expect("start first", WATCH_LIMIT, |l| l == "start first-VALUE");
    kv.set_secret("rotating", "second-VALUE");
    out.expect("stopping", WATCH_LIMIT, |l| l == "stopping");
    out.expect("start second", WATCH_LIMIT, |l| l == "start second-VALUE");
    err.expect("naming the change", WATCH_LIMIT, |l| {
        l.contains("secrets changed") && l.contains("SECRET")
    });
    stop(kvrun, &out);
}

#[test]
fn watch_treats_a_rotated_bundle_as_a_rotation_of_its_variables() {
    let world = World::new();
    let kv = world.fake.vault("watch4");
    kv.set_secret("bundle", r#"{"SECRET":"first-VALUE","OTHER":"same"}"#);
    let (kvrun, out, err) = watching(
        &world,
        &[("KVRUN_ENV_FROM", world.url("watch4", "bundle"))],
        &[],
    );
    out.expect("start first", WATCH_LIMIT, |l| l == "start first-VALUE");
    kv.set_secret("bundle", r#"{"SECRET":"second-VALUE","OTHER":"same"}"#);
    out.expect("stopping", WATCH_LIMIT, |l| l == "stopping");
    out.expect("start second", WATCH_LIMIT, |l| l == "start second-VALUE");
    err.expect("naming the change", WATCH_LIMIT, |l| {
        l.contains("secrets changed") && l.contains("SECRET") && !l.contains("OTHER")
    });
    stop(kvrun, &out);
}

#[test]
fn watch_with_a_reload_signal_rewrites_the_file_and_signals() {
    let world = World::new();
    let kv = world.fake.vault("watch2");
    kv.set_secret("rotating", "first-VALUE");
    let (kvrun, out, _err) = watching(
        &world,
        &[("SECRET_FILE", world.url("watch2", "rotating"))],
        &["--file-var", "SECRET_FILE", "--reload-signal", "HUP"],
    );
    out.expect("start first", WATCH_LIMIT, |l| l == "start first-VALUE");
    kv.set_secret("rotating", "second-VALUE");
    // The same process reloads: no "stopping", no second "start".
    let line = out.expect("reload", WATCH_LIMIT, |l| {
        l.starts_with("reload") || l.starts_with("st")
    });
    assert_eq!(line, "reload second-VALUE");
    stop(kvrun, &out);
}

#[test]
fn a_vault_outage_while_watching_leaves_the_command_running() {
    let world = World::new();
    let kv = world.fake.vault("watch3");
    kv.set_secret("rotating", "first-VALUE");
    let (kvrun, out, err) = watching(&world, &[("SECRET", world.url("watch3", "rotating"))], &[]);
    out.expect("start first", WATCH_LIMIT, |l| l == "start first-VALUE");
    kv.fail_next(Fault::Status(503), 1000);
    err.expect("a failed check", WATCH_LIMIT, |l| {
        l.contains("the check failed")
    });
    assert!(
        kill(pid(&kvrun), None).is_ok(),
        "kvrun (and so its command) still runs"
    );
    stop(kvrun, &out);
}
