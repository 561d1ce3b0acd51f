//! Errors raised for a caller's mistake carry the SQLSTATE that says which mistake, so that
//! clients and scripts can tell "no such check" from "cdc_health is broken" (XX000).

use pgrx::prelude::*;

/// Raises `message` at ERROR with `code` and, when given, a HINT; never returns. (pgrx's
/// four-argument `ereport!` sends its last argument as the DETAIL line, so not through it.)
pub fn raise(code: PgSqlErrorCode, message: String, hint: Option<&str>) -> ! {
    let report = pgrx::pg_sys::panic::ErrorReport::new(code, message, "cdc_health");
    match hint {
        Some(hint) => report.set_hint(hint),
        None => report,
    }
    .report(PgLogLevel::ERROR);
    unreachable!("ereport(ERROR) does not return")
}

/// 54000: a value past what the format can hold.
pub fn limit_exceeded(message: String) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        message,
        None,
    )
}

/// One area's error: each area (delivery, mirrors, the ClickHouse wrapper, the slot functions)
/// has an enum of what can go wrong in it, each case with its SQLSTATE, and raises it through
/// here as an `ErrorReport`. XX000 is kept for its `Internal` case: one of the extension's own
/// statements that SPI could not run or read back, a broken invariant.
pub trait SqlError: std::fmt::Display {
    fn sqlstate(&self) -> PgSqlErrorCode;

    fn hint(&self) -> Option<&'static str> {
        None
    }

    /// The report's DETAIL line, if it has one.
    fn detail(&self) -> Option<String> {
        None
    }

    /// The report PostgreSQL raises: SQLSTATE, message, detail and hint.
    #[track_caller]
    fn report(&self) -> pgrx::pg_sys::panic::ErrorReport {
        let mut report =
            pgrx::pg_sys::panic::ErrorReport::new(self.sqlstate(), self.to_string(), "cdc_health");
        if let Some(detail) = self.detail() {
            report = report.set_detail(detail);
        }
        match self.hint() {
            Some(hint) => report.set_hint(hint),
            None => report,
        }
    }

    /// Raises the error at ERROR; never returns.
    #[track_caller]
    fn raise(&self) -> ! {
        self.report().report(PgLogLevel::ERROR);
        unreachable!("ereport(ERROR) does not return")
    }
}

/// `result.or_raise(|e| Error::Internal("reading sinks", e))`: the value, or the area's error
/// made from the cause, raised.
pub trait OrRaise<T> {
    fn or_raise<E: SqlError>(self, error: impl FnOnce(String) -> E) -> T;
}

impl<T, X: std::fmt::Display> OrRaise<T> for Result<T, X> {
    #[track_caller]
    fn or_raise<E: SqlError>(self, error: impl FnOnce(String) -> E) -> T {
        match self {
            Ok(value) => value,
            Err(cause) => error(cause.to_string()).raise(),
        }
    }
}

/// XX000 for a module whose only failure is one of its own statements failing to run or read
/// back: `Internal("reading slots", cause)`.
pub struct Internal(pub &'static str, pub String);

impl std::fmt::Display for Internal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cdc_health: {}: {}", self.0, self.1)
    }
}

impl SqlError for Internal {
    fn sqlstate(&self) -> PgSqlErrorCode {
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR
    }
}
