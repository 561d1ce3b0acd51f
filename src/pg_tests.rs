//! `#[pg_test]`s: the SQL surface inside a real server started by `cargo pgrx test`.
//!
//! Slots are created first through read-only `select`s: a transaction that has written
//! cannot create a logical slot.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    /// Slots take the lowest free entry; passes look only below the high-water mark, which
    /// grows as entries are taken and shrinks when the last ones are freed.
    #[pg_test]
    fn slots_take_the_lowest_free_entry_below_a_high_water_mark() {
        use crate::shmem::{assign, Entry};
        use cdc_health_rules::history::SlotTrack;
        let mut entries: Vec<Entry> = (0..4)
            .map(|_| Entry::new(false, SlotTrack::new("").unwrap()))
            .collect();
        let mut used = 0;
        let mut pass = |names: &[&str], used: &mut usize| assign(&mut entries, used, names);
        assert_eq!(
            pass(&["a", "b", "c"], &mut used),
            [Some(0), Some(1), Some(2)]
        );
        assert_eq!(used, 3);
        // b dropped: c keeps its entry, so the mark stays.
        assert_eq!(pass(&["a", "c"], &mut used), [Some(0), Some(2)]);
        assert_eq!(used, 3);
        // A new slot takes b's old entry before a never used one.
        assert_eq!(
            pass(&["c", "a", "d"], &mut used),
            [Some(2), Some(0), Some(1)]
        );
        assert_eq!(
            pass(&["a", "c", "d", "e", "f"], &mut used),
            [Some(0), Some(2), Some(1), Some(3), None]
        );
        assert_eq!(used, 4);
        // The last entries freed: the mark comes down to the last one in use.
        assert_eq!(pass(&["a"], &mut used), [Some(0)]);
        assert_eq!(used, 1);
        assert_eq!(pass(&[], &mut used), []);
        assert_eq!(used, 0);
    }

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

    /// Reports in its last column which of its columns the calling plan reads.
    #[pg_extern]
    fn columns_read(
        fcinfo: pg_sys::FunctionCallInfo,
    ) -> TableIterator<
        'static,
        (
            name!(a, i32),
            name!(b, i32),
            name!(c, i32),
            name!(seen, String),
        ),
    > {
        // SAFETY: this call's own fcinfo, during the call.
        let columns = unsafe { crate::pg::projection::Columns::of_call(fcinfo) };
        let seen: Vec<String> = (1..=4)
            .filter(|&n| columns.reads(n))
            .map(|n| n.to_string())
            .collect();
        let seen = if columns.reads(100) {
            "all".into()
        } else {
            seen.join(",")
        };
        TableIterator::once((1, 2, 3, seen))
    }

    #[pg_test]
    fn a_function_in_from_learns_which_columns_the_plan_reads() {
        let seen = |query: &str| Spi::get_one::<String>(query).unwrap().unwrap();
        assert_eq!(seen("SELECT seen FROM tests.columns_read()"), "4");
        assert_eq!(
            seen("SELECT seen FROM tests.columns_read() WHERE b > 0"),
            "2,4"
        );
        assert_eq!(
            seen("SELECT a::text || ':' || seen FROM tests.columns_read()"),
            "1:1,4"
        );
        assert_eq!(
            seen("SELECT seen FROM tests.columns_read() ORDER BY c LIMIT 1"),
            "3,4"
        );
        assert_eq!(
            seen("SELECT seen FROM (SELECT * FROM tests.columns_read() OFFSET 0) s"),
            "4"
        );
        // A whole-row reference, a call in a target list, several functions in one scan:
        // every column is built.
        assert_eq!(
            seen("SELECT to_jsonb(r)->>'seen' FROM tests.columns_read() r"),
            "all"
        );
        assert_eq!(seen("SELECT (tests.columns_read()).seen"), "all");
        assert_eq!(
            seen("SELECT seen FROM ROWS FROM (tests.columns_read(), generate_series(1, 1))"),
            "all"
        );
        // cdc_health() leaves out unread costly columns, and builds those a filter reads.
        Spi::run("SELECT pg_create_physical_replication_slot('t_cols', true)").unwrap();
        let in_filter = Spi::get_one::<String>(
            "SELECT slot_name FROM cdc_health() WHERE detail->>'temporary' = 'false' \
             AND findings IS NOT NULL AND slot_name = 't_cols'",
        )
        .unwrap();
        assert_eq!(in_filter.as_deref(), Some("t_cols"));
    }

    /// The jsonb writer gives byte for byte what `jsonb_in` makes of the same text.
    #[pg_test]
    fn built_jsonb_is_what_jsonb_in_makes() {
        use cdc_health_rules::json::Json;
        // SAFETY: both datums are whole, untoasted jsonb varlenas made just before.
        let bytes = |datum: pg_sys::Datum| unsafe {
            let ptr = datum.cast_mut_ptr::<pg_sys::varlena>();
            std::slice::from_raw_parts(ptr.cast::<u8>(), pgrx::varlena::varsize_any(ptr)).to_vec()
        };
        let check = |built: crate::pg::jsonb::Jsonb, value: &serde_json::Value| {
            let built = built.into_datum().unwrap();
            let parsed = pgrx::JsonB(value.clone()).into_datum().unwrap();
            assert_eq!(bytes(built), bytes(parsed), "{value}");
            // SAFETY: a non-null jsonb datum made above.
            let back = unsafe { pgrx::JsonB::from_datum(built, false) }.unwrap();
            assert_eq!(&back.0, value);
        };
        // Containers after odd-length strings (numerics and containers are int-aligned),
        // more than 32 entries (every 32nd JEntry is an offset), repeated keys, bare scalars.
        let many: serde_json::Map<String, serde_json::Value> = (0..70)
            .map(|i| (format!("k{i}"), serde_json::json!([i, "abc", {"n": i}])))
            .collect();
        let values = [
            serde_json::json!({
                "findings": [{"code": "lost", "severity": "critical"}, {"code": "inactive"}],
                "a": null, "bb": true, "c": false, "zz": -42, "big": u64::MAX, "ratio": 0.125,
                "text": "quote \" backslash \\ tab\t é 漢", "": "empty key",
                "nested": {"deeper": [[1, 2], [], {}], "x": "y"},
                "same_len_1": 1, "same_len_0": 0,
            }),
            serde_json::Value::Object(many),
            serde_json::json!((0..100)
                .map(|i| if i % 3 == 0 {
                    serde_json::json!(i)
                } else {
                    serde_json::json!("x".repeat(i))
                })
                .collect::<Vec<_>>()),
            serde_json::json!([
                0,
                1,
                -1,
                9999,
                10000,
                -10000,
                12345678,
                100000000,
                1_000_000_000_001_i64,
                i64::MAX,
                i64::MIN,
                i64::MIN + 1,
                4_000_000_000u64,
                1e300
            ]),
            serde_json::json!("a bare string"),
            serde_json::json!(7),
            serde_json::json!(-0.5),
            serde_json::json!(null),
            serde_json::json!(true),
            serde_json::json!([]),
            serde_json::json!({}),
        ];
        for value in &values {
            check(crate::pg::jsonb::Jsonb::from(value.clone()), value);
        }
        // The tree form, as `detail` builds it, with a repeated key and a nested serde value.
        let mut tree = Json::object([
            ("restart_lsn", "0/1A2B3C".into()),
            ("active_pid", Json::Null),
            ("xmin_age", 12i64.into()),
            (
                "findings",
                Json::Array(vec![Json::object([("code", "lost".into())])]),
            ),
            ("temporary", false.into()),
        ]);
        tree.insert("xmin_age", 13i64.into());
        tree.insert(
            "creation",
            serde_json::json!({"blockers": [{"pid": 5}], "w": 0.5}).into(),
        );
        let value = serde_json::Value::from(tree.clone());
        check(crate::pg::jsonb::Jsonb(tree), &value);
    }
}
