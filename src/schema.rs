//! The extension's tables and plain-SQL functions in schema `cdc_health`.

use pgrx::prelude::*;

extension_sql!(
    r#"
-- Retained-WAL history: a row per slot every cdc_health.history_interval, and one whenever
-- wal_status or active changes.
CREATE TABLE cdc_health.slot_history (
    sampled_at          timestamptz NOT NULL,
    slot_name           text        NOT NULL,
    slot_type           text        NOT NULL,
    database            text,
    wal_status          text,
    active              boolean     NOT NULL,
    status              text        NOT NULL,
    retained_wal_bytes  bigint,
    flush_lag_bytes     bigint,
    safe_wal_size       bigint,
    current_lsn         pg_lsn,
    restart_lsn         pg_lsn,
    confirmed_flush_lsn pg_lsn
);
CREATE INDEX slot_history_slot_time ON cdc_health.slot_history (slot_name, sampled_at);
-- Append-only by time: a BRIN index finds old rows for retention at almost no write cost.
CREATE INDEX slot_history_time ON cdc_health.slot_history USING brin (sampled_at);
COMMENT ON TABLE cdc_health.slot_history IS 'Retained-WAL history per replication slot';

-- One row per incident; at most one open (resolved_at IS NULL) per subject and finding.
CREATE TABLE cdc_health.alerts (
    id               bigserial   PRIMARY KEY,
    subject          text        NOT NULL,
    finding          text        NOT NULL,
    severity         text        NOT NULL CHECK (severity IN ('warning', 'critical')),
    raised_at        timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    resolved_at      timestamptz,
    last_notified_at timestamptz NOT NULL,
    clear_since      timestamptz,
    notifications    integer     NOT NULL DEFAULT 1,
    summary          text        NOT NULL,
    remediation      text,
    detail           jsonb       NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX alerts_one_open ON cdc_health.alerts (subject, finding)
    WHERE resolved_at IS NULL;
COMMENT ON TABLE cdc_health.alerts IS 'Alerts raised, escalated and resolved by cdc_health';

-- Written by the worker when cdc_health.heartbeat_interval > 0; add it to a publication so
-- consumers of quiet tables have something to acknowledge.
CREATE TABLE cdc_health.heartbeat (
    id      integer     PRIMARY KEY CHECK (id = 1),
    beat_at timestamptz NOT NULL,
    beats   bigint      NOT NULL
);
INSERT INTO cdc_health.heartbeat VALUES (1, now(), 0);

-- Kept by pg_dump.
SELECT pg_catalog.pg_extension_config_dump('cdc_health.slot_history', '');
SELECT pg_catalog.pg_extension_config_dump('cdc_health.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('cdc_health.alerts_id_seq', '');

CREATE FUNCTION cdc_health.history(
    slot_name text,
    since timestamptz DEFAULT now() - interval '1 day'
) RETURNS SETOF cdc_health.slot_history
LANGUAGE sql STABLE
SET search_path = pg_catalog
AS $$
    SELECT * FROM cdc_health.slot_history h
    WHERE h.slot_name = history.slot_name AND h.sampled_at >= history.since
    ORDER BY h.sampled_at
$$;
COMMENT ON FUNCTION cdc_health.history(text, timestamptz) IS
  'Retained-WAL history of one slot since a time (default: the last day)';

GRANT USAGE ON SCHEMA cdc_health TO pg_monitor;
GRANT SELECT ON cdc_health.slot_history, cdc_health.alerts, cdc_health.heartbeat TO pg_monitor;
REVOKE ALL ON FUNCTION cdc_health.history(text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_health.history(text, timestamptz) TO pg_monitor;
"#,
    name = "tables",
    requires = ["schema"]
);
