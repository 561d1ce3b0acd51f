//! How `cdc_health.history_samples` thins out with age.
//!
//! Rows keep full resolution for `history_full_retention`; then each slot's rows of a
//! 15-minute period become one row (min, max and last of the figures, the worst states),
//! and after `history_15min_retention` four of those become one hourly row. Rows where
//! `wal_status` or `active` changed are never rolled away: they are what an incident review
//! looks for. Rows older than `history_retention` go, whatever their resolution.
//!
//! Periods are aligned to the Unix epoch, so a period is the same on every run and a
//! rollup interrupted half way is picked up where it stopped.

use crate::finding::Severity;
use crate::observation::WalStatus;

/// What a stored row is. Stored as `smallint`, so the numbers are part of the on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A full-resolution row: rolled up when it is older than `history_full_retention`.
    Sample = 0,
    /// A full-resolution row where `wal_status` or `active` changed (or a slot's first): kept.
    Transition = 1,
    /// One row per slot per 15 minutes.
    Quarter = 2,
    /// One row per slot per hour.
    Hour = 3,
}

impl Kind {
    pub fn code(self) -> i16 {
        self as i16
    }

    /// The `resolution` column of `cdc_health.slot_history`.
    pub fn resolution(self) -> &'static str {
        match self {
            Self::Sample | Self::Transition => "full",
            Self::Quarter => "15min",
            Self::Hour => "1h",
        }
    }
}

/// `wal_status` as stored: larger is worse, so a rollup keeps the worst with `max()`.
pub fn wal_status_code(status: Option<WalStatus>) -> Option<i16> {
    status.map(|s| match s {
        WalStatus::Reserved => 0,
        WalStatus::Extended => 1,
        WalStatus::Unreserved => 2,
        WalStatus::Lost => 3,
    })
}

/// The slot's status as stored: larger is worse.
pub fn status_code(status: Severity) -> i16 {
    match status {
        Severity::Ok => 0,
        Severity::Warning => 1,
        Severity::Critical => 2,
    }
}

/// One step of thinning: rows of `from` kinds in a period of `width_secs` become one row of
/// kind `into`, once the period ended `after_secs` ago; rows of the `delete` kinds go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub into: Kind,
    pub from: &'static [Kind],
    pub delete: Kind,
    pub width_secs: f64,
    pub after_secs: f64,
}

pub const QUARTER_SECS: f64 = 900.0;
pub const HOUR_SECS: f64 = 3600.0;

/// Retention settings, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retention {
    /// `cdc_health.history_full_retention`.
    pub full_secs: f64,
    /// `cdc_health.history_15min_retention`.
    pub quarter_secs: f64,
    /// `cdc_health.history_retention`: nothing older is kept.
    pub total_secs: f64,
}

impl Retention {
    /// The two rollup steps, finest first. A coarser resolution never starts before a finer
    /// one ends: a `history_15min_retention` shorter than `history_full_retention` counts as
    /// equal to it (no 15-minute rows, straight to hourly ones).
    pub fn steps(&self) -> [Step; 2] {
        let full = self.full_secs.max(0.0);
        [
            Step {
                into: Kind::Quarter,
                from: &[Kind::Sample, Kind::Transition],
                delete: Kind::Sample,
                width_secs: QUARTER_SECS,
                after_secs: full,
            },
            Step {
                into: Kind::Hour,
                from: &[Kind::Quarter],
                delete: Kind::Quarter,
                width_secs: HOUR_SECS,
                after_secs: self.quarter_secs.max(full),
            },
        ]
    }
}

/// Start of the period `at` falls in.
pub fn period_start(at: f64, width_secs: f64) -> f64 {
    (at / width_secs).floor() * width_secs
}

/// The latest end a period of `step` may have now: it ended `after_secs` ago, and (for a
/// coarser step) the finer step has rolled it, so its rows are all there.
pub fn horizon(step: &Step, now: f64, finer_rolled_until: Option<f64>) -> f64 {
    let own = period_start(now - step.after_secs, step.width_secs);
    finer_rolled_until.map_or(own, |f| own.min(period_start(f, step.width_secs)))
}

/// Is there a period to look at, without reading the table?
pub fn due(step: &Step, rolled_until: f64, horizon: f64) -> bool {
    period_start(rolled_until, step.width_secs) + step.width_secs <= horizon
}

/// What a step does next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    /// Roll the rows of `[start, end)`, then record `end`.
    Roll { start: f64, end: f64 },
    /// Nothing to roll before `rolled_until` (record it when it moved).
    Idle { rolled_until: f64 },
}

/// The next step of rolling, given where it stopped, the time of the first row at or after
/// that and before the horizon (`None`: no such row) and the horizon. Empty periods are skipped in one go, so a
/// backlog with gaps costs a step per period that has rows.
pub fn plan(step: &Step, rolled_until: f64, next_row: Option<f64>, horizon: f64) -> Plan {
    let from = period_start(rolled_until, step.width_secs);
    let Some(row) = next_row else {
        return Plan::Idle {
            rolled_until: from.max(horizon),
        };
    };
    let start = period_start(row.max(from), step.width_secs);
    let end = start + step.width_secs;
    if end <= horizon {
        Plan::Roll { start, end }
    } else {
        // No row of the step's kinds lies between `from` and `start`, nor will one: rows
        // are written at the present, and finer steps write only past their own record.
        Plan::Idle {
            rolled_until: start.max(from),
        }
    }
}

/// Where a step starts when it has no record of a previous run: at the period of the oldest
/// row it would roll, or (an empty table) at the newest period that is already old enough,
/// so a new installation never scans for work that cannot exist.
pub fn first_rolled_until(step: &Step, oldest_row: Option<f64>, now: f64) -> f64 {
    match oldest_row {
        Some(at) => period_start(at, step.width_secs),
        None => period_start(now - step.after_secs, step.width_secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: f64 = 86_400.0;
    const DEFAULTS: Retention = Retention {
        full_secs: DAY,
        quarter_secs: 3.0 * DAY,
        total_secs: 14.0 * DAY,
    };

    #[test]
    fn kinds_have_stable_codes_and_resolutions() {
        assert_eq!(
            [Kind::Sample, Kind::Transition, Kind::Quarter, Kind::Hour].map(Kind::code),
            [0, 1, 2, 3]
        );
        assert_eq!(Kind::Transition.resolution(), "full");
        assert_eq!(Kind::Quarter.resolution(), "15min");
        assert_eq!(Kind::Hour.resolution(), "1h");
    }

    #[test]
    fn worse_states_have_larger_codes() {
        let walk = [
            WalStatus::Reserved,
            WalStatus::Extended,
            WalStatus::Unreserved,
            WalStatus::Lost,
        ]
        .map(|w| wal_status_code(Some(w)).unwrap());
        assert!(walk.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(wal_status_code(None), None);
        assert!(status_code(Severity::Ok) < status_code(Severity::Warning));
        assert!(status_code(Severity::Warning) < status_code(Severity::Critical));
    }

    #[test]
    fn a_quarter_is_rolled_once_it_ended_a_full_retention_ago() {
        let quarter = DEFAULTS.steps()[0];
        let start = 1_000_000.0 * QUARTER_SECS;
        // The period [start, start + 15 min) ends at start + 900.
        let early = horizon(&quarter, start + 900.0 + DAY - 1.0, None);
        assert!(!due(&quarter, start, early));
        assert_eq!(
            plan(&quarter, start, Some(start + 10.0), early),
            Plan::Idle {
                rolled_until: start
            }
        );
        let late = horizon(&quarter, start + 900.0 + DAY, None);
        assert!(due(&quarter, start, late));
        assert_eq!(
            plan(&quarter, start, Some(start + 10.0), late),
            Plan::Roll {
                start,
                end: start + 900.0
            }
        );
    }

    #[test]
    fn an_unaligned_record_is_taken_to_its_period() {
        let hour = DEFAULTS.steps()[1];
        let start = 500_000.0 * HOUR_SECS;
        let h = horizon(&hour, start + 10.0 * DAY, None);
        assert_eq!(
            plan(&hour, start + 1234.5, Some(start + 1300.0), h),
            Plan::Roll {
                start,
                end: start + HOUR_SECS
            }
        );
    }

    #[test]
    fn empty_periods_are_skipped_in_one_go() {
        let quarter = DEFAULTS.steps()[0];
        let now = 3_000_000.0 * QUARTER_SECS;
        let h = horizon(&quarter, now, None);
        let from = now - 5.0 * DAY;
        let row = now - 2.0 * DAY + 100.0;
        assert_eq!(
            plan(&quarter, from, Some(row), h),
            Plan::Roll {
                start: period_start(row, QUARTER_SECS),
                end: period_start(row, QUARTER_SECS) + QUARTER_SECS
            }
        );
        // No rows at all: straight to the horizon.
        assert_eq!(
            plan(&quarter, from, None, h),
            Plan::Idle { rolled_until: h }
        );
        // The next row is too young: up to its period, not beyond.
        let young = now - 100.0;
        assert_eq!(
            plan(&quarter, from, Some(young), h),
            Plan::Idle {
                rolled_until: period_start(young, QUARTER_SECS)
            }
        );
    }

    #[test]
    fn hours_wait_for_their_quarters() {
        let [quarter, hour] = DEFAULTS.steps();
        let now = 4_000_000.0 * HOUR_SECS;
        // The quarter step is still 5 days back (a backlog after an upgrade): hours may not
        // pass it, or they would find no rows and skip periods that get rows later.
        let quarters_at = now - 5.0 * DAY + 1800.0;
        let h = horizon(&hour, now, Some(quarters_at));
        assert_eq!(h, period_start(quarters_at, HOUR_SECS));
        let from = now - 6.0 * DAY;
        assert!(due(&hour, from, h));
        assert_eq!(
            plan(&hour, from, Some(quarters_at - 10.0), h),
            Plan::Idle {
                rolled_until: period_start(quarters_at, HOUR_SECS)
            }
        );
        assert!(horizon(&quarter, now, None) > h);
    }

    #[test]
    fn hourly_rows_start_after_the_15min_retention() {
        let [quarter, hour] = DEFAULTS.steps();
        assert_eq!(quarter.after_secs, DAY);
        assert_eq!(hour.after_secs, 3.0 * DAY);
        assert_eq!(hour.from, &[Kind::Quarter]);
        assert_eq!(quarter.delete, Kind::Sample);
        assert!(!quarter.from.contains(&Kind::Quarter));
    }

    #[test]
    fn a_15min_retention_below_the_full_one_counts_as_equal() {
        let r = Retention {
            full_secs: 2.0 * DAY,
            quarter_secs: DAY,
            total_secs: 14.0 * DAY,
        };
        assert_eq!(r.steps()[1].after_secs, 2.0 * DAY);
    }

    #[test]
    fn a_first_run_starts_at_the_oldest_row_or_at_the_cutoff() {
        let quarter = DEFAULTS.steps()[0];
        let now = 2_000_000.0 * QUARTER_SECS + 17.0;
        let oldest = now - 5.0 * DAY + 100.0;
        assert_eq!(
            first_rolled_until(&quarter, Some(oldest), now),
            period_start(oldest, QUARTER_SECS)
        );
        let empty = first_rolled_until(&quarter, None, now);
        assert_eq!(empty, period_start(now - DAY, QUARTER_SECS));
        // Nothing is due until a new period is old enough.
        assert!(!due(&quarter, empty, horizon(&quarter, now, None)));
        assert!(due(
            &quarter,
            empty,
            horizon(&quarter, now + QUARTER_SECS, None)
        ));
    }

    #[test]
    fn a_backlog_is_walked_period_by_period() {
        let quarter = DEFAULTS.steps()[0];
        let now = 3_000_000.0 * QUARTER_SECS;
        let h = horizon(&quarter, now, None);
        let mut at = now - DAY - 4.0 * QUARTER_SECS;
        let mut periods = 0;
        while let Plan::Roll { start, end } = plan(&quarter, at, Some(at), h) {
            assert_eq!(end - start, QUARTER_SECS);
            at = end;
            periods += 1;
        }
        assert_eq!(periods, 4);
    }
}
