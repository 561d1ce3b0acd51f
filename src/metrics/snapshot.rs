//! The worker's last rendering of the state, in shared memory for the `/metrics` endpoint.
//!
//! A byte buffer sized from `cdc_health.max_tracked_slots` when the server starts; a state
//! larger than it is cut at a line end and flagged (`cdc_health_metrics_truncated`). Its own
//! LWLock (the second of the tranche) is held only to copy bytes in or out.

use std::mem::size_of;
use std::ptr::null_mut;

use cdc_health_rules::exposition::cut_at_line;
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::settings;
use crate::shmem::Locked;

/// Room per slot (a slot with a few findings renders to about 2 kB) and for the rest.
const BYTES_PER_SLOT: usize = 4096;
const BASE_BYTES: usize = 256 << 10;

#[repr(C)]
struct Header {
    lock: *mut pg_sys::LWLock,
    capacity: usize,
    len: usize,
    truncated: bool,
}

static mut AREA: *mut Header = null_mut();
const NAME: &std::ffi::CStr = c"cdc_health metrics";

fn capacity() -> usize {
    BASE_BYTES + settings::max_tracked_slots() * BYTES_PER_SLOT
}

/// The snapshot's area, for `shmem::init`.
pub const AREA_HOOKS: crate::shmem::Area = crate::shmem::Area { size, attach };

/// Shared memory to request (with the other areas, in the request hook).
pub fn size() -> usize {
    size_of::<Header>() + capacity()
}

/// Attaches (creating on first use) the area; called in the startup hook with
/// `AddinShmemInitLock` held.
///
/// # Safety
/// `lock` must be an initialised LWLock reserved for this area.
pub unsafe fn attach(lock: *mut pg_sys::LWLock) {
    let mut found = false;
    let area = pg_sys::ShmemInitStruct(NAME.as_ptr(), size(), &mut found) as *mut Header;
    if !found {
        area.write(Header {
            lock,
            capacity: capacity(),
            len: 0,
            truncated: false,
        });
    }
    AREA = area;
}

fn bytes(area: *mut Header) -> *mut u8 {
    // SAFETY: the buffer follows the header in the same allocation.
    unsafe { (area as *mut u8).add(size_of::<Header>()) }
}

/// Replaces the snapshot; a text larger than the buffer is cut (logged once per worker).
pub fn publish(text: &str) {
    // SAFETY: AREA is null (not preloaded) or the attached area.
    let Some(area) = (unsafe { AREA.as_mut() }) else {
        return;
    };
    let kept = cut_at_line(text, area.capacity);
    let truncated = kept.len() < text.len();
    if truncated {
        static NOTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !NOTED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            warning!(
                "cdc_health: the metrics of this server ({} bytes) do not fit the endpoint's \
                 buffer ({} bytes); serving the first part. Raise cdc_health.max_tracked_slots.",
                text.len(),
                area.capacity
            );
        }
    }
    let _lock = Locked::on(area.lock, true);
    // SAFETY: the lock is held exclusively; `kept` fits the buffer.
    unsafe { std::ptr::copy_nonoverlapping(kept.as_ptr(), bytes(area), kept.len()) };
    area.len = kept.len();
    area.truncated = truncated;
}

/// A copy of the snapshot and whether it was cut; `None` without shared memory.
pub fn read() -> Option<(Vec<u8>, bool)> {
    // SAFETY: AREA is null (not preloaded) or the attached area.
    let area = unsafe { AREA.as_mut()? };
    let _lock = Locked::on(area.lock, false);
    // SAFETY: the lock is held; `len` bytes were written by `publish`.
    let copy = unsafe { std::slice::from_raw_parts(bytes(area), area.len) }.to_vec();
    Some((copy, area.truncated))
}
