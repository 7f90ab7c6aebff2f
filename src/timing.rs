//! Where a run's time goes: one `info` line at `-v` when the resolution ends.
//!
//! The vault code marks its network phases (token requests, the challenge probe of each vault,
//! connection setups, authenticated GETs) with [`Phase::span`]; [`Run`] — a guard held for the
//! whole resolution — logs, when dropped, how long each phase took, when it ran, and how much of
//! the wall time had *nothing* on the network (runtime and TLS setup, local work between
//! phases): that part is kvrun's own, the rest is waiting for Azure. It also gives the CPU time
//! spent before the resolution (process start, reading the sources, planning) and during it, and
//! the peak RSS so far.
//!
//! Recording is off unless `-v` (or a `KVRUN_LOG` that enables `info` here) is in effect, so a
//! normal run pays one relaxed atomic load per phase. Nothing recorded names a secret, a value or
//! a token: only phase kinds and instants.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A kind of work on the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A token request (Entra ID, managed identity, `az`/`azd`), not the cached lookups.
    Token,
    /// A vault's first, unauthenticated request, up to the verified challenge (its connection
    /// setup included).
    Challenge,
    /// TCP (and proxy tunnel) and TLS setup of one connection to a vault.
    Connect,
    /// One authenticated GET on a ready connection, up to its whole body.
    Get,
}

impl Phase {
    const ALL: [Phase; 4] = [Phase::Token, Phase::Challenge, Phase::Connect, Phase::Get];

    fn name(self) -> &'static str {
        match self {
            Phase::Token => "token",
            Phase::Challenge => "challenge",
            Phase::Connect => "connect",
            Phase::Get => "GET",
        }
    }

    /// Starts timing one occurrence of this phase; it is recorded when the guard is dropped.
    #[must_use]
    pub(crate) fn span(self) -> Span {
        Span {
            phase: self,
            started: ENABLED.load(Ordering::Relaxed).then(Instant::now),
        }
    }
}

/// A phase in progress (see [`Phase::span`]).
pub(crate) struct Span {
    phase: Phase,
    started: Option<Instant>,
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(started) = self.started {
            record(self.phase, started, Instant::now());
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static RECORDED: Mutex<Vec<(Phase, Instant, Instant)>> = Mutex::new(Vec::new());
static RESOLVING: Mutex<Option<Instant>> = Mutex::new(None);

fn record(phase: Phase, started: Instant, ended: Instant) {
    RECORDED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((phase, started, ended));
}

/// Marks the end of the set-up (runtime, HTTP clients, trust store) and the start of the
/// resolution proper.
pub(crate) fn resolving() {
    if ENABLED.load(Ordering::Relaxed) {
        *RESOLVING.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }
}

/// The timing of one resolution: create it when the resolution starts (before the runtime is
/// built), drop it when it is over; the drop logs the summary.
pub(crate) struct Run {
    started: Instant,
    /// CPU time of the process when the run started (process start, sources, planning).
    cpu_before: Option<Duration>,
}

impl Run {
    #[must_use]
    pub(crate) fn start() -> Run {
        let enabled = tracing::enabled!(tracing::Level::INFO);
        ENABLED.store(enabled, Ordering::Relaxed);
        Run {
            started: Instant::now(),
            cpu_before: enabled.then(cpu_time).flatten(),
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !ENABLED.swap(false, Ordering::Relaxed) {
            return;
        }
        let ended = Instant::now();
        let recorded =
            std::mem::take(&mut *RECORDED.lock().unwrap_or_else(PoisonError::into_inner));
        let resolving = RESOLVING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let cpu = cpu_time()
            .zip(self.cpu_before)
            .map(|(now, before)| now.saturating_sub(before));
        let mut line = summary(
            self.started,
            ended,
            resolving,
            &recorded,
            self.cpu_before,
            cpu,
        );
        if let Some(kib) = peak_rss_kib() {
            // KiB to MB (10^6 bytes), one decimal, in integers.
            let tenths = kib * 1024 / 100_000;
            let _ = write!(line, "; peak RSS {}.{} MB", tenths / 10, tenths % 10);
        }
        tracing::info!("time: {line}");
    }
}

/// The summary line (without the `time: ` prefix), from the instants of one run.
fn summary(
    started: Instant,
    ended: Instant,
    resolving: Option<Instant>,
    recorded: &[(Phase, Instant, Instant)],
    cpu_before: Option<Duration>,
    cpu_during: Option<Duration>,
) -> String {
    let at = |t: Instant| ms(t.saturating_duration_since(started));
    let wall = ended.saturating_duration_since(started);
    let mut line = format!("total {:.1} ms", ms(wall));
    if let Some(r) = resolving {
        let _ = write!(line, "; setup {:.1} ms", at(r));
    }
    for phase in Phase::ALL {
        let spans: Vec<(Instant, Instant)> = recorded
            .iter()
            .filter(|(p, ..)| *p == phase)
            .map(|&(_, s, e)| (s, e))
            .collect();
        let Some(first) = spans.iter().map(|&(s, _)| s).min() else {
            continue;
        };
        let last = spans.iter().map(|&(_, e)| e).max().unwrap_or(first);
        let total: Duration = spans
            .iter()
            .map(|&(s, e)| e.saturating_duration_since(s))
            .sum();
        let count = u32::try_from(spans.len()).unwrap_or(u32::MAX);
        let _ = write!(
            line,
            "; {} {count}× {:.1} ms avg ({:.1}–{:.1})",
            phase.name(),
            ms(total / count),
            at(first),
            at(last)
        );
    }
    let network = union(recorded.iter().map(|&(_, s, e)| (s, e)).collect());
    let _ = write!(
        line,
        "; nothing on the network {:.1} ms",
        ms(wall.saturating_sub(network))
    );
    if let Some(cpu) = cpu_during {
        let _ = write!(line, "; CPU {:.1} ms", ms(cpu));
    }
    if let Some(cpu) = cpu_before {
        let _ = write!(line, " (+{:.1} ms before: start, sources, plan)", ms(cpu));
    }
    line
}

/// How long at least one of the spans was in progress.
fn union(mut spans: Vec<(Instant, Instant)>) -> Duration {
    spans.sort_by_key(|&(s, _)| s);
    let mut total = Duration::ZERO;
    let mut current: Option<(Instant, Instant)> = None;
    for (s, e) in spans {
        current = match current {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce.saturating_duration_since(cs);
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = current {
        total += ce.saturating_duration_since(cs);
    }
    total
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The process's peak resident set so far (`VmHWM`), KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time of the whole process so far (threads that have exited included).
fn cpu_time() -> Option<Duration> {
    use nix::sys::resource::{UsageWho, getrusage};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    Some(micros(usage.user_time()) + micros(usage.system_time()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_phases_and_the_time_off_the_network() {
        let t0 = Instant::now();
        let t = |ms: u64| t0 + Duration::from_millis(ms);
        let recorded = [
            (Phase::Token, t(5), t(25)),
            (Phase::Challenge, t(5), t(45)),
            (Phase::Connect, t(26), t(46)),
            (Phase::Connect, t(26), t(48)),
            (Phase::Get, t(50), t(70)),
            (Phase::Get, t(50), t(72)),
        ];
        let line = summary(
            t0,
            t(80),
            Some(t(4)),
            &recorded,
            Some(Duration::from_millis(2)),
            Some(Duration::from_millis(9)),
        );
        assert_eq!(
            line,
            "total 80.0 ms; setup 4.0 ms; token 1× 20.0 ms avg (5.0–25.0); \
             challenge 1× 40.0 ms avg (5.0–45.0); connect 2× 21.0 ms avg (26.0–48.0); \
             GET 2× 21.0 ms avg (50.0–72.0); nothing on the network 15.0 ms; \
             CPU 9.0 ms (+2.0 ms before: start, sources, plan)"
        );
    }

    #[test]
    fn union_merges_overlaps() {
        let t0 = Instant::now();
        let t = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(union(vec![]), Duration::ZERO);
        assert_eq!(
            union(vec![(t(10), t(20)), (t(0), t(5)), (t(15), t(30))]),
            Duration::from_millis(25)
        );
    }
}
