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

pub mod files;
#[cfg(target_os = "linux")]
pub mod supervise;

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::error::Error;
use files::FileSecret;

/// What the command starts with: its variables, and the secrets it gets as files (each file's
/// path is added to the variables when the file is made).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildEnv {
    pub vars: Vec<(OsString, OsString)>,
    pub files: Vec<FileSecret>,
}

/// Replace this process with `command`. Returns only on failure.
#[must_use]
pub fn exec(command: &[OsString], env: ChildEnv) -> Error {
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
    // Like env(1): PATH is searched in the child's environment.
    let source = Command::new(program)
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

#[cfg(target_os = "linux")]
fn memory_file(file: &FileSecret) -> Result<(OsString, std::os::fd::OwnedFd), String> {
    files::memfd(file)
}

#[cfg(not(target_os = "linux"))]
fn memory_file(_: &FileSecret) -> Result<(OsString, std::os::fd::OwnedFd), String> {
    Err("secret files need Linux (memfd or tmpfs)".to_owned())
}
