//! The extension's SQL objects that are not Rust functions: tables, views, plain-SQL
//! functions, triggers, the foreign-data wrapper and every privilege. The SQL lives in
//! `sql/objects/*.sql`; this file says in which order the install script takes it.
//!
//! Any change here after a release also goes into the upgrade script to the version under
//! development (`sql/cdc_health--<released>--<next>.sql`), which `tests/test_upgrade.py`
//! compares against a fresh install.

use pgrx::prelude::*;

extension_sql_file!("../sql/objects/schema.sql", name = "schema", bootstrap);

extension_sql_file!(
    "../sql/objects/history.sql",
    name = "tables",
    requires = ["schema"]
);

extension_sql_file!(
    "../sql/objects/mirrors.sql",
    name = "mirror_tables",
    requires = ["tables"]
);

extension_sql_file!(
    "../sql/objects/delivery.sql",
    name = "delivery_tables",
    // After the mirror tables, as in the upgrade script: pg_extension.extconfig lists
    // configuration tables in creation order, and a fresh install must equal an upgrade.
    requires = ["tables", "mirror_tables"]
);

extension_sql_file!(
    "../sql/objects/alerts_trigger.sql",
    name = "alerts_changed_trigger",
    requires = ["tables", cdc_health::alerts_changed]
);

extension_sql_file!(
    "../sql/objects/clickhouse_wrapper.sql",
    name = "clickhouse_wrapper",
    requires = [cdc_health::clickhouse_validator]
);

extension_sql_file!("../sql/objects/finalize.sql", name = "privileges", finalize);
