//! The server's statement timer, armed by hand: SPI never starts it, so `statement_timeout`
//! alone does not limit a background worker's statements.

use pgrx::pg_sys;

// utils/timeout.h, which pgrx does not bind.
const STATEMENT_TIMEOUT: i32 = 3; // TimeoutId::STATEMENT_TIMEOUT, the same in 13 to 18
unsafe extern "C-unwind" {
    #[link_name = "enable_timeout_after"]
    fn pg_enable_timeout_after(id: i32, delay_ms: i32);
    #[link_name = "disable_timeout"]
    fn pg_disable_timeout(id: i32, keep_indicator: bool);
}

/// While alive, the statement timer runs: when it expires the work in progress is cancelled
/// like a statement ("canceling statement due to statement timeout").
#[must_use = "the timer is disarmed when the guard is dropped"]
pub struct StatementTimer;

impl StatementTimer {
    pub fn arm(delay_ms: i32) -> Self {
        // SAFETY: timeout.c is initialised in every backend and background worker.
        unsafe {
            pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
                pg_enable_timeout_after(STATEMENT_TIMEOUT, delay_ms.max(1))
            })
        };
        StatementTimer
    }
}

impl Drop for StatementTimer {
    fn drop(&mut self) {
        // SAFETY: as above; disabling a timer that already fired or is off is a no-op.
        unsafe {
            pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| {
                pg_disable_timeout(STATEMENT_TIMEOUT, false)
            })
        };
    }
}

/// Was this error message the timer's?
pub fn expired(message: &str) -> bool {
    message.contains("statement timeout")
}
