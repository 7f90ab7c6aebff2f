//! Becoming the command: build the child's environment and `exec` it.
//!
//! kvrun replaces itself with the command (same PID), so the app receives signals straight from
//! the container runtime or systemd and its exit status is the one they see. The environment is
//! built from one snapshot plus resolved values and handed over whole (`env_clear` + `envs`);
//! kvrun never changes its own environment.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::error::Error;

/// Replace this process with `command`. Returns only on failure.
#[must_use]
pub fn exec(command: &[OsString], env: Vec<(OsString, OsString)>) -> Error {
    let Some((program, args)) = command.split_first() else {
        return Error::Usage("no command given: write kvrun [OPTIONS] -- COMMAND [ARGS]...".into());
    };
    // Like env(1): PATH is searched in the child's environment.
    let source = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env)
        .exec();
    Error::Exec {
        program: program.to_string_lossy().into_owned(),
        source,
    }
}
