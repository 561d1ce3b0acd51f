//! Mirror checks: freshness and row counts of destinations, read through foreign data.
//!
//! A check compares a source relation with a target relation PostgreSQL can scan (a
//! `cdc_health_clickhouse` foreign table, a postgres_fdw table, a view). For a ClickHouse
//! table the aggregate runs inside ClickHouse and one row crosses the network; any other
//! target is aggregated by PostgreSQL (postgres_fdw pushes it down itself).
//!
//! Every probe runs as the role that added the check, never as the worker's superuser.
//!
//! `store` is the `cdc_health.mirror_checks` table, `probe` measures a check and records the
//! outcome, `verify` compares a mirror with its source key by key, `sql` holds the SQL
//! functions, and `worker` the background worker that probes the checks that are due. Each
//! file imports only from those before it in this list (`error` first).

mod error;
mod probe;
mod sql;
mod store;
mod verify;
pub mod worker;

pub use probe::end_overdue_probe;
