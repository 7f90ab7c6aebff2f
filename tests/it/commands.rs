//! The packaging commands: completions that shells accept, a man page, `--version` with the commit.

use std::process::Command;

fn kvrun(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kvrun"))
        .args(args)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn bash_completion_is_valid_bash_and_knows_the_commands() {
    let script = kvrun(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kvrun.bash");
    std::fs::write(&path, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    for word in ["export", "--watch", "--init", "--file-var", "completions"] {
        assert!(script.contains(word), "{word}");
    }
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        assert!(kvrun(&["completions", shell]).contains("kvrun"), "{shell}");
    }
}

#[test]
fn man_page_is_generated_from_the_command_line() {
    let page = kvrun(&["man"]);
    assert!(
        page.contains(".TH kvrun 1"),
        "{}",
        &page[..page.len().min(300)]
    );
    for word in ["\\-\\-timeout", "\\-\\-watch", "export", "KVRUN_TIMEOUT"] {
        assert!(page.contains(word), "{word}");
    }
}

#[test]
fn version_names_the_commit() {
    let version = kvrun(&["--version"]);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    assert!(
        version.starts_with(&format!("kvrun {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    assert!(version.contains(head.trim()), "{version} vs {head}");
}
