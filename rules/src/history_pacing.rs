//! When a slot gets a row in `cdc_health.slot_history`.
//!
//! A row that repeats the previous one costs WAL and storage and tells nothing. On an idle
//! server the monitor's own inserts move the WAL position by a few kilobytes, so "changed at
//! all" would feed itself: figures count as changed only when they move by a megabyte.

use crate::finding::Severity;
use crate::observation::WalStatus;

/// What a history row said about a slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryMark {
    pub at: f64,
    pub wal_status: Option<WalStatus>,
    pub active: bool,
    pub status: Severity,
    pub restart_lsn: Option<u64>,
    pub confirmed_flush_lsn: Option<u64>,
    pub retained_bytes: Option<i64>,
}

/// Pacing settings (`cdc_health.history_interval`, `cdc_health.history_idle_interval`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    /// Least time between two rows of a slot whose figures move.
    pub interval_secs: f64,
    /// Longest time without a row, even when nothing moved.
    pub idle_interval_secs: f64,
}

/// Movement smaller than this is not news.
pub const SIGNIFICANT_BYTES: u64 = 1 << 20;

fn moved(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.abs_diff(b) >= SIGNIFICANT_BYTES,
        (a, b) => a.is_some() != b.is_some(),
    }
}

/// Is a row due for a slot whose last row said `last` (`None`: none yet)?
/// A change of state (`wal_status`, `active`, status) is due at once; moving figures once
/// per `interval_secs`; unchanged ones once per `idle_interval_secs`.
pub fn row_due(last: Option<&HistoryMark>, now: &HistoryMark, pacing: &Pacing) -> bool {
    let Some(last) = last else {
        return true;
    };
    if last.wal_status != now.wal_status || last.active != now.active || last.status != now.status {
        return true;
    }
    let elapsed = now.at - last.at;
    if elapsed >= pacing.idle_interval_secs.max(pacing.interval_secs) {
        return true;
    }
    let as_u64 = |v: Option<i64>| v.map(|b| b.max(0) as u64);
    elapsed >= pacing.interval_secs
        && (moved(last.restart_lsn, now.restart_lsn)
            || moved(last.confirmed_flush_lsn, now.confirmed_flush_lsn)
            || moved(as_u64(last.retained_bytes), as_u64(now.retained_bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;
    const PACING: Pacing = Pacing {
        interval_secs: 60.0,
        idle_interval_secs: 3600.0,
    };

    fn mark(at: f64) -> HistoryMark {
        HistoryMark {
            at,
            wal_status: Some(WalStatus::Reserved),
            active: true,
            status: Severity::Ok,
            restart_lsn: Some(100 * MB),
            confirmed_flush_lsn: Some(101 * MB),
            retained_bytes: Some(5 * MB as i64),
        }
    }

    #[test]
    fn the_first_row_is_due() {
        assert!(row_due(None, &mark(0.0), &PACING));
    }

    #[test]
    fn an_idle_slot_gets_a_row_per_idle_interval_only() {
        let last = mark(0.0);
        let mut now = mark(61.0);
        // The monitor's own writes move the WAL position a little.
        now.retained_bytes = Some(5 * MB as i64 + 40_000);
        assert!(!row_due(Some(&last), &now, &PACING));
        now.at = 3599.0;
        assert!(!row_due(Some(&last), &now, &PACING));
        now.at = 3600.0;
        assert!(row_due(Some(&last), &now, &PACING));
    }

    #[test]
    fn moving_figures_get_a_row_per_interval() {
        let last = mark(0.0);
        let mut now = mark(30.0);
        now.retained_bytes = Some(50 * MB as i64);
        assert!(
            !row_due(Some(&last), &now, &PACING),
            "not before the interval"
        );
        now.at = 60.0;
        assert!(row_due(Some(&last), &now, &PACING));
        let mut consumer = mark(60.0);
        consumer.confirmed_flush_lsn = Some(103 * MB);
        assert!(row_due(Some(&last), &consumer, &PACING));
        let mut lost = mark(60.0);
        lost.restart_lsn = None;
        lost.retained_bytes = None;
        assert!(row_due(Some(&last), &lost, &PACING));
    }

    #[test]
    fn a_change_of_state_is_due_at_once() {
        let last = mark(0.0);
        for change in [
            |m: &mut HistoryMark| m.active = false,
            |m: &mut HistoryMark| m.wal_status = Some(WalStatus::Extended),
            |m: &mut HistoryMark| m.status = Severity::Warning,
        ] {
            let mut now = mark(1.0);
            change(&mut now);
            assert!(row_due(Some(&last), &now, &PACING));
        }
    }

    #[test]
    fn an_idle_interval_below_the_interval_means_every_interval() {
        let pacing = Pacing {
            interval_secs: 60.0,
            idle_interval_secs: 10.0,
        };
        assert!(!row_due(Some(&mark(0.0)), &mark(30.0), &pacing));
        assert!(row_due(Some(&mark(0.0)), &mark(60.0), &pacing));
    }
}
