//! Replication slots: reading them from shared memory and the catalogs, the creations that
//! wait and the transactions that pin them, and the per-slot view the layers above share.

pub mod consumers;
pub mod creations;
pub mod sampling;
pub mod view;
