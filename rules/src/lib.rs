//! The decisions behind cdc_health, as plain Rust with no PostgreSQL types.
//!
//! The extension samples the server and hands what it saw to these modules; they decide
//! which findings a slot has, how severe they are and what the operator should do. Keeping
//! them free of pgrx makes every rule testable with plain `cargo test`.

pub mod alerts;
pub mod assessment;
pub mod audit;
pub mod budget;
pub mod clickhouse;
pub mod consumer;
pub mod delivery;
pub mod disclosure;
pub mod exposition;
pub mod failover;
pub mod finding;
pub mod history;
pub mod history_pacing;
pub mod history_rollup;
pub mod idle_timeout;
pub mod json;
pub mod log_redaction;
pub mod lsn;
pub mod mirror_diff;
pub mod mirrors;
pub mod observation;
#[cfg(test)]
mod proptests;
pub mod remediation;
pub mod reminders;
pub mod scrape;
pub mod session_text;
pub mod slot_state;
pub mod sparkline;
pub mod transactions;
pub mod units;
pub mod wal_volume;

pub use alerts::{
    payload, transitions, Action, AlertPolicy, Event, Observed, OpenAlert, PayloadFields,
    ResolvedAlert, NOTIFY_LIMIT,
};
pub use assessment::{assess_slot, worst_first, SlotAssessment, Thresholds};
pub use finding::{Finding, FindingCode, Severity};
pub use history::{
    forecast, history_findings, FitPoint, Forecast, ForecastTarget, HistoryLimits, Sample,
    SlotTrack, SAMPLES_PER_SLOT,
};
pub use observation::{ServerObservation, SlotObservation, SlotType, WalStatus};
