//! When and how long to wait before trying a Get Secret again.
//!
//! Retried: 408, 429, 500, 502, 503, 504 and connection failures (including an attempt that ran
//! past [`ATTEMPT_TIMEOUT`]). Never retried, because another try cannot succeed: TLS
//! verification failures, 400, 401 after a fresh token, 403, 404, redirects, malformed answers.
//!
//! The wait is exponential backoff with full jitter (a random delay between zero and
//! `BASE * 2^attempt`, capped at [`MAX_BACKOFF`]), so a fleet of replicas that were throttled
//! together does not come back together; when the vault says how long to wait
//! (`x-ms-retry-after-ms`, `retry-after-ms`, or `Retry-After` in seconds or as an HTTP date),
//! kvrun waits at least that long. At most [`MAX_ATTEMPTS`] attempts, and never past the run's
//! `--timeout` deadline: a retry that could not finish in time is not started. Pure apart from
//! the random jitter.

use std::time::{Duration, SystemTime};

/// First backoff ceiling: 200 ms, as the Azure SDKs.
const BASE: Duration = Duration::from_millis(200);
/// Largest backoff ceiling between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Attempts per request, the first included.
pub const MAX_ATTEMPTS: u32 = 6;
/// One attempt (connect, request, response) gives up after this long.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Statuses worth another try.
#[must_use]
pub fn retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// How long the server asked us to wait, from the headers Key Vault and the SDKs use, in this
/// order: `x-ms-retry-after-ms`, `retry-after-ms`, `Retry-After` (seconds or an HTTP date).
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

/// The wait before attempt `attempt + 1` (`attempt` counts from 0), given a random number.
#[must_use]
pub fn backoff(attempt: u32, asked: Option<Duration>, random: u64) -> Duration {
    let ceiling = BASE.saturating_mul(1 << attempt.min(16)).min(MAX_BACKOFF);
    let ceiling_ms = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let jittered = Duration::from_millis(random % (ceiling_ms + 1));
    asked.map_or(jittered, |asked| asked.max(jittered))
}

/// A random number for jitter.
#[must_use]
pub fn random() -> u64 {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    // Jitter only spreads retries; should the system source fail, no jitter is still correct.
    let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes);
    u64::from_le_bytes(bytes)
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
    }

    #[test]
    fn backoff_is_full_jitter_under_a_growing_ceiling_and_honours_the_server() {
        for attempt in 0..10 {
            let ceiling = BASE.saturating_mul(1 << attempt).min(MAX_BACKOFF);
            for random in [0, 1, 12_345, u64::MAX] {
                assert!(backoff(attempt, None, random) <= ceiling);
            }
        }
        assert_eq!(backoff(0, None, 0), Duration::ZERO);
        assert_eq!(
            backoff(20, None, u64::MAX),
            Duration::from_millis(u64::MAX % 8001)
        );
        assert!(backoff(0, Some(Duration::from_secs(2)), 199) >= Duration::from_secs(2));
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(retryable(status), "{status}");
        }
        for status in [200, 301, 400, 401, 403, 404, 409, 501] {
            assert!(!retryable(status), "{status}");
        }
    }
}
