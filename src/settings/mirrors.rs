//! Mirror checks: how often they are probed and how long a probe may take.

use pgrx::{GucFlags, GucSetting};

use super::sighup_int;

static MIRROR_INTERVAL_S: GucSetting<i32> = GucSetting::<i32>::new(60);
static PROBE_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// How often checks are probed and how long a probe may take.
pub fn register() {
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
}

pub fn mirror_interval_secs() -> f64 {
    f64::from(MIRROR_INTERVAL_S.get())
}

/// `cdc_health.probe_timeout` in milliseconds.
pub fn probe_timeout_ms() -> i32 {
    PROBE_TIMEOUT_MS.get()
}
