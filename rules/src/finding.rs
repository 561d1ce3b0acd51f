//! Findings: the stable codes operators alert on, and their severities.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ok" => Some(Self::Ok),
            "warning" => Some(Self::Warning),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

/// Finding codes are part of the SQL contract: never rename one.
/// Declaration order is the tie-break when two findings share a severity (first wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingCode {
    Lost,
    Unreserved,
    CreationBlocked,
    StandbySlotBlocking,
    Stalled,
    /// The consumer's sessions keep ending without confirming anything.
    CrashLoop,
    /// The same server error keeps ending (or refusing) the consumer's sessions.
    ConsumerError,
    BudgetExhaustionSoon,
    IdleTimeoutSoon,
    Inactive,
    LongTransaction,
    DecodingSpill,
    RetainedWalHigh,
    Extended,
    XminHorizonOld,
    FailoverUnready,
    MirrorStale,
    MirrorRowsMismatch,
    ProbeFailed,
    HeartbeatStale,
    /// A sink (alert delivery) failed permanently or gave up retrying.
    DeliveryFailed,
    /// The volume holding `pg_wal` fills soon or is short of space (subject `server:wal`).
    WalDiskFullSoon,
    /// `archive_command` keeps failing, so WAL piles up (subject `server:archiver`).
    ArchiveFailing,
}

impl FindingCode {
    pub const ALL: [FindingCode; 23] = [
        Self::Lost,
        Self::Unreserved,
        Self::CreationBlocked,
        Self::StandbySlotBlocking,
        Self::Stalled,
        Self::CrashLoop,
        Self::ConsumerError,
        Self::BudgetExhaustionSoon,
        Self::IdleTimeoutSoon,
        Self::Inactive,
        Self::LongTransaction,
        Self::DecodingSpill,
        Self::RetainedWalHigh,
        Self::Extended,
        Self::XminHorizonOld,
        Self::FailoverUnready,
        Self::MirrorStale,
        Self::MirrorRowsMismatch,
        Self::ProbeFailed,
        Self::HeartbeatStale,
        Self::DeliveryFailed,
        Self::WalDiskFullSoon,
        Self::ArchiveFailing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lost => "lost",
            Self::Unreserved => "unreserved",
            Self::CreationBlocked => "creation_blocked",
            Self::StandbySlotBlocking => "standby_slot_blocking",
            Self::Stalled => "stalled",
            Self::CrashLoop => "crash_loop",
            Self::ConsumerError => "consumer_error",
            Self::BudgetExhaustionSoon => "budget_exhaustion_soon",
            Self::IdleTimeoutSoon => "idle_timeout_soon",
            Self::Inactive => "inactive",
            Self::LongTransaction => "long_transaction",
            Self::DecodingSpill => "decoding_spill",
            Self::RetainedWalHigh => "retained_wal_high",
            Self::Extended => "extended",
            Self::XminHorizonOld => "xmin_horizon_old",
            Self::FailoverUnready => "failover_unready",
            Self::MirrorStale => "mirror_stale",
            Self::MirrorRowsMismatch => "mirror_rows_mismatch",
            Self::ProbeFailed => "probe_failed",
            Self::HeartbeatStale => "heartbeat_stale",
            Self::DeliveryFailed => "delivery_failed",
            Self::WalDiskFullSoon => "wal_disk_full_soon",
            Self::ArchiveFailing => "archive_failing",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.as_str() == text)
    }
}

/// One thing wrong with a subject, with a one-line summary for humans.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub code: FindingCode,
    pub severity: Severity,
    pub summary: String,
    /// A remedy specific to this case (e.g. naming the blocking pid); when `None`, the code's
    /// general remedy applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
}

impl Finding {
    pub fn new(code: FindingCode, severity: Severity, summary: impl Into<String>) -> Self {
        Self {
            code,
            severity,
            summary: summary.into(),
            remedy: None,
        }
    }

    pub fn with_remedy(mut self, remedy: impl Into<String>) -> Self {
        self.remedy = Some(remedy.into());
        self
    }
}

/// Worst first: higher severity, then the code's declared priority.
pub fn sort_findings(findings: &mut [Finding]) {
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.code.cmp(&b.code)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_lower_snake_case() {
        for code in FindingCode::ALL {
            let text = code.as_str();
            assert_eq!(FindingCode::parse(text), Some(code));
            assert!(
                text.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{text}"
            );
            assert_eq!(serde_json::to_value(code).unwrap(), text);
        }
        assert_eq!(FindingCode::parse("Lost"), None);
    }

    #[test]
    fn severities_order_and_round_trip() {
        assert!(Severity::Critical > Severity::Warning && Severity::Warning > Severity::Ok);
        for s in [Severity::Ok, Severity::Warning, Severity::Critical] {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        assert_eq!(Severity::parse("error"), None);
    }

    #[test]
    fn sorting_puts_critical_first_then_priority() {
        let mut findings = vec![
            Finding::new(FindingCode::Extended, Severity::Warning, ""),
            Finding::new(FindingCode::RetainedWalHigh, Severity::Critical, ""),
            Finding::new(FindingCode::Inactive, Severity::Warning, ""),
            Finding::new(FindingCode::Unreserved, Severity::Critical, ""),
        ];
        sort_findings(&mut findings);
        let codes: Vec<_> = findings.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(
            codes,
            ["unreserved", "retained_wal_high", "inactive", "extended"]
        );
    }
}
