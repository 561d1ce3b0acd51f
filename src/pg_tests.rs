//! `#[pg_test]`s: the SQL surface inside a real server started by `cargo pgrx test`.
//!
//! Slots are created first through read-only `select`s: a transaction that has written
//! cannot create a logical slot.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// PostgreSQL 17 added `inactive_since`, so an idle slot's idle time is known.
    const INACTIVE_SINCE_KNOWN: bool = cfg!(any(feature = "pg17", feature = "pg18"));

    fn health_row(slot: &str) -> (String, Vec<String>, Option<i64>, Option<String>) {
        Spi::connect(|client| {
            let rows = client.select(
                "SELECT status, findings, retained_wal_bytes, remediation FROM cdc_health() \
                 WHERE slot_name = $1",
                None,
                &[slot.into()],
            )?;
            let row = rows.first();
            Ok::<_, pgrx::spi::Error>((
                row.get::<String>(1)?.expect("status"),
                row.get::<Vec<String>>(2)?.expect("findings"),
                row.get::<i64>(3)?,
                row.get::<String>(4)?,
            ))
        })
        .unwrap()
    }

    #[pg_test]
    fn healthy_logical_slot_is_ok() {
        Spi::connect(|c| {
            c.select(
                "SELECT pg_create_logical_replication_slot('t_ok', 'test_decoding')",
                None,
                &[],
            )
            .map(|_| ())
        })
        .unwrap();
        let (status, findings, retained, remediation) = health_row("t_ok");
        assert!(retained.unwrap() >= 0);
        if INACTIVE_SINCE_KNOWN {
            // Idle for less than cdc_health.inactive_warning (5min): nothing to report.
            assert_eq!((status.as_str(), findings.len()), ("ok", 0));
            assert_eq!(remediation, None);
        } else {
            // Nobody streams from it and for how long is unknown: a warning at once.
            assert_eq!(findings, vec!["inactive".to_string()]);
            assert_eq!(status, "warning");
            assert!(remediation.unwrap().contains("consumer"));
        }
    }

    #[pg_test]
    fn physical_slot_without_reservation_has_null_sizes() {
        Spi::connect(|c| {
            c.select(
                "SELECT pg_create_physical_replication_slot('t_phys')",
                None,
                &[],
            )
            .map(|_| ())
        })
        .unwrap();
        let (_, findings, retained, _) = health_row("t_phys");
        assert_eq!(retained, None);
        assert_eq!(
            findings.contains(&"inactive".to_string()),
            !INACTIVE_SINCE_KNOWN
        );
    }

    #[pg_test]
    fn worker_columns_are_null_and_detail_says_why() {
        Spi::connect(|c| {
            c.select(
                "SELECT pg_create_physical_replication_slot('t_w', true)",
                None,
                &[],
            )
            .map(|_| ())
        })
        .unwrap();
        let (nulls, running) = Spi::get_two::<bool, bool>(
            "SELECT last_progress_at IS NULL AND growth_bytes_per_sec IS NULL AND eta_to_lost IS NULL, \
                    (detail->'worker'->>'running')::bool FROM cdc_health() WHERE slot_name = 't_w'",
        )
        .unwrap();
        assert_eq!(nulls, Some(true));
        assert_eq!(running, Some(false));
    }

    #[pg_test]
    fn pg_monitor_may_execute_and_public_may_not() {
        let grants = Spi::get_two::<bool, bool>(
            "SELECT has_function_privilege('pg_monitor', 'cdc_health()', 'EXECUTE'), \
                    has_function_privilege('public', 'cdc_health()', 'EXECUTE')",
        )
        .unwrap();
        assert_eq!(grants, (Some(true), Some(false)));
    }
}
