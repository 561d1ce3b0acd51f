//! Statements run on every pass, parsed and planned once per process instead of each time.
//!
//! At thousands of slots a pass's alert queries spent a fifth of their time in the parser and
//! the planner. A kept plan is revalidated by the server's plan cache when what it reads
//! changes (an upgrade, a dropped and re-created extension), so it is never stale; the text of
//! each statement is fixed, so the cache stays as small as the statements that use it.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::PgOid;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult, SpiTupleTable};

thread_local! {
    static KEPT: RefCell<HashMap<String, OwnedPreparedStatement>> = RefCell::new(HashMap::new());
}

/// Runs a read-only statement through its kept plan, preparing it on first use with the
/// types of `args`.
pub fn select<'conn>(
    client: &SpiClient<'conn>,
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> SpiResult<SpiTupleTable<'conn>> {
    KEPT.with(|kept| {
        let mut kept = kept.borrow_mut();
        if !kept.contains_key(sql) {
            let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
            let plan = client.prepare(sql, &types)?.keep();
            kept.insert(sql.to_string(), plan);
        }
        client.select(&kept[sql], None, args)
    })
}
