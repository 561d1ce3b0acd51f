//! What can go wrong in delivery's SQL functions, each with its SQLSTATE.

use std::fmt;

use pgrx::prelude::PgSqlErrorCode;

use crate::pg::errors::SqlError;

pub enum Error {
    /// 42704
    NoSuchSink(String),
    /// 22023: the name is empty, too long or has a control character.
    BadName,
    /// 22023: kind, URL or options that `SinkConfig::parse` refuses.
    BadSink { name: String, reason: String },
    /// 42710
    Exists(String),
    /// 42501: the caller neither added the sink nor owns the extension.
    NotAllowed { name: String, action: &'static str },
    /// 08006: `test_sink` could not reach the receiver.
    Unreachable { name: String, reason: String },
    /// XX000: one of delivery's own statements failed to run or read back.
    Internal(&'static str, String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchSink(name) => write!(f, "cdc_health: no sink named \"{name}\""),
            Error::BadName => f.write_str(
                "cdc_health.add_sink: name must be 1 to 200 characters, none a control character",
            ),
            Error::BadSink { name, reason } => {
                write!(f, "cdc_health.add_sink(\"{name}\"): {reason}")
            }
            Error::Exists(name) => write!(f, "cdc_health: a sink named \"{name}\" exists already"),
            Error::NotAllowed { name, action } => {
                write!(
                    f,
                    "cdc_health: permission denied to {action} sink \"{name}\""
                )
            }
            Error::Unreachable { name, reason } => {
                write!(f, "cdc_health.test_sink(\"{name}\"): {reason}")
            }
            Error::Internal(doing, cause) => write!(f, "cdc_health: {doing}: {cause}"),
        }
    }
}

impl SqlError for Error {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            Error::NoSuchSink(_) => PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            Error::BadName | Error::BadSink { .. } => {
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
            }
            Error::Exists(_) => PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            Error::NotAllowed { .. } => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            Error::Unreachable { .. } => PgSqlErrorCode::ERRCODE_CONNECTION_FAILURE,
            Error::Internal(..) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        }
    }

    fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Exists(_) => {
                Some("Remove it first with cdc_health.remove_sink(name), or pick another name.")
            }
            Error::NotAllowed { .. } => Some(
                "Only the role that added a sink, or the extension's owner, may change, test or remove it.",
            ),
            _ => None,
        }
    }
}
