//! History rows (`cdc_health.slot_history`): how often they are written, how long they are
//! kept at which resolution; and the heartbeat.

use pgrx::{GucFlags, GucSetting};

use super::sighup_int;

static HISTORY_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(60);
static HISTORY_IDLE_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(3600);
static HISTORY_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(14 * 86_400);
static HISTORY_FULL_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(86_400);
static HISTORY_15MIN_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(3 * 86_400);
static HEARTBEAT_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(0);

/// History rows, their retention and the heartbeat.
pub fn register() {
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

/// `cdc_health.history_interval`: least time between two rows of a moving slot.
pub fn history_interval_secs() -> f64 {
    f64::from(HISTORY_INTERVAL_S.get())
}

/// `cdc_health.history_idle_interval`: longest time without a row for a still slot.
pub fn history_idle_interval_secs() -> f64 {
    f64::from(HISTORY_IDLE_INTERVAL_S.get())
}

pub fn history_retention_secs() -> f64 {
    f64::from(HISTORY_RETENTION_S.get())
}

pub fn history_full_retention_secs() -> f64 {
    f64::from(HISTORY_FULL_RETENTION_S.get())
}

pub fn history_15min_retention_secs() -> f64 {
    f64::from(HISTORY_15MIN_RETENTION_S.get())
}

/// `cdc_health.heartbeat_interval` in seconds; `None` when off (0).
pub fn heartbeat_interval_secs() -> Option<f64> {
    let secs = HEARTBEAT_INTERVAL_S.get();
    (secs > 0).then(|| f64::from(secs))
}
