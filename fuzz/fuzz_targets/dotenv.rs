//! `kvrun::source::dotenv::parse` on arbitrary bytes: never panic, well-formed keys and lines, and
//! warnings that never repeat a value (see `fuzz/oracles.rs`).
#![no_main]

#[path = "../oracles.rs"]
#[allow(dead_code)]
mod oracles;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

static SHAPES: LazyLock<Vec<oracles::Shape>> = LazyLock::new(oracles::known_shapes);

fuzz_target!(|data: &[u8]| {
    oracles::check_dotenv(data, &SHAPES, "fuzz input");
});
