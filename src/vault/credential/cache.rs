//! The token cache: one token per (tenant, scope), reused until five minutes before its
//! `expires_on` (the SDKs' margin; half its life when it lives less than ten minutes; five
//! minutes when the issuer did not say), then asked for again.
//!
//! Callers that want the same token at the same moment share one request and its outcome,
//! success or failure: fifty GETs waiting for a token cause one token request, and all fifty
//! see its outcome at once (a `Notify`, not a lock handed from one waiter to the next: with a
//! lock, each GET went out only after the one before it had taken and released the lock, so a
//! vault's h2 requests left one or two per write instead of together). A failure is the answer
//! only for callers of the same resolution (the same deadline), which kvrun's retry rule has
//! already given its chances; the next resolution (a `--watch` check) asks again, so one failed
//! request never poisons a long-running watch. A request that runs into the deadline, or whose
//! caller is dropped, is abandoned, and the next caller asks afresh.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::{Problem, Token};
use crate::error::FailureClass;

/// A token is refreshed this long before it expires (the SDKs' margin).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// How long a token whose expiry is unknown is reused.
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(300);

/// When to stop reusing `token`, received at `now` (`wall` on the system clock).
fn refresh_at(token: &Token, now: Instant, wall: SystemTime) -> Instant {
    let reuse = match token.1 {
        None => UNKNOWN_LIFETIME,
        Some(expires_on) => {
            let lifetime = expires_on.duration_since(wall).unwrap_or_default();
            if lifetime >= 2 * REFRESH_MARGIN {
                lifetime.saturating_sub(REFRESH_MARGIN)
            } else {
                lifetime / 2
            }
        }
    };
    now.checked_add(reuse).unwrap_or(now)
}

/// Every (tenant, scope)'s entry: the tenant in lower case. A list, not a map: a run asks for
/// one or two, and every GET looks its entry up, which a scan does without building a key.
#[derive(Default)]
pub(super) struct Tokens(Mutex<Vec<(String, String, Arc<Slot>)>>);

/// The cache entry of one (tenant, scope).
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    /// Told when the asking caller is done (its outcome stored, or it was dropped).
    done: tokio::sync::Notify,
}

#[derive(Default)]
struct SlotState {
    /// One caller is asking for a token; the others wait for its outcome.
    asking: bool,
    /// The token and when to stop reusing it.
    token: Option<(Token, Instant)>,
    /// The last request's failure and the deadline it was asked under: the answer for every
    /// caller of the same resolution (same deadline), which kvrun's retry rule has already
    /// given its chances; a later resolution (the next `--watch` check) asks again.
    failure: Option<(Instant, Problem)>,
}

impl Slot {
    fn state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SlotState {
    fn fresh(&self, now: Instant) -> Option<Token> {
        self.token
            .as_ref()
            .filter(|(_, refresh_at)| now < *refresh_at)
            .map(|(token, _)| token.clone())
    }
}

/// The asking caller's mark: when it is dropped — the outcome stored, or the caller's future
/// abandoned mid-request — the slot is free again and every waiter looks at it.
struct Asking<'a>(&'a Slot);

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        self.0.state().asking = false;
        self.0.done.notify_waiters();
    }
}

impl Tokens {
    fn slot(&self, tenant: &str, scope: &str) -> Arc<Slot> {
        let mut slots = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, _, slot)) = slots
            .iter()
            .find(|(t, s, _)| t.eq_ignore_ascii_case(tenant) && s == scope)
        {
            return Arc::clone(slot);
        }
        let slot = Arc::<Slot>::default();
        slots.push((
            tenant.to_ascii_lowercase(),
            scope.to_owned(),
            Arc::clone(&slot),
        ));
        slot
    }

    /// The token for (tenant, scope): the cached one while fresh, else the outcome of `request`
    /// (shared with the callers waiting meanwhile; made only then), bounded by `deadline`.
    pub(super) async fn token<F>(
        &self,
        tenant: &str,
        scope: &str,
        deadline: Instant,
        request: impl FnOnce() -> F,
    ) -> Result<Token, Problem>
    where
        F: Future<Output = Result<Token, Problem>>,
    {
        let slot = self.slot(tenant, scope);
        // The common case, every GET after the first: the token is there.
        if let Some(token) = slot.state().fresh(Instant::now()) {
            return Ok(token);
        }
        let asking = loop {
            let done = slot.done.notified();
            tokio::pin!(done);
            // Registered before the look, so an outcome stored in between is not missed.
            done.as_mut().enable();
            {
                let mut state = slot.state();
                if let Some(token) = state.fresh(Instant::now()) {
                    return Ok(token);
                }
                if let Some((asked_under, failure)) = &state.failure
                    && *asked_under == deadline
                {
                    // This resolution's request failed (perhaps while this caller waited).
                    return Err(failure.clone());
                }
                if !state.asking {
                    state.asking = true;
                    break Asking(&slot);
                }
            }
            done.await;
        };
        let outcome = tokio::time::timeout_at(deadline.into(), request())
            .await
            .unwrap_or_else(|_| {
                Err(Problem::new(FailureClass::Unavailable, "no token before the --timeout deadline").hint("Entra ID or the credential did not answer in time; raise --timeout or check the network"))
            });
        let mut state = slot.state();
        match &outcome {
            Ok(token) => {
                let refresh_at = refresh_at(token, Instant::now(), SystemTime::now());
                state.token = Some((token.clone(), refresh_at));
                state.failure = None;
            }
            Err(failure) => state.failure = Some((deadline, failure.clone())),
        }
        drop(state);
        drop(asking);
        outcome
    }

    /// Forget the token for (tenant, scope) if it is still `stale`.
    pub(super) fn invalidate(&self, tenant: &str, scope: &str, stale: &Token) {
        let slot = self.slot(tenant, scope);
        let mut cached = slot.state();
        if cached
            .token
            .as_ref()
            .is_some_and(|(t, _)| t.expose() == stale.expose())
        {
            cached.token = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_reused_until_five_minutes_before_it_expires() {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let token = |lifetime: Option<u64>| {
            Token::new("t".into(), lifetime.map(|s| wall + Duration::from_secs(s)))
        };
        assert_eq!(
            refresh_at(&token(Some(3600)), now, wall),
            now + Duration::from_secs(3300)
        );
        assert_eq!(
            refresh_at(&token(Some(240)), now, wall),
            now + Duration::from_secs(120),
            "a short-lived token is refreshed halfway"
        );
        assert_eq!(refresh_at(&token(None), now, wall), now + UNKNOWN_LIFETIME);
        let expired = Token::new("t".into(), Some(wall - Duration::from_secs(10)));
        assert_eq!(
            refresh_at(&expired, now, wall),
            now,
            "an expired token is not reused"
        );
    }

    fn failure(reason: &str) -> Problem {
        Problem::new(FailureClass::Authentication, reason)
    }

    #[tokio::test]
    async fn a_failure_answers_its_resolution_only() {
        let tokens = Tokens::default();
        let first = Instant::now() + Duration::from_secs(30);
        let failed = tokens
            .token("t", "s", first, || async { Err(failure("refused")) })
            .await;
        assert_eq!(failed.unwrap_err().to_string(), "refused");
        // The same resolution: the failure is the answer, no new request.
        let again = tokens
            .token("t", "s", first, || async {
                panic!("asked again within the resolution")
            })
            .await;
        assert_eq!(again.unwrap_err().to_string(), "refused");
        // The next resolution asks again, and keeps the token it gets.
        let next = first + Duration::from_secs(10);
        let token = tokens
            .token("T", "s", next, || async {
                Ok(Token::new("fresh".into(), None))
            })
            .await
            .unwrap();
        assert_eq!(token.expose(), "fresh");
        let cached = tokens
            .token("t", "s", next + Duration::from_secs(10), || async {
                panic!("the token is fresh")
            })
            .await
            .unwrap();
        assert_eq!(cached.expose(), "fresh");
        tokens.invalidate("t", "s", &cached);
        let refreshed = tokens
            .token("t", "s", next, || async {
                Ok(Token::new("after-401".into(), None))
            })
            .await
            .unwrap();
        assert_eq!(refreshed.expose(), "after-401");
    }

    #[tokio::test]
    async fn each_tenant_and_scope_has_its_own_token() {
        let tokens = Tokens::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        for (tenant, scope) in [("t", "s1"), ("t", "s2"), ("u", "s1")] {
            let token = tokens
                .token(tenant, scope, deadline, || async move {
                    Ok(Token::new(format!("{tenant}/{scope}"), None))
                })
                .await
                .unwrap();
            assert_eq!(token.expose(), format!("{tenant}/{scope}"));
        }
        for (tenant, scope) in [("T", "s2"), ("U", "s1"), ("t", "s1")] {
            let cached = tokens
                .token(tenant, scope, deadline, || async { panic!("cached") })
                .await
                .unwrap();
            assert_eq!(
                cached.expose(),
                format!("{}/{scope}", tenant.to_ascii_lowercase())
            );
        }
    }

    /// Polls `future` once, with a waker that does nothing: the test decides who runs next.
    fn poll_once<F: Future + ?Sized>(future: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    #[tokio::test]
    async fn a_token_reaches_every_waiting_caller_at_once() {
        let tokens = Tokens::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        let mut asker = std::pin::pin!(tokens.token("t", "s", deadline, || async {
            answered.await.expect("the test answers");
            Ok(Token::new("shared".into(), None))
        }));
        let one_request = || async { panic!("a second token request") };
        let mut first = std::pin::pin!(tokens.token("t", "s", deadline, one_request));
        let mut second = std::pin::pin!(tokens.token("t", "s", deadline, one_request));
        assert!(poll_once(asker.as_mut()).is_pending());
        assert!(poll_once(first.as_mut()).is_pending());
        assert!(poll_once(second.as_mut()).is_pending());
        answer.send(()).unwrap();
        let token = |p: std::task::Poll<Result<Token, Problem>>| match p {
            std::task::Poll::Ready(Ok(token)) => Some(token.expose().to_owned()),
            std::task::Poll::Ready(Err(e)) => panic!("{e}"),
            std::task::Poll::Pending => None,
        };
        assert_eq!(token(poll_once(asker.as_mut())).as_deref(), Some("shared"));
        // The second waiter has its token though the first has not run since: no waiter
        // waits for another's turn.
        assert_eq!(token(poll_once(second.as_mut())).as_deref(), Some("shared"));
        assert_eq!(token(poll_once(first.as_mut())).as_deref(), Some("shared"));
    }

    #[tokio::test]
    async fn an_abandoned_request_lets_a_waiter_ask() {
        let tokens = Tokens::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut asker = Box::pin(tokens.token("t", "s", deadline, std::future::pending));
        let mut waiter = std::pin::pin!(tokens.token("t", "s", deadline, || async {
            Ok(Token::new("asked by the waiter".into(), None))
        }));
        assert!(poll_once(asker.as_mut()).is_pending());
        assert!(poll_once(waiter.as_mut()).is_pending());
        drop(asker);
        let std::task::Poll::Ready(Ok(token)) = poll_once(waiter.as_mut()) else {
            panic!("the waiter did not ask once the asker was gone");
        };
        assert_eq!(token.expose(), "asked by the waiter");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_hangs_past_the_deadline_is_abandoned() {
        let tokens = Tokens::default();
        let deadline = Instant::now() + Duration::from_secs(5);
        let hung = tokens.token("t", "s", deadline, std::future::pending).await;
        assert_eq!(
            hung.unwrap_err().to_string(),
            "no token before the --timeout deadline"
        );
        let later = Instant::now() + Duration::from_secs(5);
        let token = tokens
            .token("t", "s", later, || async {
                Ok(Token::new("ok".into(), None))
            })
            .await;
        assert_eq!(token.unwrap().expose(), "ok");
    }
}
