//! The SQL functions that add, remove, probe and verify mirror checks, and the checks of
//! their arguments.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgRelation;

use super::error::Error;
use super::probe::{current_role, probe, record, relation_text};
use super::store::{self, NewCheck};
use super::verify;
use crate::pg::errors::{OrRaise, SqlError};
use crate::pg::spi::read_one;

/// The column must exist and the caller must be able to read it.
fn check_column(rel: pg_sys::Oid, column: &str, what: &'static str) {
    let exists = read_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
             WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped)",
        &[rel.into(), column.into()],
    )
    .or_raise(|e| Error::Internal("reading a relation's columns", e))
    .unwrap_or(false);
    if !exists {
        Error::NoColumn {
            what,
            relation: relation_text(rel),
            column: column.into(),
        }
        .raise();
    }
    let readable = read_one::<bool>(
        "SELECT pg_catalog.has_column_privilege($1, $2, 'SELECT')",
        &[rel.into(), column.into()],
    )
    .or_raise(|e| Error::Internal("checking privileges", e))
    .unwrap_or(false);
    if !readable {
        Error::ColumnNotReadable {
            role: current_role(),
            column: column.into(),
            what,
            relation: relation_text(rel),
        }
        .raise();
    }
}

/// An interval's length in seconds, the months and days counted as PostgreSQL does.
fn max_lag_secs(i: &pgrx::datum::Interval) -> f64 {
    read_one::<f64>(
        "SELECT extract(epoch FROM $1::pg_catalog.interval)::pg_catalog.float8",
        &[(*i).into()],
    )
    .or_raise(|e| Error::Internal("reading an interval", e))
    .unwrap_or(0.0)
}

/// Checks a new check's arguments and inserts it, owned by the calling role.
fn add(new: NewCheck<'_>) {
    if new.name.trim().is_empty() {
        Error::NoName.raise();
    }
    if let Some((rel, col)) = new.source {
        check_column(rel, col, "source");
    }
    check_column(new.target.0, new.target.1, "target");
    if new.max_row_drift.is_some_and(|d| d < 0) {
        Error::NegativeDrift.raise();
    }
    if max_lag_secs(&new.max_lag) <= 0.0 {
        Error::NoLag(new.max_lag.to_string()).raise();
    }
    store::insert(&new);
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
        .or_raise(|e| Error::Internal("recognising the heartbeat table", e))
        .unwrap_or(false);
        let (kind, drift) = if heartbeat {
            ("heartbeat", None)
        } else {
            ("mirror", max_row_drift)
        };
        add(NewCheck {
            name,
            kind,
            source: Some((source.oid(), source_time_column)),
            target: (target.oid(), target_time_column),
            max_lag,
            max_row_drift: drift,
            slot_name,
        });
    }

    /// Adds a check on a read model alone: its newest row must be younger than `max_age`.
    #[pg_extern]
    fn add_freshness_check(name: &str, target: PgRelation, time_column: &str, max_age: Interval) {
        add(NewCheck {
            name,
            kind: "freshness",
            source: None,
            target: (target.oid(), time_column),
            max_lag: max_age,
            max_row_drift: None,
            slot_name: None,
        });
    }

    /// Removes a check (its owner, or a superuser) and resolves its open alerts.
    #[pg_extern]
    fn remove_mirror(name: &str) -> bool {
        let c = store::by_name(name);
        // SAFETY: catalog lookups of the current user's role memberships, in a transaction.
        let allowed = unsafe {
            pg_sys::has_privs_of_role(pg_sys::GetUserId(), c.owner) || pg_sys::superuser()
        };
        if !allowed {
            Error::NotOwner(name.into()).raise();
        }
        store::remove(&c).or_raise(|e| Error::Internal("removing a mirror check", e));
        true
    }

    /// Probes a check now (as its owner), stores and alerts the outcome; returns the status.
    /// An error in the probe is raised here (the worker records it as `probe_failed`).
    #[pg_extern]
    fn check_mirror(name: &str) -> String {
        let c = store::by_name(name);
        let m = probe(&c);
        let status = record(&c, &m)
            .or_raise(|e| Error::Internal("storing a probe", e))
            .status;
        // A probe that finished ends a quarantine: the worker probes the check again.
        store::set_quarantined(name, false).or_raise(|e| Error::Internal("storing a probe", e));
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
        let v = verify::verify(name, key_column);
        if !v.ok && raise_on_mismatch {
            Error::Mismatch {
                name: name.into(),
                detail: v.detail,
            }
            .raise();
        }
        let (s, t) = (v.source, v.target);
        TableIterator::once((
            v.ok, s.rows, t.rows, s.min, t.min, s.max, t.max, s.checksum, t.checksum, v.lag,
            v.detail,
        ))
    }
}
