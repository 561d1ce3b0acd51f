//! What can go wrong in the mirror checks' SQL functions and probes, each with its SQLSTATE.

use std::fmt;

use pgrx::prelude::PgSqlErrorCode;

use crate::pg::errors::SqlError;

pub enum Error {
    /// 42704
    NoSuchCheck(String),
    /// 22023: the name is empty or blank.
    NoName,
    /// 22023
    NegativeDrift,
    /// 22023: `max_lag` (or `max_age`) is zero or negative, as PostgreSQL prints it.
    NoLag(String),
    /// 22023: `verify_mirror` of a freshness check.
    NoSource(String),
    /// 22023: `verify_mirror` without `key_column` of a source with no single-column key.
    NoPrimaryKey(String),
    /// 42703: `what` is "source" or "target".
    NoColumn {
        what: &'static str,
        relation: String,
        column: String,
    },
    /// 42710
    Exists(String),
    /// 42501: the role adding a check cannot read one of its columns.
    ColumnNotReadable {
        role: String,
        column: String,
        what: &'static str,
        relation: String,
    },
    /// 42501: the role probing (the check's owner, or `verify_mirror`'s caller) cannot read
    /// `what` ("any column", "column \"at\"") of a relation.
    NotReadable {
        role: String,
        what: String,
        relation: String,
    },
    /// 42501: `remove_mirror` by a role that does not own the check.
    NotOwner(String),
    /// 42P01: a relation a check names was dropped.
    RelationGone(u32),
    /// 22000: `verify_mirror(..., raise_on_mismatch => true)` found a difference (`detail`).
    Mismatch { name: String, detail: String },
    /// XX000: one of the mirror checks' own statements failed to run or read back.
    Internal(&'static str, String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchCheck(name) => write!(f, "cdc_health: no mirror check named \"{name}\""),
            Error::NoName => f.write_str("cdc_health: a mirror check needs a name"),
            Error::NegativeDrift => f.write_str(
                "cdc_health: max_row_drift must be 0 or more (NULL: counts are not compared)",
            ),
            Error::NoLag(max_lag) => {
                write!(
                    f,
                    "cdc_health: max_lag must be longer than zero, not {max_lag}"
                )
            }
            Error::NoSource(name) => write!(
                f,
                "cdc_health: \"{name}\" is a freshness check; it has no source to compare"
            ),
            Error::NoPrimaryKey(relation) => write!(
                f,
                "cdc_health: {relation} has no single-column primary key; pass key_column"
            ),
            Error::NoColumn {
                what,
                relation,
                column,
            } => write!(
                f,
                "cdc_health: {what} {relation} has no column \"{column}\""
            ),
            Error::Exists(name) => {
                write!(
                    f,
                    "cdc_health: a mirror check named \"{name}\" exists already"
                )
            }
            Error::ColumnNotReadable {
                role,
                column,
                what,
                relation,
            } => write!(
                f,
                "cdc_health: permission denied: {role} cannot read column \"{column}\" of {what} \
                 {relation}"
            ),
            Error::NotReadable {
                role,
                what,
                relation,
            } => write!(
                f,
                "cdc_health: permission denied: {role} cannot read {what} of {relation}"
            ),
            Error::NotOwner(name) => write!(
                f,
                "cdc_health: only the owner of mirror check \"{name}\" can remove it"
            ),
            Error::RelationGone(oid) => {
                write!(f, "cdc_health: relation {oid} no longer exists")
            }
            Error::Mismatch { name, .. } => {
                write!(f, "cdc_health: mirror \"{name}\" does not match its source")
            }
            Error::Internal(doing, cause) => write!(f, "cdc_health: {doing}: {cause}"),
        }
    }
}

impl SqlError for Error {
    fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            Error::NoSuchCheck(_) => PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            Error::NoName
            | Error::NegativeDrift
            | Error::NoLag(_)
            | Error::NoSource(_)
            | Error::NoPrimaryKey(_) => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            Error::NoColumn { .. } => PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            Error::Exists(_) => PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            Error::ColumnNotReadable { .. } | Error::NotReadable { .. } | Error::NotOwner(_) => {
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE
            }
            Error::RelationGone(_) => PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            Error::Mismatch { .. } => PgSqlErrorCode::ERRCODE_DATA_EXCEPTION,
            Error::Internal(..) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        }
    }

    /// What to do about it: sent as the report's HINT (0.2.0 sent these as its DETAIL).
    fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Exists(_) => {
                Some("Remove it first with cdc_health.remove_mirror(name), or pick another name.")
            }
            Error::ColumnNotReadable { .. } => {
                Some("A check runs with the rights of the role that adds it.")
            }
            Error::NotReadable { .. } => Some(
                "A check runs with the rights of the role that added it; verify_mirror with the \
                 caller's.",
            ),
            _ => None,
        }
    }

    fn detail(&self) -> Option<String> {
        match self {
            Error::Mismatch { detail, .. } => Some(detail.clone()),
            _ => None,
        }
    }
}
