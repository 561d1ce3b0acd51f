-- Alert delivery: the sinks and the outbox of transitions queued for them.
-- Loaded by src/schema.rs (extension_sql_file!); privileges are in finalize.sql.

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
