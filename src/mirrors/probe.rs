//! Measuring a check: count and newest time of each side, aggregated where the data lives,
//! with the rights of the role that measures; the outcome assessed, stored and alerted.

use std::time::Instant;

use cdc_health_rules::alerts::Observed;
use cdc_health_rules::clickhouse::{pg_text, quote_ident as ch_ident, Target};
use cdc_health_rules::mirrors::{assess_mirror, CheckKind, MirrorVerdict, Probe, SideFigures};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use serde_json::json;

use super::error::Error;
use super::store::{self, StoredCheck};
use crate::clickhouse;
use crate::pg::errors::{OrRaise, SqlError};
use crate::pg::role::{as_extension_owner, Switched};
use crate::pg::spi::read_one;

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub fn relation_text(rel: pg_sys::Oid) -> String {
    read_one::<String>("SELECT $1::regclass::text", &[rel.into()])
        .or_raise(|e| Error::Internal("naming a relation", e))
        .unwrap_or_else(|| Error::RelationGone(rel.to_u32()).raise())
}

pub fn current_role() -> String {
    read_one::<String>("SELECT current_user::text", &[])
        .or_raise(|e| Error::Internal("reading current_user", e))
        .unwrap_or_default()
}

/// The checks PostgreSQL would make for `SELECT count(*), max(<columns>) FROM rel` by the
/// current user (the probing owner, or `verify_mirror`'s caller). A ClickHouse table's
/// aggregate is sent to ClickHouse directly, past the executor's permission checks, so they
/// are made here, every time.
pub fn require_select(rel: pg_sys::Oid, columns: &[&str]) {
    let denied = |what: String| -> ! {
        Error::NotReadable {
            role: current_role(),
            what,
            relation: relation_text(rel),
        }
        .raise()
    };
    let any = read_one::<bool>(
        "SELECT pg_catalog.has_any_column_privilege($1, 'SELECT')",
        &[rel.into()],
    )
    .or_raise(|e| Error::Internal("checking privileges", e));
    if any != Some(true) {
        denied("any column".into());
    }
    for column in columns {
        let can = read_one::<bool>(
            "SELECT pg_catalog.has_column_privilege($1, $2, 'SELECT')",
            &[rel.into(), (*column).into()],
        )
        .or_raise(|e| Error::Internal("checking privileges", e));
        if can != Some(true) {
            denied(format!("column \"{column}\""));
        }
    }
}

/// Count and newest time of one relation, aggregated where the data lives; with
/// `missing_after` (the target's newest time, for a mirror's source) also the oldest time at
/// least a second after it.
fn figures(
    rel: pg_sys::Oid,
    time_column: &str,
    count: bool,
    missing_after: Option<f64>,
) -> (SideFigures, u64) {
    if clickhouse::is_clickhouse_table(rel) {
        require_select(rel, &[time_column]);
        let remote = clickhouse::Remote::of(rel, crate::pg::backend::current_user());
        let column = ch_ident(&remote.remote_column(rel, time_column));
        let rows = if count { "count()" } else { "toUInt64(0)" };
        let oldest = match missing_after {
            Some(t) => format!(
                "minIf({column}, {column} >= toDateTime({}))",
                t.floor() as i64 + 1
            ),
            None => "NULL".to_string(),
        };
        let (row, bytes) = clickhouse::aggregate(
            rel,
            &format!("{rows} AS n, max({column}) AS newest, {oldest} AS oldest_missing"),
        );
        let epoch = |i: usize| {
            let text = row.get(i).cloned().flatten()?;
            // The header's type is not needed: DateTime text plus the server's zone.
            let t = pg_text(
                "DateTime",
                text,
                Target::TimestampTz,
                &remote.server.timezone,
            )?;
            read_one::<f64>(
                "SELECT extract(epoch FROM $1::pg_catalog.timestamptz)::pg_catalog.float8",
                &[t.into()],
            )
            .or_raise(|e| Error::Internal("reading a ClickHouse time", e))
        };
        let rows = row.first().cloned().flatten().and_then(|n| n.parse().ok());
        (
            SideFigures {
                rows: if count { rows } else { None },
                newest: epoch(1),
                oldest_missing: missing_after.and(epoch(2)),
            },
            bytes,
        )
    } else {
        let (column, relation) = (quote_ident(time_column), relation_text(rel));
        let sql = format!(
            "SELECT {}, extract(epoch FROM max({column})::pg_catalog.timestamptz)::pg_catalog.float8 \
             FROM {relation}",
            if count { "count(*)" } else { "NULL::bigint" },
        );
        // Its own statement, so an index on the time column answers it. A second of slack:
        // a target may keep whole seconds only (ClickHouse DateTime), and the row it has
        // must not count as missing.
        let oldest_sql = format!(
            "SELECT extract(epoch FROM min({column})::pg_catalog.timestamptz)::pg_catalog.float8 \
             FROM {relation} WHERE {column} >= pg_catalog.to_timestamp($1 + 1)"
        );
        let figures = Spi::connect(|client| {
            let row = client.select(&sql, Some(1), &[])?.first();
            let (rows, newest) = (row.get::<i64>(1)?, row.get::<f64>(2)?);
            let oldest_missing = match missing_after {
                Some(t) => client
                    .select(&oldest_sql, Some(1), &[t.into()])?
                    .first()
                    .get::<f64>(1)?,
                None => None,
            };
            Ok::<_, pgrx::spi::Error>(SideFigures {
                rows,
                newest,
                oldest_missing,
            })
        })
        .or_raise(|e| Error::Internal("measuring a relation", e));
        (figures, 0)
    }
}

/// What one probe measured.
pub struct Measured {
    pub probe: Probe,
    pub millis: f64,
    pub bytes: u64,
}

/// Probes both sides as the check's owner. Errors propagate (the caller's transaction turns
/// them into `probe_failed`).
pub fn probe(c: &StoredCheck) -> Measured {
    let started = Instant::now();
    let count = c.check.kind == CheckKind::Mirror;
    let (source, target, bytes) = {
        // The relations are the owner's choice: their SQL runs restricted, with a safe
        // search_path, and whatever settings it changes are rolled back with the guard.
        let _owner = Switched::to(c.owner, true);
        // The target first: the source's oldest change it misses is measured from its newest.
        let (target, target_bytes) = figures(c.target, &c.target_time_column, count, None);
        let missing_after = target.newest.filter(|_| c.check.kind == CheckKind::Mirror);
        let (source, source_bytes) = match (c.source, &c.source_time_column) {
            (Some(rel), Some(col)) => figures(rel, col, count, missing_after),
            _ => (SideFigures::default(), 0),
        };
        (source, target, source_bytes + target_bytes)
    };
    Measured {
        probe: Probe::Done {
            source,
            target,
            now: crate::pg::clock::now_secs(),
        },
        millis: started.elapsed().as_secs_f64() * 1000.0,
        bytes,
    }
}

/// Ends a probe that outlived its cancellation: called by the slot worker, which watches the
/// mirror worker. Past `cdc_health.probe_timeout` the probe was cancelled; if it is still
/// running a grace period later, its SQL ignores cancellation (it catches `query_canceled`),
/// so the mirror worker is terminated (the postmaster starts it again) and the check is
/// quarantined with `probe_failed` rather than retried into the same hang.
pub fn end_overdue_probe() -> SpiResult<()> {
    let grace = (f64::from(crate::settings::probe_timeout_ms()) / 1000.0).max(5.0);
    let Some(watch) = crate::shmem::take_overdue_probe(crate::pg::clock::now_secs(), grace) else {
        return Ok(());
    };
    let name = watch.check.as_ref().map(|n| n.as_str().to_string());
    warning!(
        "cdc_health: the probe of mirror check {} ran past cdc_health.probe_timeout and did not \
         end when cancelled; terminating the mirror worker (pid {}) and quarantining the check",
        name.as_deref()
            .map_or("(name too long to keep)".into(), quote_ident),
        watch.pid
    );
    read_one::<bool>(
        "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
         WHERE pid OPERATOR(pg_catalog.=) $1
           AND backend_type OPERATOR(pg_catalog.=) 'cdc_health mirrors'",
        &[watch.pid.into()],
    )?;
    let Some(name) = name else { return Ok(()) };
    let Some(check) = store::find(&name)? else {
        return Ok(());
    };
    let error = format!(
        "quarantined: the probe did not end when cancelled at cdc_health.probe_timeout (its SQL \
         ignores cancellation), so the mirror worker was terminated; fix the target, then run \
         SELECT cdc_health.check_mirror({}) to probe it again",
        pgrx::spi::quote_literal(&name)
    );
    let measured = Measured {
        probe: Probe::Failed { error },
        millis: 0.0,
        bytes: 0,
    };
    record(&check, &measured)?;
    store::set_quarantined(&name, true)
}

/// Assesses, stores and alerts one probe's outcome; returns the verdict.
pub fn record(c: &StoredCheck, m: &Measured) -> SpiResult<MirrorVerdict> {
    let verdict = assess_mirror(&c.check, &m.probe);
    store::store(c, &m.probe, m.millis, m.bytes, &verdict)?;
    let detail = json!({
        "mirror": c.check.name,
        "lag_secs": verdict.lag_secs,
        "row_drift": verdict.row_drift,
        "slot_name": c.slot_name,
    });
    let observed: Vec<Observed> = verdict
        .findings
        .iter()
        .map(|f| Observed {
            subject: c.subject(),
            remediation: f.remedy.clone(),
            finding: f.clone(),
            detail: detail.clone(),
        })
        .collect();
    as_extension_owner(|| {
        crate::alerts::apply_for(&c.subject(), &observed, crate::pg::clock::now_secs())
    })?;
    Ok(verdict)
}
