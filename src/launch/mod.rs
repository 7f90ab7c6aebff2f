//! Starting the command, in one of two modes.
//!
//! - **exec** (the default): kvrun replaces itself with the command (same PID), so the app
//!   receives signals straight from the container runtime or systemd and its exit status is the
//!   one they see.
//! - **supervisor** (`--init`, Linux): kvrun starts the command as its child, forwards signals,
//!   reaps zombies, exits with the command's status, and can `--watch` for rotated secrets. See
//!   [`supervise`].
//!
//! The environment is built from one snapshot plus resolved values and handed over whole
//! (`env_clear` + `envs`); kvrun never changes its own environment.

pub(crate) mod environment;
pub(crate) mod files;
#[cfg(target_os = "linux")]
pub(crate) mod job;
#[cfg(target_os = "linux")]
pub(crate) mod panic_guard;
#[cfg(target_os = "linux")]
pub(crate) mod supervise;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::Error;
use files::FileSecret;

/// The shortest `--watch` interval (see docs/running.md, "Watching for rotated secrets").
pub const MIN_WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// What the command starts with: its variables, and the secrets it gets as files (each file's
/// path is added to the variables when the file is made).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ChildEnv {
    pub vars: Vec<(OsString, OsString)>,
    pub files: Vec<FileSecret>,
}

/// Replace this process with `command`. Returns only on failure.
#[must_use]
pub(crate) fn exec(command: &[OsString], env: ChildEnv) -> Error {
    let Some((program, args)) = command.split_first() else {
        return Error::Usage("no command given: write kvrun [OPTIONS] -- COMMAND [ARGS]...".into());
    };
    let mut vars = env.vars;
    // The descriptors must stay open until exec, which inherits them.
    let mut descriptors = Vec::new();
    for file in &env.files {
        match memory_file(file) {
            Ok((path, fd)) => {
                vars.push((file.var.clone(), path));
                descriptors.push(fd);
            }
            Err(message) => {
                return Error::bad_input(file.var.to_string_lossy().into_owned(), message);
            }
        }
    }
    // Like env(1): PATH is searched in the child's environment, by the same rule as the check
    // made before any request (and as supervisor mode), so that they cannot disagree.
    let path = match find_program(program, path_of(&vars)) {
        Ok(path) => path,
        Err(source) => {
            return Error::Exec {
                program: program.to_string_lossy().into_owned(),
                source,
            };
        }
    };
    let source = Command::new(path)
        .arg0(program)
        .args(args)
        .env_clear()
        .envs(vars)
        .exec();
    drop(descriptors);
    Error::Exec {
        program: program.to_string_lossy().into_owned(),
        source,
    }
}

/// The last `PATH` among `vars`, as exec sees it.
#[must_use]
pub(crate) fn path_of(vars: &[(OsString, OsString)]) -> Option<&std::ffi::OsStr> {
    vars.iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_os_str())
}

/// `program` as exec would find it: a path when it has a `/`, else the first executable file of
/// that name in the command's `PATH` (like env(1); `/usr/local/bin:/usr/bin:/bin` without one).
///
/// # Errors
/// `ENOENT` when there is no such file, `EACCES` when there is one but it cannot be executed.
pub(crate) fn find_program(
    program: &std::ffi::OsStr,
    path: Option<&std::ffi::OsStr>,
) -> std::io::Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    if program.as_bytes().contains(&b'/') {
        let candidate = PathBuf::from(program);
        return match executable(&candidate) {
            Some(true) => Ok(candidate),
            Some(false) => Err(std::io::Error::from_raw_os_error(nix::libc::EACCES)),
            None => Err(std::io::Error::from_raw_os_error(nix::libc::ENOENT)),
        };
    }
    if program.is_empty() {
        return Err(std::io::Error::from_raw_os_error(nix::libc::ENOENT));
    }
    let path = path.unwrap_or(std::ffi::OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    let mut denied = false;
    for dir in std::env::split_paths(path) {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        match executable(&candidate) {
            Some(true) => return Ok(candidate),
            Some(false) => denied = true,
            None => {}
        }
    }
    let errno = if denied {
        nix::libc::EACCES
    } else {
        nix::libc::ENOENT
    };
    Err(std::io::Error::from_raw_os_error(errno))
}

/// `None` when nothing is there; whether it is a file kvrun may execute.
fn executable(path: &Path) -> Option<bool> {
    let metadata = std::fs::metadata(path).ok()?;
    Some(metadata.is_file() && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok())
}

/// What Linux lets exec carry, as `fs/exec.c` computes it (v6.x):
///
/// - each string — every argument, every `NAME=value`, with its NUL — at most `MAX_ARG_STRLEN`,
///   32 pages (`copy_strings` → `valid_arg_len`);
/// - all of them together, plus one pointer each for argv and envp, within the limit of
///   `bprm_stack_limits`: a quarter of the stack rlimit (`RLIMIT_STACK`, `ulimit -s`), at most
///   three quarters of `_STK_LIM` (8 MiB, so 6 MiB), and at least `ARG_MAX` (32 pages). The
///   program's path is copied onto the same stack and counts too.
///
/// Pages are taken as 4 KiB: with larger pages the kernel allows more, never less, so kvrun
/// refuses nothing that the kernel would accept on x86-64 and refuses a little early elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExecLimits {
    /// `MAX_ARG_STRLEN`, NUL included.
    pub max_string: usize,
    /// Strings (with NULs) plus pointers.
    pub max_total: usize,
}

impl ExecLimits {
    const PAGE: usize = 4096;
    pub(crate) const MAX_ARG_STRLEN: usize = 32 * Self::PAGE;
    const ARG_MAX: usize = 32 * Self::PAGE;
    const STK_LIM: usize = 8 * 1024 * 1024;

    /// The limits for this process's stack rlimit (which the command inherits).
    #[must_use]
    pub(crate) fn current() -> Self {
        let stack = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_STACK)
            .map_or(u64::MAX, |(soft, _)| soft);
        Self::for_stack(stack)
    }

    /// The limits for a stack rlimit of `stack` bytes (`RLIM_INFINITY` is `u64::MAX`).
    #[must_use]
    pub(crate) fn for_stack(stack: u64) -> Self {
        let quarter = usize::try_from(stack / 4).unwrap_or(usize::MAX);
        Self {
            max_string: Self::MAX_ARG_STRLEN,
            max_total: (Self::STK_LIM / 4 * 3).min(quarter).max(Self::ARG_MAX),
        }
    }

    /// What exec needs for `program` (its resolved path), `argv` and `envp` strings of these
    /// lengths (without NULs): the strings with their NULs and a pointer each.
    #[must_use]
    pub(crate) fn needed(program: usize, strings: impl IntoIterator<Item = usize>) -> usize {
        let pointer = std::mem::size_of::<usize>();
        strings
            .into_iter()
            .fold(program.saturating_add(1), |total, len| {
                total.saturating_add(len).saturating_add(1 + pointer)
            })
    }
}

#[cfg(target_os = "linux")]
fn memory_file(file: &FileSecret) -> Result<(OsString, std::os::fd::OwnedFd), String> {
    files::memfd(file)
}

#[cfg(not(target_os = "linux"))]
fn memory_file(_: &FileSecret) -> Result<(OsString, std::os::fd::OwnedFd), String> {
    Err("secret files need Linux (memfd or tmpfs)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_limits_follow_the_kernels_rule() {
        // 8 MiB (the usual default): a quarter, 2 MiB.
        assert_eq!(ExecLimits::for_stack(8 << 20).max_total, 2 << 20);
        // Unlimited: three quarters of _STK_LIM.
        assert_eq!(ExecLimits::for_stack(u64::MAX).max_total, 6 << 20);
        assert_eq!(ExecLimits::for_stack(64 << 20).max_total, 6 << 20);
        // A tiny stack: never below ARG_MAX.
        assert_eq!(ExecLimits::for_stack(64 << 10).max_total, 128 << 10);
        assert_eq!(ExecLimits::for_stack(1 << 20).max_total, 256 << 10);
        assert_eq!(ExecLimits::for_stack(0).max_string, 128 << 10);
        // "/bin/true\0" + "true\0" + "A=b\0" and two pointers.
        assert_eq!(ExecLimits::needed(9, [4, 3]), 10 + 5 + 4 + 16);
    }

    #[test]
    fn find_program_says_missing_or_not_executable() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        std::fs::write(&app, "#!/bin/sh\n").unwrap();
        let path = dir.path().as_os_str();
        let err = find_program("app".as_ref(), Some(path)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::EACCES));
        std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_program("app".as_ref(), Some(path)).unwrap(), app);
        let err = find_program("nope".as_ref(), Some(path)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::ENOENT));
        let err = find_program(dir.path().join("nope").as_os_str(), None).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::ENOENT));
        let err = find_program(dir.path().as_os_str(), None).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::EACCES), "a directory");
        assert_eq!(find_program(app.as_os_str(), None).unwrap(), app);
    }
}
