//! Writes `cdc_health.history_samples`, thins it with age and keeps it within its retention,
//! and beats the heartbeat.

use std::sync::atomic::{AtomicU64, Ordering};

use cdc_health_rules::history_pacing::{HistoryMark, Pacing};
use cdc_health_rules::history_rollup::{
    due, first_rolled_until, horizon, plan, status_code, wal_status_code, Kind, Plan, Retention,
    Step,
};
use cdc_health_rules::lsn::format_lsn;
use cdc_health_rules::ServerObservation;
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use crate::pg::spi::read_one;
use crate::slots::view::SlotView;
use crate::{settings, shmem};

/// Old rows deleted per pass: small batches keep each pass short and its WAL low.
const PRUNE_BATCH: i64 = 1000;

/// Rollups and deletions are looked for at most this often while nothing is behind; a
/// period matures every 15 minutes, so a minute late costs nothing.
const MAINTENANCE_EVERY_SECS: f64 = 60.0;

/// Rows one pass rolls up per step, at least a period: a backlog (14 days of 100 slots after
/// an upgrade from 0.1.0 is 2 million rows) is caught up in minutes, each pass kept short.
const ROLLUP_ROWS_PER_PASS: usize = 20_000;
/// And at most this many periods, however few rows they hold.
const ROLLUP_PERIODS_PER_PASS: usize = 32;

/// When this process next looks for rollups and deletions (f64 bits; 0: at once).
static NEXT_MAINTENANCE_AT: AtomicU64 = AtomicU64::new(0);

/// Writes a history row for every slot that is due one, then thins and prunes old rows.
pub fn record(server: &ServerObservation, views: &[SlotView], now: f64) -> SpiResult<()> {
    let pacing = Pacing {
        interval_secs: settings::history_interval_secs(),
        idle_interval_secs: settings::history_idle_interval_secs(),
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
            let entry = v.history.as_ref().map(|h| h.entry);
            (v.slot.slot_name.as_str(), entry, mark)
        })
        .collect();
    let due = shmem::history_due(&marks, &pacing);
    let rows: Vec<&SlotView> = views
        .iter()
        .zip(due)
        .filter_map(|(v, due)| due.then_some(v))
        .collect();
    if !rows.is_empty() {
        insert(server, &rows)?;
    }
    maintain(now)
}

fn insert(server: &ServerObservation, rows: &[&SlotView]) -> SpiResult<()> {
    let names = || column(rows, |v| v.slot.slot_name.clone());
    let types = || column(rows, |v| v.slot.slot_type.as_str().to_string());
    let databases = || column(rows, |v| v.slot.database.clone());
    // A slot is named once. NOT EXISTS first: ON CONFLICT alone would draw a sequence value
    // for every row of every insert.
    Spi::run_with_args(
        "INSERT INTO cdc_health.history_slots (slot_name, slot_type, database)
         SELECT n, t, d FROM unnest($1::text[], $2::text[], $3::text[]) AS u(n, t, d)
         WHERE NOT EXISTS (SELECT FROM cdc_health.history_slots s
                           WHERE s.slot_name = u.n AND s.slot_type = u.t
                             AND s.database IS NOT DISTINCT FROM u.d)
         ON CONFLICT DO NOTHING",
        &[names(), types(), databases()],
    )?;
    let lsn = |l: Option<u64>| l.map(format_lsn);
    // A row is a transition (kept through rollups) when wal_status or active differs from
    // the slot's previous row, or it has none: compared with the table, so a restart of the
    // worker neither invents nor misses one.
    Spi::run_with_args(
        "INSERT INTO cdc_health.history_samples
             (sampled_at, retained_wal_bytes, flush_lag_bytes, safe_wal_size, current_lsn,
              restart_lsn, confirmed_flush_lsn, slot_id, kind, status, wal_status, active)
         SELECT pg_catalog.now(), u.r, u.f, u.sw, $11::pg_lsn, u.rl::pg_lsn, u.cl::pg_lsn, s.id,
                CASE WHEN p.found IS NULL OR p.wal_status IS DISTINCT FROM u.w
                          OR p.active IS DISTINCT FROM u.a
                     THEN 1 ELSE 0 END,
                u.st, u.w, u.a
         -- Multi-argument unnest is parser syntax: it must be unqualified (the parser maps
         -- it to pg_catalog.unnest itself).
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int2[], $5::bool[], $6::int2[],
                     $7::int8[], $8::int8[], $9::int8[], $10::text[], $12::text[])
                  AS u(n, t, d, w, a, st, r, f, sw, rl, cl)
         JOIN cdc_health.history_slots s
           ON s.slot_name = u.n AND s.slot_type = u.t AND s.database IS NOT DISTINCT FROM u.d
         LEFT JOIN LATERAL (
             SELECT true AS found, h.wal_status, h.active FROM cdc_health.history_samples h
             WHERE h.slot_id = s.id ORDER BY h.sampled_at DESC LIMIT 1) p ON true",
        &[
            names(),
            types(),
            databases(),
            column(rows, |v| wal_status_code(v.slot.wal_status)),
            column(rows, |v| v.slot.active),
            column(rows, |v| status_code(v.verdict.status)),
            column(rows, |v| v.verdict.retained_wal_bytes),
            column(rows, |v| v.verdict.flush_lag_bytes),
            column(rows, |v| v.verdict.safe_wal_size),
            column(rows, |v| lsn(v.slot.restart_lsn)),
            lsn(server.current_lsn).into(),
            column(rows, |v| lsn(v.slot.confirmed_flush_lsn)),
        ],
    )
}

/// One array argument: `f` applied to every row.
fn column<T>(rows: &[&SlotView], f: impl Fn(&SlotView) -> T) -> DatumWithOid<'static>
where
    Vec<T>: IntoDatum,
{
    rows.iter().map(|v| f(v)).collect::<Vec<T>>().into()
}

/// Looks for rollups and deletions at the next pass (the settings may have changed).
pub fn maintain_soon() {
    NEXT_MAINTENANCE_AT.store(0, Ordering::Relaxed);
}

fn retention() -> Retention {
    Retention {
        full_secs: settings::history_full_retention_secs(),
        quarter_secs: settings::history_15min_retention_secs(),
        total_secs: settings::history_retention_secs(),
    }
}

/// Rolls up periods until about `ROLLUP_ROWS_PER_PASS` rows per step are rolled and deletes
/// at most one batch of expired rows; runs again at the next pass while any of them is
/// behind, else a minute later.
fn maintain(now: f64) -> SpiResult<()> {
    if now < f64::from_bits(NEXT_MAINTENANCE_AT.load(Ordering::Relaxed)) {
        return Ok(());
    }
    let ids: Vec<i32> = read_one::<Vec<i32>>(
        "SELECT pg_catalog.array_agg(id) FROM cdc_health.history_slots",
        &[],
    )?
    .unwrap_or_default();
    let retention = retention();
    let mut behind = false;
    let mut finer = None;
    for step in retention.steps() {
        let (mut rolled, mut periods) = (0, 0);
        // Read once per step; each period rolled then says where the step stands.
        let mut recorded = read_one::<f64>(
            "SELECT EXTRACT(epoch FROM rolled_until)::float8 FROM cdc_health.history_rollups
             WHERE kind = $1",
            &[step.into.code().into()],
        )?;
        loop {
            let (rolled_until, more, rows) = roll(&step, recorded, finer, &ids, now)?;
            recorded = Some(rolled_until);
            rolled += rows;
            periods += 1;
            if !more || rolled >= ROLLUP_ROWS_PER_PASS || periods >= ROLLUP_PERIODS_PER_PASS {
                behind |= more;
                finer = Some(rolled_until);
                break;
            }
        }
    }
    behind |= prune(&ids, retention.total_secs)?;
    let next = if behind {
        now
    } else {
        now + MAINTENANCE_EVERY_SECS
    };
    NEXT_MAINTENANCE_AT.store(next.to_bits(), Ordering::Relaxed);
    Ok(())
}

fn kinds(kinds: &[Kind]) -> DatumWithOid<'static> {
    kinds.iter().map(|k| k.code()).collect::<Vec<i16>>().into()
}

/// Rolls the next period of `step` that is old enough (and, with `finer`, rolled by the
/// finer step), given the step's `recorded` position in `cdc_health.history_rollups`;
/// returns where the step stands (recorded), whether another period is waiting and how many
/// rows it rolled.
fn roll(
    step: &Step,
    recorded: Option<f64>,
    finer: Option<f64>,
    ids: &[i32],
    now: f64,
) -> SpiResult<(f64, bool, usize)> {
    let into = step.into.code();
    let ids = || -> DatumWithOid<'static> { ids.to_vec().into() };
    let rolled_until = match recorded {
        Some(at) => at,
        None => {
            // Once per installation (or after an upgrade): where the rows start.
            let oldest = read_one::<f64>(
                "SELECT EXTRACT(epoch FROM pg_catalog.min(sampled_at))::float8
                 FROM cdc_health.history_samples WHERE kind = ANY ($1)",
                &[kinds(step.from)],
            )?;
            first_rolled_until(step, oldest, now)
        }
    };
    let horizon = horizon(step, now, finer);
    if !due(step, rolled_until, horizon) {
        if recorded.is_none() {
            save_rolled_until(into, rolled_until)?;
        }
        return Ok((rolled_until, false, 0));
    }
    // The first row to roll, slot by slot through the index (a min() over all slots would
    // read every slot's newer rows), and only up to the horizon: beyond it lie the rows of
    // other kinds that a search for this step's kinds would otherwise walk through.
    let next_row = read_one::<f64>(
        "SELECT EXTRACT(epoch FROM pg_catalog.min(f.at))::float8
         FROM unnest($1::int4[]) AS i(id),
         LATERAL (SELECT h.sampled_at AS at FROM cdc_health.history_samples h
                  WHERE h.slot_id = i.id AND h.kind = ANY ($2)
                    AND h.sampled_at >= pg_catalog.to_timestamp($3)
                    AND h.sampled_at < pg_catalog.to_timestamp($4)
                  ORDER BY h.sampled_at LIMIT 1) f",
        &[ids(), kinds(step.from), rolled_until.into(), horizon.into()],
    )?;
    let (start, end) = match plan(step, rolled_until, next_row, horizon) {
        Plan::Roll { start, end } => (start, end),
        Plan::Idle { rolled_until: at } => {
            if recorded != Some(at) {
                save_rolled_until(into, at)?;
            }
            return Ok((at, false, 0));
        }
    };
    // Within the period, of the given kinds; $1: slot ids, $2: kinds, $3 and $4: the period.
    let rows = "h.kind = ANY ($2) AND h.sampled_at >= pg_catalog.to_timestamp($3)
                AND h.sampled_at < pg_catalog.to_timestamp($4)";
    // A row per slot: the last row's figures and positions, the range of retained WAL and
    // flush lag, the worst states, and whether the slot was active throughout.
    Spi::run_with_args(
        &format!(
            "INSERT INTO cdc_health.history_samples
                 (sampled_at, retained_wal_bytes, flush_lag_bytes, safe_wal_size, current_lsn,
                  restart_lsn, confirmed_flush_lsn, retained_wal_min, retained_wal_max,
                  flush_lag_min, flush_lag_max, slot_id, kind, status, wal_status, active,
                  always_active)
             SELECT l.sampled_at, l.retained_wal_bytes, l.flush_lag_bytes, l.safe_wal_size,
                    l.current_lsn, l.restart_lsn, l.confirmed_flush_lsn, a.rmin, a.rmax, a.fmin,
                    a.fmax, a.slot_id, $5, a.status, a.wal_status, l.active, a.always_active
             FROM (SELECT h.slot_id,
                       pg_catalog.min(COALESCE(h.retained_wal_min, h.retained_wal_bytes)) AS rmin,
                       pg_catalog.max(COALESCE(h.retained_wal_max, h.retained_wal_bytes)) AS rmax,
                       pg_catalog.min(COALESCE(h.flush_lag_min, h.flush_lag_bytes)) AS fmin,
                       pg_catalog.max(COALESCE(h.flush_lag_max, h.flush_lag_bytes)) AS fmax,
                       pg_catalog.max(h.status) AS status,
                       pg_catalog.max(h.wal_status) AS wal_status,
                       pg_catalog.bool_and(COALESCE(h.always_active, h.active)) AS always_active
                   FROM cdc_health.history_samples h
                   WHERE h.slot_id = ANY ($1) AND {rows} GROUP BY h.slot_id) a,
             LATERAL (SELECT * FROM cdc_health.history_samples h
                      WHERE h.slot_id = a.slot_id AND {rows}
                      ORDER BY h.sampled_at DESC LIMIT 1) l"
        ),
        &[
            ids(),
            kinds(step.from),
            start.into(),
            end.into(),
            into.into(),
        ],
    )?;
    let deleted = Spi::connect_mut(|client| {
        client
            .update(
                &format!(
                    "DELETE FROM cdc_health.history_samples h WHERE h.slot_id = ANY ($1) AND {rows}"
                ),
                None,
                &[ids(), kinds(&[step.delete]), start.into(), end.into()],
            )
            .map(|t| t.len())
    })?;
    save_rolled_until(into, end)?;
    Ok((end, due(step, end, horizon), deleted.max(1)))
}

fn save_rolled_until(kind: i16, at: f64) -> SpiResult<()> {
    Spi::run_with_args(
        // An upsert: a row deleted by hand is put back rather than searched for every pass.
        "INSERT INTO cdc_health.history_rollups VALUES ($1, pg_catalog.to_timestamp($2))
         ON CONFLICT (kind) DO UPDATE SET rolled_until = excluded.rolled_until",
        &[kind.into(), at.into()],
    )
}

/// Deletes at most one batch of rows older than `cdc_health.history_retention`, whatever
/// their resolution, and then the names of slots no row is left of; true when more are
/// waiting.
fn prune(ids: &[i32], retention_secs: f64) -> SpiResult<bool> {
    let deleted = Spi::connect_mut(|client| {
        client
            .update(
                "DELETE FROM cdc_health.history_samples WHERE ctid = ANY (ARRAY(
                     SELECT ctid FROM cdc_health.history_samples
                     WHERE slot_id = ANY ($3)
                       AND sampled_at < pg_catalog.now() - pg_catalog.make_interval(secs => $1)
                     LIMIT $2))",
                None,
                &[
                    retention_secs.into(),
                    PRUNE_BATCH.into(),
                    ids.to_vec().into(),
                ],
            )
            .map(|t| t.len())
    })?;
    // Once a round of deletions is done, not after every batch.
    if deleted > 0 && (deleted as i64) < PRUNE_BATCH {
        Spi::run(
            "DELETE FROM cdc_health.history_slots s
             WHERE NOT EXISTS (SELECT FROM cdc_health.history_samples h WHERE h.slot_id = s.id)",
        )?;
    }
    Ok(deleted as i64 >= PRUNE_BATCH)
}

/// Updates the heartbeat row when `cdc_health.heartbeat_interval` has passed since the last
/// beat (the row itself remembers when that was).
pub fn beat_heartbeat() -> SpiResult<()> {
    let Some(every) = settings::heartbeat_interval_secs() else {
        return Ok(());
    };
    Spi::run_with_args(
        "UPDATE cdc_health.heartbeat SET beat_at = pg_catalog.now(), beats = beats + 1
         WHERE id = 1 AND beat_at <= pg_catalog.now() - pg_catalog.make_interval(secs => $1)",
        &[every.into()],
    )
}
