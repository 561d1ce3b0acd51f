//! The worker's status, which sessions read (`worker_status()`, `cdc_health.metrics()`), and
//! the watch over the mirror worker's probe in progress, which the slot worker keeps.
//!
//! Its critical sections keep the rule of `shmem` (mod.rs): nothing in them raises an error or
//! allocates on the PostgreSQL side.

use super::{Locked, HEADER};

/// What sessions can learn about the worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerStatus {
    pub pid: i32,
    pub started_at: f64,
    pub last_pass_at: f64,
    pub passes: u64,
    pub failed_passes: u64,
    /// Passes skipped because another pass (a `check_now()`) held the pass lock.
    pub skipped_passes: u64,
    /// The extension exists in `cdc_health.database` (the worker idles while it does not).
    pub extension_present: bool,
    /// The extension exists there at another version than the library's (the worker idles
    /// until `ALTER EXTENSION cdc_health UPDATE`).
    pub awaiting_update: bool,
    pub in_recovery: bool,
    /// Number of slots whose history did not fit in `cdc_health.max_tracked_slots`.
    pub untracked_slots: u32,
    /// When history rows were last written for slots without an entry.
    pub untracked_history_at: f64,
    /// How long the last completed pass took, in seconds.
    pub last_pass_secs: f64,
}

pub fn worker_status() -> Option<WorkerStatus> {
    let _lock = Locked::acquire(false)?;
    // SAFETY: the lock is held and HEADER is valid.
    Some(unsafe { (*HEADER).worker })
}

pub fn update_worker(f: impl FnOnce(&mut WorkerStatus)) {
    if let Some(_lock) = Locked::acquire(true) {
        // SAFETY: the lock is held exclusively and HEADER is valid.
        f(unsafe { &mut (*HEADER).worker });
    }
}

/// The mirror worker's probe in progress, watched by the slot worker: a probe that ignores
/// its cancellation (SQL that catches `query_canceled`) is ended by terminating the mirror
/// worker, and its check quarantined.
#[derive(Debug, Clone, Default)]
pub struct ProbeWatch {
    /// The mirror worker's pid while a probe runs, else 0.
    pub pid: i32,
    /// When the probe should have ended (its `cdc_health.probe_timeout` passed).
    pub deadline: f64,
    /// The check being probed (`None` when its name does not fit).
    pub check: Option<heapless::String<256>>,
}

/// Starts (`Some`) or ends (`None`) the watch over the current probe.
pub fn watch_probe(probe: Option<(&str, f64)>) {
    let Some(_lock) = Locked::acquire(true) else {
        return;
    };
    // SAFETY: the lock is held exclusively and HEADER is valid.
    let watch = unsafe { &mut (*HEADER).probe };
    *watch = match probe {
        Some((name, deadline)) => ProbeWatch {
            pid: crate::pg::backend::my_pid(),
            deadline,
            check: heapless::String::try_from(name).ok(),
        },
        None => ProbeWatch::default(),
    };
}

/// Takes the watch of a probe past `deadline + grace` (so only one pass acts on it).
pub fn take_overdue_probe(now: f64, grace: f64) -> Option<ProbeWatch> {
    let _lock = Locked::acquire(true)?;
    // SAFETY: the lock is held exclusively and HEADER is valid.
    let watch = unsafe { &mut (*HEADER).probe };
    (watch.pid != 0 && now > watch.deadline + grace).then(|| std::mem::take(watch))
}
