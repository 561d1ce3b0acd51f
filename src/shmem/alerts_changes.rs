//! The count of committed changes to `cdc_health.alerts`, read and bumped without the lock
//! (an atomic in the header): it is bumped in a commit callback, where no lock is taken.

use std::sync::atomic::Ordering;

use super::HEADER;

/// How many committed transactions changed `cdc_health.alerts` since the server started;
/// `None` without shared memory.
pub fn alerts_changes() -> Option<u64> {
    // SAFETY: HEADER is either null (not preloaded) or points at the initialised area.
    let header = unsafe { HEADER.as_ref()? };
    Some(header.alerts_changes.load(Ordering::SeqCst))
}

/// Counts a committed change to `cdc_health.alerts`. Lock-free: it runs in a commit callback.
pub fn note_alerts_changed() {
    // SAFETY: as above.
    if let Some(header) = unsafe { HEADER.as_ref() } {
        header.alerts_changes.fetch_add(1, Ordering::SeqCst);
    }
}
