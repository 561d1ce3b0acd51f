//! Errors raised for a caller's mistake carry the SQLSTATE that says which mistake, so that
//! clients and scripts can tell "no such check" from "cdc_health is broken" (XX000).

use pgrx::prelude::*;

/// Raises `message` at ERROR with `code` (and a hint when given); never returns.
pub fn raise(code: PgSqlErrorCode, message: String, hint: Option<&str>) -> ! {
    match hint {
        Some(hint) => ereport!(PgLogLevel::ERROR, code, message, hint),
        None => ereport!(PgLogLevel::ERROR, code, message),
    }
    unreachable!("ereport(ERROR) does not return")
}

/// 22023: an argument's value is not acceptable.
pub fn invalid_parameter(message: String) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        message,
        None,
    )
}

/// 42704: the named object does not exist.
pub fn undefined_object(message: String) -> ! {
    raise(PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT, message, None)
}
