//! Generated variable names: the one rule for every variable whose name kvrun makes from a key
//! it did not choose — a bundle's JSON keys and `.env` keys (`[[env_from]]`, `--env-from`), and
//! App Configuration keys.
//!
//! The rule: each character outside `[A-Za-z0-9_]` becomes `_`; a name that would start with a
//! digit gets a `_` in front; case is kept. So `db.host` → `db_host`, `2fa-key` → `_2fa_key`,
//! `Db:Host` → `Db_Host` (App Configuration turns `:` into `__` before this rule). The result is
//! a name every shell, `env` and language runtime accepts. Two different keys that give one name
//! are an error naming both ([`Names::claim`]), never a silent last-one-wins.

use std::collections::HashMap;

/// The variable name for `key`, after `prefix` (which is configuration, already a valid name).
#[must_use]
pub fn variable_name(prefix: &str, key: &str) -> String {
    let mut name = String::with_capacity(prefix.len() + key.len() + 1);
    name.push_str(prefix);
    if name.is_empty() && key.starts_with(|c: char| c.is_ascii_digit()) {
        name.push('_');
    }
    name.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    name
}

/// Whether `text` is a name the rule could have made: `[A-Za-z_][A-Za-z0-9_]*`, for a prefix.
#[must_use]
pub fn is_plain_name(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The names given out so far, and the key each came from.
#[derive(Debug, Default)]
pub struct Names {
    keys: HashMap<String, String>,
}

impl Names {
    /// Take `name` for `key`.
    ///
    /// # Errors
    /// Another key already gave `name` (the message names both keys and the name).
    pub fn claim(&mut self, name: &str, key: &str) -> Result<(), String> {
        if let Some(earlier) = self.keys.get(name) {
            return Err(format!(
                "keys '{earlier}' and '{key}' both become variable {name}"
            ));
        }
        self.keys.insert(name.to_owned(), key.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        let cases = [
            ("", "username", "username"),
            ("", "db.host", "db_host"),
            ("", "Db:Host", "Db_Host"),
            ("", "2fa-key", "_2fa_key"),
            ("APP_", "2fa", "APP_2fa"),
            ("", "ключ", "____"),
            ("", "a b=c", "a_b_c"),
            ("", "_x", "_x"),
            ("APP_", "db__host", "APP_db__host"),
            ("", "", ""),
        ];
        for (prefix, key, name) in cases {
            assert_eq!(variable_name(prefix, key), name, "{prefix:?} {key:?}");
        }
    }

    #[test]
    fn plain_names() {
        for good in ["APP_", "_", "a1", "Z"] {
            assert!(is_plain_name(good), "{good}");
        }
        for bad in ["", "1A", "A-B", "A.B", "É"] {
            assert!(!is_plain_name(bad), "{bad}");
        }
    }

    #[test]
    fn two_keys_one_name_is_an_error_naming_both() {
        let mut names = Names::default();
        names.claim("db_host", "db.host").unwrap();
        names.claim("db_port", "db.port").unwrap();
        assert_eq!(
            names.claim("db_host", "db-host").unwrap_err(),
            "keys 'db.host' and 'db-host' both become variable db_host"
        );
    }
}
