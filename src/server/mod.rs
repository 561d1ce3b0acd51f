//! Server-wide facts that belong to no slot: the volume holding `pg_wal` and what the
//! configuration audit reads (settings, publications and their tables' replica identity).

pub mod audit;
pub mod volume;
