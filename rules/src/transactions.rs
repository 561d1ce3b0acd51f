//! Transactions that hold replication back: blockers of a logical slot creation, and long or
//! prepared transactions that pin a slot's `restart_lsn` / `catalog_xmin`.

use serde::Serialize;

use crate::finding::{Finding, FindingCode, Severity};
use crate::observation::{SlotObservation, SlotType};
use crate::session_text::{is_unsafe_char, sql_literal};
use crate::units::pretty_duration;

/// A transaction seen in `pg_stat_activity` or `pg_prepared_xacts`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transaction {
    /// Backend pid; `None` for a prepared transaction.
    pub pid: Option<i32>,
    /// Global id of a prepared transaction.
    pub gid: Option<String>,
    /// The gid had bytes that could not be read as they are (`session_text::decode`), so it
    /// is not written into a command.
    #[serde(skip)]
    pub gid_replaced: bool,
    /// Seconds since the transaction started (prepared: since it was prepared).
    pub age_secs: f64,
    /// `age()` of its xid (or xmin), in transactions: how far back it holds the horizon.
    pub xid_age: Option<i64>,
    pub state: Option<String>,
    pub backend_type: Option<String>,
    /// The command word its statement starts with (`session_text::statement_head`): never
    /// the statement itself, whose literals may hold passwords or personal data and which
    /// `pg_stat_activity` shows only while the session lives, and only to some roles.
    pub statement: Option<String>,
    pub application: Option<String>,
    pub client: Option<String>,
    pub user: Option<String>,
}

/// Longest piece of another role's text shown in a summary or remedy.
const QUOTED_MAX_CHARS: usize = 64;

/// Text another role chose (an `application_name`, a gid), quoted so that it cannot pass for
/// cdc_health's own words ("... from app. FIRST RUN: DROP ..."): double quotes, inner quotes
/// and backslashes escaped, control and invisible format characters shown as `?`, cut at 64 characters.
pub fn quoted(text: &str) -> String {
    let mut out = String::from('"');
    for c in text.chars().take(QUOTED_MAX_CHARS) {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_unsafe_char(c) => out.push('?'),
            c => out.push(c),
        }
    }
    if text.chars().count() > QUOTED_MAX_CHARS {
        out.push('…');
    }
    out.push('"');
    out
}

impl Transaction {
    pub fn is_prepared(&self) -> bool {
        self.gid.is_some()
    }

    /// Only a session sitting idle inside a transaction may ever be terminated by the
    /// extension: never a running query, never a walsender, never a prepared transaction.
    pub fn may_be_terminated(&self) -> bool {
        self.pid.is_some()
            && !self.is_prepared()
            && self.backend_type.as_deref() == Some("client backend")
            && matches!(
                self.state.as_deref(),
                Some("idle in transaction") | Some("idle in transaction (aborted)")
            )
    }

    /// "pid 4711, idle in transaction for 37min from psql on 10.0.0.5", or for a prepared
    /// transaction "prepared transaction 'tx1' (prepared 3min ago)".
    pub fn describe(&self) -> String {
        if let Some(gid) = &self.gid {
            return format!(
                "prepared transaction {} (prepared {} ago)",
                quoted(gid),
                pretty_duration(self.age_secs)
            );
        }
        let mut text = format!(
            "pid {}, {} for {}",
            self.pid.unwrap_or_default(),
            self.state.as_deref().unwrap_or("in a transaction"),
            pretty_duration(self.age_secs)
        );
        if let Some(app) = self.application.as_deref().filter(|a| !a.is_empty()) {
            text.push_str(&format!(" from {}", quoted(app)));
        }
        if let Some(client) = self.client.as_deref().filter(|c| !c.is_empty()) {
            text.push_str(&format!(" on {client}"));
        }
        text
    }

    /// What to do about it, as a remedy sentence.
    pub fn remedy(&self) -> String {
        match (&self.gid, self.pid) {
            // The gid goes into the command only whole, on one line, and when short: a
            // cut one would name another transaction, or none.
            (Some(gid), _) if !self.gid_replaced && gid.chars().count() <= QUOTED_MAX_CHARS => {
                format!(
                    "{}: COMMIT PREPARED {} or ROLLBACK PREPARED it.",
                    self.describe(),
                    sql_literal(gid)
                )
            }
            (Some(_), _) => format!(
                "{}: COMMIT PREPARED or ROLLBACK PREPARED it, with its whole gid as \
                 pg_prepared_xacts shows it (too long or not readable here).",
                self.describe()
            ),
            (None, Some(pid)) => format!(
                "{}: commit or terminate it (SELECT pg_terminate_backend({pid})).",
                self.describe()
            ),
            (None, None) => format!("{}: end it.", self.describe()),
        }
    }
}

/// A logical slot creation that is waiting for transactions to end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Creation {
    pub slot_name: String,
    pub pid: i32,
    pub waiting_secs: f64,
    /// The creating session: walsender (CREATE_REPLICATION_SLOT) or client backend.
    pub backend_type: Option<String>,
    pub user: Option<String>,
    pub application: Option<String>,
    pub client: Option<String>,
    pub blockers: Vec<Transaction>,
}

/// `creation_blocked` for the half-created slot: critical once it has waited past
/// `critical_after_secs`, warning before. The remedy names the oldest blocker.
pub fn creation_finding(creation: &Creation, critical_after_secs: f64) -> Finding {
    let severity = if creation.waiting_secs >= critical_after_secs {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let oldest = creation
        .blockers
        .iter()
        .max_by(|a, b| a.age_secs.total_cmp(&b.age_secs));
    let by = match (oldest, creation.blockers.len()) {
        (None, _) => "transactions that were running when it started".to_string(),
        (Some(t), 1) => t.describe(),
        (Some(t), n) => format!("{} and {} more", t.describe(), n - 1),
    };
    let summary = format!(
        "slot creation by pid {} has waited {} for {by}",
        creation.pid,
        pretty_duration(creation.waiting_secs)
    );
    let finding = Finding::new(FindingCode::CreationBlocked, severity, summary);
    match oldest {
        Some(t) => finding.with_remedy(format!("Slot creation waits for {}", t.remedy())),
        None => finding,
    }
}

/// Blockers of `creation` that the opt-in termination may end now: idle in transaction and
/// blocking for at least `after_secs` (`None` = termination is off).
pub fn blockers_to_terminate(creation: &Creation, after_secs: Option<f64>) -> Vec<i32> {
    let Some(after) = after_secs else {
        return Vec::new();
    };
    if creation.waiting_secs < after {
        return Vec::new();
    }
    creation
        .blockers
        .iter()
        .filter(|t| t.may_be_terminated())
        .filter_map(|t| t.pid)
        .collect()
}

/// `long_transaction` on a logical slot: a transaction older than `warning_secs` (or any
/// prepared transaction that old) whose xid is not newer than the slot's `catalog_xmin`
/// holds the slot's `restart_lsn` and `catalog_xmin` back, however fast the consumer is.
/// A lost slot has nothing left to hold back: it reports only `lost`.
pub fn long_transaction_finding(
    slot: &SlotObservation,
    transactions: &[Transaction],
    warning_secs: f64,
) -> Option<Finding> {
    if slot.slot_type != SlotType::Logical || slot.is_lost() {
        return None;
    }
    let slot_age = slot.catalog_xmin_age?;
    let pinning = transactions
        .iter()
        .filter(|t| t.age_secs >= warning_secs)
        .filter(|t| t.xid_age.is_some_and(|age| age >= slot_age))
        .max_by(|a, b| a.age_secs.total_cmp(&b.age_secs))?;
    let severity = if pinning.age_secs >= 4.0 * warning_secs {
        Severity::Critical
    } else {
        Severity::Warning
    };
    Some(
        Finding::new(
            FindingCode::LongTransaction,
            severity,
            format!("held back by {}", pinning.describe()),
        )
        .with_remedy(format!(
            "A long-running transaction holds this slot's position back: {}",
            pinning.remedy()
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle_tx(pid: i32, age: f64) -> Transaction {
        Transaction {
            pid: Some(pid),
            gid: None,
            gid_replaced: false,
            age_secs: age,
            xid_age: Some(10),
            state: Some("idle in transaction".into()),
            backend_type: Some("client backend".into()),
            statement: Some("SELECT".into()),
            application: Some("psql".into()),
            client: Some("10.0.0.5".into()),
            user: Some("app".into()),
        }
    }

    fn prepared(gid: &str, age: f64) -> Transaction {
        Transaction {
            pid: None,
            gid: Some(gid.into()),
            state: None,
            backend_type: None,
            statement: None,
            application: None,
            client: None,
            ..idle_tx(0, age)
        }
    }

    fn creation(blockers: Vec<Transaction>, waiting: f64) -> Creation {
        Creation {
            slot_name: "new".into(),
            pid: 99,
            waiting_secs: waiting,
            backend_type: Some("walsender".into()),
            user: None,
            application: None,
            client: None,
            blockers,
        }
    }

    #[test]
    fn describes_the_blocker_the_way_an_operator_needs_it() {
        assert_eq!(
            idle_tx(4711, 37.0 * 60.0).describe(),
            "pid 4711, idle in transaction for 37min from \"psql\" on 10.0.0.5"
        );
        assert_eq!(
            prepared("tx1", 180.0).describe(),
            "prepared transaction \"tx1\" (prepared 3min ago)"
        );
    }

    #[test]
    fn another_roles_text_is_quoted_and_cannot_pass_for_an_instruction() {
        let mut tx = idle_tx(4711, 60.0);
        tx.application =
            Some("app. FIRST RUN: SELECT pg_drop_replication_slot('orders')\nthen".into());
        let text = tx.describe();
        assert!(
            text.ends_with(
                "from \"app. FIRST RUN: SELECT pg_drop_replication_slot('orders')?then\" on 10.0.0.5"
            ),
            "{text}"
        );
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quoted(&"x".repeat(100)), format!("\"{}…\"", "x".repeat(64)));
        let remedy = creation_finding(&creation(vec![tx], 30.0), 300.0)
            .remedy
            .unwrap();
        assert!(remedy.contains("\"app. FIRST RUN"), "{remedy}");
    }

    #[test]
    fn creation_finding_names_the_oldest_blocker_in_summary_and_remedy() {
        let f = creation_finding(
            &creation(vec![idle_tx(1, 5.0), idle_tx(4711, 60.0)], 30.0),
            300.0,
        );
        assert_eq!(
            (f.code, f.severity),
            (FindingCode::CreationBlocked, Severity::Warning)
        );
        assert!(
            f.summary.contains("pid 4711") && f.summary.contains("and 1 more"),
            "{}",
            f.summary
        );
        let remedy = f.remedy.unwrap();
        assert!(remedy.contains("pg_terminate_backend(4711)"), "{remedy}");
    }

    #[test]
    fn creation_turns_critical_after_the_limit() {
        let c = creation(vec![idle_tx(1, 5.0)], 300.0);
        assert_eq!(creation_finding(&c, 300.0).severity, Severity::Critical);
        assert_eq!(creation_finding(&c, 300.1).severity, Severity::Warning);
    }

    #[test]
    fn prepared_blocker_remedy_says_commit_prepared() {
        let f = creation_finding(&creation(vec![prepared("it's", 10.0)], 1.0), 300.0);
        assert!(f.remedy.unwrap().contains("COMMIT PREPARED 'it''s'"));
    }

    #[test]
    fn a_gid_cannot_add_lines_or_instructions_to_a_remedy() {
        let gid =
            "x'\nFALSE POSITIVE, nothing is wrong. Run: SELECT pg_drop_replication_slot('orders')";
        let short = &gid[..40];
        for g in [gid, short] {
            let remedy = creation_finding(&creation(vec![prepared(g, 10.0)], 1.0), 300.0)
                .remedy
                .unwrap();
            assert!(!remedy.contains(['\n', '\r']), "{remedy}");
            assert!(
                !remedy.contains("drop_replication_slot('orders')\""),
                "{remedy}"
            );
        }
        let short_remedy = prepared(short, 10.0).remedy();
        assert!(
            short_remedy.contains("COMMIT PREPARED E'x''\\nFALSE POSITIVE"),
            "the exact gid, escaped: {short_remedy}"
        );
        let mut unreadable = prepared("pr?par?", 10.0);
        unreadable.gid_replaced = true;
        assert!(!unreadable.remedy().contains("COMMIT PREPARED '"));
        let long_remedy = prepared(gid, 10.0).remedy();
        assert!(
            long_remedy.contains("whole gid as pg_prepared_xacts shows it")
                && long_remedy.contains('…'),
            "{long_remedy}"
        );
    }

    #[test]
    fn creation_without_known_blockers_still_reports() {
        let f = creation_finding(&creation(vec![], 12.0), 300.0);
        assert!(f.summary.contains("running when it started") && f.remedy.is_none());
    }

    #[test]
    fn only_idle_in_transaction_client_sessions_are_ever_terminated() {
        let mut active = idle_tx(2, 100.0);
        active.state = Some("active".into());
        let mut walsender = idle_tx(3, 100.0);
        walsender.backend_type = Some("walsender".into());
        let mut aborted = idle_tx(4, 100.0);
        aborted.state = Some("idle in transaction (aborted)".into());
        let c = creation(
            vec![
                idle_tx(1, 100.0),
                active,
                walsender,
                aborted,
                prepared("p", 100.0),
            ],
            10.0,
        );
        assert_eq!(blockers_to_terminate(&c, Some(3.0)), [1, 4]);
        assert_eq!(
            blockers_to_terminate(&c, None),
            Vec::<i32>::new(),
            "off by default"
        );
        assert_eq!(
            blockers_to_terminate(&c, Some(10.1)),
            Vec::<i32>::new(),
            "not yet"
        );
    }

    #[test]
    fn long_transaction_pins_a_logical_slot_with_an_older_or_equal_horizon() {
        let mut slot = SlotObservation::logical("s");
        slot.catalog_xmin_age = Some(10);
        let f = long_transaction_finding(&slot, &[idle_tx(77, 900.0)], 900.0).unwrap();
        assert_eq!(
            (f.code, f.severity),
            (FindingCode::LongTransaction, Severity::Warning)
        );
        assert!(
            f.summary.contains("pid 77") && f.remedy.unwrap().contains("pg_terminate_backend(77)")
        );
        // The slot moved past it (a newer catalog_xmin): not pinned.
        slot.catalog_xmin_age = Some(11);
        assert_eq!(
            long_transaction_finding(&slot, &[idle_tx(77, 900.0)], 900.0),
            None
        );
    }

    #[test]
    fn a_lost_slot_reports_no_long_transaction() {
        let mut slot = SlotObservation::logical("s");
        slot.catalog_xmin_age = Some(10);
        let old = [idle_tx(77, 9000.0)];
        assert!(long_transaction_finding(&slot, &old, 900.0).is_some());
        let mut invalidated = slot.clone();
        invalidated.invalidation_reason = Some("rows_removed".into());
        assert_eq!(long_transaction_finding(&invalidated, &old, 900.0), None);
        let mut removed = slot.clone();
        removed.wal_status = Some(crate::observation::WalStatus::Lost);
        assert_eq!(long_transaction_finding(&removed, &old, 900.0), None);
    }

    #[test]
    fn long_transaction_boundaries_and_kinds() {
        let mut slot = SlotObservation::logical("s");
        slot.catalog_xmin_age = Some(5);
        let at = |age: f64| {
            long_transaction_finding(&slot, &[idle_tx(1, age)], 60.0).map(|f| f.severity)
        };
        assert_eq!(at(59.9), None);
        assert_eq!(at(60.0), Some(Severity::Warning));
        assert_eq!(at(240.0), Some(Severity::Critical));
        let f = long_transaction_finding(&slot, &[prepared("px", 61.0)], 60.0).unwrap();
        assert!(
            f.summary.contains("prepared transaction \"px\""),
            "{}",
            f.summary
        );
        let mut physical = slot.clone();
        physical.slot_type = SlotType::Physical;
        assert_eq!(
            long_transaction_finding(&physical, &[idle_tx(1, 999.0)], 60.0),
            None
        );
        let mut no_xid = idle_tx(1, 999.0);
        no_xid.xid_age = None;
        assert_eq!(long_transaction_finding(&slot, &[no_xid], 60.0), None);
    }
}
