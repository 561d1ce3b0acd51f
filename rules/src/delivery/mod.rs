//! Delivering alert transitions to HTTP sinks (Alertmanager, webhooks, Slack, PagerDuty).
//!
//! Every alert transition the extension records becomes one outbox row per sink that
//! [`SinkConfig::matches`] it, written in the transaction that changed the alert, so nothing
//! is announced that did not happen and nothing that happened is lost. A background worker
//! drains each sink's rows in order (a resolve never overtakes its raise), building the HTTP
//! requests with [`requests`]. Delivery is at least once: a request may be repeated after a
//! timeout, and each carries a delivery id that stays the same across retries so receivers
//! can drop duplicates. Answers are read by [`classify`]: transient failures are retried
//! after [`backoff_secs`] (exponential with jitter, honouring Retry-After) until
//! `cdc_health.delivery_max_age`; permanent ones are given up at once.

pub mod format;
pub mod retry;
pub mod signature;
pub mod sink;

pub use format::{batches, requests, Request, Transition};
pub use retry::{backoff_secs, classify, Verdict};
pub use sink::{SinkConfig, SinkKind};
