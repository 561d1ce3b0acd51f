//! Mirror checks: freshness and row counts of destinations, read through foreign data.
//!
//! A check compares a source relation with a target relation PostgreSQL can scan (a
//! `cdc_health_clickhouse` foreign table, a postgres_fdw table, a view). For a ClickHouse
//! table the aggregate runs inside ClickHouse and one row crosses the network; any other
//! target is aggregated by PostgreSQL (postgres_fdw pushes it down itself).
//!
//! Every probe runs as the role that added the check, never as the worker's superuser.

use std::time::Instant;

use cdc_health_rules::alerts::Observed;
use cdc_health_rules::clickhouse::{pg_text, quote_ident as ch_ident, Target};
use cdc_health_rules::mirrors::{
    assess_mirror, CheckKind, MirrorCheck, MirrorVerdict, Probe, SideFigures,
};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use pgrx::PgRelation;
use serde_json::json;

use cdc_health_rules::units::pretty_bytes;

use crate::clickhouse;
use crate::pg::errors;
use crate::pg::role::{as_extension_owner, Switched};
use crate::pg::spi::read_one;

/// A check as stored in `cdc_health.mirror_checks`.
pub struct StoredCheck {
    pub check: MirrorCheck,
    pub source: Option<pg_sys::Oid>,
    pub source_time_column: Option<String>,
    pub target: pg_sys::Oid,
    pub target_time_column: String,
    pub owner: pg_sys::Oid,
    pub slot_name: Option<String>,
}

impl StoredCheck {
    pub fn subject(&self) -> String {
        format!("mirror:{}", self.check.name)
    }
}

const CHECK_COLUMNS: &str = "name, kind, source::pg_catalog.oid, \
     source_time_column::pg_catalog.text, target::pg_catalog.oid, \
     target_time_column::pg_catalog.text, \
     extract(epoch FROM max_lag)::pg_catalog.float8, max_row_drift, \
     owner::pg_catalog.oid, slot_name::pg_catalog.text";

fn load(filter: &str, args: &[pgrx::datum::DatumWithOid<'_>]) -> SpiResult<Vec<StoredCheck>> {
    Spi::connect(|client| {
        let rows = client.select(
            &format!("SELECT {CHECK_COLUMNS} FROM cdc_health.mirror_checks {filter} ORDER BY name"),
            None,
            args,
        )?;
        let mut checks = Vec::new();
        for row in rows {
            let kind = match row.get::<String>(2)?.as_deref() {
                Some("freshness") => CheckKind::Freshness,
                Some("heartbeat") => CheckKind::Heartbeat,
                _ => CheckKind::Mirror,
            };
            checks.push(StoredCheck {
                check: MirrorCheck {
                    name: row.get(1)?.unwrap_or_default(),
                    kind,
                    max_lag_secs: row.get(7)?.unwrap_or(60.0),
                    max_row_drift: row.get(8)?,
                },
                source: row.get(3)?,
                source_time_column: row.get(4)?,
                target: row.get(5)?.unwrap_or(pg_sys::InvalidOid),
                target_time_column: row.get(6)?.unwrap_or_default(),
                owner: row.get(9)?.unwrap_or(pg_sys::InvalidOid),
                slot_name: row.get(10)?,
            });
        }
        Ok(checks)
    })
}

/// Checks whose last probe is older than `interval_secs` (or that were never probed), but
/// not quarantined ones.
pub fn due(interval_secs: f64) -> SpiResult<Vec<StoredCheck>> {
    load(
        "WHERE quarantined_at IS NULL AND (checked_at IS NULL OR checked_at \
         OPERATOR(pg_catalog.<=) \
         (pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1)))",
        &[interval_secs.into()],
    )
}

/// Reads one check's configuration (not readable by the roles that may call the functions).
fn by_name(name: &str) -> StoredCheck {
    match find(name) {
        Ok(Some(check)) => check,
        Ok(None) => {
            errors::undefined_object(format!("cdc_health: no mirror check named \"{name}\""))
        }
        Err(e) => error!("cdc_health: reading mirror check \"{name}\": {e}"),
    }
}

/// The check named `name`, read as the extension's owner; `None` when there is none.
fn find(name: &str) -> SpiResult<Option<StoredCheck>> {
    as_extension_owner(|| load("WHERE name OPERATOR(pg_catalog.=) $1", &[name.into()]))
        .map(|checks| checks.into_iter().next())
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn relation_text(rel: pg_sys::Oid) -> String {
    read_one::<String>("SELECT $1::regclass::text", &[rel.into()])
        .unwrap_or_else(|e| errors::internal("naming a relation", e))
        .unwrap_or_else(|| {
            errors::raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("cdc_health: relation {} no longer exists", rel.to_u32()),
                None,
            )
        })
}

/// The checks PostgreSQL would make for `SELECT count(*), max(<columns>) FROM rel` by the
/// current user (the probing owner, or `verify_mirror`'s caller). A ClickHouse table's
/// aggregate is sent to ClickHouse directly, past the executor's permission checks, so they
/// are made here, every time.
fn require_select(rel: pg_sys::Oid, columns: &[&str]) {
    let denied = |what: String| -> ! {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "cdc_health: permission denied: {} cannot read {what} of {}",
                current_role(),
                relation_text(rel)
            ),
            "A check runs with the rights of the role that added it; verify_mirror with the caller's."
        );
        unreachable!("ereport(ERROR) does not return")
    };
    let any = read_one::<bool>(
        "SELECT pg_catalog.has_any_column_privilege($1, 'SELECT')",
        &[rel.into()],
    )
    .unwrap_or_else(|e| error!("cdc_health: checking privileges: {e}"));
    if any != Some(true) {
        denied("any column".into());
    }
    for column in columns {
        let can = read_one::<bool>(
            "SELECT pg_catalog.has_column_privilege($1, $2, 'SELECT')",
            &[rel.into(), (*column).into()],
        )
        .unwrap_or_else(|e| error!("cdc_health: checking privileges: {e}"));
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
            .unwrap_or_else(|e| error!("cdc_health: reading a ClickHouse time: {e}"))
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
        .unwrap_or_else(|e| error!("{e}"));
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
    let grace = (f64::from(crate::settings::PROBE_TIMEOUT_MS.get()) / 1000.0).max(5.0);
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
    let Some(check) = find(&name)? else {
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
    set_quarantined(&name, true)
}

fn set_quarantined(name: &str, quarantined: bool) -> SpiResult<()> {
    as_extension_owner(|| {
        Spi::run_with_args(
            "UPDATE cdc_health.mirror_checks SET quarantined_at = CASE WHEN $2
                 THEN pg_catalog.now() END
             WHERE name OPERATOR(pg_catalog.=) $1",
            &[name.into(), quarantined.into()],
        )
    })
}

/// Writes a probe's outcome into the check's row.
pub fn store(c: &StoredCheck, m: &Measured, verdict: &MirrorVerdict) -> SpiResult<()> {
    let (source, target, error) = match &m.probe {
        Probe::Done { source, target, .. } => (*source, *target, None),
        Probe::Failed { error } => (
            SideFigures::default(),
            SideFigures::default(),
            Some(error.clone()),
        ),
    };
    let findings: Vec<String> = verdict
        .findings
        .iter()
        .map(|f| f.code.as_str().to_string())
        .collect();
    let summary: Vec<String> = verdict.findings.iter().map(|f| f.summary.clone()).collect();
    as_extension_owner(|| {
        Spi::run_with_args(
            "UPDATE cdc_health.mirror_checks SET checked_at = pg_catalog.now(),
             source_rows = $2, source_newest = pg_catalog.to_timestamp($3), target_rows = $4,
             target_newest = pg_catalog.to_timestamp($5),
             lag = pg_catalog.make_interval(secs => $6), row_drift = $7,
             status = $8, findings = $9, summary = $10, error = $11, probe_ms = $12,
             probe_bytes = $13
         WHERE name OPERATOR(pg_catalog.=) $1",
            &[
                c.check.name.clone().into(),
                source.rows.into(),
                source.newest.into(),
                target.rows.into(),
                target.newest.into(),
                verdict.lag_secs.into(),
                verdict.row_drift.into(),
                verdict.status.as_str().into(),
                findings.into(),
                summary.join("; ").into(),
                error.into(),
                m.millis.into(),
                (m.bytes as i64).into(),
            ],
        )
    })
}

/// Assesses, stores and alerts one probe's outcome; returns the verdict.
pub fn record(c: &StoredCheck, m: &Measured) -> SpiResult<MirrorVerdict> {
    let verdict = assess_mirror(&c.check, &m.probe);
    store(c, m, &verdict)?;
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

/// The column must exist and the caller must be able to read it.
fn check_column(rel: &PgRelation, column: &str, what: &str) {
    let exists = read_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
             WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped)",
        &[rel.oid().into(), column.into()],
    )
    .unwrap_or_else(|e| error!("cdc_health: reading the columns of {what}: {e}"))
    .unwrap_or(false);
    if !exists {
        errors::raise(
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!(
                "cdc_health: {what} {} has no column \"{column}\"",
                relation_text(rel.oid())
            ),
            None,
        );
    }
    let readable = read_one::<bool>(
        "SELECT pg_catalog.has_column_privilege($1, $2, 'SELECT')",
        &[rel.oid().into(), column.into()],
    )
    .unwrap_or_else(|e| error!("cdc_health: checking privileges: {e}"))
    .unwrap_or(false);
    if !readable {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "cdc_health: permission denied: {} cannot read column \"{column}\" of {what} {}",
                current_role(),
                relation_text(rel.oid())
            ),
            "A check runs with the rights of the role that adds it."
        );
    }
}

fn current_role() -> String {
    read_one::<String>("SELECT current_user::text", &[])
        .unwrap_or_else(|e| errors::internal("reading current_user", e))
        .unwrap_or_default()
}

/// An interval's length in seconds, the months and days counted as PostgreSQL does.
fn max_lag_secs(i: &pgrx::datum::Interval) -> f64 {
    read_one::<f64>(
        "SELECT extract(epoch FROM $1::pg_catalog.interval)::pg_catalog.float8",
        &[(*i).into()],
    )
    .unwrap_or_else(|e| error!("cdc_health: reading an interval: {e}"))
    .unwrap_or(0.0)
}

/// Inserts a check, owned by the calling role.
#[allow(clippy::too_many_arguments)]
fn insert(
    name: &str,
    kind: &str,
    source: Option<(&PgRelation, &str)>,
    target: (&PgRelation, &str),
    max_lag: pgrx::datum::Interval,
    max_row_drift: Option<i64>,
    slot_name: Option<&str>,
) {
    if name.trim().is_empty() {
        errors::invalid_parameter("cdc_health: a mirror check needs a name".into());
    }
    if let Some((rel, col)) = source {
        check_column(rel, col, "source");
    }
    check_column(target.0, target.1, "target");
    if max_row_drift.is_some_and(|d| d < 0) {
        errors::invalid_parameter(
            "cdc_health: max_row_drift must be 0 or more (NULL: counts are not compared)".into(),
        );
    }
    if max_lag_secs(&max_lag) <= 0.0 {
        errors::invalid_parameter(format!(
            "cdc_health: max_lag must be longer than zero, not {max_lag}"
        ));
    }
    let taken = as_extension_owner(|| {
        read_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM cdc_health.mirror_checks
                 WHERE name OPERATOR(pg_catalog.=) $1)",
            &[name.into()],
        )
    })
    .unwrap_or_else(|e| error!("cdc_health: reading mirror checks: {e}"));
    if taken == Some(true) {
        errors::raise(
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("cdc_health: a mirror check named \"{name}\" exists already"),
            Some("Remove it first with cdc_health.remove_mirror(name), or pick another name."),
        );
    }
    let owner = crate::pg::backend::current_user();
    let inserted = as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO cdc_health.mirror_checks (name, kind, source, source_time_column, target,
             target_time_column, max_lag, max_row_drift, slot_name, owner)
         VALUES ($1, $2, $3::pg_catalog.oid::pg_catalog.regclass, $4,
                 $5::pg_catalog.oid::pg_catalog.regclass, $6, $7, $8, $9,
                 $10::pg_catalog.oid::pg_catalog.regrole)",
            &[
                name.into(),
                kind.into(),
                source.map(|(r, _)| r.oid()).into(),
                source.map(|(_, c)| c.to_string()).into(),
                target.0.oid().into(),
                target.1.into(),
                max_lag.into(),
                max_row_drift.into(),
                slot_name.map(str::to_string).into(),
                owner.into(),
            ],
        )
    });
    if let Err(e) = inserted {
        error!("cdc_health: could not add mirror check \"{name}\": {e}");
    }
}

#[pg_schema]
mod cdc_health {
    use super::*;
    use pgrx::datum::Interval;

    /// Adds a check comparing `source` with its mirror `target` (row counts and newest time).
    #[pg_extern]
    #[allow(clippy::too_many_arguments)]
    fn add_mirror(
        name: &str,
        source: PgRelation,
        source_time_column: &str,
        target: PgRelation,
        target_time_column: &str,
        max_lag: default!(Interval, "'5 minutes'"),
        slot_name: default!(Option<&str>, "NULL"),
        max_row_drift: default!(Option<i64>, "0"),
    ) {
        let heartbeat = read_one::<bool>(
            "SELECT $1 OPERATOR(pg_catalog.=) 'cdc_health.heartbeat'::pg_catalog.regclass::pg_catalog.oid",
            &[source.oid().into()],
        )
        .unwrap_or_else(|e| errors::internal("recognising the heartbeat table", e))
        .unwrap_or(false);
        let (kind, drift) = if heartbeat {
            ("heartbeat", None)
        } else {
            ("mirror", max_row_drift)
        };
        insert(
            name,
            kind,
            Some((&source, source_time_column)),
            (&target, target_time_column),
            max_lag,
            drift,
            slot_name,
        );
    }

    /// Adds a check on a read model alone: its newest row must be younger than `max_age`.
    #[pg_extern]
    fn add_freshness_check(name: &str, target: PgRelation, time_column: &str, max_age: Interval) {
        insert(
            name,
            "freshness",
            None,
            (&target, time_column),
            max_age,
            None,
            None,
        );
    }

    /// Removes a check (its owner, or a superuser) and resolves its open alerts.
    #[pg_extern]
    fn remove_mirror(name: &str) -> bool {
        let c = by_name(name);
        // SAFETY: catalog lookups of the current user's role memberships, in a transaction.
        let allowed = unsafe {
            pg_sys::has_privs_of_role(pg_sys::GetUserId(), c.owner) || pg_sys::superuser()
        };
        if !allowed {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                format!("cdc_health: only the owner of mirror check \"{name}\" can remove it")
            );
        }
        as_extension_owner(|| {
            crate::alerts::resolve_subject(&c.subject())?;
            Spi::run_with_args(
                "DELETE FROM cdc_health.mirror_checks WHERE name OPERATOR(pg_catalog.=) $1",
                &[name.into()],
            )
        })
        .unwrap_or_else(|e| error!("cdc_health: removing \"{name}\": {e}"));
        true
    }

    /// Probes a check now (as its owner), stores and alerts the outcome; returns the status.
    /// An error in the probe is raised here (the worker records it as `probe_failed`).
    #[pg_extern]
    fn check_mirror(name: &str) -> String {
        let c = by_name(name);
        let m = probe(&c);
        let status = record(&c, &m)
            .unwrap_or_else(|e| error!("cdc_health: storing the probe of \"{name}\": {e}"))
            .status;
        // A probe that finished ends a quarantine: the worker probes the check again.
        set_quarantined(name, false)
            .unwrap_or_else(|e| error!("cdc_health: storing the probe of \"{name}\": {e}"));
        status.as_str().to_string()
    }

    /// Compares a mirror with its source: row count, min and max of `key_column` (by default
    /// the source's primary key) and an order-independent checksum of it, computed the same
    /// way on both sides.
    #[pg_extern]
    #[allow(clippy::type_complexity)]
    fn verify_mirror(
        name: &str,
        key_column: default!(Option<&str>, "NULL"),
        raise_on_mismatch: default!(bool, "false"),
    ) -> TableIterator<
        'static,
        (
            name!(ok, bool),
            name!(source_rows, Option<i64>),
            name!(target_rows, Option<i64>),
            name!(source_min, Option<String>),
            name!(target_min, Option<String>),
            name!(source_max, Option<String>),
            name!(target_max, Option<String>),
            name!(source_checksum, Option<String>),
            name!(target_checksum, Option<String>),
            name!(lag, Option<Interval>),
            name!(detail, String),
        ),
    > {
        let c = by_name(name);
        let Some(source) = c.source else {
            errors::invalid_parameter(format!(
                "cdc_health: \"{name}\" is a freshness check; it has no source to compare"
            ));
        };
        let key = match key_column {
            Some(k) => k.to_string(),
            None => super::verify::primary_key(source),
        };
        let s = super::verify::side(source, &key);
        let t = super::verify::side(c.target, &key);
        let ok = s == t;
        let lag = as_extension_owner(|| {
            read_one::<Interval>(
                "SELECT lag FROM cdc_health.mirror_checks WHERE name OPERATOR(pg_catalog.=) $1",
                &[name.into()],
            )
        })
        .unwrap_or_else(|e| errors::internal("reading the check's lag", e));
        let behind = c.slot_name.as_deref().and_then(|slot| {
            read_one::<i64>(
                "SELECT pg_catalog.pg_wal_lsn_diff(CASE WHEN pg_catalog.pg_is_in_recovery()
                     THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn()
                     END, confirmed_flush_lsn)::bigint
                 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                &[slot.into()],
            )
            .unwrap_or_else(|e| errors::internal("reading the slot's position", e))
            .map(|b| format!("; slot {slot} has {} not yet confirmed", pretty_bytes(b)))
        });
        let detail = if ok {
            format!("source and target agree on {} rows", s.rows.unwrap_or(0))
        } else {
            format!(
                "mismatch: {} rows at the source, {} at the target; if the table is being \
                 written, compare again when it is idle (last measured lag: {}{})",
                s.rows.unwrap_or(0),
                t.rows.unwrap_or(0),
                lag.map_or("unknown".to_string(), |l| l.to_string()),
                behind.unwrap_or_default()
            )
        };
        if !ok && raise_on_mismatch {
            ereport!(
                PgLogLevel::ERROR,
                PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
                format!("cdc_health: mirror \"{name}\" does not match its source"),
                detail.clone()
            );
        }
        TableIterator::once((
            ok, s.rows, t.rows, s.min, t.min, s.max, t.max, s.checksum, t.checksum, lag, detail,
        ))
    }
}

mod verify {
    use super::*;

    /// The source's single-column primary key, the default key to verify by.
    pub fn primary_key(rel: pg_sys::Oid) -> String {
        read_one::<String>(
            "SELECT a.attname::text FROM pg_catalog.pg_index i
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = $1 AND i.indisprimary AND i.indnatts = 1",
            &[rel.into()],
        )
        .unwrap_or_else(|e| error!("cdc_health: reading the primary key: {e}"))
        .unwrap_or_else(|| {
            errors::invalid_parameter(format!(
                "cdc_health: {} has no single-column primary key; pass key_column",
                relation_text(rel)
            ))
        })
    }

    /// One side's fingerprint of a key column.
    #[derive(Debug, PartialEq)]
    pub struct Side {
        pub rows: Option<i64>,
        pub min: Option<String>,
        pub max: Option<String>,
        pub checksum: Option<String>,
    }

    /// The checksum is the sum, modulo 2^64, of the first 8 bytes of md5(key as text) read
    /// big-endian: ClickHouse's `halfMD5(toString(k))` summed as UInt64 (which wraps) equals
    /// PostgreSQL's md5 prefix summed as numeric, so both sides compute the same number.
    pub fn side(rel: pg_sys::Oid, key: &str) -> Side {
        if clickhouse::is_clickhouse_table(rel) {
            require_select(rel, &[key]);
            let remote = clickhouse::Remote::of(rel, crate::pg::backend::current_user());
            let k = ch_ident(&remote.remote_column(rel, key));
            let (row, _) = clickhouse::aggregate(
                rel,
                &format!(
                    "count() AS n, toString(min({k})) AS lo, toString(max({k})) AS hi, \
                     toString(sum(halfMD5(toString({k})))) AS checksum"
                ),
            );
            let get = |i: usize| row.get(i).cloned().flatten();
            let rows = get(0).and_then(|n| n.parse().ok());
            let empty = rows == Some(0);
            Side {
                rows,
                min: get(1).filter(|_| !empty),
                max: get(2).filter(|_| !empty),
                checksum: get(3),
            }
        } else {
            let k = quote_ident(key);
            let sql = format!(
                "SELECT count(*), min({k})::text, max({k})::text,
                        (pg_catalog.mod(pg_catalog.mod(coalesce(sum(('x' || substr(md5({k}::text), 1, 16))
                            ::bit(64)::bigint::numeric), 0), 18446744073709551616)
                            + 18446744073709551616, 18446744073709551616))::text
                 FROM {}",
                relation_text(rel)
            );
            Spi::connect(|client| {
                let row = client.select(&sql, Some(1), &[])?.first();
                Ok::<_, pgrx::spi::Error>(Side {
                    rows: row.get(1)?,
                    min: row.get(2)?,
                    max: row.get(3)?,
                    checksum: row.get(4)?,
                })
            })
            .unwrap_or_else(|e| error!("{e}"))
        }
    }
}
