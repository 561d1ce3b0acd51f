//! C symbols of released versions' functions whose SQL signature has changed since.
//!
//! Between installing a new library and `ALTER EXTENSION cdc_health UPDATE`, the old
//! version's SQL objects call into the new library. Each function here keeps an old symbol
//! with the old result shape (no SQL of its own: the old install script created it), so those
//! objects work until the upgrade script replaces them. Never remove one while a release that
//! names it is supported (sql/RELEASES).

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

use crate::api::WorkerRow;

/// 0.1.0's `cdc_health.worker_status()`: 0.2.0 added `skipped_passes`.
// pgrx reads the column names from this inline tuple, so it cannot be a type alias.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe, sql = false)]
fn worker_status() -> TableIterator<
    'static,
    (
        name!(running, bool),
        name!(pid, Option<i32>),
        name!(started_at, Option<TimestampWithTimeZone>),
        name!(last_pass_at, Option<TimestampWithTimeZone>),
        name!(passes, i64),
        name!(failed_passes, i64),
        name!(extension_present, bool),
        name!(in_recovery, bool),
        name!(tracked_slots, i32),
        name!(untracked_slots, i32),
        name!(note, Option<String>),
    ),
> {
    let w = WorkerRow::now();
    TableIterator::once((
        w.running,
        w.pid,
        w.started_at,
        w.last_pass_at,
        w.passes,
        w.failed_passes,
        w.extension_present,
        w.in_recovery,
        w.tracked_slots,
        w.untracked_slots,
        w.note,
    ))
}
