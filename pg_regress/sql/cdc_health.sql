-- The SQL surface of cdc_health, on a server without preloading (in a fresh database, or in
-- a copy of an upgraded one).
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cdc_health;
RESET client_min_messages;

-- The contract: the columns of cdc_health(), in order.
SELECT pg_catalog.pg_get_function_result('cdc_health()'::regprocedure);

-- No slots, no rows.
SELECT count(*) FROM cdc_health();

-- A physical slot that reserved WAL and a logical one; nobody consumes either.
SELECT 'created' FROM pg_create_physical_replication_slot('regress_physical', true);
SELECT 'created' FROM pg_create_logical_replication_slot('regress_logical', 'test_decoding');

SELECT slot_name, slot_type, database, active, wal_status, status, findings,
       retained_wal_bytes >= 0 AS retains, flush_lag_bytes >= 0 AS lags,
       wal_budget_bytes, last_progress_at, growth_bytes_per_sec, eta_to_lost,
       remediation LIKE 'No consumer is connected%' AS remedy_names_consumer,
       detail->'worker'->>'running' AS worker_running,
       detail->'findings'->0->>'code' AS first_finding
FROM cdc_health()
ORDER BY slot_name;

-- Thresholds: defaults with units, and bad values rejected with the setting's name.
SHOW cdc_health.retained_wal_warning;
SHOW cdc_health.safe_wal_size_warning;
SHOW cdc_health.inactive_warning;
SHOW cdc_health.inactive_critical;
SHOW cdc_health.xmin_age_warning;
ALTER SYSTEM SET cdc_health.retained_wal_warning = 'lots';
ALTER SYSTEM SET cdc_health.retained_wal_warning = '0';
ALTER SYSTEM SET cdc_health.safe_wal_size_warning = 101;
ALTER SYSTEM SET cdc_health.inactive_warning = '5 parsecs';
ALTER SYSTEM SET cdc_health.xmin_age_warning = 0;
-- Thresholds are server-wide: a session cannot loosen them for itself.
SET cdc_health.retained_wal_warning = '10GB';

-- Reading health needs pg_monitor.
CREATE ROLE regress_nobody;
CREATE ROLE regress_watcher IN ROLE pg_monitor;
SET ROLE regress_nobody;
SELECT count(*) FROM cdc_health();
RESET ROLE;
SET ROLE regress_watcher;
SELECT slot_name, status FROM cdc_health() ORDER BY slot_name;
RESET ROLE;

-- Clean up: dropping the extension removes its schema.
SELECT pg_drop_replication_slot('regress_physical');
SELECT pg_drop_replication_slot('regress_logical');
DROP ROLE regress_nobody;
DROP ROLE regress_watcher;
DROP EXTENSION cdc_health;
SELECT count(*) FROM pg_namespace WHERE nspname = 'cdc_health';
