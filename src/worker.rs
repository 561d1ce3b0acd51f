//! The background worker: a monitoring pass every `cdc_health.interval`.
//!
//! Each pass runs in its own short transaction, so the worker never holds a snapshot between
//! passes (it must not pin the xmin horizon or delay slot creation itself). An error in a pass
//! is logged and the transaction aborted; the worker carries on with the next pass.

use std::time::Duration;

use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgTryBuilder;

use crate::monitor::{self, now_secs};
use crate::{settings, shmem};

/// Registers the worker; called from `_PG_init` while preloading.
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

/// What the worker last said about the extension, so each state is logged once.
#[derive(PartialEq, Clone, Copy)]
enum Presence {
    Unknown,
    Present,
    Missing,
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn cdc_health_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = settings::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    limit_own_statements();
    let pid = unsafe { pg_sys::MyProcPid };
    shmem::update_worker(|w| {
        w.pid = pid;
        w.started_at = now_secs();
    });
    log!("cdc_health: worker started in database \"{database}\" (pid {pid})");

    let mut presence = Presence::Unknown;
    let mut last_failure: Option<(String, f64)> = None;
    loop {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        let outcome = guarded(|| {
            let present = monitor::extension_present()?;
            let applied = if present {
                monitor::pass(false)?.map(|a| a.len())
            } else {
                None
            };
            Ok::<_, pgrx::spi::Error>((present, applied))
        });
        let in_recovery = unsafe { pg_sys::RecoveryInProgress() };
        match outcome {
            Ok(Ok((present, _))) => {
                let now = if present {
                    Presence::Present
                } else {
                    Presence::Missing
                };
                if now != presence {
                    match now {
                        Presence::Missing => log!(
                            "cdc_health: extension not created in database \"{database}\"; \
                             waiting for CREATE EXTENSION cdc_health there"
                        ),
                        _ => log!("cdc_health: monitoring replication slots"),
                    }
                    presence = now;
                }
                shmem::update_worker(|w| {
                    w.passes += 1;
                    w.last_pass_at = now_secs();
                    w.extension_present = present;
                    w.in_recovery = in_recovery;
                });
            }
            Ok(Err(e)) => failed(e.to_string(), &mut last_failure),
            Err(message) => failed(message, &mut last_failure),
        }
        let interval = Duration::from_millis(settings::INTERVAL_MS.get().max(1000) as u64);
        if !BackgroundWorker::wait_latch(Some(interval)) {
            break;
        }
    }
    shmem::update_worker(|w| w.pid = 0);
    log!("cdc_health: worker stopped");
}

/// A repeated failure is logged once per five minutes, not once per pass.
const REPEAT_LOG_SECS: f64 = 300.0;

fn failed(message: String, last: &mut Option<(String, f64)>) {
    shmem::update_worker(|w| w.failed_passes += 1);
    let now = now_secs();
    let repeated = matches!(last, Some((m, at)) if *m == message && now - *at < REPEAT_LOG_SECS);
    if !repeated {
        warning!("cdc_health: monitoring pass failed, retrying every interval: {message}");
        *last = Some((message, now));
    }
}

/// The worker's own statements give up rather than wait behind a lock or run away.
fn limit_own_statements() {
    for (name, value) in [
        (c"lock_timeout", c"5s"),
        (c"statement_timeout", c"60s"),
        (c"application_name", c"cdc_health worker"),
    ] {
        unsafe {
            pg_sys::SetConfigOption(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_SUSET,
                pg_sys::GucSource::PGC_S_SESSION,
            );
        }
    }
}

/// Runs `body` in its own transaction. A PostgreSQL error (or panic) inside it or at commit
/// aborts that transaction and comes back as `Err(message)` instead of ending the worker.
fn guarded<R>(body: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let result = PgTryBuilder::new(|| {
        let r = body();
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        Ok(r)
    })
    .catch_others(|e| {
        Err(match e {
            pg_sys::panic::CaughtError::PostgresError(r)
            | pg_sys::panic::CaughtError::ErrorReport(r) => r.message().to_string(),
            pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
        })
    })
    .execute();
    if result.is_err() {
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    result
}
