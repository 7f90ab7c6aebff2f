//! Differential test: kvrun's `.env` reader against the npm `dotenv` package itself.
//!
//! Runs `node tests/dotenv/parse.js` on every `*.env` file in `tests/dotenv/corpus/` and checks
//! that `kvrun::source::dotenv::parse` gives the same keys, the same values and the same key order
//! as `dotenv.parse`. It needs Node.js and the pinned dotenv (`npm ci --prefix tests/dotenv`), and
//! fails, rather than skips, without them. The corpus holds test fixtures, not secrets, so a
//! mismatch is printed in full.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The corpus must keep at least this many entries (keys in dotenv's results, over all files).
const MIN_ENTRIES: usize = 40;
const SETUP: &str = "run `npm ci --prefix tests/dotenv` (Node.js and npm must be installed)";

fn dotenv_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("dotenv")
}

fn corpus_files() -> Vec<PathBuf> {
    let dir = dotenv_dir().join("corpus");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "env"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.env files in {}", dir.display());
    files
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("corpus file has a name")
        .to_string_lossy()
        .into_owned()
}

/// What dotenv says, per file name: `Object.entries(dotenv.parse(buffer))`.
type NodeResults = BTreeMap<String, Vec<(String, String)>>;

fn run_npm_dotenv(files: &[PathBuf]) -> NodeResults {
    let dir = dotenv_dir();
    let installed = dir.join("node_modules").join("dotenv").join("package.json");
    assert!(
        installed.is_file(),
        "npm dotenv is not installed ({} is missing): {SETUP}",
        installed.display()
    );
    let output = Command::new("node")
        .arg(dir.join("parse.js"))
        .args(files)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}): install Node.js, then {SETUP}"));
    assert!(
        output.status.success(),
        "`node tests/dotenv/parse.js` failed ({}):\n{}\n{SETUP}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "tests/dotenv/parse.js printed something that is not the expected JSON ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Every difference between dotenv's pairs and kvrun's for one file, as readable lines.
fn differences(file: &str, dotenv: &[(String, String)], kvrun: &[(String, String)]) -> Vec<String> {
    let as_map = |pairs: &'_ [(String, String)]| -> BTreeMap<String, String> {
        pairs.iter().cloned().collect()
    };
    let (dotenv_map, kvrun_map) = (as_map(dotenv), as_map(kvrun));
    let keys: BTreeSet<&String> = dotenv_map.keys().chain(kvrun_map.keys()).collect();
    let mut lines: Vec<String> = keys
        .into_iter()
        .filter_map(|key| {
            let (expected, got) = (dotenv_map.get(key), kvrun_map.get(key));
            (expected != got).then(|| {
                format!("{file}: key {key:?}: dotenv gives {expected:?}, kvrun gives {got:?}")
            })
        })
        .collect();
    if lines.is_empty() {
        let dotenv_keys: Vec<&str> = dotenv.iter().map(|(k, _)| k.as_str()).collect();
        let kvrun_keys: Vec<&str> = kvrun.iter().map(|(k, _)| k.as_str()).collect();
        if dotenv_keys != kvrun_keys {
            lines.push(format!(
                "{file}: same keys and values but another order: dotenv {dotenv_keys:?}, kvrun {kvrun_keys:?}"
            ));
        }
    }
    lines
}

#[test]
fn kvrun_reads_the_corpus_exactly_like_npm_dotenv() {
    let files = corpus_files();
    let node = run_npm_dotenv(&files);

    let total: usize = node.values().map(Vec::len).sum();
    assert!(
        total >= MIN_ENTRIES,
        "the corpus in tests/dotenv/corpus has only {total} entries; keep at least {MIN_ENTRIES}"
    );

    let mut problems = Vec::new();
    for path in &files {
        let name = file_name(path);
        let dotenv = node
            .get(&name)
            .unwrap_or_else(|| panic!("parse.js printed nothing for {name}"));
        let bytes =
            fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        match kvrun::source::dotenv::parse(&bytes) {
            Ok(parsed) => {
                let kvrun: Vec<(String, String)> = parsed
                    .entries
                    .into_iter()
                    .map(|entry| (entry.key, entry.value))
                    .collect();
                problems.extend(differences(&name, dotenv, &kvrun));
            }
            Err(err) => problems.push(format!("{name}: kvrun refused the file: {err:?}")),
        }
    }
    assert!(
        problems.is_empty(),
        "kvrun's .env reader disagrees with npm dotenv ({} corpus entries checked):\n{}",
        total,
        problems.join("\n")
    );
}
