#!/usr/bin/env bash
# Shows cdc_health at work: builds and installs the extension into PostgreSQL 15, starts a
# throwaway cluster with it preloaded and real slots, healthy and broken, and prints their
# health at each step. Pass --keep to leave the cluster running afterwards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
bash scripts/setup.sh
install_into "$PG15_CONFIG"
exec /usr/bin/python3 scripts/demo.py --pg-config "$PG15_CONFIG" "$@"
