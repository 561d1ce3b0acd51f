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

/// XX000 for one of the extension's own statements that SPI could not run or read back: a
/// broken invariant, never a quiet default.
pub fn internal(what: &str, e: impl std::fmt::Display) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("cdc_health: {what}: {e}"),
        None,
    )
}

/// 54000: a value past what the format can hold.
pub fn limit_exceeded(message: String) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        message,
        None,
    )
}
