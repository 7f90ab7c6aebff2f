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
    // Every App Configuration option, with its variable, in the man page and in --help.
    let help = kvrun(&["--help"]);
    for option in [
        "app-config",
        "app-config-select",
        "app-config-snapshot",
        "app-config-trim",
        "app-config-upper-snake",
        "app-config-flatten-json",
        "app-config-feature-flags",
        "app-config-suffix",
        "app-config-audience",
        "app-config-connection-string-file",
    ] {
        let variable = format!("KVRUN_{}", option.to_uppercase().replace('-', "_"));
        let in_man = format!("\\-\\-{}", option.replace('-', "\\-"));
        assert!(page.contains(&in_man), "man: {in_man}");
        assert!(page.contains(&variable), "man: {variable}");
        assert!(help.contains(&format!("--{option}")), "--help: --{option}");
        assert!(help.contains(&variable), "--help: {variable}");
    }
    assert!(help.contains("AZURE_APPCONFIG_CONNECTION_STRING"));
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
