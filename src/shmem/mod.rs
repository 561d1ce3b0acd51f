//! Shared memory between the background worker and sessions: the worker's status and, per
//! slot, the recent samples (`SlotTrack`), sized by `cdc_health.max_tracked_slots`.
//!
//! pgrx's `PgLwLock` has a compile-time size; this area is sized by a postmaster setting, so
//! it is requested and attached by hand. One LWLock guards all of it; every critical section
//! only copies plain data, so nothing in it can raise an error.
//!
//! This file is the registry: the header of the area, the request and startup hooks that
//! make it (and the other areas handed to `init`), and `Locked`. Each concern is a file with
//! its data and the functions that touch it, all under the one lock: `worker` (the worker's
//! status and the watch over the mirror worker's probe), `tracks` (per-slot entries),
//! `nudges` (standby snapshots logged for slot creations), `reminders` (the open alerts'
//! reminder clocks), `volume` (readings of the volume holding pg_wal) and `alerts_changes`
//! (a counter read and bumped without the lock).
//!
//! The rule, for every file: nothing inside a critical section raises an error or allocates
//! on the PostgreSQL side (no `palloc`, SPI or `ereport`); a section only copies plain data
//! in and out. (The `Vec`s and the hash built in `tracks` are Rust's allocations, not
//! PostgreSQL's.)

use std::mem::{align_of, size_of};
use std::ptr::{addr_of_mut, null_mut};
use std::sync::atomic::AtomicU64;

use cdc_health_rules::history::SlotTrack;
use cdc_health_rules::reminders::Clock;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::settings;

mod alerts_changes;
mod nudges;
mod reminders;
mod tracks;
mod volume;
mod worker;

pub use alerts_changes::{alerts_changes, note_alerts_changed};
pub use nudges::{nudges_for, record_nudge, retain_nudges};
pub use reminders::{remember_reminder, reminder_clocks};
/// For the `#[pg_test]` of the assignment; the rest of the crate goes through `write_assigned`.
#[cfg(any(test, feature = "pg_test"))]
pub(crate) use tracks::assign;
pub use tracks::{history_due, locate, read, write_assigned, Entry};
pub use volume::{record_volume, volume_samples};
pub use worker::{take_overdue_probe, update_worker, watch_probe, worker_status, WorkerStatus};

use nudges::Nudge;
use worker::ProbeWatch;

const NAME: &std::ffi::CStr = c"cdc_health";

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
    nudges: heapless::Vec<Nudge, { nudges::MAX_NUDGED }>,
    probe: ProbeWatch,
    reminders: Clock<{ reminders::MAX_REMINDED }>,
    /// Readings of the volume holding pg_wal.
    volume: volume::VolumeRing,
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
            volume: volume::VolumeRing::new(),
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
    /// Takes this area's lock; `None` without shared memory (the library not preloaded).
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
