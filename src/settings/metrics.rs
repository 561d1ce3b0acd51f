//! The /metrics endpoint: its address and its token.

use std::ffi::CString;

use pgrx::{pg_sys, GucContext, GucFlags, GucRegistry, GucSetting};

use super::text;

static METRICS_ADDRESS: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// `cdc_health.metrics_auth_token`, defined by hand: its SHOW hook hides the value.
static mut METRICS_AUTH_TOKEN: *mut std::ffi::c_char = std::ptr::null_mut();

/// The /metrics endpoint.
pub fn register() {
    GucRegistry::define_string_guc(
        c"cdc_health.metrics_address",
        c"Address (host:port) the /metrics endpoint listens on; empty (the default) turns it off.",
        c"For example 127.0.0.1:9188. Reloading re-binds; a bad address or a port in use is \
          logged and retried.",
        &METRICS_ADDRESS,
        GucContext::Sighup,
        GucFlags::default(),
    );
    // SAFETY: defined once per process, while the library loads; PostgreSQL owns the string.
    unsafe {
        pg_sys::DefineCustomStringVariable(
            c"cdc_health.metrics_auth_token".as_ptr(),
            c"Bearer token the /metrics endpoint requires when set (superusers only; never shown)."
                .as_ptr(),
            c"Scrapers send Authorization: Bearer <token>.".as_ptr(),
            &raw mut METRICS_AUTH_TOKEN,
            c"".as_ptr(),
            pg_sys::GucContext::PGC_SIGHUP,
            (pg_sys::GUC_SUPERUSER_ONLY | pg_sys::GUC_NO_SHOW_ALL) as i32,
            None,
            None,
            Some(show_hidden),
        );
    }
}

pub fn metrics_address() -> String {
    text(&METRICS_ADDRESS, "")
}

/// SHOW, pg_settings and the server's own reports never show the token, only whether one
/// is set.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn show_hidden() -> *const std::ffi::c_char {
    if metrics_auth_token().is_some() {
        c"(set)".as_ptr()
    } else {
        c"".as_ptr()
    }
}

/// `cdc_health.metrics_auth_token`, `None` when empty.
pub fn metrics_auth_token() -> Option<String> {
    // SAFETY: PostgreSQL keeps the variable a valid C string (or null) between reloads.
    let raw = unsafe { METRICS_AUTH_TOKEN };
    if raw.is_null() {
        return None;
    }
    // SAFETY: checked for NULL above; a GUC string is NUL-terminated.
    let token = unsafe { std::ffi::CStr::from_ptr(raw) }.to_string_lossy();
    (!token.is_empty()).then(|| token.into_owned())
}
