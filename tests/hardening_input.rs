//! Issue 12, items 5, 6, 11 and 12: input that is meant as a reference never reaches the app as
//! text, the vault allow-list matches ports, and manifest typos say what is wrong and where.
//! Each test is named after the bug it pins and asserts the whole error text.

mod common;

use common::*;

#[test]
fn a_vault_suffix_with_a_port_is_a_usage_error_not_a_literal_password() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "s3cret");
    let reference = "https://kv1.vault.localhost:47501/secrets/db";
    for (how, mut command) in [
        ("environment", {
            let mut c = world.kvrun();
            c.env("KVRUN_VAULT_SUFFIX", "vault.localhost:47501");
            c
        }),
        ("option", {
            let mut c = world.kvrun();
            c.args(["--vault-suffix", "vault.localhost:47501"]);
            c
        }),
    ] {
        let output = run(command.env("DB", reference).args(["--", "env", "-0"]));
        assert_eq!(output.status.code(), Some(64), "{how}: {}", stderr(&output));
        assert_eq!(
            stderr(&output),
            "error: invalid value 'vault.localhost:47501' for '--vault-suffix <SUFFIX>': \
             not a DNS suffix: a port does not belong in it (write e.g. vault.azurestack.local)\n\
             \n\
             For more information, try '--help'.\n",
            "{how}"
        );
        assert!(output.stdout.is_empty(), "{how}: the command never ran");
    }
    assert!(world.fake.requests().is_empty());
}

/// kvrun's stderr with the fake's random port replaced by `PORT`.
fn stderr_without_port(world: &World, output: &std::process::Output) -> String {
    stderr(output).replace(&world.fake.port().to_string(), "PORT")
}

#[test]
fn an_allow_list_entry_admits_its_own_port_only_and_no_port_means_443() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "s3cret");
    let refused = "kvrun: error: references name vaults outside the vault allow-list; nothing was fetched\n  \
         kv1.vault.localhost:PORT (not in --allow-vault): DB (environment)\n";
    for entry in [
        "https://kv1.vault.localhost:8443",
        "kv1.vault.localhost:8443",
        "kv1.vault.localhost",
        "https://kv1.vault.localhost/",
    ] {
        let output = run(world.kvrun().env("DB", world.url("kv1", "db")).args([
            "--allow-vault",
            entry,
            "--",
            "env",
            "-0",
        ]));
        assert_eq!(
            output.status.code(),
            Some(77),
            "{entry}: {}",
            stderr(&output)
        );
        assert_eq!(stderr_without_port(&world, &output), refused, "{entry}");
    }
    assert!(world.fake.requests().is_empty(), "no token went anywhere");

    // The manifest's list follows the same rule.
    world.write("kvrun.toml", "allowed_vaults = [\"kv1.vault.localhost\"]\n");
    let output = run(world
        .kvrun()
        .env("DB", world.url("kv1", "db"))
        .args(["--", "env", "-0"]));
    assert_eq!(output.status.code(), Some(77), "{}", stderr(&output));
    assert_eq!(
        stderr_without_port(&world, &output),
        refused.replace("--allow-vault", "the manifest's allowed_vaults")
    );
    assert!(world.fake.requests().is_empty());

    // Naming the port admits it, on the command line and in the manifest.
    let port = world.fake.port();
    world.write(
        "kvrun.toml",
        &format!("allowed_vaults = [\"kv1.vault.localhost:{port}\"]\n"),
    );
    for entry in [
        format!("kv1.vault.localhost:{port}"),
        format!("https://KV1.vault.localhost:{port}/"),
    ] {
        let output = run(world.kvrun().env("DB", world.url("kv1", "db")).args([
            "--allow-vault",
            &entry,
            "--",
            "env",
            "-0",
        ]));
        assert_eq!(child_env(&output)["DB"], "s3cret", "{entry}");
    }
}

#[test]
fn an_allow_list_entry_that_is_not_a_vault_host_and_port_is_a_usage_error() {
    let world = World::new();
    for (entry, message) in [
        (
            "kv1.vault.localhost:99999",
            "--allow-vault: 'kv1.vault.localhost:99999' is not a vault host like myvault.vault.azure.net[:port] (for other vault hosts, add --vault-suffix)",
        ),
        (
            "https://kv1.vault.localhost/secrets/db",
            "--allow-vault: 'https://kv1.vault.localhost/secrets/db' is not a vault host like myvault.vault.azure.net[:port] (for other vault hosts, add --vault-suffix)",
        ),
        (
            "example.com:443",
            "--allow-vault: 'example.com:443' is not a vault host like myvault.vault.azure.net[:port] (for other vault hosts, add --vault-suffix)",
        ),
    ] {
        let output = run(world.kvrun().args(["--allow-vault", entry, "--", "true"]));
        assert_eq!(
            output.status.code(),
            Some(64),
            "{entry}: {}",
            stderr(&output)
        );
        assert_eq!(
            stderr(&output),
            format!("kvrun: error: {message}\n"),
            "{entry}"
        );
    }
}
