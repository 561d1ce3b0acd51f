//! One-line reads of the backend's own globals, behind safe functions so that callers need
//! no `unsafe` for them.

use pgrx::pg_sys;

/// This backend's process id.
pub fn my_pid() -> i32 {
    // SAFETY: `MyProcPid` is set once at process start and only read afterwards.
    unsafe { pg_sys::MyProcPid }
}

/// This process's latch (in its PGPROC, in shared memory, for a background worker).
pub fn my_latch() -> *mut pg_sys::Latch {
    // SAFETY: `MyLatch` is set at process start and only read afterwards.
    unsafe { pg_sys::MyLatch }
}

/// The current user id (the role privileges are checked against now).
pub fn current_user() -> pg_sys::Oid {
    // SAFETY: reads the current user id of this backend; valid in any backend after start.
    unsafe { pg_sys::GetUserId() }
}

/// Whether the server is a standby (in recovery).
pub fn in_recovery() -> bool {
    // SAFETY: reads shared state under its own spinlock; callable from any backend.
    unsafe { pg_sys::RecoveryInProgress() }
}

/// A server setting's text by name, through the server's own GUC lookup; `None` when unset
/// or unknown. Decoded like other sessions' text (`session_text`).
pub fn setting_text(name: &std::ffi::CStr) -> Option<String> {
    // SAFETY: GetConfigOption returns NULL or a pointer into the GUC's own NUL-terminated
    // storage, read here at once.
    let value = unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) };
    // SAFETY: NULL or NUL-terminated, as said.
    unsafe { super::session_text::from_c_string(value) }
}

/// An integer setting in the unit the server stores it in (`GetConfigOption` gives the bare
/// number: milliseconds, megabytes); `None` when unset, unknown or not a number.
pub fn setting_int(name: &std::ffi::CStr) -> Option<i64> {
    setting_text(name)?.parse().ok()
}

/// Re-reads the configuration files, as a background worker does on SIGHUP.
pub fn reload_config() {
    // SAFETY: called from a worker's main loop between transactions (never inside one),
    // which is where PostgreSQL's own workers process SIGHUP.
    unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
}
