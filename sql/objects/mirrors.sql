-- Mirror checks (configuration) and the outcome of each one's last probe.
-- Loaded by src/schema.rs (extension_sql_file!); privileges are in finalize.sql.

CREATE TABLE cdc_health.mirror_checks (
    name               text        PRIMARY KEY,
    kind               text        NOT NULL CHECK (kind IN ('mirror', 'heartbeat', 'freshness')),
    source             regclass,
    source_time_column name,
    target             regclass    NOT NULL,
    target_time_column name        NOT NULL,
    max_lag            interval    NOT NULL CHECK (max_lag > interval '0'),
    max_row_drift      bigint      CHECK (max_row_drift >= 0),
    slot_name          name,
    owner              regrole     NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    checked_at         timestamptz,
    source_rows        bigint,
    source_newest      timestamptz,
    target_rows        bigint,
    target_newest      timestamptz,
    lag                interval,
    row_drift          bigint,
    status             text,
    findings           text[],
    summary            text,
    error              text,
    probe_ms           float8,
    probe_bytes        bigint,
    quarantined_at     timestamptz
);
COMMENT ON TABLE cdc_health.mirror_checks IS
    'Mirror and freshness checks (cdc_health.add_mirror) and their last probe';
SELECT pg_catalog.pg_extension_config_dump('cdc_health.mirror_checks', '');

CREATE FUNCTION cdc_health.mirrors() RETURNS TABLE (
    name text, kind text, status text, findings text[], lag interval, row_drift bigint,
    source regclass, source_rows bigint, source_newest timestamptz,
    target regclass, target_rows bigint, target_newest timestamptz,
    checked_at timestamptz, summary text, error text, max_lag interval, max_row_drift bigint,
    slot_name name, owner regrole, probe_ms float8, probe_bytes bigint
)
LANGUAGE sql STABLE
SET search_path = pg_catalog
AS $$
    SELECT name, kind, status, findings, lag, row_drift, source, source_rows, source_newest,
           target, target_rows, target_newest, checked_at, summary, error, max_lag,
           max_row_drift, slot_name, owner, probe_ms, probe_bytes
    FROM cdc_health.mirror_checks
    ORDER BY CASE status WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 WHEN 'ok' THEN 2 ELSE 3 END,
             name
$$;
