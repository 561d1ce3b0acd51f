//! Server-wide facts that belong to no slot: the volume holding `pg_wal`, the WAL on it and
//! the archiver (`wal`), and what the configuration audit reads (settings, publications and
//! their tables' replica identity).

pub mod audit;
pub mod budget;
pub mod volume;
pub mod wal;
