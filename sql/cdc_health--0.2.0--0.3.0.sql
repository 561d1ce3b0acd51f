-- cdc_health 0.2.0 -> 0.3.0 (see CHANGELOG.md). Every change to a SQL object after 0.2.0 goes
-- here, with its CHANGELOG line.
\echo Use "ALTER EXTENSION cdc_health UPDATE TO '0.3.0'" to load this file. \quit

-- config_audit(): settings and schema details that break change data capture, for pg_monitor.
CREATE FUNCTION cdc_health."config_audit"() RETURNS TABLE (
	"check_code" TEXT,
	"severity" TEXT,
	"object" TEXT,
	"summary" TEXT,
	"remediation" TEXT
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'config_audit_wrapper';
REVOKE ALL ON FUNCTION cdc_health.config_audit() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.config_audit() TO pg_monitor;
COMMENT ON FUNCTION cdc_health.config_audit() IS
  'Settings and schema details that break change data capture, one row per problem';

-- The history rollup deletes rows of history_samples, which has no key: under a FOR ALL TABLES
-- publication each DELETE failed with 55000. The whole row is its replica identity now.
ALTER TABLE cdc_health.history_samples REPLICA IDENTITY FULL;

-- wal_usage(): the volume holding pg_wal and what holds the WAL on it, for pg_monitor.
CREATE FUNCTION cdc_health."wal_usage"() RETURNS TABLE (
	"wal_directory" TEXT,
	"disk_total_bytes" bigint,
	"disk_free_bytes" bigint,
	"wal_bytes" bigint,
	"largest_slot" TEXT,
	"largest_slot_bytes" bigint,
	"wal_keep_bytes" bigint,
	"archive_pending_segments" bigint,
	"max_wal_size_bytes" bigint,
	"fill_rate_bytes_per_second" double precision,
	"eta_to_full" interval,
	"status" TEXT,
	"summary" TEXT,
	"remediation" TEXT
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'wal_usage_wrapper';
REVOKE ALL ON FUNCTION cdc_health.wal_usage() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.wal_usage() TO pg_monitor;
COMMENT ON FUNCTION cdc_health.wal_usage() IS
  'The volume holding pg_wal: free space, what holds the WAL, the fill rate and when it is full';

-- budget_advice(): max_slot_wal_keep_size now and recommended, for pg_monitor.
CREATE FUNCTION cdc_health."budget_advice"() RETURNS TABLE (
	"setting" TEXT,
	"max_slot_wal_keep_size" TEXT,
	"budget_bytes" bigint,
	"survives_outage" interval,
	"leaves_free_bytes" bigint,
	"peak_wal_bytes_per_hour" bigint,
	"longest_outage" interval,
	"summary" TEXT
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'budget_advice_wrapper';
REVOKE ALL ON FUNCTION cdc_health.budget_advice() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.budget_advice() TO pg_monitor;
COMMENT ON FUNCTION cdc_health.budget_advice() IS
  'max_slot_wal_keep_size now and recommended: the consumer outage each survives and the room it leaves';
