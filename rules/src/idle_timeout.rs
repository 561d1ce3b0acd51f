//! PostgreSQL 18's `idle_replication_slot_timeout`: an inactive slot is invalidated
//! (`invalidation_reason = 'idle_timeout'`) at the first checkpoint after it has been idle
//! that long, however little WAL it holds.

use crate::finding::{Finding, FindingCode, Severity};
use crate::observation::{ServerObservation, SlotObservation};
use crate::units::pretty_duration;

/// Seconds until the timeout invalidates `slot` (0 once it is due at the next checkpoint);
/// `None` when no timeout is set or it cannot apply (active, lost, temporary, or for how
/// long it has been inactive is unknown).
pub fn remaining_secs(slot: &SlotObservation, server: &ServerObservation) -> Option<f64> {
    let timeout = server.idle_timeout_secs.filter(|t| *t > 0.0)?;
    if slot.active || slot.is_lost() || slot.temporary || slot.restart_lsn.is_none() {
        return None;
    }
    let idle = slot.inactive_for_secs?;
    Some((timeout - idle).max(0.0))
}

/// `idle_timeout_soon` when the invalidation is closer than the ETA thresholds.
pub fn idle_timeout_finding(
    slot: &SlotObservation,
    server: &ServerObservation,
    eta_warning_secs: f64,
    eta_critical_secs: f64,
) -> Option<Finding> {
    let left = remaining_secs(slot, server)?;
    let severity = if left <= eta_critical_secs {
        Severity::Critical
    } else if left <= eta_warning_secs {
        Severity::Warning
    } else {
        return None;
    };
    let timeout = server.idle_timeout_secs.unwrap_or(0.0);
    let when = if left > 0.0 {
        format!("in {} (then at the next checkpoint)", pretty_duration(left))
    } else {
        "at the next checkpoint".to_string()
    };
    Some(Finding::new(
        FindingCode::IdleTimeoutSoon,
        severity,
        format!(
            "inactive for {}: idle_replication_slot_timeout ({}) invalidates the slot {when}",
            pretty_duration(slot.inactive_for_secs.unwrap_or(0.0)),
            pretty_duration(timeout)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(timeout: Option<f64>) -> ServerObservation {
        ServerObservation {
            current_lsn: Some(1 << 24),
            in_recovery: false,
            wal_budget_bytes: None,
            freeze_max_age: 200_000_000,
            idle_timeout_secs: timeout,
        }
    }

    fn idle(secs: f64) -> SlotObservation {
        let mut s = SlotObservation::logical("cdc");
        s.active = false;
        s.active_pid = None;
        s.inactive_for_secs = Some(secs);
        s
    }

    #[test]
    fn counts_down_to_the_timeout() {
        assert_eq!(remaining_secs(&idle(10.0), &server(Some(30.0))), Some(20.0));
        assert_eq!(remaining_secs(&idle(45.0), &server(Some(30.0))), Some(0.0));
        let f = idle_timeout_finding(&idle(10.0), &server(Some(30.0)), 3600.0, 900.0).unwrap();
        assert_eq!(f.code, FindingCode::IdleTimeoutSoon);
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.summary.contains("in 20s"), "{}", f.summary);
        let f = idle_timeout_finding(&idle(60.0), &server(Some(3600.0)), 3600.0, 900.0).unwrap();
        assert_eq!(f.severity, Severity::Warning);
        assert!(idle_timeout_finding(&idle(60.0), &server(Some(86400.0)), 3600.0, 900.0).is_none());
    }

    #[test]
    fn does_not_apply_without_a_timeout_or_to_slots_it_spares() {
        assert_eq!(remaining_secs(&idle(10.0), &server(None)), None);
        assert_eq!(remaining_secs(&idle(10.0), &server(Some(0.0))), None);
        let mut active = idle(10.0);
        active.active = true;
        assert_eq!(remaining_secs(&active, &server(Some(30.0))), None);
        let mut lost = idle(10.0);
        lost.invalidation_reason = Some("idle_timeout".into());
        assert_eq!(remaining_secs(&lost, &server(Some(30.0))), None);
        let mut unknown = idle(10.0);
        unknown.inactive_for_secs = None;
        assert_eq!(remaining_secs(&unknown, &server(Some(30.0))), None);
        let mut temporary = idle(10.0);
        temporary.temporary = true;
        assert_eq!(remaining_secs(&temporary, &server(Some(30.0))), None);
    }
}
