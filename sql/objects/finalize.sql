-- Every privilege of the extension's objects, in one place, run last (finalize): reading
-- health is pg_monitor's, changing configuration is the owner's (who may grant it on).
-- Loaded by src/schema.rs (extension_sql_file!).

GRANT USAGE ON SCHEMA cdc_health TO pg_monitor;

-- History, alerts, heartbeat.
GRANT SELECT ON cdc_health.slot_history, cdc_health.history_slots, cdc_health.history_samples,
    cdc_health.history_rollups, cdc_health.alerts, cdc_health.heartbeat TO pg_monitor;
REVOKE ALL ON FUNCTION cdc_health.history(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.history(text, timestamptz) TO pg_monitor;
REVOKE ALL ON FUNCTION cdc_health.alerts_changed() FROM PUBLIC;

-- Mirror checks: configuration is the owner's; reading is pg_monitor's.
REVOKE ALL ON cdc_health.mirror_checks FROM PUBLIC;
GRANT SELECT ON cdc_health.mirror_checks TO pg_monitor;
REVOKE ALL ON FUNCTION cdc_health.mirrors() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.mirrors() TO pg_monitor;
REVOKE ALL ON FUNCTION cdc_health.add_mirror(text, regclass, text, regclass, text, interval, text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_health.add_freshness_check(text, regclass, text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_health.remove_mirror(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_health.check_mirror(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_health.verify_mirror(text, text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_health.clickhouse_validator(text[], oid) FROM PUBLIC;

-- Alert sinks: options may hold secrets, so the table is the owner's; pg_monitor reads the
-- counters and cdc_health.sinks(), which masks the rest. The outbox is pg_monitor's to read.
REVOKE ALL ON cdc_health.sinks FROM PUBLIC;
GRANT SELECT (name, kind, added_by, created_at, delivered, failed, dropped, attempts, next_attempt_at,
              last_attempt_at, last_status, last_error, last_delivered_at, failing_since)
    ON cdc_health.sinks TO pg_monitor;
REVOKE ALL ON cdc_health.deliveries FROM PUBLIC;
GRANT SELECT ON cdc_health.deliveries TO pg_monitor;
REVOKE ALL ON FUNCTION cdc_health.add_sink(text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_health.remove_sink(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_health.test_sink(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_health.sinks() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.sinks() TO pg_monitor;

-- Slots, the worker and /metrics' text.
REVOKE ALL ON FUNCTION cdc_health() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health() TO pg_monitor;
REVOKE ALL ON FUNCTION cdc_health.check_now() FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_health.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.worker_status() TO pg_monitor;
REVOKE ALL ON FUNCTION cdc_health.slot_creations() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.slot_creations() TO pg_monitor;
REVOKE ALL ON FUNCTION cdc_health.sparkline(text, timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.sparkline(text, timestamptz, integer) TO pg_monitor;
REVOKE ALL ON FUNCTION cdc_health.metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.metrics() TO pg_monitor;

-- The server: the configuration audit, the WAL volume and the budget advice (0.3.0).
REVOKE ALL ON FUNCTION cdc_health.config_audit() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.config_audit() TO pg_monitor;
REVOKE ALL ON FUNCTION cdc_health.wal_usage() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.wal_usage() TO pg_monitor;
REVOKE ALL ON FUNCTION cdc_health.budget_advice() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.budget_advice() TO pg_monitor;

-- Comments on the functions written in Rust (#[pg_extern] has no COMMENT of its own).
COMMENT ON FUNCTION cdc_health() IS
  'One row per replication slot, worst first: status, findings and what to do about them';
COMMENT ON FUNCTION cdc_health.config_audit() IS
  'Settings and schema details that break change data capture, one row per problem';
COMMENT ON FUNCTION cdc_health.wal_usage() IS
  'The volume holding pg_wal: free space, what holds the WAL, the fill rate and when it is full';
COMMENT ON FUNCTION cdc_health.budget_advice() IS
  'max_slot_wal_keep_size now and recommended: the consumer outage each survives and the room it leaves';
COMMENT ON FUNCTION cdc_health.add_sink(text, text, text, jsonb) IS
  'Adds a sink alerts are delivered to: alertmanager, webhook, slack or pagerduty';
COMMENT ON FUNCTION cdc_health.remove_sink(text) IS
  'Removes a sink and what waits for it';
COMMENT ON FUNCTION cdc_health.test_sink(text) IS
  'Sends a test alert to a sink now; returns the HTTP status';
COMMENT ON FUNCTION cdc_health.sinks() IS
  'Alert sinks with their filters and delivery counters, without secrets';
