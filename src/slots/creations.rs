//! Logical slot creations waiting for running transactions, the standby-snapshot nudge and
//! the opt-in termination of idle blockers; the long transactions that pin slots; and the
//! walsenders waiting for the standbys of `synchronized_standby_slots`.

use cdc_health_rules::failover::Waiter;
use cdc_health_rules::session_text::statement_head;
use cdc_health_rules::slot_state::xid_age;
use cdc_health_rules::transactions::{Creation, Transaction};
use pgrx::prelude::*;
use pgrx::spi::{SpiHeapTupleData, SpiResult};

use crate::pg::session_text;
use crate::pg::spi::read_one;

/// Columns 1..=10 of a transaction row, as selected by `TX_COLUMNS`. The xid is read raw
/// and aged in `transaction` against the same counter the slots' ages come from:
/// `age()` counts from the caller's own xid when it has one, and a caller that had written
/// something saw no slot pinned.
const TX_COLUMNS: &str = "a.pid, NULL::text, \
     extract(epoch FROM pg_catalog.clock_timestamp() - a.xact_start)::float8, \
     a.backend_xid::text::int8, a.state, a.backend_type, a.query, \
     a.application_name, a.client_addr::text, a.usename::text";

/// Prepared transactions at least `$1` seconds old, in the columns of `TX_COLUMNS`.
const PREPARED: &str = "SELECT NULL, p.gid,
        extract(epoch FROM pg_catalog.clock_timestamp() - p.prepared)::float8,
        p.transaction::text::int8, 'prepared', NULL, NULL, NULL, NULL, p.owner::text
    FROM pg_catalog.pg_prepared_xacts p
    WHERE p.prepared <= pg_catalog.clock_timestamp() - pg_catalog.make_interval(secs => $1)";

/// A row of `TX_COLUMNS`; `next_xid` is the next transaction id, read after the query ran.
/// Text other sessions chose is read as bytes (`session_text`); of the statement only its
/// command word is kept.
fn transaction(row: &SpiHeapTupleData<'_>, next_xid: u32) -> SpiResult<Transaction> {
    let gid = session_text::get_decoded(row, 2)?;
    Ok(Transaction {
        pid: row.get(1)?,
        gid_replaced: gid.as_ref().is_some_and(|g| !g.exact),
        gid: gid.map(|g| g.text),
        age_secs: row.get(3)?.unwrap_or_default(),
        xid_age: row
            .get::<i64>(4)?
            .and_then(|xid| xid_age(next_xid, u32::try_from(xid).ok()?)),
        state: row.get(5)?,
        backend_type: row.get(6)?,
        statement: session_text::get(row, 7)?.and_then(|q| statement_head(&q)),
        application: session_text::get(row, 8)?,
        client: row.get(9)?,
        user: session_text::get(row, 10)?,
    })
}

fn transactions(
    query: &str,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> SpiResult<Vec<Transaction>> {
    Spi::connect(|client| {
        let rows = client.select(query, None, args)?;
        // The slots were read before this query, so their next xid is not newer than this:
        // a transaction that pins a slot never looks younger than the slot's catalog_xmin.
        // SAFETY: reads the shared next-xid counter under its own lock.
        let next_xid = unsafe { pg_sys::ReadNextFullTransactionId() }.value as u32;
        rows.map(|row| transaction(&row, next_xid)).collect()
    })
}

/// Transactions with an xid older than `min_age_secs`, and prepared transactions as old.
pub fn long_transactions(min_age_secs: f64) -> SpiResult<Vec<Transaction>> {
    transactions(
        &format!(
            "SELECT {TX_COLUMNS} FROM pg_catalog.pg_stat_activity a
             WHERE a.backend_xid IS NOT NULL
               AND a.xact_start <= pg_catalog.clock_timestamp() - pg_catalog.make_interval(secs => $1)
             UNION ALL {PREPARED}"
        ),
        &[min_age_secs.into()],
    )
}

/// Logical walsenders waiting for the standbys of `synchronized_standby_slots` (17+).
pub fn waiting_for_standby() -> SpiResult<Vec<Waiter>> {
    Spi::connect(|client| {
        client
            .select(
                "SELECT a.pid, s.slot_name::text, a.application_name
                 FROM pg_catalog.pg_stat_activity a
                 JOIN pg_catalog.pg_replication_slots s ON s.active_pid OPERATOR(pg_catalog.=) a.pid
                 WHERE a.wait_event OPERATOR(pg_catalog.=) 'WaitForStandbyConfirmation'
                 ORDER BY a.pid",
                None,
                &[],
            )?
            .map(|row| {
                Ok(Waiter {
                    pid: row.get::<i32>(1)?.unwrap_or_default(),
                    slot_name: row.get::<String>(2)?.unwrap_or_default(),
                    application_name: session_text::get(&row, 3)?,
                })
            })
            .collect()
    })
}

/// Every logical slot creation in progress: the slot exists but has no confirmed position
/// yet, and its creating backend waits for the transactions that were running when it began.
pub fn in_progress() -> SpiResult<Vec<Creation>> {
    type Waiting = (Creation, Vec<i32>);
    let waiting: Vec<Waiting> = Spi::connect(|client| {
        client
            .select(
                "SELECT s.slot_name::text, s.active_pid,
                        extract(epoch FROM pg_catalog.clock_timestamp()
                                - coalesce(a.query_start, a.backend_start))::float8,
                        pg_catalog.pg_blocking_pids(s.active_pid),
                        a.backend_type, a.usename::text, a.application_name, a.client_addr::text
                 FROM pg_catalog.pg_replication_slots s
                 JOIN pg_catalog.pg_stat_activity a ON a.pid = s.active_pid
                 WHERE s.slot_type = 'logical' AND s.confirmed_flush_lsn IS NULL",
                None,
                &[],
            )?
            .map(|row| {
                let creation = Creation {
                    slot_name: row.get::<String>(1)?.unwrap_or_default(),
                    pid: row.get::<i32>(2)?.unwrap_or_default(),
                    waiting_secs: row.get::<f64>(3)?.unwrap_or_default(),
                    backend_type: row.get(5)?,
                    user: session_text::get(&row, 6)?,
                    application: session_text::get(&row, 7)?,
                    client: row.get(8)?,
                    blockers: Vec::new(),
                };
                Ok((creation, row.get::<Vec<i32>>(4)?.unwrap_or_default()))
            })
            .collect::<SpiResult<Vec<_>>>()
    })?;
    let mut creations = Vec::new();
    for (mut creation, blocking) in waiting {
        // A prepared transaction shows as pid 0 in pg_blocking_pids; name every prepared
        // transaction that was already there when the creation started.
        let pids: Vec<i32> = blocking.into_iter().filter(|&p| p != 0).collect();
        let mut blockers = transactions(
            &format!(
                "SELECT {TX_COLUMNS} FROM pg_catalog.pg_stat_activity a WHERE a.pid = ANY($1)"
            ),
            &[pids.into()],
        )?;
        blockers.extend(transactions(PREPARED, &[creation.waiting_secs.into()])?);
        creation.blockers = blockers;
        creations.push(creation);
    }
    Ok(creations)
}

/// Writes a running-transactions WAL record so a waiting creation can reach a consistent
/// point; returns its LSN. `pg_log_standby_snapshot()` from 16 on, the server's own
/// `LogStandbySnapshot()` before.
pub fn log_standby_snapshot() -> SpiResult<Option<u64>> {
    #[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
    {
        let lsn = read_one::<String>("SELECT pg_catalog.pg_log_standby_snapshot()::text", &[])?;
        Ok(lsn.and_then(|l| cdc_health_rules::lsn::parse_lsn(&l).ok()))
    }
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
    {
        // SAFETY: called in a transaction on a primary (the caller checks recovery).
        Ok(Some(unsafe { pg_sys::LogStandbySnapshot() }))
    }
}

/// Terminates one blocker of `creator`'s slot creation if, right now, it is still idle in
/// transaction and the creating backend's role could terminate it itself (PostgreSQL's rule
/// for `pg_terminate_backend`: the rights of the blocker's role, or `pg_signal_backend`, and
/// never a superuser's session unless the creator is one). True when the signal was sent.
pub fn terminate(pid: i32, creator: i32) -> SpiResult<bool> {
    Ok(read_one::<bool>(
        "SELECT pg_catalog.pg_terminate_backend(b.pid)
         FROM pg_catalog.pg_stat_activity b, pg_catalog.pg_stat_activity w,
              pg_catalog.pg_roles br, pg_catalog.pg_roles wr
         WHERE b.pid OPERATOR(pg_catalog.=) $1 AND w.pid OPERATOR(pg_catalog.=) $2
           AND br.oid OPERATOR(pg_catalog.=) b.usesysid
           AND wr.oid OPERATOR(pg_catalog.=) w.usesysid
           AND b.state OPERATOR(pg_catalog.=) 'idle in transaction'
           AND (NOT br.rolsuper OR wr.rolsuper)
           AND (pg_catalog.pg_has_role(w.usesysid, b.usesysid, 'USAGE')
                OR pg_catalog.pg_has_role(w.usesysid, 'pg_signal_backend', 'USAGE'))",
        &[pid.into(), creator.into()],
    )?
    .unwrap_or(false))
}
