//! How many requests kvrun keeps in flight to one vault: as many as the caller allows until the
//! vault throttles (429); then one, growing back by one with each success (additive increase,
//! as TCP after a loss). A throttled vault so sees fewer requests from kvrun while it recovers,
//! instead of every waiting request coming back at once. Requests already in flight are not
//! cancelled; new ones wait for a free place.

use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// The in-flight limit of one vault (see the module docs).
#[derive(Debug)]
pub struct Throttle {
    state: Mutex<State>,
    freed: Notify,
}

#[derive(Debug)]
struct State {
    /// Requests allowed in flight; `usize::MAX` until the first 429.
    limit: usize,
    in_flight: usize,
}

/// A place in flight; dropping it frees the place.
#[derive(Debug)]
pub struct Place<'a>(&'a Throttle);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
        self.0.freed.notify_one();
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                limit: usize::MAX,
                in_flight: 0,
            }),
            freed: Notify::new(),
        }
    }
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait for a place in flight.
    pub async fn enter(&self) -> Place<'_> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a place freed in between is not missed.
            freed.as_mut().enable();
            {
                let mut state = self.lock();
                if state.in_flight < state.limit {
                    state.in_flight += 1;
                    return Place(self);
                }
            }
            freed.await;
        }
    }

    /// The vault answered 429: one request in flight from now on.
    pub fn throttled(&self) {
        self.lock().limit = 1;
    }

    /// A request went through: one more may be in flight.
    pub fn succeeded(&self) {
        let more = {
            let mut state = self.lock();
            state.limit = state.limit.saturating_add(1);
            state.in_flight < state.limit
        };
        if more {
            self.freed.notify_one();
        }
    }

    #[cfg(test)]
    fn limit(&self) -> usize {
        self.lock().limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn after_a_429_one_request_at_a_time_growing_back_with_success() {
        let throttle = Throttle::default();
        let a = throttle.enter().await;
        let b = throttle.enter().await;
        throttle.throttled();
        assert_eq!(throttle.limit(), 1);
        // Two in flight, a limit of one: a third waits until both have left.
        let mut third = Box::pin(throttle.enter());
        assert!(futures_poll(&mut third).is_none());
        drop(a);
        assert!(futures_poll(&mut third).is_none(), "still one in flight");
        drop(b);
        let c = futures_poll(&mut third).expect("a place is free");
        // A success lets a second one in.
        let mut fourth = Box::pin(throttle.enter());
        assert!(futures_poll(&mut fourth).is_none());
        throttle.succeeded();
        assert_eq!(throttle.limit(), 2);
        let d = futures_poll(&mut fourth).expect("the limit grew");
        drop((c, d));
    }

    /// Poll a future once.
    fn futures_poll<F: std::future::Future + Unpin>(future: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(future).poll(&mut cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }
}
