//! The SQL surface: `cdc_health()`, `cdc_health.check_now()`, `cdc_health.worker_status()`
//! and `cdc_health.sparkline()`.

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

use crate::pg::errors::{OrRaise, SqlError};
use crate::pg::jsonb::Jsonb;
use crate::pg::projection::Columns;
use crate::{monitor, settings, shmem};

/// What the slot functions can answer with besides rows.
enum Error {
    /// 25006: `check_now()` writes, and a standby is read-only.
    OnStandby,
    /// 22023
    BadWidth(i32),
    /// XX000: reading the slots, the history or the creations failed.
    Internal(&'static str, String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::OnStandby => f.write_str(
                "cdc_health.check_now() writes alerts and history and cannot run on a standby",
            ),
            Error::BadWidth(width) => write!(
                f,
                "cdc_health.sparkline: width must be between 1 and 1000, not {width}"
            ),
            Error::Internal(doing, cause) => write!(f, "cdc_health: {doing}: {cause}"),
        }
    }
}

impl SqlError for Error {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            Error::OnStandby => PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            Error::BadWidth(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            Error::Internal(..) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            Error::OnStandby => {
                Some("Run it on the primary; the worker keeps assessing slots here.")
            }
            _ => None,
        }
    }
}

/// Unix seconds as a timestamptz (PostgreSQL counts microseconds from 2000-01-01).
fn timestamptz(unix_secs: f64) -> Option<TimestampWithTimeZone> {
    let micros = ((unix_secs - 946_684_800.0) * 1e6).round() as i64;
    TimestampWithTimeZone::try_from(micros).ok()
}

/// `worker_status()`'s values, shared by every version of the function.
pub struct WorkerRow {
    pub running: bool,
    pub pid: Option<i32>,
    pub started_at: Option<TimestampWithTimeZone>,
    pub last_pass_at: Option<TimestampWithTimeZone>,
    pub passes: i64,
    pub failed_passes: i64,
    pub skipped_passes: i64,
    pub extension_present: bool,
    pub in_recovery: bool,
    pub tracked_slots: i32,
    pub untracked_slots: i32,
    pub note: Option<String>,
}

impl WorkerRow {
    pub fn now() -> Self {
        let status = shmem::worker_status();
        let w = status.unwrap_or_default();
        let tracked = shmem::read(|e| e.iter().filter(|e| e.in_use).count()).unwrap_or(0);
        let seen = |t: f64| (t > 0.0).then(|| timestamptz(t)).flatten();
        let note = match status {
            None => {
                Some("cdc_health is not in shared_preload_libraries: no background worker".into())
            }
            Some(w) if w.pid != 0 && w.awaiting_update => Some(format!(
                "the worker waits for ALTER EXTENSION cdc_health UPDATE in database \"{}\" \
                 (the library is version {})",
                settings::database(),
                crate::pg::extension::LIBRARY_VERSION
            )),
            Some(w) if w.pid != 0 && !w.extension_present => Some(format!(
                "the worker waits for CREATE EXTENSION cdc_health in database \"{}\"",
                settings::database()
            )),
            Some(_) => None,
        };
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        WorkerRow {
            running: w.pid != 0,
            pid: (w.pid != 0).then_some(w.pid),
            started_at: seen(w.started_at),
            last_pass_at: seen(w.last_pass_at),
            passes: count(w.passes),
            failed_passes: count(w.failed_passes),
            skipped_passes: count(w.skipped_passes),
            extension_present: w.extension_present,
            in_recovery: w.in_recovery,
            tracked_slots: i32::try_from(tracked).unwrap_or(i32::MAX),
            untracked_slots: i32::try_from(w.untracked_slots).unwrap_or(i32::MAX),
            note,
        }
    }
}

/// One row per replication slot (physical and logical, all databases), worst first.
// pgrx reads the column names from this inline tuple, so it cannot be a type alias.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn cdc_health(
    fcinfo: pg_sys::FunctionCallInfo,
) -> TableIterator<
    'static,
    (
        name!(slot_name, String),
        name!(slot_type, String),
        name!(database, Option<String>),
        name!(active, bool),
        name!(wal_status, Option<String>),
        name!(status, String),
        name!(findings, Option<Vec<String>>),
        name!(summary, Option<String>),
        name!(retained_wal_bytes, Option<i64>),
        name!(flush_lag_bytes, Option<i64>),
        name!(safe_wal_size, Option<i64>),
        name!(wal_budget_bytes, Option<i64>),
        name!(inactive_for, Option<Interval>),
        name!(last_progress_at, Option<TimestampWithTimeZone>),
        name!(growth_bytes_per_sec, Option<f64>),
        name!(eta_to_lost, Option<Interval>),
        name!(remediation, Option<String>),
        name!(detail, Option<Jsonb>),
    ),
> {
    // Columns the query does not read come back NULL, unbuilt.
    const FINDINGS: usize = 7;
    const SUMMARY: usize = 8;
    const REMEDIATION: usize = 17;
    const DETAIL: usize = 18;
    // SAFETY: this call's own fcinfo, during the call.
    let columns = unsafe { Columns::of_call(fcinfo) };
    let (server, views) = monitor::observe(false).or_raise(|e| Error::Internal("reading slots", e));
    let worker = shmem::worker_status();
    let rows: Vec<_> = views
        .into_iter()
        .map(|view| {
            let detail = columns
                .reads(DETAIL)
                .then(|| Jsonb(monitor::detail(&view, &server, worker)));
            let summary =
                (columns.reads(SUMMARY) && !view.verdict.findings.is_empty()).then(|| {
                    let parts: Vec<&str> = view
                        .verdict
                        .findings
                        .iter()
                        .map(|f| f.summary.as_str())
                        .collect();
                    parts.join("; ")
                });
            let history = view.history.as_ref();
            let forecast = history.map(|h| h.forecast);
            let eta_to_lost = view.eta_to_lost(&server);
            let remediation = columns
                .reads(REMEDIATION)
                .then(|| view.verdict.remediation(&view.slot))
                .flatten();
            let findings = columns
                .reads(FINDINGS)
                .then(|| view.verdict.codes().into_iter().map(String::from).collect());
            (
                view.slot.slot_name,
                view.slot.slot_type.as_str().to_string(),
                view.slot.database,
                view.slot.active,
                view.slot.wal_status.map(|w| w.as_str().to_string()),
                view.verdict.status.as_str().to_string(),
                findings,
                summary,
                view.verdict.retained_wal_bytes,
                view.verdict.flush_lag_bytes,
                view.verdict.safe_wal_size,
                server.wal_budget_bytes,
                view.slot
                    .inactive_for_secs
                    .filter(|_| !view.slot.active)
                    .map(Interval::from_seconds),
                history
                    .and_then(|h| h.last_progress_at)
                    .and_then(timestamptz),
                forecast.and_then(|f| f.growth_bytes_per_sec),
                eta_to_lost.map(Interval::from_seconds),
                remediation,
                detail,
            )
        })
        .collect();
    TableIterator::new(rows)
}

/// Functions in schema `cdc_health`.
#[pg_schema]
mod cdc_health {
    use cdc_health_rules::sparkline::sparkline as render_sparkline;
    use cdc_health_rules::units::pretty_bytes;
    use pgrx::datum::{Interval, TimestampWithTimeZone};
    use pgrx::prelude::*;

    use super::{timestamptz, Error};
    use crate::pg::errors::{OrRaise, SqlError};
    use crate::pg::jsonb::Jsonb;
    use crate::{monitor, settings, shmem};

    /// Runs one monitoring pass now (waiting for a running one) and returns the alert events it
    /// produced. Writes history and alerts like the worker does.
    #[pg_extern(volatile, parallel_unsafe)]
    fn check_now() -> TableIterator<
        'static,
        (
            name!(event, String),
            name!(alert_id, i64),
            name!(subject, String),
            name!(finding, String),
            name!(severity, String),
            name!(summary, String),
        ),
    > {
        if crate::pg::backend::in_recovery() {
            Error::OnStandby.raise();
        }
        let applied = monitor::pass(true, None)
            .or_raise(|e| Error::Internal("check_now()", e))
            .map(|p| p.applied)
            .unwrap_or_default();
        TableIterator::new(applied.into_iter().map(|a| {
            (
                a.event.to_string(),
                a.alert_id,
                a.subject,
                a.finding.to_string(),
                a.severity.to_string(),
                a.summary,
            )
        }))
    }

    /// The background worker as shared memory knows it.
    // pgrx reads the column names from this inline tuple, so it cannot be a type alias.
    // Rust name with a suffix: 0.1.0's worker_status() names the symbol
    // `worker_status_wrapper`, which `crate::released` keeps with 0.1.0's columns.
    #[allow(clippy::type_complexity)]
    #[pg_extern(volatile, parallel_safe, name = "worker_status")]
    fn worker_status_v2() -> TableIterator<
        'static,
        (
            name!(running, bool),
            name!(pid, Option<i32>),
            name!(started_at, Option<TimestampWithTimeZone>),
            name!(last_pass_at, Option<TimestampWithTimeZone>),
            name!(passes, i64),
            name!(failed_passes, i64),
            name!(skipped_passes, i64),
            name!(extension_present, bool),
            name!(in_recovery, bool),
            name!(tracked_slots, i32),
            name!(untracked_slots, i32),
            name!(note, Option<String>),
        ),
    > {
        let w = super::WorkerRow::now();
        TableIterator::once((
            w.running,
            w.pid,
            w.started_at,
            w.last_pass_at,
            w.passes,
            w.failed_passes,
            w.skipped_passes,
            w.extension_present,
            w.in_recovery,
            w.tracked_slots,
            w.untracked_slots,
            w.note,
        ))
    }

    /// Logical slot creations in progress: who waits, since when, for whom, and the standby
    /// snapshots logged to help.
    // pgrx reads the column names from this inline tuple, so it cannot be a type alias.
    #[allow(clippy::type_complexity)]
    #[pg_extern(volatile, parallel_safe)]
    fn slot_creations() -> TableIterator<
        'static,
        (
            name!(pid, i32),
            name!(backend_type, Option<String>),
            name!(usename, Option<String>),
            name!(application_name, Option<String>),
            name!(client_addr, Option<String>),
            name!(slot_name, String),
            name!(waiting_since, Option<TimestampWithTimeZone>),
            name!(waiting_for, Interval),
            name!(blocking_pids, Vec<i32>),
            name!(blockers, Jsonb),
            name!(snapshots_logged, i32),
            name!(last_snapshot_lsn, Option<String>),
            name!(note, Option<String>),
        ),
    > {
        let waiting = crate::slots::creations::in_progress()
            .or_raise(|e| Error::Internal("slot_creations()", e));
        let note = if crate::pg::backend::in_recovery() {
            Some("on a standby no standby snapshot can be logged: run SELECT pg_log_standby_snapshot() on the primary")
        } else if shmem::worker_status().is_none_or(|w| w.pid == 0) {
            Some("no background worker: standby snapshots are not logged")
        } else if !settings::unblock_slot_creation() {
            Some("cdc_health.unblock_slot_creation is off")
        } else {
            None
        };
        let now = crate::pg::clock::now_secs();
        let rows: Vec<_> = waiting
            .into_iter()
            .map(|c| {
                let (snapshots, lsn) = shmem::nudges_for(c.pid, &c.slot_name);
                let blocking: Vec<i32> = c.blockers.iter().filter_map(|b| b.pid).collect();
                (
                    c.pid,
                    c.backend_type.clone(),
                    c.user.clone(),
                    c.application.clone(),
                    c.client.clone(),
                    c.slot_name.clone(),
                    timestamptz(now - c.waiting_secs),
                    Interval::from_seconds(c.waiting_secs),
                    blocking,
                    Jsonb::from(serde_json::to_value(&c.blockers).unwrap_or_default()),
                    i32::try_from(snapshots).unwrap_or(i32::MAX),
                    lsn.map(cdc_health_rules::lsn::format_lsn),
                    note.map(String::from),
                )
            })
            .collect();
        TableIterator::new(rows)
    }

    /// The volume holding `pg_wal`, what holds the WAL on it, the fill rate and when it is
    /// full, with `wal_disk_full_soon`'s verdict: one row.
    #[allow(clippy::type_complexity)]
    #[pg_extern(volatile, parallel_safe)]
    fn wal_usage() -> TableIterator<
        'static,
        (
            name!(wal_directory, Option<String>),
            name!(disk_total_bytes, Option<i64>),
            name!(disk_free_bytes, Option<i64>),
            name!(wal_bytes, i64),
            name!(largest_slot, Option<String>),
            name!(largest_slot_bytes, Option<i64>),
            name!(wal_keep_bytes, i64),
            name!(archive_pending_segments, i64),
            name!(max_wal_size_bytes, i64),
            name!(fill_rate_bytes_per_second, Option<f64>),
            name!(eta_to_full, Option<Interval>),
            name!(status, String),
            name!(summary, Option<String>),
            name!(remediation, Option<String>),
        ),
    > {
        let _path = crate::pg::role::Switched::safe_search_path();
        let server = crate::slots::sampling::server();
        let slots = crate::slots::sampling::slots();
        let now = crate::pg::clock::now_secs();
        let w = crate::server::wal::assess(&server, slots.iter(), now, false)
            .or_raise(|e| Error::Internal("wal_usage()", e));
        let h = w.holders;
        let (largest, largest_bytes) = h.largest_slot.unzip();
        let status = w
            .disk
            .as_ref()
            .map_or("ok", |f| f.severity.as_str())
            .to_string();
        let (summary, remediation) = w.disk.map(|f| (f.summary, f.remedy)).unzip();
        TableIterator::once((
            // Where pg_wal really is (initdb -X makes it a symlink).
            w.dir
                .map(|d| std::fs::canonicalize(&d).unwrap_or(d))
                .map(|d| d.to_string_lossy().into_owned()),
            w.reading.map(|r| r.total_bytes),
            w.reading.map(|r| r.free_bytes),
            h.wal_bytes,
            largest,
            largest_bytes,
            h.wal_keep_bytes,
            h.archive_pending_segments,
            h.max_wal_bytes,
            w.forecast.map(|f| f.rate_bytes_per_sec),
            w.forecast
                .and_then(|f| f.eta_secs)
                .map(Interval::from_seconds),
            status,
            summary,
            remediation.flatten(),
        ))
    }

    /// What `max_slot_wal_keep_size` to set: the current setting and a recommended one, each
    /// with the consumer outage it survives at the history's peak WAL rate and the room it
    /// leaves on the volume holding `pg_wal`.
    #[allow(clippy::type_complexity)]
    #[pg_extern(volatile, parallel_safe)]
    fn budget_advice() -> TableIterator<
        'static,
        (
            name!(setting, String),
            name!(max_slot_wal_keep_size, Option<String>),
            name!(budget_bytes, Option<i64>),
            name!(survives_outage, Option<Interval>),
            name!(leaves_free_bytes, Option<i64>),
            name!(peak_wal_bytes_per_hour, Option<i64>),
            name!(longest_outage, Option<Interval>),
            name!(summary, String),
        ),
    > {
        let _path = crate::pg::role::Switched::safe_search_path();
        let budget = crate::slots::sampling::server().wal_budget_bytes;
        let facts = crate::server::budget::facts(budget)
            .or_raise(|e| Error::Internal("budget_advice()", e));
        let per_hour = facts.peak_rate_bytes_per_sec.map(|r| (r * 3600.0) as i64);
        let outage = facts.longest_outage_secs.map(Interval::from_seconds);
        let rows: Vec<_> = cdc_health_rules::budget::advise(&facts)
            .into_iter()
            .map(|r| {
                let value = match (r.setting, r.budget_bytes) {
                    ("current", None) => Some("-1".to_string()),
                    (_, Some(bytes)) => Some(cdc_health_rules::budget::setting_text(bytes)),
                    _ => None,
                };
                (
                    r.setting.to_string(),
                    value,
                    r.budget_bytes,
                    r.survives_secs.map(Interval::from_seconds),
                    r.leaves_free_bytes,
                    per_hour,
                    outage,
                    r.summary,
                )
            })
            .collect();
        TableIterator::new(rows)
    }

    /// Settings and schema details that break CDC before any slot is in trouble, one row per
    /// problem, most severe first (`rules::audit` has the checks).
    #[allow(clippy::type_complexity)]
    #[pg_extern(volatile, parallel_safe)]
    fn config_audit() -> TableIterator<
        'static,
        (
            name!(check_code, String),
            name!(severity, String),
            name!(object, String),
            name!(summary, String),
            name!(remediation, String),
        ),
    > {
        let _path = crate::pg::role::Switched::safe_search_path();
        let facts =
            crate::server::audit::facts().or_raise(|e| Error::Internal("config_audit()", e));
        let rows: Vec<_> = cdc_health_rules::audit::audit(&facts)
            .into_iter()
            .map(|r| {
                (
                    r.check_code.to_string(),
                    r.severity.as_str().to_string(),
                    r.object,
                    r.summary,
                    r.remediation,
                )
            })
            .collect();
        TableIterator::new(rows)
    }

    /// Retained WAL of one slot since `since` as a one-line chart, with its range.
    #[pg_extern(stable, parallel_safe)]
    fn sparkline(
        slot_name: &str,
        since: default!(TimestampWithTimeZone, "now() - interval '1 day'"),
        width: default!(i32, 48),
    ) -> Option<String> {
        if !(1..=1000).contains(&width) {
            Error::BadWidth(width).raise();
        }
        // Our statement, not the caller's search_path (whose operators would run as the
        // caller, a superuser among them).
        let _path = crate::pg::role::Switched::safe_search_path();
        let values: Vec<Option<f64>> = Spi::connect(|client| {
            client
                .select(
                    "SELECT h.retained_wal_bytes::float8 FROM cdc_health.history_samples h
                     WHERE h.slot_id = ANY (ARRAY(SELECT s.id FROM cdc_health.history_slots s
                                                  WHERE s.slot_name = $1))
                       AND h.sampled_at >= $2
                     ORDER BY h.sampled_at",
                    None,
                    &[slot_name.into(), since.into()],
                )?
                .map(|row| row.get::<f64>(1))
                .collect::<Result<Vec<_>, _>>()
        })
        .or_raise(|e| Error::Internal("sparkline()", e));
        if values.is_empty() {
            return None;
        }
        let known: Vec<f64> = values.iter().flatten().copied().collect();
        let range = match (known.first(), known.iter().copied().reduce(f64::max)) {
            (Some(first), Some(max)) => format!(
                " {} -> {} (max {})",
                pretty_bytes(*first as i64),
                pretty_bytes(*known.last().unwrap_or(first) as i64),
                pretty_bytes(max as i64)
            ),
            _ => " (no retained WAL: lost or never reserved)".to_string(),
        };
        Some(format!(
            "{}{range}",
            render_sparkline(&values, width as usize)
        ))
    }
}
