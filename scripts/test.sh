#!/usr/bin/env bash
# Runs every test: the rules' unit tests, #[pg_test]s, pg_regress and the integration tests
# against real clusters (upgrades from every release and the packages included), on each
# PostgreSQL version in CDC_HEALTH_PG_VERSIONS (default: every supported one, 15 to 18).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
bash scripts/setup.sh

step() { printf '\n=== %s\n' "$*"; }

step "released SQL scripts are frozen"
bash scripts/check-released.sh

step "unit tests of the decision rules"
cargo test -p cdc_health_rules

for v in $CDC_HEALTH_PG_VERSIONS; do
  pg_config="$(pg_config_for "$v")"
  step "PostgreSQL $v: #[pg_test]s"
  cargo pgrx test "pg$v" --runas postgres --pgdata "$CDC_HEALTH_RUN/pgrx-$v"
  step "PostgreSQL $v: install, then pg_regress and integration tests on real clusters"
  # Installed after `pgrx test`, which leaves a build with the test functions behind.
  install_into "$pg_config"
  PG_CONFIG="$pg_config" /usr/bin/python3 -m pytest -p no:cacheprovider -q tests "$@"
done
