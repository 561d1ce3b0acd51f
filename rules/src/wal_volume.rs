//! The volume holding `pg_wal`: how fast it fills, when it is full, what holds the WAL, and
//! the archiver that may be the reason. When that volume is full the server stops (PANIC),
//! every application with it: with `max_slot_wal_keep_size = -1` it, not a budget, is the
//! limit an abandoned slot runs into.

use crate::finding::{Finding, FindingCode, Severity};
use crate::history::least_squares;
use crate::units::{pretty_bytes, pretty_duration};

/// One reading of the volume, taken by the worker each pass.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VolumeSample {
    /// Unix seconds.
    pub at: f64,
    pub total_bytes: i64,
    pub free_bytes: i64,
}

/// How many readings the worker keeps: at the default interval (10s) over an hour, at 1s
/// over eight minutes; the fit uses those in the forecast window.
pub const VOLUME_SAMPLES: usize = 512;

/// The fill of the volume over the forecast window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FillForecast {
    /// Bytes per second the volume fills at (negative while space is freed).
    pub rate_bytes_per_sec: f64,
    /// Seconds until it is full at that rate; `None` unless it fills steadily.
    pub eta_secs: Option<f64>,
}

/// The fill rate through the readings of the last `window_secs` (at least 3 spanning a
/// quarter of it), and the time to full when the volume fills steadily (`filling_steadily`).
pub fn fill_forecast(samples: &[VolumeSample], now: f64, window_secs: f64) -> Option<FillForecast> {
    let since = now - window_secs;
    let points = || {
        samples
            .iter()
            .filter(move |s| since <= s.at && s.at <= now && s.total_bytes > 0)
            .map(|s| (s.at, (s.total_bytes - s.free_bytes) as f64))
    };
    let rate = least_squares(&points, window_secs)?;
    let latest = samples.iter().rev().find(|s| s.at <= now)?;
    // Free space now on the fitted line, not the last reading: used space climbs a segment at
    // a time, and the ETA from the reading would jump back up by a segment's worth each step.
    let (n, sum_t, sum_used) = points().fold((0.0, 0.0, 0.0), |(n, st, su), (t, u)| {
        (n + 1.0, st + t, su + u)
    });
    let fitted_used = sum_used / n + rate * (now - sum_t / n);
    let free = (latest.total_bytes as f64 - fitted_used).clamp(0.0, latest.total_bytes as f64);
    let eta = (rate > 0.0 && filling_steadily(points()))
        .then(|| free / rate)
        .filter(|eta| eta.is_finite());
    Some(FillForecast {
        rate_bytes_per_sec: rate,
        eta_secs: eta,
    })
}

/// Whether used space rose in at least 3 steps over the points, and in at least twice as many
/// as it fell. The server adds WAL a segment file at a time, so used space is a staircase
/// (flat between segments): a rise in most consecutive readings, the slots' test of a steady
/// climb, would never hold; one step alone (a burst) is no trend either.
fn filling_steadily(points: impl Iterator<Item = (f64, f64)>) -> bool {
    let (mut rose, mut fell, mut before) = (0usize, 0usize, None);
    for (_, used) in points {
        if let Some(prev) = before {
            rose += usize::from(used > prev);
            fell += usize::from(used < prev);
        }
        before = Some(used);
    }
    rose >= 3 && rose >= 2 * fell
}

/// What holds the WAL in `pg_wal`, as far as the server says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WalHolders {
    /// Size of `pg_wal` (its segment files).
    pub wal_bytes: i64,
    /// The slot retaining the most WAL, with how much.
    pub largest_slot: Option<(String, i64)>,
    /// `wal_keep_size` in bytes.
    pub wal_keep_bytes: i64,
    /// Segments waiting for the archiver (`archive_status/*.ready`).
    pub archive_pending_segments: i64,
    pub segment_bytes: i64,
    /// `max_wal_size` in bytes.
    pub max_wal_bytes: i64,
}

/// The `wal_disk_full_soon` thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskLimits {
    pub eta_warning_secs: f64,
    pub eta_critical_secs: f64,
    /// Warning below this share of the volume free, whatever the rate (0 turns it off);
    /// critical below half of it.
    pub free_warning_fraction: f64,
}

/// `wal_disk_full_soon` when the volume fills within the ETA thresholds or is short of free
/// space, with the remedy aimed at what holds the WAL.
pub fn disk_finding(
    latest: &VolumeSample,
    forecast: Option<&FillForecast>,
    holders: &WalHolders,
    limits: &DiskLimits,
) -> Option<Finding> {
    if latest.total_bytes <= 0 {
        return None;
    }
    let free_share = latest.free_bytes as f64 / latest.total_bytes as f64;
    let eta = forecast.and_then(|f| f.eta_secs);
    let by_eta = match eta {
        Some(e) if e <= limits.eta_critical_secs => Severity::Critical,
        Some(e) if e <= limits.eta_warning_secs => Severity::Warning,
        _ => Severity::Ok,
    };
    let by_space = if free_share < limits.free_warning_fraction / 2.0 {
        Severity::Critical
    } else if free_share < limits.free_warning_fraction {
        Severity::Warning
    } else {
        Severity::Ok
    };
    let severity = by_eta.max(by_space);
    if severity == Severity::Ok {
        return None;
    }
    let when = match (eta, forecast) {
        (Some(e), Some(f)) => format!(
            "fills in {} at {}/s",
            pretty_duration(e),
            pretty_bytes(f.rate_bytes_per_sec as i64)
        ),
        _ => "is short of space".to_string(),
    };
    let summary = format!(
        "the volume holding pg_wal {when}: {} free of {} ({:.0} %); pg_wal holds {}{}",
        pretty_bytes(latest.free_bytes),
        pretty_bytes(latest.total_bytes),
        free_share * 100.0,
        pretty_bytes(holders.wal_bytes),
        holder_text(holders)
    );
    let used = latest.total_bytes - latest.free_bytes;
    Some(
        Finding::new(FindingCode::WalDiskFullSoon, severity, summary)
            .with_remedy(remedy(holders, used)),
    )
}

fn holder_text(h: &WalHolders) -> String {
    let mut parts = Vec::new();
    if let Some((slot, bytes)) = &h.largest_slot {
        parts.push(format!("slot {slot} retains {}", pretty_bytes(*bytes)));
    }
    if h.archive_pending_segments > 0 {
        parts.push(format!(
            "{} segment(s) ({}) wait for the archiver",
            h.archive_pending_segments,
            pretty_bytes(h.archive_pending_segments.saturating_mul(h.segment_bytes))
        ));
    }
    if h.wal_keep_bytes > 0 {
        parts.push(format!(
            "wal_keep_size keeps {}",
            pretty_bytes(h.wal_keep_bytes)
        ));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join(", "))
    }
}

/// What holds the most of `pg_wal`, and so what to act on first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    Slot,
    Archiver,
    WalKeepSize,
    /// No one of those holds half of `pg_wal`: it is WAL kept between checkpoints
    /// (`max_wal_size`).
    Checkpoints,
    /// `pg_wal` is under half of what is used on the volume: other files fill it.
    OtherFiles,
}

/// The holder of at least half of `pg_wal` (of a slot, the archiver's backlog and
/// `wal_keep_size`, the largest), when `pg_wal` is what fills the volume (`used_bytes`).
pub fn main_holder(h: &WalHolders, used_bytes: i64) -> Holder {
    if h.wal_bytes < used_bytes / 2 {
        return Holder::OtherFiles;
    }
    let slot = h.largest_slot.as_ref().map_or(0, |(_, b)| *b);
    let archive = h.archive_pending_segments.saturating_mul(h.segment_bytes);
    let (holder, bytes) = [
        (Holder::Slot, slot),
        (Holder::Archiver, archive),
        (Holder::WalKeepSize, h.wal_keep_bytes),
    ]
    .into_iter()
    .max_by_key(|(_, b)| *b)
    .unwrap_or((Holder::Checkpoints, 0));
    if bytes > 0 && bytes >= h.wal_bytes / 2 {
        holder
    } else {
        Holder::Checkpoints
    }
}

fn remedy(h: &WalHolders, used_bytes: i64) -> String {
    let stop = "When the volume is full the server stops (PANIC) and every application with it.";
    match (main_holder(h, used_bytes), &h.largest_slot) {
        (Holder::Slot, Some((slot, bytes))) => format!(
            "Slot {slot} holds {}: bring its consumer back now, or drop the slot \
             (pg_drop_replication_slot('{slot}'), its mirror is then resynced) before the volume \
             fills; then bound slots with max_slot_wal_keep_size (cdc_health.budget_advice()). \
             {stop}",
            pretty_bytes(*bytes)
        ),
        (Holder::Archiver, _) => format!(
            "The archiver is behind: {} segment(s) wait. Fix archive_command or its destination \
             (pg_stat_archiver.last_failed_wal names the segment it fails on). {stop}",
            h.archive_pending_segments
        ),
        (Holder::WalKeepSize, _) => format!(
            "wal_keep_size ({}) keeps more WAL than the volume can spare: lower it (a reload). \
             {stop}",
            pretty_bytes(h.wal_keep_bytes)
        ),
        (Holder::OtherFiles, _) => format!(
            "pg_wal ({}) is under half of what fills this volume: other files do. Free space \
             on it or grow it. {stop}",
            pretty_bytes(h.wal_bytes)
        ),
        _ => format!(
            "pg_wal holds the WAL of recent checkpoints, up to max_wal_size ({}): lower \
             max_wal_size (a reload) or grow the volume. {stop}",
            pretty_bytes(h.max_wal_bytes)
        ),
    }
}

/// `pg_stat_archiver`'s counters that say whether archiving fails.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Archiver {
    /// `archive_mode` is on (or always) and an `archive_command` or `archive_library` is set.
    pub enabled: bool,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    /// Unix seconds.
    pub last_failed_at: Option<f64>,
    pub last_archived_at: Option<f64>,
    pub pending_segments: i64,
    pub segment_bytes: i64,
}

/// `archive_failing` while the last attempt failed (a failure newer than the last success):
/// WAL is kept until archived, so it piles up without any slot.
pub fn archive_finding(a: &Archiver, now: f64) -> Option<Finding> {
    if !a.enabled || a.failed_count == 0 {
        return None;
    }
    let failed_at = a.last_failed_at?;
    if a.last_archived_at.is_some_and(|ok| ok >= failed_at) {
        return None;
    }
    let segment = a.last_failed_wal.as_deref().unwrap_or("?");
    let since = match a.last_archived_at {
        Some(ok) => format!("the last success was {} ago", pretty_duration(now - ok)),
        None => "nothing was ever archived".to_string(),
    };
    let summary = format!(
        "archiving fails on segment {segment} ({} failures; {since}); {} segment(s) ({}) wait in \
         pg_wal",
        a.failed_count,
        a.pending_segments,
        pretty_bytes(a.pending_segments.saturating_mul(a.segment_bytes))
    );
    let remedy = format!(
        "Run archive_command by hand for {segment} as the server's user and fix what it \
         reports (the server log has each failure); WAL is kept until archived and fills the \
         volume. Turning archive_mode off needs a restart and breaks point-in-time recovery."
    );
    Some(Finding::new(FindingCode::ArchiveFailing, Severity::Warning, summary).with_remedy(remedy))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: i64 = 1 << 20;

    fn filling(rate_mb: i64, secs: usize, total: i64, free0: i64) -> Vec<VolumeSample> {
        (0..secs)
            .map(|i| VolumeSample {
                at: 1000.0 + i as f64,
                total_bytes: total,
                free_bytes: free0 - rate_mb * MB * i as i64,
            })
            .collect()
    }

    fn limits() -> DiskLimits {
        DiskLimits {
            eta_warning_secs: 6.0 * 3600.0,
            eta_critical_secs: 3600.0,
            free_warning_fraction: 0.1,
        }
    }

    #[test]
    fn a_steady_fill_forecasts_the_time_to_full() {
        let s = filling(2, 30, 400 * MB, 300 * MB);
        let f = fill_forecast(&s, 1029.0, 60.0).unwrap();
        assert!((f.rate_bytes_per_sec - 2.0 * MB as f64).abs() < 1.0);
        // 300 - 58 = 242 MB left at 2 MB/s.
        assert!((f.eta_secs.unwrap() - 121.0).abs() < 0.5, "{f:?}");
    }

    #[test]
    fn no_forecast_from_too_few_readings_or_a_volume_being_freed() {
        let s = filling(2, 2, 400 * MB, 300 * MB);
        assert!(fill_forecast(&s, 1001.0, 60.0).is_none());
        let freeing = filling(-2, 30, 400 * MB, 100 * MB);
        let f = fill_forecast(&freeing, 1029.0, 60.0).unwrap();
        assert!(f.rate_bytes_per_sec < 0.0 && f.eta_secs.is_none());
    }

    #[test]
    fn a_staircase_of_segments_is_a_steady_fill() {
        // 3 MB/s written, used space rising by a 16 MB segment every ~5 readings.
        let s: Vec<VolumeSample> = (0..30)
            .map(|i| VolumeSample {
                at: 1000.0 + i as f64,
                total_bytes: 320 * MB,
                free_bytes: 300 * MB - 16 * MB * ((i * 3) / 16) as i64,
            })
            .collect();
        let f = fill_forecast(&s, 1029.0, 60.0).unwrap();
        let eta = f.eta_secs.expect("a steady fill");
        assert!(
            (f.rate_bytes_per_sec / MB as f64 - 3.0).abs() < 0.6,
            "{f:?}"
        );
        assert!((40.0..120.0).contains(&eta), "{eta}");
    }

    #[test]
    fn one_burst_is_not_a_trend() {
        let mut s = filling(0, 30, 400 * MB, 300 * MB);
        for x in s.iter_mut().skip(15) {
            x.free_bytes -= 100 * MB;
        }
        let f = fill_forecast(&s, 1029.0, 60.0).unwrap();
        assert!(f.rate_bytes_per_sec > 0.0 && f.eta_secs.is_none(), "{f:?}");
    }

    #[test]
    fn old_readings_fall_out_of_the_window() {
        let mut s = filling(-1, 30, 400 * MB, 100 * MB);
        s.extend(filling(3, 30, 400 * MB, 130 * MB).into_iter().map(|mut x| {
            x.at += 100.0;
            x
        }));
        let f = fill_forecast(&s, 1129.0, 40.0).unwrap();
        assert!(
            (f.rate_bytes_per_sec - 3.0 * MB as f64).abs() < 1.0,
            "{f:?}"
        );
    }

    fn holders() -> WalHolders {
        WalHolders {
            wal_bytes: 250 * MB,
            largest_slot: Some(("peerdb".into(), 200 * MB)),
            wal_keep_bytes: 0,
            archive_pending_segments: 0,
            segment_bytes: 16 * MB,
            max_wal_bytes: 64 * MB,
        }
    }

    #[test]
    fn the_finding_follows_the_eta_and_the_free_space() {
        let latest = VolumeSample {
            at: 0.0,
            total_bytes: 400 * MB,
            free_bytes: 200 * MB,
        };
        let f = |eta: f64| FillForecast {
            rate_bytes_per_sec: MB as f64,
            eta_secs: Some(eta),
        };
        assert!(disk_finding(&latest, Some(&f(7.0 * 3600.0)), &holders(), &limits()).is_none());
        let w = disk_finding(&latest, Some(&f(2.0 * 3600.0)), &holders(), &limits()).unwrap();
        assert_eq!(
            (w.code, w.severity),
            (FindingCode::WalDiskFullSoon, Severity::Warning)
        );
        assert!(w.summary.contains("fills in 2h"), "{}", w.summary);
        assert!(
            w.summary.contains("slot peerdb retains 200 MB"),
            "{}",
            w.summary
        );
        let c = disk_finding(&latest, Some(&f(600.0)), &holders(), &limits()).unwrap();
        assert_eq!(c.severity, Severity::Critical);
        assert!(c
            .remedy
            .unwrap()
            .contains("pg_drop_replication_slot('peerdb')"));

        let short = VolumeSample {
            free_bytes: 30 * MB,
            ..latest
        };
        let s = disk_finding(&short, None, &holders(), &limits()).unwrap();
        assert_eq!(s.severity, Severity::Warning);
        assert!(s.summary.contains("is short of space"));
        let shorter = VolumeSample {
            free_bytes: 10 * MB,
            ..latest
        };
        assert_eq!(
            disk_finding(&shorter, None, &holders(), &limits())
                .unwrap()
                .severity,
            Severity::Critical
        );
        let mut off = limits();
        off.free_warning_fraction = 0.0;
        assert!(disk_finding(&shorter, None, &holders(), &off).is_none());
    }

    #[test]
    fn the_remedy_aims_at_what_holds_the_wal() {
        let used = 300 * MB;
        let mut h = holders();
        assert_eq!(main_holder(&h, used), Holder::Slot);
        h.largest_slot = Some(("s".into(), 10 * MB));
        h.archive_pending_segments = 12;
        assert_eq!(main_holder(&h, used), Holder::Archiver);
        assert!(remedy(&h, used).contains("archive_command"));
        h.archive_pending_segments = 0;
        h.wal_keep_bytes = 200 * MB;
        assert_eq!(main_holder(&h, used), Holder::WalKeepSize);
        h.wal_keep_bytes = 0;
        assert_eq!(main_holder(&h, used), Holder::Checkpoints);
        assert!(
            remedy(&h, used).contains("max_wal_size (64 MB)"),
            "{}",
            remedy(&h, used)
        );
        assert_eq!(main_holder(&h, 600 * MB), Holder::OtherFiles);
        assert!(remedy(&h, 600 * MB).contains("other files"));
    }

    #[test]
    fn archiving_fails_while_the_last_failure_is_newer_than_the_last_success() {
        let mut a = Archiver {
            enabled: true,
            failed_count: 3,
            last_failed_wal: Some("000000010000000000000002".into()),
            last_failed_at: Some(100.0),
            last_archived_at: None,
            pending_segments: 4,
            segment_bytes: 16 * MB,
        };
        let f = archive_finding(&a, 160.0).unwrap();
        assert_eq!(f.code, FindingCode::ArchiveFailing);
        assert!(
            f.summary.contains("000000010000000000000002"),
            "{}",
            f.summary
        );
        assert!(f.summary.contains("nothing was ever archived"));
        assert!(
            f.summary.contains("64.0 MB") || f.summary.contains("64 MB"),
            "{}",
            f.summary
        );
        a.last_archived_at = Some(90.0);
        assert!(archive_finding(&a, 160.0).unwrap().summary.contains("ago"));
        a.last_archived_at = Some(120.0);
        assert!(
            archive_finding(&a, 160.0).is_none(),
            "archiving works again"
        );
        a.last_archived_at = None;
        a.enabled = false;
        assert!(archive_finding(&a, 160.0).is_none());
    }
}
