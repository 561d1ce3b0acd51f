//! What every server process records about a slot's consumer: a log hook (the error that
//! ends or refuses a session, in walsenders and in backends decoding through
//! `pg_logical_slot_get_changes`) and an exit callback in every walsender (the end of each
//! session, clean or not, with how far the slot's consumer got).
//!
//! Both run where nothing may fail: the hook inside error reporting, the callback during
//! process exit. They allocate nothing, take no lock, read only this process's own state and
//! the slot it holds, and write the ring (`ring::record`, lock-free). The cost on any other
//! report is two flag reads.

use std::ffi::{c_int, CStr};

use cdc_health_rules::consumer::{
    cut_message, event_class, replication_command_slot, EventClass, MESSAGE_BYTES,
};
use pgrx::pg_sys;

use super::ring::{self, Record};
use crate::pg::clock::now_secs;

type ClientAuthenticationHook = Option<unsafe extern "C-unwind" fn(*mut pg_sys::Port, c_int)>;

// SAFETY: `libpq/auth.h` declares `ClientAuthentication_hook` as this exported, writable
// function pointer (PGDLLIMPORT); pgrx's bindings leave that header out.
unsafe extern "C" {
    static mut ClientAuthentication_hook: ClientAuthenticationHook;
}

static mut PREV_EMIT_LOG_HOOK: pg_sys::emit_log_hook_type = None;
static mut PREV_CLIENT_AUTH_HOOK: ClientAuthenticationHook = None;

/// The slot this process last recorded an event for, and its position then: the exit
/// callback's slot when an error released it before the session ended.
static mut LAST_SLOT: [u8; 64] = [0; 64];
static mut LAST_SLOT_LEN: usize = 0;
static mut LAST_POSITION: u64 = 0;
/// Set while this process records: a report made meanwhile is not recorded again.
static mut RECORDING: bool = false;

/// Installs the log hook and the authentication hook that arms the exit callback; called once
/// from `_PG_init` while preloading (the ring exists only then). Install it before the
/// redaction hook, so that hook runs first and this one records the redacted message.
pub fn init() {
    // SAFETY: hooks are chained once, in the postmaster, while the library is preloaded;
    // every process inherits them.
    unsafe {
        PREV_EMIT_LOG_HOOK = pg_sys::emit_log_hook;
        pg_sys::emit_log_hook = Some(on_report);
        PREV_CLIENT_AUTH_HOOK = ClientAuthentication_hook;
        ClientAuthentication_hook = Some(on_authenticated);
    }
}

/// Unix seconds of a PostgreSQL timestamp (microseconds since 2000-01-01).
fn unix_secs(ts: pg_sys::TimestampTz) -> f64 {
    ts as f64 / 1e6 + 946_684_800.0
}

/// The slot this process holds: its name and its consumer's position (confirmed for a logical
/// slot, restart for a physical one). Reads the slot without its spinlock: only the process
/// that holds a slot moves these fields, and that is this one.
///
/// # Safety
/// Reads `MyReplicationSlot`, a pointer into shared memory or NULL.
unsafe fn held_slot() -> Option<(&'static [u8], u64)> {
    // SAFETY: NULL, or the slot this process acquired, valid until it releases it (not
    // during this call).
    let slot = unsafe { pg_sys::MyReplicationSlot.as_ref()? };
    // SAFETY: NameData is a NUL-terminated array of NAMEDATALEN bytes.
    let name = unsafe { CStr::from_ptr(slot.data.name.data.as_ptr()) }.to_bytes();
    let position = if slot.data.confirmed_flush != 0 {
        slot.data.confirmed_flush
    } else {
        slot.data.restart_lsn
    };
    Some((name, position))
}

/// The slot last recorded by this process, if any.
///
/// # Safety
/// Only this process's own statics, written by this process.
unsafe fn last_slot() -> Option<(&'static [u8], u64)> {
    // SAFETY: plain reads of process-local statics (see above).
    unsafe {
        let len = LAST_SLOT_LEN;
        let name = &*std::ptr::addr_of!(LAST_SLOT);
        (len > 0).then(|| (&name[..len], LAST_POSITION))
    }
}

/// Remembers `slot` for the exit callback.
///
/// # Safety
/// Process-local statics; never called concurrently (one thread runs PostgreSQL code).
unsafe fn remember(slot: &[u8], position: Option<u64>) {
    // SAFETY: as said.
    unsafe {
        let len = slot.len().min(64);
        let buf = &mut *std::ptr::addr_of_mut!(LAST_SLOT);
        buf[..len].copy_from_slice(&slot[..len]);
        LAST_SLOT_LEN = len;
        if let Some(position) = position {
            LAST_POSITION = position;
        }
    }
}

/// The log hook: records the reports that end or refuse a consumer's session.
unsafe extern "C-unwind" fn on_report(edata: *mut pg_sys::ErrorData) {
    // SAFETY: PostgreSQL passes the report being emitted (or NULL); the globals read are this
    // process's; nothing here allocates, locks or raises.
    unsafe {
        if let Some(e) = edata.as_ref() {
            if !RECORDING && (pg_sys::am_walsender || !pg_sys::MyReplicationSlot.is_null()) {
                RECORDING = true;
                note(e);
                RECORDING = false;
            }
        }
        if let Some(prev) = PREV_EMIT_LOG_HOOK {
            prev(edata);
        }
    }
}

/// # Safety
/// Called from `on_report` with the report being emitted.
unsafe fn note(e: &pg_sys::ErrorData) {
    let level = u32::try_from(e.elevel).unwrap_or(0);
    let error_or_fatal = level >= pg_sys::PGERROR;
    let server_only = level == pg_sys::LOG_SERVER_ONLY;
    // SAFETY: this process's own flag, set at its start.
    let in_walsender = unsafe { pg_sys::am_walsender };
    // A walsender's warnings (not a decoding backend's: those go to its own client).
    let warning = level == pg_sys::PGWARNING && in_walsender;
    if !(error_or_fatal || server_only || warning) {
        return;
    }
    // SAFETY: the report's strings are NULL or NUL-terminated, valid during the hook;
    // `debug_query_string` is NULL or the command this process runs.
    unsafe {
        let message_id = if e.message_id.is_null() {
            &b""[..]
        } else {
            CStr::from_ptr(e.message_id).to_bytes()
        };
        let Some(class) = event_class(error_or_fatal, server_only, warning, message_id) else {
            return;
        };
        let command = pg_sys::debug_query_string;
        let (slot, position) = match held_slot() {
            Some((name, position)) => (name, Some(position)),
            None => match (!command.is_null())
                .then(|| replication_command_slot(CStr::from_ptr(command).to_bytes()))
                .flatten()
            {
                Some(name) => (name, None),
                None => match last_slot() {
                    Some((name, position)) => (name, Some(position)),
                    None => return,
                },
            },
        };
        let message = if e.message.is_null() {
            &b""[..]
        } else {
            cut_message(CStr::from_ptr(e.message).to_bytes(), MESSAGE_BYTES)
        };
        ring::record(&Record {
            class,
            pid: pg_sys::MyProcPid,
            sqlstate: e.sqlerrcode,
            slot,
            message,
            at: now_secs(),
            started_at: Some(unix_secs(pg_sys::MyStartTimestamp)),
            confirmed_lsn: position,
        });
        remember(slot, position);
        ring::wake_worker();
    }
}

/// Arms the exit callback in each walsender once it is authenticated.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_authenticated(port: *mut pg_sys::Port, status: c_int) {
    // SAFETY: chained hook called by PostgreSQL with its own arguments; `am_walsender` is
    // this process's flag, set before authentication.
    unsafe {
        if let Some(prev) = PREV_CLIENT_AUTH_HOOK {
            prev(port, status);
        }
        if pg_sys::am_walsender && status == pg_sys::STATUS_OK as c_int {
            pg_sys::before_shmem_exit(Some(on_exit), pg_sys::Datum::from(0usize));
        }
    }
}

/// A walsender ends: records the session with the slot it used and how far its consumer got.
unsafe extern "C-unwind" fn on_exit(_code: c_int, _arg: pg_sys::Datum) {
    // SAFETY: runs in this walsender's exit, before the slot is released by the server's own
    // callbacks (registered earlier, run later); reads only this process's state and the slot
    // it holds; allocates nothing and cannot fail.
    unsafe {
        let Some((slot, position)) = held_slot().or_else(|| last_slot()) else {
            return;
        };
        ring::record(&Record {
            class: EventClass::SessionEnd,
            pid: pg_sys::MyProcPid,
            sqlstate: 0,
            slot,
            message: b"",
            at: now_secs(),
            started_at: Some(unix_secs(pg_sys::MyStartTimestamp)),
            confirmed_lsn: Some(position),
        });
        ring::wake_worker();
    }
}
