//! The lines a process writes, read by a thread of their own, waited for one by one.

use std::io::{BufRead as _, BufReader};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

pub(crate) struct Lines(Receiver<String>);

impl Lines {
    pub(crate) fn of(reader: impl std::io::Read + Send + 'static) -> Self {
        let (sender, receiver) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self(receiver)
    }

    /// The next line, within `limit`.
    pub(crate) fn next(
        &self,
        limit: Duration,
    ) -> Result<String, std::sync::mpsc::RecvTimeoutError> {
        self.0.recv_timeout(limit)
    }

    /// The next line that satisfies `want`, within `limit`; the lines skipped on the way.
    pub(crate) fn expect(
        &self,
        what: &str,
        limit: Duration,
        want: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!("no line {what} within {limit:?} ({e}); saw {seen:?}"),
            }
        }
    }
}
