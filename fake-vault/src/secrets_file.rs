//! The `kvrun-fake` binary's secrets file: `{"vault": {"name": "value", …}, …}`, loaded at start
//! and watched while the fake runs, so that a demo can rotate a secret by editing the file (and
//! see `kvrun --watch` restart its command).

use std::collections::BTreeMap;

use crate::FakeAzure;

/// Vault name → secret name → value.
pub type Secrets = BTreeMap<String, BTreeMap<String, String>>;

/// The secrets in `text`.
///
/// # Errors
/// Text that is not a JSON object of objects of strings, saying what was expected.
pub fn parse(text: &str) -> Result<Secrets, String> {
    serde_json::from_str(text)
        .map_err(|e| format!("expected {{\"vault\": {{\"name\": \"value\"}}}}: {e}"))
}

/// Makes the fake serve `new` where it served `old`: a secret that is new, or whose value
/// changed, gets a new version, which becomes its latest (as a Key Vault "set secret" does; the
/// old versions stay, pinned references keep working). A secret no longer in the file keeps its
/// versions: the fake, like Key Vault, never deletes on an update. One line per change, naming
/// the vault, the secret and the new version — never the value.
#[must_use]
pub fn apply(fake: &FakeAzure, old: &Secrets, new: &Secrets) -> Vec<String> {
    let mut changes = Vec::new();
    for (vault, entries) in new {
        let handle = fake.vault(vault);
        for (name, value) in entries {
            let before = old.get(vault).and_then(|e| e.get(name));
            if before == Some(value) {
                continue;
            }
            let version = handle.set_secret(name, value);
            let what = if before.is_some() { "rotated" } else { "added" };
            changes.push(format!(
                "{} secret {name} {what}: version {version}",
                handle.url()
            ));
        }
    }
    changes
}
