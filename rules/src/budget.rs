//! `budget_advice()`: what `max_slot_wal_keep_size` to set, from what the history saw (the
//! peak WAL write rate, the longest consumer outage) and what the volume holding `pg_wal` can
//! hold. A budget is a trade: the larger, the longer a consumer may be down before its slot
//! is lost; the smaller, the more room is left on the volume, whose filling stops the server.

use crate::units::{pretty_bytes, pretty_duration};

/// What the advice is computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BudgetFacts {
    /// The most WAL written in one hour of the history, per second; `None` without two
    /// hours of it.
    pub peak_rate_bytes_per_sec: Option<f64>,
    /// The longest time a slot's consumer was away and came back, in seconds.
    pub longest_outage_secs: Option<f64>,
    /// `max_slot_wal_keep_size`; `None` when unlimited.
    pub budget_bytes: Option<i64>,
    /// The volume holding `pg_wal`; `None` when it could not be read.
    pub disk_free_bytes: Option<i64>,
    pub disk_total_bytes: Option<i64>,
    /// What `pg_wal` holds now, counted as room: a slot's WAL replaces it, it does not add.
    pub wal_bytes: i64,
    /// `max_wal_size` and `wal_keep_size`: WAL kept whatever the slots do.
    pub max_wal_bytes: i64,
    pub wal_keep_bytes: i64,
}

/// One row of the advice.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRow {
    /// `current` or `recommended`.
    pub setting: &'static str,
    /// `None`: unlimited (the current setting) or no recommendation could be made.
    pub budget_bytes: Option<i64>,
    /// The consumer outage the budget survives at the peak rate.
    pub survives_secs: Option<f64>,
    /// Free space left on the volume when `pg_wal` holds all it may (the budget,
    /// `max_wal_size`, `wal_keep_size`); negative when it cannot hold that much.
    pub leaves_free_bytes: Option<i64>,
    pub summary: String,
}

/// Share of the volume the advice leaves to other files and to surprises.
pub const VOLUME_MARGIN: f64 = 0.10;
/// The shortest outage the recommendation aims to survive.
pub const MIN_OUTAGE_SECS: f64 = 3600.0;
/// The recommendation aims at this many times the longest outage seen.
pub const OUTAGE_FACTOR: f64 = 2.0;

/// How much WAL `pg_wal` may hold before the volume is full, margin kept: its size now, the
/// free space, less `VOLUME_MARGIN` of the volume.
fn usable(f: &BudgetFacts) -> Option<i64> {
    let free = f.disk_free_bytes?;
    let margin = (f.disk_total_bytes? as f64 * VOLUME_MARGIN) as i64;
    Some(free + f.wal_bytes - margin)
}

/// The largest budget the volume holds next to `max_wal_size` and `wal_keep_size`.
fn cap(f: &BudgetFacts) -> Option<i64> {
    usable(f).map(|u| u - f.max_wal_bytes - f.wal_keep_bytes)
}

/// Rounds down to a whole GB from 4 GB on, to 64 MB below (and at least 64 MB).
fn round_budget(bytes: i64) -> i64 {
    let step = if bytes >= 4 << 30 { 1 << 30 } else { 64 << 20 };
    ((bytes / step) * step).max(64 << 20)
}

/// A budget as `ALTER SYSTEM SET max_slot_wal_keep_size` takes it: whole GB, else MB.
pub fn setting_text(bytes: i64) -> String {
    if bytes % (1 << 30) == 0 {
        format!("{}GB", bytes >> 30)
    } else {
        format!("{}MB", bytes >> 20)
    }
}

fn leaves(f: &BudgetFacts, budget: i64) -> Option<i64> {
    Some(f.disk_free_bytes? + f.wal_bytes - budget - f.max_wal_bytes - f.wal_keep_bytes)
}

/// The current setting and the recommended one, in that order.
pub fn advise(f: &BudgetFacts) -> Vec<BudgetRow> {
    vec![current(f), recommended(f)]
}

fn current(f: &BudgetFacts) -> BudgetRow {
    let rate = f.peak_rate_bytes_per_sec.filter(|r| *r > 0.0);
    match f.budget_bytes {
        None => {
            let fills = rate.zip(f.disk_free_bytes).map(|(r, free)| free as f64 / r);
            BudgetRow {
                setting: "current",
                budget_bytes: None,
                survives_secs: fills,
                leaves_free_bytes: Some(0),
                summary: match (fills, f.disk_free_bytes) {
                    (Some(secs), Some(free)) => format!(
                        "unlimited: an abandoned slot fills the volume ({} free) in {} at the \
                         peak rate, and the server stops",
                        pretty_bytes(free),
                        pretty_duration(secs)
                    ),
                    _ => "unlimited: an abandoned slot grows until the volume holding pg_wal is \
                          full and the server stops"
                        .to_string(),
                },
            }
        }
        Some(budget) => {
            let survives = rate.map(|r| budget as f64 / r);
            let left = leaves(f, budget);
            let mut summary = format!("{} survives ", pretty_bytes(budget));
            summary.push_str(&match survives {
                Some(s) => format!("{} of consumer outage at the peak rate", pretty_duration(s)),
                None => "an outage whose length the history cannot tell yet".to_string(),
            });
            summary.push_str(&match left {
                Some(l) if l < 0 => format!(
                    "; the volume cannot hold it: pg_wal would need {} more than it has",
                    pretty_bytes(-l)
                ),
                Some(l) => format!("; the volume keeps {} free", pretty_bytes(l)),
                None => String::new(),
            });
            BudgetRow {
                setting: "current",
                budget_bytes: Some(budget),
                survives_secs: survives,
                leaves_free_bytes: left,
                summary,
            }
        }
    }
}

fn recommended(f: &BudgetFacts) -> BudgetRow {
    let none = |why: &str| BudgetRow {
        setting: "recommended",
        budget_bytes: None,
        survives_secs: None,
        leaves_free_bytes: None,
        summary: format!("no recommendation: {why}"),
    };
    let Some(rate) = f.peak_rate_bytes_per_sec.filter(|r| *r > 0.0) else {
        return none("the history holds less than two hours of WAL writes (it grows every pass)");
    };
    let Some(cap) = cap(f) else {
        return none("the volume holding pg_wal could not be read");
    };
    let outage = f.longest_outage_secs.map_or(MIN_OUTAGE_SECS, |o| {
        (o * OUTAGE_FACTOR).max(MIN_OUTAGE_SECS)
    });
    let wanted = rate * outage;
    if cap < 64 << 20 {
        return none(&format!(
            "the volume holding pg_wal leaves no room for a budget beside max_wal_size and \
             wal_keep_size ({} usable): grow it",
            pretty_bytes(usable(f).unwrap_or(0))
        ));
    }
    let budget = round_budget((wanted as i64).min(cap));
    let survives = budget as f64 / rate;
    let mut summary = format!(
        "{} survives {} of consumer outage at the peak rate ({}/h)",
        pretty_bytes(budget),
        pretty_duration(survives),
        pretty_bytes((rate * 3600.0) as i64)
    );
    if let Some(o) = f.longest_outage_secs {
        summary.push_str(&format!(
            ", {:.1} times the longest outage seen ({})",
            survives / o,
            pretty_duration(o)
        ));
    }
    if (wanted as i64) > cap {
        summary.push_str(&format!(
            "; the volume limits it: surviving {} would take {}, grow the volume for that",
            pretty_duration(outage),
            pretty_bytes(wanted as i64)
        ));
    }
    let left = leaves(f, budget);
    if let Some(l) = left {
        summary.push_str(&format!("; the volume keeps {} free", pretty_bytes(l)));
    }
    BudgetRow {
        setting: "recommended",
        budget_bytes: Some(budget),
        survives_secs: Some(survives),
        leaves_free_bytes: left,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: i64 = 1 << 30;

    fn facts() -> BudgetFacts {
        BudgetFacts {
            // 20 GB an hour at the peak.
            peak_rate_bytes_per_sec: Some(20.0 * GB as f64 / 3600.0),
            longest_outage_secs: Some(1.5 * 3600.0),
            budget_bytes: Some(64 * GB),
            disk_free_bytes: Some(400 * GB),
            disk_total_bytes: Some(500 * GB),
            wal_bytes: 10 * GB,
            max_wal_bytes: GB,
            wal_keep_bytes: 0,
        }
    }

    #[test]
    fn the_current_budget_is_weighed_against_the_peak_rate_and_the_volume() {
        let rows = advise(&facts());
        let c = &rows[0];
        assert_eq!((c.setting, c.budget_bytes), ("current", Some(64 * GB)));
        assert!((c.survives_secs.unwrap() - 3.2 * 3600.0).abs() < 1.0);
        assert_eq!(c.leaves_free_bytes, Some(400 * GB + 10 * GB - 64 * GB - GB));
        assert!(
            c.summary.starts_with("64 GB survives 3h 12min"),
            "{}",
            c.summary
        );
        assert!(
            c.summary.contains("the volume keeps 345 GB free"),
            "{}",
            c.summary
        );
    }

    #[test]
    fn the_recommendation_survives_twice_the_longest_outage() {
        let r = &advise(&facts())[1];
        // 20 GB/h for 3 h = 60 GB, within the volume.
        assert_eq!(r.budget_bytes, Some(60 * GB));
        assert!((r.survives_secs.unwrap() - 3.0 * 3600.0).abs() < 1.0);
        assert!(
            r.summary
                .contains("2.0 times the longest outage seen (1h 30min)"),
            "{}",
            r.summary
        );
        assert!(!r.summary.contains("limits it"));
    }

    #[test]
    fn a_small_volume_caps_the_recommendation() {
        let mut f = facts();
        f.disk_total_bytes = Some(50 * GB);
        f.disk_free_bytes = Some(30 * GB);
        let r = &advise(&f)[1];
        // usable = 30 + 10 - 5 = 35 GB, less max_wal_size: 34 GB.
        assert_eq!(r.budget_bytes, Some(34 * GB));
        assert!(r.summary.contains("the volume limits it"), "{}", r.summary);
        assert!(r.leaves_free_bytes.unwrap() >= 0);
        let c = &advise(&f)[0];
        assert!(
            c.summary.contains("the volume cannot hold it"),
            "{}",
            c.summary
        );
        assert!(c.leaves_free_bytes.unwrap() < 0);
    }

    #[test]
    fn unlimited_is_the_time_to_fill_the_volume() {
        let mut f = facts();
        f.budget_bytes = None;
        let c = &advise(&f)[0];
        assert_eq!(c.budget_bytes, None);
        assert!((c.survives_secs.unwrap() - 20.0 * 3600.0).abs() < 1.0);
        assert!(
            c.summary.contains("fills the volume (400 GB free) in 20h"),
            "{}",
            c.summary
        );
    }

    #[test]
    fn without_history_or_volume_there_is_no_recommendation() {
        let mut f = facts();
        f.peak_rate_bytes_per_sec = None;
        let rows = advise(&f);
        assert_eq!(rows[1].budget_bytes, None);
        assert!(rows[1].summary.contains("less than two hours"));
        assert!(
            rows[0].summary.contains("cannot tell yet"),
            "{}",
            rows[0].summary
        );
        let mut f = facts();
        f.disk_free_bytes = None;
        assert!(advise(&f)[1].summary.contains("could not be read"));
        let mut f = facts();
        f.disk_total_bytes = Some(GB);
        f.disk_free_bytes = Some(GB / 2);
        f.wal_bytes = GB / 4;
        assert!(
            advise(&f)[1].summary.contains("grow it"),
            "{}",
            advise(&f)[1].summary
        );
    }

    #[test]
    fn settings_are_written_as_the_server_reads_them() {
        assert_eq!(setting_text(64 * GB), "64GB");
        assert_eq!(setting_text(1536 << 20), "1536MB");
    }

    #[test]
    fn small_budgets_round_to_64_mb_and_without_outages_aim_at_an_hour() {
        let mut f = facts();
        f.peak_rate_bytes_per_sec = Some(100.0 * 1024.0 * 1024.0 / 3600.0); // 100 MB/h
        f.longest_outage_secs = None;
        let r = &advise(&f)[1];
        assert_eq!(
            r.budget_bytes,
            Some(64 << 20),
            "100 MB for an hour, rounded down"
        );
        assert!(!r.summary.contains("longest outage"));
    }
}
