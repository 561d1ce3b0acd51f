//! Mirror checks: is a destination fresh, and does it hold as many rows as the source?
//!
//! The glue probes both sides (row count and newest time) and hands the figures here.

use crate::finding::{Finding, FindingCode, Severity};
use crate::units::pretty_duration;

/// What a check compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// Source against target: lag between their newest times, and row drift.
    Mirror,
    /// The heartbeat table against its replica: the true source-to-destination latency.
    Heartbeat,
    /// A read model on its own: age of its newest row.
    Freshness,
}

/// A check's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorCheck {
    pub name: String,
    pub kind: CheckKind,
    pub max_lag_secs: f64,
    /// `None`: row counts are reported but not judged.
    pub max_row_drift: Option<i64>,
}

/// Count and newest time of one side; times are seconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SideFigures {
    pub rows: Option<i64>,
    pub newest: Option<f64>,
    /// Source side of a mirror check: the oldest time at least a second newer than the
    /// target's newest, i.e. the oldest change the target does not have (`None`: none, or
    /// not measured; the gap between the newest times then stands in).
    pub oldest_missing: Option<f64>,
}

/// One probe's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Done {
        source: SideFigures,
        target: SideFigures,
        now: f64,
    },
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct MirrorVerdict {
    pub status: Severity,
    pub findings: Vec<Finding>,
    pub lag_secs: Option<f64>,
    pub row_drift: Option<i64>,
}

/// Lag beyond this many times the limit is critical.
const CRITICAL_FACTOR: f64 = 3.0;

pub fn assess_mirror(check: &MirrorCheck, probe: &Probe) -> MirrorVerdict {
    let (source, target, now) = match probe {
        Probe::Failed { error } => {
            return MirrorVerdict {
                status: Severity::Warning,
                findings: vec![Finding {
                    code: FindingCode::ProbeFailed,
                    severity: Severity::Warning,
                    summary: format!("probe of \"{}\" failed: {error}", check.name),
                    remedy: Some(
                        "Check that the destination is up and reachable, and that the check's \
                         owner can read both relations; the next probe retries."
                            .into(),
                    ),
                }],
                lag_secs: None,
                row_drift: None,
            }
        }
        Probe::Done {
            source,
            target,
            now,
        } => (source, target, *now),
    };
    let lag = match check.kind {
        CheckKind::Freshness => target.newest.map(|t| (now - t).max(0.0)),
        // A mirror is as far behind as the oldest source change it does not have is old: that
        // age keeps growing while the target misses rows, even once the source goes quiet
        // (the gap between the two newest times would freeze).
        CheckKind::Mirror => match (source.newest, target.newest) {
            (Some(s), Some(t)) if s > t => Some(match source.oldest_missing {
                Some(oldest) => (now - oldest).max(0.0),
                // Not measured: the gap between the newest times, a lower bound.
                None => s - t,
            }),
            (Some(_), Some(_)) | (None, _) => Some(0.0),
            (Some(_), None) => None,
        },
        // The heartbeat row is overwritten in place and beats on: the gap between the two
        // beats is the end-to-end latency.
        CheckKind::Heartbeat => match (source.newest, target.newest) {
            (Some(s), Some(t)) => Some((s - t).max(0.0)),
            // Nothing at the source: nothing to be behind on.
            (None, _) => Some(0.0),
            (Some(_), None) => None,
        },
    };
    let mut findings = Vec::new();
    if let Some(f) = staleness(check, lag, target, now) {
        findings.push(f);
    }
    let row_drift = match (check.kind, source.rows, target.rows) {
        (CheckKind::Mirror, Some(s), Some(t)) => Some(s - t),
        _ => None,
    };
    if let (Some(drift), Some(limit)) = (row_drift, check.max_row_drift) {
        if drift.abs() > limit {
            findings.push(Finding {
                code: FindingCode::MirrorRowsMismatch,
                severity: Severity::Warning,
                summary: format!(
                    "\"{}\": the target has {} rows, the source {} ({} {}, allowed {limit})",
                    check.name,
                    target.rows.unwrap_or(0),
                    source.rows.unwrap_or(0),
                    drift.abs(),
                    if drift > 0 { "missing" } else { "extra" },
                ),
                remedy: Some(format!(
                    "Run SELECT * FROM cdc_health.verify_mirror('{}') on an idle moment; if rows \
                     are really missing, resync the table in the CDC tool.",
                    check.name.replace('\'', "''")
                )),
            });
        }
    }
    MirrorVerdict {
        status: findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok),
        findings,
        lag_secs: lag,
        row_drift,
    }
}

fn staleness(
    check: &MirrorCheck,
    lag: Option<f64>,
    target: &SideFigures,
    now: f64,
) -> Option<Finding> {
    let limit = check.max_lag_secs;
    let (severity, how) = match lag {
        Some(l) if l <= limit => return None,
        Some(l) => (
            if l > limit * CRITICAL_FACTOR {
                Severity::Critical
            } else {
                Severity::Warning
            },
            format!(
                "{} behind (limit {})",
                pretty_duration(l),
                pretty_duration(limit)
            ),
        ),
        None => (Severity::Critical, "the target has no rows".to_string()),
    };
    let code = match check.kind {
        CheckKind::Heartbeat => FindingCode::HeartbeatStale,
        _ => FindingCode::MirrorStale,
    };
    let newest = match target.newest {
        Some(t) => format!("; newest target row {} old", pretty_duration(now - t)),
        None => String::new(),
    };
    let remedy = match check.kind {
        CheckKind::Freshness => "Check the job that refreshes this read model (dbt, cron, a \
                                 materialized view refresh) and its logs."
            .to_string(),
        _ => "The slot may look healthy while the writer is broken: check the CDC tool's \
              destination writer and its errors, and whether the table is still in the mirror."
            .to_string(),
    };
    Some(Finding {
        code,
        severity,
        summary: format!("\"{}\" is {how}{newest}", check.name),
        remedy: Some(remedy),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: CheckKind) -> MirrorCheck {
        MirrorCheck {
            name: "fitness".into(),
            kind,
            max_lag_secs: 60.0,
            max_row_drift: Some(0),
        }
    }

    fn side(rows: i64, newest: Option<f64>) -> SideFigures {
        SideFigures {
            rows: Some(rows),
            newest,
            oldest_missing: None,
        }
    }

    #[test]
    fn a_mirror_that_missed_a_burst_goes_stale_after_the_source_goes_quiet() {
        // 50 rows written at 1000..1004 s, the target stopped at 999; the source then quiet.
        let source = SideFigures {
            rows: Some(150),
            newest: Some(1004.0),
            oldest_missing: Some(1000.0),
        };
        let target = side(100, Some(999.0));
        let mut c = check(CheckKind::Mirror);
        c.max_lag_secs = 5.0;
        c.max_row_drift = None;
        let at = |now: f64| {
            assess_mirror(
                &c,
                &Probe::Done {
                    source,
                    target,
                    now,
                },
            )
        };
        assert!(
            at(1004.5).findings.is_empty(),
            "within the limit right after the burst"
        );
        let later = at(1010.0);
        assert_eq!(
            later.lag_secs,
            Some(10.0),
            "the missing changes are 10 s old"
        );
        assert_eq!(later.findings[0].code, FindingCode::MirrorStale);
        assert_eq!(at(1100.0).lag_secs, Some(100.0), "and keep ageing");
    }

    #[test]
    fn a_mirror_that_has_everything_is_not_behind() {
        let source = SideFigures {
            rows: Some(10),
            newest: Some(500.0),
            oldest_missing: None,
        };
        let v = assess_mirror(
            &check(CheckKind::Mirror),
            &Probe::Done {
                source,
                target: side(10, Some(500.0)),
                now: 9000.0,
            },
        );
        assert_eq!(v.lag_secs, Some(0.0));
        assert!(v.findings.is_empty());
    }

    fn done(source: SideFigures, target: SideFigures) -> Probe {
        Probe::Done {
            source,
            target,
            now: 10_000.0,
        }
    }

    fn codes(v: &MirrorVerdict) -> Vec<&'static str> {
        v.findings.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn a_mirror_in_step_is_ok() {
        let v = assess_mirror(
            &check(CheckKind::Mirror),
            &done(side(10, Some(9_990.0)), side(10, Some(9_980.0))),
        );
        assert_eq!(v.status, Severity::Ok);
        assert_eq!(v.lag_secs, Some(10.0));
        assert_eq!(v.row_drift, Some(0));
    }

    #[test]
    fn a_mirror_behind_is_stale_then_critical() {
        let c = check(CheckKind::Mirror);
        let v = assess_mirror(&c, &done(side(10, Some(9_990.0)), side(10, Some(9_900.0))));
        assert_eq!(codes(&v), ["mirror_stale"]);
        assert_eq!(v.status, Severity::Warning);
        assert!(
            v.findings[0].summary.contains("1min 30s behind"),
            "{:?}",
            v.findings
        );
        let v = assess_mirror(&c, &done(side(10, Some(9_990.0)), side(10, Some(9_000.0))));
        assert_eq!(v.status, Severity::Critical);
    }

    #[test]
    fn an_empty_target_of_a_filled_source_is_critical() {
        let v = assess_mirror(
            &check(CheckKind::Mirror),
            &done(side(5, Some(9_990.0)), side(0, None)),
        );
        assert_eq!(v.status, Severity::Critical);
        assert_eq!(codes(&v), ["mirror_stale", "mirror_rows_mismatch"]);
        assert!(v.findings[0].summary.contains("no rows"));
        assert!(v.findings[1].summary.contains("5 missing"));
    }

    #[test]
    fn an_empty_source_is_never_stale() {
        let v = assess_mirror(
            &check(CheckKind::Mirror),
            &done(side(0, None), side(0, None)),
        );
        assert_eq!(v.status, Severity::Ok);
    }

    #[test]
    fn row_drift_within_the_allowance_is_ok() {
        let mut c = check(CheckKind::Mirror);
        c.max_row_drift = Some(3);
        let v = assess_mirror(&c, &done(side(13, Some(1.0)), side(10, Some(1.0))));
        assert_eq!(v.status, Severity::Ok);
        assert_eq!(v.row_drift, Some(3));
        let v = assess_mirror(&c, &done(side(10, Some(1.0)), side(14, Some(1.0))));
        assert_eq!(codes(&v), ["mirror_rows_mismatch"]);
        assert!(v.findings[0].summary.contains("4 extra"));
        c.max_row_drift = None;
        let v = assess_mirror(&c, &done(side(10, Some(1.0)), side(99, Some(1.0))));
        assert_eq!(v.status, Severity::Ok);
        assert_eq!(v.row_drift, Some(-89));
    }

    #[test]
    fn freshness_is_the_age_of_the_newest_row() {
        let c = check(CheckKind::Freshness);
        let fresh = assess_mirror(&c, &done(SideFigures::default(), side(1, Some(9_950.0))));
        assert_eq!(fresh.status, Severity::Ok);
        assert_eq!(fresh.row_drift, None);
        let stale = assess_mirror(&c, &done(SideFigures::default(), side(1, Some(9_800.0))));
        assert_eq!(codes(&stale), ["mirror_stale"]);
        assert!(stale.findings[0]
            .remedy
            .as_deref()
            .unwrap()
            .contains("read model"));
    }

    #[test]
    fn heartbeat_lag_has_its_own_code() {
        let v = assess_mirror(
            &check(CheckKind::Heartbeat),
            &done(side(1, Some(9_999.0)), side(1, Some(9_800.0))),
        );
        assert_eq!(codes(&v), ["heartbeat_stale"]);
    }

    #[test]
    fn a_failed_probe_says_why() {
        let v = assess_mirror(
            &check(CheckKind::Mirror),
            &Probe::Failed {
                error: "connection refused".into(),
            },
        );
        assert_eq!(codes(&v), ["probe_failed"]);
        assert!(v.findings[0].summary.contains("connection refused"));
        assert_eq!(v.lag_secs, None);
    }
}
