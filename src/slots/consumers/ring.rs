//! The consumer events ring: a shared-memory area every walsender and decoding backend writes
//! into from its log hook and exit callback, and the worker and `cdc_health()` read.
//!
//! Writers run inside error reporting or process exit, in any backend: they take no lock,
//! allocate nothing and cannot fail. Each claims the next of `EVENTS` places with one atomic
//! add and publishes it seqlock-style (the place's sequence is odd while it is written, then
//! says which event it holds); every field is an atomic word, so a reader racing a writer
//! reads a torn event at worst, and drops it because the sequence changed. A burst of more
//! than `EVENTS` reports keeps the newest `EVENTS`.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use cdc_health_rules::consumer::{ConsumerEvent, EventClass, MESSAGE_BYTES};
use pgrx::pg_sys;

/// Places in the ring (about 300 bytes each).
pub const EVENTS: usize = 1024;
const NAME_WORDS: usize = 8;
const MESSAGE_WORDS: usize = MESSAGE_BYTES / 8;
const NAME: &std::ffi::CStr = c"cdc_health consumers";

#[repr(C)]
struct Place {
    /// `2 * n + 1` while event `n` is written into it, `2 * n + 2` once it holds it.
    seq: AtomicU64,
    at: AtomicU64,
    started_at: AtomicU64,
    confirmed_lsn: AtomicU64,
    /// pid (low 32 bits) and class (the next 8).
    meta: AtomicU64,
    /// The server's packed 30-bit SQLSTATE.
    sqlstate: AtomicU64,
    slot: [AtomicU64; NAME_WORDS],
    message: [AtomicU64; MESSAGE_WORDS],
}

#[repr(C)]
struct Ring {
    /// Events written so far; event `n` is in place `n % EVENTS`.
    head: AtomicU64,
    /// The slot worker's latch (a `*mut Latch` in shared memory), set to wake it early.
    worker_latch: AtomicU64,
    places: [Place; EVENTS],
}

static mut RING: *const Ring = std::ptr::null();

pub const AREA: crate::shmem::Area = crate::shmem::Area { size, attach };

fn size() -> usize {
    size_of::<Ring>()
}

/// # Safety
/// Called once per process from the shared-memory startup hook (`AddinShmemInitLock` held).
unsafe fn attach(_lock: *mut pg_sys::LWLock) {
    let mut found = false;
    // SAFETY: the area was requested with this size under this name; on first attach the
    // memory is zeroed here, which is a valid empty ring (all atomics 0).
    unsafe {
        let ring = pg_sys::ShmemInitStruct(NAME.as_ptr(), size(), &mut found) as *mut Ring;
        if !found {
            std::ptr::write_bytes(ring.cast::<u8>(), 0, size());
        }
        RING = ring;
    }
}

fn ring() -> Option<&'static Ring> {
    // SAFETY: RING is null (not preloaded) or points at the attached area for the life of
    // the process; the area is only accessed through atomics.
    unsafe { RING.as_ref() }
}

/// Packs `bytes` (cut to the words' size) into `words`, the rest zero.
fn store_bytes(words: &[AtomicU64], bytes: &[u8]) {
    for (i, word) in words.iter().enumerate() {
        let mut chunk = [0u8; 8];
        let from = (i * 8).min(bytes.len());
        let to = (from + 8).min(bytes.len());
        chunk[..to - from].copy_from_slice(&bytes[from..to]);
        word.store(u64::from_le_bytes(chunk), Ordering::Relaxed);
    }
}

/// The bytes of `words` up to the first NUL.
fn load_bytes<const N: usize>(words: &[AtomicU64]) -> heapless::Vec<u8, N> {
    let mut out = heapless::Vec::new();
    for word in words {
        for b in word.load(Ordering::Relaxed).to_le_bytes() {
            if b == 0 || out.push(b).is_err() {
                return out;
            }
        }
    }
    out
}

/// One event to record, as the hooks see it.
pub struct Record<'a> {
    pub class: EventClass,
    pub pid: i32,
    /// The server's packed SQLSTATE (`ErrorData.sqlerrcode`), 0 for none.
    pub sqlstate: i32,
    pub slot: &'a [u8],
    pub message: &'a [u8],
    pub at: f64,
    pub started_at: Option<f64>,
    pub confirmed_lsn: Option<u64>,
}

/// Records `r`; nothing without shared memory. Lock-free and allocation-free.
pub fn record(r: &Record<'_>) {
    let Some(ring) = ring() else { return };
    let n = ring.head.fetch_add(1, Ordering::AcqRel);
    let place = &ring.places[(n % EVENTS as u64) as usize];
    place.seq.store(2 * n + 1, Ordering::Relaxed);
    fence(Ordering::Release);
    place.at.store(r.at.to_bits(), Ordering::Relaxed);
    place.started_at.store(
        r.started_at.unwrap_or(f64::NAN).to_bits(),
        Ordering::Relaxed,
    );
    place
        .confirmed_lsn
        .store(r.confirmed_lsn.unwrap_or(0), Ordering::Relaxed);
    let meta = u64::from(r.pid as u32) | (u64::from(r.class.code()) << 32);
    place.meta.store(meta, Ordering::Relaxed);
    place
        .sqlstate
        .store(r.sqlstate as u64 & 0x3fff_ffff, Ordering::Relaxed);
    store_bytes(&place.slot, r.slot);
    store_bytes(&place.message, r.message);
    place.seq.store(2 * n + 2, Ordering::Release);
}

/// The server's packed SQLSTATE as its five characters (`PGUNSIXBIT`).
fn unpack_sqlstate(code: u64) -> [u8; 5] {
    let mut out = [b'0'; 5];
    for (i, c) in out.iter_mut().enumerate() {
        *c = ((code >> (6 * i)) & 0x3f) as u8 + b'0';
    }
    out
}

/// Events since `after` (a count of events, as `head()` returned it), oldest first, with the
/// slot each names; at most the `EVENTS` newest. Messages are decoded as other sessions' text.
pub fn read_since(after: u64) -> Vec<(heapless::String<64>, ConsumerEvent)> {
    let Some(ring) = ring() else {
        return Vec::new();
    };
    let head = ring.head.load(Ordering::Acquire);
    let first = head.saturating_sub(EVENTS as u64).max(after);
    let mut out = Vec::new();
    for n in first..head {
        let place = &ring.places[(n % EVENTS as u64) as usize];
        let seq = place.seq.load(Ordering::Acquire);
        if seq != 2 * n + 2 {
            continue;
        }
        let at = f64::from_bits(place.at.load(Ordering::Relaxed));
        let started_at = f64::from_bits(place.started_at.load(Ordering::Relaxed));
        let confirmed = place.confirmed_lsn.load(Ordering::Relaxed);
        let meta = place.meta.load(Ordering::Relaxed);
        let sqlstate = place.sqlstate.load(Ordering::Relaxed);
        let slot = load_bytes::<64>(&place.slot);
        let message = load_bytes::<MESSAGE_BYTES>(&place.message);
        fence(Ordering::Acquire);
        if place.seq.load(Ordering::Relaxed) != seq {
            continue;
        }
        let Some(class) = EventClass::from_code((meta >> 32) as u8) else {
            continue;
        };
        let Ok(slot) = std::str::from_utf8(&slot) else {
            continue;
        };
        let Ok(slot) = heapless::String::try_from(slot) else {
            continue;
        };
        out.push((
            slot,
            ConsumerEvent {
                at,
                pid: meta as u32 as i32,
                class,
                sqlstate: unpack_sqlstate(sqlstate),
                message: crate::pg::session_text::from_bytes(&message),
                started_at: (!started_at.is_nan()).then_some(started_at),
                confirmed_lsn: (confirmed != 0).then_some(confirmed),
            },
        ));
    }
    out
}

/// Events written so far (a reader's mark for `read_since`); 0 without shared memory.
pub fn head() -> u64 {
    ring().map_or(0, |r| r.head.load(Ordering::Acquire))
}

/// The slot worker tells the hooks where to wake it (`None` as it stops).
pub fn set_worker_latch(latch: Option<*mut pg_sys::Latch>) {
    if let Some(ring) = ring() {
        let value = latch.map_or(0, |l| l as u64);
        ring.worker_latch.store(value, Ordering::Release);
    }
}

/// Wakes the slot worker, if it said where. Safe inside error reporting: `SetLatch` only
/// sets a flag and signals.
pub fn wake_worker() {
    let Some(ring) = ring() else { return };
    let latch = ring.worker_latch.load(Ordering::Acquire) as *mut pg_sys::Latch;
    if !latch.is_null() {
        // SAFETY: the worker's latch lives in its PGPROC, in shared memory, for the life of
        // the server; should the worker have exited, setting it wakes nobody or a process
        // that ignores a spurious wake, as every latch user must.
        unsafe { pg_sys::SetLatch(latch) };
    }
}
