//! What `cdc_health.config_audit()` looks at: settings, slots and walsenders in use,
//! publications and the tables they publish without a usable replica identity.

use cdc_health_rules::audit::{AuditFacts, KeylessTable};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;

use crate::pg::backend::{in_recovery, setting_int, setting_text};

/// Counts the audit needs, in one statement. Walsenders are counted from `pg_stat_activity`
/// (every one, including those of backups), as `max_wal_senders` limits them all.
const COUNTS: &str = "SELECT
    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_replication_slots),
    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_replication_slots
      WHERE slot_type OPERATOR(pg_catalog.=) 'logical'),
    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity
      WHERE backend_type OPERATOR(pg_catalog.=) 'walsender'),
    (SELECT pg_catalog.count(*) FROM pg_catalog.pg_publication)";

/// Every table a publication of this database publishes UPDATEs or DELETEs of (the leaves of
/// a partitioned one: a row is changed in its leaf, whose identity counts; a plain table has
/// no partition tree, so it stands for itself) whose replica
/// identity cannot name a row: NOTHING, DEFAULT without a primary key, or USING INDEX with no
/// valid index so marked. Once per table, with the first such publication by name.
const KEYLESS: &str = "SELECT DISTINCT ON (c.oid)
        c.oid::pg_catalog.regclass::pg_catalog.text,
        pg_catalog.quote_ident(p.pubname::pg_catalog.text),
        c.relreplident::pg_catalog.text,
        pg_catalog.concat_ws(', ', CASE WHEN p.pubupdate THEN 'update' END,
                                   CASE WHEN p.pubdelete THEN 'delete' END)
    FROM pg_catalog.pg_publication p
    CROSS JOIN LATERAL pg_catalog.pg_get_publication_tables(p.pubname::pg_catalog.text) t
    LEFT JOIN LATERAL pg_catalog.pg_partition_tree(t.relid) leaf ON true
    JOIN pg_catalog.pg_class c
      ON c.oid OPERATOR(pg_catalog.=) COALESCE(leaf.relid, t.relid)
    WHERE (p.pubupdate OR p.pubdelete) AND COALESCE(leaf.isleaf, true)
      AND c.relkind OPERATOR(pg_catalog.=) 'r'
      AND NOT (c.relreplident OPERATOR(pg_catalog.=) 'f'
        OR (c.relreplident OPERATOR(pg_catalog.=) 'd' AND EXISTS (
              SELECT FROM pg_catalog.pg_index i
              WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND i.indisprimary AND i.indisvalid))
        OR (c.relreplident OPERATOR(pg_catalog.=) 'i' AND EXISTS (
              SELECT FROM pg_catalog.pg_index i
              WHERE i.indrelid OPERATOR(pg_catalog.=) c.oid AND i.indisreplident
                AND i.indisvalid)))
    ORDER BY c.oid, p.pubname";

/// Reads what the audit needs. The caller forces a safe `search_path`.
pub fn facts() -> SpiResult<AuditFacts> {
    let (slots, logical, senders, publications) = Spi::connect(|client| {
        let row = client.select(COUNTS, Some(1), &[])?.first();
        SpiResult::Ok((
            row.get::<i64>(1)?.unwrap_or(0),
            row.get::<i64>(2)?.unwrap_or(0),
            row.get::<i64>(3)?.unwrap_or(0),
            row.get::<i64>(4)?.unwrap_or(0),
        ))
    })?;
    let keyless_tables = Spi::connect(|client| {
        client
            .select(KEYLESS, None, &[])?
            .map(|row| {
                Ok(KeylessTable {
                    table: row.get::<String>(1)?.unwrap_or_default(),
                    publication: row.get::<String>(2)?.unwrap_or_default(),
                    identity: row
                        .get::<String>(3)?
                        .and_then(|s| s.chars().next())
                        .unwrap_or('d'),
                    actions: row.get::<String>(4)?.unwrap_or_default(),
                })
            })
            .collect::<SpiResult<Vec<_>>>()
    })?;
    let server = crate::slots::sampling::server();
    Ok(AuditFacts {
        wal_level: setting_text(c"wal_level").unwrap_or_default(),
        in_recovery: in_recovery(),
        max_replication_slots: setting_int(c"max_replication_slots").unwrap_or(0),
        slots_in_use: slots,
        logical_slots: logical,
        max_wal_senders: setting_int(c"max_wal_senders").unwrap_or(0),
        wal_senders_in_use: senders,
        publications,
        wal_budget_bytes: server.wal_budget_bytes,
        volume: super::volume::wal_volume(),
        wal_sender_timeout_ms: setting_int(c"wal_sender_timeout").unwrap_or(0),
        idle_slot_timeout_secs: server.idle_timeout_secs,
        inactive_critical_secs: crate::settings::thresholds().inactive_critical_secs,
        hot_standby_feedback: setting_text(c"hot_standby_feedback").is_some_and(|v| v == "on"),
        keyless_tables,
    })
}
