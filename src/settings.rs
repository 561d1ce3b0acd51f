//! The `cdc_health.*` settings (GUCs) and their translation into the rules' thresholds.
//!
//! Thresholds are `sighup` settings: the background worker and every session judge slots by
//! the same numbers, changed with `ALTER SYSTEM` and `pg_reload_conf()`.

use cdc_health_rules::Thresholds;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

pub static RETAINED_WAL_WARNING_MB: GucSetting<i32> = GucSetting::<i32>::new(2048);
pub static SAFE_WAL_SIZE_WARNING_PERCENT: GucSetting<i32> = GucSetting::<i32>::new(25);
pub static INACTIVE_WARNING_S: GucSetting<i32> = GucSetting::<i32>::new(300);
pub static INACTIVE_CRITICAL_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub static XMIN_AGE_WARNING: GucSetting<i32> = GucSetting::<i32>::new(100_000_000);

pub fn register() {
    GucRegistry::define_int_guc(
        c"cdc_health.retained_wal_warning",
        c"Retained WAL per slot above which retained_wal_high is a warning (critical above 4 times).",
        c"Retained WAL is the current WAL position minus the slot's restart_lsn.",
        &RETAINED_WAL_WARNING_MB,
        1,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"cdc_health.safe_wal_size_warning",
        c"Percent of max_slot_wal_keep_size: retained_wal_high warns when safe_wal_size falls below it.",
        c"Ignored while max_slot_wal_keep_size is -1 (unlimited).",
        &SAFE_WAL_SIZE_WARNING_PERCENT,
        0,
        100,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"cdc_health.inactive_warning",
        c"How long a slot may have no consumer before inactive is a warning.",
        c"Needs a known inactivity duration: inactive_since (PostgreSQL 17+) or the background \
          worker's watch. When the duration is unknown an inactive slot is a warning at once.",
        &INACTIVE_WARNING_S,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"cdc_health.inactive_critical",
        c"How long a slot may have no consumer before inactive is critical.",
        c"",
        &INACTIVE_CRITICAL_S,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"cdc_health.xmin_age_warning",
        c"Age in transactions of a slot's xmin or catalog_xmin above which xmin_horizon_old is a warning.",
        c"It is critical past autovacuum_freeze_max_age.",
        &XMIN_AGE_WARNING,
        1,
        2_000_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

pub fn thresholds() -> Thresholds {
    Thresholds {
        retained_wal_warning_bytes: i64::from(RETAINED_WAL_WARNING_MB.get()) << 20,
        safe_wal_warning_fraction: f64::from(SAFE_WAL_SIZE_WARNING_PERCENT.get()) / 100.0,
        inactive_warning_secs: f64::from(INACTIVE_WARNING_S.get()),
        inactive_critical_secs: f64::from(INACTIVE_CRITICAL_S.get()),
        xmin_age_warning: i64::from(XMIN_AGE_WARNING.get()),
    }
}
