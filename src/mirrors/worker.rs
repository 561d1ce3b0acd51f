//! The mirror worker: probes the checks that are due, each in its own transaction, as the
//! check's owner and within `cdc_health.probe_timeout`. The slot worker watches it
//! (`end_overdue_probe`).

use std::time::Duration;

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::probe::{self, Measured};
use super::store::{self, StoredCheck};
use crate::pg::clock::now_secs;
use crate::pg::timer::{self, StatementTimer};
use crate::pg::transaction::{guarded, limit_own_statements, log_failure};
use crate::{settings, shmem};

/// Registers the mirror worker; called from `_PG_init` while preloading, after the slot
/// worker.
pub fn register() {
    // Mirror probes wait on the network; in their own process they never delay slot passes.
    BackgroundWorkerBuilder::new("cdc_health mirrors")
        .set_type("cdc_health mirrors")
        .set_library("cdc_health")
        .set_function("cdc_health_mirror_worker_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn cdc_health_mirror_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    // SIGTERM is PostgreSQL's own `die`: a probe's SQL runs code that is not ours, and a
    // flag it never looks at would let it outlive a fast shutdown. `die` ends the process
    // at the next interrupt check with a FATAL error, which PL/pgSQL cannot catch.
    // SAFETY: installing a signal handler in our own process, before any probe runs.
    unsafe {
        #[cfg(not(feature = "pg18"))]
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(postgres_die));
        #[cfg(feature = "pg18")]
        pg_sys::pqsignal_be(pg_sys::SIGTERM as i32, Some(postgres_die));
    }
    let database = settings::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    limit_own_statements();
    log!("cdc_health: mirror worker started in database \"{database}\"");
    let mut last_failure: Option<(String, f64)> = None;
    loop {
        if BackgroundWorker::sighup_received() {
            crate::pg::backend::reload_config();
        }
        let interval = settings::mirror_interval_secs();
        let due = guarded(|| {
            if crate::pg::extension::installed()?.is_current() {
                store::due(interval)
            } else {
                Ok(Vec::new())
            }
        });
        match due {
            Ok(Ok(checks)) => {
                for check in checks {
                    if let Err(message) = probe_and_record(&check) {
                        log_failure("mirror check failed", message, &mut last_failure);
                    }
                    pg_sys::check_for_interrupts!();
                }
            }
            Ok(Err(e)) => log_failure("mirror pass failed", e.to_string(), &mut last_failure),
            Err(message) => log_failure("mirror pass failed", message, &mut last_failure),
        }
        let wait = Duration::from_secs_f64(interval.clamp(1.0, 5.0));
        if !BackgroundWorker::wait_latch(Some(wait)) {
            break;
        }
        // SIGTERM (die) ends the process here at the latest.
        pg_sys::check_for_interrupts!();
    }
    log!("cdc_health: mirror worker stopped");
}

unsafe extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler for backends (tcop/postgres.c), the C symbol itself:
    /// pgrx's `pg_sys::die` is a Rust wrapper, not a signal handler.
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

/// One probe in its own transaction, as the check's owner and within `probe_timeout`; its
/// failure is an outcome (`probe_failed`), recorded in a second transaction.
fn probe_and_record(check: &StoredCheck) -> Result<(), String> {
    let started = std::time::Instant::now();
    let timeout_ms = settings::probe_timeout_ms();
    let deadline = now_secs() + f64::from(timeout_ms) / 1000.0;
    shmem::watch_probe(Some((&check.check.name, deadline)));
    let measured = guarded(|| {
        let _timer = StatementTimer::arm(timeout_ms);
        probe::probe(check)
    });
    shmem::watch_probe(None);
    let measured = measured.unwrap_or_else(|error| {
        let error = if timer::expired(&error) {
            format!("no answer within cdc_health.probe_timeout ({timeout_ms} ms)")
        } else {
            error
        };
        Measured {
            probe: cdc_health_rules::mirrors::Probe::Failed { error },
            millis: started.elapsed().as_secs_f64() * 1000.0,
            bytes: 0,
        }
    });
    match guarded(|| probe::record(check, &measured)) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(message) => Err(message),
    }
}
