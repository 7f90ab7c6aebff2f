//! kvrun's own child processes that some code waits for by pid (`az`, `azd` for tokens), kept
//! apart from the orphans the supervisor reaps: reaping one of these would steal its exit status.
//!
//! Spawning and registering happen under one lock, and the supervisor takes the same lock while it
//! lists children, so a tool that exits at once is never mistaken for an orphan.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

static TRACKED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

fn lock() -> MutexGuard<'static, Option<HashSet<i32>>> {
    TRACKED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A tracked child: untracked when dropped (after its owner has waited for it).
#[derive(Debug)]
pub(crate) struct Tracked(i32);

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(set) = lock().as_mut() {
            set.remove(&self.0);
        }
    }
}

/// Spawn with `spawn`, and track the child's pid before anyone can look for orphans.
///
/// # Errors
/// Whatever `spawn` returns.
pub(crate) fn spawn_tracked<C>(
    spawn: impl FnOnce() -> std::io::Result<C>,
    pid: impl Fn(&C) -> Option<u32>,
) -> std::io::Result<(C, Option<Tracked>)> {
    let mut guard = lock();
    let child = spawn()?;
    let tracked = pid(&child).and_then(|p| i32::try_from(p).ok()).map(|p| {
        guard.get_or_insert_with(HashSet::new).insert(p);
        Tracked(p)
    });
    drop(guard);
    Ok((child, tracked))
}

#[must_use]
pub(crate) fn is_tracked(pid: i32) -> bool {
    lock().as_ref().is_some_and(|set| set.contains(&pid))
}

/// The pids of this process's children, from `/proc/self/task/*/children` (Linux), read while no
/// tracked child can be spawned.
#[must_use]
pub(crate) fn list() -> Vec<i32> {
    let _guard = lock();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                text.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    pids
}
