//! Slot creation (the nudge, opt-in termination of blockers), long transactions and
//! failover readiness.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

use super::sighup_int;

static UNBLOCK_SLOT_CREATION: GucSetting<bool> = GucSetting::<bool>::new(true);
static UNBLOCK_AFTER_S: GucSetting<i32> = GucSetting::<i32>::new(5);
static TERMINATE_BLOCKERS_AFTER_S: GucSetting<i32> = GucSetting::<i32>::new(-1);
static LONG_TRANSACTION_WARNING_S: GucSetting<i32> = GucSetting::<i32>::new(900);

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

static EXPECT_FAILOVER: GucSetting<ExpectFailover> =
    GucSetting::<ExpectFailover>::new(ExpectFailover::Auto);

/// Slot creation (the nudge, opt-in termination), long transactions and failover readiness.
pub fn register() {
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

/// `cdc_health.unblock_slot_creation`: whether standby snapshots are logged for waiting
/// slot creations.
pub fn unblock_slot_creation() -> bool {
    UNBLOCK_SLOT_CREATION.get()
}

/// `cdc_health.unblock_after` in seconds.
pub fn unblock_after_secs() -> f64 {
    f64::from(UNBLOCK_AFTER_S.get())
}

/// `cdc_health.terminate_blockers_after` in seconds; `None` when off (-1).
pub fn terminate_blockers_after() -> Option<f64> {
    let secs = TERMINATE_BLOCKERS_AFTER_S.get();
    (secs >= 0).then(|| f64::from(secs))
}

/// `cdc_health.long_transaction_warning` in seconds.
pub fn long_transaction_warning_secs() -> f64 {
    f64::from(LONG_TRANSACTION_WARNING_S.get())
}

pub fn expect_failover() -> ExpectFailover {
    EXPECT_FAILOVER.get()
}
