//! kvrun's integration tests, one binary with a module per area (one link step instead of one per
//! file): the built `kvrun` against the fake Key Vault and Entra ID over real TLS.
//!
//! - [`appconfig`]: Azure App Configuration stores, their Key Vault references, access keys;
//! - [`bundles`]: one secret, many settings: `?field=` of a JSON secret;
//! - [`end_to_end`]: runs, references, credentials, the HTTP/2 and HTTP/1.1 paths, failures;
//! - [`supervise`]: `--init` with real processes, signals, a pty, orphans, secret files, `--watch`;
//! - [`export`]: `export` round trips and `check`;
//! - [`hardening_input`], [`hardening_network`], [`hardening_process`]: the regression tests of
//!   the hardening issue, by where the input came from;
//! - [`commands`]: completions, the man page, `--version`;
//! - [`dotenv_differential`]: the `.env` reader against the npm `dotenv` package;
//! - [`fuzz_corpus`]: the fuzz targets' kept corpus, replayed through the same checks.
//!
//! `KVRUN_FAKE_HTTP1_ONLY=1` makes the fake HTTP/1.1-only by default (`scripts/test` runs the
//! binary a second time so).

mod common;

mod appconfig;
mod bundles;
mod commands;
mod dotenv_differential;
mod end_to_end;
mod export;
mod fuzz_corpus;
mod hardening_input;
mod hardening_network;
mod hardening_process;
mod supervise;
