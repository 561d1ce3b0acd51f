-- cdc_health 0.2.0 -> 0.3.0 (see CHANGELOG.md). Every change to a SQL object after 0.2.0 goes
-- here, with its CHANGELOG line.
\echo Use "ALTER EXTENSION cdc_health UPDATE TO '0.3.0'" to load this file. \quit
