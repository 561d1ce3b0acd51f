//! The background worker's settings: the postmaster ones (its database, the size of shared
//! memory) and how often it runs and how long a pass may take.

use std::ffi::CString;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

use super::{sighup_int, text};

static DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
static MAX_TRACKED_SLOTS: GucSetting<i32> = GucSetting::<i32>::new(100);
static INTERVAL_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);
static PASS_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(60_000);

/// Postmaster-context settings: they exist only while the library is preloaded.
pub fn register_postmaster() {
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

/// How often the worker runs and how long a pass may take.
pub fn register() {
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

pub fn database() -> String {
    text(&DATABASE, "postgres")
}

/// Slots tracked in shared memory; read once when shared memory is sized.
pub fn max_tracked_slots() -> usize {
    usize::try_from(MAX_TRACKED_SLOTS.get()).unwrap_or(1).max(1)
}

pub fn interval_secs() -> f64 {
    f64::from(INTERVAL_MS.get()) / 1000.0
}

/// `cdc_health.interval` in milliseconds, as set.
pub fn interval_ms() -> i32 {
    INTERVAL_MS.get()
}

/// `cdc_health.pass_timeout` in milliseconds.
pub fn pass_timeout_ms() -> i32 {
    PASS_TIMEOUT_MS.get()
}
