//! Prometheus metrics: `cdc_health.metrics()` and the state behind the `/metrics` endpoint.
//!
//! The worker renders the state (slots, alerts, mirrors) at the end of each pass and leaves
//! it in shared memory (`snapshot`); the endpoint (`endpoint`) serves that copy with the
//! worker's counters rendered at scrape time, so a scrape needs no SPI, no connection slot
//! and no lock a session can hold. `cdc_health.metrics()` renders the same text afresh.

pub mod endpoint;
pub mod snapshot;

use cdc_health_rules::exposition::{
    render_state, render_worker, MirrorMetrics, SinkMetrics, SlotMetrics, State, WalMetrics,
    WorkerMetrics,
};
use cdc_health_rules::{ServerObservation, Severity};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use crate::pg::role::Switched;
use crate::shmem;
use crate::slots::view::SlotView;

fn slot_metrics(v: &SlotView, server: &ServerObservation) -> SlotMetrics {
    let forecast = v.history.as_ref().map(|h| h.forecast);
    SlotMetrics {
        slot_name: v.slot.slot_name.clone(),
        slot_type: v.slot.slot_type.as_str().to_string(),
        database: v.slot.database.clone(),
        plugin: v.slot.plugin.clone(),
        wal_status: v.slot.wal_status.map(|w| w.as_str().to_string()),
        active: v.slot.active,
        status: Some(v.verdict.status),
        findings: v
            .verdict
            .findings
            .iter()
            .map(|f| (f.code.as_str(), f.severity))
            .collect(),
        retained_wal_bytes: v.verdict.retained_wal_bytes,
        flush_lag_bytes: v.verdict.flush_lag_bytes,
        safe_wal_size_bytes: v.verdict.safe_wal_size,
        inactive_secs: v.slot.inactive_for_secs.filter(|_| !v.slot.active),
        growth_bytes_per_sec: forecast.and_then(|f| f.growth_bytes_per_sec),
        eta_to_lost_secs: v.eta_to_lost(server),
        last_progress_at: v.history.as_ref().and_then(|h| h.last_progress_at),
        consumer_sessions: Some(v.consumer.sessions),
        consumer_errors: v.consumer.errors.clone(),
        consumer_reply_age_secs: v
            .consumer
            .last_reply_at
            .map(|at| (crate::pg::clock::now_secs() - at).max(0.0)),
    }
}

/// The open alerts by severity: (warning, critical).
fn open_alerts() -> SpiResult<(i64, i64)> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT severity, pg_catalog.count(*) FROM cdc_health.alerts
             WHERE resolved_at IS NULL GROUP BY severity",
            None,
            &[],
        )?;
        let (mut warning, mut critical) = (0, 0);
        for row in rows {
            let severity: Option<String> = row.get(1)?;
            let count: i64 = row.get(2)?.unwrap_or(0);
            match severity.as_deref() {
                Some("critical") => critical += count,
                Some("warning") => warning += count,
                _ => {}
            }
        }
        Ok((warning, critical))
    })
}

fn mirrors() -> SpiResult<Vec<MirrorMetrics>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT name, kind, status, findings,
                    pg_catalog.date_part('epoch', lag), pg_catalog.date_part('epoch', max_lag),
                    row_drift, probe_ms, pg_catalog.date_part('epoch', checked_at)
             FROM cdc_health.mirror_checks ORDER BY name",
            None,
            &[],
        )?;
        let mut out = Vec::new();
        for row in rows {
            let status: Option<String> = row.get(3)?;
            out.push(MirrorMetrics {
                name: row.get(1)?.unwrap_or_default(),
                kind: row.get(2)?.unwrap_or_default(),
                status: status.as_deref().and_then(Severity::parse),
                findings: row.get::<Vec<String>>(4)?.unwrap_or_default(),
                lag_secs: row.get(5)?,
                max_lag_secs: row.get(6)?,
                row_drift: row.get(7)?,
                probe_secs: row.get::<f64>(8)?.map(|ms| ms / 1000.0),
                checked_at: row.get(9)?,
            });
        }
        Ok(out)
    })
}

fn sinks() -> SpiResult<Vec<SinkMetrics>> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT s.name, s.kind,
                    (SELECT pg_catalog.count(*) FROM cdc_health.deliveries d
                     WHERE d.sink OPERATOR(pg_catalog.=) s.name
                       AND d.delivered_at IS NULL AND d.failed_at IS NULL),
                    s.delivered, s.failed, s.dropped, s.failing_since IS NOT NULL,
                    pg_catalog.date_part('epoch', s.last_delivered_at)
             FROM cdc_health.sinks s ORDER BY s.name",
            None,
            &[],
        )?;
        let mut out = Vec::new();
        for row in rows {
            out.push(SinkMetrics {
                name: row.get(1)?.unwrap_or_default(),
                kind: row.get(2)?.unwrap_or_default(),
                pending: row.get(3)?.unwrap_or(0),
                delivered: row.get(4)?.unwrap_or(0),
                failed: row.get(5)?.unwrap_or(0),
                dropped: row.get(6)?.unwrap_or(0),
                failing: row.get(7)?.unwrap_or(false),
                last_delivered_at: row.get(8)?,
            });
        }
        Ok(out)
    })
}

/// The volume holding pg_wal, read again (one `statvfs`, the names in `pg_wal`) with the
/// readings the pass kept, and the server's findings on it.
fn wal(server: &ServerObservation, views: &[SlotView]) -> SpiResult<WalMetrics> {
    use crate::server::wal::{assess, ARCHIVER_SUBJECT, WAL_SUBJECT};
    let now = crate::pg::clock::now_secs();
    let w = assess(server, views.iter().map(|v| &v.slot), now, false)?;
    let findings = [(WAL_SUBJECT, &w.disk), (ARCHIVER_SUBJECT, &w.archive)]
        .into_iter()
        .filter_map(|(subject, f)| f.as_ref().map(|f| (subject, f.code.as_str(), f.severity)))
        .collect();
    Ok(WalMetrics {
        disk_total_bytes: w.reading.map(|r| r.total_bytes),
        disk_free_bytes: w.reading.map(|r| r.free_bytes),
        wal_bytes: w.holders.wal_bytes,
        archive_pending_segments: w.holders.archive_pending_segments,
        fill_rate_bytes_per_sec: w.forecast.map(|f| f.rate_bytes_per_sec),
        eta_to_full_secs: w.forecast.and_then(|f| f.eta_secs),
        findings,
    })
}

/// The state part of the metrics, from one look at the slots.
pub fn render(server: &ServerObservation, views: &[SlotView]) -> SpiResult<String> {
    let (alerts_open_warning, alerts_open_critical) = open_alerts()?;
    Ok(render_state(&State {
        slots: views.iter().map(|v| slot_metrics(v, server)).collect(),
        wal_budget_bytes: server.wal_budget_bytes,
        alerts_open_warning,
        alerts_open_critical,
        creations_waiting: views.iter().filter(|v| v.creation.is_some()).count(),
        mirrors: mirrors()?,
        sinks: sinks()?,
        wal: Some(wal(server, views)?),
    }))
}

/// Leaves the state in shared memory for the endpoint; called by the worker after a pass.
pub fn publish(server: &ServerObservation, views: &[SlotView]) -> SpiResult<()> {
    let text = render(server, views)?;
    snapshot::publish(&text);
    Ok(())
}

/// Is `pid` a live process? (A worker killed with SIGKILL leaves its pid in shared memory.)
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

/// The worker's counters as shared memory has them now.
pub fn worker_metrics(truncated: bool) -> WorkerMetrics {
    let Some(w) = shmem::worker_status() else {
        return WorkerMetrics::default();
    };
    let passed = w.last_pass_at > 0.0;
    WorkerMetrics {
        up: alive(w.pid) && w.extension_present && !w.awaiting_update,
        passes: Some(w.passes),
        pass_errors: Some(w.failed_passes),
        skipped_passes: Some(w.skipped_passes),
        pass_duration_secs: passed.then_some(w.last_pass_secs),
        last_pass_at: passed.then_some(w.last_pass_at),
        truncated,
    }
}

/// The worker's part of the metrics.
pub fn render_worker_now(truncated: bool) -> String {
    render_worker(&worker_metrics(truncated))
}

#[pg_schema]
mod cdc_health {
    use crate::pg::errors::{Internal, OrRaise};
    use pgrx::prelude::*;

    /// Every metric in the Prometheus text format, rendered now (for postgres_exporter,
    /// sql_exporter or a cron job where a listening port is not allowed).
    #[pg_extern(volatile, parallel_safe)]
    fn metrics() -> String {
        let _path = super::Switched::safe_search_path();
        let (server, views) =
            crate::monitor::observe(false).or_raise(|e| Internal("metrics(): reading slots", e));
        let mut text = super::render(&server, &views).or_raise(|e| Internal("metrics()", e));
        text.push_str(&super::render_worker_now(false));
        text
    }
}
