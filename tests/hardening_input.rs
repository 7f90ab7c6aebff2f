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
