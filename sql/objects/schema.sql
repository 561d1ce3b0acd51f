-- The extension's schema, created before anything else (bootstrap).
-- Loaded by src/schema.rs (extension_sql_file!); privileges are in finalize.sql.

CREATE SCHEMA IF NOT EXISTS cdc_health;
COMMENT ON SCHEMA cdc_health IS 'cdc_health: tables and functions of the cdc_health extension';
