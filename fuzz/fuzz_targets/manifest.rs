//! `kvrun::source::manifest::parse` on arbitrary text: an `Ok` or an `Err`, never a panic, and an
//! error never shows a plain value (see `fuzz/oracles.rs`).
#![no_main]

#[path = "../oracles.rs"]
#[allow(dead_code)]
mod oracles;

use std::sync::LazyLock;

use kvrun::reference::VaultHosts;
use libfuzzer_sys::fuzz_target;

static HOSTS: LazyLock<VaultHosts> = LazyLock::new(oracles::hosts);

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        oracles::check_manifest(text, &HOSTS, "fuzz input");
    }
});
