//! The slot pass's open and recently resolved alerts, kept between passes.
//!
//! Reading every open `slot:` alert through SPI was the largest part of a quiet pass (about
//! 40 % at 500 alerting slots): the rows rarely change, yet each pass fetched and converted
//! all of them. A backend now keeps what it read and reads again only when the table may
//! have changed since: every committed transaction that writes `cdc_health.alerts` (the
//! worker's own passes, `check_now()`, an owner's UPDATE or DELETE, TRUNCATE, COPY) bumps a
//! counter in shared memory from a trigger and a commit callback. The counter is
//! bumped after the commit is visible, so a copy read before it is never taken for current.
//!
//! What the trigger cannot see (triggers disabled by the owner, a prepared transaction
//! committed in another session) is read at the latest `MAX_AGE` later. A copy read in a
//! transaction that had already written alerts is used for that pass only: its rows may
//! still roll back. Without shared memory (not preloaded) nothing is kept.

use std::cell::{Cell, RefCell};

use cdc_health_rules::alerts::{OpenAlert, ResolvedAlert};
use pgrx::pg_sys;
use pgrx::spi::SpiResult;

use crate::shmem;

/// The longest a copy is used without reading the table again.
const MAX_AGE_SECS: f64 = 60.0;

/// The alerts a pass starts from.
#[derive(Clone)]
pub struct Known {
    pub open: Vec<OpenAlert>,
    /// Resolved within the hold-down at the time they were read.
    pub resolved: Vec<ResolvedAlert>,
}

/// What a copy is valid for.
#[derive(Clone, Copy, PartialEq)]
struct Key {
    changes: u64,
    /// A dropped and re-created extension has a new table with other alerts.
    table: pg_sys::Oid,
    holddown: f64,
}

struct Kept {
    key: Key,
    read_at: f64,
    known: Known,
}

thread_local! {
    static KEPT: RefCell<Option<Kept>> = const { RefCell::new(None) };
    /// This transaction wrote `cdc_health.alerts` (set by the trigger, cleared at its end).
    static WROTE: Cell<bool> = const { Cell::new(false) };
    static CALLBACK: Cell<bool> = const { Cell::new(false) };
}

fn alerts_table() -> pg_sys::Oid {
    // SAFETY: catalog cache lookups, in a transaction (the pass runs in one).
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"cdc_health".as_ptr(), true);
        if schema == pg_sys::InvalidOid {
            return pg_sys::InvalidOid;
        }
        pg_sys::get_relname_relid(c"alerts".as_ptr(), schema)
    }
}

/// The slot pass's alerts at `now`: the kept copy when nothing changed since it was read,
/// else `load()` (kept for the next pass when it may be).
pub fn slot_alerts(
    now: f64,
    holddown: f64,
    load: impl FnOnce() -> SpiResult<Known>,
) -> SpiResult<Known> {
    // Read before `load` takes its snapshot: a change committed later bumps it again.
    let Some(changes) = shmem::alerts_changes() else {
        return load();
    };
    let key = Key {
        changes,
        table: alerts_table(),
        holddown,
    };
    let kept = KEPT.with_borrow(|kept| {
        kept.as_ref()
            .filter(|k| k.key == key && now >= k.read_at && now - k.read_at < MAX_AGE_SECS)
            .map(|k| Known {
                open: k.known.open.clone(),
                resolved: k
                    .known
                    .resolved
                    .iter()
                    .filter(|r| r.resolved_at >= now - holddown)
                    .cloned()
                    .collect(),
            })
    });
    if let Some(known) = kept {
        return Ok(known);
    }
    forget();
    let known = load()?;
    if !WROTE.get() {
        KEPT.set(Some(Kept {
            key,
            read_at: now,
            known: known.clone(),
        }));
    }
    Ok(known)
}

/// Drops the copy: this backend is about to write alerts (or failed while doing so).
pub fn forget() {
    KEPT.set(None);
}

/// Marks this transaction as one that changes `cdc_health.alerts`; the change is counted
/// when it commits.
fn note_write() {
    forget();
    WROTE.set(true);
    if !CALLBACK.replace(true) {
        // SAFETY: registered once per backend; the callback lives as long as the library.
        unsafe { pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut()) };
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        // After the commit is visible (or prepared: its COMMIT PREPARED may come from
        // anywhere, so MAX_AGE covers what follows).
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => {
            let wrote = WROTE.replace(false);
            if wrote {
                shmem::note_alerts_changed();
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => WROTE.set(false),
        _ => {}
    }
}

#[pgrx::pg_schema]
mod cdc_health {
    use pgrx::prelude::*;

    /// Row trigger (and statement trigger for TRUNCATE) on `cdc_health.alerts`, run BEFORE:
    /// an AFTER statement trigger does not fire for a statement whose RETURNING rows are read
    /// with a row limit (SPI with a count stops the executor before the statement ends).
    /// Enabled ALWAYS, so changes under `session_replication_role = replica` count too.
    #[pg_trigger]
    pub fn alerts_changed<'a>(
        trigger: &'a PgTrigger<'a>,
    ) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
        super::note_write();
        // The row goes on unchanged (NEW for INSERT and UPDATE, OLD for DELETE).
        Ok(trigger.new().or_else(|| trigger.old()))
    }
}
