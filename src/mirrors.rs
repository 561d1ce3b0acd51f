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
use crate::sampling::read_one;

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

const CHECK_COLUMNS: &str = "name, kind, source::oid, source_time_column::text, target::oid, \
     target_time_column::text, extract(epoch FROM max_lag)::float8, max_row_drift, owner::oid, \
     slot_name::text";

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

/// Checks whose last probe is older than `interval_secs` (or that were never probed).
pub fn due(interval_secs: f64) -> SpiResult<Vec<StoredCheck>> {
    load(
        "WHERE checked_at IS NULL OR checked_at <= now() - make_interval(secs => $1)",
        &[interval_secs.into()],
    )
}

/// Reads one check's configuration (not readable by the roles that may call the functions).
fn by_name(name: &str) -> StoredCheck {
    match as_extension_owner(|| load("WHERE name = $1", &[name.into()])) {
        Ok(mut v) if !v.is_empty() => v.remove(0),
        Ok(_) => error!("cdc_health: no mirror check named \"{name}\""),
        Err(e) => error!("cdc_health: reading mirror check \"{name}\": {e}"),
    }
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn relation_text(rel: pg_sys::Oid) -> String {
    read_one::<String>("SELECT $1::regclass::text", &[rel.into()])
        .ok()
        .flatten()
        .unwrap_or_else(|| error!("cdc_health: relation {} no longer exists", rel.to_u32()))
}

/// Count and newest time of one relation, aggregated where the data lives.
fn figures(rel: pg_sys::Oid, time_column: &str, count: bool) -> (SideFigures, u64) {
    if clickhouse::is_clickhouse_table(rel) {
        let remote = clickhouse::Remote::of(rel, unsafe { pg_sys::GetUserId() });
        let column = ch_ident(&remote.remote_column(rel, time_column));
        let rows = if count { "count()" } else { "toUInt64(0)" };
        let (row, bytes) =
            clickhouse::aggregate(rel, &format!("{rows} AS n, max({column}) AS newest"));
        let newest = row.get(1).cloned().flatten().and_then(|text| {
            // The header's type is not needed: DateTime text plus the server's zone.
            pg_text(
                "DateTime",
                text,
                Target::TimestampTz,
                &remote.server.timezone,
            )
        });
        let newest = newest.and_then(|t| {
            read_one::<f64>(
                "SELECT extract(epoch FROM $1::timestamptz)::float8",
                &[t.into()],
            )
            .ok()
            .flatten()
        });
        let rows = row.first().cloned().flatten().and_then(|n| n.parse().ok());
        (
            SideFigures {
                rows: if count { rows } else { None },
                newest,
            },
            bytes,
        )
    } else {
        let sql = format!(
            "SELECT {}, extract(epoch FROM max({})::timestamptz)::float8 FROM {}",
            if count { "count(*)" } else { "NULL::bigint" },
            quote_ident(time_column),
            relation_text(rel)
        );
        let (rows, newest) = Spi::connect(|client| {
            let row = client.select(&sql, Some(1), &[])?.first();
            Ok::<_, pgrx::spi::Error>((row.get::<i64>(1)?, row.get::<f64>(2)?))
        })
        .unwrap_or_else(|e| error!("{e}"));
        (SideFigures { rows, newest }, 0)
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
    let (mut saved_user, mut saved_context) = (pg_sys::InvalidOid, 0);
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            c.owner,
            saved_context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
    }
    let count = c.check.kind == CheckKind::Mirror;
    let (source, source_bytes) = match (c.source, &c.source_time_column) {
        (Some(rel), Some(col)) => figures(rel, col, count),
        _ => (SideFigures::default(), 0),
    };
    let (target, target_bytes) = figures(c.target, &c.target_time_column, count);
    let now = crate::monitor::now_secs();
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_context) };
    Measured {
        probe: Probe::Done {
            source,
            target,
            now,
        },
        millis: started.elapsed().as_secs_f64() * 1000.0,
        bytes: source_bytes + target_bytes,
    }
}

/// Runs `f` as the extension's owner: the tables are not writable by the roles that may be
/// granted the functions, and every value written is decided here, not by the caller.
fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = read_one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'cdc_health'",
        &[],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| error!("cdc_health: the extension is not installed in this database"));
    let (mut user, mut context) = (pg_sys::InvalidOid, 0);
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            context | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
    }
    let r = f();
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    r
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
            "UPDATE cdc_health.mirror_checks SET checked_at = now(),
             source_rows = $2, source_newest = to_timestamp($3), target_rows = $4,
             target_newest = to_timestamp($5), lag = make_interval(secs => $6), row_drift = $7,
             status = $8, findings = $9, summary = $10, error = $11, probe_ms = $12,
             probe_bytes = $13
         WHERE name = $1",
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
        crate::alerts::apply_for(&c.subject(), &observed, crate::monitor::now_secs())
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
    .ok()
    .flatten()
    .unwrap_or(false);
    if !exists {
        error!(
            "cdc_health: {what} {} has no column \"{column}\"",
            relation_text(rel.oid())
        );
    }
    let readable = read_one::<bool>(
        "SELECT pg_catalog.has_column_privilege($1, $2, 'SELECT')",
        &[rel.oid().into(), column.into()],
    )
    .ok()
    .flatten()
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
        .ok()
        .flatten()
        .unwrap_or_default()
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
        error!("cdc_health: a mirror check needs a name");
    }
    if let Some((rel, col)) = source {
        check_column(rel, col, "source");
    }
    check_column(target.0, target.1, "target");
    if max_row_drift.is_some_and(|d| d < 0) {
        error!("cdc_health: max_row_drift must be 0 or more (NULL: counts are not compared)");
    }
    let owner = unsafe { pg_sys::GetUserId() };
    let inserted = as_extension_owner(|| {
        Spi::run_with_args(
            "INSERT INTO cdc_health.mirror_checks (name, kind, source, source_time_column, target,
             target_time_column, max_lag, max_row_drift, slot_name, owner)
         VALUES ($1, $2, $3::oid::regclass, $4, $5::oid::regclass, $6, $7, $8, $9,
                 $10::oid::regrole)",
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
            "SELECT $1 = 'cdc_health.heartbeat'::regclass::oid",
            &[source.oid().into()],
        )
        .ok()
        .flatten()
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
            Spi::run_with_args(
                "UPDATE cdc_health.alerts SET resolved_at = now(), updated_at = now()
                 WHERE subject = $1 AND resolved_at IS NULL",
                &[c.subject().into()],
            )?;
            Spi::run_with_args(
                "DELETE FROM cdc_health.mirror_checks WHERE name = $1",
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
        record(&c, &m)
            .unwrap_or_else(|e| error!("cdc_health: storing the probe of \"{name}\": {e}"))
            .status
            .as_str()
            .to_string()
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
            error!("cdc_health: \"{name}\" is a freshness check; it has no source to compare");
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
                "SELECT lag FROM cdc_health.mirror_checks WHERE name = $1",
                &[name.into()],
            )
        })
        .ok()
        .flatten();
        let behind = c.slot_name.as_deref().and_then(|slot| {
            read_one::<i64>(
                "SELECT pg_catalog.pg_wal_lsn_diff(CASE WHEN pg_catalog.pg_is_in_recovery()
                     THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn()
                     END, confirmed_flush_lsn)::bigint
                 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                &[slot.into()],
            )
            .ok()
            .flatten()
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
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            error!(
                "cdc_health: {} has no single-column primary key; pass key_column",
                relation_text(rel)
            )
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
            let remote = clickhouse::Remote::of(rel, unsafe { pg_sys::GetUserId() });
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

extension_sql!(
    r#"
-- Mirror checks (configuration) and the outcome of each one's last probe.
CREATE TABLE cdc_health.mirror_checks (
    name               text        PRIMARY KEY,
    kind               text        NOT NULL CHECK (kind IN ('mirror', 'heartbeat', 'freshness')),
    source             regclass,
    source_time_column name,
    target             regclass    NOT NULL,
    target_time_column name        NOT NULL,
    max_lag            interval    NOT NULL CHECK (max_lag > interval '0'),
    max_row_drift      bigint      CHECK (max_row_drift >= 0),
    slot_name          name,
    owner              regrole     NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    checked_at         timestamptz,
    source_rows        bigint,
    source_newest      timestamptz,
    target_rows        bigint,
    target_newest      timestamptz,
    lag                interval,
    row_drift          bigint,
    status             text,
    findings           text[],
    summary            text,
    error              text,
    probe_ms           float8,
    probe_bytes        bigint
);
COMMENT ON TABLE cdc_health.mirror_checks IS
    'Mirror and freshness checks (cdc_health.add_mirror) and their last probe';
SELECT pg_catalog.pg_extension_config_dump('cdc_health.mirror_checks', '');
REVOKE ALL ON cdc_health.mirror_checks FROM PUBLIC;
GRANT SELECT ON cdc_health.mirror_checks TO pg_monitor;

CREATE FUNCTION cdc_health.mirrors() RETURNS TABLE (
    name text, kind text, status text, findings text[], lag interval, row_drift bigint,
    source regclass, source_rows bigint, source_newest timestamptz,
    target regclass, target_rows bigint, target_newest timestamptz,
    checked_at timestamptz, summary text, error text, max_lag interval, max_row_drift bigint,
    slot_name name, owner regrole, probe_ms float8, probe_bytes bigint
)
LANGUAGE sql STABLE
SET search_path = pg_catalog
AS $$
    SELECT name, kind, status, findings, lag, row_drift, source, source_rows, source_newest,
           target, target_rows, target_newest, checked_at, summary, error, max_lag,
           max_row_drift, slot_name, owner, probe_ms, probe_bytes
    FROM cdc_health.mirror_checks
    ORDER BY CASE status WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 WHEN 'ok' THEN 2 ELSE 3 END,
             name
$$;
REVOKE ALL ON FUNCTION cdc_health.mirrors() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.mirrors() TO pg_monitor;
"#,
    name = "mirror_tables",
    requires = ["tables"]
);
