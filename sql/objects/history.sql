-- Retained-WAL history, alerts and the heartbeat: the tables the slot worker writes.
-- Loaded by src/schema.rs (extension_sql_file!); privileges are in finalize.sql.

-- Retained-WAL history. Slots are named once in history_slots; history_samples holds a row
-- per slot every cdc_health.history_interval and one whenever wal_status or active changes,
-- thinned with age (see cdc_health.history_full_retention); slot_history reads them back.
CREATE TABLE cdc_health.history_slots (
    id        serial PRIMARY KEY,
    slot_name text   NOT NULL,
    slot_type text   NOT NULL,
    database  text,
    UNIQUE NULLS NOT DISTINCT (slot_name, slot_type, database)
);
COMMENT ON TABLE cdc_health.history_slots IS 'Replication slots named in cdc_health.history_samples';
-- No text in a row (the slot is a history_slots id; states are codes), and columns in
-- falling alignment so no byte is padding; the rollup columns are NULL, which costs no
-- space, in full-resolution rows. Codes: kind 0 sample, 1 transition (never rolled away),
-- 2 15-min rollup, 3 hourly rollup; wal_status 0 reserved .. 3 lost; status 0 ok .. 2
-- critical.
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
CREATE INDEX history_samples_slot_time ON cdc_health.history_samples (slot_id, sampled_at);
-- The rollup deletes rows, and a FOR ALL TABLES publication publishes this table too: without
-- a replica identity every DELETE from it fails there (55000). It has no key (no column set is
-- unique by construction), so the whole old row identifies it; that row is logged only under
-- wal_level = logical, about 100 bytes per row rolled away.
ALTER TABLE cdc_health.history_samples REPLICA IDENTITY FULL;
COMMENT ON TABLE cdc_health.history_samples IS
  'Retained-WAL history per replication slot, as stored (read it through cdc_health.slot_history)';
-- Where each rollup step stopped (the end of the last period it rolled).
CREATE TABLE cdc_health.history_rollups (
    kind          smallint PRIMARY KEY,
    rolled_until  timestamptz
);
INSERT INTO cdc_health.history_rollups VALUES (2, NULL), (3, NULL);
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
-- The hold-down looks for alerts resolved in the last minutes every pass: without this it
-- would read every alert ever resolved.
CREATE INDEX alerts_resolved ON cdc_health.alerts (resolved_at) WHERE resolved_at IS NOT NULL;
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
SELECT pg_catalog.pg_extension_config_dump('cdc_health.history_slots', '');
SELECT pg_catalog.pg_extension_config_dump('cdc_health.history_slots_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('cdc_health.history_samples', '');
SELECT pg_catalog.pg_extension_config_dump('cdc_health.history_rollups', '');
SELECT pg_catalog.pg_extension_config_dump('cdc_health.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('cdc_health.alerts_id_seq', '');

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
