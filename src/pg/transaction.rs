//! A worker's own transactions: each unit of work in one, an error in it caught, logged at
//! most every few minutes and rolled back, and the worker's session settings.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgTryBuilder;

use super::clock::now_secs;

/// A repeated failure is logged once per five minutes, not once per pass.
const REPEAT_LOG_SECS: f64 = 300.0;

pub fn log_failure(what: &str, message: String, last: &mut Option<(String, f64)>) {
    let now = now_secs();
    let repeated = matches!(last, Some((m, at)) if *m == message && now - *at < REPEAT_LOG_SECS);
    if !repeated {
        warning!("cdc_health: {what}: {message}");
        *last = Some((message, now));
    }
}

/// The worker's own statements give up rather than wait behind a lock or run away, resolve
/// names in pg_catalog only, and what it commits (an alert it is about to announce) survives a crash even where the server runs
/// with `synchronous_commit = off`.
pub fn limit_own_statements() {
    for (name, value) in [
        (c"lock_timeout", c"5s"),
        (c"synchronous_commit", c"on"),
        (c"application_name", c"cdc_health worker"),
        // Every name the worker's statements use resolves in pg_catalog first; no schema a
        // role can create objects in is on the path of this superuser session.
        (c"search_path", c"pg_catalog, pg_temp"),
    ] {
        // SAFETY: constant names and values of settings that exist, set for this worker's
        // session (as a superuser may), outside any transaction's GUC nest level.
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

/// The message of an error caught by `PgTryBuilder`.
pub fn caught_message(e: pg_sys::panic::CaughtError) -> String {
    match e {
        pg_sys::panic::CaughtError::PostgresError(r)
        | pg_sys::panic::CaughtError::ErrorReport(r) => r.message().to_string(),
        pg_sys::panic::CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
    }
}

/// Runs `body` in its own transaction. A PostgreSQL error (or panic) inside it or at commit
/// aborts that transaction and comes back as `Err(message)` instead of ending the worker.
pub fn guarded<R>(body: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
    // SAFETY: called between transactions by a worker connected to a database: it starts
    // one, with a snapshot for the body's statements.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let result = PgTryBuilder::new(|| {
        let r = body();
        // SAFETY: pops the snapshot pushed above and commits the transaction started above.
        unsafe {
            pg_sys::PopActiveSnapshot();
            pg_sys::CommitTransactionCommand();
        }
        Ok(r)
    })
    .catch_others(|e| Err(caught_message(e)))
    .execute();
    if result.is_err() {
        // SAFETY: the error left the transaction started above failed; aborting it is how
        // a worker recovers (the snapshot stack is reset with it).
        unsafe { pg_sys::AbortCurrentTransaction() };
    }
    result
}
