//! The fake's latency, as long as it says. tokio's timer counts whole milliseconds: it rounds a
//! deadline up to the next tick and its driver parks for whole milliseconds, so a 20 ms
//! `tokio::time::sleep` took 21–22 ms (kvrun's timing line against the fake: GET 21.7 ms, connect
//! 23.1 ms) and a 1 ms one about 2 ms — every "20 ms round trip" of the benchmark was 1.5–2 ms
//! longer than the benchmark said, for every launcher alike. Here one thread of the fake's own
//! keeps the deadlines in a heap and sleeps until the nearest one (a condition variable's wait,
//! whose timeout has nanosecond resolution: the kernel's timer slack, 50 µs, is what is left),
//! then wakes the task that waits. tokio has no finer timer and no crate adds one to it, hence
//! this module.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Waits `duration` from now, to within the kernel's timer slack (not tokio's millisecond).
pub async fn sleep(duration: Duration) {
    if duration.is_zero() {
        return;
    }
    let (wake, woken) = oneshot::channel();
    timer().add(Instant::now() + duration, wake);
    // The timer thread never drops a sender unsent; an error would only end the wait early.
    let _ = woken.await;
}

/// How long `runs` sleeps of `duration` actually took, one after another, on a runtime of their
/// own: for the benchmark's report of the latency it simulates.
pub fn measure(duration: Duration, runs: usize) -> Vec<Duration> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime without drivers");
    runtime.block_on(async {
        let mut took = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            sleep(duration).await;
            took.push(start.elapsed());
        }
        took
    })
}

struct Timer {
    pending: Mutex<Pending>,
    changed: Condvar,
}

#[derive(Default)]
struct Pending {
    heap: BinaryHeap<Reverse<Entry>>,
    /// Breaks ties between equal deadlines: first added, first woken.
    added: u64,
}

struct Entry {
    deadline: Instant,
    order: u64,
    wake: oneshot::Sender<()>,
}

impl Entry {
    fn key(&self) -> (Instant, u64) {
        (self.deadline, self.order)
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            pending: Mutex::new(Pending::default()),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("fake-delay".into())
            .spawn(move || timer.run())
            .expect("the fake's delay thread");
        timer
    })
}

impl Timer {
    fn add(&self, deadline: Instant, wake: oneshot::Sender<()>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let order = pending.added;
        pending.added += 1;
        let earliest = pending
            .heap
            .peek()
            .is_none_or(|Reverse(first)| deadline < first.deadline);
        pending.heap.push(Reverse(Entry {
            deadline,
            order,
            wake,
        }));
        drop(pending);
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Wakes each entry at its deadline, in deadline order; sleeps while none is due.
    fn run(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            let next = pending.heap.peek().map(|Reverse(first)| first.deadline);
            pending = match next {
                Some(deadline) if deadline <= now => {
                    if let Some(Reverse(due)) = pending.heap.pop() {
                        // The waiting task may have given up (its request was dropped).
                        let _ = due.wake.send(());
                    }
                    pending
                }
                Some(deadline) => {
                    self.changed
                        .wait_timeout(pending, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self
                    .changed
                    .wait(pending)
                    .unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_delay_never_ends_before_its_duration() {
        for ms in [1, 5, 20] {
            let duration = Duration::from_millis(ms);
            let start = Instant::now();
            sleep(duration).await;
            assert!(
                start.elapsed() >= duration,
                "{ms} ms took {:?}",
                start.elapsed()
            );
        }
    }

    #[tokio::test]
    async fn a_delay_added_after_a_longer_one_ends_at_its_own_deadline() {
        let start = Instant::now();
        let (long, long_ended) = oneshot::channel();
        timer().add(start + Duration::from_millis(60), long);
        // Served by the same thread: once it has ended, the thread sleeps towards the 60 ms
        // deadline, and the shorter delay added now must wake it, or it would end at 60 ms too.
        sleep(Duration::from_millis(1)).await;
        let (short, short_ended) = oneshot::channel();
        timer().add(Instant::now() + Duration::from_millis(20), short);
        short_ended.await.expect("woken");
        let short_took = start.elapsed();
        long_ended.await.expect("woken");
        assert!(short_took < Duration::from_millis(60), "{short_took:?}");
        assert!(start.elapsed() >= Duration::from_millis(60));
    }

    #[test]
    fn measure_times_each_delay() {
        let took = measure(Duration::from_millis(2), 3);
        assert_eq!(took.len(), 3);
        assert!(
            took.iter().all(|&t| t >= Duration::from_millis(2)),
            "{took:?}"
        );
    }
}
