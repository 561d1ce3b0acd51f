//! Reads replication slots and server state into the rules' plain observation types.

use std::collections::HashMap;

use cdc_health_rules::observation::DecodingStats;
use cdc_health_rules::slot_state::{safe_wal_size, wal_status, xid_age, Availability, WalKeep};
use cdc_health_rules::{ServerObservation, SlotObservation, SlotType};
use pgrx::prelude::*;

use crate::pg::backend::{setting_int, setting_text};

/// The server-wide facts, read from the server's own variables (no query needed).
pub fn server() -> ServerObservation {
    // SAFETY: plain reads of backend-local globals and WAL position accessors, in a backend.
    unsafe {
        let in_recovery = pg_sys::RecoveryInProgress();
        let current = if in_recovery {
            pg_sys::GetXLogReplayRecPtr(std::ptr::null_mut())
        } else {
            pg_sys::GetXLogWriteRecPtr()
        };
        let budget_mb = pg_sys::max_slot_wal_keep_size_mb;
        ServerObservation {
            current_lsn: (current != 0).then_some(current),
            in_recovery,
            wal_budget_bytes: (budget_mb >= 0).then(|| i64::from(budget_mb) << 20),
            freeze_max_age: setting_int(c"autovacuum_freeze_max_age").unwrap_or(200_000_000),
            idle_timeout_secs: idle_timeout_secs(),
        }
    }
}

/// `idle_replication_slot_timeout` (18), in seconds; `None` when 0 (off) or absent.
fn idle_timeout_secs() -> Option<f64> {
    #[cfg(feature = "pg18")]
    {
        // SAFETY: a plain read of the server's setting variable.
        let secs = unsafe { pg_sys::idle_replication_slot_timeout_secs };
        (secs > 0).then(|| f64::from(secs))
    }
    #[cfg(not(feature = "pg18"))]
    None
}

/// Age in transactions of the oldest transaction still running when the current snapshot
/// was taken (0 when none was). Free: it comes from the snapshot the statement already has.
pub fn oldest_running_xid_age() -> Option<i64> {
    // SAFETY: reads the active snapshot of this backend and the next-xid counter.
    unsafe {
        let snapshot = pg_sys::GetActiveSnapshot();
        if snapshot.is_null() {
            return None;
        }
        let next = pg_sys::ReadNextFullTransactionId().value as u32;
        Some(i64::from(next.wrapping_sub((*snapshot).xmin.into_inner())))
    }
}

/// A standby's settings for slot synchronisation (17+). `primary_conninfo` is only looked
/// into for a dbname: it may hold a password and never leaves this function.
pub fn standby_sync() -> cdc_health_rules::failover::StandbySync {
    let on = |name: &std::ffi::CStr| setting_text(name).is_some_and(|v| v == "on");
    cdc_health_rules::failover::StandbySync {
        sync_replication_slots: on(c"sync_replication_slots"),
        hot_standby_feedback: on(c"hot_standby_feedback"),
        primary_slot_name: setting_text(c"primary_slot_name").is_some_and(|v| !v.is_empty()),
        conninfo_dbname: setting_text(c"primary_conninfo")
            .is_some_and(|v| cdc_health_rules::failover::conninfo_has_dbname(&v)),
    }
}

/// The physical slots of `synchronized_standby_slots` (17+; empty when unset or absent).
pub fn synchronized_standby_slots() -> Vec<String> {
    setting_text(c"synchronized_standby_slots")
        .map(|text| cdc_health_rules::failover::parse_slot_list(&text))
        .unwrap_or_default()
}

/// `ReplicationSlotControlLock`'s place in `MainLWLockArray` (lwlocknames.h: 37 in 15 to 18).
const REPLICATION_SLOT_CONTROL_LOCK: usize = 37;

/// One slot's fields as shared memory holds them, copied under its spinlock.
struct RawSlot {
    /// Its place in `ReplicationSlotCtl`, which keys its statistics.
    index: usize,
    name: String,
    database: pg_sys::Oid,
    plugin: String,
    temporary: bool,
    active_pid: i32,
    xmin: u32,
    catalog_xmin: u32,
    restart_lsn: u64,
    confirmed_flush: u64,
    invalidation_reason: Option<&'static str>,
    /// `inactive_since` (17+), microseconds since 2000; 0 when active or unknown.
    inactive_since: i64,
    failover: Option<bool>,
    synced: Option<bool>,
}

/// A server string as Rust text; `None` for NULL.
fn c_text(ptr: *const std::ffi::c_char) -> Option<String> {
    // Database names may be in any encoding the database allows: decoded so that what is
    // written back is valid in this one (`session_text`).
    // SAFETY: callers pass NULL or a NUL-terminated string the server owns.
    unsafe { crate::pg::session_text::from_c_string(ptr) }
}

fn name_text(name: &pg_sys::NameData) -> String {
    // NameData is a NUL-terminated char array of NAMEDATALEN bytes.
    c_text(name.data.as_ptr()).unwrap_or_default()
}

/// Why the server invalidated the slot, in `pg_replication_slots.invalidation_reason`'s words
/// (16+; 15 only ever invalidates for WAL removal, and says so by clearing `restart_lsn`).
#[cfg(not(feature = "pg15"))]
fn invalidation(slot: &pg_sys::ReplicationSlotPersistentData) -> Option<&'static str> {
    use pg_sys::ReplicationSlotInvalidationCause as Cause;
    #[allow(non_upper_case_globals)]
    match slot.invalidated {
        Cause::RS_INVAL_NONE => None,
        Cause::RS_INVAL_WAL_REMOVED => Some("wal_removed"),
        Cause::RS_INVAL_HORIZON => Some("rows_removed"),
        Cause::RS_INVAL_WAL_LEVEL => Some("wal_level_insufficient"),
        #[cfg(feature = "pg18")]
        Cause::RS_INVAL_IDLE_TIMEOUT => Some("idle_timeout"),
        _ => Some("unknown"),
    }
}
#[cfg(feature = "pg15")]
fn invalidation(slot: &pg_sys::ReplicationSlotPersistentData) -> Option<&'static str> {
    (slot.restart_lsn == 0 && slot.invalidated_at != 0).then_some("wal_removed")
}

/// Copies every slot in use, as `pg_get_replication_slots` does: under
/// `ReplicationSlotControlLock` (no slot comes or goes) and each slot's spinlock (a consistent
/// copy of its fields). Nothing here can raise an error while a lock is held.
fn copy_slots() -> Vec<RawSlot> {
    let mut out = Vec::new();
    // SAFETY: shared-memory structures of the server, read under the locks that protect them;
    // the spinlock is held only for the bitwise copy.
    unsafe {
        let ctl = pg_sys::ReplicationSlotCtl;
        let count = usize::try_from(pg_sys::max_replication_slots).unwrap_or(0);
        if ctl.is_null() || count == 0 {
            return out;
        }
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(REPLICATION_SLOT_CONTROL_LOCK)).lock;
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_SHARED);
        out.reserve(count);
        // Declared `replication_slots[1]`, allocated for max_replication_slots.
        let first = (&raw mut (*ctl).replication_slots).cast::<pg_sys::ReplicationSlot>();
        for i in 0..count {
            let slot = &mut *first.add(i);
            if !slot.in_use {
                continue;
            }
            let mutex = &raw mut slot.mutex;
            pg_sys::s_lock(
                mutex,
                c"sampling.rs".as_ptr(),
                line!() as i32,
                c"copy_slots".as_ptr(),
            );
            let copy: pg_sys::ReplicationSlot = std::ptr::read(slot);
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            std::ptr::write_volatile(mutex, 0);
            let data = &copy.data;
            #[cfg(any(feature = "pg17", feature = "pg18"))]
            let (inactive_since, failover, synced) = (
                copy.inactive_since,
                Some(data.failover),
                Some(data.synced != 0),
            );
            #[cfg(not(any(feature = "pg17", feature = "pg18")))]
            let (inactive_since, failover, synced) = (0, None, None);
            out.push(RawSlot {
                index: i,
                name: name_text(&data.name),
                database: data.database,
                plugin: name_text(&data.plugin),
                temporary: data.persistency == pg_sys::ReplicationSlotPersistency::RS_TEMPORARY,
                active_pid: copy.active_pid,
                xmin: data.xmin.into_inner(),
                catalog_xmin: data.catalog_xmin.into_inner(),
                restart_lsn: data.restart_lsn,
                confirmed_flush: data.confirmed_flush,
                invalidation_reason: invalidation(data),
                inactive_since,
                failover,
                synced,
            });
        }
        pg_sys::LWLockRelease(lock);
    }
    out
}

fn availability(restart_lsn: u64) -> Availability {
    use pg_sys::WALAvailability as W;
    // SAFETY: reads WAL bookkeeping under the server's own locks.
    #[allow(non_upper_case_globals)]
    match unsafe { pg_sys::GetWALAvailability(restart_lsn) } {
        W::WALAVAIL_RESERVED => Availability::Reserved,
        W::WALAVAIL_EXTENDED => Availability::Extended,
        W::WALAVAIL_UNRESERVED => Availability::Unreserved,
        W::WALAVAIL_REMOVED => Availability::Removed,
        _ => Availability::InvalidLsn,
    }
}

/// `PGSTAT_KIND_REPLSLOT` (an enum member before 18, a macro since).
#[cfg(not(feature = "pg18"))]
const REPLSLOT_STATS: u32 = pg_sys::PgStat_Kind::PGSTAT_KIND_REPLSLOT;
#[cfg(feature = "pg18")]
const REPLSLOT_STATS: u32 = pg_sys::PGSTAT_KIND_REPLSLOT;
#[cfg(not(feature = "pg18"))]
type StatsObjectId = pg_sys::Oid;
#[cfg(feature = "pg18")]
type StatsObjectId = u64;

unsafe extern "C-unwind" {
    /// utils/pgstat_internal.h (not in pgrx's bindings). Replication slot statistics are
    /// keyed by the slot's index in `ReplicationSlotCtl`; `pgstat_fetch_replslot` finds that
    /// index by comparing the name with every slot, which made reading n slots cost n².
    fn pgstat_fetch_entry(
        kind: u32,
        dboid: pg_sys::Oid,
        objid: StatsObjectId,
    ) -> *mut std::ffi::c_void;
}

/// Decoding statistics of the logical slot at `index`, as `pg_stat_replication_slots` shows
/// them (zeros before the slot decoded anything).
fn decoding_stats(index: usize) -> DecodingStats {
    #[cfg(not(feature = "pg18"))]
    let objid = pg_sys::Oid::from(u32::try_from(index).unwrap_or(u32::MAX));
    #[cfg(feature = "pg18")]
    let objid = index as u64;
    // SAFETY: the entry lives in this transaction's statistics snapshot.
    // An ERROR inside must not unwind through Rust frames: the boundary turns it into a panic.
    let entry = unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| {
            pgstat_fetch_entry(REPLSLOT_STATS, pg_sys::Oid::INVALID, objid)
        })
        .cast::<pg_sys::PgStat_StatReplSlotEntry>()
        .as_ref()
    };
    entry.map_or_else(DecodingStats::default, |e| DecodingStats {
        spill_txns: e.spill_txns,
        spill_bytes: e.spill_bytes,
        stream_bytes: e.stream_bytes,
        total_txns: e.total_txns,
        total_bytes: e.total_bytes,
    })
}

/// Every replication slot on the server, physical and logical, all databases: read from
/// shared memory, with the columns `pg_replication_slots` computes derived the same way.
pub fn slots() -> Vec<SlotObservation> {
    let raw = copy_slots();
    // SAFETY: plain reads of the server's settings and counters, in a backend.
    let (write_lsn, keep, next_xid, now) = unsafe {
        (
            pg_sys::GetXLogWriteRecPtr(),
            WalKeep {
                segment_bytes: u64::try_from(pg_sys::wal_segment_size).unwrap_or(0),
                max_slot_wal_keep_mb: i64::from(pg_sys::max_slot_wal_keep_size_mb),
                wal_keep_mb: i64::from(pg_sys::wal_keep_size_mb),
            },
            pg_sys::ReadNextFullTransactionId().value as u32,
            pg_sys::GetCurrentTimestamp(),
        )
    };
    let mut databases: HashMap<pg_sys::Oid, Option<String>> = HashMap::new();
    raw.into_iter()
        .map(|s| {
            let logical = s.database != pg_sys::Oid::INVALID;
            let active = s.active_pid != 0;
            let wal_status = wal_status(
                s.invalidation_reason.is_some(),
                availability(s.restart_lsn),
                active,
            );
            let database = logical.then(|| {
                databases
                    .entry(s.database)
                    .or_insert_with(|| database_name(s.database))
                    .clone()
            });
            let decoding = logical.then(|| decoding_stats(s.index));
            SlotObservation {
                slot_type: if logical {
                    SlotType::Logical
                } else {
                    SlotType::Physical
                },
                database: database.flatten(),
                plugin: logical.then_some(s.plugin),
                temporary: s.temporary,
                active,
                active_pid: active.then_some(s.active_pid),
                safe_wal_size: safe_wal_size(wal_status, s.restart_lsn, write_lsn, keep),
                wal_status,
                restart_lsn: (s.restart_lsn != 0).then_some(s.restart_lsn),
                confirmed_flush_lsn: (s.confirmed_flush != 0).then_some(s.confirmed_flush),
                xmin_age: xid_age(next_xid, s.xmin),
                catalog_xmin_age: xid_age(next_xid, s.catalog_xmin),
                // The view shows it for logical slots only.
                invalidation_reason: s.invalidation_reason.filter(|_| logical).map(String::from),
                inactive_for_secs: (s.inactive_since != 0 && !active)
                    .then(|| (now - s.inactive_since) as f64 / 1e6),
                sent_txns: decoding.map(|d| d.total_txns),
                decoding,
                failover: s.failover,
                synced: s.synced,
                slot_name: s.name,
            }
        })
        .collect()
}

/// A database's name, `None` when it was dropped.
fn database_name(oid: pg_sys::Oid) -> Option<String> {
    // SAFETY: a syscache lookup in a transaction; the result is palloc'd in the current context.
    c_text(unsafe { pg_sys::get_database_name(oid) })
}
