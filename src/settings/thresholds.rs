//! The rules' thresholds: per-sample ones (`Thresholds`) and the history rules' (stalled,
//! decoding spill, the loss forecast: `HistoryLimits`).

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

use super::sighup_int;

static RETAINED_WAL_WARNING_MB: GucSetting<i32> = GucSetting::<i32>::new(2048);
static SAFE_WAL_SIZE_WARNING_PERCENT: GucSetting<i32> = GucSetting::<i32>::new(25);
static INACTIVE_WARNING_S: GucSetting<i32> = GucSetting::<i32>::new(300);
static INACTIVE_CRITICAL_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
static XMIN_AGE_WARNING: GucSetting<i32> = GucSetting::<i32>::new(100_000_000);

// The history rules.
static STALL_AFTER_S: GucSetting<i32> = GucSetting::<i32>::new(120);
static STALL_MIN_WAL_KB: GucSetting<i32> = GucSetting::<i32>::new(1024);
static SPILL_WARNING_MB: GucSetting<i32> = GucSetting::<i32>::new(100);
static ETA_WARNING_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
static ETA_CRITICAL_S: GucSetting<i32> = GucSetting::<i32>::new(900);
static FORECAST_WINDOW_S: GucSetting<i32> = GucSetting::<i32>::new(600);
static WAL_DISK_FREE_WARNING_PERCENT: GucSetting<i32> = GucSetting::<i32>::new(10);
static WAL_VOLUME_CHECK: GucSetting<bool> = GucSetting::<bool>::new(true);

/// The per-sample thresholds.
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

/// The history rules: stalled, decoding spill and the loss forecast.
pub fn register_history_rules() {
    sighup_int(
        c"cdc_health.stall_after",
        c"How long a connected consumer may confirm nothing while WAL is written before it is stalled.",
        c"",
        &STALL_AFTER_S,
        1,
        i32::MAX,
        GucFlags::UNIT_S,
    );
    sighup_int(
        c"cdc_health.stall_min_wal",
        c"WAL that must be written and unconfirmed before a connected consumer counts as stalled.",
        c"An idle server still writes small records a healthy consumer has nothing to confirm for.",
        &STALL_MIN_WAL_KB,
        0,
        i32::MAX,
        GucFlags::UNIT_KB,
    );
    sighup_int(
        c"cdc_health.spill_warning",
        c"decoding_spill warns when decoding a slot spills more than this to disk per minute; 0 turns it off.",
        c"From pg_stat_replication_slots.spill_bytes: transactions larger than logical_decoding_work_mem.",
        &SPILL_WARNING_MB,
        0,
        i32::MAX,
        GucFlags::UNIT_MB,
    );
    sighup_int(
        c"cdc_health.eta_warning",
        c"budget_exhaustion_soon is a warning when the slot is forecast to be lost within this time.",
        c"",
        &ETA_WARNING_S,
        1,
        i32::MAX,
        GucFlags::UNIT_S,
    );
    sighup_int(
        c"cdc_health.eta_critical",
        c"budget_exhaustion_soon is critical when the slot is forecast to be lost within this time.",
        c"",
        &ETA_CRITICAL_S,
        1,
        i32::MAX,
        GucFlags::UNIT_S,
    );
    pgrx::GucRegistry::define_bool_guc(
        c"cdc_health.wal_volume_check",
        c"Read the volume holding pg_wal each pass: wal_disk_full_soon, and the disk as the limit of slots without a budget.",
        c"Turn it off where statvfs does not show the space the server may use (a quota it cannot see).",
        &WAL_VOLUME_CHECK,
        GucContext::Sighup,
        GucFlags::default(),
    );
    sighup_int(
        c"cdc_health.wal_disk_free_warning",
        c"Percent of the volume holding pg_wal: wal_disk_full_soon warns when less is free (critical under half of it); 0 turns it off.",
        c"The forecast (cdc_health.eta_warning, cdc_health.eta_critical) warns on a steady fill whatever the free space.",
        &WAL_DISK_FREE_WARNING_PERCENT,
        0,
        100,
        GucFlags::default(),
    );
    sighup_int(
        c"cdc_health.forecast_window",
        c"Span of recent samples the growth rate of retained WAL is fitted over.",
        c"",
        &FORECAST_WINDOW_S,
        10,
        86_400,
        GucFlags::UNIT_S,
    );
}

pub fn retained_wal_warning_bytes() -> i64 {
    i64::from(RETAINED_WAL_WARNING_MB.get()) << 20
}

pub fn safe_wal_warning_fraction() -> f64 {
    f64::from(SAFE_WAL_SIZE_WARNING_PERCENT.get()) / 100.0
}

pub fn inactive_warning_secs() -> f64 {
    f64::from(INACTIVE_WARNING_S.get())
}

pub fn inactive_critical_secs() -> f64 {
    f64::from(INACTIVE_CRITICAL_S.get())
}

pub fn xmin_age_warning() -> i64 {
    i64::from(XMIN_AGE_WARNING.get())
}

/// Retained WAL the forecast aims at when no max_slot_wal_keep_size budget is set: the
/// `retained_wal_high` critical level.
pub fn forecast_ceiling_bytes() -> i64 {
    retained_wal_warning_bytes().saturating_mul(4)
}

/// `cdc_health.stall_after`; also how long a slot creation may wait before it is critical.
pub fn stall_after_secs() -> f64 {
    f64::from(STALL_AFTER_S.get())
}

pub fn stall_min_bytes() -> i64 {
    i64::from(STALL_MIN_WAL_KB.get()) << 10
}

pub fn spill_warning_bytes_per_min() -> i64 {
    i64::from(SPILL_WARNING_MB.get()) << 20
}

pub fn eta_warning_secs() -> f64 {
    f64::from(ETA_WARNING_S.get())
}

pub fn eta_critical_secs() -> f64 {
    f64::from(ETA_CRITICAL_S.get())
}

pub fn forecast_window_secs() -> f64 {
    f64::from(FORECAST_WINDOW_S.get())
}

pub fn wal_volume_check() -> bool {
    WAL_VOLUME_CHECK.get()
}

pub fn wal_disk_free_warning_fraction() -> f64 {
    f64::from(WAL_DISK_FREE_WARNING_PERCENT.get()) / 100.0
}
