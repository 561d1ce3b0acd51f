//! Reads replication slots and server state into the rules' plain observation types.

use cdc_health_rules::lsn::parse_lsn;
use cdc_health_rules::observation::DecodingStats;
use cdc_health_rules::{ServerObservation, SlotObservation, SlotType, WalStatus};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

/// Columns that only newer servers have, chosen when the extension is built for a version.
#[cfg(any(feature = "pg17", feature = "pg18"))]
const VERSIONED_COLUMNS: &str = "s.invalidation_reason::text, \
     extract(epoch FROM pg_catalog.clock_timestamp() - s.inactive_since)::float8";
/// 16's `conflicting` is true for every invalidated logical slot; only WAL removal clears
/// `restart_lsn`, which tells the two apart.
#[cfg(feature = "pg16")]
const VERSIONED_COLUMNS: &str = "CASE WHEN s.conflicting THEN \
          CASE WHEN s.restart_lsn IS NULL THEN 'wal_removed' ELSE 'conflict with recovery' END \
     END, NULL::float8";
#[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
const VERSIONED_COLUMNS: &str = "NULL::text, NULL::float8";
/// `failover` and `synced` (17+), last in the select list.
#[cfg(any(feature = "pg17", feature = "pg18"))]
const FAILOVER_COLUMNS: &str = "s.failover, s.synced";
#[cfg(not(any(feature = "pg17", feature = "pg18")))]
const FAILOVER_COLUMNS: &str = "NULL::bool, NULL::bool";

fn slots_query() -> String {
    format!(
        "SELECT s.slot_name::text, s.slot_type, s.database::text, s.plugin::text, s.temporary, \
                s.active, s.active_pid, s.wal_status, s.restart_lsn::text, \
                s.confirmed_flush_lsn::text, s.safe_wal_size, \
                pg_catalog.age(s.xmin)::int8, pg_catalog.age(s.catalog_xmin)::int8, \
                {VERSIONED_COLUMNS}, r.total_txns, r.spill_txns, r.spill_bytes, \
                r.stream_bytes, r.total_bytes, {FAILOVER_COLUMNS} \
         FROM pg_catalog.pg_replication_slots s \
         LEFT JOIN pg_catalog.pg_stat_replication_slots r \
                ON r.slot_name OPERATOR(pg_catalog.=) s.slot_name"
    )
}

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
            freeze_max_age: int_setting(c"autovacuum_freeze_max_age").unwrap_or(200_000_000),
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

/// An integer server setting by name, through the server's own GUC lookup.
pub fn setting_text(name: &std::ffi::CStr) -> Option<String> {
    // SAFETY: GetConfigOption returns a pointer into the GUC's own storage (or NULL).
    let value = unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) };
    if value.is_null() {
        return None;
    }
    Some(
        unsafe { std::ffi::CStr::from_ptr(value) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn int_setting(name: &std::ffi::CStr) -> Option<i64> {
    setting_text(name)?.parse().ok()
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

/// First column of the first row of a read-only query.
///
/// pgrx's `Spi::get_one` runs through `update()`, which assigns a transaction id: a monitor
/// reading through it would burn an xid and write a commit record on every pass, hold an xid
/// that slot creation has to wait for, and fail outright on a standby. Reads go through here.
pub fn read_one<T: FromDatum + IntoDatum>(
    query: &str,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> SpiResult<Option<T>> {
    Spi::connect(|client| {
        let rows = client.select(query, Some(1), args)?;
        if rows.is_empty() {
            return Ok(None);
        }
        rows.first().get_one::<T>()
    })
}

thread_local! {
    /// The slot query's plan, kept for the life of the backend (the plan cache revalidates it).
    static SLOTS_PLAN: std::cell::RefCell<Option<pgrx::spi::OwnedPreparedStatement>> =
        const { std::cell::RefCell::new(None) };
}

/// Every replication slot on the server, physical and logical, all databases.
pub fn slots() -> SpiResult<Vec<SlotObservation>> {
    Spi::connect(|client| {
        let cached = SLOTS_PLAN.with(|p| p.borrow_mut().take());
        let plan = match cached {
            Some(plan) => plan,
            None => client.prepare(&slots_query(), &[])?.keep(),
        };
        let rows = client.select(&plan, None, &[]);
        SLOTS_PLAN.with(|p| *p.borrow_mut() = Some(plan));
        let mut out = Vec::new();
        for row in rows? {
            let lsn = |i: usize| -> SpiResult<Option<u64>> {
                Ok(row.get::<String>(i)?.and_then(|t| parse_lsn(&t).ok()))
            };
            let slot_type: String = row.get(2)?.unwrap_or_default();
            out.push(SlotObservation {
                slot_name: row.get(1)?.unwrap_or_default(),
                slot_type: SlotType::parse(&slot_type).unwrap_or(SlotType::Physical),
                database: row.get(3)?,
                plugin: row.get(4)?,
                temporary: row.get(5)?.unwrap_or(false),
                active: row.get(6)?.unwrap_or(false),
                active_pid: row.get(7)?,
                wal_status: row.get::<String>(8)?.as_deref().and_then(WalStatus::parse),
                restart_lsn: lsn(9)?,
                confirmed_flush_lsn: lsn(10)?,
                safe_wal_size: row.get(11)?,
                xmin_age: row.get(12)?,
                catalog_xmin_age: row.get(13)?,
                invalidation_reason: row.get(14)?,
                inactive_for_secs: row.get(15)?,
                sent_txns: row.get(16)?,
                decoding: match (row.get::<i64>(17)?, row.get::<i64>(18)?) {
                    (Some(spill_txns), Some(spill_bytes)) => Some(DecodingStats {
                        spill_txns,
                        spill_bytes,
                        stream_bytes: row.get(19)?.unwrap_or(0),
                        total_txns: row.get(16)?.unwrap_or(0),
                        total_bytes: row.get(20)?.unwrap_or(0),
                    }),
                    _ => None,
                },
                failover: row.get(21)?,
                synced: row.get(22)?,
            });
        }
        Ok(out)
    })
}
