//! Standby snapshots logged for waiting slot creations, counted per creation for
//! `slot_creations()`.
//!
//! Its critical sections keep the rule of `shmem` (mod.rs): nothing in them raises an error or
//! allocates on the PostgreSQL side.

use super::{Locked, HEADER};

/// Standby snapshots logged for one waiting slot creation.
#[derive(Debug, Clone)]
pub struct Nudge {
    pub pid: i32,
    pub slot: heapless::String<64>,
    pub snapshots: u32,
    pub last_lsn: u64,
}

/// Creations whose nudges are counted at once; more are still nudged, uncounted.
pub(super) const MAX_NUDGED: usize = 32;

/// Counts a standby snapshot logged for the creation of `slot` by `pid`.
pub fn record_nudge(pid: i32, slot: &str, lsn: u64) {
    let Some(_lock) = Locked::acquire(true) else {
        return;
    };
    // SAFETY: the lock is held exclusively and HEADER is valid.
    let nudges = unsafe { &mut (*HEADER).nudges };
    if let Some(n) = nudges
        .iter_mut()
        .find(|n| n.pid == pid && n.slot.as_str() == slot)
    {
        n.snapshots += 1;
        n.last_lsn = lsn;
    } else if let Ok(name) = heapless::String::try_from(slot) {
        let _ = nudges.push(Nudge {
            pid,
            slot: name,
            snapshots: 1,
            last_lsn: lsn,
        });
    }
}

/// Snapshots logged so far for a creation: (count, last LSN).
pub fn nudges_for(pid: i32, slot: &str) -> (u32, Option<u64>) {
    let Some(_lock) = Locked::acquire(false) else {
        return (0, None);
    };
    // SAFETY: the lock is held and HEADER is valid.
    let nudges = unsafe { &(*HEADER).nudges };
    nudges
        .iter()
        .find(|n| n.pid == pid && n.slot.as_str() == slot)
        .map_or((0, None), |n| (n.snapshots, Some(n.last_lsn)))
}

/// Forgets the counts of creations that are no longer waiting.
pub fn retain_nudges(waiting: &[(i32, &str)]) {
    let Some(_lock) = Locked::acquire(true) else {
        return;
    };
    // SAFETY: the lock is held exclusively and HEADER is valid.
    let nudges = unsafe { &mut (*HEADER).nudges };
    nudges.retain(|n| {
        waiting
            .iter()
            .any(|&(pid, slot)| n.pid == pid && n.slot.as_str() == slot)
    });
}
