//! What the extension saw on the server, in plain types.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotType {
    Physical,
    Logical,
}

impl SlotType {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "physical" => Some(Self::Physical),
            "logical" => Some(Self::Logical),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Physical => "physical",
            Self::Logical => "logical",
        }
    }
}

/// `pg_replication_slots.wal_status`: how safe the WAL the slot needs is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WalStatus {
    /// Within `max_wal_size`.
    Reserved,
    /// Beyond `max_wal_size` but kept by the slot (or `wal_keep_size`).
    Extended,
    /// Beyond `max_slot_wal_keep_size`: removed at the next checkpoint.
    Unreserved,
    /// Removed: the slot is invalidated for good.
    Lost,
}

impl WalStatus {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "reserved" => Some(Self::Reserved),
            "extended" => Some(Self::Extended),
            "unreserved" => Some(Self::Unreserved),
            "lost" => Some(Self::Lost),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Extended => "extended",
            Self::Unreserved => "unreserved",
            Self::Lost => "lost",
        }
    }
}

/// One row of `pg_replication_slots`, plus what was derived for it.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotObservation {
    pub slot_name: String,
    pub slot_type: SlotType,
    /// Database of a logical slot; `None` for physical slots.
    pub database: Option<String>,
    pub plugin: Option<String>,
    pub temporary: bool,
    pub active: bool,
    pub active_pid: Option<i32>,
    /// `None` when the slot never reserved WAL (a physical slot created without it).
    pub wal_status: Option<WalStatus>,
    pub restart_lsn: Option<u64>,
    pub confirmed_flush_lsn: Option<u64>,
    /// `pg_replication_slots.safe_wal_size`; negative means already past the budget.
    pub safe_wal_size: Option<i64>,
    /// `age(xmin)` and `age(catalog_xmin)`, in transactions.
    pub xmin_age: Option<i64>,
    pub catalog_xmin_age: Option<i64>,
    /// Why the server invalidated a logical slot, in the words of 17's `invalidation_reason`
    /// (read from the slot itself on 15 and 16 too).
    pub invalidation_reason: Option<String>,
    /// Seconds without a consumer, when known: from `inactive_since` (17+) or from the
    /// background worker's own watch. `None` means unknown, not zero.
    pub inactive_for_secs: Option<f64>,
    /// Transactions decoded and sent to the slot's consumer so far
    /// (`pg_stat_replication_slots.total_txns`, logical slots); `None` when unknown.
    pub sent_txns: Option<i64>,
    /// `pg_stat_replication_slots` (logical slots that have decoded something).
    pub decoding: Option<DecodingStats>,
    /// `pg_replication_slots.failover` (17+): the slot is synchronized to standbys.
    pub failover: Option<bool>,
    /// `pg_replication_slots.synced` (17+): a standby's copy kept by slot synchronisation.
    pub synced: Option<bool>,
}

/// What decoding a logical slot cost so far (`pg_stat_replication_slots`, since its reset).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct DecodingStats {
    pub spill_txns: i64,
    pub spill_bytes: i64,
    pub stream_bytes: i64,
    pub total_txns: i64,
    pub total_bytes: i64,
}

impl SlotObservation {
    /// Invalidated for good: `wal_status = 'lost'` or any invalidation reason.
    pub fn is_lost(&self) -> bool {
        self.wal_status == Some(WalStatus::Lost) || self.invalidation_reason.is_some()
    }

    /// Holds WAL on the server: not lost, and it reserved WAL (`restart_lsn` known).
    pub fn holds_wal(&self) -> bool {
        !self.is_lost() && self.restart_lsn.is_some()
    }

    /// A healthy, active logical slot; tests and callers adjust the fields they care about.
    pub fn logical(name: &str) -> Self {
        Self {
            slot_name: name.to_string(),
            slot_type: SlotType::Logical,
            database: Some("postgres".to_string()),
            plugin: Some("pgoutput".to_string()),
            temporary: false,
            active: true,
            active_pid: Some(4242),
            wal_status: Some(WalStatus::Reserved),
            restart_lsn: Some(0),
            confirmed_flush_lsn: Some(0),
            safe_wal_size: None,
            xmin_age: None,
            catalog_xmin_age: Some(1),
            invalidation_reason: None,
            inactive_for_secs: None,
            sent_txns: None,
            decoding: None,
            failover: None,
            synced: None,
        }
    }
}

/// Server-wide facts that every slot's assessment needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerObservation {
    /// `pg_current_wal_lsn()` on a primary, the replay position on a standby.
    pub current_lsn: Option<u64>,
    pub in_recovery: bool,
    /// `max_slot_wal_keep_size` in bytes; `None` when unlimited (-1).
    pub wal_budget_bytes: Option<i64>,
    /// `autovacuum_freeze_max_age`: past it, the slot blocks anti-wraparound vacuum.
    pub freeze_max_age: i64,
    /// `idle_replication_slot_timeout` (PostgreSQL 18) in seconds; `None` when off or absent.
    pub idle_timeout_secs: Option<f64>,
}
