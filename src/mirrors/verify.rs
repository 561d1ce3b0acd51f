//! `verify_mirror`: a mirror compared with its source key by key (row count, min and max of
//! the key, an order-independent checksum of it), computed the same way on both sides.

use cdc_health_rules::clickhouse::quote_ident as ch_ident;
use cdc_health_rules::units::pretty_bytes;
use pgrx::datum::Interval;
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::error::Error;
use super::probe::{quote_ident, relation_text, require_select};
use super::store;
use crate::clickhouse;
use crate::pg::errors::{OrRaise, SqlError};
use crate::pg::role::as_extension_owner;
use crate::pg::spi::read_one;

/// The source's single-column primary key, the default key to verify by.
fn primary_key(rel: pg_sys::Oid) -> String {
    read_one::<String>(
        "SELECT a.attname::text FROM pg_catalog.pg_index i
         JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = $1 AND i.indisprimary AND i.indnatts = 1",
        &[rel.into()],
    )
    .or_raise(|e| Error::Internal("reading the primary key", e))
    .unwrap_or_else(|| Error::NoPrimaryKey(relation_text(rel)).raise())
}

/// One side's fingerprint of a key column.
#[derive(Debug, PartialEq)]
pub struct Side {
    pub rows: Option<i64>,
    pub min: Option<String>,
    pub max: Option<String>,
    pub checksum: Option<String>,
}

/// The checksum is the sum, modulo 2^64, of the first 8 bytes of md5(key as text) read
/// big-endian: ClickHouse's `halfMD5(toString(k))` summed as UInt64 (which wraps) equals
/// PostgreSQL's md5 prefix summed as numeric, so both sides compute the same number.
fn side(rel: pg_sys::Oid, key: &str) -> Side {
    if clickhouse::is_clickhouse_table(rel) {
        require_select(rel, &[key]);
        let remote = clickhouse::Remote::of(rel, crate::pg::backend::current_user());
        let k = ch_ident(&remote.remote_column(rel, key));
        let (row, _) = clickhouse::aggregate(
            rel,
            &format!(
                "count() AS n, toString(min({k})) AS lo, toString(max({k})) AS hi, \
                 toString(sum(halfMD5(toString({k})))) AS checksum"
            ),
        );
        let get = |i: usize| row.get(i).cloned().flatten();
        let rows = get(0).and_then(|n| n.parse().ok());
        let empty = rows == Some(0);
        Side {
            rows,
            min: get(1).filter(|_| !empty),
            max: get(2).filter(|_| !empty),
            checksum: get(3),
        }
    } else {
        let k = quote_ident(key);
        let sql = format!(
            "SELECT count(*), min({k})::text, max({k})::text,
                    (pg_catalog.mod(pg_catalog.mod(coalesce(sum(('x' || substr(md5({k}::text), 1, 16))
                        ::bit(64)::bigint::numeric), 0), 18446744073709551616)
                        + 18446744073709551616, 18446744073709551616))::text
             FROM {}",
            relation_text(rel)
        );
        Spi::connect(|client| {
            let row = client.select(&sql, Some(1), &[])?.first();
            Ok::<_, pgrx::spi::Error>(Side {
                rows: row.get(1)?,
                min: row.get(2)?,
                max: row.get(3)?,
                checksum: row.get(4)?,
            })
        })
        .or_raise(|e| Error::Internal("reading a key column's fingerprint", e))
    }
}

/// What `verify_mirror` found.
pub struct Verification {
    pub ok: bool,
    pub source: Side,
    pub target: Side,
    /// The lag the check's last probe measured.
    pub lag: Option<Interval>,
    pub detail: String,
}

/// Compares check `name`'s target with its source by `key_column` (by default the source's
/// primary key), with the caller's rights.
pub fn verify(name: &str, key_column: Option<&str>) -> Verification {
    let c = store::by_name(name);
    let Some(source) = c.source else {
        Error::NoSource(name.into()).raise();
    };
    let key = match key_column {
        Some(k) => k.to_string(),
        None => primary_key(source),
    };
    let s = side(source, &key);
    let t = side(c.target, &key);
    let ok = s == t;
    let lag = as_extension_owner(|| {
        read_one::<Interval>(
            "SELECT lag FROM cdc_health.mirror_checks WHERE name OPERATOR(pg_catalog.=) $1",
            &[name.into()],
        )
    })
    .or_raise(|e| Error::Internal("reading the check's lag", e));
    let behind = c.slot_name.as_deref().and_then(|slot| {
        read_one::<i64>(
            "SELECT pg_catalog.pg_wal_lsn_diff(CASE WHEN pg_catalog.pg_is_in_recovery()
                 THEN pg_catalog.pg_last_wal_replay_lsn() ELSE pg_catalog.pg_current_wal_lsn()
                 END, confirmed_flush_lsn)::bigint
             FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
            &[slot.into()],
        )
        .or_raise(|e| Error::Internal("reading the slot's position", e))
        .map(|b| format!("; slot {slot} has {} not yet confirmed", pretty_bytes(b)))
    });
    let detail = if ok {
        format!("source and target agree on {} rows", s.rows.unwrap_or(0))
    } else {
        format!(
            "mismatch: {} rows at the source, {} at the target; if the table is being \
             written, compare again when it is idle (last measured lag: {}{})",
            s.rows.unwrap_or(0),
            t.rows.unwrap_or(0),
            lag.map_or("unknown".to_string(), |l| l.to_string()),
            behind.unwrap_or_default()
        )
    };
    Verification {
        ok,
        source: s,
        target: t,
        lag,
        detail,
    }
}
