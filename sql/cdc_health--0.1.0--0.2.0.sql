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
GRANT SELECT (name, kind, created_at, delivered, failed, dropped, attempts, next_attempt_at,
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
