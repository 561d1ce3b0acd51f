//! cdc_health: health of change-data-capture pipelines, from inside PostgreSQL.
//!
//! The decisions live in the `cdc_health_rules` crate (plain Rust); the modules here are the
//! PostgreSQL glue around them: settings, sampling the catalogs, and the SQL functions.

use pgrx::prelude::*;

mod alerts;
mod api;
mod clickhouse;
mod delivery;
mod history;
mod metrics;
mod mirrors;
mod monitor;
mod open_alerts;
mod outbox;
mod pg;
mod released;
mod schema;
mod server;
mod settings;
mod shmem;
mod slots;
mod worker;

::pgrx::pg_module_magic!(name, version);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::register();
    // SAFETY: a plain read of a flag the postmaster sets while it loads preloaded libraries.
    let preloading = unsafe { pg_sys::process_shared_preload_libraries_in_progress };
    // Before the redaction hook, which then runs first: consumers record redacted messages.
    if preloading {
        slots::consumers::hooks::init();
    }
    pg::redaction::init();
    // A mistyped cdc_health.* name is an error, not a placeholder kept silently (and
    // placeholders set before the library was loaded are checked now).
    // SAFETY: called once while the library loads, after our settings are defined.
    unsafe { pg_sys::MarkGUCPrefixReserved(c"cdc_health".as_ptr()) };
    // The worker and its shared memory exist only when the library is preloaded; without it
    // cdc_health() still assesses every slot on demand.
    if preloading {
        shmem::init(&[metrics::snapshot::AREA_HOOKS, slots::consumers::ring::AREA]);
        worker::register();
        mirrors::worker::register();
        metrics::endpoint::register();
        delivery::worker::register();
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![
            "wal_level = logical",
            "max_replication_slots = 16",
            "max_wal_senders = 16",
        ]
    }
}
