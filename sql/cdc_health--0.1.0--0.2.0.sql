-- cdc_health 0.1.0 -> 0.2.0 (ALTER EXTENSION cdc_health UPDATE TO '0.2.0').
-- Every SQL object change since 0.1.0, in the order made; each has a CHANGELOG.md line.
-- The result must equal a fresh CREATE EXTENSION of 0.2.0 (tests/test_upgrade.py checks).
\echo Use "ALTER EXTENSION cdc_health UPDATE TO '0.2.0'" to load this file. \quit
