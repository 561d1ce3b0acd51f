#!/usr/bin/env bash
# Runs every test: the rules' unit tests, #[pg_test]s, pg_regress and the integration tests
# against real clusters (upgrades from every release and the packages included), on each
# PostgreSQL version in CDC_HEALTH_PG_VERSIONS (default: every supported one, 15 to 18).
# Everything is built first, one major after another; then the majors' integration suites
# run side by side (they mostly wait on servers: one uses under a fifth of a core), at most
# CDC_HEALTH_TEST_JOBS at once (default: all); then a smoke run of every benchmark. Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
bash scripts/setup.sh

step() { printf '\n=== %s\n' "$*"; }

step "released SQL scripts are frozen"
bash scripts/check-released.sh

step "the layers of src/: every import points down (docs/ARCHITECTURE.md)"
/usr/bin/python3 scripts/check-layers.py

step "unit tests of the decision rules"
cargo test -p cdc_health_rules

for v in $CDC_HEALTH_PG_VERSIONS; do
  pg_config="$(pg_config_for "$v")"
  step "PostgreSQL $v: #[pg_test]s"
  cargo pgrx test "pg$v" --runas postgres --pgdata "$CDC_HEALTH_RUN/pgrx-$v"
  step "PostgreSQL $v: install, package and build the releases the upgrade test starts from"
  # Installed after `pgrx test`, which leaves a build with the test functions behind.
  install_into "$pg_config"
  # Built here rather than inside the side-by-side suites, where compiling would compete.
  bash scripts/package.sh --debug "$v" >/dev/null
  for release in $(awk -v m="$v" '!/^#/ && NF && ("," $4 ",") ~ ("," m ",") { print $1 }' \
                     sql/RELEASES); do
    bash scripts/build-release.sh "$release" "$v" >/dev/null
  done
done

logs="$CDC_HEALTH_RUN/test-logs"
mkdir -p "$logs"
jobs_max="${CDC_HEALTH_TEST_JOBS:-$(wc -w <<<"$CDC_HEALTH_PG_VERSIONS")}"
step "PostgreSQL $CDC_HEALTH_PG_VERSIONS: pg_regress and integration tests on real clusters," \
     "$jobs_max at a time"
declare -A pids=()
started=$(date +%s)
for v in $CDC_HEALTH_PG_VERSIONS; do
  while (( $(jobs -rp | wc -l) >= jobs_max )); do wait -n || true; done
  PG_CONFIG="$(pg_config_for "$v")" /usr/bin/python3 -m pytest -p no:cacheprovider -q \
    tests "$@" >"$logs/pg$v.log" 2>&1 &
  pids[$v]=$!
done
declare -A status=()
for v in $CDC_HEALTH_PG_VERSIONS; do
  status[$v]=0
  wait "${pids[$v]}" || status[$v]=$?
done
suites=$(( $(date +%s) - started ))

# Every benchmark once more, with few trials on small clusters, against the builds installed
# above: a benchmark that no longer runs fails the tests. Its figures are not representative
# and it writes nothing into the checkout (scripts/bench.sh regenerates BENCHMARKS.md).
smoke=0
if [[ " $CDC_HEALTH_PG_VERSIONS " == *" 15 "* && " $CDC_HEALTH_PG_VERSIONS " == *" 17 "* ]]; then
  step "benchmark smoke run (bench/run.py and each benchmark of its own, with --quick)"
  smoke_started=$(date +%s)
  /usr/bin/python3 bench/run.py --quick || smoke=$?
  /usr/bin/python3 bench/metrics_endpoint.py --quick >"$logs/bench-metrics.log" || smoke=$?
  /usr/bin/python3 bench/delivery.py --quick >"$logs/bench-delivery.log" || smoke=$?
  /usr/bin/python3 bench/consumers.py --quick >"$logs/bench-consumers.log" || smoke=$?
  /usr/bin/python3 bench/wal_volume.py --quick >"$logs/bench-wal-volume.log" || smoke=$?
  echo "benchmark smoke run: $(( $(date +%s) - smoke_started )) s (exit $smoke)"
fi

failed=()
for v in $CDC_HEALTH_PG_VERSIONS; do
  step "PostgreSQL $v: integration tests (exit ${status[$v]})"
  cat "$logs/pg$v.log"
  (( status[$v] == 0 )) || failed+=("$v")
done
echo "integration tests of all majors: $suites s"
if (( smoke != 0 )); then
  echo "FAILED: the benchmark smoke run (exit $smoke)" >&2
fi
if (( ${#failed[@]} )); then
  echo "FAILED on PostgreSQL ${failed[*]}" >&2
fi
if (( smoke != 0 || ${#failed[@]} )); then
  exit 1
fi
