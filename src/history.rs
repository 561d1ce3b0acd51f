//! Writes `cdc_health.slot_history`, keeps it within its retention, and beats the heartbeat.

use cdc_health_rules::history_pacing::{HistoryMark, Pacing};
use cdc_health_rules::lsn::format_lsn;
use cdc_health_rules::ServerObservation;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use crate::monitor::SlotView;
use crate::{settings, shmem};

/// Old rows deleted per pass: small batches keep each pass short and its WAL low.
const PRUNE_BATCH: i64 = 1000;

/// Writes a history row for every slot that is due one, then prunes old rows.
pub fn record(server: &ServerObservation, views: &[SlotView], now: f64) -> SpiResult<()> {
    let pacing = Pacing {
        interval_secs: f64::from(settings::HISTORY_INTERVAL_S.get()),
        idle_interval_secs: f64::from(settings::HISTORY_IDLE_INTERVAL_S.get()),
    };
    let marks: Vec<_> = views
        .iter()
        .map(|v| {
            let mark = HistoryMark {
                at: now,
                wal_status: v.slot.wal_status,
                active: v.slot.active,
                status: v.verdict.status,
                restart_lsn: v.slot.restart_lsn,
                confirmed_flush_lsn: v.slot.confirmed_flush_lsn,
                retained_bytes: v.verdict.retained_wal_bytes,
            };
            (v.slot.slot_name.as_str(), mark)
        })
        .collect();
    let due = shmem::history_due(&marks, &pacing);
    if due.is_empty() {
        return Ok(());
    }
    let rows: Vec<&SlotView> = views
        .iter()
        .filter(|v| due.contains(&v.slot.slot_name))
        .collect();
    let lsn = |l: Option<u64>| l.map(format_lsn);
    let current = lsn(server.current_lsn);
    Spi::run_with_args(
        "INSERT INTO cdc_health.slot_history
         SELECT pg_catalog.now(), n, t, d, w, a, s, r, f, sw, $11::pg_lsn, rl::pg_lsn, cl::pg_lsn
         -- Multi-argument unnest is parser syntax: it must be unqualified (the parser maps
         -- it to pg_catalog.unnest itself).
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[],
                                $6::text[], $7::int8[], $8::int8[], $9::int8[], $10::text[],
                                $12::text[]) AS u(n, t, d, w, a, s, r, f, sw, rl, cl)",
        &[
            column(&rows, |v| v.slot.slot_name.clone()),
            column(&rows, |v| v.slot.slot_type.as_str().to_string()),
            column(&rows, |v| v.slot.database.clone()),
            column(&rows, |v| v.slot.wal_status.map(|w| w.as_str().to_string())),
            column(&rows, |v| v.slot.active),
            column(&rows, |v| v.verdict.status.as_str().to_string()),
            column(&rows, |v| v.verdict.retained_wal_bytes),
            column(&rows, |v| v.verdict.flush_lag_bytes),
            column(&rows, |v| v.verdict.safe_wal_size),
            column(&rows, |v| lsn(v.slot.restart_lsn)),
            current.into(),
            column(&rows, |v| lsn(v.slot.confirmed_flush_lsn)),
        ],
    )?;
    prune()
}

/// One array argument: `f` applied to every row.
fn column<T>(rows: &[&SlotView], f: impl Fn(&SlotView) -> T) -> DatumWithOid<'static>
where
    Vec<T>: IntoDatum,
{
    rows.iter().map(|v| f(v)).collect::<Vec<T>>().into()
}

/// Deletes at most one batch of rows older than `cdc_health.history_retention`.
fn prune() -> SpiResult<()> {
    Spi::run_with_args(
        "DELETE FROM cdc_health.slot_history WHERE ctid = ANY (ARRAY(
             SELECT ctid FROM cdc_health.slot_history
             WHERE sampled_at < pg_catalog.now() - pg_catalog.make_interval(secs => $1)
             LIMIT $2))",
        &[
            f64::from(settings::HISTORY_RETENTION_S.get()).into(),
            PRUNE_BATCH.into(),
        ],
    )
}

/// Updates the heartbeat row when `cdc_health.heartbeat_interval` has passed since the last
/// beat (the row itself remembers when that was).
pub fn beat_heartbeat() -> SpiResult<()> {
    let every = settings::HEARTBEAT_INTERVAL_S.get();
    if every <= 0 {
        return Ok(());
    }
    Spi::run_with_args(
        "UPDATE cdc_health.heartbeat SET beat_at = pg_catalog.now(), beats = beats + 1
         WHERE id = 1 AND beat_at <= pg_catalog.now() - pg_catalog.make_interval(secs => $1)",
        &[f64::from(every).into()],
    )
}
