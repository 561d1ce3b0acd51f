//! The Prometheus text exposition format (0.0.4) of cdc_health's verdicts: what
//! `cdc_health.metrics()` returns and the `/metrics` endpoint serves.
//!
//! Two parts, rendered apart: the state (slots, alerts, mirrors), which the worker renders
//! after each pass, and the worker's own counters, which the endpoint renders at scrape time
//! so that a worker that stopped shows as down rather than as a frozen copy of its last pass.
//! A figure without a value (no forecast, no budget) is left out, never a NaN or a sentinel.

use std::fmt::Write;

use crate::finding::Severity;

/// One slot's figures, as `cdc_health()` shows them.
#[derive(Debug, Clone, Default)]
pub struct SlotMetrics {
    pub slot_name: String,
    pub slot_type: String,
    /// Logical slots only.
    pub database: Option<String>,
    pub plugin: Option<String>,
    pub wal_status: Option<String>,
    pub active: bool,
    pub status: Option<Severity>,
    /// (finding code, severity), one per open finding.
    pub findings: Vec<(&'static str, Severity)>,
    pub retained_wal_bytes: Option<i64>,
    pub flush_lag_bytes: Option<i64>,
    pub safe_wal_size_bytes: Option<i64>,
    pub inactive_secs: Option<f64>,
    pub growth_bytes_per_sec: Option<f64>,
    pub eta_to_lost_secs: Option<f64>,
    pub last_progress_at: Option<f64>,
    /// The consumer's sessions in the forecast window (ended in it, or connected now).
    pub consumer_sessions: Option<u32>,
    /// Reports that ended or refused the consumer's sessions in the window, by SQLSTATE
    /// (`timeout` for the walsender's replication timeout).
    pub consumer_errors: Vec<(String, u32)>,
    /// Seconds since the connected consumer last answered (`pg_stat_replication.reply_time`).
    pub consumer_reply_age_secs: Option<f64>,
}

/// One mirror or freshness check and its last probe.
#[derive(Debug, Clone, Default)]
pub struct MirrorMetrics {
    pub name: String,
    pub kind: String,
    /// `None` until the first probe.
    pub status: Option<Severity>,
    pub findings: Vec<String>,
    pub lag_secs: Option<f64>,
    pub max_lag_secs: Option<f64>,
    pub row_drift: Option<i64>,
    pub probe_secs: Option<f64>,
    pub checked_at: Option<f64>,
}

/// One alert sink and its delivery counters.
#[derive(Debug, Clone, Default)]
pub struct SinkMetrics {
    pub name: String,
    pub kind: String,
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
    pub dropped: i64,
    /// Failed permanently or gave up since its last delivery (`delivery_failed`).
    pub failing: bool,
    pub last_delivered_at: Option<f64>,
}

/// Everything but the worker's counters.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub slots: Vec<SlotMetrics>,
    /// `max_slot_wal_keep_size`; `None` when unlimited.
    pub wal_budget_bytes: Option<i64>,
    pub alerts_open_warning: i64,
    pub alerts_open_critical: i64,
    pub creations_waiting: usize,
    pub mirrors: Vec<MirrorMetrics>,
    pub sinks: Vec<SinkMetrics>,
    /// The volume holding pg_wal and the server's findings; `None` when it was not read.
    pub wal: Option<WalMetrics>,
}

/// The volume holding `pg_wal`, the WAL on it, and the server's findings.
#[derive(Debug, Clone, Default)]
pub struct WalMetrics {
    pub disk_total_bytes: Option<i64>,
    pub disk_free_bytes: Option<i64>,
    pub wal_bytes: i64,
    pub archive_pending_segments: i64,
    pub fill_rate_bytes_per_sec: Option<f64>,
    pub eta_to_full_secs: Option<f64>,
    /// (subject, finding code, severity): `server:wal`'s and `server:archiver`'s.
    pub findings: Vec<(&'static str, &'static str, Severity)>,
}

/// The monitoring worker, as shared memory shows it at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerMetrics {
    /// Running and monitoring (the extension exists at the library's version).
    pub up: bool,
    /// `None` without shared memory (the library is not preloaded).
    pub passes: Option<u64>,
    pub pass_errors: Option<u64>,
    pub skipped_passes: Option<u64>,
    pub pass_duration_secs: Option<f64>,
    pub last_pass_at: Option<f64>,
    /// The endpoint's copy of the state was cut short (see `cdc_health_metrics_truncated`).
    pub truncated: bool,
}

/// The numeric level of a status, as `cdc_health_*_status` exports it.
pub fn level(s: Severity) -> i64 {
    match s {
        Severity::Ok => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format requires.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value: integers as integers; non-finite figures have no value.
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(i64),
    Float(f64),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        match i64::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(v as f64),
        }
    }
}

type Labels<'a> = Vec<(&'a str, &'a str)>;

/// Writes families to a string; a family with no samples is left out entirely.
struct Writer {
    out: String,
}

impl Writer {
    fn family<'a, V: Into<Value>>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'a>, Option<V>)>,
    ) {
        let mut head = false;
        for (labels, value) in samples {
            let value = match value.map(Into::into) {
                None => continue,
                Some(Value::Float(f)) if !f.is_finite() => continue,
                Some(v) => v,
            };
            if !head {
                // HELP and TYPE are ours: no escaping needed, checked by the tests.
                let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                head = true;
            }
            self.out.push_str(name);
            if !labels.is_empty() {
                self.out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
                }
                self.out.push('}');
            }
            let _ = match value {
                Value::Int(i) => writeln!(self.out, " {i}"),
                Value::Float(f) => writeln!(self.out, " {f}"),
            };
        }
    }
}

fn mirror_labels(m: &MirrorMetrics) -> Labels<'_> {
    vec![("mirror", m.name.as_str()), ("kind", m.kind.as_str())]
}

fn sink_labels(s: &SinkMetrics) -> Labels<'_> {
    vec![("sink", s.name.as_str()), ("kind", s.kind.as_str())]
}

fn slot_labels(s: &SlotMetrics) -> Labels<'_> {
    let mut l = vec![
        ("slot_name", s.slot_name.as_str()),
        ("slot_type", s.slot_type.as_str()),
    ];
    if let Some(db) = &s.database {
        l.push(("database", db.as_str()));
    }
    l
}

/// The slots, alerts and mirrors.
pub fn render_state(state: &State) -> String {
    let mut w = Writer { out: String::new() };
    let slots = &state.slots;
    w.family(
        "cdc_health_slot_info",
        "gauge",
        "A replication slot (always 1), with its plugin and wal_status.",
        slots.iter().map(|s| {
            let mut l = slot_labels(s);
            l.push(("plugin", s.plugin.as_deref().unwrap_or("")));
            l.push(("wal_status", s.wal_status.as_deref().unwrap_or("")));
            (l, Some(1_i64))
        }),
    );
    let per_slot =
        |w: &mut Writer, name: &str, help: &str, f: &dyn Fn(&SlotMetrics) -> Option<Value>| {
            w.family(
                name,
                "gauge",
                help,
                slots.iter().map(|s| (slot_labels(s), f(s))),
            );
        };
    per_slot(
        &mut w,
        "cdc_health_slot_active",
        "1 while a consumer is connected to the slot.",
        &|s| Some(s.active.into()),
    );
    per_slot(
        &mut w,
        "cdc_health_slot_status",
        "The slot's verdict: 0 ok, 1 warning, 2 critical.",
        &|s| s.status.map(|st| level(st).into()),
    );
    w.family(
        "cdc_health_slot_finding",
        "gauge",
        "1 for each open finding on the slot (see cdc_health() for its summary and remedy).",
        slots.iter().flat_map(|s| {
            s.findings.iter().map(move |(code, severity)| {
                let mut l = slot_labels(s);
                l.push(("finding", code));
                l.push(("severity", severity.as_str()));
                (l, Some(1_i64))
            })
        }),
    );
    per_slot(
        &mut w,
        "cdc_health_slot_retained_wal_bytes",
        "WAL the slot keeps on the server (current position minus restart_lsn).",
        &|s| s.retained_wal_bytes.map(Value::from),
    );
    per_slot(
        &mut w,
        "cdc_health_slot_flush_lag_bytes",
        "Current position minus the consumer's confirmed_flush_lsn (logical slots).",
        &|s| s.flush_lag_bytes.map(Value::from),
    );
    per_slot(&mut w, "cdc_health_slot_safe_wal_size_bytes", "WAL that can still be written before the slot is lost (pg_replication_slots.safe_wal_size).", &|s| {
        s.safe_wal_size_bytes.map(Value::from)
    });
    per_slot(
        &mut w,
        "cdc_health_slot_inactive_seconds",
        "How long the slot has had no consumer, when known.",
        &|s| s.inactive_secs.map(Value::from),
    );
    per_slot(
        &mut w,
        "cdc_health_slot_growth_bytes_per_second",
        "Growth of the slot's retained WAL over the forecast window.",
        &|s| s.growth_bytes_per_sec.map(Value::from),
    );
    per_slot(
        &mut w,
        "cdc_health_slot_eta_to_lost_seconds",
        "Forecast time until the slot is lost (or reaches the retained-WAL ceiling).",
        &|s| s.eta_to_lost_secs.map(Value::from),
    );
    per_slot(
        &mut w,
        "cdc_health_slot_last_progress_timestamp_seconds",
        "When the slot's consumer last advanced (Unix time).",
        &|s| s.last_progress_at.map(Value::from),
    );
    per_slot(
        &mut w,
        "cdc_health_slot_consumer_sessions",
        "The consumer's sessions in the forecast window: those that ended in it and the connected one.",
        &|s| s.consumer_sessions.map(|n| Value::from(i64::from(n))),
    );
    w.family(
        "cdc_health_slot_consumer_errors",
        "gauge",
        "Reports that ended or refused the consumer's sessions in the forecast window, by SQLSTATE (timeout: the walsender's replication timeout).",
        slots.iter().flat_map(|s| {
            s.consumer_errors.iter().map(move |(sqlstate, n)| {
                let mut l = slot_labels(s);
                l.push(("sqlstate", sqlstate.as_str()));
                (l, Some(i64::from(*n)))
            })
        }),
    );
    per_slot(
        &mut w,
        "cdc_health_slot_consumer_reply_age_seconds",
        "Seconds since the connected consumer last answered the server (pg_stat_replication.reply_time).",
        &|s| s.consumer_reply_age_secs.map(Value::from),
    );
    w.family(
        "cdc_health_wal_budget_bytes",
        "gauge",
        "max_slot_wal_keep_size: the WAL a slot may retain before it is lost.",
        [(vec![], state.wal_budget_bytes)],
    );
    w.family(
        "cdc_health_alerts_open",
        "gauge",
        "Open alerts in cdc_health.alerts, by severity.",
        [
            (
                vec![("severity", "warning")],
                Some(state.alerts_open_warning),
            ),
            (
                vec![("severity", "critical")],
                Some(state.alerts_open_critical),
            ),
        ],
    );
    w.family(
        "cdc_health_slot_creations_waiting",
        "gauge",
        "Logical slot creations waiting for running transactions.",
        [(vec![], Some(state.creations_waiting as i64))],
    );
    let mirrors = &state.mirrors;
    let per_mirror =
        |w: &mut Writer, name: &str, help: &str, f: &dyn Fn(&MirrorMetrics) -> Option<Value>| {
            w.family(
                name,
                "gauge",
                help,
                mirrors.iter().map(|m| (mirror_labels(m), f(m))),
            );
        };
    per_mirror(
        &mut w,
        "cdc_health_mirror_status",
        "The mirror check's last verdict: 0 ok, 1 warning, 2 critical.",
        &|m| m.status.map(|s| level(s).into()),
    );
    w.family(
        "cdc_health_mirror_finding",
        "gauge",
        "1 for each finding of the mirror check's last probe.",
        mirrors.iter().flat_map(|m| {
            let severity = m.status.unwrap_or(Severity::Warning).as_str();
            m.findings.iter().map(move |f| {
                let mut l = mirror_labels(m);
                l.push(("finding", f.as_str()));
                l.push(("severity", severity));
                (l, Some(1_i64))
            })
        }),
    );
    per_mirror(
        &mut w,
        "cdc_health_mirror_lag_seconds",
        "How far the destination is behind its source (or behind now, for freshness checks).",
        &|m| m.lag_secs.map(Value::from),
    );
    per_mirror(
        &mut w,
        "cdc_health_mirror_max_lag_seconds",
        "The lag the check allows (its max_lag).",
        &|m| m.max_lag_secs.map(Value::from),
    );
    per_mirror(
        &mut w,
        "cdc_health_mirror_row_drift",
        "Rows the destination lacks (negative: has too many).",
        &|m| m.row_drift.map(Value::from),
    );
    per_mirror(
        &mut w,
        "cdc_health_mirror_probe_duration_seconds",
        "How long the check's last probe took.",
        &|m| m.probe_secs.map(Value::from),
    );
    per_mirror(
        &mut w,
        "cdc_health_mirror_last_check_timestamp_seconds",
        "When the check was last probed (Unix time).",
        &|m| m.checked_at.map(Value::from),
    );
    render_sinks(&mut w, &state.sinks);
    if let Some(wal) = &state.wal {
        render_wal(&mut w, wal);
    }
    w.out
}

fn render_wal(w: &mut Writer, m: &WalMetrics) {
    let one = |v: Option<Value>| [(Labels::new(), v)];
    w.family(
        "cdc_health_wal_disk_total_bytes",
        "gauge",
        "Size of the volume holding pg_wal.",
        one(m.disk_total_bytes.map(Value::from)),
    );
    w.family(
        "cdc_health_wal_disk_free_bytes",
        "gauge",
        "Free space on the volume holding pg_wal (what the server may still write).",
        one(m.disk_free_bytes.map(Value::from)),
    );
    w.family(
        "cdc_health_wal_bytes",
        "gauge",
        "Size of pg_wal (its segment files).",
        one(Some(m.wal_bytes.into())),
    );
    w.family(
        "cdc_health_wal_archive_pending_segments",
        "gauge",
        "WAL segments waiting for the archiver (0 when archiving is off).",
        one(Some(m.archive_pending_segments.into())),
    );
    w.family(
        "cdc_health_wal_disk_fill_rate_bytes_per_second",
        "gauge",
        "How fast the volume holding pg_wal fills, over cdc_health.forecast_window (negative while it empties).",
        one(m.fill_rate_bytes_per_sec.map(Value::from)),
    );
    w.family(
        "cdc_health_wal_disk_eta_seconds",
        "gauge",
        "Seconds until the volume holding pg_wal is full at a steady fill; absent otherwise.",
        one(m.eta_to_full_secs.map(Value::from)),
    );
    w.family(
        "cdc_health_server_finding",
        "gauge",
        "1 for each open finding on the server (wal_disk_full_soon, archive_failing).",
        m.findings.iter().map(|(subject, code, severity)| {
            let l = vec![
                ("subject", *subject),
                ("finding", *code),
                ("severity", severity.as_str()),
            ];
            (l, Some(1_i64))
        }),
    );
}

fn render_sinks(w: &mut Writer, sinks: &[SinkMetrics]) {
    let per_sink = |w: &mut Writer,
                    name: &str,
                    kind: &str,
                    help: &str,
                    f: &dyn Fn(&SinkMetrics) -> Option<Value>| {
        w.family(
            name,
            kind,
            help,
            sinks.iter().map(|s| (sink_labels(s), f(s))),
        );
    };
    per_sink(
        w,
        "cdc_health_sink_pending",
        "gauge",
        "Alert transitions waiting to be delivered to the sink.",
        &|s| Some(s.pending.into()),
    );
    per_sink(
        w,
        "cdc_health_sink_delivered_total",
        "counter",
        "Alert transitions the sink accepted.",
        &|s| Some(s.delivered.into()),
    );
    per_sink(w, "cdc_health_sink_failed_total", "counter", "Alert transitions the sink refused for good or that were given up after cdc_health.delivery_max_age.", &|s| Some(s.failed.into()));
    per_sink(w, "cdc_health_sink_dropped_total", "counter", "Alert transitions dropped unsent because more than cdc_health.delivery_max_pending waited.", &|s| Some(s.dropped.into()));
    w.family(
        "cdc_health_sink_finding",
        "gauge",
        "1 while the sink has a finding (delivery_failed).",
        sinks.iter().filter(|s| s.failing).map(|s| {
            let mut l = sink_labels(s);
            l.push(("finding", "delivery_failed"));
            l.push(("severity", "critical"));
            (l, Some(1_i64))
        }),
    );
    per_sink(
        w,
        "cdc_health_sink_last_delivery_timestamp_seconds",
        "gauge",
        "When the sink last accepted a transition (Unix time).",
        &|s| s.last_delivered_at.map(Value::from),
    );
}

/// The worker's counters.
pub fn render_worker(m: &WorkerMetrics) -> String {
    let mut w = Writer { out: String::new() };
    let one = |v: Option<Value>| [(Labels::new(), v)];
    w.family(
        "cdc_health_worker_up",
        "gauge",
        "1 while the background worker runs and monitors slots.",
        one(Some(m.up.into())),
    );
    w.family(
        "cdc_health_worker_passes_total",
        "counter",
        "Monitoring passes completed since the worker started.",
        one(m.passes.map(Value::from)),
    );
    w.family(
        "cdc_health_worker_pass_errors_total",
        "counter",
        "Monitoring passes that failed (see the server log).",
        one(m.pass_errors.map(Value::from)),
    );
    w.family(
        "cdc_health_worker_skipped_passes_total",
        "counter",
        "Passes skipped because a check_now() pass was running.",
        one(m.skipped_passes.map(Value::from)),
    );
    w.family(
        "cdc_health_worker_pass_duration_seconds",
        "gauge",
        "How long the last completed pass took.",
        one(m.pass_duration_secs.map(Value::from)),
    );
    w.family(
        "cdc_health_worker_last_pass_timestamp_seconds",
        "gauge",
        "When the last pass completed (Unix time); the other figures are as of then.",
        one(m.last_pass_at.map(Value::from)),
    );
    if m.truncated {
        w.family(
            "cdc_health_metrics_truncated",
            "gauge",
            "1 when the state did not fit in the endpoint's buffer: raise cdc_health.max_tracked_slots.",
            one(Some(Value::Int(1))),
        );
    }
    w.out
}

/// Cuts `text` to at most `max` bytes at a line end, so no sample is served half-written.
pub fn cut_at_line(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    match text.as_bytes()[..max].iter().rposition(|&b| b == b'\n') {
        Some(end) => &text[..=end],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(name: &str) -> SlotMetrics {
        SlotMetrics {
            slot_name: name.into(),
            slot_type: "logical".into(),
            database: Some("postgres".into()),
            plugin: Some("pgoutput".into()),
            wal_status: Some("reserved".into()),
            active: true,
            status: Some(Severity::Ok),
            ..Default::default()
        }
    }

    #[test]
    fn consumer_sessions_errors_and_reply_age_are_exposed() {
        let mut s = slot("looping");
        s.consumer_sessions = Some(4);
        s.consumer_errors = vec![("42704".into(), 3), ("timeout".into(), 1)];
        s.consumer_reply_age_secs = Some(2.5);
        let text = render_state(&State {
            slots: vec![s],
            ..Default::default()
        });
        let labels = r#"slot_name="looping",slot_type="logical",database="postgres""#;
        for line in [
            format!("cdc_health_slot_consumer_sessions{{{labels}}} 4"),
            format!("cdc_health_slot_consumer_errors{{{labels},sqlstate=\"42704\"}} 3"),
            format!("cdc_health_slot_consumer_errors{{{labels},sqlstate=\"timeout\"}} 1"),
            format!("cdc_health_slot_consumer_reply_age_seconds{{{labels}}} 2.5"),
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }

    #[test]
    fn the_wal_volume_and_server_findings_are_exposed() {
        let text = render_state(&State {
            wal: Some(WalMetrics {
                disk_total_bytes: Some(1 << 30),
                disk_free_bytes: Some(1 << 28),
                wal_bytes: 5 << 24,
                archive_pending_segments: 2,
                fill_rate_bytes_per_sec: Some(1.5e6),
                eta_to_full_secs: None,
                findings: vec![("server:wal", "wal_disk_full_soon", Severity::Critical)],
            }),
            ..Default::default()
        });
        for line in [
            "cdc_health_wal_disk_total_bytes 1073741824",
            "cdc_health_wal_disk_free_bytes 268435456",
            "cdc_health_wal_bytes 83886080",
            "cdc_health_wal_archive_pending_segments 2",
            "cdc_health_wal_disk_fill_rate_bytes_per_second 1500000",
            r#"cdc_health_server_finding{subject="server:wal",finding="wal_disk_full_soon",severity="critical"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(
            !text.contains("cdc_health_wal_disk_eta_seconds"),
            "no ETA, no sample"
        );
        let none = render_state(&State::default());
        assert!(!none.contains("cdc_health_wal_"), "{none}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("two\nlines"), "two\\nlines");
        let mut m = MirrorMetrics {
            name: "orders \"eu\"\nnew".into(),
            kind: "mirror".into(),
            status: Some(Severity::Critical),
            ..Default::default()
        };
        m.findings.push("mirror_stale".into());
        let text = render_state(&State {
            mirrors: vec![m],
            ..Default::default()
        });
        assert!(
            text.contains(
                r#"cdc_health_mirror_status{mirror="orders \"eu\"\nnew",kind="mirror"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"finding="mirror_stale",severity="critical"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn sinks_have_counters_and_a_finding_only_while_failing() {
        let sink = |name: &str, failing| SinkMetrics {
            name: name.into(),
            kind: "webhook".into(),
            pending: 3,
            delivered: 10,
            failed: 1,
            dropped: 0,
            failing,
            last_delivered_at: None,
        };
        let text = render_state(&State {
            sinks: vec![sink("ok", false), sink("bad", true)],
            ..Default::default()
        });
        assert!(
            text.contains("# TYPE cdc_health_sink_delivered_total counter"),
            "{text}"
        );
        assert!(
            text.contains(r#"cdc_health_sink_pending{sink="ok",kind="webhook"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"cdc_health_sink_finding{sink="bad",kind="webhook",finding="delivery_failed",severity="critical"} 1"#
            ),
            "{text}"
        );
        assert!(
            !text.contains(r#"cdc_health_sink_finding{sink="ok""#),
            "{text}"
        );
        assert!(
            !text.contains("cdc_health_sink_last_delivery_timestamp_seconds{"),
            "{text}"
        );
    }

    #[test]
    fn missing_figures_are_left_out_not_nan() {
        let mut s = slot("a");
        s.eta_to_lost_secs = Some(f64::NAN);
        s.growth_bytes_per_sec = Some(f64::INFINITY);
        let text = render_state(&State {
            slots: vec![s],
            ..Default::default()
        });
        assert!(
            !text.contains(" NaN") && !text.contains(" inf") && !text.contains("Inf"),
            "{text}"
        );
        assert!(
            !text.contains("cdc_health_slot_eta_to_lost_seconds"),
            "{text}"
        );
        assert!(
            !text.contains("cdc_health_wal_budget_bytes"),
            "no budget: {text}"
        );
        assert!(
            !text.contains("cdc_health_slot_finding"),
            "no findings: {text}"
        );
    }

    #[test]
    fn each_family_has_help_and_type_once_before_its_samples() {
        let mut lost = slot("lost");
        lost.status = Some(Severity::Critical);
        lost.findings = vec![("lost", Severity::Critical)];
        lost.wal_status = Some("lost".into());
        lost.active = false;
        let mut phys = slot("phys");
        phys.slot_type = "physical".into();
        phys.database = None;
        phys.retained_wal_bytes = Some(16 << 20);
        let text = render_state(&State {
            slots: vec![lost, phys],
            wal_budget_bytes: Some(128 << 20),
            alerts_open_critical: 1,
            ..Default::default()
        });
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(seen.insert(name.clone()), "{name} typed twice");
                current = name;
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(name, current, "sample outside its family: {line}");
            }
        }
        assert!(text.contains(
            "cdc_health_slot_finding{slot_name=\"lost\",slot_type=\"logical\",database=\"postgres\",finding=\"lost\",severity=\"critical\"} 1"
        ));
        assert!(text.contains("cdc_health_slot_retained_wal_bytes{slot_name=\"phys\",slot_type=\"physical\"} 16777216"));
        assert!(text.contains("cdc_health_wal_budget_bytes 134217728"));
        assert!(text.contains("cdc_health_alerts_open{severity=\"critical\"} 1"));
        assert!(text.contains("cdc_health_slot_status{slot_name=\"lost\",slot_type=\"logical\",database=\"postgres\"} 2"));
    }

    #[test]
    fn worker_without_shared_memory_is_down_with_no_counters() {
        let text = render_worker(&WorkerMetrics::default());
        assert_eq!(
            text,
            "# HELP cdc_health_worker_up 1 while the background worker runs and monitors slots.\n\
             # TYPE cdc_health_worker_up gauge\ncdc_health_worker_up 0\n"
        );
        let text = render_worker(&WorkerMetrics {
            up: true,
            passes: Some(7),
            pass_errors: Some(0),
            skipped_passes: Some(0),
            pass_duration_secs: Some(0.25),
            last_pass_at: Some(1.7e9),
            truncated: true,
        });
        assert!(text.contains("cdc_health_worker_passes_total 7\n"));
        assert!(text.contains("# TYPE cdc_health_worker_passes_total counter"));
        assert!(text.contains("cdc_health_worker_pass_duration_seconds 0.25\n"));
        assert!(text.contains("cdc_health_worker_last_pass_timestamp_seconds 1700000000\n"));
        assert!(text.contains("cdc_health_metrics_truncated 1\n"));
    }

    #[test]
    fn every_finding_has_an_alert_rule() {
        let rules = include_str!("../../contrib/prometheus/cdc_health.rules.yml");
        for code in crate::FindingCode::ALL {
            let expr = format!("finding=\"{}\"}} == 1", code.as_str());
            assert_eq!(
                rules.matches(&expr).count(),
                1,
                "{code:?}: one rule on {expr}"
            );
        }
    }

    #[test]
    fn cuts_only_at_line_ends() {
        assert_eq!(cut_at_line("a 1\nb 2\n", 100), "a 1\nb 2\n");
        assert_eq!(cut_at_line("a 1\nb 2\n", 6), "a 1\n");
        assert_eq!(cut_at_line("a 1\nb 2\n", 2), "");
    }

    #[test]
    fn large_counters_stay_numbers() {
        let text = render_worker(&WorkerMetrics {
            passes: Some(u64::MAX),
            ..Default::default()
        });
        assert!(
            text.contains("cdc_health_worker_passes_total 18446744073709552000\n"),
            "{text}"
        );
    }
}
