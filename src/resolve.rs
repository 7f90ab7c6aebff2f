//! Fetch every distinct secret of a plan, concurrently, and collect *all* outcomes.
//!
//! All vaults at once; per vault, one unauthenticated probe learns the challenge (while the token
//! for the expected tenant is already being requested), then up to `concurrency` requests are in
//! flight. A vault-level failure (unreachable, untrusted certificate, hostile challenge) fails that
//! vault's secrets at once instead of sending one doomed request per secret. The deadline covers the
//! whole resolution; whatever has not finished by then is reported as timed out. [`crate::timing`] says
//! where the time went (`-v`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::{FailureClass, Problem};
use crate::reference::SecretRef;
use crate::vault::challenge::Challenge;
use crate::vault::{FetchError, FirstAnswer, SecretValue, VaultClient};

pub(crate) type Outcome = Result<SecretValue, FetchError>;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// Requests in flight per vault.
    pub concurrency: usize,
    /// One request at a time across all vaults.
    pub sequential: bool,
    pub timeout: Duration,
}

type Slots = Arc<Mutex<Vec<Option<Outcome>>>>;

fn store(slots: &Slots, index: usize, outcome: Outcome) {
    slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)[index] = Some(outcome);
}

/// Resolve `secrets`; the result has one outcome per secret, in the same order.
pub(crate) async fn resolve(
    client: Arc<VaultClient>,
    secrets: &[SecretRef],
    options: Options,
) -> Vec<Outcome> {
    crate::timing::resolving();
    let slots: Slots = Arc::new(Mutex::new(vec![None; secrets.len()]));
    let mut by_vault: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, secret) in secrets.iter().enumerate() {
        by_vault
            .entry(secret.vault_url.to_ascii_lowercase())
            .or_default()
            .push(i);
    }
    let global = options.sequential.then(|| Arc::new(Semaphore::new(1)));
    let mut vaults = JoinSet::new();
    for indices in by_vault.into_values() {
        let vault_secrets: Vec<(usize, SecretRef)> = indices
            .into_iter()
            .map(|i| (i, secrets[i].clone()))
            .collect();
        vaults.spawn(resolve_vault(
            client.clone(),
            vault_secrets,
            options.concurrency,
            global.clone(),
            slots.clone(),
        ));
    }
    let finished = tokio::time::timeout(options.timeout, async {
        while vaults.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        vaults.abort_all();
    }
    let mut slots = slots
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    slots
        .iter_mut()
        .map(|slot| {
            slot.take().unwrap_or_else(|| {
                let timed_out = format!(
                    "timed out after {}",
                    humantime::format_duration(options.timeout)
                );
                Err(Problem::new(FailureClass::Unavailable, timed_out)
                    .hint("the vault or Entra ID did not answer in time; raise --timeout or check the network")
                    .into())
            })
        })
        .collect()
}

async fn permit(global: Option<&Arc<Semaphore>>) -> Option<tokio::sync::OwnedSemaphorePermit> {
    match global {
        Some(s) => s.clone().acquire_owned().await.ok(),
        None => None,
    }
}

/// The scope a vault's challenge will most likely name: `https://{host minus the vault label}/.default`.
fn expected_scope(secret: &SecretRef) -> Option<String> {
    let host = secret.vault_host();
    host.split_once('.')
        .map(|(_, domain)| format!("https://{domain}/.default"))
}

async fn resolve_vault(
    client: Arc<VaultClient>,
    secrets: Vec<(usize, SecretRef)>,
    concurrency: usize,
    global: Option<Arc<Semaphore>>,
    slots: Slots,
) {
    let started = std::time::Instant::now();
    let (first_index, first) = secrets[0].clone();
    // A vault seen earlier in this process (a `--watch` check) is not challenged again.
    let known = client.known_challenge(&first);
    // Overlap the token request with the challenge round trip. The token goes nowhere until the
    // challenge has been verified; a wrong guess only costs one unused token.
    if known.is_none()
        && let (Some(tenant), Some(scope)) = (
            client.credentials().expected_tenant(),
            expected_scope(&first),
        )
    {
        let tenant = tenant.to_owned();
        let client = client.clone();
        tokio::spawn(async move {
            let _ = client.token(&tenant, &scope).await;
        });
    }
    // How many requests follow the probe at once: on an HTTP/1.1-only vault their connections
    // are opened while the challenge and the token are in flight (an h2 vault needs none; nor
    // does sequential mode, which uses one).
    let warm = if global.is_some() {
        0
    } else {
        secrets.len().min(concurrency) - 1
    };
    let probe = if let Some(challenge) = known {
        Ok(FirstAnswer::Challenge(challenge))
    } else {
        let _permit = permit(global.as_ref()).await;
        let _span = crate::timing::Phase::Challenge.span();
        client.probe(&first, warm).await
    };
    let challenge: Option<Arc<Challenge>> = match probe {
        Ok(FirstAnswer::Challenge(c)) => {
            tracing::debug!(vault = first.vault_host(), tenant = %c.tenant, scope = %c.scope, warm, "challenge verified");
            Some(Arc::new(c))
        }
        Ok(FirstAnswer::Value(v)) => {
            store(&slots, first_index, Ok(v));
            None
        }
        Err(e) if e.vault_wide => {
            // The vault as a whole cannot be used: every secret in it fails the same way,
            // without one doomed request per secret.
            for (i, _) in &secrets {
                store(&slots, *i, Err(e.clone()));
            }
            return;
        }
        Err(e) => {
            // An answer about this secret alone, from a vault that did not challenge.
            store(&slots, first_index, Err(e));
            None
        }
    };
    let secrets_count = secrets.len();
    let limit = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    for (index, secret) in secrets {
        if challenge.is_none() && index == first_index {
            continue;
        }
        // Spawn a fetch only when one of the vault's `concurrency` slots is free, and reap the
        // finished ones as we go: a task keeps its whole future's allocation until it is joined,
        // so spawning every secret up front cost ~25 KiB per secret (35 MB of peak RSS at 1,000).
        let Ok(slot) = limit.clone().acquire_owned().await else {
            break; // never closed
        };
        while tasks.try_join_next().is_some() {}
        let (client, challenge, global, slots) = (
            client.clone(),
            challenge.clone(),
            global.clone(),
            slots.clone(),
        );
        tasks.spawn(async move {
            let _slot = slot;
            let _permit = permit(global.as_ref()).await;
            let outcome = match &challenge {
                Some(c) => client.fetch(&secret, c).await,
                // The vault answered without a challenge: ask each secret the same way.
                None => match client.probe(&secret, 0).await {
                    Ok(FirstAnswer::Value(v)) => Ok(v),
                    Ok(FirstAnswer::Challenge(c)) => client.fetch(&secret, &c).await,
                    Err(e) => Err(e),
                },
            };
            store(&slots, index, outcome);
        });
    }
    while tasks.join_next().await.is_some() {}
    tracing::info!(
        vault = first.vault_host(),
        secrets = secrets_count,
        elapsed_ms = started.elapsed().as_millis(),
        "vault done"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_scope_is_the_vault_domain() {
        let secret = SecretRef {
            vault_url: "https://kv.vault.localhost:8443".into(),
            name: "x".into(),
            version: None,
        };
        assert_eq!(
            expected_scope(&secret).as_deref(),
            Some("https://vault.localhost/.default")
        );
    }
}
