//! The `cdc_health.*` settings (GUCs) and their translation into the rules' thresholds.
//!
//! Thresholds are `sighup` settings: the background worker and every session judge slots by
//! the same numbers, changed with `ALTER SYSTEM` and `pg_reload_conf()`.

use std::ffi::CString;

use cdc_health_rules::alerts::AlertPolicy;
use cdc_health_rules::history::HistoryLimits;
use cdc_health_rules::Thresholds;
use pgrx::{pg_sys, GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

pub static RETAINED_WAL_WARNING_MB: GucSetting<i32> = GucSetting::<i32>::new(2048);
pub static SAFE_WAL_SIZE_WARNING_PERCENT: GucSetting<i32> = GucSetting::<i32>::new(25);
pub static INACTIVE_WARNING_S: GucSetting<i32> = GucSetting::<i32>::new(300);
pub static INACTIVE_CRITICAL_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub static XMIN_AGE_WARNING: GucSetting<i32> = GucSetting::<i32>::new(100_000_000);

// The background worker's settings.
pub static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
pub static MAX_TRACKED_SLOTS: GucSetting<i32> = GucSetting::<i32>::new(100);
pub static INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static STALL_AFTER_S: GucSetting<i32> = GucSetting::<i32>::new(120);
pub static STALL_MIN_WAL_KB: GucSetting<i32> = GucSetting::<i32>::new(1024);
pub static SPILL_WARNING_MB: GucSetting<i32> = GucSetting::<i32>::new(100);
pub static ETA_WARNING_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub static ETA_CRITICAL_S: GucSetting<i32> = GucSetting::<i32>::new(900);
pub static FORECAST_WINDOW_S: GucSetting<i32> = GucSetting::<i32>::new(600);
pub static HISTORY_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(60);
pub static HISTORY_IDLE_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
pub static HISTORY_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(14 * 86_400);
pub static HISTORY_FULL_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(86_400);
pub static HISTORY_15MIN_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(3 * 86_400);
pub static ALERT_REMINDER_S: GucSetting<i32> = GucSetting::<i32>::new(900);
pub static ALERT_HOLDDOWN_S: GucSetting<i32> = GucSetting::<i32>::new(300);
pub static NOTIFY_CHANNEL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"cdc_health"));
pub static HEARTBEAT_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(0);

// Slot creation and long transactions.
pub static UNBLOCK_SLOT_CREATION: GucSetting<bool> = GucSetting::<bool>::new(true);
pub static UNBLOCK_AFTER_S: GucSetting<i32> = GucSetting::<i32>::new(5);
pub static TERMINATE_BLOCKERS_AFTER_S: GucSetting<i32> = GucSetting::<i32>::new(-1);
pub static LONG_TRANSACTION_WARNING_S: GucSetting<i32> = GucSetting::<i32>::new(900);

// Mirror checks.
pub static MIRROR_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(60);
pub static PROBE_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static PASS_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);
/// `cdc_health.expect_failover`: when logical slots must be ready for a promotion.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Debug)]
pub enum ExpectFailover {
    /// When a physical standby streams from this server.
    #[name = c"auto"]
    Auto,
    #[name = c"on"]
    On,
    #[name = c"off"]
    Off,
}
pub static EXPECT_FAILOVER: GucSetting<ExpectFailover> =
    GucSetting::<ExpectFailover>::new(ExpectFailover::Auto);

// The metrics endpoint.
pub static METRICS_ADDRESS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// `cdc_health.metrics_auth_token`, defined by hand: its SHOW hook hides the value.
static mut METRICS_AUTH_TOKEN: *mut std::ffi::c_char = std::ptr::null_mut();
// Alert delivery.
pub static DELIVERY_MAX_AGE_S: GucSetting<i32> = GucSetting::<i32>::new(86_400);
pub static DELIVERY_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 86_400);
pub static DELIVERY_MAX_PENDING: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static ALERTMANAGER_RESEND_S: GucSetting<i32> = GucSetting::<i32>::new(60);
pub static CLUSTER_NAME: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static CLICKHOUSE_MAX_LINE_KB: GucSetting<i32> =
    GucSetting::<i32>::new((cdc_health_rules::clickhouse::DEFAULT_MAX_LINE_BYTES >> 10) as i32);

/// Registers every setting. Postmaster-context settings can only be created while the
/// library is preloaded (PostgreSQL raises FATAL otherwise), so they exist only then.
pub fn register() {
    // SAFETY: a plain read of a postmaster global.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        register_postmaster();
    }
    register_thresholds();
    register_worker();
    register_history_rules();
    register_history();
    register_alerts();
    register_creations();
    register_mirrors();
    register_delivery();
    register_metrics();
}

fn register_postmaster() {
    GucRegistry::define_string_guc(
        c"cdc_health.database",
        c"Database the background worker connects to; create the extension there.",
        c"The worker watches every slot of the cluster from this one database.",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"cdc_health.max_tracked_slots",
        c"How many slots the worker keeps sample history for in shared memory.",
        c"Slots beyond this are still assessed, without history-based findings.",
        &MAX_TRACKED_SLOTS,
        1,
        10_000,
        GucContext::Postmaster,
        GucFlags::default(),
    );
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

/// How often the worker runs and how long a pass may take.
fn register_worker() {
    sighup_int(
        c"cdc_health.interval",
        c"How often the background worker samples and assesses every slot.",
        c"",
        &INTERVAL_MS,
        1000,
        3_600_000,
        GucFlags::UNIT_MS,
    );
    sighup_int(
        c"cdc_health.pass_timeout",
        c"Longest time one monitoring pass of the worker may take before it is cancelled (and retried at the next interval).",
        c"",
        &PASS_TIMEOUT_MS,
        1000,
        3_600_000,
        GucFlags::UNIT_MS,
    );
}

/// The history rules: stalled, decoding spill and the loss forecast.
fn register_history_rules() {
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

/// History rows, their retention and the heartbeat.
fn register_history() {
    sighup_int(
        c"cdc_health.history_interval",
        c"Least time between two cdc_health.slot_history rows of a slot whose WAL figures move (state changes are written at once).",
        c"",
        &HISTORY_INTERVAL_S,
        1,
        86_400,
        GucFlags::UNIT_S,
    );
    sighup_int(
        c"cdc_health.history_idle_interval",
        c"Longest time without a cdc_health.slot_history row for a slot whose figures do not move.",
        c"",
        &HISTORY_IDLE_INTERVAL_S,
        1,
        7 * 86_400,
        GucFlags::UNIT_S,
    );
    sighup_int(
        c"cdc_health.history_retention",
        c"History rows older than this are deleted, in small batches.",
        c"",
        &HISTORY_RETENTION_S,
        60,
        i32::MAX,
        GucFlags::UNIT_S,
    );
    sighup_int(
        c"cdc_health.history_full_retention",
        c"History keeps every row this long; older ones become one row per slot per 15 minutes (state changes are kept).",
        c"",
        &HISTORY_FULL_RETENTION_S,
        0,
        i32::MAX,
        GucFlags::UNIT_S,
    );
    sighup_int(
        c"cdc_health.history_15min_retention",
        c"History keeps 15-minute rows this long; older ones become one row per slot per hour.",
        c"",
        &HISTORY_15MIN_RETENTION_S,
        0,
        i32::MAX,
        GucFlags::UNIT_S,
    );
    sighup_int(
        c"cdc_health.heartbeat_interval",
        c"How often the worker updates cdc_health.heartbeat; 0 (the default) turns the heartbeat off.",
        c"",
        &HEARTBEAT_INTERVAL_S,
        0,
        86_400,
        GucFlags::UNIT_S,
    );
}

/// Alert reminders, hold-down and the NOTIFY channel.
fn register_alerts() {
    sighup_int(
        c"cdc_health.alert_reminder_interval",
        c"How often an open alert is sent again as a reminder; 0 disables reminders.",
        c"",
        &ALERT_REMINDER_S,
        0,
        i32::MAX,
        GucFlags::UNIT_S,
    );
    sighup_int(
        c"cdc_health.alert_holddown",
        c"A finding that comes back within this time after its alert resolved reopens that alert.",
        c"",
        &ALERT_HOLDDOWN_S,
        0,
        i32::MAX,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"cdc_health.notify_channel",
        c"Channel alerts are sent on with NOTIFY.",
        c"",
        &NOTIFY_CHANNEL,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// Slot creation (the nudge, opt-in termination), long transactions and failover readiness.
fn register_creations() {
    sighup_int(
        c"cdc_health.unblock_after",
        c"How long a logical slot creation may wait before the worker logs standby snapshots for it.",
        c"",
        &UNBLOCK_AFTER_S,
        0,
        i32::MAX,
        GucFlags::UNIT_S,
    );
    sighup_int(
        c"cdc_health.terminate_blockers_after",
        c"Terminate an idle-in-transaction session that has blocked a slot creation this long; -1 (the default) never.",
        c"Never terminates running queries, walsenders or prepared transactions.",
        &TERMINATE_BLOCKERS_AFTER_S,
        -1,
        i32::MAX,
        GucFlags::UNIT_S,
    );
    sighup_int(
        c"cdc_health.long_transaction_warning",
        c"A transaction this old that holds a logical slot back raises long_transaction.",
        c"",
        &LONG_TRANSACTION_WARNING_S,
        1,
        i32::MAX,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_bool_guc(
        c"cdc_health.unblock_slot_creation",
        c"Log standby snapshots so that a waiting logical slot creation can finish.",
        c"",
        &UNBLOCK_SLOT_CREATION,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"cdc_health.expect_failover",
        c"When logical slots must survive a promotion (failover_unready, 17+): auto, on or off.",
        c"auto: while a physical standby streams from this server.",
        &EXPECT_FAILOVER,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// Mirror checks and the ClickHouse wrapper.
fn register_mirrors() {
    sighup_int(
        c"cdc_health.mirror_interval",
        c"How often the mirror worker probes each mirror and freshness check.",
        c"",
        &MIRROR_INTERVAL_S,
        1,
        86_400,
        GucFlags::UNIT_S,
    );
    sighup_int(
        c"cdc_health.probe_timeout",
        c"Longest time one mirror probe may take before it is cancelled and reported as probe_failed.",
        c"",
        &PROBE_TIMEOUT_MS,
        100,
        3_600_000,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"cdc_health.clickhouse_max_line",
        c"Longest line (one row) of a ClickHouse answer the wrapper reads; a longer one is an error.",
        c"Bounds the memory one scan can take.",
        &CLICKHOUSE_MAX_LINE_KB,
        1,
        1 << 20,
        GucContext::Userset,
        GucFlags::UNIT_KB,
    );
}

/// Alert delivery.
fn register_delivery() {
    sighup_int(
        c"cdc_health.delivery_max_age",
        c"How long a sink is retried with an alert transition before it is given up (delivery_failed).",
        c"",
        &DELIVERY_MAX_AGE_S,
        1,
        i32::MAX,
        GucFlags::UNIT_S,
    );
    sighup_int(
        c"cdc_health.delivery_retention",
        c"How long delivered and given-up transitions stay in cdc_health.deliveries.",
        c"",
        &DELIVERY_RETENTION_S,
        0,
        i32::MAX,
        GucFlags::UNIT_S,
    );
    sighup_int(
        c"cdc_health.delivery_max_pending",
        c"Most transitions waiting per sink; beyond it the oldest are dropped, counted and logged.",
        c"",
        &DELIVERY_MAX_PENDING,
        1,
        i32::MAX,
        GucFlags::default(),
    );
    sighup_int(
        c"cdc_health.alertmanager_resend_interval",
        c"How often open alerts are sent again to alertmanager sinks, as Prometheus does.",
        c"Keep it below Alertmanager's resolve_timeout.",
        &ALERTMANAGER_RESEND_S,
        1,
        86_400,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"cdc_health.cluster_name",
        c"The cluster label of delivered alerts; empty: cluster_name, else the system identifier.",
        c"",
        &CLUSTER_NAME,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// The /metrics endpoint.
fn register_metrics() {
    GucRegistry::define_string_guc(
        c"cdc_health.metrics_address",
        c"Address (host:port) the /metrics endpoint listens on; empty (the default) turns it off.",
        c"For example 127.0.0.1:9188. Reloading re-binds; a bad address or a port in use is \
          logged and retried.",
        &METRICS_ADDRESS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // SAFETY: defined once per process, while the library loads; PostgreSQL owns the string.
    unsafe {
        pg_sys::DefineCustomStringVariable(
            c"cdc_health.metrics_auth_token".as_ptr(),
            c"Bearer token the /metrics endpoint requires when set (superusers only; never shown)."
                .as_ptr(),
            c"Scrapers send Authorization: Bearer <token>.".as_ptr(),
            &raw mut METRICS_AUTH_TOKEN,
            c"".as_ptr(),
            pg_sys::GucContext::PGC_SIGHUP,
            (pg_sys::GUC_SUPERUSER_ONLY | pg_sys::GUC_NO_SHOW_ALL) as i32,
            None,
            None,
            Some(show_hidden),
        );
    }
}

fn register_thresholds() {
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

pub fn history_limits() -> HistoryLimits {
    HistoryLimits {
        stall_after_secs: f64::from(STALL_AFTER_S.get()),
        eta_warning_secs: f64::from(ETA_WARNING_S.get()),
        eta_critical_secs: f64::from(ETA_CRITICAL_S.get()),
        forecast_window_secs: f64::from(FORECAST_WINDOW_S.get()),
        stall_min_bytes: i64::from(STALL_MIN_WAL_KB.get()) << 10,
        spill_warning_bytes_per_min: i64::from(SPILL_WARNING_MB.get()) << 20,
    }
}

pub fn alert_policy() -> AlertPolicy {
    AlertPolicy {
        interval_secs: interval_secs(),
        reminder_secs: f64::from(ALERT_REMINDER_S.get()),
        holddown_secs: f64::from(ALERT_HOLDDOWN_S.get()),
    }
}

pub fn mirror_interval_secs() -> f64 {
    f64::from(MIRROR_INTERVAL_S.get())
}

pub fn interval_secs() -> f64 {
    f64::from(INTERVAL_MS.get()) / 1000.0
}

fn text(setting: &GucSetting<Option<CString>>, default: &str) -> String {
    setting
        .get()
        .and_then(|s| s.into_string().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default.to_string())
}

pub fn database() -> String {
    text(&DATABASE, "postgres")
}

/// SHOW, pg_settings and the server's own reports never show the token, only whether one
/// is set.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn show_hidden() -> *const std::ffi::c_char {
    if metrics_auth_token().is_some() {
        c"(set)".as_ptr()
    } else {
        c"".as_ptr()
    }
}

/// `cdc_health.metrics_auth_token`, `None` when empty.
pub fn metrics_auth_token() -> Option<String> {
    // SAFETY: PostgreSQL keeps the variable a valid C string (or null) between reloads.
    let raw = unsafe { METRICS_AUTH_TOKEN };
    if raw.is_null() {
        return None;
    }
    // SAFETY: checked for NULL above; a GUC string is NUL-terminated.
    let token = unsafe { std::ffi::CStr::from_ptr(raw) }.to_string_lossy();
    (!token.is_empty()).then(|| token.into_owned())
}

pub fn metrics_address() -> String {
    text(&METRICS_ADDRESS, "")
}

pub fn notify_channel() -> String {
    text(&NOTIFY_CHANNEL, "cdc_health")
}

/// Slots tracked in shared memory; read once when shared memory is sized.
pub fn max_tracked_slots() -> usize {
    usize::try_from(MAX_TRACKED_SLOTS.get()).unwrap_or(1).max(1)
}

/// Retained WAL the forecast aims at when no max_slot_wal_keep_size budget is set: the
/// `retained_wal_high` critical level.
pub fn forecast_ceiling_bytes() -> i64 {
    thresholds().retained_wal_warning_bytes.saturating_mul(4)
}

/// `cdc_health.terminate_blockers_after` in seconds; `None` when off (-1).
pub fn terminate_blockers_after() -> Option<f64> {
    let secs = TERMINATE_BLOCKERS_AFTER_S.get();
    (secs >= 0).then(|| f64::from(secs))
}

/// `cdc_health.clickhouse_max_line` in bytes.
pub fn clickhouse_max_line_bytes() -> usize {
    usize::try_from(CLICKHOUSE_MAX_LINE_KB.get())
        .unwrap_or(1)
        .max(1)
        << 10
}

/// Delivery settings in seconds (`cdc_health.delivery_*`).
pub fn delivery_max_age_secs() -> f64 {
    f64::from(DELIVERY_MAX_AGE_S.get())
}

pub fn delivery_retention_secs() -> f64 {
    f64::from(DELIVERY_RETENTION_S.get())
}

pub fn delivery_max_pending() -> i64 {
    i64::from(DELIVERY_MAX_PENDING.get())
}

pub fn alertmanager_resend_secs() -> f64 {
    f64::from(ALERTMANAGER_RESEND_S.get())
}

/// `cdc_health.cluster_name` as set; empty when it is not (the caller falls back).
pub fn cluster_name_setting() -> String {
    text(&CLUSTER_NAME, "")
}
