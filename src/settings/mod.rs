//! The `cdc_health.*` settings (GUCs) and their translation into the rules' thresholds.
//!
//! Thresholds are `sighup` settings: the background worker and every session judge slots by
//! the same numbers, changed with `ALTER SYSTEM` and `pg_reload_conf()`.
//!
//! One file per area, each holding its settings as private statics, their registration and
//! their typed accessors: `worker` (the postmaster settings, the interval and the pass
//! timeout), `thresholds` (the rules' thresholds and the history rules'), `history`, `alerts`,
//! `creations` (slot creation, long transactions, failover readiness), `mirrors`,
//! `clickhouse`, `delivery` and `metrics`. Callers read them through the accessors
//! re-exported here, and through `thresholds()`, `history_limits()` and `alert_policy()`.
//!
//! The folder stays one module on layer 1 rather than each area's file moving into the folder
//! of the subsystem it serves: settings are read from several layers (`max_tracked_slots` by
//! `shmem` on layer 2 and by the metrics snapshot on layer 8, `delivery_max_pending` by the
//! outbox on layer 4 and by the delivery worker on layer 8, `stall_after` by `monitor` on
//! layer 7), so an area kept in its subsystem's folder would be imported upwards.

use std::ffi::CString;

use cdc_health_rules::alerts::AlertPolicy;
use cdc_health_rules::history::HistoryLimits;
use cdc_health_rules::Thresholds;
use pgrx::{pg_sys, GucContext, GucFlags, GucRegistry, GucSetting};

mod alerts;
mod clickhouse;
mod creations;
mod delivery;
mod history;
mod metrics;
mod mirrors;
mod thresholds;
mod worker;

pub use alerts::notify_channel;
pub use clickhouse::clickhouse_max_line_bytes;
pub use creations::{
    expect_failover, long_transaction_warning_secs, terminate_blockers_after, unblock_after_secs,
    unblock_slot_creation, ExpectFailover,
};
pub use delivery::{
    alertmanager_resend_secs, cluster_name_setting, delivery_max_age_secs, delivery_max_pending,
    delivery_retention_secs,
};
pub use history::{
    heartbeat_interval_secs, history_15min_retention_secs, history_full_retention_secs,
    history_idle_interval_secs, history_interval_secs, history_retention_secs,
};
pub use metrics::{metrics_address, metrics_auth_token};
pub use mirrors::{mirror_interval_secs, probe_timeout_ms};
pub use thresholds::{forecast_ceiling_bytes, stall_after_secs, wal_volume_check};
pub use worker::{database, interval_ms, max_tracked_slots, pass_timeout_ms};

/// Registers every setting. Postmaster-context settings can only be created while the
/// library is preloaded (PostgreSQL raises FATAL otherwise), so they exist only then.
pub fn register() {
    // SAFETY: a plain read of a postmaster global.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        worker::register_postmaster();
    }
    // The order of the single file this folder replaced: areas interleave (thresholds, the
    // worker's interval, then the history rules).
    thresholds::register();
    worker::register();
    thresholds::register_history_rules();
    history::register();
    alerts::register();
    creations::register();
    mirrors::register();
    clickhouse::register();
    delivery::register();
    metrics::register();
}

/// A reloadable integer setting (`sighup`): every area's thresholds and intervals.
fn sighup_int(
    name: &'static std::ffi::CStr,
    short: &'static std::ffi::CStr,
    long: &'static std::ffi::CStr,
    setting: &'static GucSetting<i32>,
    min: i32,
    max: i32,
    flags: GucFlags,
) {
    GucRegistry::define_int_guc(
        name,
        short,
        long,
        setting,
        min,
        max,
        GucContext::Sighup,
        flags,
    )
}

/// A string setting's value; `default` when it is unset or empty.
fn text(setting: &GucSetting<Option<CString>>, default: &str) -> String {
    setting
        .get()
        .and_then(|s| s.into_string().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default.to_string())
}

pub fn thresholds() -> Thresholds {
    Thresholds {
        retained_wal_warning_bytes: thresholds::retained_wal_warning_bytes(),
        safe_wal_warning_fraction: thresholds::safe_wal_warning_fraction(),
        inactive_warning_secs: thresholds::inactive_warning_secs(),
        inactive_critical_secs: thresholds::inactive_critical_secs(),
        xmin_age_warning: thresholds::xmin_age_warning(),
    }
}

pub fn history_limits() -> HistoryLimits {
    HistoryLimits {
        stall_after_secs: thresholds::stall_after_secs(),
        eta_warning_secs: thresholds::eta_warning_secs(),
        eta_critical_secs: thresholds::eta_critical_secs(),
        forecast_window_secs: thresholds::forecast_window_secs(),
        stall_min_bytes: thresholds::stall_min_bytes(),
        spill_warning_bytes_per_min: thresholds::spill_warning_bytes_per_min(),
        // An observation, not a setting: the pass fills it in.
        disk_free_bytes: None,
    }
}

pub fn disk_limits() -> cdc_health_rules::wal_volume::DiskLimits {
    cdc_health_rules::wal_volume::DiskLimits {
        eta_warning_secs: thresholds::eta_warning_secs(),
        eta_critical_secs: thresholds::eta_critical_secs(),
        free_warning_fraction: thresholds::wal_disk_free_warning_fraction(),
    }
}

pub fn alert_policy() -> AlertPolicy {
    AlertPolicy {
        interval_secs: worker::interval_secs(),
        reminder_secs: alerts::alert_reminder_secs(),
        holddown_secs: alerts::alert_holddown_secs(),
    }
}
