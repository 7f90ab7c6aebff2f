//! The harness shared by the end-to-end tests: a fake Azure, a working directory, stand-in
//! `az`/`azd`, and `kvrun` with a cleared environment pointed at them.

#![allow(dead_code, reason = "each test file uses part of the harness")]
#![expect(
    clippy::disallowed_methods,
    reason = "the harness hands its PATH to kvrun"
)]

pub(crate) mod lines;
pub(crate) mod test;

pub(crate) use test::Test;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kvrun_fake::{DEFAULT_TENANT, FakeAzure, Recorded};

pub(crate) const CLIENT_ID: &str = "kvrun-test-client";
/// Must never appear in any output.
pub(crate) const CLIENT_SECRET: &str = "cs-NEVER-PRINT-7f3a9e";

pub(crate) struct World {
    pub fake: FakeAzure,
    pub dir: tempfile::TempDir,
    pub ca_dir: PathBuf,
    /// Prepended to PATH: stand-in `az` and `azd`, so no test ever runs a real one.
    pub bin: PathBuf,
}

/// A stand-in for `az` or `azd`: records when it started and its arguments, then prints `stdout`
/// and `stderr` (neither may contain a single quote) and exits `code`.
pub(crate) fn stand_in(path: &std::path::Path, stdout: &str, stderr: &str, code: i32) {
    use std::os::unix::fs::PermissionsExt;
    let log = path.with_extension("log");
    let script = format!(
        "#!/bin/sh\ndate +%s%N > '{stamp}'\necho \"$@\" >> '{log}'\nprintf '%s' '{stdout}'\nprintf '%s\\n' '{stderr}' >&2\nexit {code}\n",
        stamp = path.with_extension("started").display(),
        log = log.display(),
    );
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

impl World {
    pub(crate) fn new() -> Self {
        Self::with(FakeAzure::start())
    }

    pub(crate) fn with(fake: FakeAzure) -> Self {
        fake.add_client(CLIENT_ID, CLIENT_SECRET);
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        std::fs::create_dir(&ca_dir).unwrap();
        std::fs::write(ca_dir.join("test-ca.pem"), fake.ca_pem()).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let not_logged_in = "ERROR: Please run az login to setup account.";
        stand_in(&bin.join("az"), "", not_logged_in, 1);
        stand_in(
            &bin.join("azd"),
            "",
            "ERROR: not logged in, run `azd auth login` to login",
            1,
        );
        Self {
            fake,
            dir,
            ca_dir,
            bin,
        }
    }

    pub(crate) fn write(&self, path: &str, contents: &str) -> &Self {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    pub(crate) fn url(&self, vault: &str, name: &str) -> String {
        format!("{}/secrets/{name}", self.fake.vault_url(vault))
    }

    /// `kvrun` with a clean environment: PATH (stand-in `az`/`azd` first), the test CA, a
    /// service principal, the fake's authority host, `vault.localhost` as a vault suffix, and an
    /// IMDS address on loopback where nothing listens: no test ever reaches 169.254.169.254.
    pub(crate) fn kvrun(&self) -> Command {
        let mut path = std::ffi::OsString::from(&self.bin);
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        let mut command = Command::new(env!("CARGO_BIN_EXE_kvrun"));
        command
            .env_clear()
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:1")
            .env("SSL_CERT_FILE", self.ca_dir.join("test-ca.pem"))
            .env("AZURE_TENANT_ID", DEFAULT_TENANT)
            .env("AZURE_CLIENT_ID", CLIENT_ID)
            .env("AZURE_CLIENT_SECRET", CLIENT_SECRET)
            .env("AZURE_AUTHORITY_HOST", self.fake.authority_host())
            .env("KVRUN_VAULT_SUFFIX", "vault.localhost")
            .stdin(Stdio::null());
        command
    }

    pub(crate) fn vault_gets(&self) -> Vec<Recorded> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.host.ends_with(".vault.localhost"))
            .collect()
    }
}

/// How long one run of kvrun may take before the test binary gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// Run `command` to its end and collect its output; a run that takes longer than [`RUN_LIMIT`]
/// aborts the test binary (a failure that names the cause) instead of hanging the suite.
pub(crate) fn run(command: &mut Command) -> Output {
    use std::sync::mpsc::{RecvTimeoutError, channel};
    let (done, finished) = channel::<()>();
    let program = command.get_program().to_string_lossy().into_owned();
    std::thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(RUN_LIMIT) {
            eprintln!("{program} did not finish within {RUN_LIMIT:?}: aborting the tests");
            std::process::abort();
        }
    });
    let output = command.output().expect("kvrun runs");
    let _ = done.send(());
    output
}

/// kvrun's stderr with what differs from run to run replaced: any loopback port (`[PORT]`: the
/// fake's, a second fake's, a proxy's), the test's temporary directory (`[DIR]`), and Entra's
/// trace and correlation IDs and timestamp, the times in rustls's "certificate expired". The rest is compared exactly: error text is kvrun's
/// interface.
pub(crate) fn stable_stderr(world: &World, output: &Output) -> String {
    let port = regex::Regex::new(r"(localhost|127\.0\.0\.1):[0-9]+").unwrap();
    // Entra's (and the fake's) per-request trace: `Trace ID: <uuid> … Timestamp: <UTC time>`.
    let trace = regex::Regex::new(r"(Trace ID|Correlation ID): [0-9a-f-]{36}").unwrap();
    let timestamp = regex::Regex::new(r"Timestamp: [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}Z").unwrap();
    let text = stderr(output).replace(&world.dir.path().display().to_string(), "[DIR]");
    let text = port.replace_all(&text, "$1:[PORT]");
    let text = trace.replace_all(&text, "$1: [ID]");
    // rustls on an expired certificate: the clock's time and the certificate's age.
    let expired = regex::Regex::new(
        r"time [0-9]+ \(UNIX\), but certificate is not valid after [0-9]+ \([0-9]+ seconds ago\)",
    )
    .unwrap();
    let text = expired.replace_all(
        &text,
        "time [NOW] (UNIX), but certificate is not valid after [NOT AFTER] ([AGE] seconds ago)",
    );
    timestamp
        .replace_all(&text, "Timestamp: [TIME]")
        .into_owned()
}

/// Asserts kvrun's stderr, made stable ([`stable_stderr`]), against the snapshot `name` in
/// `tests/it/snapshots/`.
macro_rules! assert_stderr {
    ($name:expr, $world:expr, $output:expr) => {
        insta::assert_snapshot!($name, $crate::common::stable_stderr($world, $output))
    };
}
pub(crate) use assert_stderr;

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The child's environment, printed by `env -0`.
pub(crate) fn child_env(output: &Output) -> HashMap<String, String> {
    assert!(output.status.success(), "kvrun failed: {}", stderr(output));
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .split('\0')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

pub(crate) fn assert_no_leak(output: &Output, secrets: &[&str]) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(output)
    );
    for secret in secrets.iter().chain(&[CLIENT_SECRET]) {
        assert!(!all.contains(secret), "output leaks {secret:?}:\n{all}");
    }
    assert!(!all.contains("fake-at-"), "output leaks a token:\n{all}");
}

/// Wait for `child` to exit, bounded: a thread blocks in `wait`, this one on its answer; past
/// `limit` the child is killed (which ends the wait) and the test fails.
pub(crate) fn exit_status(
    child: &mut std::process::Child,
    limit: Duration,
) -> std::process::ExitStatus {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::channel();
        scope.spawn(move || {
            let _ = sender.send(child.wait().unwrap());
        });
        if let Ok(status) = receiver.recv_timeout(limit) {
            return status;
        }
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        panic!("kvrun did not exit within {limit:?}");
    })
}
