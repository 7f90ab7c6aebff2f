//! The Azure SDKs' multi-tenant rule: the vault's challenge names the tenant; when the credential
//! has a tenant of its own (`AZURE_TENANT_ID`) and the challenge names another, kvrun follows it
//! only to a tenant listed in `AZURE_ADDITIONALLY_ALLOWED_TENANTS` (or `*`). Managed identities
//! have one tenant and are not asked.

use super::{AZURE_ADDITIONALLY_ALLOWED_TENANTS, AZURE_TENANT_ID, LinkError, Problem};
use crate::error::FailureClass;

/// The tenants a challenge may lead to besides the credential's own.
#[derive(Debug, Default)]
pub(super) struct Policy {
    allowed: Vec<String>,
}

impl Policy {
    /// `AZURE_ADDITIONALLY_ALLOWED_TENANTS`: tenant IDs separated by `,` or `;`, or `*`.
    pub(super) fn new(allowed: Option<&str>) -> Self {
        Self {
            allowed: allowed
                .unwrap_or_default()
                .split([',', ';'])
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect(),
        }
    }

    /// May a credential of tenant `configured` (none: any) get a token for `requested`?
    pub(super) fn check(&self, configured: Option<&str>, requested: &str) -> Result<(), LinkError> {
        let Some(own) = configured else {
            return Ok(());
        };
        if requested.eq_ignore_ascii_case(own)
            || self
                .allowed
                .iter()
                .any(|t| t == "*" || t.eq_ignore_ascii_case(requested))
        {
            return Ok(());
        }
        Err(LinkError::failed(Problem::new(FailureClass::Authentication, format!(
                "the vault belongs to tenant {requested}, but {AZURE_TENANT_ID} is {own}"
            )).hint(format!(
                "set {AZURE_TENANT_ID} to the tenant ID the vault names ({requested}) if it is the same directory under another name; to sign in to another tenant, add it to {AZURE_ADDITIONALLY_ALLOWED_TENANTS} (or '*')"
            ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &str) -> Policy {
        Policy::new(Some(allowed))
    }

    #[test]
    fn the_own_tenant_and_listed_ones_only() {
        let listed = policy(" B-Tenant ;c");
        assert!(listed.check(Some("a"), "A").is_ok(), "its own, in any case");
        assert!(listed.check(Some("a"), "b-tenant").is_ok());
        assert!(listed.check(Some("a"), "C").is_ok());
        let refused = listed.check(Some("a"), "d").unwrap_err();
        assert!(!refused.unavailable, "a refusal stops the chain");
        assert_eq!(
            refused.failure.to_string(),
            "the vault belongs to tenant d, but AZURE_TENANT_ID is a"
        );
        assert!(policy("*").check(Some("a"), "anything").is_ok());
        assert!(
            policy("").check(None, "anything").is_ok(),
            "no tenant of its own"
        );
        assert!(policy("").check(Some("a"), "b").is_err());
    }
}
