//! What a panic must undo under `--init`: the command must not outlive its supervisor, and no
//! secret file may stay behind.
//!
//! The release profile aborts on panic, so no destructor runs — not [`super::files::SecretDir`]'s
//! removal, nothing that would stop the command (which would otherwise run on, re-parented to
//! PID 1, unsupervised). The supervisor registers here the command's pid and the secret
//! directory while they exist; the panic hook ([`crate::install_panic_hook`]) calls
//! [`after_panic`], which kills the one and removes the other. The pid is an atomic; the path sits
//! behind a mutex that the hook only *tries*: a hook must never wait for a lock the panicking
//! thread may hold. This module knows nothing of the supervisor's state beyond these two facts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, PoisonError, TryLockError};

/// The running command's pid, 0 when there is none.
static COMMAND: AtomicI32 = AtomicI32::new(0);
/// The secret directory, while it exists.
static SECRET_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The command is running as `pid` (`None`: it has exited and been reaped, so the pid may be
/// reused and must not be killed).
pub(crate) fn set_command(pid: Option<i32>) {
    COMMAND.store(pid.unwrap_or(0), Ordering::SeqCst);
}

/// The secret directory now exists at `path`.
pub(crate) fn set_secret_dir(path: &Path) {
    *SECRET_DIR.lock().unwrap_or_else(PoisonError::into_inner) = Some(path.to_owned());
}

/// The secret directory at `path` is gone (removed by its owner).
pub(crate) fn forget_secret_dir(path: &Path) {
    let mut dir = SECRET_DIR.lock().unwrap_or_else(PoisonError::into_inner);
    if dir.as_deref() == Some(path) {
        *dir = None;
    }
}

/// From the panic hook: `SIGKILL` the command (a supervisor about to die cannot give it a grace
/// period) and remove the secret directory. Never blocks, never panics.
pub(crate) fn after_panic() {
    let pid = COMMAND.swap(0, Ordering::SeqCst);
    if pid > 0 {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let mut dir = match SECRET_DIR.try_lock() {
        Ok(dir) => dir,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return,
    };
    if let Some(path) = dir.take() {
        let _ = std::fs::remove_dir_all(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// Set in the copy of this test binary that panics.
    const INNER: &str = "KVRUN_TEST_PANIC_GUARD_DIR";

    /// Whether `pid` is gone or a zombie (killed, not yet reaped by whoever adopted it).
    fn dead(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rfind(')')
                .and_then(|i| stat[i + 2..].chars().next())
                .is_some_and(|state| state == 'Z' || state == 'X')
        })
    }

    fn wait_dead(pid: i32) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !dead(pid) {
            assert!(Instant::now() < deadline, "process {pid} still runs");
            std::thread::yield_now();
        }
    }

    #[test]
    fn after_panic_kills_the_command_and_removes_the_secret_directory() {
        let mut child = Command::new("sleep").arg("60").spawn().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("kvrun-secrets");
        std::fs::create_dir(&secrets).unwrap();
        std::fs::write(secrets.join("DB_FILE"), "value").unwrap();
        set_command(Some(i32::try_from(child.id()).unwrap()));
        set_secret_dir(&secrets);
        after_panic();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        assert!(!secrets.exists());
        // Nothing left registered: a second call touches nothing.
        assert_eq!(COMMAND.load(Ordering::SeqCst), 0);
        after_panic();
    }

    /// The hook kvrun installs, in a process of its own (this test binary run again, for this test
    /// only): it panics with a command running and a secret directory made; the hook exits 70,
    /// and neither the command nor the directory survives it.
    #[test]
    #[expect(
        clippy::zombie_processes,
        reason = "the inner role panics with its command running: that is the point"
    )]
    fn the_panic_hook_kills_the_command_and_removes_the_secret_directory() {
        #[expect(clippy::disallowed_methods, reason = "the test's two roles")]
        if let Some(secrets) = std::env::var_os(INNER) {
            let secrets = PathBuf::from(secrets);
            let child = Command::new("sleep")
                .arg("60")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::fs::create_dir(&secrets).unwrap();
            std::fs::write(secrets.join("DB_FILE"), "value").unwrap();
            set_command(Some(i32::try_from(child.id()).unwrap()));
            set_secret_dir(&secrets);
            println!("command {}", child.id());
            crate::install_panic_hook();
            panic!("a bug in kvrun");
        }
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("kvrun-secrets");
        let mut inner = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "launch::panic_guard::tests::the_panic_hook_kills_the_command_and_removes_the_secret_directory",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(INNER, &secrets)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(inner.stdout.take().unwrap());
        let pid: i32 = stdout
            .lines()
            .map_while(Result::ok)
            // libtest writes its own progress on the same line.
            .find_map(|l| l.rsplit_once("command ").map(|(_, p)| p.parse().unwrap()))
            .expect("the inner test started its command");
        let status = inner.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut inner.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(70), "{stderr}");
        assert!(
            stderr.contains("a bug in kvrun"),
            "the panic is reported: {stderr}"
        );
        wait_dead(pid);
        assert!(!secrets.exists(), "the secret directory is removed");
    }
}
