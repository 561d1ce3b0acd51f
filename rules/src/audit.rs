//! The configuration audit: settings and schema details that are wrong before any slot is in
//! trouble, the way many CDC outages start (a published table without a replica identity
//! makes the application's own UPDATEs fail; the last free slot makes the next consumer's
//! setup fail). One row per problem, each with what to do.

use crate::finding::Severity;
use crate::units::{pretty_bytes, pretty_duration};

/// What the audit looks at, read by the extension from catalogs, settings and the volume.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFacts {
    /// `wal_level` as the server runs with it: `minimal`, `replica` or `logical`.
    pub wal_level: String,
    pub in_recovery: bool,
    pub max_replication_slots: i64,
    pub slots_in_use: i64,
    pub logical_slots: i64,
    pub max_wal_senders: i64,
    pub wal_senders_in_use: i64,
    /// Publications in this database.
    pub publications: i64,
    /// `max_slot_wal_keep_size` in bytes; `None` when unlimited (-1).
    pub wal_budget_bytes: Option<i64>,
    /// The volume holding `pg_wal`; `None` when it could not be read.
    pub volume: Option<Volume>,
    /// `wal_sender_timeout` in milliseconds (0 = never).
    pub wal_sender_timeout_ms: i64,
    /// `idle_replication_slot_timeout` (18) in seconds; `None` when off or absent.
    pub idle_slot_timeout_secs: Option<f64>,
    /// How long a slot may sit inactive before cdc_health's own critical alert.
    pub inactive_critical_secs: f64,
    pub hot_standby_feedback: bool,
    /// Tables published with UPDATE or DELETE whose replica identity cannot identify a row.
    pub keyless_tables: Vec<KeylessTable>,
}

/// The file system `pg_wal` lives on.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Volume {
    pub total_bytes: i64,
    /// Space the server may still use (`f_bavail`: what is left to an unprivileged user).
    pub free_bytes: i64,
}

/// A published table whose UPDATE or DELETE fails for want of a replica identity.
#[derive(Debug, Clone, PartialEq)]
pub struct KeylessTable {
    /// The table's name as `schema.table`, quoted where needed (from `regclass`).
    pub table: String,
    /// One publication that publishes its UPDATEs or DELETEs.
    pub publication: String,
    /// `pg_class.relreplident`: `d` (default: the primary key, which it lacks), `n`
    /// (nothing) or `i` (an index that no longer exists or is not usable).
    pub identity: char,
    /// `update`, `delete` or `update, delete`: what the publication publishes and will fail.
    pub actions: String,
}

/// One problem found: a row of `cdc_health.config_audit()`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub check_code: &'static str,
    pub severity: Severity,
    /// What the problem is about: a setting, a table, the volume.
    pub object: String,
    pub summary: String,
    pub remediation: String,
}

/// Every check, in the order they are documented (README, "Configuration audit").
pub const CHECKS: &[&str] = &[
    "replica_identity_missing",
    "replication_slots_near_limit",
    "wal_senders_near_limit",
    "wal_level_not_logical",
    "wal_budget_unlimited",
    "wal_budget_exceeds_volume",
    "wal_sender_timeout_off",
    "idle_slot_timeout_short",
    "hot_standby_feedback_off",
];

/// Share of `max_replication_slots` or `max_wal_senders` in use from which the audit warns.
pub const NEAR_LIMIT: f64 = 0.8;
/// With an unlimited budget, free space on the WAL volume under which the audit warns: a
/// consumer outage then fills it in hours at an ordinary write rate.
pub const UNLIMITED_MIN_FREE_SHARE: f64 = 0.25;
/// An `idle_replication_slot_timeout` under this is shorter than a routine maintenance
/// window (a consumer's redeploy, a host's restart).
pub const IDLE_TIMEOUT_ROUTINE_SECS: f64 = 3600.0;

/// The audit's rows, most severe first, then in check order.
pub fn audit(f: &AuditFacts) -> Vec<AuditRow> {
    let mut rows = Vec::new();
    for t in &f.keyless_tables {
        rows.push(replica_identity(t));
    }
    rows.extend(near_limit(
        "replication_slots_near_limit",
        "max_replication_slots",
        "replication slots",
        f.slots_in_use,
        f.max_replication_slots,
        "The next consumer's CREATE_REPLICATION_SLOT (a new PeerDB mirror, a Debezium \
         connector, a subscription) fails with 53400. Drop slots no consumer uses (cdc_health() \
         lists the inactive ones) or raise max_replication_slots (a restart).",
    ));
    rows.extend(near_limit(
        "wal_senders_near_limit",
        "max_wal_senders",
        "walsenders",
        f.wal_senders_in_use,
        f.max_wal_senders,
        "The next replication connection (a consumer reconnecting, a standby, pg_basebackup) is \
         refused with 53300. Raise max_wal_senders (a restart) or find connections that should \
         not be there in pg_stat_replication.",
    ));
    if f.wal_level != "logical" && (f.publications > 0 || f.logical_slots > 0) {
        rows.push(AuditRow {
            check_code: "wal_level_not_logical",
            severity: Severity::Critical,
            object: "wal_level".into(),
            summary: format!(
                "wal_level is {} while this database has {} publication(s) and the server {} \
                 logical slot(s): no logical slot can be created or used",
                f.wal_level, f.publications, f.logical_slots
            ),
            remediation: "Set wal_level = logical and restart; until then every logical \
                          consumer fails with 55000."
                .into(),
        });
    }
    rows.extend(budget(f));
    if f.wal_sender_timeout_ms == 0 {
        rows.push(AuditRow {
            check_code: "wal_sender_timeout_off",
            severity: Severity::Warning,
            object: "wal_sender_timeout".into(),
            summary: "wal_sender_timeout is 0: a consumer that stops answering (hung, or its \
                      network gone) keeps its session, and its slot active, forever"
                .into(),
            remediation: "Set wal_sender_timeout to a minute or so (the default is 60s; a \
                          reload): a dead consumer's session then ends, its slot shows \
                          inactive and it can reconnect."
                .into(),
        });
    }
    if let Some(timeout) = f.idle_slot_timeout_secs.filter(|t| *t > 0.0) {
        let limit = IDLE_TIMEOUT_ROUTINE_SECS.max(f.inactive_critical_secs);
        if timeout < limit {
            rows.push(AuditRow {
                check_code: "idle_slot_timeout_short",
                severity: Severity::Warning,
                object: "idle_replication_slot_timeout".into(),
                summary: format!(
                    "idle_replication_slot_timeout is {}: a consumer down that long (a \
                     redeploy, a restart of its host) loses its slot at the next checkpoint{}",
                    pretty_duration(timeout),
                    if timeout <= f.inactive_critical_secs {
                        ", before cdc_health's inactive alert turns critical"
                    } else {
                        ""
                    }
                ),
                remediation: format!(
                    "Raise idle_replication_slot_timeout above the longest planned consumer \
                     outage and above cdc_health.inactive_critical ({}), or set it to 0 and \
                     bound the WAL with max_slot_wal_keep_size instead (a reload).",
                    pretty_duration(f.inactive_critical_secs)
                ),
            });
        }
    }
    if f.in_recovery && f.logical_slots > 0 && !f.hot_standby_feedback {
        rows.push(AuditRow {
            check_code: "hot_standby_feedback_off",
            severity: Severity::Warning,
            object: "hot_standby_feedback".into(),
            summary: format!(
                "this standby has {} logical slot(s) and hot_standby_feedback is off: the \
                 primary's vacuum removes rows they still need and recovery invalidates them \
                 (rows_removed)",
                f.logical_slots
            ),
            remediation: "Set hot_standby_feedback = on (a reload) and give the standby a \
                          physical slot on the primary (primary_slot_name)."
                .into(),
        });
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.severity));
    rows
}

fn replica_identity(t: &KeylessTable) -> AuditRow {
    let why = match t.identity {
        'n' => "REPLICA IDENTITY NOTHING",
        'i' => "a REPLICA IDENTITY index that is gone or unusable",
        _ => "no primary key and REPLICA IDENTITY DEFAULT",
    };
    AuditRow {
        check_code: "replica_identity_missing",
        severity: Severity::Critical,
        object: t.table.clone(),
        summary: format!(
            "{} is in publication {} which publishes {}, but has {}: every {} of it fails \
             with 55000 in the application that runs it",
            t.table,
            t.publication,
            t.actions,
            why,
            t.actions
                .split(", ")
                .map(str::to_uppercase)
                .collect::<Vec<_>>()
                .join(" and ")
        ),
        remediation: format!(
            "Add a primary key to {0}, or ALTER TABLE {0} REPLICA IDENTITY USING INDEX on a \
             unique index of NOT NULL columns, or (last resort, every column is logged) \
             ALTER TABLE {0} REPLICA IDENTITY FULL; or publish only INSERTs of it.",
            t.table
        ),
    }
}

fn near_limit(
    code: &'static str,
    setting: &str,
    what: &str,
    used: i64,
    max: i64,
    remedy: &str,
) -> Option<AuditRow> {
    if max <= 0 || (used as f64) < NEAR_LIMIT * max as f64 {
        return None;
    }
    Some(AuditRow {
        check_code: code,
        severity: if used >= max {
            Severity::Critical
        } else {
            Severity::Warning
        },
        object: setting.into(),
        summary: format!("{used} of {max} {what} in use ({setting})"),
        remediation: remedy.into(),
    })
}

fn budget(f: &AuditFacts) -> Option<AuditRow> {
    let volume = f.volume?;
    match f.wal_budget_bytes {
        None if (volume.free_bytes as f64)
            < UNLIMITED_MIN_FREE_SHARE * volume.total_bytes as f64 =>
        {
            Some(AuditRow {
                check_code: "wal_budget_unlimited",
                severity: Severity::Warning,
                object: "max_slot_wal_keep_size".into(),
                summary: format!(
                    "max_slot_wal_keep_size is unlimited and the volume holding pg_wal has {} \
                     free of {}: an abandoned slot fills it and the server stops (PANIC)",
                    pretty_bytes(volume.free_bytes),
                    pretty_bytes(volume.total_bytes)
                ),
                remediation: "Bound the WAL slots may keep with max_slot_wal_keep_size (a \
                              reload; cdc_health.budget_advice() proposes a value), or give \
                              pg_wal more space."
                    .into(),
            })
        }
        Some(budget) if budget > volume.total_bytes => Some(AuditRow {
            check_code: "wal_budget_exceeds_volume",
            severity: Severity::Warning,
            object: "max_slot_wal_keep_size".into(),
            summary: format!(
                "max_slot_wal_keep_size ({}) is larger than the volume holding pg_wal ({}): \
                 the disk fills before the budget invalidates a slot",
                pretty_bytes(budget),
                pretty_bytes(volume.total_bytes)
            ),
            remediation: "Lower max_slot_wal_keep_size below the space pg_wal can use (a \
                          reload; cdc_health.budget_advice() proposes a value)."
                .into(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> AuditFacts {
        AuditFacts {
            wal_level: "logical".into(),
            max_replication_slots: 10,
            slots_in_use: 2,
            logical_slots: 2,
            max_wal_senders: 10,
            wal_senders_in_use: 1,
            publications: 1,
            wal_budget_bytes: Some(64 << 30),
            volume: Some(Volume {
                total_bytes: 500 << 30,
                free_bytes: 300 << 30,
            }),
            wal_sender_timeout_ms: 60_000,
            idle_slot_timeout_secs: None,
            inactive_critical_secs: 3600.0,
            hot_standby_feedback: false,
            in_recovery: false,
            keyless_tables: vec![],
        }
    }

    fn codes(f: &AuditFacts) -> Vec<&'static str> {
        audit(f).iter().map(|r| r.check_code).collect()
    }

    #[test]
    fn a_healthy_server_has_no_rows() {
        assert!(audit(&healthy()).is_empty());
    }

    #[test]
    fn a_keyless_published_table_is_named_with_what_fails() {
        let mut f = healthy();
        f.keyless_tables.push(KeylessTable {
            table: "public.events".into(),
            publication: "peerdb_pub".into(),
            identity: 'd',
            actions: "update, delete".into(),
        });
        let rows = audit(&f);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (r.check_code, r.severity, r.object.as_str()),
            (
                "replica_identity_missing",
                Severity::Critical,
                "public.events"
            )
        );
        assert!(r.summary.contains("UPDATE and DELETE"), "{}", r.summary);
        assert!(r.summary.contains("no primary key"), "{}", r.summary);
        assert!(r.remediation.contains("REPLICA IDENTITY USING INDEX"));
        f.keyless_tables[0].identity = 'n';
        assert!(audit(&f)[0].summary.contains("NOTHING"));
    }

    #[test]
    fn slots_and_senders_warn_near_the_limit_and_are_critical_at_it() {
        let mut f = healthy();
        f.slots_in_use = 7;
        assert!(codes(&f).is_empty());
        f.slots_in_use = 8;
        assert_eq!(audit(&f)[0].severity, Severity::Warning);
        f.slots_in_use = 10;
        assert_eq!(audit(&f)[0].severity, Severity::Critical);
        assert!(audit(&f)[0].summary.contains("10 of 10 replication slots"));
        f.slots_in_use = 0;
        f.wal_senders_in_use = 9;
        assert_eq!(codes(&f), ["wal_senders_near_limit"]);
        f.max_wal_senders = 0;
        assert!(codes(&f).is_empty(), "max 0: nothing to divide");
    }

    #[test]
    fn wal_level_matters_only_where_logical_decoding_is_expected() {
        let mut f = healthy();
        f.wal_level = "replica".into();
        assert_eq!(codes(&f), ["wal_level_not_logical"]);
        f.publications = 0;
        f.logical_slots = 0;
        assert!(codes(&f).is_empty());
    }

    #[test]
    fn an_unlimited_budget_warns_only_on_a_volume_short_of_space() {
        let mut f = healthy();
        f.wal_budget_bytes = None;
        assert!(codes(&f).is_empty(), "60 % free");
        f.volume = Some(Volume {
            total_bytes: 100 << 30,
            free_bytes: 20 << 30,
        });
        assert_eq!(codes(&f), ["wal_budget_unlimited"]);
        f.volume = None;
        assert!(codes(&f).is_empty(), "an unknown volume says nothing");
    }

    #[test]
    fn a_budget_larger_than_the_volume_is_named() {
        let mut f = healthy();
        f.wal_budget_bytes = Some(600 << 30);
        let rows = audit(&f);
        assert_eq!(rows[0].check_code, "wal_budget_exceeds_volume");
        assert!(rows[0].summary.contains("600"), "{}", rows[0].summary);
    }

    #[test]
    fn timeouts() {
        let mut f = healthy();
        f.wal_sender_timeout_ms = 0;
        assert_eq!(codes(&f), ["wal_sender_timeout_off"]);
        f.wal_sender_timeout_ms = 60_000;
        f.idle_slot_timeout_secs = Some(600.0);
        let rows = audit(&f);
        assert_eq!(rows[0].check_code, "idle_slot_timeout_short");
        assert!(rows[0]
            .summary
            .contains("before cdc_health's inactive alert"));
        f.idle_slot_timeout_secs = Some(2.0 * 3600.0);
        assert!(codes(&f).is_empty());
        f.inactive_critical_secs = 4.0 * 3600.0;
        assert_eq!(
            codes(&f),
            ["idle_slot_timeout_short"],
            "shorter than our critical"
        );
    }

    #[test]
    fn hot_standby_feedback_matters_on_a_standby_with_logical_slots() {
        let mut f = healthy();
        assert!(codes(&f).is_empty(), "a primary");
        f.in_recovery = true;
        assert_eq!(codes(&f), ["hot_standby_feedback_off"]);
        f.hot_standby_feedback = true;
        assert!(codes(&f).is_empty());
    }

    #[test]
    fn rows_come_most_severe_first_and_every_code_is_listed() {
        let mut f = healthy();
        f.wal_sender_timeout_ms = 0;
        f.slots_in_use = 10;
        f.keyless_tables.push(KeylessTable {
            table: "t".into(),
            publication: "p".into(),
            identity: 'd',
            actions: "update".into(),
        });
        let rows = audit(&f);
        assert_eq!(rows.len(), 3);
        assert!(rows.windows(2).all(|w| w[0].severity >= w[1].severity));
        assert!(rows.iter().all(|r| CHECKS.contains(&r.check_code)));
    }
}
