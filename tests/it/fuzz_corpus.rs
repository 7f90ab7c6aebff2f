//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) and crash reproducers
//! (`fuzz/artifacts/<target>/`) through the fuzz targets' own property checks (`fuzz/oracles.rs`,
//! shared with the targets), on stable Rust, in every `cargo test`. The fuzz crate itself
//! (`fuzz/`, its own workspace) needs cargo-fuzz and nightly features.

#[path = "../../fuzz/oracles.rs"]
mod oracles;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use kvrun::source::{dotenv, manifest};
use oracles::*;

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(listing) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = listing
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Every corpus file and crash reproducer of `target`, with its bytes. Fails if the corpus is
/// empty, so that this test cannot pass by replaying nothing.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus = fuzz.join("corpus").join(target);
    let mut files = files_in(&corpus);
    assert!(
        !files.is_empty(),
        "the fuzz corpus {} is empty or missing",
        corpus.display()
    );
    files.extend(files_in(&fuzz.join("artifacts").join(target)));
    files
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.display().to_string(), bytes)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// reference

#[test]
fn reference_corpus() {
    let hosts = hosts();
    for (file, bytes) in inputs("reference") {
        if let Ok(input) = std::str::from_utf8(&bytes) {
            check_reference(input, &hosts, &file);
        }
    }
}

#[test]
fn dotenv_corpus() {
    let shapes = known_shapes();
    for (file, bytes) in inputs("dotenv") {
        check_dotenv(&bytes, &shapes, &file);
    }
}

#[test]
fn dotenv_leak_check_is_not_blind() {
    let shapes = known_shapes();
    let keys = HashSet::from(["__proto__", "PASSWORD", "comment"]);
    // A message of a known kind holds keys and numbers only, whatever a value looks like, even
    // where a key is spelled like one of the message's words.
    let duplicate = "PASSWORD is assigned again (earlier on line 1); dotenv keeps this later value";
    assert!(known_kind(duplicate, &keys, &shapes), "{shapes:?}");
    assert!(!leaks(duplicate, "keeps this later", &keys, &shapes));
    let hash = parse_warning("comment=ab#cd");
    assert!(known_kind(&hash, &keys, &shapes), "{hash}");
    assert!(!leaks(&hash, "as a comment", &keys, &shapes));
    // A value where a key belongs, or added to a message, is a leak.
    let leaked = duplicate.replace("PASSWORD", "hunter2hunter2");
    assert!(leaks(&leaked, "hunter2hunter2", &keys, &shapes));
    let added = format!("{duplicate}: hunter2hunter2");
    assert!(leaks(&added, "hunter2hunter2", &keys, &shapes));
    assert!(!leaks(&added, "PASSWORD", &keys, &shapes));
    assert!(!leaks("line 3: hunter2", "hunter2", &keys, &shapes));
}

/// The one warning `input` sets off.
fn parse_warning(input: &str) -> String {
    let parsed = dotenv::parse(input.as_bytes()).expect("UTF-8");
    assert_eq!(parsed.warnings.len(), 1, "{input:?}");
    parsed.warnings[0].message.clone()
}

#[test]
fn manifest_corpus() {
    let hosts = hosts();
    for (file, bytes) in inputs("manifest") {
        if let Ok(text) = std::str::from_utf8(&bytes) {
            check_manifest(text, &hosts, &file);
        }
    }
}

#[test]
fn manifest_value_extraction_is_not_blind() {
    let text = "[env]\nA = { value = \"hunter2hunter2\" }\nB = { value = 'x' }\n";
    let table = text.parse::<toml::Table>().expect("TOML");
    assert_eq!(toml_values(&table), ["hunter2hunter2", "x"]);
    assert_eq!(lexical_values(text), ["hunter2hunter2", "x"]);
    assert_eq!(
        lexical_values("[env]\nA = { value = \"hunter2hunter2\" \n"),
        ["hunter2hunter2"]
    );
    assert_eq!(shifted("az-Z9.x"), "ba-A0.y");
    // The error's own text, and a reference spelled like the value, are not the value shown.
    let hosts = hosts();
    let text = "[env]\nA = { value = \"unclosed table\" }\n[env\n";
    let shown = manifest::parse(text, Path::new("kvrun.toml"), &hosts)
        .unwrap_err()
        .to_string();
    assert!(shown.contains("unclosed table"), "{shown}");
    assert!(!shows(
        text,
        &shown,
        "unclosed table",
        &plain_values(text),
        &hosts
    ));
    // An error that does repeat a string (here a bad vault URL, taken as if it were a plain value).
    let text = "vault = \"hunter2hunter2\"\n";
    let shown = manifest::parse(text, Path::new("kvrun.toml"), &hosts)
        .unwrap_err()
        .to_string();
    let values = ["hunter2hunter2".to_owned()];
    assert!(
        shows(text, &shown, "hunter2hunter2", &values, &hosts),
        "{shown}"
    );
}
