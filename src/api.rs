//! The SQL surface: `cdc_health()`.

use cdc_health_rules::{assess_slot, worst_first, SlotAssessment, SlotObservation};
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::json;

use crate::{sampling, settings};

/// One row per replication slot (physical and logical, all databases), worst first.
// pgrx reads the column names from this inline tuple, so it cannot be a type alias.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn cdc_health() -> TableIterator<
    'static,
    (
        name!(slot_name, String),
        name!(slot_type, String),
        name!(database, Option<String>),
        name!(active, bool),
        name!(wal_status, Option<String>),
        name!(status, String),
        name!(findings, Vec<String>),
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
        name!(detail, JsonB),
    ),
> {
    let server = sampling::server();
    let limits = settings::thresholds();
    let slots = sampling::slots().unwrap_or_else(|e| error!("cdc_health: reading slots: {e}"));
    let mut rows: Vec<(SlotObservation, SlotAssessment)> = slots
        .into_iter()
        .map(|slot| {
            let verdict = assess_slot(&slot, &server, &limits);
            (slot, verdict)
        })
        .collect();
    rows.sort_by(|a, b| worst_first(&a.1, &b.1));
    let worker = json!({
        "running": false,
        "note": "the background worker is not running: add cdc_health to \
                 shared_preload_libraries for stalled, growth and forecast findings",
    });
    TableIterator::new(rows.into_iter().map(move |(slot, verdict)| {
        let mut detail = verdict.detail(&slot, &server);
        detail["worker"] = worker.clone();
        let summary = (!verdict.findings.is_empty()).then(|| {
            verdict
                .findings
                .iter()
                .map(|f| f.summary.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        });
        (
            slot.slot_name,
            slot.slot_type.as_str().to_string(),
            slot.database,
            slot.active,
            slot.wal_status.map(|w| w.as_str().to_string()),
            verdict.status.as_str().to_string(),
            verdict.codes().into_iter().map(String::from).collect(),
            summary,
            verdict.retained_wal_bytes,
            verdict.flush_lag_bytes,
            verdict.safe_wal_size,
            server.wal_budget_bytes,
            slot.inactive_for_secs.map(Interval::from_seconds),
            None,
            None,
            None,
            verdict.remediation,
            JsonB(detail),
        )
    }))
}

extension_sql!(
    r#"
REVOKE ALL ON FUNCTION cdc_health() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health() TO pg_monitor;
COMMENT ON FUNCTION cdc_health() IS
  'One row per replication slot, worst first: status, findings and what to do about them';
"#,
    name = "cdc_health_grants",
    requires = [cdc_health]
);
