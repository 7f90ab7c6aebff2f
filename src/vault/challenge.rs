//! Key Vault's challenge-based authentication: parse a `WWW-Authenticate: Bearer …` challenge and
//! verify it before any token is sent (docs/protocol.md §2).
//!
//! The first request to a vault goes without a token; the 401 names the tenant and the resource.
//! A hostile or mistaken "vault" could name `https://vault.azure.net` to collect a token that works
//! on every real vault, so the request's host must lie under the scope's host. Pure.

use url::Url;

/// A verified challenge: whose token to get, and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The tenant named by `authorization`/`authorization_uri` (its first path segment).
    pub tenant: String,
    /// `scope`, or `resource + "/.default"`.
    pub scope: String,
}

/// Why a challenge was refused. Never holds a token (none has been sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    #[error("the 401 response has no Bearer challenge")]
    Missing,
    #[error("the challenge names no {0}")]
    Incomplete(&'static str),
    #[error("the challenge's {field} is not a single valid URL")]
    BadUrl { field: &'static str },
    #[error(
        "the challenge asks for a token for {scope_host}, which {host} does not belong to; no token was sent"
    )]
    WrongDomain { host: String, scope_host: String },
}

/// Split `Bearer k="v", k2="v2"` into pairs. Values may be quoted or bare.
fn params(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.trim_start();
    let (scheme, rest) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = rest.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim_end(), &after[end..])
        };
        out.push((key.trim().to_ascii_lowercase(), value.to_owned()));
        rest = after.trim_start().trim_start_matches(',').trim_start();
    }
    Some(out)
}

/// Parse the challenge and verify it against the host the request went to.
///
/// # Errors
/// A missing or incomplete challenge, or one for a domain `request_host` is not under.
pub fn verify(header: Option<&str>, request_host: &str) -> Result<Challenge, ChallengeError> {
    let params = header.and_then(params).ok_or(ChallengeError::Missing)?;
    let get = |names: &[&str]| {
        names.iter().find_map(|n| {
            params
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        })
    };
    let authorization = get(&["authorization", "authorization_uri"])
        .ok_or(ChallengeError::Incomplete("authorization"))?;
    let scope = match (get(&["scope"]), get(&["resource"])) {
        (Some(scope), _) => scope.to_owned(),
        (None, Some(resource)) => format!("{}/.default", resource.trim_end_matches('/')),
        (None, None) => return Err(ChallengeError::Incomplete("scope or resource")),
    };
    let tenant = Url::parse(authorization)
        .ok()
        .and_then(|u| u.path_segments()?.next().map(str::to_owned))
        // A tenant is a GUID or a domain; it becomes an argument of `az`/`azd`, so nothing else.
        .filter(|t| {
            !t.is_empty()
                && !t.starts_with('-')
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .ok_or(ChallengeError::BadUrl {
            field: "authorization",
        })?;
    // One scope, nothing else: a space would smuggle a second scope into the token request.
    if scope.contains(char::is_whitespace) {
        return Err(ChallengeError::BadUrl { field: "scope" });
    }
    let scope_host = Url::parse(&scope)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .ok_or(ChallengeError::BadUrl { field: "scope" })?;
    let host = request_host.to_ascii_lowercase();
    if !host.ends_with(&format!(".{scope_host}")) {
        return Err(ChallengeError::WrongDomain { host, scope_host });
    }
    Ok(Challenge { tenant, scope })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASSIC: &str = r#"Bearer authorization="https://login.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47", resource="https://vault.azure.net""#;

    #[test]
    fn classic_challenge() {
        assert_eq!(
            verify(Some(CLASSIC), "myvault.vault.azure.net"),
            Ok(Challenge {
                tenant: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
                scope: "https://vault.azure.net/.default".into()
            })
        );
    }

    #[test]
    fn newer_style_challenge() {
        let header = r#"Bearer authorization_uri="https://login.microsoftonline.com/tid/", scope="https://vault.azure.net/.default""#;
        assert_eq!(
            verify(Some(header), "MyVault.Vault.Azure.Net"),
            Ok(Challenge {
                tenant: "tid".into(),
                scope: "https://vault.azure.net/.default".into()
            })
        );
    }

    #[test]
    fn hosts_outside_the_scope_domain_are_refused() {
        for host in [
            "hostvault.azure.net",
            "myvault.vault.azure.net.",
            "vault.azure.net",
            "myvault.vault.azure.cn",
            "evil.example",
        ] {
            assert!(
                matches!(
                    verify(Some(CLASSIC), host),
                    Err(ChallengeError::WrongDomain { .. })
                ),
                "{host}"
            );
        }
    }

    #[test]
    fn a_second_scope_is_refused() {
        let header = r#"Bearer authorization="https://login.windows.net/t", scope="https://vault.azure.net/.default https://graph.microsoft.com/.default""#;
        assert_eq!(
            verify(Some(header), "a.vault.azure.net"),
            Err(ChallengeError::BadUrl { field: "scope" })
        );
    }

    #[test]
    fn a_tenant_that_is_not_a_guid_or_domain_is_refused() {
        for tenant in ["-tenant", "a%20b", "t;x"] {
            let header = format!(
                r#"Bearer authorization="https://login.windows.net/{tenant}", resource="https://vault.azure.net""#
            );
            assert_eq!(
                verify(Some(&header), "a.vault.azure.net"),
                Err(ChallengeError::BadUrl {
                    field: "authorization"
                }),
                "{tenant}"
            );
        }
    }

    #[test]
    fn malformed_challenges() {
        assert_eq!(
            verify(None, "a.vault.azure.net"),
            Err(ChallengeError::Missing)
        );
        assert_eq!(
            verify(Some("Basic realm=\"x\""), "a.vault.azure.net"),
            Err(ChallengeError::Missing)
        );
        assert_eq!(
            verify(
                Some(r#"Bearer resource="https://vault.azure.net""#),
                "a.vault.azure.net"
            ),
            Err(ChallengeError::Incomplete("authorization"))
        );
        assert_eq!(
            verify(
                Some(r#"Bearer authorization="https://login.windows.net/t""#),
                "a.vault.azure.net"
            ),
            Err(ChallengeError::Incomplete("scope or resource"))
        );
        assert_eq!(
            verify(
                Some(
                    r#"Bearer authorization="https://login.windows.net/", resource="https://vault.azure.net""#
                ),
                "a.vault.azure.net"
            ),
            Err(ChallengeError::BadUrl {
                field: "authorization"
            })
        );
    }
}
