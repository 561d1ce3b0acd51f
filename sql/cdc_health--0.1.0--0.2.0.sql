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

-- Alert delivery (sinks, the outbox and its worker): tables, then the functions.
-- Alert sinks. Options may hold secrets (webhook keys, routing keys, headers): the table is
-- the owner's; pg_monitor reads its counters and cdc_health.sinks(), which masks the rest.
CREATE TABLE cdc_health.sinks (
    name              text        PRIMARY KEY CHECK (name <> ''),
    kind              text        NOT NULL
                      CHECK (kind IN ('alertmanager', 'webhook', 'slack', 'pagerduty')),
    url               text        NOT NULL,
    options           jsonb       NOT NULL DEFAULT '{}',
    added_by          regrole     NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    delivered         bigint      NOT NULL DEFAULT 0,
    failed            bigint      NOT NULL DEFAULT 0,
    dropped           bigint      NOT NULL DEFAULT 0,
    attempts          integer     NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz,
    last_attempt_at   timestamptz,
    last_status       integer,
    last_error        text,
    last_delivered_at timestamptz,
    failing_since     timestamptz,
    resent_at         timestamptz
);
COMMENT ON TABLE cdc_health.sinks IS 'Where cdc_health delivers alerts (cdc_health.add_sink)';
SELECT pg_catalog.pg_extension_config_dump('cdc_health.sinks', '');
REVOKE ALL ON cdc_health.sinks FROM PUBLIC;
GRANT SELECT (name, kind, added_by, created_at, delivered, failed, dropped, attempts, next_attempt_at,
              last_attempt_at, last_status, last_error, last_delivered_at, failing_since)
    ON cdc_health.sinks TO pg_monitor;

-- The outbox: one row per transition and sink; its id is the delivery id receivers see.
CREATE TABLE cdc_health.deliveries (
    id           bigserial   PRIMARY KEY,
    sink         text        NOT NULL REFERENCES cdc_health.sinks (name) ON DELETE CASCADE,
    alert_id     bigint      NOT NULL,
    event        text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    attempts     integer     NOT NULL DEFAULT 0,
    delivered_at timestamptz,
    failed_at    timestamptz,
    error        text
);
CREATE INDEX deliveries_pending ON cdc_health.deliveries (sink, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX deliveries_created ON cdc_health.deliveries USING brin (created_at);
COMMENT ON TABLE cdc_health.deliveries IS
    'Alert transitions queued for each sink, delivered or not (the outbox)';
REVOKE ALL ON cdc_health.deliveries FROM PUBLIC;
GRANT SELECT ON cdc_health.deliveries TO pg_monitor;

CREATE FUNCTION cdc_health."add_sink"(
	"name" TEXT,
	"kind" TEXT,
	"url" TEXT,
	"options" jsonb DEFAULT '{}'
) RETURNS void
STRICT VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'add_sink_wrapper';

CREATE FUNCTION cdc_health."sinks"() RETURNS TABLE (
	"name" TEXT,
	"kind" TEXT,
	"url" TEXT,
	"options" jsonb,
	"pending" bigint,
	"delivered" bigint,
	"failed" bigint,
	"dropped" bigint,
	"failing" bool,
	"last_error" TEXT,
	"last_status" INT,
	"last_attempt_at" timestamp with time zone,
	"last_delivered_at" timestamp with time zone,
	"next_attempt_at" timestamp with time zone
)
STRICT VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'sinks_wrapper';

CREATE FUNCTION cdc_health."test_sink"(
	"name" TEXT
) RETURNS INT
STRICT VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'test_sink_wrapper';

CREATE FUNCTION cdc_health."remove_sink"(
	"name" TEXT
) RETURNS bool
STRICT VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'remove_sink_wrapper';
REVOKE ALL ON FUNCTION cdc_health.add_sink(text, text, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_health.remove_sink(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_health.test_sink(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION cdc_health.sinks() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.sinks() TO pg_monitor;
COMMENT ON FUNCTION cdc_health.add_sink(text, text, text, jsonb) IS
  'Adds a sink alerts are delivered to: alertmanager, webhook, slack or pagerduty';
COMMENT ON FUNCTION cdc_health.remove_sink(text) IS
  'Removes a sink and what waits for it';
COMMENT ON FUNCTION cdc_health.test_sink(text) IS
  'Sends a test alert to a sink now; returns the HTTP status';
COMMENT ON FUNCTION cdc_health.sinks() IS
  'Alert sinks with their filters and delivery counters, without secrets';

-- History thinned with age: slot_history becomes a view over history_slots (each slot named
-- once) and history_samples (compact rows, rolled up to 15-minute and hourly rows). Every
-- 0.1.0 row is kept at full resolution; a row whose wal_status or active differs from the
-- slot's previous one (or a slot's first) is a transition, never rolled away.
DROP FUNCTION cdc_health.history(text, timestamptz);
ALTER TABLE cdc_health.slot_history RENAME TO slot_history_0_1;
CREATE TABLE cdc_health.history_slots (
    id        serial PRIMARY KEY,
    slot_name text   NOT NULL,
    slot_type text   NOT NULL,
    database  text,
    UNIQUE NULLS NOT DISTINCT (slot_name, slot_type, database)
);
COMMENT ON TABLE cdc_health.history_slots IS 'Replication slots named in cdc_health.history_samples';
CREATE TABLE cdc_health.history_samples (
    sampled_at          timestamptz NOT NULL,
    retained_wal_bytes  bigint,
    flush_lag_bytes     bigint,
    safe_wal_size       bigint,
    current_lsn         pg_lsn,
    restart_lsn         pg_lsn,
    confirmed_flush_lsn pg_lsn,
    retained_wal_min    bigint,
    retained_wal_max    bigint,
    flush_lag_min       bigint,
    flush_lag_max       bigint,
    slot_id             integer     NOT NULL,
    kind                smallint    NOT NULL CHECK (kind BETWEEN 0 AND 3),
    status              smallint    NOT NULL,
    wal_status          smallint,
    active              boolean     NOT NULL,
    always_active       boolean
);
COMMENT ON TABLE cdc_health.history_samples IS
  'Retained-WAL history per replication slot, as stored (read it through cdc_health.slot_history)';
CREATE TABLE cdc_health.history_rollups (
    kind          smallint PRIMARY KEY,
    rolled_until  timestamptz
);
INSERT INTO cdc_health.history_rollups VALUES (2, NULL), (3, NULL);
INSERT INTO cdc_health.history_slots (slot_name, slot_type, database)
    SELECT DISTINCT slot_name, slot_type, database FROM cdc_health.slot_history_0_1
    ORDER BY 1, 2, 3;
INSERT INTO cdc_health.history_samples
    (sampled_at, retained_wal_bytes, flush_lag_bytes, safe_wal_size, current_lsn, restart_lsn,
     confirmed_flush_lsn, slot_id, kind, status, wal_status, active)
SELECT o.sampled_at, o.retained_wal_bytes, o.flush_lag_bytes, o.safe_wal_size, o.current_lsn,
       o.restart_lsn, o.confirmed_flush_lsn, s.id,
       CASE WHEN o.changed THEN 1 ELSE 0 END,
       pg_catalog.array_position('{ok,warning,critical}'::text[], o.status) - 1,
       pg_catalog.array_position('{reserved,extended,unreserved,lost}'::text[], o.wal_status) - 1,
       o.active
FROM (SELECT h.*,
             (h.wal_status, h.active) IS DISTINCT FROM
                 pg_catalog.lag((h.wal_status, h.active)) OVER (
                     PARTITION BY h.slot_name, h.slot_type, h.database ORDER BY h.sampled_at)
                 AS changed
      FROM cdc_health.slot_history_0_1 h) o
JOIN cdc_health.history_slots s
  ON s.slot_name = o.slot_name AND s.slot_type = o.slot_type
 AND s.database IS NOT DISTINCT FROM o.database
ORDER BY o.sampled_at;
-- Out of the extension first: that also takes it off the list of tables pg_dump keeps.
ALTER EXTENSION cdc_health DROP TABLE cdc_health.slot_history_0_1;
DROP TABLE cdc_health.slot_history_0_1;
CREATE INDEX history_samples_slot_time ON cdc_health.history_samples (slot_id, sampled_at);
CREATE VIEW cdc_health.slot_history AS
SELECT h.sampled_at, s.slot_name, s.slot_type, s.database,
       ('{reserved,extended,unreserved,lost}'::text[])[h.wal_status + 1] AS wal_status,
       h.active,
       ('{ok,warning,critical}'::text[])[h.status + 1] AS status,
       h.retained_wal_bytes, h.flush_lag_bytes, h.safe_wal_size,
       h.current_lsn, h.restart_lsn, h.confirmed_flush_lsn,
       ('{full,full,15min,1h}'::text[])[h.kind + 1] AS resolution,
       h.kind = 1 AS transition,
       COALESCE(h.retained_wal_min, h.retained_wal_bytes) AS retained_wal_min,
       COALESCE(h.retained_wal_max, h.retained_wal_bytes) AS retained_wal_max,
       COALESCE(h.flush_lag_min, h.flush_lag_bytes) AS flush_lag_min,
       COALESCE(h.flush_lag_max, h.flush_lag_bytes) AS flush_lag_max,
       COALESCE(h.always_active, h.active) AS always_active,
       h.slot_id
FROM cdc_health.history_samples h JOIN cdc_health.history_slots s ON s.id = h.slot_id;
COMMENT ON VIEW cdc_health.slot_history IS
  'Retained-WAL history per replication slot, every resolution (full, 15min, 1h)';
SELECT pg_catalog.pg_extension_config_dump('cdc_health.history_slots', '');
SELECT pg_catalog.pg_extension_config_dump('cdc_health.history_slots_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdc_health.history_samples', '');
SELECT pg_catalog.pg_extension_config_dump('cdc_health.history_rollups', '');
CREATE FUNCTION cdc_health.history(
    slot_name text,
    since timestamptz DEFAULT now() - interval '1 day'
) RETURNS SETOF cdc_health.slot_history
LANGUAGE sql STABLE
-- A body parsed at creation (BEGIN ATOMIC): every name and operator is bound now, so the
-- caller's search_path cannot reach it, and the planner inlines it into the caller's query
-- (a SET clause would prevent that, and plan it again on every call).
BEGIN ATOMIC
    -- By id: the planner cannot tell how many rows a name has, and guesses a scan of all.
    SELECT * FROM cdc_health.slot_history h
    WHERE h.slot_id = ANY (ARRAY(SELECT s.id FROM cdc_health.history_slots s
                                 WHERE s.slot_name = history.slot_name))
      AND h.sampled_at >= history.since
    ORDER BY h.sampled_at;
END;
COMMENT ON FUNCTION cdc_health.history(text, timestamptz) IS
  'Retained-WAL history of one slot since a time (default: the last day), every resolution';
GRANT SELECT ON cdc_health.slot_history, cdc_health.history_slots, cdc_health.history_samples,
    cdc_health.history_rollups TO pg_monitor;
REVOKE ALL ON FUNCTION cdc_health.history(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.history(text, timestamptz) TO pg_monitor;

-- The hold-down looks for alerts resolved in the last minutes every pass: without this it
-- would read every alert ever resolved.
CREATE INDEX alerts_resolved ON cdc_health.alerts (resolved_at) WHERE resolved_at IS NOT NULL;

-- The slot pass keeps the open alerts between passes; this counts committed changes.
CREATE FUNCTION cdc_health."alerts_changed"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'alerts_changed_wrapper';
CREATE TRIGGER alerts_changed
    BEFORE INSERT OR UPDATE OR DELETE ON cdc_health.alerts
    FOR EACH ROW EXECUTE FUNCTION cdc_health.alerts_changed();
CREATE TRIGGER alerts_truncated
    BEFORE TRUNCATE ON cdc_health.alerts
    FOR EACH STATEMENT EXECUTE FUNCTION cdc_health.alerts_changed();
ALTER TABLE cdc_health.alerts ENABLE ALWAYS TRIGGER alerts_changed;
ALTER TABLE cdc_health.alerts ENABLE ALWAYS TRIGGER alerts_truncated;
REVOKE ALL ON FUNCTION cdc_health.alerts_changed() FROM PUBLIC;
COMMENT ON FUNCTION cdc_health.alerts_changed() IS
  'Trigger: tells the worker that cdc_health.alerts changed (it keeps the open alerts between passes)';
