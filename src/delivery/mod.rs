//! Alert delivery: sinks configured in SQL, a transactional outbox and the worker that sends it.
//!
//! Every alert transition is queued for each matching sink in the transaction that writes the
//! alert (`outbox::enqueue`), so what was announced is queued and what rolled back is not.
//! The delivery worker (`worker`) sends each sink's queue in order on a thread of its own
//! (`send`) and records the outcome afterwards: a crash between the two sends the transition
//! again with the same delivery id. The formats, filters and retry policy are the rules
//! crate's (`cdc_health_rules::delivery`).

mod error;
pub mod send;
pub mod sinks;
pub mod worker;
