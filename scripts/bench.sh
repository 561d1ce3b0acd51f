#!/usr/bin/env bash
# Regenerates BENCHMARKS.md from scratch: installs what is missing, builds and installs the
# release build of cdc_health into PostgreSQL 15 and 17, then runs every benchmark on real
# throwaway clusters (about 30 minutes on 2 cores). `--quick` is a smoke run of a few minutes
# whose figures are not representative; other arguments go to bench/run.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
bash scripts/setup.sh
install_into "$PG15_CONFIG" --release
install_into "$PG17_HOME/bin/pg_config" --release
/usr/bin/python3 bench/run.py "$@"
# The /metrics endpoint and alert delivery against postgres_exporter, and consumer diagnosis
# (the hooks' cost, a consumer's death), the WAL volume: sections of their own.
if [[ " $* " == *" --quick "* ]]; then
  /usr/bin/python3 bench/metrics_endpoint.py --quick
  /usr/bin/python3 bench/delivery.py --quick
  /usr/bin/python3 bench/consumers.py --quick
  exec /usr/bin/python3 bench/wal_volume.py --quick
fi
/usr/bin/python3 bench/metrics_endpoint.py
/usr/bin/python3 bench/delivery.py
/usr/bin/python3 bench/consumers.py
exec /usr/bin/python3 bench/wal_volume.py
