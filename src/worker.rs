//! The slot (monitor) worker: a monitoring pass every `cdc_health.interval`. The mirror
//! worker is `mirrors::worker`.
//!
//! Each pass runs in its own short transaction, so the worker never holds a snapshot between
//! passes (it must not pin the xmin horizon or delay slot creation itself). An error in a pass
//! is logged and the transaction aborted; the worker carries on with the next pass.

use std::time::{Duration, Instant};

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::monitor;
use crate::pg::clock::now_secs;
use crate::pg::extension::{Installed, LIBRARY_VERSION};
use crate::pg::timer::StatementTimer;
use crate::pg::transaction::{guarded, limit_own_statements, log_failure};
use crate::slots::consumers;
use crate::{history, metrics, mirrors, settings, shmem};

/// Registers the slot worker; called from `_PG_init` while preloading, before the mirror
/// worker (`mirrors::worker::register`).
pub fn register() {
    BackgroundWorkerBuilder::new("cdc_health monitor")
        .set_type("cdc_health")
        .set_library("cdc_health")
        .set_function("cdc_health_worker_main")
        .enable_spi_access()
        // Consistent state: a standby is monitored too (read-only).
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn cdc_health_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = settings::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    limit_own_statements();
    keep_freed_memory();
    let pid = crate::pg::backend::my_pid();
    shmem::update_worker(|w| {
        w.pid = pid;
        w.started_at = now_secs();
    });
    log!("cdc_health: worker started in database \"{database}\" (pid {pid})");
    // Consumer sessions that end or fail wake the worker (at most a pass a second).
    consumers::ring::set_worker_latch(Some(crate::pg::backend::my_latch()));

    // What the worker last said about the extension, so each state is logged once.
    let mut said: Option<Installed> = None;
    let mut last_failure: Option<(String, f64)> = None;
    loop {
        if BackgroundWorker::sighup_received() {
            crate::pg::backend::reload_config();
            // A changed retention applies at this pass, not a minute later.
            history::maintain_soon();
        }
        let pass_timeout = settings::pass_timeout_ms();
        let started = std::time::Instant::now();
        let events_seen = consumers::ring::head();
        let outcome = guarded(|| {
            // A pass that cannot finish (behind a lock, a slow disk) gives up at the limit.
            let _timer = StatementTimer::arm(pass_timeout);
            let installed = crate::pg::extension::installed()?;
            let pass = if let Installed::Current(extension) = installed {
                // The mirror worker's probes are watched from here, the other process.
                mirrors::end_overdue_probe()?;
                monitor::pass(false, Some(extension))?
            } else {
                // Nothing is monitored: the endpoint must not serve the last pass as current.
                metrics::snapshot::publish("");
                None
            };
            Ok::<_, pgrx::spi::Error>((installed, pass))
        });
        // The endpoint serves this pass until the next one. Rendered in a transaction of its
        // own: a table it reads being locked must not roll back the pass's alerts. Not at all
        // while the endpoint is off (a tenth of a pass at 2,000 slots); once it is turned on
        // it serves the next pass's state.
        let endpoint_on = !settings::metrics_address().is_empty();
        if !endpoint_on {
            metrics::snapshot::publish("");
        }
        if let (true, Ok(Ok((_, Some(pass))))) = (endpoint_on, &outcome) {
            let published = guarded(|| {
                let _timer = StatementTimer::arm(pass_timeout);
                metrics::publish(&pass.server, &pass.views)
            });
            match published {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    log_failure("rendering metrics failed", e.to_string(), &mut last_failure)
                }
                Err(message) => log_failure("rendering metrics failed", message, &mut last_failure),
            }
        }
        let in_recovery = crate::pg::backend::in_recovery();
        match outcome {
            Ok(Ok((installed, _))) => {
                if said.as_ref() != Some(&installed) {
                    say_installed(&installed, &database);
                }
                shmem::update_worker(|w| {
                    w.passes += 1;
                    w.last_pass_at = now_secs();
                    w.last_pass_secs = started.elapsed().as_secs_f64();
                    w.extension_present = installed != Installed::Missing;
                    w.awaiting_update = matches!(installed, Installed::OtherVersion(_));
                    w.in_recovery = in_recovery;
                });
                said = Some(installed);
            }
            Ok(Err(e)) => failed(e.to_string(), &mut last_failure),
            Err(message) => failed(message, &mut last_failure),
        }
        let interval = Duration::from_millis(settings::interval_ms().max(1000) as u64);
        if !wait_for_next_pass(started, interval, events_seen) {
            break;
        }
    }
    consumers::ring::set_worker_latch(None);
    shmem::update_worker(|w| w.pid = 0);
    log!("cdc_health: worker stopped");
}

/// Logs the extension's state in the worker's database, once per change.
fn say_installed(installed: &Installed, database: &str) {
    match installed {
        Installed::Missing => log!(
            "cdc_health: extension not created in database \"{database}\"; \
             waiting for CREATE EXTENSION cdc_health there"
        ),
        Installed::OtherVersion(v) => log!(
            "cdc_health: the extension in database \"{database}\" is version {v}, \
             the library {LIBRARY_VERSION}; waiting for ALTER EXTENSION cdc_health \
             UPDATE there"
        ),
        Installed::Current(_) => log!("cdc_health: monitoring replication slots"),
    }
}

/// Waits until the next pass is due: `interval` after the last one started, or sooner when a
/// consumer's session ended or failed since then, but never less than `EARLIEST` after the
/// last start, so a burst of errors costs at most a pass a second. False on SIGTERM.
fn wait_for_next_pass(started: Instant, interval: Duration, events_seen: u64) -> bool {
    const EARLIEST: Duration = Duration::from_secs(1);
    loop {
        let elapsed = started.elapsed();
        let Some(left) = interval.checked_sub(elapsed).filter(|d| !d.is_zero()) else {
            return true;
        };
        let woken = consumers::ring::head() != events_seen;
        if woken && elapsed >= EARLIEST {
            return true;
        }
        let wait = if woken {
            left.min(EARLIEST - elapsed)
        } else {
            left
        };
        if !BackgroundWorker::wait_latch(Some(wait)) {
            return false;
        }
    }
}

/// A pass allocates and frees the same few megabytes every interval (a view per slot).
/// glibc gives the top of the heap back to the kernel once more than 128 kB of it is free,
/// so at thousands of slots every pass faulted its pages in again (a tenth of its CPU); this
/// process keeps up to 64 MB of freed heap instead. Setting that turns off glibc's raising
/// of its mmap threshold, so blocks over 128 kB (the slot array, the views) were mapped and
/// unmapped, and faulted in, every pass: they come from the heap too, up to 16 MB.
fn keep_freed_memory() {
    // SAFETY: mallopt only tunes this process's allocator.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 16 << 20);
    }
}

fn failed(message: String, last: &mut Option<(String, f64)>) {
    shmem::update_worker(|w| w.failed_passes += 1);
    // Whatever the failure was, the next pass reads the alerts afresh.
    crate::open_alerts::forget();
    log_failure(
        "monitoring pass failed, retrying every interval",
        message,
        last,
    );
}
