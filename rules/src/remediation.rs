//! What to do about a finding, in one or two sentences an on-call engineer can act on.

use crate::finding::FindingCode;
use crate::observation::{SlotObservation, SlotType};

/// A SQL string literal for `text`, so a remedy can be pasted into psql as it is.
pub fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The remedy for `finding` on `slot`: its own, or the general one for its code.
pub fn remedy_for(finding: &crate::Finding, slot: &SlotObservation) -> String {
    finding
        .remedy
        .clone()
        .unwrap_or_else(|| slot_remediation(finding.code, slot))
}

/// The general remedy for `code` on `slot`.
pub fn slot_remediation(code: FindingCode, slot: &SlotObservation) -> String {
    let lit = sql_literal(&slot.slot_name);
    let consumer = match slot.slot_type {
        SlotType::Logical => "the CDC consumer that owns this slot",
        SlotType::Physical => "the standby (or WAL archiver) that uses this slot",
    };
    match code {
        FindingCode::Lost if slot.invalidation_reason.as_deref() == Some("idle_timeout") => {
            format!(
                "The slot was idle longer than idle_replication_slot_timeout (not over its WAL \
                 budget) and can never stream again: drop it (SELECT \
                 pg_drop_replication_slot({lit})), recreate it and resync; restart consumers \
                 sooner after an outage, or raise the timeout."
            )
        }
        FindingCode::Lost
            if matches!(slot.invalidation_reason.as_deref(), Some("rows_removed")) =>
        {
            format!(
                "The slot conflicted with recovery: the primary removed catalog rows it needed, \
                 and it can never stream again. Drop it (SELECT pg_drop_replication_slot({lit})) \
                 and recreate it; run this standby with hot_standby_feedback = on and a \
                 primary_slot_name so the primary keeps those rows."
            )
        }
        FindingCode::Lost => format!(
            "The slot was invalidated and can never stream again: drop it \
             (SELECT pg_drop_replication_slot({lit})), recreate it and resync the mirror \
             from a fresh snapshot."
        ),
        FindingCode::StandbySlotBlocking => format!(
            "Logical replication of failover slots waits for this standby: bring it back, or \
             remove {lit} from synchronized_standby_slots (ALTER SYSTEM SET \
             synchronized_standby_slots = ...; SELECT pg_reload_conf()) to let it go on \
             without failover protection."
        ),
        FindingCode::FailoverUnready => "Make the slot survive a promotion: failover = true \
             on the slot, the standby's physical slot in synchronized_standby_slots, and the \
             standby run with sync_replication_slots = on (README: Failover and CDC)."
            .to_string(),
        FindingCode::IdleTimeoutSoon => format!(
            "idle_replication_slot_timeout will invalidate this inactive slot: restart \
             {consumer} before then, raise the timeout, or drop the slot if it was retired \
             (SELECT pg_drop_replication_slot({lit}))."
        ),
        FindingCode::DecodingSpill => "Decoding spills large transactions to disk, which \
             slows every consumer of this slot: raise logical_decoding_work_mem, or let the \
             consumer stream in-progress transactions (pgoutput's streaming option)."
            .to_string(),
        FindingCode::Unreserved => "WAL this slot needs is beyond max_slot_wal_keep_size and \
             goes at the next checkpoint: bring the consumer back now, or accept that the slot \
             will be lost and the mirror resynced."
            .to_string(),
        FindingCode::Inactive => format!(
            "No consumer is connected: restart {consumer}, or drop the slot if it was retired \
             (SELECT pg_drop_replication_slot({lit}))."
        ),
        FindingCode::Stalled => "The consumer is connected but has not confirmed any \
             progress while the server writes WAL: check its logs and restart it; if it follows \
             only quiet tables, enable cdc_health.heartbeat_interval."
            .to_string(),
        FindingCode::CrashLoop => format!(
            "{consumer} connects, confirms nothing and goes away, again and again: read its \
             logs for why it exits (detail->'consumer' has the sessions and the last error the \
             server saw), and fix that before the slot's WAL fills the budget."
        ),
        FindingCode::ConsumerError => "The server keeps refusing or ending the consumer's \
             sessions with the same error: detail->'consumer'->'last_error' has it; fix its \
             cause."
            .to_string(),
        FindingCode::BudgetExhaustionSoon if slot.safe_wal_size.is_none() => format!(
            "With no max_slot_wal_keep_size, this slot's WAL fills the volume holding pg_wal and \
             the server stops (PANIC): bring the consumer back now, or drop the slot (SELECT \
             pg_drop_replication_slot({lit})) and resync its consumer; then bound slots with \
             max_slot_wal_keep_size."
        ),
        FindingCode::BudgetExhaustionSoon => "At the current growth rate this slot will \
             exceed max_slot_wal_keep_size and be lost: make the consumer catch up or raise the \
             budget before then."
            .to_string(),
        FindingCode::RetainedWalHigh => "The slot pins a lot of WAL: make the consumer catch \
             up (check it is running and not stuck), and make sure max_slot_wal_keep_size and \
             the disk leave room until it does."
            .to_string(),
        FindingCode::Extended => "The slot keeps WAL beyond max_wal_size: it is still safe, \
             but check that the consumer is running and keeping up."
            .to_string(),
        FindingCode::XminHorizonOld => format!(
            "The slot holds back the xmin horizon, so VACUUM cannot remove dead rows and \
             the cluster moves toward wraparound: advance the consumer, or drop the slot if it \
             is unused (SELECT pg_drop_replication_slot({lit}))."
        ),
        FindingCode::CreationBlocked => "Slot creation waits for transactions that were \
             running when it started: commit or terminate the blocking transaction."
            .to_string(),
        FindingCode::LongTransaction => "A long-running or prepared transaction holds this \
             slot's position back: commit, roll back or terminate it."
            .to_string(),
        FindingCode::MirrorStale
        | FindingCode::MirrorRowsMismatch
        | FindingCode::ProbeFailed
        | FindingCode::HeartbeatStale => "Check the CDC pipeline writing this mirror and the \
             destination it writes to."
            .to_string(),
        FindingCode::DeliveryFailed => "Alerts do not reach this sink: check its last_error \
             in cdc_health.sinks() and the receiver, then fix the sink (remove_sink and \
             add_sink) or the receiver; transitions still pending are sent once it accepts."
            .to_string(),
        // Server findings carry their own remedy (rules::wal_volume); this is the fallback.
        FindingCode::WalDiskFullSoon => "Free or add space on the volume holding pg_wal, and \
             find what holds the WAL in cdc_health.wal_usage(): a slot, the archiver or \
             wal_keep_size. When the volume is full the server stops."
            .to_string(),
        FindingCode::ArchiveFailing => "Fix archive_command (pg_stat_archiver.last_failed_wal \
             names the segment it fails on): WAL is kept until archived."
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_slot_names_for_sql() {
        assert_eq!(sql_literal("a'b"), "'a''b'");
        let text = slot_remediation(FindingCode::Lost, &SlotObservation::logical("it's"));
        assert!(text.contains("pg_drop_replication_slot('it''s')"), "{text}");
    }

    #[test]
    fn inactive_remedy_names_who_consumes_the_slot() {
        let mut slot = SlotObservation::logical("s");
        assert!(slot_remediation(FindingCode::Inactive, &slot).contains("CDC consumer"));
        slot.slot_type = SlotType::Physical;
        assert!(slot_remediation(FindingCode::Inactive, &slot).contains("standby"));
    }

    #[test]
    fn every_code_has_a_short_remedy() {
        for code in FindingCode::ALL {
            let text = slot_remediation(code, &SlotObservation::logical("s"));
            assert!(!text.is_empty() && text.len() < 400, "{code:?}: {text}");
            assert!(
                !text.contains("  "),
                "stray line-continuation spaces in {code:?}"
            );
        }
    }

    #[test]
    fn lost_names_the_resync() {
        let text = slot_remediation(FindingCode::Lost, &SlotObservation::logical("peerdb_slot"));
        assert!(
            text.contains("recreate") && text.contains("resync"),
            "{text}"
        );
    }
}
