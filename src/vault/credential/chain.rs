//! The chain's configuration: which links kvrun's environment configures, and the error when
//! none of them produced a token.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use azure_core::credentials::Secret;
use zeroize::Zeroizing;

use super::certificate::ClientCertificate;
use super::{
    AZURE_CLIENT_CERTIFICATE_PASSWORD, AZURE_CLIENT_CERTIFICATE_PATH, AZURE_CLIENT_ID,
    AZURE_CLIENT_SECRET, AZURE_FEDERATED_TOKEN_FILE, AZURE_TENANT_ID, Config, Kind, LinkError,
    Problem, managed,
};
use crate::error::FailureClass;

/// A configured link.
pub(super) enum Link {
    ClientSecret {
        tenant: String,
        client_id: String,
        secret: Secret,
    },
    ClientCertificate {
        tenant: String,
        client_id: String,
        certificate: Arc<ClientCertificate>,
    },
    WorkloadIdentity {
        tenant: String,
        client_id: String,
        token_file: PathBuf,
    },
    ManagedIdentity(managed::ManagedIdentity),
    AzureCli,
    Azd,
}

/// One link's configuration from the environment, or why it is not configured.
pub(super) fn configure(kind: Kind, config: &Config) -> Result<Link, LinkError> {
    let tenant = config.tenant_id.as_deref();
    let client_id = config.client_id.as_deref();
    let missing = |what: &str, hint: String| {
        Err(LinkError::unavailable(
            format!("{what} is not set"),
            Some(hint),
        ))
    };
    match kind {
        Kind::Env => {
            let secret = config.client_secret.as_deref().map(String::as_str);
            let certificate = config.client_certificate_path.as_deref();
            if secret.is_none() && certificate.is_none() {
                return Err(LinkError::unavailable(
                    format!(
                        "neither {AZURE_CLIENT_SECRET} nor {AZURE_CLIENT_CERTIFICATE_PATH} is set"
                    ),
                    Some(format!(
                        "for a service principal, set {AZURE_TENANT_ID}, {AZURE_CLIENT_ID} and {AZURE_CLIENT_SECRET} or {AZURE_CLIENT_CERTIFICATE_PATH}"
                    )),
                ));
            }
            let (Some(tenant), Some(client_id)) = (tenant, client_id) else {
                let absent = if tenant.is_none() {
                    AZURE_TENANT_ID
                } else {
                    AZURE_CLIENT_ID
                };
                // Half a service principal is a mistake to show, not a reason to fall through
                // to whatever `az login` happens to be on the machine.
                return Err(LinkError::failed(
                    Problem::new(
                        FailureClass::Authentication,
                        format!("a service principal is half configured: {absent} is not set"),
                    )
                    .hint(format!(
                        "a service principal needs {AZURE_TENANT_ID} and {AZURE_CLIENT_ID} too"
                    )),
                ));
            };
            let (tenant, client_id) = (tenant.to_owned(), client_id.to_owned());
            if let Some(secret) = secret {
                return Ok(Link::ClientSecret {
                    tenant,
                    client_id,
                    secret: Secret::new(secret.to_owned()),
                });
            }
            let path = certificate.unwrap_or_default();
            let bytes = read_small_file(path).map_err(|e| {
                LinkError::failed(
                    Problem::new(
                        FailureClass::Authentication,
                        format!("{AZURE_CLIENT_CERTIFICATE_PATH} ({path}) cannot be read"),
                    )
                    .caused_by(e),
                )
            })?;
            let certificate = ClientCertificate::load(
                &bytes,
                config.client_certificate_password.as_deref().map(String::as_str),
            )
                .map_err(|e| {
                    let hint = e.hint();
                    LinkError::failed(Problem::new(FailureClass::Authentication, format!("{AZURE_CLIENT_CERTIFICATE_PATH} ({path})")).caused_by(e).hint(hint.map_or_else(
                            || format!("PEM with an unencrypted private key, or PKCS#12 with {AZURE_CLIENT_CERTIFICATE_PASSWORD}"),
                            str::to_owned,
                        )))
                })?;
            Ok(Link::ClientCertificate {
                tenant,
                client_id,
                certificate: Arc::new(certificate),
            })
        }
        Kind::WorkloadIdentity => {
            let Some(file) = config.federated_token_file.as_deref() else {
                return missing(
                    AZURE_FEDERATED_TOKEN_FILE,
                    "on AKS, label the pod azure.workload.identity/use: \"true\" and give its service account the azure.workload.identity/client-id annotation".into(),
                );
            };
            let (Some(tenant), Some(client_id)) = (tenant, client_id) else {
                let absent = if tenant.is_none() {
                    AZURE_TENANT_ID
                } else {
                    AZURE_CLIENT_ID
                };
                return missing(absent, "the workload identity webhook sets it; check the pod's service account annotation".into());
            };
            Ok(Link::WorkloadIdentity {
                tenant: tenant.to_owned(),
                client_id: client_id.to_owned(),
                token_file: PathBuf::from(file),
            })
        }
        Kind::ManagedIdentity => Ok(Link::ManagedIdentity(managed::ManagedIdentity::new(config))),
        Kind::AzureCli => Ok(Link::AzureCli),
        Kind::Azd => Ok(Link::Azd),
    }
}

/// A certificate file: a regular file of at most 1 MiB (not a FIFO that blocks, not /dev/zero).
/// It holds the private key (PEM) or the PKCS#12 archive: wiped when dropped.
fn read_small_file(path: &str) -> std::io::Result<Zeroizing<Vec<u8>>> {
    const LIMIT: u64 = 1024 * 1024;
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() || metadata.len() > LIMIT {
        return Err(std::io::Error::other("not a regular file of at most 1 MiB"));
    }
    std::fs::read(path).map(Zeroizing::new)
}

/// The error when no link produced a token: every link tried and why, one per line.
pub(super) fn chain_failure(tried: &[(Kind, Problem)], stopped: bool) -> Problem {
    if let ([(_, only)], true) = (tried, stopped) {
        return only.clone();
    }
    let mut reason = String::from(if stopped {
        "a configured credential was refused"
    } else {
        "no credential could get a token"
    });
    let mut class = FailureClass::Authentication;
    for (kind, failure) in tried {
        let _ = write!(reason, "\n      {}: {failure}", kind.name());
        if let Some(hint) = &failure.hint {
            let _ = write!(reason, " (hint: {hint})");
        }
        class = failure.class;
    }
    if !stopped {
        class = FailureClass::Authentication;
    }
    Problem::new(class, reason)
        .hint("configure one credential: see \"Credentials\" in kvrun's README")
}
