//! Shared memory between the background worker and sessions: the worker's status and, per
//! slot, the recent samples (`SlotTrack`), sized by `cdc_health.max_tracked_slots`.
//!
//! pgrx's `PgLwLock` has a compile-time size; this area is sized by a postmaster setting, so
//! it is requested and attached by hand. One LWLock guards all of it; every critical section
//! only copies plain data, so nothing in it can raise an error.

use std::collections::HashMap;
use std::mem::{align_of, size_of};
use std::ptr::{addr_of_mut, null_mut};
use std::sync::atomic::{AtomicU64, Ordering};

use cdc_health_rules::history::SlotTrack;
use cdc_health_rules::history_pacing::{row_due, HistoryMark, Pacing};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::settings;
use cdc_health_rules::reminders::Clock;

const NAME: &std::ffi::CStr = c"cdc_health";

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

/// One tracked slot and what the history writer last recorded for it.
#[derive(Clone)]
pub struct Entry {
    pub in_use: bool,
    pub track: SlotTrack,
    /// What this slot's last history row said.
    pub history: Option<HistoryMark>,
}

/// Standby snapshots logged for one waiting slot creation.
#[derive(Debug, Clone)]
pub struct Nudge {
    pub pid: i32,
    pub slot: heapless::String<64>,
    pub snapshots: u32,
    pub last_lsn: u64,
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

/// Creations whose nudges are counted at once; more are still nudged, uncounted.
const MAX_NUDGED: usize = 32;

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

/// Open alerts whose reminder clock is kept here (16 bytes each); beyond it a reminder is
/// written to its alert row as before.
const MAX_REMINDED: usize = 8192;

#[repr(C)]
struct Header {
    lock: *mut pg_sys::LWLock,
    capacity: usize,
    /// Entries from this one on have never been in use. Slots take the lowest free entry, so
    /// passes and reads look at as many entries as slots were ever tracked at once, not at
    /// all of `max_tracked_slots` (each entry is ~10 kB apart: scanning 4,096 of them every
    /// pass cost more than watching 500 slots).
    used: usize,
    worker: WorkerStatus,
    nudges: heapless::Vec<Nudge, MAX_NUDGED>,
    probe: ProbeWatch,
    reminders: Clock<MAX_REMINDED>,
    /// When this area was created: the server start (or its last crash restart).
    created_at: f64,
    /// Bumped by every committed change to `cdc_health.alerts` (see `open_alerts`); read
    /// without the lock.
    alerts_changes: AtomicU64,
}

static mut HEADER: *mut Header = null_mut();
static mut ENTRIES: *mut Entry = null_mut();
static mut PREV_REQUEST_HOOK: Option<unsafe extern "C-unwind" fn()> = None;
static mut PREV_STARTUP_HOOK: Option<unsafe extern "C-unwind" fn()> = None;
/// The other areas, registered by the layers above through `init`.
static mut AREAS: &[Area] = &[];

/// Another area of shared memory, with an LWLock of its own in this tranche: how much it
/// needs, and what attaches it in the startup hook (with `AddinShmemInitLock` held). The
/// layer that owns the area passes it to `init`, so this module knows none of them.
#[derive(Clone, Copy)]
pub struct Area {
    pub size: fn() -> usize,
    /// # Safety
    /// Called once per process with the area's own initialised LWLock.
    pub attach: unsafe fn(*mut pg_sys::LWLock),
}

fn entries_offset() -> usize {
    size_of::<Header>().next_multiple_of(align_of::<Entry>())
}

fn area_size(capacity: usize) -> usize {
    entries_offset() + capacity * size_of::<Entry>()
}

/// Hooks the shared memory request and attach for this area and `areas`; call from
/// `_PG_init` while preloading.
pub fn init(areas: &'static [Area]) {
    // SAFETY: hooks are installed once, in the postmaster, while preloading, before any
    // other process reads AREAS.
    unsafe {
        AREAS = areas;
        #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17", feature = "pg18"))]
        {
            PREV_REQUEST_HOOK = pg_sys::shmem_request_hook;
            pg_sys::shmem_request_hook = Some(on_request);
        }
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        request();
        PREV_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(on_startup);
    }
}

/// Requests this area, the others, and an LWLock each: this area's first.
unsafe fn request() {
    pg_sys::RequestAddinShmemSpace(area_size(settings::max_tracked_slots()));
    // A copy of the slice reference: AREAS is written once, in `init`, before this runs.
    let areas: &[Area] = AREAS;
    for area in areas {
        pg_sys::RequestAddinShmemSpace((area.size)());
    }
    let locks = i32::try_from(1 + areas.len()).expect("a few areas");
    pg_sys::RequestNamedLWLockTranche(NAME.as_ptr(), locks);
}

#[pg_guard]
unsafe extern "C-unwind" fn on_request() {
    if let Some(prev) = PREV_REQUEST_HOOK {
        prev();
    }
    request();
}

/// `AddinShmemInitLock` is a C macro (`&MainLWLockArray[21].lock`, the same in 13 to 18).
unsafe fn addin_shmem_init_lock() -> *mut pg_sys::LWLock {
    addr_of_mut!((*pg_sys::MainLWLockArray.add(21)).lock)
}

#[pg_guard]
unsafe extern "C-unwind" fn on_startup() {
    if let Some(prev) = PREV_STARTUP_HOOK {
        prev();
    }
    let capacity = settings::max_tracked_slots();
    let init_lock = addin_shmem_init_lock();
    pg_sys::LWLockAcquire(init_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
    let mut found = false;
    let base = pg_sys::ShmemInitStruct(NAME.as_ptr(), area_size(capacity), &mut found) as *mut u8;
    let header = base as *mut Header;
    let entries = base.add(entries_offset()) as *mut Entry;
    let locks = pg_sys::GetNamedLWLockTranche(NAME.as_ptr());
    let areas: &[Area] = AREAS;
    for (i, area) in areas.iter().enumerate() {
        (area.attach)(addr_of_mut!((*locks.add(1 + i)).lock));
    }
    if !found {
        header.write(Header {
            lock: addr_of_mut!((*locks).lock),
            capacity,
            used: 0,
            worker: WorkerStatus::default(),
            nudges: heapless::Vec::new(),
            probe: ProbeWatch::default(),
            reminders: Clock::new(),
            created_at: crate::pg::clock::now_secs(),
            alerts_changes: AtomicU64::new(0),
        });
        for i in 0..capacity {
            entries.add(i).write(Entry::new(
                false,
                SlotTrack::new("").expect("empty name fits"),
            ));
        }
    }
    HEADER = header;
    ENTRIES = entries;
    pg_sys::LWLockRelease(init_lock);
}

/// Holds an LWLock; released on drop, also when unwinding.
pub struct Locked(*mut pg_sys::LWLock);

impl Locked {
    fn acquire(exclusive: bool) -> Option<Self> {
        // SAFETY: HEADER is either null (not preloaded) or points at the initialised area.
        let header = unsafe { HEADER.as_ref()? };
        Some(Self::on(header.lock, exclusive))
    }

    /// Takes `lock`, one of the LWLocks of this area's tranche.
    pub fn on(lock: *mut pg_sys::LWLock, exclusive: bool) -> Self {
        let mode = if exclusive {
            pg_sys::LWLockMode::LW_EXCLUSIVE
        } else {
            pg_sys::LWLockMode::LW_SHARED
        };
        // SAFETY: `lock` is an initialised LWLock in shared memory.
        unsafe { pg_sys::LWLockAcquire(lock, mode) };
        Locked(lock)
    }
}

impl Drop for Locked {
    fn drop(&mut self) {
        // SAFETY: we hold this lock (acquired in `acquire`).
        unsafe {
            if pg_sys::LWLockHeldByMe(self.0) {
                pg_sys::LWLockRelease(self.0)
            }
        }
    }
}

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
