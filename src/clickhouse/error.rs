//! What can go wrong reading ClickHouse, each with its SQLSTATE.

use std::fmt;

use pgrx::prelude::PgSqlErrorCode;

use crate::pg::errors::SqlError;

pub enum Error {
    /// HV000: the request, the server or its answer failed (`table` names the foreign table).
    Remote { table: String, why: String },
    /// 22021: a value holds a NUL byte, which PostgreSQL text cannot.
    NulByte { table: String, what: String },
    /// HV00D: a server or user-mapping option, or one given to the validator.
    BadOption(String),
    /// 53000: no thread could be started for the request.
    NoThread(String),
    /// XX000: a catalog lookup of our own failed.
    Internal(&'static str, String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Remote { table, why } => write!(f, "foreign table {table}: {why}"),
            Error::NulByte { table, what } => write!(
                f,
                "foreign table {table}: {what}: the value contains a NUL byte, which PostgreSQL text cannot hold"
            ),
            Error::BadOption(why) => f.write_str(why),
            Error::NoThread(why) => {
                write!(f, "cdc_health: could not start a thread for ClickHouse: {why}")
            }
            Error::Internal(doing, cause) => write!(f, "cdc_health: {doing}: {cause}"),
        }
    }
}

impl SqlError for Error {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            Error::Remote { .. } => PgSqlErrorCode::ERRCODE_FDW_ERROR,
            Error::NulByte { .. } => PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            Error::BadOption(_) => PgSqlErrorCode::ERRCODE_FDW_INVALID_OPTION_NAME,
            Error::NoThread(_) => PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
            Error::Internal(..) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        }
    }
}
