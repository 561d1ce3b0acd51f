//! What an alert may say on the NOTIFY channel.
//!
//! Any role that can connect can `LISTEN cdc_health`, so a payload may carry only what every
//! such role can already know: ids, codes, severities, slot and mirror names, WAL positions
//! and figures. Blockers' queries, users, clients and states (which `pg_stat_activity` hides
//! from them) and probe errors (internal URLs, remote messages) stay in `cdc_health.alerts`,
//! which is for `pg_monitor`.

use serde_json::{json, Map, Value};

use crate::alerts::Event;
use crate::finding::{FindingCode, Severity};

/// Keys of a slot's or mirror's `detail` that describe only public facts: what
/// `pg_replication_slots` shows everyone, and the figures cdc_health computed from it.
const PUBLIC_KEYS: [&str; 16] = [
    "findings",
    "current_lsn",
    "restart_lsn",
    "confirmed_flush_lsn",
    "plugin",
    "temporary",
    "active_pid",
    "xmin_age",
    "catalog_xmin_age",
    "invalidation_reason",
    "inactive_duration_known",
    "in_recovery",
    "mirror",
    "lag_secs",
    "row_drift",
    "slot_name",
];

/// Does this finding's (or event's) summary and remedy describe other sessions or errors, or
/// the server's disk? Those are written from what only `pg_monitor` may read (the volume's
/// size and free space are `wal_usage()`'s, which is pg_monitor's).
pub fn text_is_private(code: FindingCode, event: Event) -> bool {
    event == Event::BlockerTerminated
        || matches!(
            code,
            FindingCode::CreationBlocked
                | FindingCode::LongTransaction
                | FindingCode::ProbeFailed
                | FindingCode::DeliveryFailed
                | FindingCode::WalDiskFullSoon
        )
}

/// The summary sent in place of a private one: what happened, and where the rest is.
pub fn public_summary(
    event: Event,
    code: FindingCode,
    severity: Severity,
    subject: &str,
    alert_id: i64,
) -> String {
    let what = match code {
        _ if event == Event::BlockerTerminated => {
            "cdc_health.terminate_blockers_after terminated a session that blocked a slot \
             creation (its pid is in detail.terminated_pid)"
        }
        FindingCode::CreationBlocked => "a logical slot creation waits for running transactions",
        FindingCode::LongTransaction => "a long-running transaction holds the slot back",
        FindingCode::ProbeFailed => "the mirror probe failed",
        FindingCode::DeliveryFailed => "alert delivery to the sink failed",
        FindingCode::WalDiskFullSoon => {
            "the volume holding pg_wal fills soon or is short of space (cdc_health.wal_usage())"
        }
        _ => "an alert",
    };
    format!(
        "{} on {subject} ({}): {what}; the summary and remediation are in cdc_health.alerts \
         (id {alert_id}), readable by pg_monitor",
        code.as_str(),
        severity.as_str()
    )
}

/// `detail` reduced to its public keys. A waiting creation keeps its pid, how long it has
/// waited and the blockers' pids (all in `pg_stat_activity` for everyone); a terminated
/// blocker keeps its pid.
pub fn public_detail(detail: &Value) -> Value {
    let Some(all) = detail.as_object() else {
        return Value::Object(Map::new());
    };
    let mut public: Map<String, Value> = PUBLIC_KEYS
        .iter()
        .filter_map(|&k| all.get(k).map(|v| (k.to_string(), v.clone())))
        .collect();
    let pids = |blockers: Option<&Value>| -> Vec<Value> {
        blockers
            .and_then(Value::as_array)
            .map(|b| b.iter().filter_map(|x| x.get("pid").cloned()).collect())
            .unwrap_or_default()
    };
    if let Some(c) = all.get("creation") {
        public.insert(
            "creation".into(),
            json!({
                "pid": c.get("pid"),
                "waiting_secs": c.get("waiting_secs"),
                "blocking_pids": pids(c.get("blockers")),
                "snapshots_logged": c.get("snapshots_logged"),
            }),
        );
    }
    // The consumer's sessions in counts, and the SQLSTATE that ended them: not the message,
    // which is the server's report of another role's session.
    if let Some(c) = all.get("consumer") {
        let error = c
            .get("last_error")
            .filter(|e| !e.is_null())
            .map(|e| json!({"sqlstate": e.get("sqlstate"), "count": e.get("count")}));
        public.insert(
            "consumer".into(),
            json!({
                "sessions": c.get("sessions"),
                "ended_sessions": c.get("ended_sessions"),
                "last_error": error,
            }),
        );
    }
    if let Some(t) = all.get("terminated") {
        public.insert(
            "terminated_pid".into(),
            t.get("pid").cloned().unwrap_or(Value::Null),
        );
    }
    if let Some(pid) = all.get("creator_pid") {
        public.insert("creator_pid".into(), pid.clone());
    }
    Value::Object(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creation_detail() -> Value {
        json!({
            "findings": [{"code": "creation_blocked", "severity": "warning"}],
            "restart_lsn": "0/1",
            "creation": {
                "pid": 4711,
                "waiting_secs": 12.5,
                "snapshots_logged": 2,
                "blockers": [{
                    "pid": 99, "query": "ALTER ROLE victim PASSWORD 'hunter2'",
                    "user": "alice", "client": "10.0.0.5", "state": "idle in transaction",
                    "application": "psql"
                }]
            },
            "worker": {"running": true, "pid": 12}
        })
    }

    #[test]
    fn a_blockers_query_user_client_and_state_never_reach_the_channel() {
        let public = public_detail(&creation_detail()).to_string();
        for secret in [
            "hunter2",
            "alice",
            "10.0.0.5",
            "idle in transaction",
            "psql",
            "worker",
        ] {
            assert!(!public.contains(secret), "{secret} leaked: {public}");
        }
    }

    #[test]
    fn a_creation_keeps_its_pids_wait_and_snapshots() {
        let public = public_detail(&creation_detail());
        assert_eq!(public["creation"]["pid"], 4711);
        assert_eq!(public["creation"]["blocking_pids"], json!([99]));
        assert_eq!(public["creation"]["waiting_secs"], 12.5);
        assert_eq!(public["creation"]["snapshots_logged"], 2);
        assert_eq!(public["restart_lsn"], "0/1");
        assert_eq!(public["findings"][0]["code"], "creation_blocked");
    }

    #[test]
    fn a_mirror_detail_keeps_its_figures() {
        let d = json!({"mirror": "m", "lag_secs": 4.0, "row_drift": 3, "slot_name": "s",
                       "error": "http://10.1.2.3:8123/ refused"});
        let public = public_detail(&d);
        assert_eq!(
            public,
            json!({"mirror": "m", "lag_secs": 4.0, "row_drift": 3, "slot_name": "s"})
        );
    }

    #[test]
    fn a_consumers_error_reaches_the_channel_as_its_sqlstate_and_count() {
        let d = json!({"consumer": {
            "sessions": 4, "ended_sessions": 3, "last_reply_at": "2026-12-07T19:35:01.000Z",
            "last_error": {"sqlstate": "XX000", "count": 3, "at": "2026-12-07T19:35:01.000Z",
                           "message": "invalid input syntax: 'card 4111 1111 1111 1111'"}}});
        assert_eq!(
            public_detail(&d),
            json!({"consumer": {"sessions": 4, "ended_sessions": 3,
                                "last_error": {"sqlstate": "XX000", "count": 3}}})
        );
        let none = json!({"consumer": {"sessions": 1, "ended_sessions": 0, "last_error": null}});
        assert_eq!(public_detail(&none)["consumer"]["last_error"], Value::Null);
    }

    #[test]
    fn a_terminated_blocker_is_only_a_pid() {
        let d = json!({"terminated": {"pid": 7, "query": "secret"}, "slot_name": "s",
                       "creator_pid": 8});
        assert_eq!(
            public_detail(&d),
            json!({"terminated_pid": 7, "slot_name": "s", "creator_pid": 8})
        );
    }

    #[test]
    fn session_and_error_texts_are_private_slot_figures_are_not() {
        assert!(text_is_private(FindingCode::CreationBlocked, Event::Raised));
        assert!(text_is_private(
            FindingCode::LongTransaction,
            Event::Reminder
        ));
        assert!(text_is_private(FindingCode::ProbeFailed, Event::Resolved));
        assert!(text_is_private(
            FindingCode::Inactive,
            Event::BlockerTerminated
        ));
        assert!(!text_is_private(FindingCode::Inactive, Event::Raised));
        assert!(!text_is_private(FindingCode::MirrorStale, Event::Raised));
        // The volume's figures are wal_usage()'s; pg_stat_archiver is everyone's.
        assert!(text_is_private(FindingCode::WalDiskFullSoon, Event::Raised));
        assert!(!text_is_private(FindingCode::ArchiveFailing, Event::Raised));
    }

    #[test]
    fn the_public_summary_says_where_the_rest_is() {
        let s = public_summary(
            Event::Raised,
            FindingCode::ProbeFailed,
            Severity::Critical,
            "mirror:m",
            42,
        );
        assert!(s.starts_with("probe_failed on mirror:m (critical)"), "{s}");
        assert!(s.contains("cdc_health.alerts (id 42)"), "{s}");
        let t = public_summary(
            Event::BlockerTerminated,
            FindingCode::CreationBlocked,
            Severity::Warning,
            "slot:s",
            7,
        );
        assert!(t.contains("terminated a session"), "{t}");
    }

    #[test]
    fn a_detail_that_is_not_an_object_becomes_empty() {
        assert_eq!(public_detail(&json!(null)), json!({}));
    }
}
