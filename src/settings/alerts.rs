//! Alerts: reminders, hold-down and the NOTIFY channel.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

use super::{sighup_int, text};

static ALERT_REMINDER_S: GucSetting<i32> = GucSetting::<i32>::new(900);
static ALERT_HOLDDOWN_S: GucSetting<i32> = GucSetting::<i32>::new(300);
static NOTIFY_CHANNEL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"cdc_health"));

/// Alert reminders, hold-down and the NOTIFY channel.
pub fn register() {
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

pub fn alert_reminder_secs() -> f64 {
    f64::from(ALERT_REMINDER_S.get())
}

pub fn alert_holddown_secs() -> f64 {
    f64::from(ALERT_HOLDDOWN_S.get())
}

pub fn notify_channel() -> String {
    text(&NOTIFY_CHANNEL, "cdc_health")
}
