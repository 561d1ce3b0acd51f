//! The `cdc_health.mirror_checks` table: each check as configured, and its last probe.

use cdc_health_rules::mirrors::{CheckKind, MirrorCheck, MirrorVerdict, Probe, SideFigures};
use pgrx::datum::Interval;
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use super::error::Error;
use crate::pg::errors::{OrRaise, SqlError};
use crate::pg::role::as_extension_owner;
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
pub fn by_name(name: &str) -> StoredCheck {
    find(name)
        .or_raise(|e| Error::Internal("reading a mirror check", e))
        .unwrap_or_else(|| Error::NoSuchCheck(name.into()).raise())
}

/// The check named `name`, read as the extension's owner; `None` when there is none.
pub fn find(name: &str) -> SpiResult<Option<StoredCheck>> {
    as_extension_owner(|| load("WHERE name OPERATOR(pg_catalog.=) $1", &[name.into()]))
        .map(|checks| checks.into_iter().next())
}

/// A check to add, its arguments checked (`sql::add`).
pub struct NewCheck<'a> {
    pub name: &'a str,
    /// `mirror`, `heartbeat` or `freshness`.
    pub kind: &'a str,
    /// The source relation and its time column; `None` for a freshness check.
    pub source: Option<(pg_sys::Oid, &'a str)>,
    pub target: (pg_sys::Oid, &'a str),
    pub max_lag: Interval,
    pub max_row_drift: Option<i64>,
    pub slot_name: Option<&'a str>,
}

/// Inserts a check, owned by the calling role; raises if the name is taken.
pub fn insert(new: &NewCheck<'_>) {
    let taken = as_extension_owner(|| {
        read_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM cdc_health.mirror_checks
                 WHERE name OPERATOR(pg_catalog.=) $1)",
            &[new.name.into()],
        )
    })
    .or_raise(|e| Error::Internal("reading mirror checks", e));
    if taken == Some(true) {
        Error::Exists(new.name.into()).raise();
    }
    let owner = crate::pg::backend::current_user();
    as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO cdc_health.mirror_checks (name, kind, source, source_time_column, target,
             target_time_column, max_lag, max_row_drift, slot_name, owner)
         VALUES ($1, $2, $3::pg_catalog.oid::pg_catalog.regclass, $4,
                 $5::pg_catalog.oid::pg_catalog.regclass, $6, $7, $8, $9,
                 $10::pg_catalog.oid::pg_catalog.regrole)",
            &[
                new.name.into(),
                new.kind.into(),
                new.source.map(|(r, _)| r).into(),
                new.source.map(|(_, c)| c.to_string()).into(),
                new.target.0.into(),
                new.target.1.into(),
                new.max_lag.into(),
                new.max_row_drift.into(),
                new.slot_name.map(str::to_string).into(),
                owner.into(),
            ],
        )
    })
    .or_raise(|e| Error::Internal("adding a mirror check", e));
}

/// Resolves a check's open alerts and deletes it.
pub fn remove(c: &StoredCheck) -> SpiResult<()> {
    as_extension_owner(|| {
        crate::alerts::resolve_subject(&c.subject())?;
        Spi::run_with_args(
            "DELETE FROM cdc_health.mirror_checks WHERE name OPERATOR(pg_catalog.=) $1",
            &[c.check.name.as_str().into()],
        )
    })
}

pub fn set_quarantined(name: &str, quarantined: bool) -> SpiResult<()> {
    as_extension_owner(|| {
        Spi::run_with_args(
            "UPDATE cdc_health.mirror_checks SET quarantined_at = CASE WHEN $2
                 THEN pg_catalog.now() END
             WHERE name OPERATOR(pg_catalog.=) $1",
            &[name.into(), quarantined.into()],
        )
    })
}

/// Writes a probe's outcome (what it measured, in `millis` and `bytes`) into the check's row.
pub fn store(
    c: &StoredCheck,
    probe: &Probe,
    millis: f64,
    bytes: u64,
    verdict: &MirrorVerdict,
) -> SpiResult<()> {
    let (source, target, error) = match probe {
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
                millis.into(),
                (bytes as i64).into(),
            ],
        )
    })
}
