//! The open alerts' reminder clocks (see `cdc_health_rules::reminders`), kept here rather
//! than written to each alert row at every reminder.
//!
//! Its critical sections keep the rule of `shmem` (mod.rs): nothing in them raises an error or
//! allocates on the PostgreSQL side.

use super::{Locked, HEADER};

/// Open alerts whose reminder clock is kept here (16 bytes each); beyond it a reminder is
/// written to its alert row as before.
pub(super) const MAX_REMINDED: usize = 8192;

/// Sets each open alert's `last_notified_at` to when its reminder clock starts (see
/// `cdc_health_rules::reminders`). Without shared memory the rows' values stay.
pub fn reminder_clocks(open: &mut [cdc_health_rules::alerts::OpenAlert]) {
    if let Some(_lock) = Locked::acquire(false) {
        // SAFETY: the lock is held and HEADER is valid.
        let header = unsafe { &*HEADER };
        for a in open {
            a.last_notified_at =
                header
                    .reminders
                    .last_notified(a.id, a.last_notified_at, header.created_at);
        }
    }
}

/// Notes a reminder of alert `id` at `now`; `false` when it must go to the row instead (no
/// shared memory, or no room).
pub fn remember_reminder(id: i64, now: f64, stale_before: f64) -> bool {
    let Some(_lock) = Locked::acquire(true) else {
        return false;
    };
    // SAFETY: the lock is held exclusively and HEADER is valid.
    unsafe { (*HEADER).reminders.remember(id, now, stale_before) }
}
