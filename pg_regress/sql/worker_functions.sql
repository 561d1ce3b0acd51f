-- The worker's SQL functions on a server without preloading: they explain themselves,
-- and check_now() runs a pass in the calling session.
CREATE EXTENSION cdc_health;

SELECT running, pid, passes, note FROM cdc_health.worker_status();

-- A logical slot whose catalog_xmin falls behind: age it past a low threshold.
SELECT 'created' FROM pg_create_logical_replication_slot('regress_aging', 'test_decoding');
ALTER SYSTEM SET cdc_health.xmin_age_warning = 1;
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
-- Each statement is its own transaction and takes a new xid.
SELECT txid_current() > 0 AS burnt;
SELECT txid_current() > 0 AS burnt;
SELECT txid_current() > 0 AS burnt;
-- Alerts are also logged at WARNING; which ones differs by version (inactive_since on 17).
SET client_min_messages = error;

-- First pass raises, second finds the alert open and raises nothing new.
SELECT event, subject, finding, severity FROM cdc_health.check_now()
WHERE finding = 'xmin_horizon_old';
SELECT count(*) AS events FROM cdc_health.check_now() WHERE finding = 'xmin_horizon_old';
SELECT subject, finding, severity, resolved_at IS NULL AS open, notifications
FROM cdc_health.alerts WHERE finding = 'xmin_horizon_old';

-- The pass wrote history for the slot.
SELECT count(*) > 0 AS has_history FROM cdc_health.history('regress_aging');
SELECT slot_type, active, status FROM cdc_health.history('regress_aging') LIMIT 1;
SELECT cdc_health.sparkline('regress_aging') IS NOT NULL AS has_sparkline;
SELECT cdc_health.sparkline('no_such_slot');
SELECT cdc_health.sparkline('regress_aging', width => 0);

-- Once the slot is gone its alert starts clearing; it resolves after a full interval.
SELECT pg_drop_replication_slot('regress_aging');
SELECT count(*) AS events FROM cdc_health.check_now() WHERE subject = 'slot:regress_aging';
SELECT finding, resolved_at IS NULL AS still_open, clear_since IS NOT NULL AS clearing
FROM cdc_health.alerts WHERE finding = 'xmin_horizon_old';
ALTER SYSTEM RESET cdc_health.xmin_age_warning;
SELECT pg_reload_conf();
RESET client_min_messages;

-- Who may do what.
CREATE ROLE regress_watcher IN ROLE pg_monitor;
SET ROLE regress_watcher;
SELECT count(*) >= 0 AS can_read FROM cdc_health.alerts;
SELECT count(*) >= 0 AS can_read FROM cdc_health.slot_history;
SELECT running FROM cdc_health.worker_status();
SELECT * FROM cdc_health.check_now();
RESET ROLE;
DROP ROLE regress_watcher;
DROP EXTENSION cdc_health;
