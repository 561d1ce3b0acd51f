//! Assessment of one replication slot from a single observation: the findings that need
//! no history (lost, unreserved, extended, inactive, retained_wal_high, xmin_horizon_old).

use std::cmp::Ordering;

use crate::finding::{sort_findings, Finding, FindingCode, Severity};
use crate::json::Json;
use crate::lsn::{bytes_between, format_lsn};
use crate::observation::{ServerObservation, SlotObservation, SlotType, WalStatus};
use crate::remediation::remedy_for;
use crate::units::{pretty_bytes, pretty_duration};

/// The limits the rules compare against (the `cdc_health.*` settings).
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// `retained_wal_high` warning above this; critical above 4 times this.
    pub retained_wal_warning_bytes: i64,
    /// `retained_wal_high` warning when `safe_wal_size` is below this share of the budget.
    pub safe_wal_warning_fraction: f64,
    /// `inactive` warning from this many seconds without a consumer.
    pub inactive_warning_secs: f64,
    /// `inactive` critical from this many seconds.
    pub inactive_critical_secs: f64,
    /// `xmin_horizon_old` warning above this age (critical above `autovacuum_freeze_max_age`).
    pub xmin_age_warning: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            retained_wal_warning_bytes: 2 << 30,
            safe_wal_warning_fraction: 0.25,
            inactive_warning_secs: 300.0,
            inactive_critical_secs: 3600.0,
            xmin_age_warning: 100_000_000,
        }
    }
}

/// The verdict on one slot.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotAssessment {
    pub slot_name: String,
    pub status: Severity,
    /// Worst first.
    pub findings: Vec<Finding>,
    /// Current WAL position minus `restart_lsn`; `None` once lost or never reserved.
    pub retained_wal_bytes: Option<i64>,
    /// Current WAL position minus `confirmed_flush_lsn` (logical slots).
    pub flush_lag_bytes: Option<i64>,
    /// `safe_wal_size` of a slot that holds WAL; `None` otherwise (the server reports a
    /// meaningless figure for a slot that never reserved any).
    pub safe_wal_size: Option<i64>,
}

impl SlotAssessment {
    pub fn codes(&self) -> Vec<&'static str> {
        self.findings.iter().map(|f| f.code.as_str()).collect()
    }

    pub fn finding(&self, code: FindingCode) -> Option<&Finding> {
        self.findings.iter().find(|f| f.code == code)
    }

    /// The remedy for the worst finding; `None` when the slot is healthy. Built on demand:
    /// the worker assesses every slot each pass and needs a remedy only for what it announces.
    pub fn remediation(&self, slot: &SlotObservation) -> Option<String> {
        self.findings.first().map(|f| remedy_for(f, slot))
    }

    /// Adds findings that need history (from the background worker's samples) and re-derives
    /// the status.
    pub fn add_findings(&mut self, extra: Vec<Finding>) {
        if extra.is_empty() {
            return;
        }
        self.findings.extend(extra);
        sort_findings(&mut self.findings);
        self.status = self.findings[0].severity;
    }

    /// Facts behind the verdict, for the `detail` jsonb column.
    pub fn detail(&self, slot: &SlotObservation, server: &ServerObservation) -> Json {
        let lsn = |l: Option<u64>| Json::from(l.map(format_lsn));
        // Summaries and remedies are in their own columns; here each finding's severity.
        let findings = self
            .findings
            .iter()
            .map(|f| {
                Json::object([
                    ("code", f.code.as_str().into()),
                    ("severity", f.severity.as_str().into()),
                ])
            })
            .collect();
        let decoding = slot.decoding.map_or(Json::Null, |d| {
            Json::object([
                ("spill_txns", d.spill_txns.into()),
                ("spill_bytes", d.spill_bytes.into()),
                ("stream_bytes", d.stream_bytes.into()),
                ("total_txns", d.total_txns.into()),
                ("total_bytes", d.total_bytes.into()),
            ])
        });
        Json::object([
            ("findings", Json::Array(findings)),
            ("current_lsn", lsn(server.current_lsn)),
            ("restart_lsn", lsn(slot.restart_lsn)),
            ("confirmed_flush_lsn", lsn(slot.confirmed_flush_lsn)),
            ("plugin", slot.plugin.as_deref().into()),
            ("temporary", slot.temporary.into()),
            ("active_pid", slot.active_pid.into()),
            ("xmin_age", slot.xmin_age.into()),
            ("catalog_xmin_age", slot.catalog_xmin_age.into()),
            (
                "invalidation_reason",
                slot.invalidation_reason.as_deref().into(),
            ),
            (
                "inactive_duration_known",
                (slot.inactive_for_secs.is_some() || slot.active).into(),
            ),
            ("in_recovery", server.in_recovery.into()),
            ("decoding", decoding),
        ])
    }
}

/// Worst first: status, then retained WAL (most first, unknown last), then name.
pub fn worst_first(a: &SlotAssessment, b: &SlotAssessment) -> Ordering {
    b.status
        .cmp(&a.status)
        .then_with(|| {
            b.retained_wal_bytes
                .unwrap_or(-1)
                .cmp(&a.retained_wal_bytes.unwrap_or(-1))
        })
        .then_with(|| a.slot_name.cmp(&b.slot_name))
}

/// Applies every single-observation rule to `slot`.
pub fn assess_slot(
    slot: &SlotObservation,
    server: &ServerObservation,
    limits: &Thresholds,
) -> SlotAssessment {
    let lost = slot.is_lost();
    let distance = |pos: Option<u64>| match (server.current_lsn, pos) {
        (Some(current), Some(pos)) => Some(bytes_between(current, pos)),
        _ => None,
    };
    let retained = if lost {
        None
    } else {
        distance(slot.restart_lsn)
    };
    let safe_wal_size = slot.safe_wal_size.filter(|_| slot.holds_wal());
    let flush_lag = match slot.slot_type {
        SlotType::Logical if !lost => distance(slot.confirmed_flush_lsn),
        _ => None,
    };

    let mut findings = Vec::new();
    if lost {
        findings.push(lost_finding(slot));
    } else {
        findings.extend(wal_status_finding(slot));
        findings.extend(inactive_finding(slot, limits));
        findings.extend(retained_wal_finding(
            server,
            retained,
            safe_wal_size,
            limits,
        ));
    }
    findings.extend(xmin_finding(slot, server, limits));
    sort_findings(&mut findings);

    let status = findings.first().map_or(Severity::Ok, |f| f.severity);
    SlotAssessment {
        slot_name: slot.slot_name.clone(),
        status,
        findings,
        retained_wal_bytes: retained,
        flush_lag_bytes: flush_lag,
        safe_wal_size,
    }
}

fn lost_finding(slot: &SlotObservation) -> Finding {
    let why = match &slot.invalidation_reason {
        Some(reason) => format!("invalidated by the server ({reason})"),
        None => "invalidated: the WAL it needed was removed (wal_status lost)".to_string(),
    };
    Finding::new(FindingCode::Lost, Severity::Critical, format!("slot {why}"))
}

fn wal_status_finding(slot: &SlotObservation) -> Option<Finding> {
    match slot.wal_status? {
        WalStatus::Unreserved => Some(Finding::new(
            FindingCode::Unreserved,
            Severity::Critical,
            "WAL the slot needs is past max_slot_wal_keep_size: it will be lost at the next checkpoint",
        )),
        WalStatus::Extended => Some(Finding::new(
            FindingCode::Extended,
            Severity::Warning,
            "the slot keeps WAL beyond max_wal_size",
        )),
        WalStatus::Reserved | WalStatus::Lost => None,
    }
}

fn inactive_finding(slot: &SlotObservation, limits: &Thresholds) -> Option<Finding> {
    if slot.active {
        return None;
    }
    let Some(secs) = slot.inactive_for_secs else {
        return Some(Finding::new(
            FindingCode::Inactive,
            Severity::Warning,
            "no consumer connected (for how long is unknown until the background worker has watched the slot)",
        ));
    };
    let severity = if secs >= limits.inactive_critical_secs {
        Severity::Critical
    } else if secs >= limits.inactive_warning_secs {
        Severity::Warning
    } else {
        return None;
    };
    Some(Finding::new(
        FindingCode::Inactive,
        severity,
        format!("no consumer connected for {}", pretty_duration(secs)),
    ))
}

fn retained_wal_finding(
    server: &ServerObservation,
    retained: Option<i64>,
    safe_wal_size: Option<i64>,
    limits: &Thresholds,
) -> Option<Finding> {
    let mut severity = Severity::Ok;
    let mut reasons = Vec::new();
    let warn = limits.retained_wal_warning_bytes;
    if let Some(bytes) = retained {
        let crit = warn.saturating_mul(4);
        if bytes > crit {
            severity = Severity::Critical;
            reasons.push(format!(
                "retains {} of WAL, more than 4 times cdc_health.retained_wal_warning ({})",
                pretty_bytes(bytes),
                pretty_bytes(warn)
            ));
        } else if bytes > warn {
            severity = Severity::Warning;
            reasons.push(format!(
                "retains {} of WAL, above cdc_health.retained_wal_warning ({})",
                pretty_bytes(bytes),
                pretty_bytes(warn)
            ));
        }
    }
    if let (Some(budget), Some(safe)) = (server.wal_budget_bytes, safe_wal_size) {
        if budget > 0 && (safe as f64) < limits.safe_wal_warning_fraction * budget as f64 {
            severity = severity.max(Severity::Warning);
            reasons.push(format!(
                "only {} of the {} max_slot_wal_keep_size budget left",
                pretty_bytes(safe.max(0)),
                pretty_bytes(budget)
            ));
        }
    }
    (severity > Severity::Ok)
        .then(|| Finding::new(FindingCode::RetainedWalHigh, severity, reasons.join("; ")))
}

fn xmin_finding(
    slot: &SlotObservation,
    server: &ServerObservation,
    limits: &Thresholds,
) -> Option<Finding> {
    let (which, age) = [
        ("xmin", slot.xmin_age),
        ("catalog_xmin", slot.catalog_xmin_age),
    ]
    .into_iter()
    .filter_map(|(which, age)| age.map(|a| (which, a)))
    .max_by_key(|&(_, age)| age)?;
    let severity = if age > server.freeze_max_age {
        Severity::Critical
    } else if age > limits.xmin_age_warning {
        Severity::Warning
    } else {
        return None;
    };
    let beyond = if severity == Severity::Critical {
        format!("past autovacuum_freeze_max_age ({})", server.freeze_max_age)
    } else {
        format!(
            "above cdc_health.xmin_age_warning ({})",
            limits.xmin_age_warning
        )
    };
    Some(Finding::new(
        FindingCode::XminHorizonOld,
        severity,
        format!("the slot's {which} is {age} transactions old, {beyond}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: i64 = 1 << 20;
    const GB: i64 = 1 << 30;

    fn server() -> ServerObservation {
        ServerObservation {
            current_lsn: Some(100 * GB as u64),
            in_recovery: false,
            wal_budget_bytes: None,
            freeze_max_age: 200_000_000,
            idle_timeout_secs: None,
        }
    }

    fn slot_retaining(bytes: i64) -> SlotObservation {
        let mut slot = SlotObservation::logical("s");
        slot.restart_lsn = Some((100 * GB - bytes) as u64);
        slot.confirmed_flush_lsn = slot.restart_lsn;
        slot
    }

    fn assess(slot: &SlotObservation) -> SlotAssessment {
        assess_slot(slot, &server(), &Thresholds::default())
    }

    #[test]
    fn healthy_active_slot_is_ok_with_no_remedy() {
        let slot = slot_retaining(10 * MB);
        let a = assess(&slot);
        assert_eq!(a.status, Severity::Ok);
        assert!(a.findings.is_empty());
        assert_eq!(a.remediation(&slot), None);
        assert_eq!(a.retained_wal_bytes, Some(10 * MB));
        assert_eq!(a.flush_lag_bytes, Some(10 * MB));
    }

    #[test]
    fn every_wal_status_maps_to_its_finding() {
        let cases = [
            (WalStatus::Reserved, vec![], Severity::Ok),
            (WalStatus::Extended, vec!["extended"], Severity::Warning),
            (
                WalStatus::Unreserved,
                vec!["unreserved"],
                Severity::Critical,
            ),
            (WalStatus::Lost, vec!["lost"], Severity::Critical),
        ];
        for (wal_status, codes, status) in cases {
            let mut slot = slot_retaining(MB);
            slot.wal_status = Some(wal_status);
            let a = assess(&slot);
            assert_eq!(a.codes(), codes, "{wal_status:?}");
            assert_eq!(a.status, status, "{wal_status:?}");
        }
    }

    #[test]
    fn never_reserved_slot_has_no_wal_findings() {
        let mut slot = slot_retaining(0);
        slot.slot_type = SlotType::Physical;
        slot.wal_status = None;
        slot.restart_lsn = None;
        slot.confirmed_flush_lsn = None;
        let a = assess(&slot);
        assert!(a.findings.is_empty());
        assert_eq!((a.retained_wal_bytes, a.flush_lag_bytes), (None, None));
    }

    #[test]
    fn never_reserved_slot_ignores_the_servers_safe_wal_size() {
        let mut srv = server();
        srv.wal_budget_bytes = Some(160 * MB);
        let mut slot = slot_retaining(0);
        slot.slot_type = SlotType::Physical;
        slot.wal_status = None;
        slot.restart_lsn = None;
        slot.safe_wal_size = Some(-16 * MB);
        let a = assess_slot(&slot, &srv, &Thresholds::default());
        assert_eq!(a.finding(FindingCode::RetainedWalHigh), None);
        assert_eq!(a.safe_wal_size, None);
    }

    #[test]
    fn lost_slot_is_critical_with_resync_remedy_and_null_sizes() {
        let mut slot = slot_retaining(5 * GB);
        slot.wal_status = Some(WalStatus::Lost);
        slot.restart_lsn = None;
        slot.active = false;
        let a = assess(&slot);
        assert_eq!(
            a.codes(),
            ["lost"],
            "lost supersedes inactive and WAL findings"
        );
        assert_eq!(a.status, Severity::Critical);
        assert_eq!(
            (a.retained_wal_bytes, a.flush_lag_bytes, a.safe_wal_size),
            (None, None, None)
        );
        let remedy = a.remediation(&slot).unwrap();
        assert!(remedy.contains("pg_drop_replication_slot('s')") && remedy.contains("resync"));
    }

    #[test]
    fn any_invalidation_reason_means_lost() {
        let mut slot = slot_retaining(MB);
        slot.invalidation_reason = Some("rows_removed".into());
        let a = assess(&slot);
        assert_eq!(a.codes(), ["lost"]);
        assert!(a.findings[0].summary.contains("rows_removed"));
    }

    #[test]
    fn lost_slot_still_reports_an_old_xmin() {
        let mut slot = slot_retaining(MB);
        slot.wal_status = Some(WalStatus::Lost);
        slot.xmin_age = Some(150_000_000);
        assert_eq!(assess(&slot).codes(), ["lost", "xmin_horizon_old"]);
    }

    #[test]
    fn inactive_with_unknown_duration_is_a_warning_that_says_so() {
        let mut slot = slot_retaining(MB);
        slot.active = false;
        let a = assess(&slot);
        assert_eq!(a.codes(), ["inactive"]);
        assert_eq!(a.status, Severity::Warning);
        assert!(a.findings[0].summary.contains("unknown"));
        assert!(a
            .remediation(&slot)
            .unwrap()
            .contains("restart the CDC consumer"));
    }

    #[test]
    fn inactive_duration_boundaries() {
        let limits = Thresholds::default();
        let cases = [
            (0.0, None),
            (299.9, None),
            (300.0, Some(Severity::Warning)),
            (3599.0, Some(Severity::Warning)),
            (3600.0, Some(Severity::Critical)),
            (86_400.0, Some(Severity::Critical)),
        ];
        for (secs, expected) in cases {
            let mut slot = slot_retaining(MB);
            slot.active = false;
            slot.inactive_for_secs = Some(secs);
            let a = assess_slot(&slot, &server(), &limits);
            assert_eq!(
                a.finding(FindingCode::Inactive).map(|f| f.severity),
                expected,
                "{secs}"
            );
        }
    }

    #[test]
    fn active_slot_is_never_inactive_whatever_the_duration() {
        let mut slot = slot_retaining(MB);
        slot.inactive_for_secs = Some(1e9);
        assert!(assess(&slot).findings.is_empty());
    }

    #[test]
    fn retained_wal_boundaries() {
        let cases = [
            (2 * GB, None),
            (2 * GB + 1, Some(Severity::Warning)),
            (8 * GB, Some(Severity::Warning)),
            (8 * GB + 1, Some(Severity::Critical)),
        ];
        for (bytes, expected) in cases {
            let a = assess(&slot_retaining(bytes));
            let got = a.finding(FindingCode::RetainedWalHigh).map(|f| f.severity);
            assert_eq!(got, expected, "{bytes}");
            assert_eq!(a.retained_wal_bytes, Some(bytes));
        }
    }

    #[test]
    fn retained_wal_summary_names_size_and_setting() {
        let a = assess(&slot_retaining(3 * GB));
        let summary = &a.finding(FindingCode::RetainedWalHigh).unwrap().summary;
        assert!(
            summary.contains("3 GB") && summary.contains("retained_wal_warning"),
            "{summary}"
        );
    }

    #[test]
    fn safe_wal_size_below_a_quarter_of_the_budget_warns() {
        let mut srv = server();
        srv.wal_budget_bytes = Some(64 * MB);
        let limits = Thresholds::default();
        let cases = [
            (Some(16 * MB), None),
            (Some(16 * MB - 1), Some(Severity::Warning)),
            (Some(0), Some(Severity::Warning)),
            (Some(-5 * MB), Some(Severity::Warning)),
            (None, None),
        ];
        for (safe, expected) in cases {
            let mut slot = slot_retaining(MB);
            slot.safe_wal_size = safe;
            let a = assess_slot(&slot, &srv, &limits);
            let found = a.finding(FindingCode::RetainedWalHigh);
            assert_eq!(found.map(|f| f.severity), expected, "{safe:?}");
            if let Some(f) = found {
                assert!(
                    f.summary.contains("64 MB") && !f.summary.contains("-5"),
                    "{}",
                    f.summary
                );
            }
        }
    }

    #[test]
    fn budget_check_needs_a_budget() {
        let mut slot = slot_retaining(MB);
        slot.safe_wal_size = Some(0);
        assert!(
            assess(&slot).findings.is_empty(),
            "no budget set: nothing to compare against"
        );
    }

    #[test]
    fn budget_and_size_reasons_combine_at_the_worst_severity() {
        let mut srv = server();
        srv.wal_budget_bytes = Some(10 * GB);
        let mut slot = slot_retaining(9 * GB);
        slot.safe_wal_size = Some(GB);
        let a = assess_slot(&slot, &srv, &Thresholds::default());
        let f = a.finding(FindingCode::RetainedWalHigh).unwrap();
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.summary.contains("; only 1 GB"), "{}", f.summary);
    }

    #[test]
    fn xmin_age_boundaries_use_the_older_horizon() {
        let cases = [
            (Some(100_000_000), None, None),
            (Some(100_000_001), None, Some(Severity::Warning)),
            (None, Some(100_000_001), Some(Severity::Warning)),
            (Some(5), Some(200_000_001), Some(Severity::Critical)),
            (None, None, None),
        ];
        for (xmin, catalog, expected) in cases {
            let mut slot = slot_retaining(MB);
            slot.xmin_age = xmin;
            slot.catalog_xmin_age = catalog;
            let a = assess(&slot);
            let found = a.finding(FindingCode::XminHorizonOld);
            assert_eq!(found.map(|f| f.severity), expected, "{xmin:?} {catalog:?}");
            if let (Some(f), Some(c)) = (found, catalog) {
                assert!(f.summary.contains("catalog_xmin") && f.summary.contains(&c.to_string()));
            }
        }
    }

    #[test]
    fn physical_slots_have_no_flush_lag() {
        let mut slot = slot_retaining(MB);
        slot.slot_type = SlotType::Physical;
        assert_eq!(assess(&slot).flush_lag_bytes, None);
    }

    #[test]
    fn unknown_current_position_leaves_sizes_null() {
        let mut srv = server();
        srv.current_lsn = None;
        let a = assess_slot(&slot_retaining(3 * GB), &srv, &Thresholds::default());
        assert_eq!((a.retained_wal_bytes, a.flush_lag_bytes), (None, None));
        assert!(a.findings.is_empty());
    }

    #[test]
    fn slot_ahead_of_replay_position_retains_nothing() {
        let mut slot = slot_retaining(0);
        slot.restart_lsn = Some(200 * GB as u64);
        assert_eq!(assess(&slot).retained_wal_bytes, Some(0));
    }

    #[test]
    fn remedy_comes_from_the_worst_finding() {
        let mut slot = slot_retaining(3 * GB);
        slot.wal_status = Some(WalStatus::Unreserved);
        slot.active = false;
        let a = assess(&slot);
        assert_eq!(a.codes(), ["unreserved", "inactive", "retained_wal_high"]);
        assert!(a.remediation(&slot).unwrap().contains("next checkpoint"));
    }

    #[test]
    fn history_findings_merge_into_status_and_remedy() {
        let slot = slot_retaining(MB);
        let mut a = assess(&slot);
        a.add_findings(vec![]);
        assert_eq!(a.status, Severity::Ok);
        a.add_findings(vec![Finding::new(
            FindingCode::Stalled,
            Severity::Critical,
            "stuck",
        )]);
        assert_eq!((a.status, a.codes()), (Severity::Critical, vec!["stalled"]));
        assert!(a
            .remediation(&slot)
            .unwrap()
            .contains("connected but has not confirmed"));
    }

    #[test]
    fn ordering_is_worst_first_then_retained_then_name() {
        let mk = |name: &str, status, retained| SlotAssessment {
            slot_name: name.into(),
            status,
            findings: vec![],
            retained_wal_bytes: retained,
            flush_lag_bytes: None,
            safe_wal_size: None,
        };
        let mut rows = [
            mk("b", Severity::Ok, Some(5)),
            mk("a", Severity::Ok, Some(5)),
            mk("z", Severity::Warning, None),
            mk("c", Severity::Ok, None),
            mk("d", Severity::Critical, Some(1)),
            mk("e", Severity::Ok, Some(9)),
        ];
        rows.sort_by(worst_first);
        let names: Vec<_> = rows.iter().map(|r| r.slot_name.as_str()).collect();
        assert_eq!(names, ["d", "z", "e", "a", "b", "c"]);
    }

    #[test]
    fn detail_carries_positions_and_findings() {
        let mut slot = slot_retaining(3 * GB);
        slot.active = false;
        let a = assess(&slot);
        let d = serde_json::Value::from(a.detail(&slot, &server()));
        assert_eq!(d["current_lsn"], "19/0");
        assert_eq!(d["restart_lsn"], "18/40000000");
        assert_eq!(d["findings"][0]["code"], "inactive");
        assert_eq!(d["findings"][0]["severity"], "warning");
        assert_eq!(d["inactive_duration_known"], false);
    }

    #[test]
    fn detail_has_every_key_in_its_json_form() {
        let mut slot = slot_retaining(3 * GB);
        slot.active = false;
        slot.active_pid = None;
        slot.catalog_xmin_age = Some(12);
        slot.invalidation_reason = Some("wal_removed".into());
        slot.decoding = Some(crate::observation::DecodingStats {
            spill_txns: 1,
            spill_bytes: 2,
            stream_bytes: 3,
            total_txns: 4,
            total_bytes: 5,
        });
        let a = assess(&slot);
        let d = serde_json::Value::from(a.detail(&slot, &server()));
        let findings: Vec<serde_json::Value> = a
            .findings
            .iter()
            .map(|f| serde_json::json!({"code": f.code, "severity": f.severity}))
            .collect();
        assert_eq!(
            d,
            serde_json::json!({
                "findings": findings,
                "current_lsn": "19/0",
                "restart_lsn": "18/40000000",
                "confirmed_flush_lsn": slot.confirmed_flush_lsn.map(format_lsn),
                "plugin": "pgoutput",
                "temporary": false,
                "active_pid": null,
                "xmin_age": null,
                "catalog_xmin_age": 12,
                "invalidation_reason": "wal_removed",
                "inactive_duration_known": false,
                "in_recovery": false,
                "decoding": {"spill_txns": 1, "spill_bytes": 2, "stream_bytes": 3,
                             "total_txns": 4, "total_bytes": 5},
            })
        );
    }
}
