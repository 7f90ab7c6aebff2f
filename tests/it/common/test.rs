//! The fluent way to write an end-to-end test: a [`Test`] names the inputs (secrets, `.env`,
//! manifest, environment, arguments), [`Test::run`] runs kvrun once, bounded, and the [`Ran`]
//! it returns checks the outcome, exactly:
//!
//! ```ignore
//! let ran = Test::new()
//!     .secret("kv1", "db", "hunter2")
//!     .env_file("DB=<kv1>/secrets/db\n")
//!     .args(["--", "env", "-0"])
//!     .run();
//! assert_eq!(ran.success().env()["DB"], "hunter2");
//! ```
//!
//! In every text given to the builder, `<NAME>` stands for vault NAME's URL on the fake
//! (`https://NAME.vault.localhost:PORT`), so a test reads like the files it stands for.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::process::{Command, Output};

use kvrun_fake::FakeAzure;

use super::{World, child_env, run, stable_stderr, stderr};

pub(crate) struct Test {
    world: World,
    command: Command,
}

impl Test {
    /// kvrun against a fresh fake, with the harness's clean environment ([`World::kvrun`]).
    pub(crate) fn new() -> Self {
        Self::on(World::new())
    }

    /// kvrun against `fake` (one started with its own [`kvrun_fake::Options`]).
    pub(crate) fn with(fake: FakeAzure) -> Self {
        Self::on(World::with(fake))
    }

    fn on(world: World) -> Self {
        let command = world.kvrun();
        Self { world, command }
    }

    /// The fake and the working directory, for what the builder does not say.
    pub(crate) fn world(&self) -> &World {
        &self.world
    }

    /// Vault `vault` on the fake holds `name` = `value` (a new latest version).
    pub(crate) fn secret(self, vault: &str, name: &str, value: &str) -> Self {
        self.world.fake.vault(vault).set_secret(name, value);
        self
    }

    /// `./.env` holds `contents`.
    pub(crate) fn env_file(self, contents: &str) -> Self {
        self.file(".env", contents)
    }

    /// `./kvrun.toml` holds `contents`.
    pub(crate) fn manifest(self, contents: &str) -> Self {
        self.file("kvrun.toml", contents)
    }

    /// `path`, relative to the working directory, holds `contents`.
    pub(crate) fn file(self, path: &str, contents: &str) -> Self {
        let contents = self.expand(contents);
        self.world.write(path, &contents);
        self
    }

    /// kvrun's environment has `name` = `value` too.
    pub(crate) fn env(mut self, name: &str, value: &str) -> Self {
        let value = self.expand(value);
        self.command.env(name, value);
        self
    }

    /// kvrun's environment lacks `name` (one the harness sets, such as `AZURE_CLIENT_SECRET`).
    pub(crate) fn env_remove(mut self, name: &str) -> Self {
        self.command.env_remove(name);
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            let arg = self.expand(&arg.as_ref().to_string_lossy());
            self.command.arg(arg);
        }
        self
    }

    /// Run kvrun to its end (bounded: see [`run`]).
    pub(crate) fn run(mut self) -> Ran {
        let output = run(&mut self.command);
        Ran {
            world: self.world,
            output,
        }
    }

    /// `text` with each `<NAME>` replaced by vault NAME's URL.
    fn expand(&self, text: &str) -> String {
        let placeholder = regex::Regex::new(r"<([a-z0-9][a-z0-9-]*)>").unwrap();
        placeholder
            .replace_all(text, |c: &regex::Captures<'_>| {
                self.world.fake.vault_url(&c[1])
            })
            .into_owned()
    }
}

/// One finished run of kvrun.
pub(crate) struct Ran {
    world: World,
    output: Output,
}

impl Ran {
    pub(crate) fn world(&self) -> &World {
        &self.world
    }

    pub(crate) fn output(&self) -> &Output {
        &self.output
    }

    /// Asserts the exit code (the failure shows kvrun's stderr).
    #[track_caller]
    pub(crate) fn code(&self, expected: i32) -> &Self {
        assert_eq!(
            self.output.status.code(),
            Some(expected),
            "kvrun's stderr:\n{}",
            stderr(&self.output)
        );
        self
    }

    #[track_caller]
    pub(crate) fn success(&self) -> &Self {
        self.code(0)
    }

    /// kvrun's stderr made stable ([`stable_stderr`]): for `insta::assert_snapshot!`.
    pub(crate) fn stderr(&self) -> String {
        stable_stderr(&self.world, &self.output)
    }

    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// The child's environment, as `env -0` printed it.
    pub(crate) fn env(&self) -> HashMap<String, String> {
        child_env(&self.output)
    }
}
