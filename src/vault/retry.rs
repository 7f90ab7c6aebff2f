//! The one rule for "try again?", for every request kvrun sends: Key Vault GETs, and token
//! requests to Entra ID and to a managed identity endpoint. (`azure_core`'s own retry policy is
//! switched off, so that this rule governs all traffic; `az`/`azd` are run once, with their own
//! timeout.)
//!
//! **Transient** ([`transient_status`]): 408, 429, 500, 502, 503, 504, and failures before a status
//! line (a refused or reset connection, an attempt that ran past [`ATTEMPT_TIMEOUT`]). Other 5xx
//! (501 Not Implemented, 505) and everything else are final, because another try cannot change
//! them: TLS verification failures, 400, 401 after a fresh token, 403, 404, redirects, malformed
//! or oversized answers. (IMDS's 410, "not ready yet", is the one documented exception: transient
//! for managed identity only, as Microsoft's IMDS guidance says.)
//!
//! A transient failure is tried again ([`Schedule`]):
//!
//! - **The server said when** (`x-ms-retry-after-ms`, `retry-after-ms`, or `Retry-After` in seconds
//!   or as an HTTP date, in that order): that is a schedule, not a failure. kvrun waits that long
//!   plus a random part of it ([`asked_wait`]: up to half again, at least 200 ms, at most 8 s) so
//!   that replicas throttled together come back spread out, and keeps trying until the run's
//!   deadline, however many times. A wait that would end past the deadline is not started: the
//!   request fails at once, saying so.
//! - **Otherwise** (connection errors, bare 5xx): exponential backoff with full jitter (a random
//!   delay between zero and `200 ms · 2^n`, capped at [`MAX_BACKOFF`]), at most [`MAX_ATTEMPTS`]
//!   attempts, and never past the deadline.
//!
//! Throttling also narrows what kvrun sends: after a 429 a vault's requests in flight fall to one
//! and grow back by one with each success (see `VaultClient`), so a throttled vault sees fewer
//! requests from kvrun, not more. Pure apart from [`random`].

use std::time::{Duration, Instant, SystemTime};

/// First backoff ceiling: 200 ms, as the Azure SDKs.
const BASE: Duration = Duration::from_millis(200);
/// Largest backoff ceiling between two attempts, and largest jitter on top of an asked wait.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Attempts per request for failures that carry no wait from the server, the first included.
pub const MAX_ATTEMPTS: u32 = 6;
/// One attempt (connect, request, response) gives up after this long.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Statuses worth another try, for every service kvrun talks to.
#[must_use]
pub fn transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Whether, and how, a failed attempt may be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Another attempt cannot change the answer.
    Never,
    /// Transient, and the server said how long to wait.
    After(Duration),
    /// Transient, without a wait from the server: back off, a bounded number of times.
    Backoff,
}

impl Retry {
    /// The retry rule for a status and the wait the server asked for, if any.
    #[must_use]
    pub fn for_status(status: u16, asked: Option<Duration>) -> Self {
        match (transient_status(status), asked) {
            (false, _) => Self::Never,
            (true, Some(asked)) => Self::After(asked),
            (true, None) => Self::Backoff,
        }
    }

    /// [`Retry::for_status`] for a response: its headers are read only when the status is one
    /// that is tried again (not for every `200`).
    #[must_use]
    pub fn for_response(status: u16, headers: &hyper::HeaderMap) -> Self {
        if transient_status(status) {
            Self::for_status(status, retry_after_in(headers))
        } else {
            Self::Never
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Try again after this long.
    Wait(Duration),
    /// Stop; the reason (if any) is worth adding to the failure's.
    GiveUp(Option<GaveUp>),
}

/// Why a transient failure was not tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GaveUp {
    /// This many attempts were made.
    Attempts(u32),
    /// The server asked for a wait that would end past the run's deadline.
    WaitPastDeadline(Duration),
}

impl GaveUp {
    /// The words added to a failure's reason, in parentheses; `server` is who asked to wait
    /// ("the vault", "Entra ID").
    #[must_use]
    pub fn describe(&self, server: &str) -> String {
        match self {
            Self::Attempts(n) => format!("gave up after {n} attempts"),
            Self::WaitPastDeadline(asked) => format!(
                "{server} asked to wait {}, past the --timeout deadline",
                human(*asked)
            ),
        }
    }
}

/// The retry state of one request.
#[derive(Debug, Default)]
pub struct Schedule {
    /// Attempts made so far.
    attempts: u32,
    /// Of those, failures that carried no wait from the server (the ones [`MAX_ATTEMPTS`] counts).
    unasked: u32,
}

impl Schedule {
    /// After a failed attempt classified as `retry`, at `now`, with the run ending at `deadline`.
    pub fn next(&mut self, retry: Retry, now: Instant, deadline: Instant, random: u64) -> Next {
        self.attempts = self.attempts.saturating_add(1);
        let left = deadline.saturating_duration_since(now);
        let gave_up = |attempts: u32| (attempts > 1).then_some(GaveUp::Attempts(attempts));
        match retry {
            Retry::Never => Next::GiveUp(gave_up(self.attempts)),
            Retry::After(asked) => {
                if asked >= left {
                    return Next::GiveUp(Some(GaveUp::WaitPastDeadline(asked)));
                }
                Next::Wait(asked_wait(asked, random).min(left))
            }
            Retry::Backoff => {
                self.unasked = self.unasked.saturating_add(1);
                let wait = backoff(self.unasked - 1, random);
                if self.unasked >= MAX_ATTEMPTS || wait >= left {
                    return Next::GiveUp(gave_up(self.attempts));
                }
                Next::Wait(wait)
            }
        }
    }
}

/// A wait as a person reads it, to the millisecond: `1s 500ms`, `2h 30m`; a day or more in seconds
/// (`9223372036854775807s`), as a server that asks for that much wrote it.
fn human(duration: Duration) -> String {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    let millis = duration.subsec_millis();
    if duration < DAY {
        let whole = Duration::from_secs(duration.as_secs()) + Duration::from_millis(millis.into());
        return humantime::format_duration(whole).to_string();
    }
    match millis {
        0 => format!("{}s", duration.as_secs()),
        ms => format!("{}s {ms}ms", duration.as_secs()),
    }
}

/// How long the server asked us to wait, from the headers Key Vault and the SDKs use, in this
/// order: `x-ms-retry-after-ms`, `retry-after-ms`, `Retry-After` (seconds or an HTTP date). Any
/// number is taken as it is (an absurd one is longer than any deadline, see [`Schedule::next`]).
#[must_use]
pub fn retry_after(header: impl Fn(&str) -> Option<String>, now: SystemTime) -> Option<Duration> {
    let millis = |name: &str| {
        header(name)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
    };
    millis("x-ms-retry-after-ms")
        .or_else(|| millis("retry-after-ms"))
        .or_else(|| {
            let value = header("retry-after")?;
            let value = value.trim();
            if let Ok(seconds) = value.parse::<u64>() {
                return Some(Duration::from_secs(seconds));
            }
            let at = httpdate::parse_http_date(value).ok()?;
            Some(at.duration_since(now).unwrap_or_default())
        })
}

/// [`retry_after`] from a response's headers (the `HeaderMap` of kvrun's client), now.
#[must_use]
pub fn retry_after_in(headers: &hyper::HeaderMap) -> Option<Duration> {
    retry_after(
        |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        },
        SystemTime::now(),
    )
}

/// The wait before the next attempt when the server asked for `asked`: that, plus a random
/// jitter of up to half of it (at least [`BASE`], at most [`MAX_BACKOFF`]).
#[must_use]
pub fn asked_wait(asked: Duration, random: u64) -> Duration {
    let ceiling = (asked / 2).clamp(BASE, MAX_BACKOFF);
    asked.saturating_add(jitter(ceiling, random))
}

/// The wait before attempt `attempt + 1` (`attempt` counts from 0) of a failure without an asked
/// wait: full jitter under a ceiling that doubles from [`BASE`] up to [`MAX_BACKOFF`].
#[must_use]
pub fn backoff(attempt: u32, random: u64) -> Duration {
    jitter(
        BASE.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF),
        random,
    )
}

/// A random duration between zero and `ceiling`, to the millisecond.
fn jitter(ceiling: Duration, random: u64) -> Duration {
    let ceiling_ms = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    Duration::from_millis(random % (ceiling_ms + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn retry_after_in_every_form_and_order() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(
                headers(&[("x-ms-retry-after-ms", "1500"), ("Retry-After", "9")]),
                now
            ),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(headers(&[("retry-after-ms", "250")]), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(headers(&[("Retry-After", "3")]), now),
            Some(Duration::from_secs(3))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(
            retry_after(headers(&[("Retry-After", &date)]), now),
            Some(Duration::from_secs(7))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(
            retry_after(headers(&[("Retry-After", &past)]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(headers(&[("Retry-After", "soon")]), now), None);
        assert_eq!(retry_after(headers(&[]), now), None);
        assert_eq!(
            retry_after(headers(&[("Retry-After", "18446744073709551615")]), now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn backoff_is_full_jitter_under_a_growing_ceiling() {
        for attempt in 0..10 {
            let ceiling = BASE.saturating_mul(1 << attempt).min(MAX_BACKOFF);
            for random in [0, 1, 12_345, u64::MAX] {
                assert!(backoff(attempt, random) <= ceiling);
            }
        }
        assert_eq!(backoff(0, 0), Duration::ZERO);
        assert_eq!(
            backoff(20, u64::MAX),
            Duration::from_millis(u64::MAX % 8001)
        );
    }

    #[test]
    fn an_asked_wait_gets_jitter_on_top() {
        let second = Duration::from_secs(1);
        assert_eq!(asked_wait(second, 0), second);
        assert_eq!(asked_wait(second, 500), Duration::from_millis(1500));
        assert_eq!(asked_wait(second, 501), second, "at most half of it again");
        assert_eq!(
            asked_wait(Duration::ZERO, 200),
            BASE,
            "at least 200 ms of spread"
        );
        assert_eq!(
            asked_wait(Duration::from_secs(60), 8000),
            Duration::from_secs(68),
            "at most 8 s of spread"
        );
        assert_eq!(asked_wait(Duration::MAX, u64::MAX), Duration::MAX);
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(transient_status(status), "{status}");
        }
        for status in [200, 301, 400, 401, 403, 404, 409, 410, 501, 505] {
            assert!(!transient_status(status), "{status}");
        }
        assert_eq!(
            Retry::for_status(429, Some(BASE)),
            Retry::After(BASE),
            "a wait from the server is a schedule"
        );
        assert_eq!(Retry::for_status(503, None), Retry::Backoff);
        assert_eq!(Retry::for_status(404, Some(BASE)), Retry::Never);
    }

    #[test]
    fn a_response_is_retried_after_its_asked_wait_only_when_its_status_is_transient() {
        let mut headers = hyper::HeaderMap::new();
        headers.insert("retry-after", "7".parse().unwrap());
        assert_eq!(
            Retry::for_response(429, &headers),
            Retry::After(Duration::from_secs(7))
        );
        assert_eq!(Retry::for_response(200, &headers), Retry::Never);
        assert_eq!(Retry::for_response(404, &headers), Retry::Never);
        assert_eq!(
            Retry::for_response(503, &hyper::HeaderMap::new()),
            Retry::Backoff
        );
    }

    #[test]
    fn a_schedule_from_the_server_is_followed_until_the_deadline() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(30);
        let mut schedule = Schedule::default();
        for _ in 0..100 {
            assert_eq!(
                schedule.next(Retry::After(Duration::from_secs(1)), now, deadline, 0),
                Next::Wait(Duration::from_secs(1)),
                "no attempt cap for asked waits"
            );
        }
        // A wait that ends after the deadline is not started, and says why.
        let near = deadline.checked_sub(Duration::from_millis(1500)).unwrap();
        let Next::GiveUp(Some(why)) =
            schedule.next(Retry::After(Duration::from_secs(2)), near, deadline, 0)
        else {
            panic!("a wait past the deadline is not started");
        };
        assert_eq!(
            why.describe("the vault"),
            "the vault asked to wait 2s, past the --timeout deadline"
        );
        // Jitter never carries a wait past the deadline.
        assert_eq!(
            schedule.next(Retry::After(Duration::from_secs(1)), near, deadline, 499),
            Next::Wait(Duration::from_millis(1499))
        );
    }

    #[test]
    fn retry_after_long_past_any_deadline_gives_up_at_once_without_overflow() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(30);
        for asked in [
            Duration::from_secs(u64::MAX),
            Duration::MAX,
            Duration::from_millis(u64::MAX),
        ] {
            let mut schedule = Schedule::default();
            assert_eq!(
                schedule.next(Retry::After(asked), now, deadline, u64::MAX),
                Next::GiveUp(Some(GaveUp::WaitPastDeadline(asked)))
            );
        }
        assert_eq!(
            GaveUp::WaitPastDeadline(Duration::from_secs(u64::MAX)).describe("Entra ID"),
            "Entra ID asked to wait 18446744073709551615s, past the --timeout deadline"
        );
        assert_eq!(
            GaveUp::WaitPastDeadline(Duration::from_millis(u64::MAX)).describe("the vault"),
            "the vault asked to wait 18446744073709551s 615ms, past the --timeout deadline"
        );
        assert_eq!(
            GaveUp::WaitPastDeadline(Duration::from_millis(90_500)).describe("the vault"),
            "the vault asked to wait 1m 30s 500ms, past the --timeout deadline"
        );
    }

    #[test]
    fn failures_without_an_asked_wait_are_capped() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(3600);
        let mut schedule = Schedule::default();
        // Throttled waits in between do not use up the cap.
        assert!(matches!(
            schedule.next(Retry::After(BASE), now, deadline, 0),
            Next::Wait(_)
        ));
        for _ in 1..MAX_ATTEMPTS {
            assert!(matches!(
                schedule.next(Retry::Backoff, now, deadline, 0),
                Next::Wait(_)
            ));
        }
        assert_eq!(
            schedule.next(Retry::Backoff, now, deadline, 0),
            Next::GiveUp(Some(GaveUp::Attempts(7)))
        );
        let mut schedule = Schedule::default();
        assert_eq!(
            schedule.next(Retry::Never, now, deadline, 0),
            Next::GiveUp(None)
        );
        // A backoff that cannot finish before the deadline is not started.
        let mut schedule = Schedule::default();
        assert_eq!(
            schedule.next(Retry::Backoff, now, now, 0),
            Next::GiveUp(None)
        );
    }
}
