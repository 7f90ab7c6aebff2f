//! `kvrun::reference::classify` and `parse_secret_identifier` on arbitrary text: never panic, and
//! every secret they produce is one kvrun may send a token to.
#![no_main]

use kvrun::reference::{self, Classified, Piece, SecretRef, VaultHosts};
use libfuzzer_sys::fuzz_target;

/// The suffixes the hosts below accept, spelled out here rather than asked of `VaultHosts`.
const KNOWN_SUFFIXES: [&str; 5] = [
    "vault.localhost",
    "vault.azure.net",
    "vault.azure.cn",
    "vault.usgovcloudapi.net",
    "vault.microsoftazure.de",
];

fn hosts() -> VaultHosts {
    VaultHosts::new(&["vault.localhost".to_owned()])
}

/// `https://{label}.{known suffix}[:port]`, lower case; a valid name and version.
fn check_secret(secret: &SecretRef, hosts: &VaultHosts, input: &str) {
    let authority = secret
        .vault_url
        .strip_prefix("https://")
        .unwrap_or_else(|| {
            panic!(
                "vault_url {:?} is not https (input {input:?})",
                secret.vault_url
            )
        });
    let host = match authority.rsplit_once(':') {
        Some((host, port)) => {
            assert!(
                !port.is_empty()
                    && port.bytes().all(|b| b.is_ascii_digit())
                    && port.parse::<u16>().is_ok(),
                "bad port in {:?} (input {input:?})",
                secret.vault_url
            );
            host
        }
        None => authority,
    };
    assert!(
        KNOWN_SUFFIXES.iter().any(|suffix| {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
        }),
        "host {host:?} is not under a known vault suffix (input {input:?})"
    );
    assert!(
        !host
            .bytes()
            .any(|b| b.is_ascii_uppercase() || matches!(b, b'/' | b'@' | b'?' | b'#' | b'\\')),
        "host {host:?} is not a plain lower-case host name (input {input:?})"
    );
    assert!(
        (1..=127).contains(&secret.name.len())
            && secret
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "bad secret name {:?} (input {input:?})",
        secret.name
    );
    if let Some(version) = &secret.version {
        assert!(
            (1..=64).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_alphanumeric()),
            "bad version {version:?} (input {input:?})"
        );
    }
    // The canonical form of a reference is a reference to the same secret.
    let canonical = secret.to_string();
    assert_eq!(
        reference::classify(&canonical, hosts),
        Ok(Classified::Reference(secret.clone())),
        "{canonical:?} does not classify as itself (input {input:?})"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let hosts = hosts();
    match reference::classify(input, &hosts) {
        Ok(Classified::Literal) | Err(_) => {}
        Ok(Classified::Reference(secret)) => check_secret(&secret, &hosts, input),
        Ok(Classified::Template(pieces)) => {
            assert!(
                pieces.iter().any(|p| matches!(p, Piece::Secret(_))),
                "a template without a secret (input {input:?})"
            );
            for piece in &pieces {
                match piece {
                    Piece::Secret(secret) => check_secret(secret, &hosts, input),
                    Piece::Text(text) => {
                        assert!(!text.is_empty(), "empty text piece (input {input:?})")
                    }
                }
            }
        }
    }
    if let Ok(id) = reference::parse_secret_identifier(input) {
        assert_eq!(id.source_id, input);
        assert!(
            id.vault_url.starts_with("https://"),
            "{id:?} (input {input:?})"
        );
        assert!(
            !id.name.is_empty() && !id.name.contains('/'),
            "{id:?} (input {input:?})"
        );
        assert!(
            id.version
                .as_deref()
                .is_none_or(|v| !v.is_empty() && !v.contains('/')),
            "{id:?} (input {input:?})"
        );
    }
});
