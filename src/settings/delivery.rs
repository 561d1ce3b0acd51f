//! Alert delivery: retries, retention, the pending bound, Alertmanager resends and the
//! cluster label.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

use super::{sighup_int, text};

static DELIVERY_MAX_AGE_S: GucSetting<i32> = GucSetting::<i32>::new(86_400);
static DELIVERY_RETENTION_S: GucSetting<i32> = GucSetting::<i32>::new(7 * 86_400);
static DELIVERY_MAX_PENDING: GucSetting<i32> = GucSetting::<i32>::new(10_000);
static ALERTMANAGER_RESEND_S: GucSetting<i32> = GucSetting::<i32>::new(60);
static CLUSTER_NAME: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Alert delivery.
pub fn register() {
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
