-- The ClickHouse foreign-data wrapper (its validator is a Rust function).
-- Loaded by src/schema.rs (extension_sql_file!); privileges are in finalize.sql.

CREATE FUNCTION cdc_health.clickhouse_handler() RETURNS fdw_handler
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'cdc_health_clickhouse_handler';
CREATE FOREIGN DATA WRAPPER cdc_health_clickhouse
    HANDLER cdc_health.clickhouse_handler
    VALIDATOR cdc_health.clickhouse_validator;
COMMENT ON FOREIGN DATA WRAPPER cdc_health_clickhouse IS
    'Read-only ClickHouse tables and queries over HTTP(S), for mirror freshness checks';
