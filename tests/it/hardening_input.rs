//! Issue 12, items 5, 6, 11 and 12: input that is meant as a reference never reaches the app as
//! text, the vault allow-list matches ports, and manifest typos say what is wrong and where.
//! Each test is named after the bug it pins and asserts the whole error text.

use crate::common::*;

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

const NOT_AN_IDENTIFIER: &str = "not a secret identifier: on a vault host only /secrets/NAME[/VERSION] is a reference, and only the vault URL itself, /keys/… and /certificates/… pass through as text";
const NOT_PLAIN: &str = "the path must be written plainly: no '.' or '..' segment, no %2e or %2f, no backslash, space or control character";

#[test]
#[expect(clippy::too_many_lines, reason = "one table of cases")]
fn near_misses_on_a_vault_host_are_errors_never_literals() {
    let world = World::new();
    world.fake.vault("kv1").set_secret("db", "s3cret");
    world.fake.vault("kv1").set_secret("x", "s3cret-x");
    let v = world.fake.vault_url("kv1");
    let port = world.fake.port();
    let identifier_hint =
        "a secret identifier looks like https://kv1.vault.localhost:PORT/secrets/NAME[/VERSION]";
    let plain_hint = "write it as https://kv1.vault.localhost:PORT/secrets/NAME[/VERSION]";
    let disguised = "the host normalises to the vault host kv1.vault.localhost: it is spelled with percent-encoding or characters that are not plain ASCII";
    let disguised_hint = "write the host plainly, as https://kv1.vault.localhost:PORT/…";
    for (value, message, hint) in [
        (
            format!("{v}/secret/db"),
            NOT_AN_IDENTIFIER.to_owned(),
            identifier_hint,
        ),
        (
            format!("{v}/db"),
            NOT_AN_IDENTIFIER.to_owned(),
            identifier_hint,
        ),
        (
            format!("{v}/secrets/%2e%2e/keys/x"),
            NOT_PLAIN.to_owned(),
            plain_hint,
        ),
        (
            format!("{v}/secrets/%2E./keys/x"),
            NOT_PLAIN.to_owned(),
            plain_hint,
        ),
        (
            format!("{v}/keys/../secrets/db"),
            NOT_PLAIN.to_owned(),
            plain_hint,
        ),
        (
            format!("{v}/secrets/./db"),
            NOT_PLAIN.to_owned(),
            plain_hint,
        ),
        (
            format!("{v}/secrets/db%2Fv1"),
            NOT_PLAIN.to_owned(),
            plain_hint,
        ),
        (
            format!("{v}\\secrets\\db"),
            NOT_PLAIN.to_owned(),
            plain_hint,
        ),
        (
            format!("{v}/secrets/d\tb"),
            NOT_PLAIN.to_owned(),
            plain_hint,
        ),
        (
            format!("https://kv1%2evault%2elocalhost:{port}/secrets/db"),
            disguised.to_owned(),
            disguised_hint,
        ),
        (
            format!("https://kv1\u{3002}vault\u{3002}localhost:{port}/secrets/db"),
            disguised.to_owned(),
            disguised_hint,
        ),
        (
            format!("https://kv1\u{ff0e}vault\u{ff0e}localhost:{port}/secrets/db"),
            disguised.to_owned(),
            disguised_hint,
        ),
        (
            format!("https://\u{ff4b}v1.vault.localhost:{port}/secrets/db"),
            disguised.to_owned(),
            disguised_hint,
        ),
        (
            format!("pre-{{{{ {v}/secret/db }}}}-post"),
            format!("in {{{{ … }}}}: {NOT_AN_IDENTIFIER}"),
            identifier_hint,
        ),
        (
            format!("pre-{{{{ https://kv1%2evault%2elocalhost:{port}/secrets/db }}}}"),
            format!("in {{{{ … }}}}: {disguised}"),
            disguised_hint,
        ),
        (
            format!(
                "@Microsoft.KeyVault(SecretUri=https://kv1%2evault%2elocalhost:{port}/secrets/db)"
            ),
            disguised.to_owned(),
            disguised_hint,
        ),
        (
            format!("@Microsoft.KeyVault(SecretUri={v}/secrets/%2e%2e/keys/x)"),
            NOT_PLAIN.to_owned(),
            plain_hint,
        ),
    ] {
        let output = run(world.kvrun().env("DB", &value).args(["--", "env", "-0"]));
        assert_eq!(
            output.status.code(),
            Some(65),
            "{value}: {}",
            stderr(&output)
        );
        assert_eq!(
            stderr_without_port(&world, &output),
            format!("kvrun: error: environment variable DB: {message}\nhint: {hint}\n"),
            "{value}"
        );
        assert!(output.stdout.is_empty(), "{value}: the command never ran");
    }
    assert!(world.fake.requests().is_empty(), "nothing was fetched");
}

#[test]
fn a_near_miss_in_a_dotenv_file_names_its_line() {
    let world = World::new();
    let v = world.fake.vault_url("kv1");
    let identifier_hint =
        "a secret identifier looks like https://kv1.vault.localhost:PORT/secrets/NAME[/VERSION]";
    world.write(".env", &format!("A=1\nDB={v}/secret/db\n"));
    let output = run(world.kvrun().args(["--", "env", "-0"]));
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert_eq!(
        stderr_without_port(&world, &output),
        format!("kvrun: error: .env:2: DB: {NOT_AN_IDENTIFIER}\nhint: {identifier_hint}\n")
    );
}

#[test]
fn vault_urls_keys_certificates_and_other_hosts_stay_literals() {
    let world = World::new();
    let v = world.fake.vault_url("kv1");
    let values = [
        v.clone(),
        format!("{v}/"),
        format!("{v}/keys/k/1"),
        format!("{v}/certificates/c"),
        format!("{v}/?k=1"),
        "https://example.com/secrets/x".to_owned(),
        "https://example.com/secret/x".to_owned(),
        "https://example.com/secrets/%2e%2e/keys/x".to_owned(),
        "https://b\u{fc}cher.example/secrets/x".to_owned(),
    ];
    let mut command = world.kvrun();
    for (i, value) in values.iter().enumerate() {
        command.env(format!("V{i}"), value);
    }
    let env = child_env(&run(command.args(["--", "env", "-0"])));
    for (i, value) in values.iter().enumerate() {
        assert_eq!(&env[&format!("V{i}")], value);
    }
    assert!(world.fake.requests().is_empty());
}

#[test]
fn a_manifest_typo_inside_an_inline_table_names_the_key_or_the_type_and_where() {
    let world = World::new();
    let keys = "the keys of an entry are secret, vault, version, field, part, optional, value, file, mode and owner";
    for (entry, want) in [
        (
            "A = { secret = \"x\", optinal = true }",
            format!(
                "kvrun: error: kvrun.toml:3:21: A: unknown key 'optinal' (did you mean 'optional'?)\nhint: {keys}\n"
            ),
        ),
        (
            "A = { secret = \"x\", colour = \"red\" }",
            format!("kvrun: error: kvrun.toml:3:21: A: unknown key 'colour'\nhint: {keys}\n"),
        ),
        (
            "A = 5",
            "kvrun: error: kvrun.toml:3:5: A: an entry is a string (a secret name or a reference) or a table, not an integer\nhint: a plain value goes in a table: A = { value = \"…\" }\n".to_owned(),
        ),
        (
            "A = { secret = 5 }",
            "kvrun: error: kvrun.toml:3:16: A: 'secret' must be a string, not an integer\n".to_owned(),
        ),
        (
            "A = { secret = \"x\", optional = \"yes\" }",
            "kvrun: error: kvrun.toml:3:32: A: 'optional' must be true or false, not a string\n".to_owned(),
        ),
        (
            "A = { secret = \"x\", file = true, mode = -1 }",
            "kvrun: error: kvrun.toml:3:41: A: 'mode' must be an octal file mode such as \"0440\" or 0o440\n".to_owned(),
        ),
        (
            "A = { secret = \"x\", vault = \"myvault\" }",
            "kvrun: error: kvrun.toml:3:29: A: 'myvault' is not a vault URL\nhint: write it as a URL: https://myvault.vault.localhost\n".to_owned(),
        ),
    ] {
        world.write(
            "kvrun.toml",
            &format!("vault = \"https://kv1.vault.localhost\"\n[env]\n{entry}\n"),
        );
        let output = run(world.kvrun().args(["--", "env", "-0"]));
        assert_eq!(output.status.code(), Some(65), "{entry}: {}", stderr(&output));
        assert_eq!(stderr(&output), want, "{entry}");
    }
    assert!(world.fake.requests().is_empty());
}

#[test]
fn a_manifest_vault_that_is_a_bare_name_says_what_a_vault_url_looks_like() {
    let world = World::new();
    for (vault, want) in [
        (
            "myvault",
            "kvrun: error: kvrun.toml:1:9: 'myvault' is not a vault URL\nhint: write it as a URL: https://myvault.vault.localhost\n",
        ),
        (
            "kv1.vault.localhost",
            "kvrun: error: kvrun.toml:1:9: 'kv1.vault.localhost' is not a vault URL\nhint: write it as a URL: https://kv1.vault.localhost\n",
        ),
        (
            "my vault",
            "kvrun: error: kvrun.toml:1:9: 'my vault' is not a vault URL\nhint: a vault URL looks like https://myvault.vault.azure.net\n",
        ),
        (
            "https://kv1%2evault%2elocalhost",
            "kvrun: error: kvrun.toml:1:9: 'https://kv1%2evault%2elocalhost' is not a vault URL like https://VAULT.vault.azure.net (for other vault hosts, add --vault-suffix)\n",
        ),
    ] {
        world.write(
            "kvrun.toml",
            &format!("vault = \"{vault}\"\n[env]\nA = \"db\"\n"),
        );
        let output = run(world.kvrun().args(["--", "env", "-0"]));
        assert_eq!(
            output.status.code(),
            Some(65),
            "{vault}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), want, "{vault}");
    }
}
