//! Running statements as another role, the way PostgreSQL runs VACUUM or REFRESH MATERIALIZED
//! VIEW as a table's owner: the user switched, `search_path` forced to `pg_catalog, pg_temp`
//! inside a GUC nest level, and every setting changed in between rolled back on the way out.
//!
//! `SetUserIdAndSecContext` alone keeps the caller's `search_path`, so an operator or function
//! the caller put first on it would run with the other role's rights; and SQL run inside (a
//! probed view calling `set_config()`) could change the session for the statements after it.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::pg::errors::{self, OrRaise};
use crate::pg::spi::read_one;

/// What PostgreSQL's own maintenance commands use (`GUC_SAFE_SEARCH_PATH`).
const SAFE_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// While alive: another user id (or the same), a safe `search_path`, and a GUC nest level
/// whose changes are all discarded on drop.
#[must_use = "the role and search_path revert when the guard is dropped"]
pub struct Switched {
    saved_user: pg_sys::Oid,
    saved_context: i32,
    nest_level: i32,
}

impl Switched {
    /// Runs as `role`. `restricted` adds `SECURITY_RESTRICTED_OPERATION`, for SQL that is not
    /// ours (a probe of a relation another role chose): no `SET ROLE`, no temporary objects,
    /// no deferred work that would outlive the switch.
    pub fn to(role: pg_sys::Oid, restricted: bool) -> Self {
        let (mut saved_user, mut saved_context) = (pg_sys::InvalidOid, 0);
        let mut context = pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32;
        if restricted {
            context |= pg_sys::SECURITY_RESTRICTED_OPERATION as i32;
        }
        // SAFETY: plain calls in a backend inside a transaction; the guard restores both.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
            pg_sys::SetUserIdAndSecContext(role, saved_context | context);
        }
        Self::forcing_search_path(saved_user, saved_context)
    }

    /// Stays the current user, with the safe `search_path`: for our own statements run on
    /// behalf of whoever called (a superuser's `check_now()` with a crafted search_path).
    pub fn safe_search_path() -> Self {
        let (mut saved_user, mut saved_context) = (pg_sys::InvalidOid, 0);
        // SAFETY: as above.
        unsafe { pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context) };
        Self::forcing_search_path(saved_user, saved_context)
    }

    fn forcing_search_path(saved_user: pg_sys::Oid, saved_context: i32) -> Self {
        // SAFETY: a new nest level and a SAVE action on it, undone in drop (or by the
        // transaction's abort, which unwinds every nest level).
        let nest_level = unsafe {
            let level = pg_sys::NewGUCNestLevel();
            pg_sys::set_config_option(
                c"search_path".as_ptr(),
                SAFE_SEARCH_PATH.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
            level
        };
        Switched {
            saved_user,
            saved_context,
            nest_level,
        }
    }
}

impl Drop for Switched {
    fn drop(&mut self) {
        // While unwinding from an error the transaction is about to abort, and the abort rolls
        // back every nest level itself; only the user id is put back here.
        // SAFETY: restores what `to`/`safe_search_path` saved, in a backend.
        unsafe {
            if !std::thread::panicking() {
                // `false`: roll back, like an aborted subtransaction, whatever was set in
                // between, session-level `set_config()` calls included.
                pg_sys::AtEOXact_GUC(false, self.nest_level);
            }
            pg_sys::SetUserIdAndSecContext(self.saved_user, self.saved_context);
        }
    }
}

/// Runs `f` as the extension's owner: the tables are not writable by the roles that may be
/// granted the functions, and every value written is decided here, not by the caller.
pub fn as_extension_owner<R>(f: impl FnOnce() -> R) -> R {
    let owner = read_one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension \
         WHERE extname OPERATOR(pg_catalog.=) 'cdc_health'",
        &[],
    )
    .or_raise(|e| errors::Internal("reading the extension's owner", e))
    .unwrap_or_else(|| {
        errors::raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "cdc_health: the extension is not installed in this database".into(),
            None,
        )
    });
    let _owner = Switched::to(owner, false);
    f()
}
