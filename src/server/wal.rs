//! The WAL volume as the pass and `wal_usage()` see it: one `statvfs`, the names in `pg_wal`
//! (and in `archive_status` while archiving is on) counted without a `stat` each, the
//! archiver's counters, the readings kept in shared memory and the findings on them.

use std::path::{Path, PathBuf};

use cdc_health_rules::alerts::Observed;
use cdc_health_rules::wal_volume::{
    archive_finding, disk_finding, fill_forecast, Archiver, FillForecast, VolumeSample, WalHolders,
    VOLUME_SAMPLES,
};
use cdc_health_rules::{Finding, ServerObservation, SlotObservation};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use serde_json::{json, Value};

use crate::pg::backend::{setting_int, setting_text};
use crate::{settings, shmem};

/// What is known of the volume and the WAL on it now.
pub struct WalState {
    pub dir: Option<PathBuf>,
    /// `None` when the volume could not be read.
    pub reading: Option<VolumeSample>,
    pub holders: WalHolders,
    pub forecast: Option<FillForecast>,
    /// `wal_disk_full_soon`, for subject `server:wal`.
    pub disk: Option<Finding>,
    pub archiver: Archiver,
    /// `archive_failing`, for subject `server:archiver`.
    pub archive: Option<Finding>,
}

/// Subjects of the server's alerts.
pub const WAL_SUBJECT: &str = "server:wal";
pub const ARCHIVER_SUBJECT: &str = "server:archiver";

/// Reads the volume and what holds the WAL, keeps the reading (when `record`: the pass does,
/// a function call does not) and decides the findings. With `cdc_health.wal_volume_check`
/// off only the archiver is looked at.
pub fn assess<'a>(
    server: &ServerObservation,
    slots: impl Iterator<Item = &'a SlotObservation>,
    now: f64,
    record: bool,
) -> SpiResult<WalState> {
    let check = settings::wal_volume_check();
    let wal_dir = super::volume::wal_dir();
    let dir = wal_dir.clone().filter(|_| check);
    let reading = check
        .then(super::volume::wal_volume)
        .flatten()
        .map(|v| VolumeSample {
            at: now,
            total_bytes: v.total_bytes,
            free_bytes: v.free_bytes,
        });
    let window = settings::history_limits().forecast_window_secs;
    if let (Some(r), true) = (reading, record) {
        // Spaced so that the ring spans two forecast windows at any interval.
        shmem::record_volume(r, 2.0 * window / VOLUME_SAMPLES as f64);
    }
    let mut samples = shmem::volume_samples();
    if let Some(r) = reading.filter(|r| samples.last().is_none_or(|l| l.at < r.at)) {
        samples.push(r);
    }
    let forecast = fill_forecast(&samples, now, window);
    let segment_bytes = segment_bytes();
    let archiving = archiving_enabled();
    let holders = WalHolders {
        wal_bytes: pg_wal_bytes(dir.as_deref()),
        largest_slot: largest_slot(server, slots),
        wal_keep_bytes: mb_setting(c"wal_keep_size"),
        archive_pending_segments: match (&wal_dir, archiving) {
            (Some(d), true) => count_names(&d.join("archive_status"), |n| n.ends_with(".ready")),
            _ => 0,
        },
        segment_bytes,
        max_wal_bytes: mb_setting(c"max_wal_size"),
    };
    let archiver = if archiving {
        read_archiver(holders.archive_pending_segments, segment_bytes)?
    } else {
        Archiver::default()
    };
    let disk = reading
        .as_ref()
        .and_then(|r| disk_finding(r, forecast.as_ref(), &holders, &settings::disk_limits()));
    let archive = archive_finding(&archiver, now);
    Ok(WalState {
        dir,
        reading,
        holders,
        forecast,
        disk,
        archiver,
        archive,
    })
}

/// Size of `pg_wal`: its segment files, counted from their names.
pub fn pg_wal_bytes(dir: Option<&Path>) -> i64 {
    dir.map_or(0, |d| count_names(d, is_segment_name))
        .saturating_mul(segment_bytes())
}

fn segment_bytes() -> i64 {
    // SAFETY: a plain read of the server's WAL segment size, fixed at startup.
    i64::from(unsafe { pg_sys::wal_segment_size })
}

/// A setting in megabytes (as the server stores `wal_keep_size` and `max_wal_size`), in bytes.
pub fn mb_setting(name: &std::ffi::CStr) -> i64 {
    setting_int(name).map_or(0, |mb| mb.max(0) << 20)
}

fn archiving_enabled() -> bool {
    let set = |name: &std::ffi::CStr| setting_text(name).is_some_and(|v| !v.is_empty());
    setting_text(c"archive_mode").is_some_and(|m| m != "off")
        && (set(c"archive_command") || set(c"archive_library"))
}

/// A WAL segment file's name: 24 hexadecimal digits.
fn is_segment_name(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Entries of `dir` whose name passes `keep`: one `readdir`, no `stat` per file.
fn count_names(dir: &Path, keep: impl Fn(&str) -> bool) -> i64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(&keep))
        .count() as i64
}

/// The slot retaining the most WAL, with how much.
fn largest_slot<'a>(
    server: &ServerObservation,
    slots: impl Iterator<Item = &'a SlotObservation>,
) -> Option<(String, i64)> {
    let current = server.current_lsn?;
    slots
        .filter(|s| !s.is_lost())
        .filter_map(|s| Some((s, current.checked_sub(s.restart_lsn?)?)))
        .max_by_key(|(_, retained)| *retained)
        .map(|(s, retained)| {
            (
                s.slot_name.clone(),
                i64::try_from(retained).unwrap_or(i64::MAX),
            )
        })
}

fn read_archiver(pending: i64, segment_bytes: i64) -> SpiResult<Archiver> {
    Spi::connect(|client| {
        let row = client
            .select(
                "SELECT failed_count, last_failed_wal,
                        pg_catalog.date_part('epoch', last_failed_time),
                        pg_catalog.date_part('epoch', last_archived_time)
                 FROM pg_catalog.pg_stat_archiver",
                Some(1),
                &[],
            )?
            .first();
        Ok(Archiver {
            enabled: true,
            failed_count: row.get::<i64>(1)?.unwrap_or(0),
            last_failed_wal: row.get::<String>(2)?,
            last_failed_at: row.get::<f64>(3)?,
            last_archived_at: row.get::<f64>(4)?,
            pending_segments: pending,
            segment_bytes,
        })
    })
}

/// The server's findings as the alerts see them, with their remedy and what the volume and
/// the archiver showed.
pub fn observed(state: &WalState) -> Vec<Observed> {
    let mut out = Vec::new();
    if let Some(f) = &state.disk {
        out.push(Observed {
            subject: WAL_SUBJECT.to_string(),
            finding: f.clone(),
            remediation: f.remedy.clone(),
            detail: volume_detail(state),
        });
    }
    if let Some(f) = &state.archive {
        let a = &state.archiver;
        out.push(Observed {
            subject: ARCHIVER_SUBJECT.to_string(),
            finding: f.clone(),
            remediation: f.remedy.clone(),
            detail: json!({
                "failed_count": a.failed_count,
                "last_failed_wal": a.last_failed_wal,
                "pending_segments": a.pending_segments,
            }),
        });
    }
    out
}

/// The volume, the WAL on it and the forecast, as an alert's detail and in `metrics`.
pub fn volume_detail(state: &WalState) -> Value {
    let h = &state.holders;
    json!({
        "disk_total_bytes": state.reading.map(|r| r.total_bytes),
        "disk_free_bytes": state.reading.map(|r| r.free_bytes),
        "wal_bytes": h.wal_bytes,
        "largest_slot": h.largest_slot.as_ref().map(|(name, _)| name),
        "largest_slot_bytes": h.largest_slot.as_ref().map(|(_, bytes)| bytes),
        "archive_pending_segments": h.archive_pending_segments,
        "wal_keep_bytes": h.wal_keep_bytes,
        "fill_rate_bytes_per_sec": state.forecast.map(|f| f.rate_bytes_per_sec),
        "eta_to_full_secs": state.forecast.and_then(|f| f.eta_secs),
    })
}
