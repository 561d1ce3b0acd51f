-- cdc_health 0.1.0 -> 0.2.0 (ALTER EXTENSION cdc_health UPDATE TO '0.2.0').
-- Every SQL object change since 0.1.0, in the order made; each has a CHANGELOG.md line.
-- The result must equal a fresh CREATE EXTENSION of 0.2.0 (tests/test_upgrade.py checks).
\echo Use "ALTER EXTENSION cdc_health UPDATE TO '0.2.0'" to load this file. \quit

-- worker_status() gains skipped_passes (passes skipped behind a concurrent pass). A new
-- symbol: 0.1.0's worker_status_wrapper keeps returning 0.1.0's columns (src/released.rs).
DROP FUNCTION cdc_health.worker_status();
CREATE FUNCTION cdc_health."worker_status"() RETURNS TABLE (
	"running" bool,
	"pid" INT,
	"started_at" timestamp with time zone,
	"last_pass_at" timestamp with time zone,
	"passes" bigint,
	"failed_passes" bigint,
	"skipped_passes" bigint,
	"extension_present" bool,
	"in_recovery" bool,
	"tracked_slots" INT,
	"untracked_slots" INT,
	"note" TEXT
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'worker_status_v2_wrapper';
REVOKE ALL ON FUNCTION cdc_health.worker_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.worker_status() TO pg_monitor;

-- A check whose probe ignored its cancellation is quarantined: not probed again by the
-- worker until cdc_health.check_mirror(name) completes a probe.
ALTER TABLE cdc_health.mirror_checks ADD COLUMN quarantined_at timestamptz;

-- metrics(): every metric in the Prometheus text format, for pg_monitor (the /metrics
-- endpoint serves the same families without SQL).
CREATE FUNCTION cdc_health."metrics"() RETURNS TEXT
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'metrics_wrapper';
REVOKE ALL ON FUNCTION cdc_health.metrics() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.metrics() TO pg_monitor;
