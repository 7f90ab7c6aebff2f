//! Instants that cannot overflow: `Instant + Duration` panics past the clock's range, and a
//! duration kvrun computes (a backoff, a `--timeout` from the environment) must never panic it.
//! Shared by the commands (the run's deadline) and the supervisor (checks, stop timeouts).

use std::time::{Duration, Instant};

/// About a century: "never", as far as any deadline of kvrun's goes.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// An instant of either clock: std's, or tokio's (which tests pause and advance).
pub(crate) trait Moment: Copy {
    fn checked_add(self, wait: Duration) -> Option<Self>;
}

impl Moment for Instant {
    fn checked_add(self, wait: Duration) -> Option<Self> {
        Instant::checked_add(&self, wait)
    }
}

impl Moment for tokio::time::Instant {
    fn checked_add(self, wait: Duration) -> Option<Self> {
        tokio::time::Instant::checked_add(&self, wait)
    }
}

/// `now + wait`, or a far future when that would overflow.
#[must_use]
pub(crate) fn after<M: Moment>(now: M, wait: Duration) -> M {
    now.checked_add(wait)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflowing_wait_is_a_far_future_not_a_panic() {
        let now = Instant::now();
        let year = Duration::from_secs(365 * 24 * 60 * 60);
        assert!(after(now, Duration::MAX) > now + year);
        assert_eq!(
            after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        let paused = tokio::time::Instant::now();
        assert!(after(paused, Duration::MAX) > paused + year);
    }
}
