//! `kvrun::reference::classify` and `parse_secret_identifier` on arbitrary text: never panic, and
//! every secret they produce is one kvrun may send a token to (see `fuzz/oracles.rs`).
#![no_main]

#[path = "../oracles.rs"]
#[allow(dead_code)]
mod oracles;

use std::sync::LazyLock;

use kvrun::reference::VaultHosts;
use libfuzzer_sys::fuzz_target;

static HOSTS: LazyLock<VaultHosts> = LazyLock::new(oracles::hosts);

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = std::str::from_utf8(data) {
        oracles::check_reference(input, &HOSTS, "fuzz input");
    }
});
