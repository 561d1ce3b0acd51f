//! One slot as the extension sees it now: the observation, its verdict and what the
//! worker's history adds. Built by the monitor, read by history, alerts, metrics and the SQL
//! functions.

use cdc_health_rules::consumer::{ConsumerSummary, LiveSession};
use cdc_health_rules::history::Forecast;
use cdc_health_rules::idle_timeout;
use cdc_health_rules::transactions::Creation;
use cdc_health_rules::{Finding, ServerObservation, SlotAssessment, SlotObservation};

/// What the worker's history adds to one slot.
#[derive(Debug, Clone)]
pub struct HistoryView {
    /// The slot's place in shared memory when it was read (a hint: check the name).
    pub entry: usize,
    /// The history rules' findings; moved into the verdict when the view is assessed.
    pub findings: Vec<Finding>,
    pub forecast: Forecast,
    pub last_progress_at: Option<f64>,
    pub inactive_for: Option<f64>,
    /// The consumer's position at the oldest sample kept: what its first recorded session
    /// is compared with.
    pub oldest_position: Option<u64>,
}

/// Why a slot has no history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Untracked {
    /// Tracked (history present).
    No,
    /// The library is not preloaded: no worker, no shared memory.
    NotPreloaded,
    /// More slots than `cdc_health.max_tracked_slots`.
    NoRoom,
    /// Created since the worker's last pass: there is room, it is just not sampled yet.
    NotYetSampled,
}

/// One slot as seen now, with its verdict.
pub struct SlotView {
    pub slot: SlotObservation,
    pub verdict: SlotAssessment,
    pub history: Option<HistoryView>,
    pub untracked: Untracked,
    /// Set while this (half-created) slot's creation waits for transactions.
    pub creation: Option<Creation>,
    /// The consumer's sessions in the forecast window, and the one connected now.
    pub consumer: ConsumerSummary,
    pub live: Option<LiveSession>,
}

impl SlotView {
    pub fn subject(&self) -> String {
        format!("slot:{}", self.slot.slot_name)
    }

    /// Seconds until the slot is expected to be lost: the WAL-budget forecast or, on 18,
    /// `idle_replication_slot_timeout` for an inactive slot, whichever comes first.
    pub fn eta_to_lost(&self, server: &ServerObservation) -> Option<f64> {
        let budget = self.history.as_ref().and_then(|h| h.forecast.eta_secs);
        let idle = idle_timeout::remaining_secs(&self.slot, server);
        match (budget, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
