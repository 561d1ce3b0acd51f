-- The trigger that tells the worker cdc_health.alerts changed.
-- Loaded by src/schema.rs (extension_sql_file!); privileges are in finalize.sql.

CREATE TRIGGER alerts_changed
    BEFORE INSERT OR UPDATE OR DELETE ON cdc_health.alerts
    FOR EACH ROW EXECUTE FUNCTION cdc_health.alerts_changed();
CREATE TRIGGER alerts_truncated
    BEFORE TRUNCATE ON cdc_health.alerts
    FOR EACH STATEMENT EXECUTE FUNCTION cdc_health.alerts_changed();
ALTER TABLE cdc_health.alerts ENABLE ALWAYS TRIGGER alerts_changed;
ALTER TABLE cdc_health.alerts ENABLE ALWAYS TRIGGER alerts_truncated;
COMMENT ON FUNCTION cdc_health.alerts_changed() IS
  'Trigger: tells the worker that cdc_health.alerts changed (it keeps the open alerts between passes)';
