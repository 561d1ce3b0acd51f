//! Per-slot tracks: one `Entry` per slot, its recent samples (`SlotTrack`) and what its last
//! history row said; entries are assigned by name, the lowest free one first.
//!
//! Its critical sections keep the rule of `shmem` (mod.rs): nothing in them raises an error or
//! allocates on the PostgreSQL side.

use std::collections::HashMap;

use cdc_health_rules::history::SlotTrack;
use cdc_health_rules::history_pacing::{row_due, HistoryMark, Pacing};

use super::{Locked, ENTRIES, HEADER};

/// One tracked slot and what the history writer last recorded for it.
#[derive(Clone)]
pub struct Entry {
    pub in_use: bool,
    pub track: SlotTrack,
    /// What this slot's last history row said.
    pub history: Option<HistoryMark>,
}

impl Entry {
    pub(crate) fn new(in_use: bool, track: SlotTrack) -> Self {
        Entry {
            in_use,
            track,
            history: None,
        }
    }
}

/// The entry of each named slot in use, in order: a hash of the entries' own names (no copies),
/// built once per call, so that n slots cost n, not n² name comparisons (2,000 slots made that
/// most of a pass) nor n allocations.
pub fn locate<'n>(entries: &[Entry], names: impl Iterator<Item = &'n str>) -> Vec<Option<usize>> {
    let at: HashMap<&str, usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.in_use)
        .map(|(i, e)| (e.track.name.as_str(), i))
        .collect();
    names.map(|name| at.get(name).copied()).collect()
}

/// Read-only view of the entries that were ever in use (check `in_use`).
pub fn read<R>(f: impl FnOnce(&[Entry]) -> R) -> Option<R> {
    let _lock = Locked::acquire(false)?;
    // SAFETY: the lock is held; ENTRIES holds `capacity` initialised entries, the first `used`
    // of them ever in use.
    let entries = unsafe { std::slice::from_raw_parts(ENTRIES, (*HEADER).used) };
    Some(f(entries))
}

/// Exclusive access for the sampler: `f` gets the entries and each named slot's entry (see
/// `assign`).
pub fn write_assigned<R>(
    names: &[&str],
    f: impl FnOnce(&mut [Entry], Vec<Option<usize>>) -> R,
) -> Option<R> {
    let _lock = Locked::acquire(true)?;
    // SAFETY: the lock is held exclusively; ENTRIES holds `capacity` initialised entries.
    let header = unsafe { &mut *HEADER };
    // SAFETY: as above: `capacity` entries were written at ENTRIES when the area was made.
    let all = unsafe { std::slice::from_raw_parts_mut(ENTRIES, header.capacity) };
    let assigned = assign(all, &mut header.used, names);
    Some(f(&mut all[..header.used], assigned))
}

/// The entry of each named slot, in order: entries of slots that no longer exist are freed,
/// a new slot gets the lowest free entry; `None` when none is left. Entries from `*used` on
/// have never been in use; it grows as entries are taken.
pub(crate) fn assign(
    entries: &mut [Entry],
    used: &mut usize,
    names: &[&str],
) -> Vec<Option<usize>> {
    let capacity = entries.len();
    let seen = (*used).min(capacity);
    let mut found = locate(&entries[..seen], names.iter().copied());
    let mut claimed = vec![false; seen];
    for &i in found.iter().flatten() {
        claimed[i] = true;
    }
    let mut free = Vec::new();
    for (i, e) in entries[..seen].iter_mut().enumerate() {
        if e.in_use && !claimed[i] {
            e.in_use = false;
        }
        if !e.in_use {
            free.push(i);
        }
    }
    // Lowest free entries first, then the never used ones.
    free.reverse();
    let mut next_fresh = seen;
    for (at, name) in found.iter_mut().zip(names) {
        if at.is_some() {
            continue;
        }
        let Some(track) = SlotTrack::new(name) else {
            continue;
        };
        let i = match free.pop() {
            Some(i) => i,
            None if next_fresh < capacity => {
                next_fresh += 1;
                next_fresh - 1
            }
            None => continue,
        };
        entries[i] = Entry::new(true, track);
        *at = Some(i);
    }
    // Free entries at the end leave the window, so that it shrinks after slots are dropped.
    while next_fresh > 0 && !entries[next_fresh - 1].in_use {
        next_fresh -= 1;
    }
    *used = next_fresh;
    found
}

/// Marks which slots are due a history row now (see `history_pacing::row_due`): one flag per
/// mark, in order. A mark names its slot and, as a hint, the entry the pass found it in.
/// Slots without an entry fall back to a worker-wide timer at `interval_secs`. Without shared
/// memory every slot is due.
pub fn history_due(marks: &[(&str, Option<usize>, HistoryMark)], pacing: &Pacing) -> Vec<bool> {
    let Some(_lock) = Locked::acquire(true) else {
        return vec![true; marks.len()];
    };
    // SAFETY: the lock is held exclusively; HEADER and ENTRIES are valid.
    let (header, entries) = unsafe {
        (
            &mut *HEADER,
            std::slice::from_raw_parts_mut(ENTRIES, (*HEADER).used),
        )
    };
    let now = marks.first().map_or(0.0, |m| m.2.at);
    let fallback_due = now - header.worker.untracked_history_at >= pacing.interval_secs;
    if fallback_due {
        header.worker.untracked_history_at = now;
    }
    // The hints hold unless entries were reassigned since (then look every name up).
    let hinted: Option<Vec<Option<usize>>> = marks
        .iter()
        .map(|(name, hint, _)| match hint {
            Some(i) => entries
                .get(*i)
                .filter(|e| e.in_use && e.track.name.as_str() == *name)
                .map(|_| Some(*i)),
            None => Some(None),
        })
        .collect();
    let at = hinted.unwrap_or_else(|| locate(entries, marks.iter().map(|m| m.0)));
    marks
        .iter()
        .zip(at)
        .map(|((_, _, mark), at)| match at.map(|i| &mut entries[i]) {
            Some(e) => {
                let due = row_due(e.history.as_ref(), mark, pacing);
                if due {
                    e.history = Some(*mark);
                }
                due
            }
            None => fallback_due,
        })
        .collect()
}
