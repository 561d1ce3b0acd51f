//! Keeps secrets out of the server log.
//!
//! PostgreSQL logs the new value of every setting changed at reload ("parameter ... changed
//! to ..."), with `log_statement` the `ALTER SYSTEM` that set it, and with an error the
//! statement that failed (`log_min_error_statement`, `error` by default): a refused
//! `add_sink(...)` call would log its URL's password and its routing key. An `emit_log_hook`
//! cuts messages after the secret setting's name, the server's log lines about a statement
//! that calls `add_sink` after the call, and hides the statement, the context and what quotes
//! them in any report made while such a statement runs (`log_redaction`).
//!
//! The hook runs inside error reporting, in every backend: it allocates nothing, raises
//! nothing and reads each string once (the message is cut in place).

use std::ffi::CStr;

use cdc_health_rules::log_redaction::{redact_message, redact_quoting, statement_has_secret};
use pgrx::pg_sys;

static mut PREV_EMIT_LOG_HOOK: pg_sys::emit_log_hook_type = None;

/// Installs the hook; called once per process from `_PG_init`.
pub fn init() {
    // SAFETY: hooks are chained once per process, while the library loads.
    unsafe {
        PREV_EMIT_LOG_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(redact);
    }
}

/// A report's C string as its bytes and its NUL, to be cut in place.
///
/// # Safety
/// `text` is NULL or a NUL-terminated string this code may write inside of (a report's
/// palloc'd message or detail, freed by PostgreSQL after the hook whatever it holds).
unsafe fn c_string_bytes<'a>(text: *mut std::ffi::c_char) -> Option<&'a mut [u8]> {
    if text.is_null() {
        return None;
    }
    // SAFETY: as the function's contract says; the length includes the NUL.
    unsafe {
        let len = CStr::from_ptr(text).to_bytes_with_nul().len();
        Some(std::slice::from_raw_parts_mut(text.cast::<u8>(), len))
    }
}

/// Must not raise an error or allocate: it runs inside error reporting.
unsafe extern "C-unwind" fn redact(edata: *mut pg_sys::ErrorData) {
    // SAFETY: PostgreSQL passes the report being emitted (or NULL); its message and detail
    // are NULL or NUL-terminated palloc'd strings that it frees after this hook.
    unsafe {
        if let Some(edata) = edata.as_mut() {
            let query = pg_sys::debug_query_string;
            let secret = !query.is_null() && statement_has_secret(CStr::from_ptr(query).to_bytes());
            // The server's own lines about the running statement (log_statement,
            // log_min_duration_statement) are LOG level; errors keep their words.
            let log_line = secret
                && matches!(
                    u32::try_from(edata.elevel),
                    Ok(pg_sys::LOG | pg_sys::LOG_SERVER_ONLY)
                );
            if let Some(message) = c_string_bytes(edata.message) {
                redact_message(message, log_line);
            }
            if secret {
                // The statement (STATEMENT:), where it was called from (CONTEXT: a PL/pgSQL
                // line quoting the call) and what quotes it or its parameters.
                edata.hide_stmt = true;
                edata.hide_ctx = true;
                if let Some(query) = c_string_bytes(edata.internalquery) {
                    redact_quoting(query);
                }
                if log_line {
                    for text in [edata.detail, edata.detail_log] {
                        if let Some(text) = c_string_bytes(text) {
                            redact_quoting(text);
                        }
                    }
                }
            }
        }
        if let Some(prev) = PREV_EMIT_LOG_HOOK {
            prev(edata);
        }
    }
}
