//! Keeps secret settings out of the server log.
//!
//! PostgreSQL logs the new value of every setting changed at reload ("parameter ... changed
//! to ...") and, with `log_statement`, the `ALTER SYSTEM` that set it. An `emit_log_hook`
//! rewrites those lines for our secret settings and hides the statement of any report made
//! while such a statement runs.

use std::ffi::CStr;

use pgrx::pg_sys;

/// Settings whose values never reach the log.
const SECRET_SETTINGS: [&str; 1] = ["cdc_health.metrics_auth_token"];

static mut PREV_EMIT_LOG_HOOK: pg_sys::emit_log_hook_type = None;

/// Installs the hook; called once per process from `_PG_init`.
pub fn init() {
    // SAFETY: hooks are chained once per process, while the library loads.
    unsafe {
        PREV_EMIT_LOG_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(redact);
    }
}

fn secret_in(text: &[u8]) -> Option<&'static str> {
    SECRET_SETTINGS.into_iter().find(|name| {
        text.windows(name.len())
            .any(|w| w.eq_ignore_ascii_case(name.as_bytes()))
    })
}

/// Must not raise an error: it runs inside error reporting.
unsafe extern "C-unwind" fn redact(edata: *mut pg_sys::ErrorData) {
    if let Some(edata) = edata.as_mut() {
        if !edata.message.is_null() {
            let message = CStr::from_ptr(edata.message).to_bytes();
            if let Some(name) = secret_in(message) {
                let text = format!("{}: (a secret setting: {name}; value not logged)\0", {
                    // Keep the report's kind ("parameter ... changed to", "statement").
                    let cut = message
                        .iter()
                        .position(|&b| b == b'"' || b == b':')
                        .unwrap_or(message.len());
                    String::from_utf8_lossy(&message[..cut]).trim().to_string()
                });
                edata.message = pg_sys::pstrdup(text.as_ptr().cast());
            }
        }
        let query = pg_sys::debug_query_string;
        if !query.is_null() && secret_in(CStr::from_ptr(query).to_bytes()).is_some() {
            edata.hide_stmt = true;
        }
    }
    if let Some(prev) = PREV_EMIT_LOG_HOOK {
        prev(edata);
    }
}
